"""Comparing a checkpoint with a model: one row per key, statuses, tree, rename suggestions.

``compare`` reads shapes and dtypes only; no checkpoint tensor is materialised and the model
may live on the meta device.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from .checkpoint import Checkpoint, SourceLike, dtype_name, open_checkpoint
from .renames import Rename, RenamesLike, apply_renames, parse_renames
from .statuses import (
    BN_BUFFERS,
    LOADABLE_STATUSES,
    PROBLEM_STATUSES,
    STATUS_LABELS,
    STATUSES,
)

if TYPE_CHECKING:
    import pandas as pd

    from .plan import LoadPlan

__all__ = [
    "LOADABLE_STATUSES",
    "PROBLEM_STATUSES",
    "STATUSES",
    "Comparison",
    "ModelEntry",
    "Row",
    "RuleSuggestion",
    "Suggestion",
    "compare",
    "model_entries",
]

#: common wrapper prefixes: DataParallel/DDP, torch.compile, Lightning
WRAPPER_PREFIXES = {
    "module.": "DataParallel / DistributedDataParallel",
    "_orig_mod.": "torch.compile",
    "model.": "PyTorch Lightning (LightningModule attribute)",
}


@dataclass(frozen=True)
class ModelEntry:
    """One entry of the model's state dict."""

    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    kind: str  # "param" | "buffer" | "extra"
    module: str
    device: str
    tied: tuple[str, ...] = ()


def _module_of(key: str) -> str:
    return key.rpartition(".")[0]


def model_entries(model: nn.Module) -> OrderedDict[str, ModelEntry]:
    """What ``model.load_state_dict`` expects: parameters and persistent buffers, in order."""
    sd = model.state_dict(keep_vars=True)
    params = {n: p for n, p in model.named_parameters(remove_duplicate=False)}
    buffers = {n for n, _ in model.named_buffers(remove_duplicate=False)}
    by_identity: dict[int, list[str]] = {}
    for n, p in params.items():
        by_identity.setdefault(id(p), []).append(n)
    out: OrderedDict[str, ModelEntry] = OrderedDict()
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue  # _extra_state objects
        kind = "param" if k in params else "buffer" if k in buffers else "extra"
        tied: tuple[str, ...] = ()
        if kind == "param":
            tied = tuple(o for o in by_identity.get(id(params[k]), ()) if o != k)
        out[k] = ModelEntry(k, tuple(v.shape), v.dtype, kind, _module_of(k), v.device.type, tied)
    return out


def _entries_from_checkpoint(ckpt: Checkpoint) -> OrderedDict[str, ModelEntry]:
    """Model side read from a second checkpoint (``sd-widgets diff --against``)."""
    out: OrderedDict[str, ModelEntry] = OrderedDict()
    for k, info in ckpt.items():
        kind = "buffer" if k.rpartition(".")[2] in BN_BUFFERS else "param"
        out[k] = ModelEntry(k, info.shape, info.dtype, kind, _module_of(k), "cpu", info.tied)
    return out


@dataclass(frozen=True)
class Row:
    """One key of the comparison (a key present on both sides is one row)."""

    key: str
    status: str
    kind: str | None
    module: str
    ckpt_key: str | None
    model_key: str | None
    ckpt_shape: tuple[int, ...] | None
    model_shape: tuple[int, ...] | None
    ckpt_dtype: str | None
    model_dtype: str | None
    nbytes: int
    tied: tuple[str, ...] = ()
    #: the model tensor lives on the meta device (no values to adapt from)
    model_on_meta: bool = False

    @property
    def loadable(self) -> bool:
        return self.status in LOADABLE_STATUSES

    @property
    def adaptable(self) -> bool:
        """A shape mismatch the ``"overlap"`` adapter can handle (same number of dimensions)."""
        return (
            self.status == "shape_mismatch"
            and self.ckpt_shape is not None
            and self.model_shape is not None
            and len(self.ckpt_shape) == len(self.model_shape)
            and len(self.model_shape) > 0
            and not self.model_on_meta
        )

    @property
    def reason(self) -> str | None:
        """Why this row cannot be loaded as it is (None when it can)."""
        if self.status == "match":
            return None
        if self.status == "dtype_mismatch":
            return None
        if self.status == "shape_mismatch":
            text = (
                f"shape mismatch: checkpoint {_fmt_shape(self.ckpt_shape)} vs model "
                f"{_fmt_shape(self.model_shape)}"
            )
            if self.adaptable:
                return text + "; the 'overlap' adapter can copy the overlapping slice"
            if self.ckpt_shape is None or self.model_shape is None or (
                    len(self.ckpt_shape) != len(self.model_shape) or not self.model_shape):
                return text + "; no adapter applies (different number of dimensions)"
            return text + ("; no adapter applies on the meta device (the 'overlap' adapter "
                           "keeps the model's own values outside the overlap, and a meta "
                           "tensor has none): materialise the model first (to_empty + init)")
        if self.status == "missing":
            return "parameter not in the checkpoint: keeps its current (initial) value"
        if self.status == "missing_buffer":
            return "buffer not in the checkpoint: keeps its current value"
        return "checkpoint key the model does not have"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tied"] = list(self.tied)
        return d


