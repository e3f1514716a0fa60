"""Fused passes over tensor data, compiled once per machine by numba (the one place it is used).

A comparison of two float32 tensors in torch takes about ten calls per chunk (two float64
copies, three norms, a difference, its peak, a byte comparison), each reading the chunk again:
about 3x the time of reading the two files. :func:`measure_pairs` reads each element once and
keeps every sum in registers, in one thread (1.4x the read, two GPT-2-XL-sized files:
``benchmarks/bench_values.py``). :func:`moments` and :func:`pair_stats` do the same for the
statistics of one tensor and of a (before, after) pair; :func:`fingerprint` takes the undo
guard's 64-bit fingerprint of a tensor's bytes and compares them with their source in the same
read (a load's verification).

Loops run over slices from index 0 (``for i in range(len(x))``): a loop from a variable start
cannot prove its indices non-negative, so numba keeps a negative-index check on every read and
nothing runs in vector lanes (2x slower, measured). Kernels take numpy arrays (zero-copy
views of CPU tensors) of two value types only, float32 and float64, so each compiles twice at
most; other dtypes are converted by the caller, and their equality is decided on their own
bytes (``uint8`` views). Compiled code is cached on disk (numba's ``cache=True``: beside this
file, or in the user's cache directory when that is not writable), so only the first call on a
machine pays for compilation (:func:`warm` pays it while installing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from numba import njit

_A = TypeVar("_A")
_B = TypeVar("_B")


def both(first: Callable[[], _A], second: Callable[[], _B]) -> tuple[_A, _B]:
    """``(first(), second())``: the second on a thread of this call, the first in this thread.

    The kernels release the GIL, so two halves of one pass take both cores. No thread outlives
    the call, and an error in either is raised here.
    """
    out: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            out.append(second())
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, name="sdw-kernel")
    worker.start()
    try:
        a = first()
    finally:
        worker.join()
    if failure:
        raise failure[0]
    return a, out[0]


#: elements measured per inner step; the step's |b - a| values stay in the L1 cache
_STEP = 2048

_FAST = {"reassoc", "contract"}  # sums in any order (vector lanes); NaN and inf kept exact

#: columns of :func:`measure_pairs`' output, one row per segment
A_SQ, B_SQ, D_SQ, AB, MAX_ABS, A_NAN, B_NAN, DIFFERS = range(8)
COLUMNS = 8


@njit(cache=True, nogil=True, fastmath=_FAST)
def _peak(
    magnitudes: np.ndarray, bits: np.ndarray, n: int, peak: np.int64
) -> np.int64:  # pragma: no cover - compiled by numba
    """The larger of ``peak`` and the largest bits of ``magnitudes[:n]``.

    Bits of |values| order like them (NaN above inf); integer lanes run in vectors, where a
    float maximum runs one value at a time.
    """
    for j in range(n):
        v = bits[j]
        peak = v if v > peak else peak
    return peak


@njit(cache=True, nogil=True)
def _touch(bits: np.ndarray) -> np.int64:  # pragma: no cover - compiled by numba
    """Read one value per 64-byte line of ``bits``; their sum.

    A tight loop of independent reads keeps many cache misses in flight, so a step's data
    arrives at streaming speed before a long loop body reads it. That body alone waits for
    each line: :func:`pair_stats` took 2.0 ns per float32 pair out of cache and 1.5 ns with
    this (0.86 ns in cache), measured over 2**28 pairs in chunks of 2**20.
    """
    total = np.int64(0)
    for i in range(0, bits.shape[0], 64 // bits.itemsize):
        total += bits[i]
    return total


@njit(cache=True, nogil=True, fastmath=_FAST)
def _as_float(bits: np.int64) -> float:  # pragma: no cover - compiled by numba
    one = np.empty(1, np.int64)
    one[0] = bits
    return one.view(np.float64)[0]


@njit(cache=True, nogil=True, fastmath=_FAST)
def measure_pairs(
    a: np.ndarray,
    b: np.ndarray,
    a_bytes: np.ndarray,
    b_bytes: np.ndarray,
    width: int,
    ends: np.ndarray,
    by_value: bool,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled by numba
    """Per segment of ``a`` and ``b``: ‖a‖², ‖b‖², ‖b − a‖², a·b, max |b − a|, NaN counts.

    ``a`` and ``b`` are 1-D arrays of one float type (float32 or float64), split into segments
    ending at ``ends`` (cumulative, int64). Sums are float64: the difference of two float32
    values is exact in float64, and the order of additions is free (vector lanes), which
    changes results by a few ulps of the sums.

    ``DIFFERS`` counts differing values when ``by_value`` (NaN equals NaN); else it is nonzero
    when the segment's bytes differ: ``a_bytes``/``b_bytes`` are the original tensors' bytes,
    ``width`` bytes per element of ``a``. ``MAX_ABS`` is NaN when any difference is NaN. NaN
    counts are taken (a second pass) only when a sum is not finite.
    """
    magnitudes = np.empty(_STEP, np.float64)
    bits = magnitudes.view(np.int64)
    start = 0
    for k in range(ends.shape[0]):
        stop = ends[k]
        a_sq = 0.0
        b_sq = 0.0
        d_sq = 0.0
        ab = 0.0
        peak = np.int64(0)
        differs = np.uint8(0)
        count = 0
        for s in range(start, stop, _STEP):
            e = min(s + _STEP, stop)
            xs = a[s:e]
            ys = b[s:e]
            for i in range(xs.shape[0]):
                x = np.float64(xs[i])
                y = np.float64(ys[i])
                d = y - x
                a_sq += x * x
                b_sq += y * y
                d_sq += d * d
                ab += x * y
                magnitudes[i] = abs(d)
            peak = _peak(magnitudes, bits, e - s, peak)
            if by_value:
                for i in range(xs.shape[0]):
                    x = xs[i]
                    y = ys[i]
                    if x != y and (x == x or y == y):
                        count += 1
            else:
                xb = a_bytes[s * width : e * width]
                yb = b_bytes[s * width : e * width]
                for j in range(xb.shape[0]):
                    differs |= xb[j] ^ yb[j]
        a_nan = 0
        b_nan = 0
        if not (np.isfinite(a_sq) and np.isfinite(b_sq)):
            xs = a[start:stop]
            ys = b[start:stop]
            for i in range(xs.shape[0]):
                a_nan += xs[i] != xs[i]
                b_nan += ys[i] != ys[i]
        out[k, A_SQ] = a_sq
        out[k, B_SQ] = b_sq
        out[k, D_SQ] = d_sq
        out[k, AB] = ab
        out[k, MAX_ABS] = _as_float(peak)
        out[k, A_NAN] = a_nan
        out[k, B_NAN] = b_nan
        out[k, DIFFERS] = count if by_value else differs
        start = stop


#: columns of :func:`moments`' output (and of each side in :func:`pair_stats`)
M_NAN, M_FINITE, M_ZEROS, M_SUM, M_SQUARES, M_MIN, M_MAX = range(7)
M_COLUMNS = 7

#: columns of the change in :func:`pair_stats`' output, after the two sides' moments
C_COMPARED, C_CHANGED, C_PEAK, C_ABS_SUM, C_DIFF_SQ, C_BEFORE_SQ = range(14, 20)
PAIR_COLUMNS = 20


#: float type -> the signed integer type of its width, that width - 1, its largest integer
_KEY_TYPES: dict[np.dtype[Any], tuple[type[np.signedinteger[Any]], int, int]] = {
    np.dtype(np.float32): (np.int32, 31, 2**31 - 1),
    np.dtype(np.float64): (np.int64, 63, 2**63 - 1),
}


def key_args(x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``x`` (float32 or float64) as the ``bits, shift, flip`` :func:`moments` takes with it."""
    keys, shift, flip = _KEY_TYPES[x.dtype]
    return x.view(keys), shift, flip


