"""Comparing a checkpoint with a model: one row per key, statuses, tree, rename suggestions.

``compare`` reads shapes and dtypes only; no checkpoint tensor is materialised and the model
may live on the meta device.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from .adapters import adapter_hint, applicable
from .checkpoint import Checkpoint, SourceLike, open_checkpoint
from .renames import (
    WRAPPER_PREFIXES,
    KeySets,
    Rename,
    RenamesLike,
    RuleCandidate,
    RuleContext,
    apply_renames,
    discover_rules,
    gc_paused,
    pair_keys,
    parse_renames,
)
from .statuses import (
    BN_BUFFERS,
    LOADABLE_STATUSES,
    PROBLEM_STATUSES,
    STATUS_LABELS,
    STATUSES,
    Status,
)
from .units import dtype_name, numel, shape_text

if TYPE_CHECKING:
    import pandas as pd

    from .plan import LoadPlan

__all__ = [
    "LOADABLE_STATUSES",
    "PROBLEM_STATUSES",
    "STATUSES",
    "WRAPPER_PREFIXES",
    "Comparison",
    "ModelEntry",
    "Row",
    "RuleSuggestion",
    "Suggestion",
    "compare",
    "model_entries",
]


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
    return _model_side(model)[0]


# the status strings, from the one table (rows hold plain strings)
_MATCH = Status.MATCH.value
_SHAPE_MISMATCH = Status.SHAPE_MISMATCH.value
_DTYPE_MISMATCH = Status.DTYPE_MISMATCH.value
_MISSING = Status.MISSING.value
_MISSING_BUFFER = Status.MISSING_BUFFER.value
_UNEXPECTED = Status.UNEXPECTED.value


def _model_side(model: nn.Module) -> tuple[OrderedDict[str, ModelEntry], dict[str, str]]:
    """(entries, module path → class name) from one walk over the modules."""
    params: dict[str, nn.Parameter] = {}
    buffers: set[str] = set()
    types: dict[str, str] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        types.setdefault(name, type(m).__name__)
        pre = name + "." if name else ""
        for n, p in m._parameters.items():
            if p is not None:
                params[pre + n] = p
        for n, b in m._buffers.items():
            if b is not None:
                buffers.add(pre + n)
    by_identity: dict[int, list[str]] = {}
    for n, p in params.items():
        by_identity.setdefault(id(p), []).append(n)
    sd = model.state_dict(keep_vars=True)
    out: OrderedDict[str, ModelEntry] = OrderedDict()
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue  # _extra_state objects
        kind = "param" if k in params else "buffer" if k in buffers else "extra"
        tied: tuple[str, ...] = ()
        if kind == "param":
            group = by_identity.get(id(params[k]), ())
            if len(group) > 1:
                tied = tuple(o for o in group if o != k)
        out[k] = ModelEntry(
            k, tuple(v.shape), v.dtype, kind, k.rpartition(".")[0], v.device.type, tied
        )
    return out, types


def _entries_from_checkpoint(ckpt: Checkpoint) -> OrderedDict[str, ModelEntry]:
    """Model side read from a second checkpoint (``sd-widgets diff --against``)."""
    out: OrderedDict[str, ModelEntry] = OrderedDict()
    for k, info in ckpt.items():
        kind = "buffer" if k.rpartition(".")[2] in BN_BUFFERS else "param"
        out[k] = ModelEntry(k, info.shape, info.dtype, kind, _module_of(k), "cpu", info.tied)
    return out


@dataclass(frozen=True, slots=True)
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
    #: for a model key absent from the checkpoint that is the same Parameter as a key the
    #: checkpoint does hold (tied weights, e.g. ``lm_head.weight`` and the input embedding,
    #: which ``save_pretrained`` writes once): that key. Loading it changes this one too.
    tied_to: str | None = None

    @property
    def loadable(self) -> bool:
        """The checkpoint tensor loads as it is (a dtype difference is cast)."""
        return self.status in LOADABLE_STATUSES

    @property
    def adapters(self) -> tuple[str, ...]:
        """Names of the registered adapters that can load this shape mismatch (registry order).

        Empty for every other status. :mod:`sd_widgets.adapters` decides; nothing here restates
        its rules.
        """
        if self.status != _SHAPE_MISMATCH:
            return ()
        return applicable(self.ckpt_shape, self.model_shape, model_on_meta=self.model_on_meta)

    @property
    def adaptable(self) -> bool:
        """A shape mismatch at least one registered adapter can load (see :attr:`adapters`)."""
        return bool(self.adapters)

    @property
    def reason(self) -> str | None:
        """Why this row cannot be loaded as it is (None when it can)."""
        if self.status in (_MATCH, _DTYPE_MISMATCH):
            return None
        if self.status == _SHAPE_MISMATCH:
            text = (
                f"shape mismatch: checkpoint {shape_text(self.ckpt_shape)} vs model "
                f"{shape_text(self.model_shape)}"
            )
            return (
                text
                + "; "
                + adapter_hint(
                    self.ckpt_shape,
                    self.model_shape,
                    model_on_meta=self.model_on_meta,
                    key=self.model_key,
                )
            )
        if self.status in (_MISSING, _MISSING_BUFFER):
            what = "parameter" if self.status == _MISSING else "buffer"
            if self.tied_to is not None:
                return (
                    f"tied to {self.tied_to!r} (the same Parameter): not in the checkpoint "
                    f"itself, it changes when {self.tied_to!r} loads"
                )
            if self.model_on_meta:
                return (
                    f"{what} not in the checkpoint: stays on the meta device; the model "
                    "cannot run until it is initialised"
                )
            if self.status == _MISSING:
                return "parameter not in the checkpoint: keeps its current (initial) value"
            return "buffer not in the checkpoint: keeps its current value"
        return "checkpoint key the model does not have"

    def to_json(self, key_field: str = "key") -> dict[str, Any]:
        """The row as JSON-ready values: the one serialisation of a row.

        Fields in this order: the key (under ``key_field``), status, kind, ckpt_key, model_key,
        ckpt_shape, model_shape (lists or None), ckpt_dtype, model_dtype, nbytes, loadable,
        adaptable, reason, tied (a list), tied_to, model_on_meta. The tree's leaves, the CLI's
        JSON and the widget's payload are built from it.
        """
        return {
            key_field: self.key,
            "status": self.status,
            "kind": self.kind,
            "ckpt_key": self.ckpt_key,
            "model_key": self.model_key,
            "ckpt_shape": None if self.ckpt_shape is None else list(self.ckpt_shape),
            "model_shape": None if self.model_shape is None else list(self.model_shape),
            "ckpt_dtype": self.ckpt_dtype,
            "model_dtype": self.model_dtype,
            "nbytes": self.nbytes,
            "loadable": self.loadable,
            "adaptable": self.adaptable,
            "reason": self.reason,
            "tied": list(self.tied),
            "tied_to": self.tied_to,
            "model_on_meta": self.model_on_meta,
        }


_ROW_SETTERS = tuple(getattr(Row, f.name).__set__ for f in fields(Row))


def _row(*values: Any) -> Row:
    """``Row(*values)`` (all fields, in order) without the frozen dataclass's per-field setattr.

    A comparison builds one per key, twice as many for a prefixed checkpoint, so skipping
    ``object.__setattr__`` is what compare() costs beyond reading the two sides.
    """
    row = object.__new__(Row)
    for set_field, value in zip(_ROW_SETTERS, values, strict=True):
        set_field(row, value)
    return row


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
    #: what the rule undoes when that is known: "ddp", "compile", "compile+ddp", "lightning",
    #: "hf_base", "tf_names"; None when the rule is only described
    convention: str | None = None


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
        module_types: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.checkpoint = checkpoint
        self.renames: tuple[Rename, ...] = tuple(renames)
        if entries is None:
            if model is None:
                raise TypeError("a Comparison needs a model or model entries")
            entries, module_types = _model_side(model)
        self.entries = entries
        if module_types is None:
            module_types = (
                {n: type(m).__name__ for n, m in model.named_modules()} if model is not None else {}
            )
        #: module path → class name; shared (not rebuilt) by with_renames
        self._module_types: dict[str, str] = module_types
        with gc_paused():
            self.rows: list[Row] = self._build_rows()
        self._by_key = {r.key: r for r in self.rows}

    # construction ------------------------------------------------------------------------------
    def _renamed_checkpoint_keys(self) -> OrderedDict[str, str]:
        """Checkpoint key → name after renames; raises on collisions."""
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
        infos = self.checkpoint.__getitem__
        prod, dtype_name_ = numel, dtype_name
        rows: list[Row] = []
        append = rows.append
        for mk, e in self.entries.items():
            ck = by_target.get(mk)
            mdt = dtype_name_(e.dtype)
            on_meta = e.device == "meta"
            if ck is None:
                status = _MISSING if e.kind == "param" else _MISSING_BUFFER
                nbytes = prod(e.shape) * e.dtype.itemsize
                tied_to = next((t for t in e.tied if t in by_target), None) if e.tied else None
                append(
                    _row(
                        mk,
                        status,
                        e.kind,
                        e.module,
                        None,
                        mk,
                        None,
                        e.shape,
                        None,
                        mdt,
                        nbytes,
                        e.tied,
                        on_meta,
                        tied_to,
                    )
                )
                continue
            info = infos(ck)
            if info.shape != e.shape:
                status = _SHAPE_MISMATCH
            elif info.dtype != e.dtype:
                status = _DTYPE_MISMATCH
            else:
                status = _MATCH
            append(
                _row(
                    mk,
                    status,
                    e.kind,
                    e.module,
                    ck,
                    mk,
                    info.shape,
                    e.shape,
                    dtype_name_(info.dtype),
                    mdt,
                    prod(info.shape) * info.dtype.itemsize,
                    e.tied,
                    on_meta,
                    None,
                )
            )
        entries = self.entries
        for ck, new in renamed.items():
            if new in entries:
                continue
            info = infos(ck)
            append(
                _row(
                    new,
                    _UNEXPECTED,
                    None,
                    new.rpartition(".")[0],
                    ck,
                    None,
                    info.shape,
                    None,
                    dtype_name_(info.dtype),
                    None,
                    prod(info.shape) * info.dtype.itemsize,
                    info.tied,
                    False,
                    None,
                )
            )
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
        """One row per key, as a pandas DataFrame.

        Columns key, status (categorical, in the statuses' order), kind, module, ckpt_key,
        model_key, shapes, dtypes, nbytes, tied (comma-separated), tied_to, loadable, reason.
        """
        import pandas as pd

        cols = [
            "key",
            "status",
            "kind",
            "module",
            "ckpt_key",
            "model_key",
            "ckpt_shape",
            "model_shape",
            "ckpt_dtype",
            "model_dtype",
            "nbytes",
            "tied",
            "tied_to",
            "loadable",
            "reason",
        ]
        data = [
            (
                r.key,
                r.status,
                r.kind,
                r.module,
                r.ckpt_key,
                r.model_key,
                r.ckpt_shape,
                r.model_shape,
                r.ckpt_dtype,
                r.model_dtype,
                r.nbytes,
                ", ".join(r.tied),
                r.tied_to,
                r.loadable,
                r.reason,
            )
            for r in self.rows
        ]
        df = pd.DataFrame(data, columns=cols)
        df["status"] = pd.Categorical(df["status"], categories=list(STATUSES))
        return df

    def tree(self) -> dict[str, Any]:
        """Nested module nodes with per-status counts; one leaf per row (see docs/internals.md)."""
        with gc_paused():
            return self._tree()

    def _tree(self) -> dict[str, Any]:
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
        return {
            "type": "module",
            "name": node.name,
            "path": node.path,
            "module_type": node.module_type,
            "counts": ordered,
            "children": children,
        }

    # renames -------------------------------------------------------------------------------------
    def with_renames(self, renames: RenamesLike, *, replace: bool = False) -> Comparison:
        """A new comparison with ``renames`` added after the current rules (or instead of them).

        The model side (entries, module types, naming context) is shared, not rebuilt.
        """
        rules = parse_renames(renames)
        new = Comparison(
            self.model,
            self.checkpoint,
            rules if replace else self.renames + rules,
            entries=self.entries,
            module_types=self._module_types,
        )
        if "rule_context" in self.__dict__:
            new.__dict__["rule_context"] = self.rule_context
        return new

    @cached_property
    def rule_context(self) -> RuleContext:
        """Where the keys came from, to name suggested rules for what they are."""
        src = self.checkpoint.source
        others = set(src.other_entries)
        lightning = src.key == "state_dict" and (
            "pytorch-lightning_version" in others or {"epoch", "global_step"} <= others
        )
        model = self.model
        bp = getattr(model, "base_model_prefix", "") if model is not None else ""
        bp = bp if isinstance(bp, str) else ""
        # a task model holds its base model as the top-level submodule ``bp``
        has_base = bool(bp) and bp in self._module_types
        return RuleContext(
            lightning=lightning,
            base_model_prefix=bp,
            has_base_submodule=has_base,
            model_class=type(model).__name__ if model is not None else "",
        )

    @cached_property
    def _key_sets(self) -> KeySets:
        """Unexpected names, missing keys and paired names, as discovery reads them."""
        unexpected: dict[str, tuple[int, ...]] = {}
        missing: dict[str, tuple[int, ...]] = {}
        paired: list[str] = []
        for r in self.rows:
            if r.status == _UNEXPECTED:
                unexpected[r.key] = r.ckpt_shape or ()
            elif r.ckpt_key is None:
                missing[r.key] = r.model_shape or ()
            else:
                paired.append(r.key)
        return KeySets(unexpected, missing, paired)

    @cached_property
    def _rule_candidates(self) -> list[RuleCandidate]:
        return discover_rules(self._key_sets, self.rule_context, limit=10)

    def suggest_renames(self, limit: int = 50, min_score: float = 0.5) -> list[Suggestion]:
        """Pairs (unexpected checkpoint key, missing model key), best first, each key once.

        Scored by shape equality, shared trailing names and edit similarity (see
        :func:`sd_widgets.renames.pair_keys`); near-linear in the number of keys. The checkpoint
        key is the name after the rules already in force, so an accepted pair chains after them.
        """
        cache = self.__dict__.setdefault("_pair_cache", {})
        if (limit, min_score) not in cache:
            cache[(limit, min_score)] = [
                Suggestion(*p)
                for p in pair_keys(
                    self._key_sets, self._rule_candidates, limit=limit, min_score=min_score
                )
            ]
        return list(cache[(limit, min_score)])

    def prefix_suggestions(self) -> list[RuleSuggestion]:
        """Rename rules that would fix many keys at once, best first.

        Wrapper prefixes named for what added them (DDP's ``module.``, torch.compile's
        ``_orig_mod.``, Lightning's ``model.``, a Hugging Face base-model prefix), renamed
        modules, TensorFlow-style leaf names as one rule. Near-linear; computed once per
        comparison.
        """
        return [
            RuleSuggestion(c.rule, c.fixes, c.reason, c.convention) for c in self._rule_candidates
        ]

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
        """Row keys matched by keys, module paths (whole subtree) or glob patterns.

        See :func:`sd_widgets.plan.select` (selection lives with the plan).
        """
        from .plan import select

        return select(self, patterns)


def _leaf_dict(r: Row) -> dict[str, Any]:
    """A tree leaf: ``type``, ``name`` (the last dotted part), then the row under ``path``."""
    return {"type": "tensor", "name": r.key.rpartition(".")[2], **r.to_json("path")}


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
    rules = parse_renames(renames)
    # thousands of small acyclic objects (infos, entries, rows): the cyclic GC's full passes
    # over a heap holding the model would cost more than the comparison itself
    with gc_paused():
        ckpt = open_checkpoint(
            src, key=key, trust=trust, map_location=map_location, progress=progress
        )
        if isinstance(model, nn.Module):
            return Comparison(model, ckpt, rules)
        other = open_checkpoint(model, trust=trust, map_location=map_location, progress=progress)
        return Comparison(None, ckpt, rules, entries=_entries_from_checkpoint(other))