def _fmt_shape(shape: Sequence[int] | None) -> str:
    return "?" if shape is None else str(tuple(shape))  # (10,) like torch.Size, not (10)


class Suggestion(NamedTuple):
    """A suggested rename of one checkpoint key to one model key."""

    ckpt_key: str
    model_key: str
    score: float
    reason: str


class RuleSuggestion(NamedTuple):
    """A suggested rename rule (e.g. strip ``module.``) and how many keys it would fix."""

    rule: Rename
    fixes: int
    reason: str


@dataclass
class _Node:
    name: str
    path: str
    module_type: str | None
    children: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    counts: dict[str, int] = field(default_factory=dict)


class Comparison:
    """A checkpoint compared with a model, one :class:`Row` per key."""

    def __init__(
        self,
        model: nn.Module | None,
        checkpoint: Checkpoint,
        renames: Iterable[Rename] = (),
        *,
        entries: OrderedDict[str, ModelEntry] | None = None,
    ) -> None:
        self.model = model
        self.checkpoint = checkpoint
        self.renames: tuple[Rename, ...] = tuple(renames)
        if entries is None:
            if model is None:
                raise TypeError("a Comparison needs a model or model entries")
            entries = model_entries(model)
        self.entries = entries
        self._module_types: dict[str, str] = (
            {n: type(m).__name__ for n, m in model.named_modules()} if model is not None else {}
        )
        self.rows: list[Row] = self._build_rows()
        self._by_key = {r.key: r for r in self.rows}

    # construction ------------------------------------------------------------------------------
    def _renamed_checkpoint_keys(self) -> OrderedDict[str, str]:
        """checkpoint key → name after renames; raises on collisions."""
        out: OrderedDict[str, str] = OrderedDict()
        seen: dict[str, str] = {}
        for k in self.checkpoint:
            new = apply_renames(k, self.renames) if self.renames else k
            if new in seen:
                raise ValueError(
                    f"the rename rules map both {seen[new]!r} and {k!r} to {new!r}; "
                    "make the rules more specific (e.g. anchor a regex with ^)."
                )
            seen[new] = k
            out[k] = new
        return out

    def _build_rows(self) -> list[Row]:
        renamed = self._renamed_checkpoint_keys()
        by_target = {new: old for old, new in renamed.items()}
        rows: list[Row] = []
        for mk, e in self.entries.items():
            ck = by_target.get(mk)
            mdt = dtype_name(e.dtype)
            on_meta = e.device == "meta"
            if ck is None:
                status = "missing" if e.kind == "param" else "missing_buffer"
                nbytes = _nbytes(e.shape, e.dtype)
                rows.append(Row(mk, status, e.kind, e.module, None, mk, None, e.shape, None, mdt,
                                nbytes, e.tied, on_meta))
                continue
            info = self.checkpoint[ck]
            if info.shape != e.shape:
                status = "shape_mismatch"
            elif info.dtype != e.dtype:
                status = "dtype_mismatch"
            else:
                status = "match"
            rows.append(Row(mk, status, e.kind, e.module, ck, mk, info.shape, e.shape,
                            info.dtype_name, mdt, info.nbytes, e.tied, on_meta))
        for ck, new in renamed.items():
            if new in self.entries:
                continue
            info = self.checkpoint[ck]
            rows.append(Row(new, "unexpected", None, _module_of(new), ck, None, info.shape, None,
                            info.dtype_name, None, info.nbytes, info.tied))
        return rows

    # views ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __getitem__(self, key: str) -> Row:
        return self._by_key[key]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __repr__(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.summary().items() if v)
        return f"<Comparison of {self.checkpoint.source.describe()}: {counts}>"

    def _repr_html_(self) -> str:
        from html import escape

        counts = self.summary()
        cells = "".join(
            f"<td><b>{counts.get(s, 0)}</b> {escape(STATUS_LABELS[s])}</td>" for s in STATUSES
        )
        return (
            f"<div><b>Comparison</b> of {escape(self.checkpoint.source.describe())}"
            f"<table><tr>{cells}</tr></table></div>"
        )

    @property
    def loads_cleanly(self) -> bool:
        """True when ``model.load_state_dict(checkpoint)`` (strict) would succeed."""
        return all(r.status in LOADABLE_STATUSES for r in self.rows)

    def summary(self) -> dict[str, int]:
        """``{status: count}`` for every status (zeros included), in vocabulary order."""
        counts = dict.fromkeys(STATUSES, 0)
        for r in self.rows:
            counts[r.status] += 1
        return counts

    def keys(self, status: str | Iterable[str] | None = None) -> list[str]:
        """Row keys, optionally only those with the given status(es)."""
        if status is None:
            return [r.key for r in self.rows]
        wanted = {status} if isinstance(status, str) else set(status)
        unknown = wanted - set(STATUSES)
        if unknown:
            raise ValueError(f"unknown status {sorted(unknown)}; use one of {STATUSES}")
        return [r.key for r in self.rows if r.status in wanted]

    def to_frame(self) -> pd.DataFrame:
        """One row per key; columns key, status, kind, module, ckpt_key, model_key, shapes,
        dtypes, nbytes, tied, loadable, reason."""
        import pandas as pd

        cols = ["key", "status", "kind", "module", "ckpt_key", "model_key", "ckpt_shape",
                "model_shape", "ckpt_dtype", "model_dtype", "nbytes", "tied", "loadable", "reason"]
        data = [
            (r.key, r.status, r.kind, r.module, r.ckpt_key, r.model_key, r.ckpt_shape,
             r.model_shape, r.ckpt_dtype, r.model_dtype, r.nbytes, ", ".join(r.tied),
             r.loadable, r.reason)
            for r in self.rows
        ]
        df = pd.DataFrame(data, columns=cols)
        df["status"] = pd.Categorical(df["status"], categories=list(STATUSES))
        return df

    def tree(self) -> dict[str, Any]:
        """Nested module nodes with per-status counts; one leaf per row (see docs/internals.md)."""
        types = self._module_types
        nodes: dict[str, _Node] = {"": _Node("", "", types.get(""))}

        def node_for(path: str) -> _Node:
            # one node per module path, created (with its parents) at its first row: children
            # keep the order in which rows first reach them
            node = nodes.get(path)
            if node is None:
                parent, _, name = path.rpartition(".")
                node = nodes[path] = _Node(name, path, types.get(path))
                node_for(parent).children["m:" + name] = node
            return node

        for r in self.rows:
            node_for(r.module).children["t:" + r.key] = r
        return self._node_dict(nodes[""])

    def _node_dict(self, node: _Node) -> dict[str, Any]:
        children = []
        counts: dict[str, int] = {}
        for child in node.children.values():
            if isinstance(child, Row):
                d = _leaf_dict(child)
                counts[child.status] = counts.get(child.status, 0) + 1
            else:
                d = self._node_dict(child)
                for s, n in d["counts"].items():
                    counts[s] = counts.get(s, 0) + n
            children.append(d)
        ordered = {s: counts[s] for s in STATUSES if s in counts}
        return {"type": "module", "name": node.name, "path": node.path,
                "module_type": node.module_type, "counts": ordered, "children": children}

    # renames -------------------------------------------------------------------------------------
    def with_renames(self, renames: RenamesLike, *, replace: bool = False) -> Comparison:
        """A new comparison with ``renames`` added after the current rules (or instead of them)."""
        rules = parse_renames(renames)
        return Comparison(self.model, self.checkpoint, rules if replace else self.renames + rules,
                          entries=self.entries)

    def suggest_renames(self, limit: int = 50, min_score: float = 0.5) -> list[Suggestion]:
        """Pairs (unexpected checkpoint key, missing model key), best first, each key once.

        Scored by shape equality, leaf name, longest common suffix and edit similarity.
        """
        unexpected = [r for r in self.rows if r.status == "unexpected"]
        missing = [r for r in self.rows if r.status in ("missing", "missing_buffer")]
        if not unexpected or not missing:
            return []
        by_leaf: dict[str, list[Row]] = {}
        for m in missing:
            by_leaf.setdefault(m.key.rpartition(".")[2], []).append(m)
        scored: list[Suggestion] = []
        budget = 200_000
        for u in unexpected:
            leaf = u.key.rpartition(".")[2]
            for m in by_leaf.get(leaf, ()):
                budget -= 1
                if budget < 0:
                    break
                same_shape = u.ckpt_shape == m.model_shape
                if not same_shape and budget < 100_000:
                    continue
                suffix = _common_suffix_parts(u.key, m.key)
                sim = _similarity(u.key, m.key)
                score = (0.5 if same_shape else 0.0) + 0.25 * suffix + 0.25 * sim
                if score < min_score:
                    continue
                bits = [
                    f"same shape {_fmt_shape(m.model_shape)}" if same_shape else
                    f"shapes differ {_fmt_shape(u.ckpt_shape)} vs {_fmt_shape(m.model_shape)}",
                    f"same leaf name '.{leaf}'",
                    f"names {sim:.0%} similar",
                ]
                src = u.ckpt_key or u.key
                scored.append(Suggestion(src, m.key, round(score, 3), ", ".join(bits)))
        scored.sort(key=lambda s: (-s.score, s.model_key))
        used_c: set[str] = set()
        used_m: set[str] = set()
        out = []
        for s in scored:
            if s.ckpt_key in used_c or s.model_key in used_m:
                continue
            used_c.add(s.ckpt_key)
            used_m.add(s.model_key)
            out.append(s)
            if len(out) >= limit:
                break
        return out

    def prefix_suggestions(self) -> list[RuleSuggestion]:
        """Rename rules that would fix many keys at once (wrapper prefixes, renamed modules)."""
        unexpected = [r.key for r in self.rows if r.status == "unexpected"]
        missing = {r.key for r in self.rows if r.status in ("missing", "missing_buffer")}
        if not unexpected:
            return []
        out: dict[Rename, RuleSuggestion] = {}

        def consider(rule: Rename, why: str) -> None:
            fixes = sum(1 for k in unexpected if rule(k) != k and rule(k) in missing)
            if fixes and rule not in out:
                out[rule] = RuleSuggestion(rule, fixes, f"{why}: {fixes} keys would match")

        model_keys = set(self.entries)
        for prefix, origin in WRAPPER_PREFIXES.items():
            if any(k.startswith(prefix) for k in unexpected):
                consider(Rename.strip_prefix(prefix), f"strip {prefix!r} ({origin})")
            if any(k.startswith(prefix) for k in model_keys):
                consider(Rename.add_prefix(prefix), f"add {prefix!r} ({origin})")
        for s in self.suggest_renames(limit=200):
            old_p, new_p = _differing_prefixes(s.ckpt_key, s.model_key)
            if old_p is not None:
                consider(Rename.prefix(old_p, new_p), f"module {old_p[:-1]!r} renamed to "
                         f"{new_p[:-1]!r}")
        return sorted(out.values(), key=lambda r: -r.fixes)

    # planning ----------------------------------------------------------------------------------
    def plan(
        self,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        renames: RenamesLike = None,
        bn: str = "load",
        adapt: Mapping[str, str] | str | None = None,
    ) -> LoadPlan:
        """Choose what to load; see :class:`sd_widgets.plan.LoadPlan`."""
        from .plan import LoadPlan

        cmp = self.with_renames(renames) if renames else self
        return LoadPlan.build(cmp, include=include, exclude=exclude, bn=bn, adapt=adapt)

    def select(self, patterns: str | Iterable[str]) -> list[str]:
        """Row keys matched by keys, module paths (whole subtree) or glob patterns."""
        return select_keys(self.rows, patterns, self._select_lookup)

    @cached_property
    def _select_lookup(self) -> tuple[list[str], dict[str, str], set[str]]:
        """Built once per comparison: every widget click selects through it."""
        return _select_lookup(self.rows)

    @cached_property
    def bn_modules(self) -> frozenset[str]:
        """Modules with BatchNorm running statistics, as the model was when compared."""
        if self.model is not None:
            return frozenset(n for n, m in self.model.named_modules()
                             if isinstance(m, nn.modules.batchnorm._NormBase)
                             and m.track_running_stats)
        # checkpoint-vs-checkpoint: modules that have running statistics
        return frozenset(r.module for r in self.rows if r.key.endswith(".running_mean"))


