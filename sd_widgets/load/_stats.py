"""Tensor statistics and histograms, computed with torch in bounded memory.

Everything here is plain torch (pandas only inside :func:`stats_frame` / :func:`change_frame`,
tqdm only inside :func:`iter_progress`). Tensors are walked in flat chunks of at most
``chunk_elements`` elements, so the extra memory is a few chunks whatever the tensor size, and a
100M-element float32 tensor takes a few tens of milliseconds (see ``benchmarks/bench_stats.py``).

Conventions
-----------
* ``mean``, ``std``, ``min``, ``max`` and ``l2`` are computed on the *finite* values only;
  ``nan_count`` and ``inf_count`` say how many values were left out. ``zero_fraction`` is the
  number of exact zeros divided by ``numel`` (all elements).
* ``std`` is the sample standard deviation (``correction=1``, like ``torch.std``); it is NaN when
  fewer than two finite values exist.
* Accumulation is in float64: float32 data is summed in blocks of 1,024 values (torch's own
  vectorised float32 reduction) and the block sums are added in float64; float64, integer and bool
  data are converted to float64 chunk by chunk; float16/bfloat16 go through float32. When the mean
  dominates the spread (``|mean| >> std``) a second, shifted pass keeps the variance accurate.
* Meta tensors are never materialised: their stats carry ``numel`` and ``dtype`` with NaN values
  and ``None`` counts. Empty tensors give NaN values and zero counts.
* Complex tensors are summarised by their magnitude ``|z|``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ..units import dtype_name

if TYPE_CHECKING:
    import pandas as pd


DEFAULT_CHUNK_ELEMENTS = 2**24
"""Elements per chunk (64 MiB of float32)."""

PROGRESS_THRESHOLD = 20
"""``progress=None`` shows a progress bar only for this many tensors or more."""

_ROW = 1024  # float32 values summed in float32 before the float64 accumulation
_F32_SAFE_MAX = 1e17  # |x| above this: squares could overflow float32 -> use float64
_F32_SAFE_MIN = 1e-17  # all |x| below this: squares underflow float32 -> use float64
_SHIFT_RATIO = 16.0  # second, shifted pass when sum(x^2) / sum((x - mean)^2) exceeds this
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


def _minmax(c: torch.Tensor) -> tuple[float, float]:
    """(min, max) in one ``aminmax`` pass; NaN when there is one."""
    mn, mx = torch.aminmax(c)
    return float(mn), float(mx)


def _split_finite(c: torch.Tensor) -> tuple[torch.Tensor, int, int, float, float]:
    """(finite values, nan count, inf count, finite min, finite max) of a compute-dtype chunk.

    Fast path: ``aminmax`` propagates NaN and shows ±inf, so finite min and max prove every value
    is finite and no mask is built.
    """
    mn, mx = _minmax(c)
    if math.isfinite(mn) and math.isfinite(mx):
        return c, 0, 0, mn, mx
    finite = torch.isfinite(c)
    nan = int(torch.isnan(c).sum())
    inf = c.numel() - int(finite.sum()) - nan
    c = c[finite]
    if c.numel() == 0:
        return c, nan, inf, _NAN, _NAN
    mn, mx = _minmax(c)
    return c, nan, inf, mn, mx


def _rows_ok(c: torch.Tensor, maxabs: float) -> bool:
    return c.dtype == torch.float32 and (maxabs == 0.0 or _F32_SAFE_MIN <= maxabs <= _F32_SAFE_MAX)


def _sum_sumsq(c: torch.Tensor, maxabs: float) -> tuple[float, float]:
    """(sum, sum of squares) of a finite 1-D compute-dtype chunk, accumulated in float64."""
    if _rows_ok(c, maxabs):
        s = q = 0.0
        n = c.numel()
        m = n - n % _ROW
        if m:
            body = (c if m == n else c[:m]).view(-1, _ROW)
            # float32 within rows of 1,024, float64 across them; the norm of the row norms
            s += float(body.sum(dim=1).sum(dtype=torch.float64))
            rows = torch.linalg.vector_norm(body, dim=1)
            q += float(torch.linalg.vector_norm(rows, dtype=torch.float64)) ** 2
        if m < n:
            tail = c[m:].double()
            s += float(tail.sum())
            q += float(torch.dot(tail, tail))
        return s, q
    d = c if c.dtype == torch.float64 else c.double()
    return float(d.sum()), float(torch.dot(d, d))


#: float dtype -> (same-size integer dtype, the bits of -0.0 read as that integer: its minimum)
_BITS = {torch.float32: (torch.int32, -(2**31)), torch.float64: (torch.int64, -(2**63))}


def _zeros(c: torch.Tensor, mn: float, mx: float) -> int:
    """Exact number of zeros (+0.0 and -0.0) of a finite chunk whose range is [mn, mx].

    No pass when the range excludes 0. Else the bits are counted as integers (2.5x faster
    than counting floats): +0.0 is the only all-zero pattern; -0.0 is the integer minimum,
    so one ``amin`` tells whether any exists (then the floats are counted).
    """
    if mn > 0 or mx < 0:
        return 0
    bits = _BITS.get(c.dtype)
    if bits is not None and c.numel() > 65536 and c.is_contiguous():  # two cheap passes pay
        as_int = c.view(bits[0])
        if int(as_int.amin()) != bits[1]:  # no -0.0: every zero is all-zero bits
            return c.numel() - int(torch.count_nonzero(as_int))
    return c.numel() - int(torch.count_nonzero(c))


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
        d = {f.name: getattr(self, f.name) for f in fields(self)}  # scalars: no deep copy
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
    """The statistics of one tensor, fed chunk by chunk (:meth:`add`), then :meth:`finish`.

    The one way sd_widgets measures a tensor: :func:`tensor_stats` feeds it the chunks of a
    tensor, and a load feeds it each chunk of its snapshot copy and of the loaded tensor while
    that chunk is in the CPU cache.
    """

    def __init__(self) -> None:
        self.n = 0  # finite values
        self.seen = 0
        self.nan = 0
        self.inf = 0
        self.zeros = 0
        self.s = 0.0
        self.q = 0.0
        self.mn = math.inf
        self.mx = -math.inf

    def add(self, raw: torch.Tensor) -> float | None:
        """Add a 1-D chunk (any real dtype, complex as ``|z|``).

        Returns the chunk's sum of squares when all its values are finite, else None.
        """
        c, nan, inf, mn, mx = _split_finite(_compute_dtype(_prepare(raw)))
        self.seen += raw.numel()
        self.nan += nan
        self.inf += inf
        if c.numel() == 0:
            return None
        self.n += c.numel()
        self.mn = min(self.mn, mn)
        self.mx = max(self.mx, mx)
        self.zeros += _zeros(c, mn, mx)
        s, q = _sum_sumsq(c, max(abs(mn), abs(mx)))
        self.s += s
        self.q += q
        return q if nan == inf == 0 else None

    def finish(
        self, whole: torch.Tensor, dtype: str, chunk: int = DEFAULT_CHUNK_ELEMENTS
    ) -> TensorStats:
        """The :class:`TensorStats`; ``whole`` is the tensor the chunks came from.

        It is read again only when ``|mean| >> std`` (a second, shifted pass keeps the
        variance exact).
        """
        numel = self.seen
        if numel == 0:
            return TensorStats(0, dtype, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, 0, 0)
        zero_fraction = self.zeros / numel
        if self.n == 0:
            return TensorStats(
                numel, dtype, _NAN, _NAN, _NAN, _NAN, _NAN, zero_fraction, self.nan, self.inf
            )
        mean = self.s / self.n
        std = _NAN
        if self.n > 1:
            m2 = self.q - self.s * mean
            if self.mn == self.mx:
                m2 = 0.0
            elif m2 <= 0.0 or self.q > _SHIFT_RATIO * m2:
                # |mean| >> spread: sum(x^2) - n*mean^2 cancels; redo the sum around the mean.
                m2 = _shifted_m2(_prepare(whole), chunk, mean)
            std = math.sqrt(max(m2, 0.0) / (self.n - 1))
        return TensorStats(
            numel,
            dtype,
            mean,
            std,
            self.mn,
            self.mx,
            math.sqrt(self.q),
            zero_fraction,
            self.nan,
            self.inf,
        )


def _shifted_m2(t: torch.Tensor, chunk: int, shift: float) -> float:
    """Sum of squared deviations from the mean via a pass over ``x - shift``."""
    n = 0
    s = q = 0.0
    for raw in _chunks(t, chunk):
        c, _, _, _, _ = _split_finite(_compute_dtype(raw))
        if c.numel() == 0:
            continue
        d = c - shift
        dmn, dmx = _minmax(d)
        ds, dq = _sum_sumsq(d, max(abs(dmn), abs(dmx)))
        n += c.numel()
        s += ds
        q += dq
    return max(q - s * s / n, 0.0)


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
    return m.finish(t, dtype, chunk)


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
    """How much ``after`` differs from ``before``, fed pairs of matching chunks (:meth:`add`).

    The one way sd_widgets measures a change (see :func:`change_stats` for the fields).
    """

    def __init__(self) -> None:
        self.numel = 0
        self.compared = 0
        self.changed = 0
        self.max_abs = 0.0
        self.abs_sum = 0.0
        self.diff_sq = 0.0
        self.before_sq = 0.0
        self.all_finite = True

    def add(self, rb: torch.Tensor, ra: torch.Tensor, before_sq: float | None = None) -> None:
        """Add a pair of 1-D chunks of the same length (before, after).

        ``before_sq``: the before chunk's sum of squares when the caller measured it (what
        :meth:`Moments.add` returns), spared here when every position is finite.
        """
        rb, ra = _prepare(rb), _prepare(ra)
        finite = True
        self.numel += rb.numel()
        same_f32 = rb.dtype == torch.float32 and ra.dtype == torch.float32
        b = rb if same_f32 else rb.to(torch.float64)
        a = ra if same_f32 else ra.to(torch.float64)
        d = torch.sub(a, b).abs_()
        dmn, dmx = _minmax(d)  # of |a - b|: NaN propagates, so finite proves all finite
        if not (math.isfinite(dmn) and math.isfinite(dmx)):
            # Some position is NaN/inf on either side (or float32 overflowed): measure the
            # positions where both are finite in float64, count changes with NaN == NaN.
            self.all_finite = finite = False
            both = torch.isfinite(a) & torch.isfinite(b)
            ne = (a != b) & ~(torch.isnan(a) & torch.isnan(b))
            self.changed += int(ne.sum())
            b = b[both].double()
            d = (a[both].double() - b).abs_()
            if d.numel() == 0:
                return
            dmn, dmx = _minmax(d)
        else:
            # finite: |x - y| == 0 exactly when x == y; none at all when the minimum is > 0
            self.changed += d.numel() - _zeros(d, dmn, dmx)
        self.compared += d.numel()
        amx = dmx
        self.max_abs = max(self.max_abs, amx)
        a_sum, d_sq = _sum_sumsq(d, amx)
        self.abs_sum += a_sum
        self.diff_sq += d_sq
        if before_sq is not None and finite:
            self.before_sq += before_sq  # the chunk's own sum of squares, measured already
        else:
            bmn, bmx = _minmax(b)
            self.before_sq += _sum_sumsq(b, max(abs(bmn), abs(bmx)))[1]

    def finish(self) -> dict[str, Any]:
        """The change statistics (see :func:`change_stats`)."""
        numel = self.numel
        if numel == 0:
            out = _nan_change(0)
            out.update(compared=0, changed_count=0)
            return out
        if self.compared == 0:
            out = _nan_change(numel)
            out.update(
                compared=0, changed_count=self.changed, changed_fraction=self.changed / numel
            )
            return out
        if self.before_sq > 0:
            rel = math.sqrt(self.diff_sq) / math.sqrt(self.before_sq)
        else:
            rel = 0.0 if self.diff_sq == 0 else math.inf
        return {
            "numel": numel,
            "compared": self.compared,
            "max_abs_change": self.max_abs,
            "mean_abs_change": self.abs_sum / self.compared,
            "relative_l2_change": rel,
            "changed_fraction": self.changed / numel,
            "changed_count": self.changed,
        }


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
    return ch.finish()


# --------------------------------------------------------------------------------------------
# histograms


def _finite_range(t: torch.Tensor, chunk: int) -> tuple[float, float] | None:
    if _is_meta(t) or t.numel() == 0:
        return None
    lo, hi = math.inf, -math.inf
    for raw in _chunks(_prepare(t), chunk):
        c, _, _, mn, mx = _split_finite(_compute_dtype(raw))
        if c.numel():
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
