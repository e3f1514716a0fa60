"""What to load: selection, renames, shape adapters, the BatchNorm policy.

A :class:`LoadPlan` is built from a :class:`~sd_widgets.compare._compare.Comparison` (through its public
API only) and is fixed once built. Selection of keys by name, module path or glob lives here too,
with the per-comparison indexes it needs (kept beside the comparison, not inside it). Code export
goes through :mod:`sd_widgets.plan._codegen`, which sees only the frozen :class:`~sd_widgets.plan._codegen.LoadSpec`
this module describes the plan with.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import itertools
import operator
import os
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from ..checkpoint._dcp import read_dcp_metadata
from ..compare._adapters import ADAPTERS as ADAPTER_REGISTRY
from ..compare._adapters import get_adapter
from ..compare._compare import Comparison, Row, shape_mismatch_text
from ..compare._lora import LoraPair, merge_lora, merge_lora_bias
from ..compare._metadata import merged_metadata
from ..errors import CheckpointChangedError
from ..statuses import BN_BUFFERS, BN_COUNTER, BN_STATISTICS, Status
from ..units import dtype_name, gc_paused, human_bytes, numel
from ._codegen import LoadSpec, trusted_names
from ._codegen import to_code as spec_to_code

if TYPE_CHECKING:
    import pandas as pd


BN_POLICIES = ("load", "keep", "reset")
#: names of the registered adapters (:data:`sd_widgets.compare._adapters.ADAPTERS` has the functions)
ADAPTERS: tuple[str, ...] = tuple(ADAPTER_REGISTRY)


class PlanEntry(NamedTuple):
    """One tensor the plan loads.

    Immutable; a named tuple because a widget click on a 30,000-key tree builds one per
    selected key.
    """

    key: str  # model key
    ckpt_key: str
    status: str
    adapter: str | None = None
    #: (checkpoint dtype, model dtype) when load_state_dict will cast
    cast: tuple[str, str] | None = None


# ------------------------------------------------------------------------------------------------
# per-comparison indexes: built once, kept beside the comparison (which knows nothing of plans)
# ------------------------------------------------------------------------------------------------


class _Index:
    """What selecting and planning need from one comparison, computed once."""

    def __init__(self, cmp: Comparison) -> None:
        rows = cmp.rows
        self.keys = [r.key for r in rows]
        self.row_keys = set(self.keys)
        self.by_ckpt = {r.ckpt_key: r.key for r in rows if r.ckpt_key is not None}
        self.order = {k: i for i, k in enumerate(self.keys)}
        # modules with running statistics; with a model, those that track them and can reset
        # them (torch's BatchNorm and InstanceNorm family; what the BatchNorm policies call),
        # looked up for these few paths, not a walk over every module
        candidates = {
            r.module for r in rows if r.key.rpartition(".")[2] == BN_STATISTICS[0] and r.module
        }
        model = cmp.model
        if model is not None:
            candidates = {
                n
                for n in candidates
                if getattr(m := _submodule(model, n), "track_running_stats", False) is True
                and callable(getattr(m, "reset_running_stats", None))
            }
        self.bn_modules = frozenset(candidates)
        self._cast_problems: dict[str, str | None] | None = None
        self._conflicted: frozenset[str] | None = None
        self._subtrees: dict[str, list[str]] | None = None
        #: per BatchNorm policy: what planning does with each row on its own
        self.outcomes: dict[str, _Outcomes] = {}
        #: (key, adapter) -> a shape mismatch's entry, or why it is skipped
        self.adapted: dict[tuple[str, str | None], PlanEntry | str] = {}

    def exact_keys(self, keys: list[str]) -> list[str] | None:
        """``keys`` in model order, each once, when all are row keys; else None.

        A list already in model order (the Explorer's selection) is returned as it is, checked
        with a few C-level passes; others are put in order by a sort when few, a scan when many.
        """
        positions: list[Any] = list(map(self.order.get, keys))
        if None in positions:
            return None
        if all(map(operator.lt, positions, itertools.islice(positions, 1, None))):
            return keys
        chosen = set(keys)
        if len(chosen) == len(self.keys):
            return list(self.keys)
        if len(chosen) * 8 < len(self.keys):
            return sorted(chosen, key=self.order.__getitem__)
        return [k for k in self.keys if k in chosen]

    def subtree(self, module: str) -> list[str]:
        """Keys below ``module`` (keys starting with ``module + "."``), model order.

        One dict lookup: the map from every dotted prefix of every key to its keys is built on
        first use, so selecting a thousand modules costs no thousand scans of the rows.
        """
        if self._subtrees is None:
            subtrees: dict[str, list[str]] = {}
            for k in self.keys:
                i = k.find(".")
                while i >= 0:
                    subtrees.setdefault(k[:i], []).append(k)
                    i = k.find(".", i + 1)
            self._subtrees = subtrees
        return self._subtrees.get(module, [])

    def conflicted(self, cmp: Comparison) -> frozenset[str]:
        """Keys of :attr:`Comparison.conflicts` (one tensor, different checkpoint values)."""
        if self._conflicted is None:
            self._conflicted = frozenset(k for group in cmp.conflicts for k in group)
        return self._conflicted

    def cast_problem(self, cmp: Comparison, key: str) -> str | None:
        """Why the checkpoint values of ``key`` cannot be cast exactly to the model's dtype."""
        if self._cast_problems is None:
            # every inexact-looking cast of the comparison, read in one pass: these are small
            # buffers (num_batches_tracked, index tables), and a widget rebuilds plans per click
            risky = [r for r in cmp.rows if r.status == Status.DTYPE_MISMATCH and _lossy_kind(r)]
            tensors = cmp.checkpoint.tensors([r.ckpt_key for r in risky if r.ckpt_key])
            self._cast_problems = {
                r.key: _exact_cast_problem(tensors[r.ckpt_key], _dtype(r.model_dtype))
                for r in risky
                if r.ckpt_key
            }
        return self._cast_problems.get(key)


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:  # a checkpoint-only module path
        return None


_INDEXES: weakref.WeakKeyDictionary[Comparison, _Index] = weakref.WeakKeyDictionary()


def _index(cmp: Comparison) -> _Index:
    index = _INDEXES.get(cmp)
    if index is None:
        index = _INDEXES[cmp] = _Index(cmp)
    return index


def bn_modules(cmp: Comparison) -> frozenset[str]:
    """Modules of ``cmp`` with BatchNorm running statistics (as the model was when compared).

    Parameters
    ----------
    cmp : Comparison
        The comparison the plan is built from.

    Returns
    -------
    frozenset of str
        Module paths.
    """
    return _index(cmp).bn_modules


def select(cmp: Comparison, patterns: str | Iterable[str]) -> list[str]:
    """Row keys of ``cmp`` matched by keys, module paths (whole subtree) or glob patterns.

    A checkpoint key (before renaming) selects its row too. A pattern that is neither a key,
    a module path nor a glob matching something raises ``KeyError`` with close matches.

    Parameters
    ----------
    cmp : Comparison
        Where to look.
    patterns : str or iterable of str
        ``"classifier.weight"``, ``"backbone.layer1"``, ``"*.bias"``, ...

    Returns
    -------
    list of str
        Matched row keys in the comparison's (model) order, each once.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    index = _index(cmp)
    chosen: dict[str, None] = {}
    for p in patterns:
        if p in index.row_keys:
            chosen[p] = None
        elif p in index.by_ckpt:
            chosen[index.by_ckpt[p]] = None
        elif any(ch in p for ch in "*?["):
            for r in cmp.rows:
                if fnmatch.fnmatchcase(r.key, p) or (
                    r.ckpt_key is not None and fnmatch.fnmatchcase(r.ckpt_key, p)
                ):
                    chosen[r.key] = None
        else:
            matched = index.subtree(p.rstrip(".")) if p else index.keys
            chosen.update(dict.fromkeys(matched))
            if not matched:
                modules = sorted({r.module for r in cmp.rows if r.module})
                close = difflib.get_close_matches(p, index.keys + modules, n=3)
                raise KeyError(
                    f"{p!r} matches no key or module of this comparison"
                    + (f"; did you mean {close}?" if close else "")
                )
    return sorted(chosen, key=index.order.__getitem__)


# ------------------------------------------------------------------------------------------------
# dtype casts partial_load would refuse: checked on the actual values
# ------------------------------------------------------------------------------------------------


def _dtype(name: str | None) -> torch.dtype:
    dtype = getattr(torch, name or "", None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{name!r} is not a torch dtype")
    return dtype


def _lossy_kind(row: Row) -> bool:
    """Whether load_state_dict's cast for this row is lossy in general.

    Floating or complex into integer or bool, or complex into real.
    """
    try:
        src, dst = _dtype(row.ckpt_dtype), _dtype(row.model_dtype)
    except ValueError:
        return False
    if src.is_complex:
        return not dst.is_complex
    return src.is_floating_point and not (dst.is_floating_point or dst.is_complex)


def _exact_cast_problem(t: torch.Tensor, dtype: torch.dtype) -> str | None:
    """None when every value of ``t`` survives a cast to ``dtype`` unchanged; else why not."""
    if t.is_complex():
        return "complex values would lose their imaginary part"
    if t.numel() == 0:
        return None
    v = t.detach().double()
    if not bool(torch.isfinite(v).all()):
        return "it holds NaN or infinite values"
    if not torch.equal(v, v.trunc()):
        return "not every value is a whole number"
    lo, hi = int(v.min().item()), int(v.max().item())
    low, high = (0, 1) if dtype == torch.bool else (torch.iinfo(dtype).min, torch.iinfo(dtype).max)
    if lo < low or hi > high:
        return f"values from {lo} to {hi} do not fit {dtype_name(dtype)}"
    return None


# ------------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------------


def _keep_bn_counters_with_their_statistics(
    cmp: Comparison,
    modules: Iterable[str],
    entries: OrderedDict[str, PlanEntry],
    skipped: OrderedDict[str, str],
) -> None:
    """Skip a BatchNorm's ``num_batches_tracked`` when its running mean or variance is not loaded.

    A resized layer, or a partial selection: the checkpoint's step count paired with the
    model's own statistics would be wrong, and with ``momentum=None`` (cumulative average) it
    weights every later update by a count of batches these statistics never saw.
    """
    for module in modules:
        prefix = f"{module}." if module else ""
        counter = prefix + BN_COUNTER
        if counter not in entries:
            continue
        absent = [
            prefix + b for b in BN_STATISTICS if prefix + b in cmp and prefix + b not in entries
        ]
        if absent:
            del entries[counter]
            names = " and ".join(repr(a.rpartition(".")[2]) for a in absent)
            skipped[counter] = (
                f"{names} of this BatchNorm {'is' if len(absent) == 1 else 'are'} not loaded: "
                "its step counter stays with the model's own statistics"
            )


def _shape_mismatch_reason(row: Row, adapter: str | None) -> str | None:
    """None when ``adapter`` handles the row; otherwise why it is skipped (and how to opt in).

    Without an adapter it is the row's own reason (:attr:`Row.reason`, the one wording).
    """
    if adapter is None:
        return row.reason
    why = get_adapter(adapter).why_not(
        row.ckpt_shape, row.model_shape, model_on_meta=row.model_on_meta, key=row.key
    )
    if why is None:
        return None
    return f"adapter {adapter!r} cannot handle the {shape_mismatch_text(row.ckpt_shape, row.model_shape)} ({why})"


def _bn_policy_reason(bn: str) -> str:
    return (
        "bn='keep': the model's running statistics are kept"
        if bn == "keep"
        else "bn='reset': running statistics are reset after loading"
    )


def _tie_reason(winner: str, conflict: bool) -> str:
    text = (
        f"tied to {winner!r} (one tensor), which torch loads after it and keeps (the last one "
        "wins): loaded once, through it"
    )
    if conflict:
        text += f"; the checkpoint holds a different value here, and {winner!r}'s is what stays"
    return text


def _filled_reason(row: Row) -> str:
    return (
        "the module's own loading sets it (BatchNorm of version < 2 fills in its step counter): "
        "nothing of its own to read from the checkpoint"
    )


def _cast_reason(row: Row, problem: str) -> str:
    return (
        f"checkpoint {row.ckpt_dtype} into the model's {row.model_dtype}: "
        f"{problem}, so load_state_dict would change them (partial_load "
        "refuses such a cast); the model keeps its own value"
    )


def _cast_of(row: Row) -> tuple[str, str] | None:
    if row.ckpt_dtype != row.model_dtype and row.ckpt_dtype and row.model_dtype:
        return (row.ckpt_dtype, row.model_dtype)
    return None


class _Outcome(NamedTuple):
    """What planning does with one selected row, as far as the row alone decides.

    ``result`` is the entry or the reason it is skipped; None for a shape mismatch (the adapters
    decide). ``tied``: the row loads unless one of these keys loaded before it. ``bn_module``:
    the BatchNorm module the row belongs to, if any.
    """

    result: PlanEntry | str | None
    tied: tuple[str, ...]
    bn_module: str | None


_new = tuple.__new__


def _outcome(cmp: Comparison, index: _Index, row: Row, bn: str) -> _Outcome:
    """The row's own outcome under policy ``bn`` (what :meth:`LoadPlan.build` decides per row)."""
    key, status, ckpt_key, loadable = row.key, row.status, row.ckpt_key, row.loadable
    bn_module = row.module if row.module in index.bn_modules else None
    is_bn_stat = bn_module is not None and key.rpartition(".")[2] in BN_BUFFERS
    if is_bn_stat and bn != "load" and status != Status.UNEXPECTED:
        return _Outcome(_bn_policy_reason(bn), (), bn_module)
    if loadable and ckpt_key is None:
        return _Outcome(_filled_reason(row), (), bn_module)
    if row.kind == "extra_state" and ckpt_key is not None:  # set_extra_state takes it as is
        return _Outcome(PlanEntry(key, ckpt_key, status), (), bn_module)
    if loadable:
        if status == Status.DTYPE_MISMATCH and _lossy_kind(row):
            problem = index.cast_problem(cmp, key)
            if problem is not None:
                return _Outcome(_cast_reason(row, problem), row.tied, bn_module)
        # the row every load plans: both tuples built in one C call each (a named tuple's own
        # constructor is a Python function)
        entry = _new(PlanEntry, (key, ckpt_key or key, status, None, _cast_of(row)))
        return _new(_Outcome, (entry, row.tied, bn_module))
    if status == Status.SHAPE_MISMATCH:
        return _Outcome(None, (), bn_module)
    return _Outcome(row.reason or status, (), bn_module)


class _Outcomes:
    """Every row's own outcome under one BatchNorm policy, decided once, in lookup tables.

    ``plain``: rows whose outcome no other row changes (entry or reason), ``loads``: whether
    such a row loads; ``table``: the outcomes of the other rows, shape mismatches (the adapters
    decide) and tied rows (a partner may have loaded first). ``bn_of``: the BatchNorm module of a
    row, if any. Only those few outcomes are kept as objects: the tables are kept beside the
    comparison, and every object kept is one more for the collector's full passes.
    """

    def __init__(self, cmp: Comparison, index: _Index, bn: str) -> None:
        self.table: dict[str, _Outcome] = {}
        self.plain: dict[str, PlanEntry | str] = {}
        self.loads: dict[str, bool] = {}
        self.bn_of: dict[str, str] = {}
        for r in cmp.rows:
            k = r.key
            o = _outcome(cmp, index, r, bn)
            if o.result is not None and not o.tied:
                self.plain[k] = o.result
                self.loads[k] = not isinstance(o.result, str)
            else:
                self.table[k] = o
            if o.bn_module is not None:
                self.bn_of[k] = o.bn_module

    def result(self, key: str) -> PlanEntry | str | None:
        """The row's own result: its entry, why it is skipped, or None (a shape mismatch)."""
        plain = self.plain.get(key)
        return plain if plain is not None else self.table[key].result


def _adapted_outcome(index: _Index, row: Row, adapter: str | None) -> PlanEntry | str:
    """A shape mismatch's entry with ``adapter`` (None: no adapter asked), or why it is skipped."""
    cached = index.adapted.get((row.key, adapter))
    if cached is None:
        why = _shape_mismatch_reason(row, adapter)
        cached = index.adapted[(row.key, adapter)] = (
            why
            if why is not None
            else PlanEntry(row.key, row.ckpt_key or row.key, row.status, adapter, _cast_of(row))
        )
    return cached


def _positions_of_none(values: list[Any]) -> list[int]:
    """Indexes of the ``None`` items of ``values``, found by C-level ``list.index`` scans."""
    out: list[int] = []
    i = -1
    try:
        while True:
            i = values.index(None, i + 1)
            out.append(i)
    except ValueError:
        return out


class LoadPlan:
    """A selection of checkpoint tensors to load into a model, with renames and adapters.

    Build it with :meth:`Comparison.plan`. ``entries`` lists what will be loaded (model order),
    ``skipped`` maps every other selected key to the reason it is not loaded.
    """

    def __init__(
        self,
        comparison: Comparison,
        entries: OrderedDict[str, PlanEntry],
        skipped: OrderedDict[str, str],
        bn: str,
        bn_reset_modules: list[str],
    ) -> None:
        self.comparison = comparison
        self.entries = entries
        self.skipped = skipped
        self.bn = bn
        self.bn_reset_modules = bn_reset_modules
        #: model key → the LoRA factor pair merged into it (``plan(lora="merge")``; a layer's
        #: bias too when the pair has a ``lora_B.bias``)
        self.lora: dict[str, LoraPair] = {}

    # building ------------------------------------------------------------------------------------
    @classmethod
    def build_lora(
        cls,
        cmp: Comparison,
        how: str,
        *,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
    ) -> LoadPlan:
        """The plan that merges the LoRA adapter ``cmp.lora`` into the model (``how="merge"``).

        Each mergeable factor pair becomes an entry for the model weight it modifies (read
        from the model when the plan is materialised: its current value), and one for the
        layer's bias when the adapter has a ``lora_B.bias`` for it (``lora_bias``: it follows
        its weight); ``include`` and ``exclude`` choose among those weights (keys, module
        paths, globs). Pairs that cannot be merged are skipped with their reason.
        """
        if how != "merge":
            raise ValueError(f"lora={how!r}: the one LoRA action is 'merge'")
        adapter = cmp.lora
        if adapter is None:
            raise ValueError(
                "lora='merge': this checkpoint is not a LoRA adapter (no "
                "'base_model.model.<module>.lora_A.weight' / 'lora_B.weight' keys)"
            )
        if adapter.problem is not None:
            raise ValueError(f"lora='merge': {adapter.problem}")
        chosen = set(select(cmp, include)) if include is not None else None
        dropped = set(select(cmp, exclude)) if exclude is not None else set()
        entries: OrderedDict[str, PlanEntry] = OrderedDict()
        skipped: OrderedDict[str, str] = OrderedDict()
        pairs = {}
        for pair in adapter.pairs:
            key = pair.base_key
            if (chosen is not None and key not in chosen) or key in dropped:
                continue
            if pair.problem is not None:
                skipped[key] = f"LoRA factors {pair.a_key!r}, {pair.b_key!r}: {pair.problem}"
                continue
            row = cmp[key]
            if row.model_on_meta:
                skipped[key] = "on the meta device: a LoRA merge needs the weight's values"
                continue
            entries[key] = PlanEntry(key, pair.a_key, row.status, None, None)
            pairs[key] = pair
            if pair.bias_key is not None and pair.bias_target is not None:
                bias = pair.bias_target
                entries[bias] = PlanEntry(bias, pair.bias_key, cmp[bias].status, None, None)
                pairs[bias] = pair
        order = _index(cmp).order
        entries = OrderedDict(sorted(entries.items(), key=lambda kv: order[kv[0]]))
        plan = cls(cmp, entries, skipped, "load", [])
        plan.lora = pairs
        return plan

    @classmethod
    def build(
        cls,
        cmp: Comparison,
        *,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        bn: str = "load",
        adapt: Mapping[str, str] | str | None = None,
    ) -> LoadPlan:
        """The plan for ``cmp`` (see :meth:`Comparison.plan` for the arguments).

        One path: the selection (keys, module paths, globs; a list of row keys as the Explorer
        sends it on every click is checked in a few C-level passes), then each selected row's
        outcome, decided once per comparison and BatchNorm policy and reused, so a click on a
        100,000-key tree assembles its plan instead of re-deciding every row. What one row
        cannot decide alone (tied keys, shape mismatches under an adapter, BatchNorm step
        counters) is decided here, in model order.
        """
        if bn not in BN_POLICIES:
            raise ValueError(f"bn={bn!r} is not a BatchNorm policy; use one of {BN_POLICIES}")
        adapters = _normalise_adapt(adapt)
        index = _index(cmp)
        # tens of thousands of small acyclic entries and outcomes: the collector's full passes
        # over a heap holding the model cost many times the planning itself (1.4 s of a first
        # 30k-key plan)
        with gc_paused():
            selected: list[str] | None = None
            if include is None:
                selected = index.keys
            elif not isinstance(include, str):
                include = list(include)
                selected = index.exact_keys(include)
            if selected is None:
                selected = select(cmp, include if include is not None else ())
            if exclude is not None:
                dropped = set(select(cmp, exclude))
                selected = [k for k in selected if k not in dropped]
            return cls._assemble(cmp, index, selected, bn, adapters)

    @classmethod
    def _assemble(
        cls, cmp: Comparison, index: _Index, selected: list[str], bn: str, adapters: dict[str, str]
    ) -> LoadPlan:
        """The plan of ``selected`` (row keys, model order) from the rows' cached outcomes.

        What one row cannot decide alone is applied here: a tied key is skipped when a partner
        after it loads (torch keeps the last), a BatchNorm's step counter follows its
        statistics, and ``bn='reset'`` resets the touched BatchNorm modules in selection order.
        """
        outcomes = index.outcomes.get(bn)
        if outcomes is None:
            outcomes = index.outcomes[bn] = _Outcomes(cmp, index, bn)
        # per key, in C-level passes: does it load (None: the row needs a closer look), and its
        # entry or reason; then the two ordered dicts are cut out of the selection with them
        loads: list[bool | None] = list(map(outcomes.loads.get, selected))
        results: list[Any] = list(map(outcomes.plain.get, selected))
        if None in loads:
            cls._decide_the_rest(cmp, index, outcomes, selected, loads, results, adapters)
        skips = list(map(operator.not_, loads))
        compress = itertools.compress
        entries: OrderedDict[str, PlanEntry] = OrderedDict(
            zip(compress(selected, loads), compress(results, loads), strict=True)
        )
        skipped: OrderedDict[str, str] = OrderedDict(
            zip(compress(selected, skips), compress(results, skips), strict=True)
        )
        _keep_bn_counters_with_their_statistics(cmp, index.bn_modules, entries, skipped)
        reset: list[str] = []
        if bn == "reset":
            modules = (outcomes.bn_of.get(k) for k in selected)
            reset = list(dict.fromkeys(m for m in modules if m is not None))
        return cls(cmp, entries, skipped, bn, reset)

    @staticmethod
    def _decide_the_rest(
        cmp: Comparison,
        index: _Index,
        outcomes: _Outcomes,
        selected: list[str],
        loads: list[bool | None],
        results: list[Any],
        adapters: dict[str, str],
    ) -> None:
        """Fill in the tied rows and shape mismatches of ``selected``, in model order.

        A tied row is skipped when a selected partner later in model order loads (torch's last
        one wins); a shape mismatch loads when its adapter (if any) handles it.
        """
        chosen: set[str] | None = None  # built for the first tied row only
        order = index.order
        table = outcomes.table
        for i in _positions_of_none(loads):
            key = selected[i]
            result, tied, _ = table[key]
            if tied and not isinstance(result, str):
                # torch copies every key of one tensor in module order: the last one wins
                if chosen is None:
                    chosen = set(selected)
                here = order[key]
                later = [
                    t
                    for t in tied
                    if t in chosen and order[t] > here and isinstance(outcomes.result(t), PlanEntry)
                ]
                if later:
                    winner = max(later, key=order.__getitem__)
                    result = _tie_reason(winner, key in index.conflicted(cmp))
            if result is None:  # a shape mismatch: the adapters decide
                adapter = _adapter_for(key, adapters) if adapters else None
                result = _adapted_outcome(index, cmp[key], adapter)
            results[i] = result
            loads[i] = not isinstance(result, str)

    # views ---------------------------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        """Model keys that will be loaded, in model order."""
        return list(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    @cached_property
    def numel(self) -> int:
        """Elements the plan loads (in the model's shapes). Computed once: a plan is fixed."""
        cmp = self.comparison
        return sum(numel(cmp[k].model_shape or ()) for k in self.entries)

    @cached_property
    def nbytes(self) -> int:
        """Bytes of the checkpoint tensors this plan reads. Computed once: a plan is fixed."""
        cmp = self.comparison  # a loaded row's nbytes are its checkpoint bytes
        return sum(cmp[k].nbytes for k in self.entries)

    @property
    def casts(self) -> dict[str, tuple[str, str]]:
        """Model key → (checkpoint dtype, model dtype) for every tensor cast on loading."""
        return {k: e.cast for k, e in self.entries.items() if e.cast is not None}

    @property
    def adapted(self) -> dict[str, str]:
        """Model key → adapter name for every adapted tensor."""
        return {k: e.adapter for k, e in self.entries.items() if e.adapter is not None}

    def __repr__(self) -> str:
        return (
            f"<LoadPlan: load {len(self.entries)} tensors ({human_bytes(self.nbytes)}), "
            f"skip {len(self.skipped)}, bn={self.bn!r}>"
        )

    def summary(self) -> dict[str, Any]:
        """Counts: load, skip, numel, nbytes, casts, adapted, and the BatchNorm policy."""
        return {
            "load": len(self.entries),
            "skip": len(self.skipped),
            "numel": self.numel,
            "nbytes": self.nbytes,
            "casts": len(self.casts),
            "adapted": len(self.adapted),
            "bn": self.bn,
            "bn_reset_modules": list(self.bn_reset_modules),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per selected key: key, action (load/adapt/skip), ckpt_key, cast, reason."""
        import pandas as pd

        cmp = self.comparison
        rows = [
            {
                "key": k,
                "action": "merge" if k in self.lora else "adapt" if e.adapter else "load",
                "ckpt_key": e.ckpt_key,
                "status": e.status,
                "cast": " → ".join(e.cast) if e.cast else None,
                "reason": None,
            }
            for k, e in self.entries.items()
        ]
        rows += [
            {
                "key": k,
                "action": "skip",
                "ckpt_key": cmp[k].ckpt_key,
                "status": cmp[k].status,
                "cast": None,
                "reason": why,
            }
            for k, why in self.skipped.items()
        ]
        return pd.DataFrame(rows, columns=["key", "action", "ckpt_key", "status", "cast", "reason"])

    # materialising -----------------------------------------------------------------------------
    def state_dict(
        self,
        model: nn.Module | None = None,
        *,
        current: Mapping[str, torch.Tensor] | None = None,
    ) -> OrderedDict[str, torch.Tensor]:
        """The filtered ``OrderedDict`` to pass to ``load_state_dict(strict=False)``.

        Exactly the planned tensors (and values that are not tensors, such as a module's extra
        state), renamed and adapted, in model order, with ``_metadata``:
        the model's own module versions overridden by the (renamed) checkpoint's, so versioned
        modules such as BatchNorm behave as with the full checkpoint (PyTorch fact 6). A float
        tensor planned for an integer buffer (its values checked to be whole and in range) is
        cast here, exactly.

        ``current``: the model tensors adapters and LoRA merges start from, when they are not
        ``model.state_dict()`` (a sharded model's gathered tensors, :mod:`sd_widgets.load._distributed`).
        """
        model = model if model is not None else self.comparison.model
        ckpt = self.comparison.checkpoint
        values = ckpt.source.non_tensor  # extra state, packed parameters: taken as they are
        tensors = ckpt.tensors(
            [e.ckpt_key for e in self.entries.values() if e.ckpt_key not in values]
        )
        if current is None:
            current = {}
            if self.adapted or self.lora:
                if model is None:
                    raise ValueError(
                        "adapters and LoRA merges need the model's tensors: pass model="
                    )
                current = model.state_dict()
        factors = ckpt.tensors(
            [k for p in self.lora.values() for k in (p.b_key, p.magnitude_key) if k is not None]
        )
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for k, e in self.entries.items():
            if e.ckpt_key in values:
                out[k] = ckpt.value(e.ckpt_key)  # set_extra_state (or the module) takes it
                continue
            t = tensors[e.ckpt_key]
            if k in self.lora and k != self.lora[k].base_key:  # its bias + scale · lora_B.bias
                t = merge_lora_bias(current[k], t, self.lora[k].scale)
            elif k in self.lora:  # W + scale · B @ A, from the model's current weight
                pair = self.lora[k]
                magnitude = factors[pair.magnitude_key] if pair.magnitude_key else None
                t = merge_lora(
                    current[k], t, factors[pair.b_key], pair.scale, pair.layer, magnitude
                )
            elif e.adapter is not None:
                t = get_adapter(e.adapter)(t, current[k])
            elif e.cast is not None and t.is_floating_point():
                target = _dtype(e.cast[1])
                if not (target.is_floating_point or target.is_complex):
                    t = t.to(target)  # checked at build time: every value is whole and fits
            out[k] = t
        out._metadata = self.metadata(model)  # type: ignore[attr-defined]
        return out

    def metadata(self, model: nn.Module | None = None) -> OrderedDict[str, Any]:
        """Module-version metadata for the filtered dict (model's, overridden by checkpoint's).

        The per-module dicts are copies without ``assign_to_params_buffers`` (see
        :mod:`sd_widgets.compare._metadata`): whether a load assigns is never inherited from a dict.
        """
        model = model if model is not None else self.comparison.model
        model_meta = getattr(model.state_dict(), "_metadata", None) if model is not None else None
        return merged_metadata(
            model_meta, self.comparison.checkpoint.metadata, self.comparison.renames
        )

    # code export -------------------------------------------------------------------------------
    def spec(self, *, path: str | os.PathLike[str] | None = None) -> LoadSpec:
        """The frozen description of this load that :mod:`sd_widgets.plan._codegen` writes out.

        Parameters
        ----------
        path : str or PathLike, optional
            Read the checkpoint from here instead of where it was opened.

        Returns
        -------
        LoadSpec
        """
        src = self.comparison.checkpoint.source
        where = os.fspath(path) if path is not None else src.path
        if where is not None:  # the export may run from another directory (another notebook)
            where = os.path.abspath(where)
        # the exported DCP reader goes on only if .metadata (a pickle) is what was vetted here
        digest = _vetted_dcp_metadata(where) if src.kind == "dcp" and where is not None else None
        allowed = getattr(src, "allowed_globals", None)
        trust = trusted_names(allowed) if allowed else bool(src.trusted)
        return LoadSpec(
            kind=src.kind,  # type: ignore[arg-type]
            path=where,
            entry=src.key,
            trust=trust,
            renames=tuple(_rule_spec(r) for r in self.comparison.renames),
            keys=tuple((k, e.ckpt_key) for k, e in self.entries.items() if k not in self.lora),
            lora=tuple(
                (k, p.a_key, p.b_key, p.scale, p.layer, p.magnitude_key)
                for k, p in self.lora.items()
                if k == p.base_key
            ),
            lora_bias=tuple(
                (k, p.bias_key, p.scale)
                for k, p in self.lora.items()
                if k != p.base_key and p.bias_key is not None
            ),
            adapters=tuple((k, e.adapter) for k, e in self.entries.items() if e.adapter),
            adapter_notes=tuple(
                (k, get_adapter(e.adapter).describe(row.ckpt_shape, row.model_shape, k))
                for k, e in self.entries.items()
                if e.adapter
                and (row := self.comparison[k]).ckpt_shape is not None
                and row.model_shape is not None
            ),
            bn_reset=tuple(self.bn_reset_modules),
            skipped=tuple(self.skipped.items()),
            bn=self.bn,
            metadata_sha256=digest,
            assign_meta=any(self.comparison[k].model_on_meta for k in self.entries),
        )

    def to_code(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        function_name: str = "load_partial",
        model_name: str = "model",
    ) -> str:
        """Self-contained Python performing the same partial load with plain torch.

        Pasted into a notebook cell where ``model_name`` names the model, it performs the load;
        run as a script it explains how to call it; imported as a module it does nothing until
        called. Every string from the checkpoint or the user is written as an escaped literal.

        Parameters
        ----------
        path : str or PathLike, optional
            Read the checkpoint from here instead of where it was opened.
        function_name : str
            Name of the exported loading function.
        model_name : str
            The variable holding the model in the notebook (an identifier, not a keyword).

        Returns
        -------
        str
            Python source.
        """
        return spec_to_code(
            self.spec(path=path), function_name=function_name, model_name=model_name
        )


def _vetted_dcp_metadata(directory: str) -> str:
    """SHA-256 of a DCP directory's ``.metadata``, checked now by the allow-list unpickler.

    The file may have changed since it was compared, or ``path=`` names another one.
    """

    def digest() -> str:
        with open(os.path.join(directory, ".metadata"), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    before = digest()
    read_dcp_metadata(Path(directory))  # UnsafeCheckpointError names what is not metadata
    if digest() != before:
        raise CheckpointChangedError(
            f"{os.path.join(directory, '.metadata')!r} changed while it was being checked for "
            "export; export again once nothing is writing it."
        )
    return before


def _rule_spec(rule: Any) -> tuple[str, str, Any]:
    """A rename rule as plain data for the exported code: (kind, old, new)."""
    if rule.kind == "leaf":
        return ("leaf", "", tuple(rule.leaf_table.items()))
    return (rule.kind, rule.old, rule.new)


def _normalise_adapt(adapt: Mapping[str, str] | str | None) -> dict[str, str]:
    if adapt is None:
        return {}
    if isinstance(adapt, str):
        adapt = {"*": adapt}
    out = {}
    for pattern, name in adapt.items():
        try:
            get_adapter(name)  # a registered name, or a parametrised one ("interpolate:2")
        except ValueError as exc:
            raise ValueError(f"{exc} (for {pattern!r})") from None
        out[pattern] = name
    return out


def _adapter_for(key: str, adapters: Mapping[str, str]) -> str | None:
    if key in adapters:
        return adapters[key]
    for pattern, name in adapters.items():
        if fnmatch.fnmatchcase(key, pattern) or key.startswith(pattern.rstrip(".") + "."):
            return name
    return None