@njit(cache=True, nogil=True, fastmath=_FAST)
def _key(bits: np.int64, shift: int, flip: int) -> np.int64:  # pragma: no cover - compiled by numba
    """The bits of a float as an integer that orders like the float (an involution)."""
    return bits ^ ((bits >> shift) & flip)


@njit(cache=True, nogil=True, fastmath=_FAST)
def _finite_moments(
    xs: np.ndarray, out: np.ndarray, col: int
) -> None:  # pragma: no cover - compiled by numba
    """Moments of a segment holding a NaN or ±inf, value by value, leaving those out."""
    nan = 0
    finite = 0
    total = 0.0
    squares = 0.0
    low, high = np.inf, -np.inf
    for i in range(xs.shape[0]):
        v = np.float64(xs[i])
        if v != v:
            nan += 1
        elif v - v == 0.0:
            finite += 1
            total += v
            squares += v * v
            low = min(low, v)
            high = max(high, v)
    out[col + M_NAN] = nan
    out[col + M_FINITE] = finite
    out[col + M_SUM] = total
    out[col + M_SQUARES] = squares
    out[col + M_MIN] = low
    out[col + M_MAX] = high


@njit(cache=True, nogil=True, fastmath=_FAST)
def _put_moments(
    out: np.ndarray,
    col: int,
    n: int,
    zeros: int,
    total: float,
    squares: float,
    lo: np.int64,
    hi: np.int64,
    value: np.ndarray,
    value_bits: np.ndarray,
    shift: int,
    flip: int,
) -> None:  # pragma: no cover - compiled by numba
    """A segment's moments with every value finite; ``lo``/``hi`` are keys (see :func:`_key`).

    ``value`` is a one-element array of the data's float type, ``value_bits`` its bits.
    """
    out[col + M_NAN] = 0
    out[col + M_FINITE] = n
    out[col + M_ZEROS] = zeros
    out[col + M_SUM] = total
    out[col + M_SQUARES] = squares
    if n == 0:
        out[col + M_MIN] = np.inf
        out[col + M_MAX] = -np.inf
        return
    value_bits[0] = _key(lo, shift, flip)
    out[col + M_MIN] = value[0]
    value_bits[0] = _key(hi, shift, flip)
    out[col + M_MAX] = value[0]


