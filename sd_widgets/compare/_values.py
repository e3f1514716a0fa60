"""Comparing the *values* of two state dicts: what changed, and did it really load.

``compare_values(a, b)`` lines the keys up exactly as :func:`sd_widgets.compare` does (``b``
against ``a``, renames applied to ``b``'s keys), then reads the tensors of every comparable
pair and measures, in float64:

* ``equal``: same dtype → the bytes are identical (NaN included); a dtype mismatch → the
  values are equal once both are float64 (a cast that lost nothing);
* ``max_abs_diff`` = max |b − a|, ``rel_l2_change`` = ‖b − a‖ / ‖a‖ (0 when equal, inf when
  ``a`` is all zeros and ``b`` is not), ``cosine`` = a·b / (‖a‖ ‖b‖).

Reading is streamed and pairwise: large tensors are read in chunks of rows (only those bytes
of a safetensors file; views of a memory-mapped torch file or of a module's tensors), small
ones together in batches, so memory stays a few chunks whatever the checkpoints' sizes.
Nothing is kept after a row is measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn.parameter import is_lazy

from .. import _kernels
from ..checkpoint import Checkpoint, SourceLike, open_checkpoint
from ..statuses import BN_BUFFERS, Status
from ..units import gc_paused
from ._compare import Comparison, compare
from ._renames import RenamesLike

if TYPE_CHECKING:
    import pandas as pd


#: relative L2 change at or below which a changed tensor is called "tiny" (a cast's rounding,
#: an optimizer step or two); above it "large"
TINY = 1e-3

#: what happened to a key's values, in the order the views rank them (most alarming first)
CHANGES: dict[str, str] = {
    "nan_appeared": "NaN appeared: b holds more NaN values than a",
    "from_zero": "from zero: a is all zeros and b is not (a fresh bias, a BatchNorm buffer)",
    "large": f"changed: relative L2 change above {TINY:g}",
    "tiny": f"tiny change: relative L2 change at most {TINY:g} (rounding, a cast)",
    "identical": "identical: same bytes (or, across dtypes, the same float64 values)",
    "not_compared": "not compared: the key is on one side only, the shapes differ, or a side "
    "has no values (meta device, or a lazy module not initialised yet)",
}

#: every column of :meth:`ValueComparison.to_frame`, in order, with what it holds
VALUE_FIELDS: dict[str, str] = {
    "key": "the row's key (as in compare: a's key when a has it, else b's after renames)",
    "status": "the key-level status of b against a (match, shape_mismatch, dtype_mismatch, "
    "missing, missing_buffer, unexpected)",
    "equal": "bytes identical (same dtype) or float64 values equal (dtype mismatch); False "
    "when not compared",
    "max_abs_diff": "max |b - a| in float64 (NaN when not compared)",
    "rel_l2_change": "‖b - a‖ / ‖a‖ in float64: 0 when equal, inf when a is all zeros and b is not",
    "cosine": "a·b / (‖a‖ ‖b‖) in float64; NaN when a norm is 0",
    "change": "one of CHANGES",
    "module": "module path of the key",
    "a_key": "a's own name for the key; None when a does not have it",
    "b_key": "b's own name for the key (before renames); None when b does not have it",
    "a_dtype": "dtype name in a",
    "b_dtype": "dtype name in b",
    "numel": "elements compared (0 when not compared)",
    "a_l2": "‖a‖ in float64",
    "b_l2": "‖b‖ in float64",
    "a_nan": "NaN values in a",
    "b_nan": "NaN values in b",
}

_NAN = float("nan")
#: a pair whose larger side is at most this many bytes is read and measured with others
SMALL_BYTES = 1 << 20
#: bytes of one batch of small pairs read together (per side)
BATCH_BYTES = 16 << 20
#: elements read and measured at once of a large pair (per side): rows of the first dimension
READ_ELEMENTS = 1 << 22

_COMPARABLE = (Status.MATCH.value, Status.DTYPE_MISMATCH.value)
#: real dtypes measured in float64 (float32 cannot hold every value); the rest in float32
_WIDE = frozenset({torch.float64, torch.int32, torch.int64, torch.uint32, torch.uint64})


class ValueRow(NamedTuple):
    """One key of a value comparison (the columns of :data:`VALUE_FIELDS`)."""

    key: str
    status: str
    equal: bool
    max_abs_diff: float
    rel_l2_change: float
    cosine: float
    change: str
    module: str
    a_key: str | None
    b_key: str | None
    a_dtype: str | None
    b_dtype: str | None
    numel: int
    a_l2: float
    b_l2: float
    a_nan: int
    b_nan: int

    @property
    def changed(self) -> bool:
        """Compared and not equal."""
        return self.change not in ("identical", "not_compared")

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-safe values.

        Non-finite floats become None; ``rel_l2_change_text`` is ``"inf"`` for a change from
        zero, so no information is lost.
        """
        out: dict[str, Any] = {}
        for name in VALUE_FIELDS:
            v = getattr(self, name)
            out[name] = None if isinstance(v, float) and not math.isfinite(v) else v
        rel = self.rel_l2_change
        out["rel_l2_change_text"] = "inf" if rel == math.inf else None
        return out


