"""Comparing a checkpoint with a model: one row per key, statuses, tree, rename suggestions.

``compare`` reads shapes and dtypes only; no checkpoint tensor is materialised and the model
may live on the meta device.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from operator import attrgetter
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
    "FRAME_FIELDS",
    "JSON_FIELDS",
    "LOADABLE_STATUSES",
    "PROBLEM_STATUSES",
    "ROW_FIELDS",
    "STATUSES",
    "WRAPPER_PREFIXES",
    "Comparison",
    "ModelEntry",
    "Row",
    "RuleSuggestion",
    "Suggestion",
    "compare",
    "model_entries",
    "row_fields",
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


#: every field of a :class:`Row` that leaves the library, in THE one order, with what it holds.
#: Each output picks its fields from this table in this order: :meth:`Row.to_json` (the tree's
#: leaves, ``sd-widgets diff --format json``), :meth:`Comparison.to_frame` and the widget's
#: payload columns. A new field goes here (and onto :class:`Row`) once.
ROW_FIELDS: dict[str, str] = {
    "key": "the row's key: the model key when the model has it, else the checkpoint key "
    "(after renames)",
    "status": "one of STATUSES",
    "kind": '"param" or "buffer" ("extra" for a tensor a module saves itself); None for a '
    "checkpoint-only key",
    "module": "module path of the key: everything before its last dot",
    "ckpt_key": "the checkpoint's own name for the key (before renames); None when absent",
    "model_key": "the model's key; None when the model does not have it",
    "ckpt_shape": "shape in the checkpoint; None when absent",
    "model_shape": "shape in the model; None when absent",
    "ckpt_dtype": 'dtype name in the checkpoint ("float32"); None when absent',
    "model_dtype": "dtype name in the model; None when absent",
    "nbytes": "bytes of the checkpoint tensor, or of the model tensor when the checkpoint "
    "does not have the key",
    "loadable": "the checkpoint tensor loads as it is (match; dtype mismatch, cast)",
    "adaptable": "a shape mismatch that a registered adapter can load",
    "reason": "why the row cannot be loaded as it is; None when it can",
    "tied": "the other keys sharing this tensor's storage",
    "tied_to": "for a model key absent from the checkpoint that is the same Parameter as a "
    "key the checkpoint holds: that key (loading it changes this one too)",
    "model_on_meta": "the model tensor lives on the meta device (no values to adapt from)",
}


def row_fields(*, without: Iterable[str] = ()) -> tuple[str, ...]:
    """The names of :data:`ROW_FIELDS`, in its order, less those in ``without``.

    Parameters
    ----------
    without : iterable of str
        Fields an output leaves out; each must be a field of the table.

    Returns
    -------
    tuple of str
        The remaining field names, in the table's order.

    Raises
    ------
    ValueError
        When ``without`` names a field the table does not have.
    """
    skip = set(without)
    unknown = skip - set(ROW_FIELDS)
    if unknown:
        raise ValueError(f"not row fields: {sorted(unknown)}; the fields are {list(ROW_FIELDS)}")
    return tuple(f for f in ROW_FIELDS if f not in skip)


#: :meth:`Row.to_json`: every field but ``module`` (the tree nests rows by module already);
#: ``key`` first, so that ``to_json(key_field)`` can name it
JSON_FIELDS = row_fields(without=("module",))
assert JSON_FIELDS[0] == "key"
#: :meth:`Comparison.to_frame` columns (the first ten are the contract of ``DESIGN.md``)
FRAME_FIELDS = row_fields(without=("adaptable", "model_on_meta"))
_json_values = attrgetter(*JSON_FIELDS)
_frame_values = attrgetter(*FRAME_FIELDS)
#: fields whose JSON form is a list (tuples on the row)
_JSON_LISTS = ("ckpt_shape", "model_shape", "tied")


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

        The fields of :data:`JSON_FIELDS` in that order (the key under ``key_field``); shapes
        and ``tied`` as lists, a shape None when that side is absent. The tree's leaves, the
        CLI's JSON and the widget's payload are built from it.
        """
        names = JSON_FIELDS if key_field == "key" else (key_field, *JSON_FIELDS[1:])
        out = dict(zip(names, _json_values(self), strict=True))
        for name in _JSON_LISTS:
            value = out[name]
            if value is not None:
                out[name] = list(value)
        return out


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
            if ck is None:  # missing: only the model side
                status = _MISSING if e.kind == "param" else _MISSING_BUFFER
                ckpt_shape = ckpt_dtype = None
                nbytes = prod(e.shape) * e.dtype.itemsize
                tied_to = next((t for t in e.tied if t in by_target), None) if e.tied else None
            else:
                info = infos(ck)
                if info.shape != e.shape:
                    status = _SHAPE_MISMATCH
                elif info.dtype != e.dtype:
                    status = _DTYPE_MISMATCH
                else:
                    status = _MATCH
                ckpt_shape, ckpt_dtype = info.shape, dtype_name_(info.dtype)
                nbytes = prod(info.shape) * info.dtype.itemsize
                tied_to = None
            append(
                _row(
                    mk,
                    status,
                    e.kind,
                    e.module,
                    ck,
                    mk,
                    ckpt_shape,
                    e.shape,
                    ckpt_dtype,
                    mdt,
                    nbytes,
                    e.tied,
                    e.device == "meta",
                    tied_to,
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
                    _module_of(new),
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

        Columns :data:`FRAME_FIELDS`: key, status (categorical, in the statuses' order), kind,
        module, ckpt_key, model_key, shapes (tuples), dtypes, nbytes, loadable, reason, tied
        (comma-separated), tied_to.
        """
        import pandas as pd

        df = pd.DataFrame(list(map(_frame_values, self.rows)), columns=list(FRAME_FIELDS))
        df["tied"] = [", ".join(t) for t in df["tied"]]
        df["status"] = pd.Categorical(df["status"], categories=list(STATUSES))
        return df

    @property
    def module_types(self) -> Mapping[str, str]:
        """Module path → class name of the model's modules (empty without a model)."""
        return self._module_types

    def module_children(self) -> dict[str, list[str | Row]]:
        """Module path → its children in order: child module paths (``str``) and rows.

        ``""`` is the root. A module appears at the first row that reaches it (created with its
        parents) and keeps that place, so the model's order comes first and checkpoint-only
        modules follow. :meth:`tree` and the widget's payload are both built from this.
        """
        children: dict[str, list[str | Row]] = {"": []}
        for r in self.rows:
            path = r.module
            if path not in children:
                new = []
                while path not in children:
                    new.append(path)
                    path = path.rpartition(".")[0]
                for m in reversed(new):
                    children[m] = []
                    children[m.rpartition(".")[0]].append(m)
            children[r.module].append(r)
        return children

    def tree(self) -> dict[str, Any]:
        """Nested module nodes with per-status counts; one leaf per row (see docs/internals.md)."""
        with gc_paused():
            return self._node_dict("", self.module_children())

    def _node_dict(self, path: str, children: Mapping[str, list[str | Row]]) -> dict[str, Any]:
        nodes = []
        counts: dict[str, int] = {}
        for child in children[path]:
            if isinstance(child, Row):
                d = _leaf_dict(child)
                counts[child.status] = counts.get(child.status, 0) + 1
            else:
                d = self._node_dict(child, children)
                for s, n in d["counts"].items():
                    counts[s] = counts.get(s, 0) + n
            nodes.append(d)
        return {
            "type": "module",
            "name": path.rpartition(".")[2],
            "path": path,
            "module_type": self._module_types.get(path),
            "counts": {s: counts[s] for s in STATUSES if s in counts},
            "children": nodes,
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
