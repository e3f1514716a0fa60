"""Comparing a checkpoint with a model: one row per key, statuses, tree, rename suggestions.

``compare`` reads shapes and dtypes only; no checkpoint tensor is materialised and the model
may live on the meta device.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from dataclasses import replace as dc_replace
from functools import cached_property, partial
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from ..checkpoint import Checkpoint, SourceLike, listing_order, open_checkpoint
from ..checkpoint._core import tied_preview
from ..statuses import (
    BN_BUFFERS,
    LOADABLE_STATUSES,
    STATUS_LABELS,
    STATUSES,
    Status,
)
from ..units import dtype_name, gc_paused, numel, shape_text
from ._adapters import adapter_hint, applicable
from ._diagnosis import ConfigMismatch, config_mismatch, model_config
from ._lora import LoraAdapter, detect_lora
from ._metadata import merged_metadata
from ._renames import (
    KeySets,
    Rename,
    RenamesLike,
    RuleCandidate,
    RuleContext,
    apply_renames,
    discover_rules,
    pair_keys,
    parse_renames,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..plan._plan import LoadPlan


class ModelEntry(NamedTuple):
    """One entry of the model's state dict (what ``model.state_dict()`` holds under ``key``).

    A named tuple: a comparison builds one per model key, and a tuple is built in one C call.
    """

    key: str
    #: None for a value that is not a tensor, or a lazy module's parameter not yet materialised
    shape: tuple[int, ...] | None
    #: None for a value that is not a tensor
    dtype: torch.dtype | None
    #: one of :data:`KINDS`
    kind: str
    module: str
    device: str
    #: the other keys of the state dict holding this very tensor (tied weights, shared buffers)
    tied: tuple[str, ...] = ()


def _setter(cls: type, *, name: str = "_new") -> Any:
    """``cls(*values)`` (all fields, in order) for a frozen slots dataclass, faster.

    One call of each slot's setter instead of ``object.__setattr__`` per field. A comparison
    builds one :class:`Row` per key (twice as many for a prefixed checkpoint), so this is what
    ``compare()`` costs beyond reading the sides.
    """
    names = [f.name for f in fields(cls)]
    setters = {f"_set_{n}": getattr(cls, n).__set__ for n in names}
    # fields with a default keep it (their value comes from the scope, not from code)
    defaults = {f"_default_{f.name}": f.default for f in fields(cls) if f.default is not MISSING}
    params = [n if f"_default_{n}" not in defaults else f"{n}=_default_{n}" for n in names]
    body = "".join(f"    _set_{n}(obj, {n})\n" for n in names)
    code = f"def {name}({', '.join(params)}):\n    obj = _object_new(_cls)\n{body}    return obj\n"
    scope: dict[str, Any] = {"_object_new": object.__new__, "_cls": cls, **setters, **defaults}
    exec(code, scope)  # as dataclasses builds __init__: our own field names only
    return scope[name]


#: what torch's ``state_dict()`` holds under a key: a parameter, a persistent buffer, a module's
#: ``get_extra_state()`` (a tensor or any value), or an entry a module's own
#: ``_save_to_state_dict`` writes (quantized modules' ``scale``, ``zero_point``,
#: ``_packed_params``)
KINDS = ("param", "buffer", "extra_state", "custom")
_EXTRA_STATE = "_extra_state"  # torch's key suffix for get_extra_state()
#: a lazy module's parameters and buffers before they are materialised
_LAZY = (nn.UninitializedParameter, nn.UninitializedBuffer)


def _module_of(key: str) -> str:
    return key.rpartition(".")[0]


def model_entries(model: nn.Module) -> OrderedDict[str, ModelEntry]:
    """What ``model.load_state_dict`` expects: ``model.state_dict()``'s entries, in its order."""
    return _model_side(model).entries


# the status strings, from the one table (rows hold plain strings)
_MATCH = Status.MATCH.value
_SHAPE_MISMATCH = Status.SHAPE_MISMATCH.value
_DTYPE_MISMATCH = Status.DTYPE_MISMATCH.value
_MISSING = Status.MISSING.value
_MISSING_BUFFER = Status.MISSING_BUFFER.value
_UNEXPECTED = Status.UNEXPECTED.value
_TIED = Status.TIED.value


