"""What to load: selection, renames, shape adapters, the BatchNorm policy, and code export."""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from .compare import BN_BUFFERS, Comparison, Row
from .renames import apply_renames

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ADAPTERS", "BN_POLICIES", "LoadPlan", "PlanEntry", "adapt_overlap"]

BN_POLICIES = ("load", "keep", "reset")
ADAPTERS = ("overlap",)


class PlanEntry(NamedTuple):
    """One tensor the plan loads (immutable; a named tuple because a widget click on a 30,000-key
    tree builds one per selected key)."""

    key: str  # model key
    ckpt_key: str
    status: str
    adapter: str | None = None
    #: (checkpoint dtype, model dtype) when load_state_dict will cast
    cast: tuple[str, str] | None = None


def adapt_overlap(src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Copy the overlapping leading slice of ``src`` into a copy of ``target``.

    A classifier going from 10 to 3 classes keeps the first 3 rows; an embedding that grew
    keeps the old rows and leaves the new ones at the target's values. Never reshapes.
    """
    if src.dim() != target.dim():
        raise ValueError(
            f"the 'overlap' adapter needs tensors with the same number of dimensions, got "
            f"{tuple(src.shape)} and {tuple(target.shape)}"
        )
    out = target.detach().clone()
    idx = tuple(slice(0, min(a, b)) for a, b in zip(src.shape, target.shape, strict=True))
    with torch.no_grad():
        out[idx] = src[idx].to(out.dtype)
    return out


def _keep_bn_counters_with_their_statistics(
    cmp: Comparison,
    bn_modules: Iterable[str],
    entries: OrderedDict[str, PlanEntry],
    skipped: OrderedDict[str, str],
) -> None:
    """Skip a BatchNorm's ``num_batches_tracked`` when its running mean or variance is not
    loaded (a resized layer, or a partial selection): the checkpoint's step count paired with
    the model's own statistics would be wrong, and with ``momentum=None`` (cumulative average)
    it weights every later update by a count of batches these statistics never saw."""
    for module in bn_modules:
        prefix = f"{module}." if module else ""
        counter = prefix + "num_batches_tracked"
        if counter not in entries:
            continue
        absent = [prefix + b for b in ("running_mean", "running_var")
                  if prefix + b in cmp and prefix + b not in entries]
        if absent:
            del entries[counter]
            names = " and ".join(repr(a.rpartition(".")[2]) for a in absent)
            skipped[counter] = (
                f"{names} of this BatchNorm {'is' if len(absent) == 1 else 'are'} not loaded: "
                "its step counter stays with the model's own statistics"
            )


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

    # building ------------------------------------------------------------------------------------
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
        if bn not in BN_POLICIES:
            raise ValueError(f"bn={bn!r} is not a BatchNorm policy; use one of {BN_POLICIES}")
        adapters = _normalise_adapt(adapt)
        selected = cmp.select(include) if include is not None else [r.key for r in cmp.rows]
        if exclude is not None:
            dropped = set(cmp.select(exclude))
            selected = [k for k in selected if k not in dropped]
        bn_modules = cmp.bn_modules
        entries: OrderedDict[str, PlanEntry] = OrderedDict()
        skipped: OrderedDict[str, str] = OrderedDict()
        touched_bn: dict[str, None] = {}
        loaded_params: dict[str, str] = {}
        for key in selected:
            row = cmp[key]
            if row.module in bn_modules:
                touched_bn[row.module] = None
            is_bn_stat = row.module in bn_modules and key.rpartition(".")[2] in BN_BUFFERS
            if is_bn_stat and bn != "load" and row.status != "unexpected":
                skipped[key] = (
                    "bn='keep': the model's running statistics are kept" if bn == "keep" else
                    "bn='reset': running statistics are reset after loading"
                )
                continue
            adapter = _adapter_for(key, adapters) if adapters else None
            if row.status in ("match", "dtype_mismatch"):
                tied_first = (next((t for t in row.tied if t in loaded_params), None)
                              if row.tied else None)
                if tied_first is not None:
                    skipped[key] = f"tied to {tied_first!r} (one tensor): loaded once through it"
                    continue
                cast = (row.ckpt_dtype, row.model_dtype) if row.status == "dtype_mismatch" else None
                entries[key] = PlanEntry(key, row.ckpt_key or key, row.status, None, cast)  # type: ignore[arg-type]
                loaded_params[key] = key
            elif row.status == "shape_mismatch":
                if adapter is None:
                    skipped[key] = (row.reason or "shape mismatch") + (
                        f"; pass adapt={{{key!r}: 'overlap'}} to use it" if row.adaptable else ""
                    )
                elif not row.adaptable:
                    skipped[key] = (
                        f"adapter {adapter!r} cannot handle checkpoint "
                        f"{row.ckpt_shape} vs model {row.model_shape}"
                        + (" (model is on the meta device: no values to keep)"
                           if row.model_on_meta else "")
                    )
                else:
                    cast = (
                        (row.ckpt_dtype, row.model_dtype)
                        if row.ckpt_dtype != row.model_dtype else None
                    )
                    entries[key] = PlanEntry(key, row.ckpt_key or key, row.status, adapter, cast)  # type: ignore[arg-type]
                    loaded_params[key] = key
            else:
                skipped[key] = row.reason or row.status
        _keep_bn_counters_with_their_statistics(cmp, bn_modules, entries, skipped)
        reset = list(touched_bn) if bn == "reset" else []
        return cls(cmp, entries, skipped, bn, reset)

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
        rows = self.comparison._by_key
        return sum(_numel(rows[k].model_shape or ()) for k in self.entries)

    @cached_property
    def nbytes(self) -> int:
        """Bytes of the checkpoint tensors this plan reads. Computed once: a plan is fixed."""
        rows = self.comparison._by_key  # a loaded row's nbytes are its checkpoint bytes
        return sum(rows[k].nbytes for k in self.entries)

    @property
    def casts(self) -> dict[str, tuple[str, str]]:
        return {k: e.cast for k, e in self.entries.items() if e.cast is not None}

    @property
    def adapted(self) -> dict[str, str]:
        return {k: e.adapter for k, e in self.entries.items() if e.adapter is not None}

    def _row(self, key: str) -> Row:
        return self.comparison[key]

    def __repr__(self) -> str:
        return (
            f"<LoadPlan: load {len(self.entries)} tensors ({_human(self.nbytes)}), "
            f"skip {len(self.skipped)}, bn={self.bn!r}>"
        )

    def summary(self) -> dict[str, Any]:
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

        rows = [
            {"key": k, "action": "adapt" if e.adapter else "load", "ckpt_key": e.ckpt_key,
             "status": e.status, "cast": " → ".join(e.cast) if e.cast else None, "reason": None}
            for k, e in self.entries.items()
        ]
        rows += [
            {"key": k, "action": "skip", "ckpt_key": self._row(k).ckpt_key,
             "status": self._row(k).status, "cast": None, "reason": why}
            for k, why in self.skipped.items()
        ]
        return pd.DataFrame(rows, columns=["key", "action", "ckpt_key", "status", "cast", "reason"])

    # materialising -----------------------------------------------------------------------------
    def state_dict(self, model: nn.Module | None = None) -> OrderedDict[str, torch.Tensor]:
        """The filtered ``OrderedDict`` to pass to ``load_state_dict(strict=False)``.

        Exactly the planned tensors, renamed and adapted, in model order, with ``_metadata``:
        the model's own module versions overridden by the (renamed) checkpoint's, so versioned
        modules such as BatchNorm behave as with the full checkpoint (PyTorch fact 6).
        """
        model = model if model is not None else self.comparison.model
        ckpt = self.comparison.checkpoint
        tensors = ckpt.tensors([e.ckpt_key for e in self.entries.values()])
        current: Mapping[str, torch.Tensor] = {}
        if self.adapted:
            if model is None:
                raise ValueError("adapters need the model's current tensors: pass model=")
            current = model.state_dict()
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for k, e in self.entries.items():
            t = tensors[e.ckpt_key]
            if e.adapter == "overlap":
                t = adapt_overlap(t, current[k])
            out[k] = t
        out._metadata = self.metadata(model)  # type: ignore[attr-defined]
        return out

    def metadata(self, model: nn.Module | None = None) -> OrderedDict[str, Any]:
        """Module-version metadata for the filtered dict (model's, overridden by checkpoint's).

        The per-module dicts are copies: ``load_state_dict(assign=True)`` writes
        ``assign_to_params_buffers`` into the ``_metadata`` it is given, which would otherwise
        make every later load from the same checkpoint assign instead of copying in place. A
        flag already there (the user loaded the checkpoint with ``assign=True`` before) is
        dropped for the same reason.
        """
        model = model if model is not None else self.comparison.model
        meta: OrderedDict[str, Any] = OrderedDict()
        if model is not None:
            for prefix, value in (getattr(model.state_dict(), "_metadata", {}) or {}).items():
                meta[prefix] = module_metadata(value)
        ck_meta = self.comparison.checkpoint.metadata
        if ck_meta:
            rules = self.comparison.renames
            for prefix, value in ck_meta.items():
                meta[rename_prefix(prefix, rules)] = module_metadata(value)
        return meta

    # code export -------------------------------------------------------------------------------
    def to_code(self, *, path: str | None = None, function_name: str = "load_partial") -> str:
        """Self-contained Python performing the same partial load with plain torch."""
        from .codegen import plan_to_code

        return plan_to_code(self, path=path, function_name=function_name)


#: what ``load_state_dict(assign=True)`` writes into the ``_metadata`` of the dict it is given
#: (torch >= 2.1): a checkpoint once loaded that way makes every later plain load from it assign
ASSIGN_FLAG = "assign_to_params_buffers"


def module_metadata(value: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of one module's ``_metadata`` entry without :data:`ASSIGN_FLAG`: whether to
    assign is decided per load (meta-device tensors only), never inherited from the dict."""
    return {k: v for k, v in value.items() if k != ASSIGN_FLAG}


def rename_prefix(prefix: str, rules) -> str:
    """Apply key rename rules to a module prefix of ``_metadata`` (``"layer1.0.bn1"``)."""
    if not rules:
        return prefix
    new = apply_renames(prefix + "." if prefix else "", rules)
    return new[:-1] if new.endswith(".") else new


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _normalise_adapt(adapt: Mapping[str, str] | str | None) -> dict[str, str]:
    if adapt is None:
        return {}
    if isinstance(adapt, str):
        adapt = {"*": adapt}
    out = {}
    for pattern, name in adapt.items():
        if name not in ADAPTERS:
            raise ValueError(f"unknown adapter {name!r} for {pattern!r}; available: {ADAPTERS}")
        out[pattern] = name
    return out


def _adapter_for(key: str, adapters: Mapping[str, str]) -> str | None:
    if key in adapters:
        return adapters[key]
    for pattern, name in adapters.items():
        if fnmatch.fnmatchcase(key, pattern) or key.startswith(pattern.rstrip(".") + "."):
            return name
    return None