class _Sums:
    """Float64 sums of one pair, accumulated over its chunks."""

    __slots__ = ("a_nan", "a_sq", "ab", "b_nan", "b_sq", "d_sq", "equal", "max_abs", "numel")

    def __init__(self) -> None:
        self.equal = True
        self.max_abs = 0.0
        self.d_sq = self.a_sq = self.b_sq = self.ab = 0.0
        self.a_nan = self.b_nan = self.numel = 0


def _real(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a contiguous 1-D CPU tensor of reals (a complex value is two)."""
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_complex():
        t = torch.view_as_real(t)
    return (t if t.dim() == 1 else t.reshape(-1)).contiguous()


_NO_BYTES = np.empty(0, np.uint8)


def _measure(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], same: bool, sums: Sequence[_Sums]
) -> None:
    """Add pairs of tensors (a, b; one dtype pair, each pair one length) to their ``sums``.

    The one way values are measured: the pairs are joined into one buffer per side (a single
    pair, a chunk of a large tensor, is used as it is) and measured in one fused pass
    (:func:`sd_widgets._kernels.measure_pairs`), in float64 sums. Equal means identical
    bytes for one dtype, equal float64 values across dtypes (NaN where the other has NaN).
    """
    reals = [(_real(a), _real(b)) for a, b in pairs]
    if len(reals) == 1:
        a, b = reals[0]
    else:
        a, b = torch.cat([x for x, _ in reals]), torch.cat([y for _, y in reals])
    kind = torch.float64 if a.dtype in _WIDE or b.dtype in _WIDE else torch.float32
    a_values = (a if a.dtype == kind else a.to(kind)).numpy()
    b_values = (b if b.dtype == kind else b.to(kind)).numpy()
    a_bytes = a.view(torch.uint8).numpy() if same else _NO_BYTES
    b_bytes = b.view(torch.uint8).numpy() if same else _NO_BYTES
    ends = np.cumsum([x.numel() for x, _ in reals], dtype=np.int64)
    out = np.empty((len(reals), _kernels.COLUMNS), np.float64)
    _kernels.measure_pairs(
        a_values, b_values, a_bytes, b_bytes, a.element_size(), ends, not same, out
    )
    for s, (x, _), row in zip(sums, pairs, out.tolist(), strict=True):
        s.numel += x.numel()
        s.equal = s.equal and row[_kernels.DIFFERS] == 0
        s.a_sq += row[_kernels.A_SQ]
        s.b_sq += row[_kernels.B_SQ]
        s.ab += row[_kernels.AB]
        s.d_sq += row[_kernels.D_SQ]
        s.a_nan += int(row[_kernels.A_NAN])
        s.b_nan += int(row[_kernels.B_NAN])
        mx = row[_kernels.MAX_ABS]
        s.max_abs = mx if mx != mx or s.max_abs != s.max_abs else max(s.max_abs, mx)


def _change(equal: bool, rel: float, a_nan: int, b_nan: int) -> str:
    if b_nan > a_nan:
        return "nan_appeared"
    if equal:
        return "identical"
    if rel == math.inf:
        return "from_zero"
    return "tiny" if rel <= TINY else "large"


class _Side:
    """Where one side's tensors are read from: a module's live tensors or a checkpoint."""

    def __init__(self, src: nn.Module | Checkpoint) -> None:
        #: the module's tensors with values: not a lazy module's tensor not initialised yet
        #: (no values, no shape), not a non-tensor entry (a module's extra state)
        self.module_tensors: dict[str, torch.Tensor] | None = None
        self.ckpt: Checkpoint | None = None
        if isinstance(src, nn.Module):
            self.module_tensors = {
                k: v.detach()
                for k, v in src.state_dict(keep_vars=True).items()
                if isinstance(v, torch.Tensor) and not is_lazy(v)
            }
        else:
            self.ckpt = src

    def has_values(self, key: str) -> bool:
        if self.module_tensors is not None:
            t = self.module_tensors.get(key)
            return t is not None and not t.is_meta
        return True

    def nbytes(self, key: str) -> int:
        if self.module_tensors is not None:
            t = self.module_tensors[key]
            return t.numel() * t.element_size()
        assert self.ckpt is not None
        return self.ckpt[key].nbytes

    def whole(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.module_tensors is not None:
            return {k: self.module_tensors[k] for k in keys}
        assert self.ckpt is not None
        return self.ckpt.tensors(keys)

    def rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        if self.module_tensors is not None:
            return self.module_tensors[key][start:stop]
        assert self.ckpt is not None
        return self.ckpt.read_rows(key, start, stop)


class ValueComparison:
    """The values of ``b`` compared with those of ``a``, one :class:`ValueRow` per key.

    Built by :func:`compare_values`; the tensors are read on first use (``rows``,
    :meth:`to_frame`, :meth:`summary`, ...) and never kept.
    """

    def __init__(self, comparison: Comparison, a: nn.Module | Checkpoint, b: Checkpoint) -> None:
        #: the key-level comparison (b against a) the rows follow
        self.comparison = comparison
        self._a = a
        self._b = b

    @property
    def a(self) -> nn.Module | Checkpoint:
        """The reference side: a live module (its current state) or a checkpoint."""
        return self._a

    @property
    def b(self) -> Checkpoint:
        """The side compared against ``a`` (its keys after renames are the rows' keys)."""
        return self._b

    def __repr__(self) -> str:
        if "rows" not in self.__dict__:
            return f"<ValueComparison of {len(self.comparison)} keys (not read yet)>"
        s = self.summary()
        return (
            f"<ValueComparison of {len(self.rows)} keys: {s['identical']} identical, "
            f"{s['changed']} changed, {s['not_compared']} not compared>"
        )

    # reading ---------------------------------------------------------------------------------
    @cached_property
    def rows(self) -> list[ValueRow]:
        """One row per key, in the comparison's order (reads every comparable pair once)."""
        with gc_paused():  # many small acyclic objects: the collector would scan the model
            return self._read()

    def _read(self) -> list[ValueRow]:
        a, b = _Side(self._a), _Side(self._b)
        sums = self._measure_all(a, b)
        return [self._row(r, sums.get(r.key)) for r in self.comparison]

    def _measure_all(self, a: _Side, b: _Side) -> dict[str, _Sums]:
        sums: dict[str, _Sums] = {}
        small: list[Any] = []
        for r in self.comparison:
            if r.status not in _COMPARABLE or r.model_on_meta:
                continue
            assert r.model_key is not None and r.ckpt_key is not None
            if not a.has_values(r.model_key):
                continue
            a_bytes = a.nbytes(r.model_key)
            if max(a_bytes, r.nbytes) <= SMALL_BYTES:
                small.append(r)
            else:
                sums[r.key] = self._stream(a, b, r)
        for batch in _batches(small):
            a_t = a.whole([r.model_key for r in batch])
            b_t = b.whole([r.ckpt_key for r in batch])
            groups: dict[tuple[torch.dtype, torch.dtype], list[Any]] = {}
            for r in batch:
                groups.setdefault((a_t[r.model_key].dtype, b_t[r.ckpt_key].dtype), []).append(r)
            for (da, db), rows in groups.items():
                pairs = [(a_t[r.model_key], b_t[r.ckpt_key]) for r in rows]
                new = [_Sums() for _ in rows]
                sums.update(zip((r.key for r in rows), new, strict=True))
                _measure(pairs, da == db, new)
            del a_t, b_t
        return sums

    def _stream(self, a: _Side, b: _Side, r: Any) -> _Sums:
        """One large pair, read in blocks of rows, each measured in one fused pass (one thread)."""
        shape = r.model_shape
        s = _Sums()
        same = r.model_dtype == r.ckpt_dtype
        if not shape:
            blocks: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(
                [(a.whole([r.model_key])[r.model_key], b.whole([r.ckpt_key])[r.ckpt_key])]
            )
        else:
            row_numel = math.prod(shape[1:]) if len(shape) > 1 else 1
            step = max(1, READ_ELEMENTS // max(row_numel, 1))
            blocks = (
                (a.rows(r.model_key, i, i + step), b.rows(r.ckpt_key, i, i + step))
                for i in range(0, shape[0], step)
            )
        for block_a, block_b in blocks:
            _measure([(block_a, block_b)], same, [s])
            del block_a, block_b
        return s

    def _row(self, r: Any, s: _Sums | None) -> ValueRow:
        common = {
            "key": r.key,
            "status": r.status,
            "module": r.module,
            "a_key": r.model_key,
            "b_key": r.ckpt_key,
            "a_dtype": r.model_dtype,
            "b_dtype": r.ckpt_dtype,
        }
        if s is None:
            return ValueRow(
                **common,
                equal=False,
                max_abs_diff=_NAN,
                rel_l2_change=_NAN,
                cosine=_NAN,
                change="not_compared",
                numel=0,
                a_l2=_NAN,
                b_l2=_NAN,
                a_nan=0,
                b_nan=0,
            )
        a_l2, b_l2 = math.sqrt(s.a_sq), math.sqrt(s.b_sq)
        if s.equal:
            rel, mx = 0.0, 0.0
        elif s.d_sq != s.d_sq:
            rel, mx = _NAN, _NAN
        elif s.a_sq == 0.0:
            rel, mx = (math.inf if s.d_sq > 0 else 0.0), s.max_abs
        else:
            rel, mx = math.sqrt(s.d_sq) / a_l2, s.max_abs
        if a_l2 > 0 and b_l2 > 0 and math.isfinite(a_l2) and math.isfinite(b_l2):
            cos = 1.0 if s.equal else max(-1.0, min(1.0, s.ab / a_l2 / b_l2))
        else:
            cos = _NAN
        return ValueRow(
            **common,
            equal=s.equal,
            max_abs_diff=mx,
            rel_l2_change=rel,
            cosine=cos,
            change=_change(s.equal, rel, s.a_nan, s.b_nan),
            numel=s.numel,
            a_l2=a_l2,
            b_l2=b_l2,
            a_nan=s.a_nan,
            b_nan=s.b_nan,
        )

    # views -----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[ValueRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.comparison)

    def __getitem__(self, key: str) -> ValueRow:
        return self._by_key[key]

    @cached_property
    def _by_key(self) -> dict[str, ValueRow]:
        return {r.key: r for r in self.rows}

    def tensors(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The two tensors of one compared key, ``a``'s and ``b``'s, read now (for plots)."""
        row = self[key]
        if row.change == "not_compared" or row.a_key is None or row.b_key is None:
            raise ValueError(
                f"{key!r} was not compared (status {row.status}): there are no two tensors to show"
            )
        a = _Side(self._a).whole([row.a_key])[row.a_key]
        return a, self._b.tensor(row.b_key)

    @property
    def keys_match(self) -> bool:
        """Both sides hold the same keys (after renames) with the same shapes."""
        return all(r.status in _COMPARABLE for r in self.comparison)

    @property
    def identical(self) -> bool:
        """The same keys, and every tensor bit-identical (same dtypes)."""
        return all(r.status == Status.MATCH.value and r.equal for r in self.rows)

    def to_frame(self) -> pd.DataFrame:
        """One row per key, the columns of :data:`VALUE_FIELDS` (the floats are float64)."""
        import pandas as pd

        frame = pd.DataFrame(
            [[getattr(r, f) for f in VALUE_FIELDS] for r in self.rows], columns=list(VALUE_FIELDS)
        )
        for col in ("max_abs_diff", "rel_l2_change", "cosine", "a_l2", "b_l2"):
            frame[col] = frame[col].astype("float64")
        frame["equal"] = frame["equal"].astype(bool)
        return frame

    def summary(self) -> dict[str, int]:
        """Counts: ``{"identical": n, "changed": m, "not_compared": k, ...}``.

        Then the count of each change of :data:`CHANGES` that occurs (``"large"``,
        ``"from_zero"``, ...).
        """
        counts = dict.fromkeys(CHANGES, 0)
        for r in self.rows:
            counts[r.change] += 1
        changed = sum(counts[c] for c in ("nan_appeared", "from_zero", "large", "tiny"))
        out = {
            "identical": counts["identical"],
            "changed": changed,
            "not_compared": counts["not_compared"],
        }
        out.update({c: n for c, n in counts.items() if n and c not in out})
        return out

    def most_changed(self, n: int | None = None) -> list[ValueRow]:
        """Compared rows, most changed first.

        NaN appeared, from zero, then by relative change (then max |diff|); identical rows last.
        """
        ranked = sorted(
            (r for r in self.rows if r.change != "not_compared"), key=change_rank, reverse=True
        )
        return ranked if n is None else ranked[:n]

    def frozen_bn_changes(self) -> dict[str, str]:
        """Modules that look frozen yet changed, each with a sentence saying so.

        Every parameter in the subtree is identical, but BatchNorm running statistics in it
        changed (the top-most such module). The classic case: ``requires_grad_(False)`` on a backbone that was
        then trained in ``train()`` mode.
        """
        params: dict[str, list[bool]] = {}
        bn_changed: dict[str, set[str]] = {}
        for row, key_row in zip(self.rows, self.comparison, strict=True):
            if row.change == "not_compared":
                continue
            parts = row.module.split(".") if row.module else []
            leaf = row.key.rpartition(".")[2]
            for depth in range(1, len(parts) + 1):
                path = ".".join(parts[:depth])
                if key_row.kind == "param":
                    params.setdefault(path, []).append(row.equal)
                elif leaf in BN_BUFFERS and row.changed:
                    bn_changed.setdefault(path, set()).add(row.module)
        out: dict[str, str] = {}
        for path in sorted(bn_changed, key=lambda p: p.count(".")):
            flags = params.get(path)
            if not flags or not all(flags) or any(path.startswith(o + ".") for o in out):
                continue
            n_bn = len(bn_changed[path])
            out[path] = (
                f"{path}: all {len(flags):,} parameters are identical, yet the running "
                f"statistics of {n_bn:,} BatchNorm layer{'s' if n_bn != 1 else ''} changed. "
                "requires_grad=False does not freeze BatchNorm in train() mode: put the frozen "
                "part in eval() mode while training."
            )
        return out

    def by_module(self) -> pd.DataFrame:
        """One row per module (every ancestor path, subtree included), in first-seen order.

        Columns: ``module``, ``tensors`` (keys in the subtree), ``compared``, ``changed``,
        ``identical``, ``max_rel_l2_change`` (the largest relative change in the subtree, inf
        for a change from zero, NaN when nothing changed measurably), and ``text``
        ("backbone: 0 of 160 tensors changed").
        """
        import pandas as pd

        stats: dict[str, list[Any]] = {}
        for r in self.rows:
            parts = r.module.split(".") if r.module else []
            for depth in range(1, len(parts) + 1):
                path = ".".join(parts[:depth])
                st = stats.setdefault(path, [0, 0, 0, 0, _NAN])
                st[0] += 1
                if r.change != "not_compared":
                    st[1] += 1
                    if r.changed:
                        st[2] += 1
                        rel = r.rel_l2_change
                        if rel == rel and not (st[4] >= rel):
                            st[4] = rel
                    else:
                        st[3] += 1
        rows = [
            {
                "module": path,
                "tensors": t,
                "compared": c,
                "changed": ch,
                "identical": same,
                "max_rel_l2_change": mx,
                "text": module_text(path, ch, t),
            }
            for path, (t, c, ch, same, mx) in stats.items()
        ]
        columns = ["module", "tensors", "compared", "changed", "identical", "max_rel_l2_change"]
        frame = pd.DataFrame(rows, columns=[*columns, "text"])
        frame["max_rel_l2_change"] = frame["max_rel_l2_change"].astype("float64")
        return frame


def module_text(path: str, changed: int, tensors: int) -> str:
    """``"backbone: 0 of 160 tensors changed"``."""
    noun = "tensor" if tensors == 1 else "tensors"
    return f"{path or '(model)'}: {changed:,} of {tensors:,} {noun} changed"


def change_rank(r: ValueRow) -> tuple[int, float, float]:
    """Sort key, larger = more changed.

    The change's rank in :data:`CHANGES`, then the relative change, then max |diff| (NaN as -1).
    """
    order = list(CHANGES)
    rel = r.rel_l2_change if r.rel_l2_change == r.rel_l2_change else -1.0
    mx = r.max_abs_diff if r.max_abs_diff == r.max_abs_diff else -1.0
    return (len(order) - order.index(r.change), rel, mx)


def _batches(rows: Sequence[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    size = 0
    for r in rows:
        if batch and size + r.nbytes > BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(r)
        size += r.nbytes
    if batch:
        yield batch


def compare_values(
    a: nn.Module | SourceLike,
    b: SourceLike,
    *,
    renames: RenamesLike = None,
    key: str | Sequence[str] | None = None,
    trust: Any = False,
) -> ValueComparison:
    """Compare the values of ``b`` with those of ``a``, key by key, streamed.

    Parameters
    ----------
    a, b
        Anything :func:`sd_widgets.open_checkpoint` takes (a path, a mapping, a
        :class:`~sd_widgets.Checkpoint`), or an ``nn.Module`` (its current state).
    renames
        Rename rules applied to ``b``'s keys, as in :func:`sd_widgets.compare`.
    key, trust
        Passed to :func:`sd_widgets.open_checkpoint` for ``b``.

    Returns
    -------
    ValueComparison
        Lazy: the tensors are read, pairwise and in chunks, when its rows are first asked for.
    """
    b_ckpt = open_checkpoint(b, key=key, trust=trust)
    if isinstance(a, nn.Module):
        return ValueComparison(compare(a, b_ckpt, renames=renames), a, b_ckpt)
    a_ckpt = open_checkpoint(a, trust=trust)
    return ValueComparison(compare(a_ckpt, b_ckpt, renames=renames), a_ckpt, b_ckpt)


def values_of(comparison: Comparison) -> ValueComparison:
    """The value comparison of an existing key-level comparison.

    Its model is ``a``, its checkpoint ``b``.
    """
    if comparison.model is None:
        raise ValueError(
            "this comparison has no model to read values from; use "
            "sdw.compare_values(a, b) with both checkpoints"
        )
    return ValueComparison(comparison, comparison.model, comparison.checkpoint)
