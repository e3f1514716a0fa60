"""Tensor statistics and histograms, computed in bounded memory.

Statistics come from the fused passes of :mod:`sd_widgets._kernels`, histograms from torch
(pandas only inside :func:`stats_frame` / :func:`change_frame`, tqdm only inside
:func:`iter_progress`). Tensors are walked in flat chunks of at most
``chunk_elements`` elements, so the extra memory is a few chunks whatever the tensor size, and a
100M-element float32 tensor takes a few tens of milliseconds (see ``benchmarks/bench_stats.py``).

One path measures every tensor (:class:`Moments`, :class:`Change`): one fused pass per chunk
(:mod:`sd_widgets._kernels`, compiled by numba) takes every count, sum, minimum and maximum
at once. A chunk of at least :data:`PACK_ELEMENTS` elements is reduced alone while it is in the
CPU cache; smaller chunks (small tensors) wait until :data:`BATCH_ELEMENTS` elements are queued
and are packed into one buffer per compute dtype, so 50,000 small tensors cost a few dozen
calls instead of a million. A call over :data:`SPLIT_ELEMENTS` elements or more runs in two
halves, the second on a thread of that call (no pool outlives it).

Conventions
-----------
* ``mean``, ``std``, ``min``, ``max`` and ``l2`` are computed on the *finite* values only;
  ``nan_count`` and ``inf_count`` say how many values were left out. ``zero_fraction`` is the
  number of exact zeros divided by ``numel`` (all elements).
* ``std`` is the sample standard deviation (``correction=1``, like ``torch.std``); it is NaN when
  fewer than two finite values exist.
* Accumulation is in float64, in any order (vector lanes): float32 values and their squares
  are exact in float64; float16/bfloat16/float8 go through float32, integers and bool through
  float64. When the float64 totals themselves cancel (``sum(x^2) > 2**16 * sum((x - mean)^2)``:
  a mean that dominates the spread) a second pass over ``x - mean`` keeps the variance
  accurate.
* Meta tensors are never materialised: their stats carry ``numel`` and ``dtype`` with NaN values
  and ``None`` counts. Empty tensors give NaN values and zero counts.
* Complex tensors are summarised by their magnitude ``|z|``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from .. import _kernels
from ..units import dtype_name

if TYPE_CHECKING:
    import pandas as pd


DEFAULT_CHUNK_ELEMENTS = 2**24
"""Elements per chunk (64 MiB of float32)."""

PROGRESS_THRESHOLD = 20
"""``progress=None`` shows a progress bar only for this many tensors or more."""

PACK_ELEMENTS = 2**15
"""A chunk of fewer elements waits to be reduced together with others (one buffer, reduced per
segment); a larger one is reduced at once, alone, while it is in the CPU cache."""

BATCH_ELEMENTS = 2**20
"""Most elements of small chunks reduced together (one kernel call per batch)."""

SPLIT_ELEMENTS = 2**20
"""A kernel call over at least this many elements runs in two halves, one of them on a second
thread of that call, when torch may use more than one (``torch.get_num_threads()``; the kernels
release the GIL). On the 2-core machine of ``benchmarks/``, per float32 pair of
:func:`~sd_widgets._kernels.pair_stats`: 16 MB chunks 1.20 ns on one thread, 0.71 ns on two;
out of cache 1.63 ns and 0.98 ns. Below it a thread costs more than it saves."""

_FINAL_SHIFT_RATIO = 2.0**16  # a second pass over x - mean when the float64 totals cancel
_HISTC_MAX_CHUNK = 2**24  # histc counts are float32 for float32 input: exact up to 2**24

_NAN = float("nan")
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# progress


def iter_progress(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str | None = None,
    enabled: bool | None = None,
) -> Iterable[T]:
    """Wrap ``iterable`` in a ``tqdm.auto`` progress bar when it is worth showing.

    ``enabled=None`` (the default) shows the bar only when ``total`` is known and at least
    :data:`PROGRESS_THRESHOLD`; ``True`` always shows it; ``False`` never does. The iterable is
    returned unchanged when no bar is shown, so this costs nothing in scripts and tests.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if enabled is None:
        enabled = total is not None and total >= PROGRESS_THRESHOLD
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


# --------------------------------------------------------------------------------------------
# helpers


def _is_meta(t: torch.Tensor) -> bool:
    return t.device.type == "meta"


def _prepare(t: torch.Tensor) -> torch.Tensor:
    """Detach and bring exotic layouts/dtypes to a dense real tensor (no copy for the usual case)."""
    t = t.detach()
    if t.is_quantized:
        t = t.dequantize()
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_complex():
        t = t.abs()
    return t


def _values(raw: torch.Tensor) -> torch.Tensor:
    """The chunk in the dtype its statistics are computed in (no call for the usual case)."""
    if raw.dtype in _COMPUTE and raw.layout == torch.strided:
        return raw
    return _compute_dtype(_prepare(raw))


_COMPUTE = (torch.float32, torch.float64)


def _compute_dtype(c: torch.Tensor) -> torch.Tensor:
    """Chunk in the dtype the statistics are computed in: float32 or float64."""
    if c.dtype in (torch.float32, torch.float64):
        return c
    if c.is_floating_point():  # float16, bfloat16, float8 ...
        return c.float()
    return c.to(torch.float64)  # integers and bool


def _permuted_dense(t: torch.Tensor) -> torch.Tensor | None:
    """A contiguous permutation of ``t`` (same elements, no copy), or None (e.g. a strided slice)."""
    if t.is_contiguous():
        return t
    order = sorted(range(t.dim()), key=lambda d: (t.stride(d), t.size(d)), reverse=True)
    p = t.permute(order)
    return p if p.is_contiguous() else None