def _leaf_dict(r: Row) -> dict[str, Any]:
    return {
        "type": "tensor",
        "name": r.key.rpartition(".")[2],
        "path": r.key,
        "status": r.status,
        "kind": r.kind,
        "ckpt_key": r.ckpt_key,
        "model_key": r.model_key,
        "ckpt_shape": list(r.ckpt_shape) if r.ckpt_shape is not None else None,
        "model_shape": list(r.model_shape) if r.model_shape is not None else None,
        "ckpt_dtype": r.ckpt_dtype,
        "model_dtype": r.model_dtype,
        "nbytes": r.nbytes,
        "loadable": r.loadable,
        "adaptable": r.adaptable,
        "reason": r.reason,
        "tied": list(r.tied),
    }


def _nbytes(shape: Sequence[int], dtype: torch.dtype) -> int:
    n = 1
    for s in shape:
        n *= s
    return n * dtype.itemsize


def _common_suffix_parts(a: str, b: str) -> float:
    pa, pb = a.split("."), b.split(".")
    n = 0
    while n < min(len(pa), len(pb)) and pa[-1 - n] == pb[-1 - n]:
        n += 1
    return n / max(len(pa), len(pb))


def _similarity(a: str, b: str) -> float:
    """1 - normalised Levenshtein distance."""
    if a == b:
        return 1.0
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / len(a)