@njit(cache=True, nogil=True, fastmath=_FAST)
def moments(
    x: np.ndarray, bits: np.ndarray, shift: int, flip: int, ends: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled by numba
    """Per segment of ``x`` (float32 or float64, segments ending at ``ends``), in one pass.

    NaN count, finite count, exact zeros (``-0.0`` included), the sum and sum of squares of the
    finite values (float64, any order of additions) and their minimum and maximum (``inf`` /
    ``-inf`` when none is finite).

    ``bits`` is ``x`` viewed as signed integers of its width; ``shift`` is that width - 1 and
    ``flip`` the largest integer of it. The minimum and maximum are taken over keys made from
    those bits (:func:`_key`), which order like the values, so they run in vector lanes as the
    sums do. A segment whose sum of squares is not finite (a NaN or ±inf in it) is measured
    again, value by value, leaving those out.
    """
    value_bits = np.empty(1, bits.dtype)
    value = value_bits.view(x.dtype)
    start = 0
    for k in range(ends.shape[0]):
        stop = ends[k]
        xs = x[start:stop]
        keys = bits[start:stop]
        zeros = 0
        total = 0.0
        squares = 0.0
        lo = np.int64(flip)
        hi = -lo - 1
        for i in range(xs.shape[0]):
            v = np.float64(xs[i])
            zeros += v == 0.0
            total += v
            squares += v * v
            key = _key(np.int64(keys[i]), shift, flip)
            lo = key if key < lo else lo
            hi = key if key > hi else hi
        row = out[k]
        _put_moments(
            row, 0, stop - start, zeros, total, squares, lo, hi, value, value_bits, shift, flip
        )
        if not np.isfinite(squares):
            _finite_moments(xs, row, 0)
        start = stop


@njit(cache=True, nogil=True, fastmath=_FAST)
def pair_stats(
    before: np.ndarray,
    after: np.ndarray,
    before_bits: np.ndarray,
    after_bits: np.ndarray,
    shift: int,
    flip: int,
    ends: np.ndarray,
    out: np.ndarray,
) -> np.int64:  # pragma: no cover - compiled by numba
    """Per segment of two arrays of one float type, in one pass over both: moments and change.

    The moments of ``before`` (columns 0-6) and of ``after`` (7-13), as :func:`moments` gives
    them, and the change (``C_*``): positions where both are finite (compared), positions whose
    values differ (NaN → NaN and inf → inf are unchanged), and over the compared positions max
    |after − before|, its sum, the sum of its squares and the sum of squares of ``before``
    (float64). The loop has the shape of :func:`measure_pairs`', but not its contract: here NaN
    and inf are left out of every sum and maximum (statistics of the finite values), there they
    propagate (a NaN that appeared must show).

    A segment with a NaN or ±inf on either side is measured again, value by value. Each step
    of both arrays is read ahead by :func:`_touch`; the sum of what it read is returned (and
    ignored) so that the compiler keeps those reads.
    """
    value_bits = np.empty(1, before_bits.dtype)
    value = value_bits.view(before.dtype)
    magnitudes = np.empty(_STEP, np.float64)
    magnitude_bits = magnitudes.view(np.int64)
    touched = np.int64(0)
    start = 0
    for k in range(ends.shape[0]):
        stop = ends[k]
        zb = 0
        sb = 0.0
        qb = 0.0
        za = 0
        sa = 0.0
        qa = 0.0
        lob = np.int64(flip)
        hib = -lob - 1
        loa = lob
        hia = hib
        changed = 0
        peak = np.int64(0)
        abs_sum = 0.0
        diff_sq = 0.0
        for s in range(start, stop, _STEP):
            e = min(s + _STEP, stop)
            xs = before[s:e]
            ys = after[s:e]
            xk = before_bits[s:e]
            yk = after_bits[s:e]
            touched += _touch(xk) + _touch(yk)
            for i in range(xs.shape[0]):
                x = np.float64(xs[i])
                y = np.float64(ys[i])
                zb += x == 0.0
                sb += x
                qb += x * x
                za += y == 0.0
                sa += y
                qa += y * y
                key = _key(np.int64(xk[i]), shift, flip)
                lob = key if key < lob else lob
                hib = key if key > hib else hib
                key = _key(np.int64(yk[i]), shift, flip)
                loa = key if key < loa else loa
                hia = key if key > hia else hia
                d = abs(y - x)
                changed += x != y
                abs_sum += d
                diff_sq += d * d
                magnitudes[i] = d
            peak = _peak(magnitudes, magnitude_bits, e - s, peak)
        row = out[k]
        n = stop - start
        _put_moments(row, 0, n, zb, sb, qb, lob, hib, value, value_bits, shift, flip)
        _put_moments(row, M_COLUMNS, n, za, sa, qa, loa, hia, value, value_bits, shift, flip)
        row[C_COMPARED] = n
        row[C_CHANGED] = changed
        row[C_PEAK] = _as_float(peak)
        row[C_ABS_SUM] = abs_sum
        row[C_DIFF_SQ] = diff_sq
        row[C_BEFORE_SQ] = qb
        if np.isfinite(qb) and np.isfinite(qa):
            start = stop
            continue
        xs = before[start:stop]
        ys = after[start:stop]
        _finite_moments(xs, row, 0)
        _finite_moments(ys, row, M_COLUMNS)
        compared = 0
        changed = 0
        abs_sum = 0.0
        diff_sq = 0.0
        before_sq = 0.0
        high = 0.0
        for i in range(xs.shape[0]):
            x = np.float64(xs[i])
            y = np.float64(ys[i])
            if x != y and (x == x or y == y):
                changed += 1
            if x - x == 0.0 and y - y == 0.0:
                compared += 1
                d = abs(y - x)
                abs_sum += d
                diff_sq += d * d
                before_sq += x * x
                high = max(high, d)
        row[C_COMPARED] = compared
        row[C_CHANGED] = changed
        row[C_PEAK] = high
        row[C_ABS_SUM] = abs_sum
        row[C_DIFF_SQ] = diff_sq
        row[C_BEFORE_SQ] = before_sq
        start = stop
    return touched


#: 8-byte words per fingerprint row: word ``j`` of a tensor is weighted by
#: ``FP_WEIGHTS[j % FP_ROW]`` times an odd multiple of its row ``j // FP_ROW`` (plus one)
FP_ROW = 512
_FP_RANDOM = np.random.default_rng(2026).integers(0, 2**63, FP_ROW, dtype=np.uint64)
FP_WEIGHTS = _FP_RANDOM * np.uint64(2) + np.uint64(1)  # odd
_FP_MULTIPLIER = np.uint64(0x5851F42D4C957F2D)


@njit(cache=True, nogil=True)
def _fp_row(
    words: np.ndarray, expected: np.ndarray, weights: np.ndarray
) -> tuple[np.uint64, np.uint64]:  # pragma: no cover - compiled by numba
    total = np.uint64(0)
    differs = np.uint64(0)
    for i in range(words.shape[0]):
        w = words[i]
        total += w * weights[i]
        differs |= w ^ expected[i]
    return total, differs


@njit(cache=True, nogil=True)
def fingerprint(
    words: np.ndarray, expected: np.ndarray, weights: np.ndarray, start: int
) -> tuple[np.uint64, bool]:  # pragma: no cover - compiled by numba
    """The fingerprint of ``words`` (uint64), words ``start ...`` of a tensor; and equality.

    Whether they equal ``expected`` (as many uint64; ``words`` itself when there is nothing to
    compare).

    The sum over words of ``word * weights[j % FP_ROW] * ((j // FP_ROW + 1) * multiplier)``
    modulo 2**64 (``j`` the word's index in the tensor): a sum, so parts of a tensor
    fingerprinted apart add up to the whole, and position-weighted by odd numbers, so a changed
    value or two swapped ones change it. One read of both arrays (the comparison rides along).
    """
    total = np.uint64(0)
    differs = np.uint64(0)
    n = words.shape[0]
    i = 0
    row = start // FP_ROW
    col = start % FP_ROW
    while i < n:
        m = min(FP_ROW - col, n - i)
        part, d = _fp_row(words[i : i + m], expected[i : i + m], weights[col : col + m])
        total += part * ((np.uint64(row) + np.uint64(1)) * _FP_MULTIPLIER)
        differs |= d
        i += m
        row += 1
        col = 0
    return total, differs == 0


def warm() -> None:
    """Compile every kernel for float32 and float64 now (numba caches the code on disk).

    For images (Binder's postBuild) whose first user should not wait for the compiler.
    """
    for dtype in _KEY_TYPES:
        x = np.zeros(4, dtype)
        ends = np.array([4], np.int64)
        raw = x.view(np.uint8)
        bits, shift, flip = key_args(x)
        measure_pairs(x, x, raw, raw, x.itemsize, ends, False, np.empty((1, COLUMNS)))
        moments(x, bits, shift, flip, ends, np.empty((1, M_COLUMNS)))
        pair_stats(x, x, bits, bits, shift, flip, ends, np.empty((1, PAIR_COLUMNS)))
    words = np.zeros(4, np.uint64)
    fingerprint(words, words, FP_WEIGHTS, 0)