def _logical_chunks(t: torch.Tensor, chunk: int) -> Iterator[torch.Tensor]:
    """1-D chunks covering ``t`` in row-major order; copies (non-contiguous input) stay bounded."""
    n = t.numel()
    if n == 0:
        return
    if t.is_contiguous():
        flat = t.reshape(-1)
        for i in range(0, n, chunk):
            yield flat[i : i + chunk]
        return
    if t.dim() == 1:
        for i in range(0, n, chunk):
            yield t[i : i + chunk].contiguous()
        return
    if n <= chunk:
        yield t.reshape(-1)
        return
    inner = n // t.shape[0]
    rows = max(1, chunk // inner)
    for i in range(0, t.shape[0], rows):
        yield from _logical_chunks(t[i] if rows == 1 else t[i : i + rows], chunk)


def _chunks(t: torch.Tensor, chunk: int) -> Iterator[torch.Tensor]:
    """1-D chunks covering every element of ``t`` exactly once, in any order."""
    if t.numel() <= chunk and t.is_contiguous():  # the usual case, without the generator
        return iter((t.reshape(-1),)) if t.numel() else iter(())
    return _chunks_of(t, chunk)


def _chunks_of(t: torch.Tensor, chunk: int) -> Iterator[torch.Tensor]:
    dense = _permuted_dense(t) if t.dim() > 0 else t
    yield from _logical_chunks(dense if dense is not None else t, chunk)


def _check_chunk(chunk_elements: int) -> int:
    chunk = int(chunk_elements)
    if chunk < 1:
        raise ValueError(f"chunk_elements must be a positive integer, got {chunk_elements!r}")
    return chunk


# --------------------------------------------------------------------------------------------
# segments: many tensors (or chunks of one) reduced at once, by one fused pass


def _buffer(chunks: Sequence[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Chunks of one compute dtype as one contiguous CPU array, and each chunk's end in it.

    A chunk on a GPU is brought to the CPU (one chunk at a time: memory stays bounded).
    """
    x = chunks[0] if len(chunks) == 1 else torch.cat(list(chunks))
    ends = np.cumsum([c.numel() for c in chunks], dtype=np.int64)
    return x.detach().cpu().contiguous().numpy(), ends


def _moment_columns(out: np.ndarray, col: int, ends: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Per-segment moments from a kernel's moment columns at ``col``.

    nan, inf, finite count, zeros (int64), sum, sum of squares, finite min and max (float64;
    ±inf when no value is finite).
    """
    parts = torch.from_numpy(out[:, col : col + _kernels.M_COLUMNS].copy())
    lengths = torch.from_numpy(np.diff(ends, prepend=0))
    nan = parts[:, _kernels.M_NAN].to(torch.int64)
    n = parts[:, _kernels.M_FINITE].to(torch.int64)
    return (
        nan,
        lengths - n - nan,
        n,
        parts[:, _kernels.M_ZEROS].to(torch.int64),
        parts[:, _kernels.M_SUM],
        parts[:, _kernels.M_SQUARES],
        parts[:, _kernels.M_MIN],
        parts[:, _kernels.M_MAX],
    )


def _cut(ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Where a kernel call over segments ending at ``ends`` splits in two halves.

    When the elements are :data:`SPLIT_ELEMENTS` or more and torch may use two threads: the
    segments with the one across the middle cut in two there, the index in ``ends`` of the
    segment each is part of, and how many segments the first half has. Else ``ends`` as it is,
    each its own, and 0 (no split).
    """
    total = int(ends[-1]) if len(ends) else 0
    if total < SPLIT_ELEMENTS or torch.get_num_threads() < 2:
        return ends, np.arange(len(ends)), 0
    mid = total // 2 // 512 * 512  # a multiple of 8 bytes, and of any vector width
    cut = np.union1d(ends, [mid])
    return cut, np.searchsorted(ends, cut, side="left"), int(np.searchsorted(cut, mid)) + 1


def _run(
    ends: np.ndarray,
    first: int,
    columns: int,
    kernel: Callable[[int, int, np.ndarray, np.ndarray], None],
) -> np.ndarray:
    """Output rows of a kernel over segments ending at ``ends`` (:func:`_cut`'s).

    ``kernel(start, stop, local_ends, out)`` runs it on elements ``[start, stop)``, whose
    segments end at ``local_ends`` (relative to ``start``). With ``first`` > 0 the first
    ``first`` segments run in this thread while the rest run on a second thread of this call
    (:func:`sd_widgets._kernels.both`).
    """
    out = np.empty((len(ends), columns), np.float64)
    if first == 0:
        kernel(0, int(ends[-1]), ends, out)
        return out
    mid, total = int(ends[first - 1]), int(ends[-1])
    _kernels.both(
        lambda: kernel(0, mid, ends[:first], out[:first]),
        lambda: kernel(mid, total, ends[first:] - mid, out[first:]),
    )
    return out


def _moment_parts(chunks: list[torch.Tensor]) -> tuple[np.ndarray, tuple[torch.Tensor, ...]]:
    """Per-segment moments (:func:`_moment_columns`) of chunks of one compute dtype.

    float32 or float64, none empty; one pass (:func:`sd_widgets._kernels.moments`), in two
    halves on two threads when long (:func:`_cut`). Also the chunk each segment is part of.
    """
    x, ends = _buffer(chunks)
    bits, shift, flip = _kernels.key_args(x)
    ends, owner, first = _cut(ends)

    def kernel(start: int, stop: int, local: np.ndarray, out: np.ndarray) -> None:
        _kernels.moments(x[start:stop], bits[start:stop], shift, flip, local, out)

    out = _run(ends, first, _kernels.M_COLUMNS, kernel)
    return owner, _moment_columns(out, 0, ends)


def _pair_parts(
    pairs: Sequence[tuple[torch.Tensor, ...]],
) -> tuple[
    np.ndarray, tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]
]:
    """Moments of both sides and the change, per segment of the pairs, from one pass over both.

    Pairs are (before, after) of one compute dtype, none empty
    (:func:`sd_widgets._kernels.pair_stats`, in two halves on two threads when long:
    :func:`_cut`). Returns the pair each segment is part of, and per segment the moments of
    before and of after (:func:`_moment_columns`) and the change: compared, changed (int64),
    max |after - before|, sum |after - before|, sum (after - before)^2 and the sum of squares
    of before, over the compared positions (float64).
    """
    before, ends = _buffer([b for b, _ in pairs])
    after, _ = _buffer([a for _, a in pairs])
    before_bits, shift, flip = _kernels.key_args(before)
    after_bits = after.view(before_bits.dtype)
    ends, owner, first = _cut(ends)

    def kernel(start: int, stop: int, local: np.ndarray, out: np.ndarray) -> None:
        b, a = before[start:stop], after[start:stop]
        bb, ab = before_bits[start:stop], after_bits[start:stop]
        _kernels.pair_stats(b, a, bb, ab, shift, flip, local, out)

    out = _run(ends, first, _kernels.PAIR_COLUMNS, kernel)
    change = torch.from_numpy(out[:, _kernels.C_COMPARED :].copy())
    return owner, (
        _moment_columns(out, 0, ends),
        _moment_columns(out, _kernels.M_COLUMNS, ends),
        (
            change[:, 0].to(torch.int64),
            change[:, 1].to(torch.int64),
            change[:, 2],
            change[:, 3],
            change[:, 4],
            change[:, 5],
        ),
    )


class _Queue:
    """Chunks waiting to be reduced together, per compute dtype (or pair of them).

    A chunk of at least :data:`PACK_ELEMENTS` elements is reduced at once, alone (while it is
    in the CPU cache); smaller ones wait until :data:`BATCH_ELEMENTS` are queued.
    """

    def __init__(self, reduce: Callable[[list[int], list[tuple[torch.Tensor, ...]]], None]) -> None:
        self._reduce = reduce
        self._items: dict[Any, tuple[list[int], list[tuple[torch.Tensor, ...]]]] = {}
        self._queued: dict[Any, int] = {}

    def put(self, group: Any, index: int, chunks: tuple[torch.Tensor, ...]) -> None:
        numel = chunks[0].numel()
        if numel >= PACK_ELEMENTS:
            self._reduce([index], [chunks])
            return
        queued = self._items.get(group)
        if queued is not None and self._queued[group] + numel > BATCH_ELEMENTS:
            self._flush(group)
            queued = None
        if queued is None:
            queued = self._items[group] = ([], [])
            self._queued[group] = 0
        queued[0].append(index)
        queued[1].append(chunks)
        self._queued[group] += numel

    def _flush(self, group: Any) -> None:
        ids, items = self._items.pop(group)
        self._queued.pop(group)
        self._reduce(ids, items)

    def put_all(self, indices: Sequence[int], items: Sequence[tuple[torch.Tensor, ...]]) -> None:
        """:meth:`put` of many, each item grouped by the dtype of its first chunk."""
        queues, queued = self._items, self._queued
        for index, chunks in zip(indices, items, strict=True):
            first = chunks[0]
            numel = first.numel()
            group = first.dtype
            waiting = queues.get(group)
            if numel >= PACK_ELEMENTS or waiting is None or queued[group] + numel > BATCH_ELEMENTS:
                self.put(group, index, chunks)  # alone, or the first of a new batch
                continue
            waiting[0].append(index)
            waiting[1].append(chunks)
            queued[group] += numel

    def flush(self) -> None:
        for group in list(self._items):
            self._flush(group)


# --------------------------------------------------------------------------------------------
# TensorStats


@dataclass(frozen=True)
class TensorStats:
    """Summary statistics of one tensor (finite values only; see the module docstring).

    ``nan_count``/``inf_count`` are ``None`` for meta tensors, whose data does not exist.
    """

    numel: int
    dtype: str
    mean: float
    std: float
    min: float
    max: float
    l2: float
    zero_fraction: float
    nan_count: int | None
    inf_count: int | None

    @property
    def finite_count(self) -> int | None:
        """Number of finite elements (``None`` for meta tensors)."""
        if self.nan_count is None or self.inf_count is None:
            return None
        return self.numel - self.nan_count - self.inf_count

    def as_dict(self, *, json_safe: bool = False) -> dict[str, Any]:
        """Plain ``{field: value}``; ``json_safe=True`` turns NaN/±inf into ``None``."""
        d = dict(self.__dict__)  # the fields in order, scalars: no deep copy
        if json_safe:
            d = {k: _json_float(v) for k, v in d.items()}
        return d

    @classmethod
    def unavailable(cls, numel: int, dtype: str) -> TensorStats:
        """Stats of a tensor whose data does not exist (meta) — NaN values, ``None`` counts."""
        return cls(numel, dtype, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, None, None)


def _json_float(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class Moments:
    """The statistics of ``size`` tensors, fed chunk by chunk (:meth:`add`), then :meth:`finish`.

    The one way sd_widgets measures tensors: :func:`tensor_stats` feeds it the chunks of one
    tensor; a load feeds it the chunks of the tensors whose change it does not measure (the
    others' moments come from :class:`Change`'s one pass over both sides); the statistics of
    thousands of small tensors are reduced together, one kernel call per batch of
    :data:`BATCH_ELEMENTS` elements.
    """

    def __init__(self, size: int = 1) -> None:
        self.size = size
        i64 = torch.int64
        self._seen = [0] * size
        self._nan = torch.zeros(size, dtype=i64)
        self._inf = torch.zeros(size, dtype=i64)
        self._n = torch.zeros(size, dtype=i64)
        self._zeros = torch.zeros(size, dtype=i64)
        self._s = torch.zeros(size, dtype=torch.float64)
        self._q = torch.zeros(size, dtype=torch.float64)
        self._mn = torch.full((size,), math.inf, dtype=torch.float64)
        self._mx = torch.full((size,), -math.inf, dtype=torch.float64)
        self._queue = _Queue(self._reduce)
        #: flushes of the :class:`Change` accumulators that also feed this one (pairs)
        self._feeders: list[Callable[[], None]] = []

    def add(self, raw: torch.Tensor, index: int = 0) -> None:
        """Add a 1-D chunk of tensor ``index`` (any real dtype, complex as ``|z|``)."""
        c = _values(raw)
        n = c.numel()
        self._seen[index] += n
        if n:
            self._queue.put(c.dtype, index, (c,))

    def add_all(self, chunks: Sequence[torch.Tensor], indices: Sequence[int]) -> None:
        """:meth:`add` of many chunks (``chunks[j]`` of tensor ``indices[j]``)."""
        seen = self._seen
        items, ids = [], []
        for raw, index in zip(chunks, indices, strict=True):
            c = _values(raw)
            n = c.numel()
            seen[index] += n
            if n:
                items.append((c,))
                ids.append(index)
        self._queue.put_all(ids, items)

    @torch.no_grad()
    def _reduce(self, ids: list[int], items: list[tuple[torch.Tensor, ...]]) -> None:
        owner, parts = _moment_parts([c for (c,) in items])
        self._add_parts(torch.tensor(ids, dtype=torch.int64)[torch.from_numpy(owner)], parts)

    def _add_parts(self, idx: torch.Tensor, parts: tuple[torch.Tensor, ...]) -> None:
        """Per-chunk moments (:func:`_moment_columns`) of the tensors ``idx``."""
        nan, inf, n, zeros, s, q, lo, hi = parts
        self._nan.index_add_(0, idx, nan)
        self._inf.index_add_(0, idx, inf)
        self._n.index_add_(0, idx, n)
        self._zeros.index_add_(0, idx, zeros)
        self._s.index_add_(0, idx, s)
        self._q.index_add_(0, idx, q)
        self._mn.scatter_reduce_(0, idx, lo, "amin")
        self._mx.scatter_reduce_(0, idx, hi, "amax")

    def flush(self) -> None:
        """Reduce the chunks still waiting, here and in the pairs that feed this.

        :meth:`finish` does it.
        """
        for feed in self._feeders:
            feed()
        self._queue.flush()

    # one tensor's running totals (sd_widgets.distributed all-reduces them across ranks)
    seen = property(lambda self: self.totals()["seen"], doc="Elements seen (tensor 0).")
    nan = property(lambda self: self.totals()["nan"], doc="NaN values (tensor 0).")
    inf = property(lambda self: self.totals()["inf"], doc="±inf values (tensor 0).")
    n = property(lambda self: self.totals()["n"], doc="Finite values (tensor 0).")
    zeros = property(lambda self: self.totals()["zeros"], doc="Zeros (tensor 0).")
    s = property(lambda self: self.totals()["s"], doc="Sum of finite values (tensor 0).")
    q = property(lambda self: self.totals()["q"], doc="Sum of their squares (tensor 0).")
    mn = property(lambda self: self.totals()["mn"], doc="Finite minimum (tensor 0; inf: none).")
    mx = property(lambda self: self.totals()["mx"], doc="Finite maximum (tensor 0; -inf: none).")

    def totals(self, index: int = 0) -> dict[str, Any]:
        """``seen, nan, inf, n, zeros, s, q, mn, mx`` of tensor ``index`` so far."""
        self.flush()
        return {
            "seen": self._seen[index],
            "nan": int(self._nan[index]),
            "inf": int(self._inf[index]),
            "n": int(self._n[index]),
            "zeros": int(self._zeros[index]),
            "s": float(self._s[index]),
            "q": float(self._q[index]),
            "mn": float(self._mn[index]),
            "mx": float(self._mx[index]),
        }

    def finish(
        self,
        wholes: Sequence[torch.Tensor | None],
        dtypes: Sequence[str],
        chunk: int = DEFAULT_CHUNK_ELEMENTS,
    ) -> list[TensorStats]:
        """The :class:`TensorStats` of every tensor.

        ``wholes[i]`` is the tensor ``i``'s chunks came from (None: not measured, its stats are
        unavailable).
        A tensor is read again only when its float64 totals cancel (``sum(x^2) > 2**16 *
        sum((x - mean)^2)``: a second pass over ``x - mean`` keeps the variance exact); those
        are reduced together too.
        """
        self.flush()
        nan, inf, n, zeros = (t.tolist() for t in (self._nan, self._inf, self._n, self._zeros))
        s, q, mn, mx = (t.tolist() for t in (self._s, self._q, self._mn, self._mx))
        out: list[TensorStats] = []
        shift: dict[int, float] = {}
        for i in range(self.size):
            numel = self._seen[i]
            whole = wholes[i]
            if whole is None:
                out.append(TensorStats.unavailable(numel, dtypes[i]))
                continue
            if numel == 0:
                out.append(TensorStats(0, dtypes[i], _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, 0, 0))
                continue
            zero_fraction = zeros[i] / numel
            if n[i] == 0:
                out.append(
                    TensorStats(
                        numel,
                        dtypes[i],
                        _NAN,
                        _NAN,
                        _NAN,
                        _NAN,
                        _NAN,
                        zero_fraction,
                        nan[i],
                        inf[i],
                    )
                )
                continue
            mean = s[i] / n[i]
            std = _NAN
            if n[i] > 1:
                m2 = q[i] - s[i] * mean
                if mn[i] == mx[i]:
                    m2 = 0.0
                elif m2 <= 0.0 or q[i] > _FINAL_SHIFT_RATIO * m2:
                    shift[i] = mean  # |mean| >> spread: sum(x^2) - n*mean^2 cancels
                std = math.sqrt(max(m2, 0.0) / (n[i] - 1))
            out.append(
                TensorStats(
                    numel,
                    dtypes[i],
                    mean,
                    std,
                    mn[i],
                    mx[i],
                    math.sqrt(q[i]),
                    zero_fraction,
                    nan[i],
                    inf[i],
                )
            )
        if shift:
            m2s = _shifted_m2([wholes[i] for i in shift], list(shift.values()), chunk)  # type: ignore[misc]
            for i, m2 in zip(shift, m2s, strict=True):
                out[i] = replace(out[i], std=math.sqrt(max(m2, 0.0) / (n[i] - 1)))
        return out


def _shifted_m2(
    tensors: Sequence[torch.Tensor], shifts: Sequence[float], chunk: int
) -> list[float]:
    """Sums of squared deviations from the means, by one pass over ``x - mean`` of each."""
    m = Moments(len(tensors))
    for i, (t, shift) in enumerate(zip(tensors, shifts, strict=True)):
        for raw in _chunks(_prepare(t), chunk):
            m.add(_compute_dtype(raw) - shift, i)
    m.flush()
    n, s, q = m._n.tolist(), m._s.tolist(), m._q.tolist()
    return [max(qi - si * si / ni, 0.0) if ni else 0.0 for ni, si, qi in zip(n, s, q, strict=True)]


@torch.no_grad()
def tensor_stats(t: torch.Tensor, *, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> TensorStats:
    """Statistics of ``t`` in bounded memory (chunks of ``chunk_elements`` flat elements).

    Works for every real dtype (float16/bfloat16/float32/float64, integers, bool), 0-dim and empty
    tensors; meta tensors are not materialised (NaN values, ``None`` counts).
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"tensor_stats expects a torch.Tensor, got {type(t).__name__}")
    chunk = _check_chunk(chunk_elements)
    numel, dtype = t.numel(), dtype_name(t.dtype)
    if _is_meta(t):
        return TensorStats.unavailable(numel, dtype)
    m = Moments()
    for c in _chunks(_prepare(t), chunk):
        m.add(c)
    return m.finish([t], [dtype], chunk)[0]


def change_columns(ch: Mapping[str, Any]) -> dict[str, Any]:
    """The change columns of a frame row (``rel_l2_change`` is ``relative_l2_change``).

    As :func:`change_frame` and :meth:`sd_widgets.LoadReport.to_frame` show them.
    """
    return {
        "max_abs_change": ch["max_abs_change"],
        "mean_abs_change": ch["mean_abs_change"],
        "rel_l2_change": ch["relative_l2_change"],
        "changed_fraction": ch["changed_fraction"],
    }


# --------------------------------------------------------------------------------------------
# change statistics


def _nan_change(numel: int) -> dict[str, Any]:
    return {
        "numel": numel,
        "compared": None,
        "max_abs_change": _NAN,
        "mean_abs_change": _NAN,
        "relative_l2_change": _NAN,
        "changed_fraction": _NAN,
        "changed_count": None,
    }


class Change:
    """How much ``after`` differs from ``before``, for ``size`` tensors.

    Fed pairs of matching chunks (:meth:`add`), reduced together like :class:`Moments`. One
    pass over each pair measures the change and both sides' moments: those go to the
    :class:`Moments` given as ``after`` (every pair) and ``before`` (pairs added
    ``with_before``; the others' before was measured already, e.g. while a snapshot copied it).

    The one way sd_widgets measures a change (see :func:`change_stats` for the fields).
    """

    def __init__(
        self, size: int = 1, *, before: Moments | None = None, after: Moments | None = None
    ) -> None:
        self.size = size
        i64, f64 = torch.int64, torch.float64
        self._numel = [0] * size
        self._compared = torch.zeros(size, dtype=i64)
        self._changed = torch.zeros(size, dtype=i64)
        self._max_abs = torch.zeros(size, dtype=f64)
        self._abs_sum = torch.zeros(size, dtype=f64)
        self._diff_sq = torch.zeros(size, dtype=f64)
        self._before_sq = torch.zeros(size, dtype=f64)
        self._before, self._after = before, after
        self._queue = _Queue(partial(self._reduce, False))
        self._with_before = _Queue(partial(self._reduce, True))
        for m in (before, after):
            if m is not None:
                m._feeders.append(self.flush)

    def add(self, rb: torch.Tensor, ra: torch.Tensor, index: int = 0) -> None:
        """Add a pair of 1-D chunks of the same length (before, after) of tensor ``index``."""
        self.add_all([(rb, ra)], [index])

    def add_all(
        self,
        pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
        indices: Sequence[int],
        *,
        with_before: bool = False,
    ) -> None:
        """:meth:`add` of many pairs (``pairs[j]`` of tensor ``indices[j]``).

        ``with_before``: the pairs' before chunks go to the ``before`` moments too.
        """
        numel = self._numel
        before = self._before._seen if with_before and self._before is not None else None
        after = self._after._seen if self._after is not None else None
        items, ids = [], []
        for (rb, ra), index in zip(pairs, indices, strict=True):
            rb, ra = _values(rb), _values(ra)
            if rb.dtype != ra.dtype:  # float32 against float64 (an integer, a cast)
                rb, ra = rb.to(torch.float64), ra.to(torch.float64)
            n = rb.numel()
            numel[index] += n
            if before is not None:
                before[index] += n
            if after is not None:
                after[index] += n
            if n:
                items.append((rb, ra))
                ids.append(index)
        (self._with_before if with_before else self._queue).put_all(ids, items)

    @torch.no_grad()
    def _reduce(
        self, with_before: bool, ids: list[int], items: list[tuple[torch.Tensor, ...]]
    ) -> None:
        owner, (before, after, change) = _pair_parts(items)
        idx = torch.tensor(ids, dtype=torch.int64)[torch.from_numpy(owner)]
        if with_before and self._before is not None:
            self._before._add_parts(idx, before)
        if self._after is not None:
            self._after._add_parts(idx, after)
        compared, changed, peak, abs_sum, diff_sq, before_sq = change
        self._compared.index_add_(0, idx, compared)
        self._changed.index_add_(0, idx, changed)
        self._max_abs.scatter_reduce_(0, idx, peak, "amax")
        self._abs_sum.index_add_(0, idx, abs_sum)
        self._diff_sq.index_add_(0, idx, diff_sq)
        self._before_sq.index_add_(0, idx, before_sq)

    def flush(self) -> None:
        """Reduce the pairs still waiting (:meth:`finish` does it)."""
        self._queue.flush()
        self._with_before.flush()

    def finish(self) -> list[dict[str, Any]]:
        """The change statistics of every tensor (see :func:`change_stats`)."""
        self.flush()
        compared, changed = self._compared.tolist(), self._changed.tolist()
        max_abs, abs_sum = self._max_abs.tolist(), self._abs_sum.tolist()
        diff_sq, before_sq = self._diff_sq.tolist(), self._before_sq.tolist()
        out = []
        for i in range(self.size):
            numel = self._numel[i]
            if numel == 0:
                row = _nan_change(0)
                row.update(compared=0, changed_count=0)
                out.append(row)
                continue
            if compared[i] == 0:
                row = _nan_change(numel)
                row.update(
                    compared=0, changed_count=changed[i], changed_fraction=changed[i] / numel
                )
                out.append(row)
                continue
            if before_sq[i] > 0:
                rel = math.sqrt(diff_sq[i]) / math.sqrt(before_sq[i])
            else:
                rel = 0.0 if diff_sq[i] == 0 else math.inf
            out.append(
                {
                    "numel": numel,
                    "compared": compared[i],
                    "max_abs_change": max_abs[i],
                    "mean_abs_change": abs_sum[i] / compared[i],
                    "relative_l2_change": rel,
                    "changed_fraction": changed[i] / numel,
                    "changed_count": changed[i],
                }
            )
        return out


@torch.no_grad()
def change_stats(
    before: torch.Tensor,
    after: torch.Tensor,
    *,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> dict[str, Any]:
    """How much ``after`` differs from ``before`` (same shape; dtypes may differ).

    Returns a dict with

    * ``numel``; ``compared``: positions where both values are finite (the ones measured below);
    * ``max_abs_change``, ``mean_abs_change``: of ``after - before`` over compared positions;
    * ``relative_l2_change``: ``‖after − before‖ / ‖before‖`` over compared positions (0.0 when
      both norms are 0, inf when only ``before`` is all zeros);
    * ``changed_count`` / ``changed_fraction``: positions whose value differs (NaN→NaN and
      inf→inf count as unchanged), over all ``numel`` positions.

    Meta tensors give NaN values and ``None`` counts. Raises ``ValueError`` on a shape mismatch.
    """
    if not isinstance(before, torch.Tensor) or not isinstance(after, torch.Tensor):
        raise TypeError(
            "change_stats expects two torch.Tensors, got "
            f"{type(before).__name__} and {type(after).__name__}"
        )
    if before.shape != after.shape:
        raise ValueError(
            f"change_stats needs tensors of the same shape; got before {tuple(before.shape)} "
            f"and after {tuple(after.shape)}. Compare tensors that were loaded as is, or slice "
            "the overlapping region first."
        )
    chunk = _check_chunk(chunk_elements)
    if _is_meta(before) or _is_meta(after):
        return _nan_change(before.numel())
    before, after = _prepare(before), _prepare(after)
    if after.device != before.device:
        after = after.to(before.device)
    ch = Change()
    for rb, ra in zip(_logical_chunks(before, chunk), _logical_chunks(after, chunk), strict=True):
        ch.add(rb, ra)
    return ch.finish()[0]


# --------------------------------------------------------------------------------------------
# histograms


def _finite_range(t: torch.Tensor, chunk: int) -> tuple[float, float] | None:
    if _is_meta(t) or t.numel() == 0:
        return None
    lo, hi = math.inf, -math.inf
    for raw in _chunks(_prepare(t), chunk):
        c = _compute_dtype(raw)
        mn, mx = (float(v) for v in torch.aminmax(c))  # NaN propagates: finite = all finite
        if not (math.isfinite(mn) and math.isfinite(mx)):
            c = c[torch.isfinite(c)]
            if c.numel() == 0:
                continue
            mn, mx = (float(v) for v in torch.aminmax(c))
        lo, hi = min(lo, mn), max(hi, mx)
    return (lo, hi) if lo <= hi else None


@torch.no_grad()
def shared_edges(
    *tensors: torch.Tensor,
    bins: int = 50,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """``bins + 1`` float64 bin edges spanning the finite values of all ``tensors``.

    Use the same edges for a before and an after histogram so the two are comparable. When all
    finite values are equal the edges span a small symmetric range around that value
    (``±max(1% of |value|, 1e-3)``); with no finite value at all (empty, meta, all NaN) they span
    ``[-1, 1]``.
    """
    bins = int(bins)
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    chunk = _check_chunk(chunk_elements)
    lo, hi = math.inf, -math.inf
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"shared_edges expects torch.Tensors, got {type(t).__name__}")
        r = _finite_range(t, chunk)
        if r is not None:
            lo, hi = min(lo, r[0]), max(hi, r[1])
    if lo > hi:
        lo, hi = -1.0, 1.0
    elif lo == hi:
        half = max(abs(lo) * 0.01, 1e-3)
        lo, hi = lo - half, hi + half
    return torch.linspace(lo, hi, bins + 1, dtype=torch.float64)


def _as_edges(edges: torch.Tensor | Sequence[float]) -> torch.Tensor:
    e = torch.as_tensor(edges, dtype=torch.float64).detach().cpu().reshape(-1)
    if e.numel() < 2:
        raise ValueError(f"edges needs at least 2 values, got {e.numel()}")
    if not bool(torch.isfinite(e).all()) or not bool((e[1:] > e[:-1]).all()):
        raise ValueError("edges must be finite and strictly increasing")
    return e


def _is_uniform(e: torch.Tensor) -> bool:
    w = e[1:] - e[:-1]
    return bool((w - w.mean()).abs().max() <= 1e-6 * w.mean())


@torch.no_grad()
def histogram(
    t: torch.Tensor,
    edges: torch.Tensor | Sequence[float],
    *,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """int64 counts of the finite values of ``t`` in the bins given by ``edges``.

    Bins are ``[e0, e1), [e1, e2), ..., [e_{n-1}, e_n]``: a value equal to the last edge counts
    in the last bin; values outside ``[e0, e_n]`` and NaN/±inf are not counted. Evenly spaced
    edges (as from :func:`shared_edges`) use chunked ``torch.histc``, whose bin arithmetic is done
    in the tensor's precision (float32 for float32/16 data, so a value within rounding of an inner
    edge may land in the neighbouring bin); other edges use ``torch.bucketize``. Meta and empty
    tensors give all-zero counts.
    """
    e = _as_edges(edges)
    nbins = e.numel() - 1
    counts = torch.zeros(nbins, dtype=torch.int64)
    if _is_meta(t) or t.numel() == 0:
        return counts
    chunk = min(_check_chunk(chunk_elements), _HISTC_MAX_CHUNK)
    t = _prepare(t)
    lo, hi = float(e[0]), float(e[-1])
    uniform = _is_uniform(e)
    # histc casts lo/hi to the data's dtype; if the range collapses in float32, bin in float64.
    f32_collapses = float(torch.tensor(lo, dtype=torch.float32)) >= float(
        torch.tensor(hi, dtype=torch.float32)
    )
    for raw in _chunks(t, chunk):
        c = _compute_dtype(raw)
        if uniform and c.dtype == torch.float32 and f32_collapses:
            c = c.double()
        if uniform:
            # histc ignores NaN, ±inf and values outside [lo, hi]; counts <= 2**24 are exact.
            counts += torch.histc(c, bins=nbins, min=lo, max=hi).round().to(torch.int64).cpu()
        else:
            c = c[(c >= lo) & (c <= hi)].double().cpu()
            idx = (torch.bucketize(c, e, right=True) - 1).clamp_(max=nbins - 1)
            counts += torch.bincount(idx, minlength=nbins)
    return counts


@dataclass(frozen=True)
class Histogram:
    """Before/after counts on shared bin edges; plain lists, ready to send to a browser."""

    edges: list[float]
    before: list[int]
    after: list[int]
    key: str | None = None

    @property
    def bins(self) -> int:
        """Number of bins."""
        return len(self.edges) - 1

    def to_dict(self) -> dict[str, Any]:
        """``{"key", "edges", "before", "after"}`` of plain Python floats/ints (JSON-ready)."""
        return {
            "key": self.key,
            "edges": [float(x) for x in self.edges],
            "before": [int(x) for x in self.before],
            "after": [int(x) for x in self.after],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Histogram:
        """Inverse of :meth:`to_dict`."""
        return cls(list(d["edges"]), list(d["before"]), list(d["after"]), d.get("key"))


@torch.no_grad()
def before_after_histogram(
    before: torch.Tensor,
    after: torch.Tensor,
    bins: int = 50,
    key: str | None = None,
    *,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Histogram:
    """Histograms of ``before`` and ``after`` on shared edges (shapes may differ)."""
    edges = shared_edges(before, after, bins=bins, chunk_elements=chunk_elements)
    return Histogram(
        edges=edges.tolist(),
        before=histogram(before, edges, chunk_elements=chunk_elements).tolist(),
        after=histogram(after, edges, chunk_elements=chunk_elements).tolist(),
        key=key,
    )


# --------------------------------------------------------------------------------------------
# BatchNorm


def _summary(x: torch.Tensor) -> dict[str, float]:
    fin = x[torch.isfinite(x)]
    if fin.numel() == 0:
        return {"min": _NAN, "max": _NAN, "mean": _NAN, "std": _NAN}
    return {
        "min": float(fin.min()),
        "max": float(fin.max()),
        "mean": float(fin.mean()),
        "std": float(fin.std()) if fin.numel() > 1 else _NAN,
    }


@torch.no_grad()
def bn_channel_stats(
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    num_batches_tracked: torch.Tensor | int | None = None,
) -> dict[str, Any]:
    """Per-channel and overall summaries of BatchNorm running statistics.

    Returns ``{"num_channels", "mean": [...], "var": [...], "std": [...],
    "mean_summary": {min,max,mean,std}, "var_summary": {min,max,mean,std},
    "nonpositive_var": int, "nonfinite": int, "is_reset": bool, "num_batches_tracked": int|None}``.
    ``std`` is ``sqrt(max(var, 0))`` per channel; ``is_reset`` is True when the buffers hold the
    values ``reset_running_stats()`` puts there (mean 0, var 1), i.e. they were never trained or
    were reset. Meta buffers give ``None`` lists and NaN summaries.
    """
    if running_mean.dim() != 1 or running_mean.shape != running_var.shape:
        raise ValueError(
            "bn_channel_stats expects 1-D running_mean and running_var of the same length; got "
            f"{tuple(running_mean.shape)} and {tuple(running_var.shape)}"
        )
    nbt: int | None
    if isinstance(num_batches_tracked, torch.Tensor):
        nbt = None if _is_meta(num_batches_tracked) else int(num_batches_tracked.item())
    else:
        nbt = None if num_batches_tracked is None else int(num_batches_tracked)
    c = running_mean.numel()
    if _is_meta(running_mean) or _is_meta(running_var):
        nan_summary = {"min": _NAN, "max": _NAN, "mean": _NAN, "std": _NAN}
        return {
            "num_channels": c,
            "mean": None,
            "var": None,
            "std": None,
            "mean_summary": dict(nan_summary),
            "var_summary": dict(nan_summary),
            "nonpositive_var": None,
            "nonfinite": None,
            "is_reset": None,
            "num_batches_tracked": nbt,
        }
    mean = running_mean.detach().to("cpu", torch.float64)
    var = running_var.detach().to("cpu", torch.float64)
    return {
        "num_channels": c,
        "mean": mean.tolist(),
        "var": var.tolist(),
        "std": var.clamp(min=0).sqrt().tolist(),
        "mean_summary": _summary(mean),
        "var_summary": _summary(var),
        "nonpositive_var": int((var <= 0).sum()),
        "nonfinite": int((~torch.isfinite(mean)).sum() + (~torch.isfinite(var)).sum()),
        "is_reset": bool(c > 0 and (mean == 0).all() and (var == 1).all()),
        "num_batches_tracked": nbt,
    }


# --------------------------------------------------------------------------------------------
# frames


_STATS_FIELDS = [f.name for f in fields(TensorStats)]


def _value(mapping: Mapping[str, Any], key: str) -> Any:
    """``mapping[key]``, materialised through ``mapping.tensor(key)`` for lazy checkpoints."""
    v = mapping[key]
    if not isinstance(v, torch.Tensor) and callable(getattr(mapping, "tensor", None)):
        v = mapping.tensor(key)  # type: ignore[attr-defined]
    return v


def stats_frame(
    mapping: Mapping[str, Any],
    *,
    progress: bool | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> pd.DataFrame:
    """One row per key: ``key``, ``shape`` and every :class:`TensorStats` field.

    ``mapping`` is a state dict, or a lazy mapping with a ``.tensor(key)`` method (such as
    :class:`sd_widgets.Checkpoint`) whose tensors are then materialised one at a time. Non-tensor
    values (e.g. ``_extra_state``) get a row with NaN statistics and their type name as ``dtype``.
    """
    import pandas as pd

    rows = []
    keys = list(mapping.keys())
    for key in iter_progress(keys, len(keys), "tensor stats", progress):
        v = _value(mapping, key)
        if isinstance(v, torch.Tensor):
            st = tensor_stats(v, chunk_elements=chunk_elements)
            shape: tuple[int, ...] | None = tuple(v.shape)
        else:
            st = TensorStats(0, type(v).__name__, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, 0, 0)
            shape = None
        rows.append({"key": key, "shape": shape, **st.as_dict()})
    return pd.DataFrame(rows, columns=["key", "shape", *_STATS_FIELDS])


_CHANGE_COLUMNS = [
    "key",
    "shape",
    "before_dtype",
    "after_dtype",
    "before_mean",
    "after_mean",
    "before_std",
    "after_std",
    "before_min",
    "after_min",
    "before_max",
    "after_max",
    "before_l2",
    "after_l2",
    "max_abs_change",
    "mean_abs_change",
    "rel_l2_change",
    "changed_fraction",
]


def change_frame(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    keys: Iterable[str] | None = None,
    progress: bool | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> pd.DataFrame:
    """One row per key with before/after statistics and change statistics.

    Columns: ``key, shape, before_dtype, after_dtype, before_/after_ mean, std, min, max, l2,
    max_abs_change, mean_abs_change, rel_l2_change, changed_fraction`` (``rel_l2_change`` is
    :func:`change_stats`'s ``relative_l2_change``; change columns are NaN when shapes differ).
    ``keys`` defaults to the keys present in both mappings, in ``before``'s order.
    """
    import pandas as pd

    if keys is None:
        keys = [k for k in before if k in after]
    keys = list(keys)
    rows = []
    for key in iter_progress(keys, len(keys), "change stats", progress):
        b, a = _value(before, key), _value(after, key)
        if not isinstance(b, torch.Tensor) or not isinstance(a, torch.Tensor):
            continue
        sb = tensor_stats(b, chunk_elements=chunk_elements)
        sa = tensor_stats(a, chunk_elements=chunk_elements)
        ch = (
            change_stats(b, a, chunk_elements=chunk_elements)
            if b.shape == a.shape
            else _nan_change(a.numel())
        )
        row: dict[str, Any] = {"key": key, "shape": tuple(a.shape)}
        for name in ("dtype", "mean", "std", "min", "max", "l2"):
            row[f"before_{name}"] = getattr(sb, name)
            row[f"after_{name}"] = getattr(sa, name)
        row.update(change_columns(ch))
        rows.append(row)
    return pd.DataFrame(rows, columns=_CHANGE_COLUMNS)