def _differing_prefixes(old: str, new: str) -> tuple[str | None, str]:
    """``linear.weight``/``different_linear.weight`` → (``linear.``, ``different_linear.``)."""
    po, pn = old.split("."), new.split(".")
    n = 0
    while n < min(len(po), len(pn)) and po[-1 - n] == pn[-1 - n]:
        n += 1
    if n == 0 or (n == len(po) and n == len(pn)):
        return None, ""
    old_p = ".".join(po[: len(po) - n])
    new_p = ".".join(pn[: len(pn) - n])
    return (old_p + "." if old_p else ""), (new_p + "." if new_p else "")


def _select_lookup(rows: Sequence[Row]) -> tuple[list[str], dict[str, str], set[str]]:
    keys = [r.key for r in rows]
    return keys, {r.ckpt_key: r.key for r in rows if r.ckpt_key is not None}, set(keys)


def select_keys(
    rows: Sequence[Row],
    patterns: str | Iterable[str],
    lookup: tuple[list[str], dict[str, str], set[str]] | None = None,
) -> list[str]:
    """Resolve keys / module paths / globs against rows; unknown patterns raise ``KeyError``."""
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen: dict[str, None] = {}
    keys, by_ckpt, row_keys = lookup if lookup is not None else _select_lookup(rows)
    for p in patterns:
        before = len(chosen)
        if p in row_keys:
            chosen[p] = None
        elif p in by_ckpt:
            chosen[by_ckpt[p]] = None
        elif any(ch in p for ch in "*?["):
            for r in rows:
                if fnmatch.fnmatchcase(r.key, p) or (
                    r.ckpt_key is not None and fnmatch.fnmatchcase(r.ckpt_key, p)
                ):
                    chosen[r.key] = None
        else:
            prefix = p.rstrip(".") + "." if p else ""
            for k in keys:
                if k.startswith(prefix):
                    chosen[k] = None
        if len(chosen) == before and not any(ch in p for ch in "*?[") and not (
            p in row_keys or p in by_ckpt
        ):
            import difflib

            modules = sorted({r.module for r in rows if r.module})
            close = difflib.get_close_matches(p, keys + modules, n=3)
            raise KeyError(
                f"{p!r} matches no key or module of this comparison"
                + (f"; did you mean {close}?" if close else "")
            )
    order = {k: i for i, k in enumerate(keys)}
    return sorted(chosen, key=order.__getitem__)


def compare(
    model: nn.Module | SourceLike,
    src: SourceLike,
    *,
    renames: RenamesLike = None,
    key: str | Sequence[str] | None = None,
    trust: bool | Iterable[Any] = False,
    map_location: Any = "cpu",
    progress: bool | None = None,
) -> Comparison:
    """Compare ``src`` (anything :func:`open_checkpoint` accepts) with ``model``.

    ``model`` is an ``nn.Module`` (meta device allowed) — or another checkpoint, to diff two
    checkpoints (then kinds are guessed from names and nothing can be loaded). ``progress``
    shows (True), hides (False) or decides by size (None) the bar while shard headers are read.
    """
    ckpt = open_checkpoint(src, key=key, trust=trust, map_location=map_location,
                           progress=progress)
    rules = parse_renames(renames)
    if isinstance(model, nn.Module):
        return Comparison(model, ckpt, rules)
    other = open_checkpoint(model, trust=trust, map_location=map_location, progress=progress)
    return Comparison(None, ckpt, rules, entries=_entries_from_checkpoint(other))