class _ModelSide(NamedTuple):
    """What a comparison reads from the model once (shared by :meth:`Comparison.with_renames`)."""

    entries: OrderedDict[str, ModelEntry]
    #: module path → class name
    types: dict[str, str]
    #: the subtrees whose loading torch is asked about (:func:`_ask_torch`)
    roots: list[str]
    #: ``model.state_dict()._metadata`` (module versions), or None
    metadata: Any


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    """The module of ``model`` at ``path`` ("" the model itself), or None when there is none."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _model_side(model: nn.Module) -> _ModelSide:
    """``model.state_dict(keep_vars=True)`` (no copies) and one walk over the modules.

    The entries are what torch's own ``state_dict()`` returns (so extra state, entries written
    by a module's ``_save_to_state_dict`` and quantized packed parameters are there); the walk
    names their kinds and finds the subtrees with loading code of their own (see
    :func:`_loads_its_own_way`): the smallest subtrees holding every such module. Every other
    module is ``nn.Module``'s default loading, which takes exactly the keys named as its
    parameters, buffers and extra state: torch's answer there is the key itself, and asking it
    costs ``O(keys × children)`` per level (10 s on a 100,000-key Mixture of Experts).
    """
    kinds: dict[str, str] = {}
    types: dict[str, str] = {}
    roots: list[str] = []
    inside = None  # the dry-run subtree the walk is in (pre-order), as a key prefix
    base_extra = nn.Module.get_extra_state
    # per class (a model has few among many modules): its name, whether it has extra state
    classes: dict[type, tuple[str, bool]] = {}
    stack: list[tuple[str, nn.Module]] = [("", model)]
    pop, push = stack.pop, stack.extend
    while stack:
        name, m = pop()
        cls = type(m)
        known = classes.get(cls)
        if known is None:
            known = classes[cls] = (cls.__name__, cls.get_extra_state is not base_extra)
        if name not in types:
            types[name] = known[0]
        pre = name + "." if name else ""
        params = m._parameters
        if params:
            for n, p in params.items():
                if p is not None:
                    kinds[pre + n] = "param"
        buffers = m._buffers
        if buffers:
            for n in buffers:
                kinds.setdefault(pre + n, "buffer")
        if known[1]:
            kinds[pre + _EXTRA_STATE] = "extra_state"
        if (inside is None or not pre.startswith(inside)) and _loads_its_own_way(m, not name):
            roots.append(name)
            inside = pre
        children = m._modules
        if children:
            push((pre + n, c) for n, c in reversed(children.items()) if c is not None)
    sd = model.state_dict(keep_vars=True)
    tensor = torch.Tensor
    # the keys holding one tensor object (tied weights, shared buffers): counted in C, grouped
    # only for the few tensors held more than once
    held = Counter(id(v) for v in sd.values() if isinstance(v, tensor))
    by_identity: dict[int, list[str]] = {}
    if len(held) < sum(held.values()):
        for k, v in sd.items():
            if isinstance(v, tensor) and held[id(v)] > 1:
                by_identity.setdefault(id(v), []).append(k)
    out: OrderedDict[str, ModelEntry] = OrderedDict()
    lazy, entry, new, kind_of = _LAZY, ModelEntry, tuple.__new__, kinds.get
    shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
    one_shape = shapes.setdefault
    for k, v in sd.items():
        kind = kind_of(k, "custom")
        module = k.rpartition(".")[0]
        if not isinstance(v, tensor):
            out[k] = new(entry, (k, None, None, kind, module, "", ()))
            continue
        group = by_identity.get(id(v))
        tied = tuple(o for o in group if o != k) if group is not None else ()
        # issubclass: isinstance would run Parameter's metaclass check in Python, once per key;
        # equal shapes as one tuple (few distinct ones: one object each, not one per key)
        shape = None if issubclass(type(v), lazy) else one_shape(t := tuple(v.shape), t)
        device = "meta" if v.is_meta else v.device.type
        out[k] = new(entry, (k, shape, v.dtype, kind, module, device, tied))
    return _ModelSide(out, types, roots, getattr(sd, "_metadata", None))


def _entries_from_checkpoint(ckpt: Checkpoint) -> OrderedDict[str, ModelEntry]:
    """Model side read from a second checkpoint (``sd-widgets diff --against``).

    In its :func:`~sd_widgets.checkpoint.listing_order`.
    """
    out: OrderedDict[str, ModelEntry] = OrderedDict()
    for k in listing_order(ckpt):
        info = ckpt[k]
        kind = "buffer" if k.rpartition(".")[2] in BN_BUFFERS else "param"
        out[k] = ModelEntry(k, info.shape, info.dtype, kind, _module_of(k), "cpu", tuple(info.tied))
    return out


# ------------------------------------------------------------------------------------------------
# asking torch: the model's own loading, run on a meta-device twin
# ------------------------------------------------------------------------------------------------


def _loads_its_own_way(m: nn.Module, root: bool) -> bool:
    """Whether ``m`` has loading code of its own.

    An overridden ``_load_from_state_dict`` (BatchNorm, quantized modules), load hooks
    (parametrizations' ``weight_norm``, lazy modules, spectral_norm), or, for the model itself,
    its own ``load_state_dict``.
    """
    cls = type(m)
    if cls._load_from_state_dict is not nn.Module._load_from_state_dict:
        return True
    pre, post = m._load_state_dict_pre_hooks, m._load_state_dict_post_hooks
    if (pre or post) and any(not _fsdp_bookkeeping(h) for h in chain(pre.values(), post.values())):
        return True
    return root and cls.load_state_dict is not nn.Module.load_state_dict


def _fsdp_bookkeeping(hook: Any) -> bool:
    """Whether a load hook is FSDP2's own bookkeeping, which keeps its shards in place.

    ``fully_shard`` puts one before and one after the load on every module holding sharded
    parameters. They take every key as it comes, so they are no reason for a dry run: on an FSDP2 model
    that would be one per module (16 s for 10,000 keys instead of none).
    """
    fn = getattr(hook, "hook", hook)  # a pre-hook is kept wrapped
    return str(getattr(fn, "__module__", "")).startswith("torch.distributed.fsdp.")


class _Verdict:
    """What torch's own loading did with the keys of the dry-run subtrees (absolute names)."""

    def __init__(self) -> None:
        #: model key → the (renamed) checkpoint key whose tensor it took, when not its own name
        self.source: dict[str, str] = {}
        #: model keys torch reports missing, inside the dry-run subtrees
        self.missing: set[str] = set()
        #: model keys the module's own loading set without a checkpoint entry of theirs
        #: (BatchNorm < v2 fills ``num_batches_tracked``; a hook computes a tensor)
        self.filled: set[str] = set()
        #: (renamed) checkpoint keys torch reports unexpected, inside the dry-run subtrees
        self.unexpected: set[str] = set()
        #: (renamed) checkpoint keys a module's loading consumed for other keys
        self.consumed: set[str] = set()
        #: model keys torch reports a size mismatch for
        self.mismatched: set[str] = set()
        #: shapes lazy parameters take from the checkpoint
        self.shapes: dict[str, tuple[int, ...]] = {}
        #: subtree → why its loading could not run on the meta device (matched by name there)
        self.failed: dict[str, str] = {}
        #: the dry-run subtrees ("" for the whole model)
        self.roots: list[str] = []

    def in_scope(self, key: str) -> bool:
        """Whether torch decided ``key`` (it lies in a dry-run subtree that ran)."""
        return any((not r or key.startswith(r + ".")) and r not in self.failed for r in self.roots)


def _meta_twin(module: nn.Module) -> nn.Module:
    """A structural twin of ``module``: same classes, hooks, parametrizations, meta tensors.

    ``copy.deepcopy`` with a memo that maps every parameter and buffer to a meta tensor (no
    data is copied); ``module`` is untouched.
    """
    import copy

    memo: dict[int, Any] = {}
    lazy = _LAZY
    for m in module.modules():
        for p in m._parameters.values():
            if p is None or id(p) in memo:
                continue
            if isinstance(p, lazy):
                memo[id(p)] = nn.UninitializedParameter(  # type: ignore[call-arg]
                    requires_grad=p.requires_grad, device="meta", dtype=p.dtype
                )
            else:
                memo[id(p)] = nn.Parameter(
                    torch.empty_like(p, device="meta"), requires_grad=p.requires_grad
                )
        for b in m._buffers.values():
            if b is None or id(b) in memo:
                continue
            if isinstance(b, lazy):
                memo[id(b)] = nn.UninitializedBuffer(device="meta", dtype=b.dtype)  # type: ignore[call-arg]
            else:
                memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(module, memo)


_SIZE_MISMATCH = "size mismatch for "  # how torch's load_state_dict words its error


def _record(seen: list[Any], _module: nn.Module, keys: Any) -> None:
    seen.append(keys)


def _ask_torch(
    model: nn.Module,
    side: _ModelSide,
    ckpt: Checkpoint,
    renamed: Mapping[str, str],
    renames: Sequence[Rename],
) -> _Verdict:
    """Torch's own answer: which checkpoint keys the model's loading code takes, and how.

    A meta copy of the (renamed) checkpoint is loaded into meta twins of the subtrees that have
    loading code of their own, ``strict=False, assign=True``.

    The metadata handed to torch is what :meth:`LoadPlan.state_dict` hands it (the model's
    module versions, overridden by the checkpoint's), so the plan loads as this says. A
    subtree whose loading raises on the meta device (a hook that needs values) is reported in
    ``failed`` and matched by name.
    """
    verdict = _Verdict()
    roots = verdict.roots = side.roots
    if not roots:
        return verdict
    entries = side.entries
    metadata = merged_metadata(side.metadata, ckpt.metadata, renames)
    by_new = {new: old for old, new in renamed.items()}
    for root in roots:
        pre = root + "." if root else ""
        sub = model.get_submodule(root) if root else model
        local = OrderedDict()
        for new, old in by_new.items():
            if new.startswith(pre):
                info = ckpt[old]
                local[new[len(pre) :]] = torch.empty(info.shape, dtype=info.dtype, device="meta")
        by_storage = {id(t.untyped_storage()): pre + k for k, t in local.items()}
        local._metadata = OrderedDict(  # type: ignore[attr-defined]
            (k[len(pre) :], dict(v))
            for k, v in metadata.items()
            if not pre or k == root or k.startswith(pre)
        )
        seen: list[Any] = []
        try:
            twin = _meta_twin(sub)
            # the root's post-hook sees torch's complete lists, also when the load then raises
            # for size mismatches (which it records whatever ``strict`` is)
            twin.register_load_state_dict_post_hook(partial(_record, seen))
            twin.load_state_dict(local, strict=False, assign=True)
        except Exception as exc:
            lines = [line.strip() for line in str(exc).splitlines()]
            sizes = [line for line in lines if line.startswith(_SIZE_MISMATCH)]
            others = [line for line in lines[1:] if line and not line.startswith(_SIZE_MISMATCH)]
            if not seen or others or not sizes:
                detail = (others or lines or [""])[0][:200]
                verdict.failed[root] = f"{type(exc).__name__}: {detail}"
                continue
            for line in sizes:
                verdict.mismatched.add(pre + line[len(_SIZE_MISMATCH) :].partition(": ")[0])
        try:
            loaded = twin.state_dict(keep_vars=True)
        except Exception as exc:  # a state_dict hook that needs values
            verdict.failed[root] = f"{type(exc).__name__}: {str(exc)[:200]}"
            continue
        result = seen[-1]
        verdict.missing.update(pre + k for k in result.missing_keys)
        verdict.unexpected.update(pre + k for k in result.unexpected_keys)
        paired: set[str] = set()
        for k, t in loaded.items():
            mk = pre + k
            if not isinstance(t, torch.Tensor) or mk in verdict.missing:
                continue
            src = by_storage.get(id(t.untyped_storage())) if t.is_meta else None
            e = entries.get(mk)
            if e is not None and e.shape is None and not isinstance(t, _LAZY):
                verdict.shapes[mk] = tuple(t.shape)
            if src is not None:
                paired.add(src)
                if src != mk:
                    verdict.source[mk] = src
            elif mk not in by_new and e is not None and e.kind in ("param", "buffer"):
                verdict.filled.add(mk)
        verdict.consumed.update(
            pre + k
            for k in local
            if pre + k not in paired
            and pre + k not in verdict.unexpected
            and pre + k not in entries
        )
    return verdict


#: every field of a :class:`Row` that leaves the library, in THE one order, with what it holds.
#: Each output picks its fields from this table in this order: :meth:`Row.to_json` (the tree's
#: leaves, ``sd-widgets diff --format json``), :meth:`Comparison.to_frame` and the widget's
#: payload columns. A new field goes here (and onto :class:`Row`) once.
ROW_FIELDS: dict[str, str] = {
    "key": "the row's key: the model key when the model has it, else the checkpoint key "
    "(after renames)",
    "status": "one of STATUSES",
    "kind": 'what torch\'s state_dict() holds there: "param", "buffer", "extra_state" '
    '(get_extra_state) or "custom" (written by the module\'s own _save_to_state_dict); None '
    "for a checkpoint-only key",
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
    "tied_to": "for a tied row (a model key absent from the checkpoint that is the same tensor "
    "as a key the checkpoint holds): that key (loading it changes this one too)",
    "model_on_meta": "the model tensor lives on the meta device (no values to adapt from)",
    "config_mismatch": "a shape mismatch of a model built with another config (every shape "
    "mismatch shares one size ratio, Comparison.config_mismatch()): overlap is not offered",
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
#: :meth:`Comparison.to_frame` columns (the first ten are the contract of ``docs/design.md``)
FRAME_FIELDS = row_fields(without=("adaptable", "model_on_meta", "config_mismatch"))
_json_values = attrgetter(*JSON_FIELDS)
_status_of = attrgetter("status")
_frame_values = attrgetter(*FRAME_FIELDS)
#: fields whose JSON form is a list (tuples on the row)
_JSON_LISTS = ("ckpt_shape", "model_shape", "tied")


#: what a missing row of each kind is called in its reason (anything else: "buffer")
_MISSING_WHAT = {"param": "parameter", "extra_state": "extra state", "custom": "entry"}


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
    #: a shape mismatch of a model built with another config (see ``ROW_FIELDS``)
    config_mismatch: bool = False

    @property
    def loadable(self) -> bool:
        """The checkpoint tensor loads as it is (a dtype difference is cast)."""
        return self.status in LOADABLE_STATUSES

    @property
    def adapters(self) -> tuple[str, ...]:
        """Names of the registered adapters that can load this shape mismatch (registry order).

        Empty for every other status. :mod:`sd_widgets.compare._adapters` decides; nothing here restates
        its rules.
        """
        if self.status != _SHAPE_MISMATCH:
            return ()
        return applicable(
            self.ckpt_shape,
            self.model_shape,
            model_on_meta=self.model_on_meta,
            key=self.key,
            config_mismatch=self.config_mismatch,
        )

    @property
    def adaptable(self) -> bool:
        """A shape mismatch at least one registered adapter can load (see :attr:`adapters`)."""
        return self.status == _SHAPE_MISMATCH and bool(self.adapters)

    @property
    def reason(self) -> str | None:
        """Why this row cannot be loaded as it is (None when it can)."""
        status = self.status
        if status in (_MATCH, _DTYPE_MISMATCH):
            return None
        if status == _SHAPE_MISMATCH:
            return (
                shape_mismatch_text(self.ckpt_shape, self.model_shape)
                + "; "
                + adapter_hint(
                    self.ckpt_shape,
                    self.model_shape,
                    model_on_meta=self.model_on_meta,
                    key=self.model_key,
                    config_mismatch=self.config_mismatch,
                )
            )
        if status == _TIED:
            return (
                f"tied to {self.tied_to!r} (the same tensor): not in the checkpoint itself, it "
                f"takes the value {self.tied_to!r} loads; a strict plain load_state_dict still "
                "lists it as missing"
            )
        if status in (_MISSING, _MISSING_BUFFER):
            what = _MISSING_WHAT.get(self.kind or "", "buffer")
            if self.model_on_meta:
                return (
                    f"{what} not in the checkpoint: stays on the meta device; the model "
                    "cannot run until it is initialised"
                )
            if self.kind == "extra_state":
                return "extra state not in the checkpoint: set_extra_state is not called"
            if status == _MISSING:
                return "parameter not in the checkpoint: keeps its current (initial) value"
            return f"{what} not in the checkpoint: keeps its current value"
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
                out[name] = tied_preview(value) if name == "tied" else list(value)
        return out


def shape_mismatch_text(ckpt_shape: Sequence[int] | None, model_shape: Sequence[int] | None) -> str:
    """THE words for a shape mismatch: ``shape mismatch: checkpoint [a, b] vs model [c, d]``.

    Parameters
    ----------
    ckpt_shape, model_shape : sequence of int or None
        The two shapes.

    Returns
    -------
    str
    """
    return f"shape mismatch: checkpoint {shape_text(ckpt_shape)} vs model {shape_text(model_shape)}"


#: ``Row(*values)`` (all fields, in order), one per key (see :func:`_setter`)
_row = _setter(Row, name="_row")


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
        side: _ModelSide | None = None,
    ) -> None:
        self.model = model
        self.checkpoint = checkpoint
        self.renames: tuple[Rename, ...] = tuple(renames)
        if side is None:
            if entries is not None:  # another checkpoint as the model side
                side = _ModelSide(entries, module_types or {}, [], None)
            elif model is None:
                raise TypeError("a Comparison needs a model or model entries")
            elif isinstance(model, torch.jit.ScriptModule):
                raise TypeError(
                    f"the model is a TorchScript module ({type(model).__name__}, from "
                    "torch.jit.script or torch.jit.trace): sd_widgets compares and loads "
                    "nn.Module models, whose submodules it walks, and TorchScript does not allow "
                    "that. Pass the nn.Module it was made from; or compare its weights as a "
                    "checkpoint: sdw.compare(model, scripted.state_dict())."
                )
            else:
                side = _model_side(model)
        #: the model side, read once; shared (not rebuilt) by with_renames
        self._side = side
        self.entries = side.entries
        self._module_types: dict[str, str] = side.types
        with gc_paused():
            rows = self._build_rows()
        #: the one size ratio behind every shape mismatch (read once: rows are fixed from here)
        self._config_mismatch = config_mismatch(rows, model_config(model))
        self.rows: list[Row] = _mark_config_mismatch(rows, self._config_mismatch)
        self._by_key = {r.key: r for r in self.rows}

    # construction ------------------------------------------------------------------------------
    def _renamed_checkpoint_keys(self) -> OrderedDict[str, str]:
        """Checkpoint key → name after renames; raises on collisions.

        In the checkpoint's order; against a second checkpoint (no model whose order the rows
        take), in its :func:`~sd_widgets.checkpoint.listing_order`, as the other side is.
        """
        out: OrderedDict[str, str] = OrderedDict()
        seen: dict[str, str] = {}
        keys = self.checkpoint if self.model is not None else listing_order(self.checkpoint)
        for k in keys:
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
        # entries of the checkpoint that are not tensors (extra state, packed parameters)
        values = {
            apply_renames(k, self.renames) if self.renames else k: k
            for k in self.checkpoint.source.non_tensor
        }
        model = self.model
        verdict = (
            _ask_torch(model, self._side, self.checkpoint, renamed, self.renames)
            if model is not None
            else _Verdict()
        )
        self.unasked: dict[str, str] = dict(verdict.failed)
        infos = self.checkpoint.__getitem__
        prod, dtype_name_ = numel, dtype_name
        rows: list[Row] = []
        append = rows.append
        source, filled, mismatched = verdict.source, verdict.filled, verdict.mismatched
        missing = verdict.missing
        for mk, e in self.entries.items():
            new = source.get(mk, mk)
            ck = by_target.get(new) if mk not in missing else None
            mdt = dtype_name_(e.dtype)
            model_shape = e.shape if e.shape is not None else verdict.shapes.get(mk)
            tied_to = None
            if ck is None and mk in values:  # a value that is not a tensor, on both sides
                ck, status, ckpt_shape, ckpt_dtype, nbytes = values[mk], _MATCH, None, None, 0
            elif ck is None:
                ckpt_shape = ckpt_dtype = None
                nbytes = prod(model_shape) * e.dtype.itemsize if model_shape and e.dtype else 0
                tied_to = next((t for t in e.tied if t in by_target), None) if e.tied else None
                if mk in filled:  # the module's own loading sets it (BatchNorm < v2)
                    status = _MATCH
                elif tied_to is not None:
                    status = _TIED
                else:
                    status = _MISSING if e.kind == "param" else _MISSING_BUFFER
            else:
                info = infos(ck)
                if e.kind == "extra_state" or (e.shape is None and model_shape is None):
                    status = _MATCH  # set_extra_state (or a lazy module) takes it as it is
                elif info.shape != model_shape or mk in mismatched:
                    status = _SHAPE_MISMATCH
                elif info.dtype != e.dtype:
                    status = _DTYPE_MISMATCH
                else:
                    status = _MATCH
                ckpt_shape, ckpt_dtype = info.shape, dtype_name_(info.dtype)
                nbytes = prod(info.shape) * info.dtype.itemsize
            append(
                _row(
                    mk,
                    status,
                    e.kind,
                    e.module,
                    ck,
                    mk,
                    ckpt_shape,
                    model_shape,
                    ckpt_dtype,
                    mdt,
                    nbytes,
                    e.tied,
                    e.device == "meta",
                    tied_to,
                )
            )
        entries = self.entries
        taken = set(source.values())
        consumed = verdict.consumed
        for ck, new in renamed.items():
            if new in entries or new in taken:
                continue
            info = infos(ck)
            # consumed by a module's own loading for keys of other names (spectral_norm's old
            # ``weight``): loads with the checkpoint, as torch loads it
            status = _MATCH if new in consumed else _UNEXPECTED
            append(
                _row(
                    new,
                    status,
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
        for new, ck in values.items():
            if new not in entries:
                append(
                    _row(
                        new,
                        _UNEXPECTED,
                        None,
                        _module_of(new),
                        ck,
                        None,
                        None,
                        None,
                        None,
                        None,
                        0,
                        (),
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
        """True when ``model.load_state_dict(checkpoint)`` (strict) would succeed.

        A ``tied`` row makes it False: a strict plain load lists the tied key as missing.
        """
        return all(r.status in LOADABLE_STATUSES for r in self.rows)

    @cached_property
    def conflicts(self) -> list[tuple[str, ...]]:
        """Groups of model keys that are one tensor, held by the checkpoint as different tensors.

        One Parameter saved under two names with different values, or a buffer two modules
        share.

        Torch copies each of them in module order, so the last one wins; the plan loads that
        one alone (see :meth:`plan`). Each group is in model order.
        """
        groups: list[tuple[str, ...]] = []
        seen: set[str] = set()
        by_key = self._by_key
        for r in self.rows:
            if not r.tied or r.key in seen or r.model_key is None:
                continue
            group = tuple(k for k in (r.key, *r.tied) if k in by_key)
            seen.update(group)
            held = [by_key[k] for k in group if by_key[k].ckpt_key is not None]
            info = self.checkpoint.get
            if len(held) > 1:
                first = held[0].ckpt_key
                same = {first, *(getattr(info(first or ""), "tied", ()) or ())}
                if any(h.ckpt_key not in same for h in held[1:]):
                    groups.append(tuple(h.key for h in held))
        return groups

    def summary(self) -> dict[str, int]:
        """``{status: count}`` for every status (zeros included), in vocabulary order."""
        counted = Counter(map(_status_of, self.rows))  # counted in C
        return {s: counted.get(s, 0) for s in STATUSES}

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
        (comma-separated; at most 16 names and a count), tied_to.
        """
        import pandas as pd

        df = pd.DataFrame(list(map(_frame_values, self.rows)), columns=list(FRAME_FIELDS))
        df["tied"] = [", ".join(tied_preview(t)) for t in df["tied"]]
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
        get = children.get
        for r in self.rows:
            module = r.module
            siblings = get(module)
            if siblings is None:  # a new module: create it and the parents it lacks
                new = []
                path = module
                while path not in children:
                    parent = path.rpartition(".")[0]
                    new.append((path, parent))
                    path = parent
                for m, parent in reversed(new):
                    children[m] = []
                    children[parent].append(m)
                siblings = children[module]
            siblings.append(r)
        return children

    def tree(self) -> dict[str, Any]:
        """Nested module nodes with per-status counts; one leaf per row (see docs/internals.md).

        The one serialiser's payload (:func:`sd_widgets.compare._tree.serialise`, the widget's tree)
        nested; each leaf is its row's :meth:`Row.to_json`.
        """
        from ._tree import nested, serialise

        with gc_paused():
            return nested(
                serialise(self.module_children(), self._module_types),
                leaf=lambda key: _leaf_dict(self._by_key[key]),
                module_type=self._module_types.get(""),
            )

    # renames -------------------------------------------------------------------------------------
    def with_renames(self, renames: RenamesLike, *, replace: bool = False) -> Comparison:
        """A new comparison with ``renames`` added after the current rules (or instead of them).

        The model side (entries, module types, naming context) is shared, not rebuilt, and so
        is the LoRA adapter the checkpoint is (found from its own key names and the model).
        """
        rules = parse_renames(renames)
        new = Comparison(
            self.model,
            self.checkpoint,
            rules if replace else self.renames + rules,
            side=self._side,
        )
        # what the checkpoint's own names and the model decide, whatever the rules: kept
        for name in ("rule_context", "lora"):
            if name in self.__dict__:
                new.__dict__[name] = self.__dict__[name]
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
            elif r.status in (_MISSING, _MISSING_BUFFER):
                missing[r.key] = r.model_shape or ()
            elif r.ckpt_key is not None:
                paired.append(r.key)
        return KeySets(unexpected, missing, paired)

    @cached_property
    def _rule_candidates(self) -> list[RuleCandidate]:
        return discover_rules(self._key_sets, self.rule_context, limit=10)

    def suggest_renames(self, limit: int = 50, min_score: float = 0.5) -> list[Suggestion]:
        """Pairs (unexpected checkpoint key, missing model key), best first, each key once.

        Scored by shape equality, shared trailing names and edit similarity (see
        :func:`sd_widgets.compare._renames.pair_keys`); near-linear in the number of keys. The checkpoint
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

    def config_mismatch(self) -> ConfigMismatch | None:
        """When every shape mismatch differs by one size ratio: the sizes, in one sentence.

        A model built with a different config than the checkpoint's (hidden 384 vs 768, ...);
        None otherwise. See :func:`sd_widgets.compare._diagnosis.config_mismatch`.
        """
        return self._config_mismatch

    # LoRA adapters -------------------------------------------------------------------------------
    @cached_property
    def lora(self) -> LoraAdapter | None:
        """The PEFT LoRA adapter this checkpoint is, or None (see :mod:`sd_widgets.compare._lora`).

        Its rank, ``lora_alpha`` and target modules (from ``adapter_config.json`` beside the
        file), and every ``lora_A``/``lora_B`` pair with the model key it modifies.
        ``describe()`` says it in a sentence; ``plan(lora="merge")`` merges it.
        """
        if self.model is None:
            return None
        return detect_lora(
            {k: info.shape for k, info in self.checkpoint.items()},
            {k: e.shape for k, e in self.entries.items() if e.shape is not None},
            self.checkpoint.source.path,
            module_of=partial(_submodule, self.model),
            base_model_prefix=self.rule_context.base_model_prefix,
        )

    # planning ----------------------------------------------------------------------------------
    def plan(
        self,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        renames: RenamesLike = None,
        bn: str = "load",
        adapt: Mapping[str, str] | str | None = None,
        lora: str | None = None,
    ) -> LoadPlan:
        """Choose what to load; see :class:`sd_widgets.plan._plan.LoadPlan`.

        ``lora="merge"``: the checkpoint is a LoRA adapter (:attr:`lora`); the plan merges each
        factor pair into the model weight it modifies (``include``/``exclude`` choose among
        those weights).
        """
        from ..plan._plan import LoadPlan

        cmp = self.with_renames(renames) if renames else self
        if lora is not None:
            return LoadPlan.build_lora(cmp, lora, include=include, exclude=exclude)
        return LoadPlan.build(cmp, include=include, exclude=exclude, bn=bn, adapt=adapt)

    def select(self, patterns: str | Iterable[str]) -> list[str]:
        """Row keys matched by keys, module paths (whole subtree) or glob patterns.

        See :func:`sd_widgets.plan._plan.select` (selection lives with the plan).
        """
        from ..plan._plan import select

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


def _mark_config_mismatch(rows: list[Row], found: ConfigMismatch | None) -> list[Row]:
    """``rows`` with ``config_mismatch`` set on the keys ``found`` explains.

    See :func:`~sd_widgets.compare._diagnosis.config_mismatch`: no slice is offered for a
    model built with another config.
    """
    if found is None:
        return rows
    keys = set(found.keys)
    return [dc_replace(r, config_mismatch=True) if r.key in keys else r for r in rows]
