"""``partial_load``: a transactional partial load with verification, rollback and undo.

Plain ``load_state_dict`` is not atomic (PyTorch fact 2): when it raises, every tensor whose
shape matched has already been copied. ``partial_load`` validates first, snapshots exactly the
tensors it will touch, loads through the model's own ``load_state_dict(strict=False)`` (so
module hooks and version handling run), verifies every loaded tensor against its source, and
on any failure restores the snapshot before raising :class:`~sd_widgets.LoadError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .errors import LoadError, UndoError
from .metadata import module_metadata
from .plan import LoadPlan

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from .stats import Histogram

__all__ = ["LoadReport", "partial_load"]


@dataclass
class _Saved:
    key: str
    module: nn.Module
    attr: str
    is_param: bool
    obj: torch.Tensor
    data: torch.Tensor | None  # None for meta tensors (nothing to copy back)


class _Snapshot:
    """Copies of exactly the tensors a load will touch (tied tensors copied once)."""

    def __init__(self, model: nn.Module, keys: Iterable[str]) -> None:
        self.items: list[_Saved] = []
        copies: dict[int, torch.Tensor | None] = {}
        modules: dict[str, nn.Module] = {}
        for key in keys:
            mod_name, _, attr = key.rpartition(".")
            module = modules.get(mod_name)
            if module is None:
                module = modules[mod_name] = model.get_submodule(mod_name)
            if attr in module._parameters:
                obj, is_param = module._parameters[attr], True
            elif attr in module._buffers:
                obj, is_param = module._buffers[attr], False
            else:
                continue
            if obj is None:
                continue
            if id(obj) not in copies:
                copies[id(obj)] = None if obj.is_meta else obj.detach().clone()
            self.items.append(_Saved(key, module, attr, is_param, obj, copies[id(obj)]))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {s.key: (s.data if s.data is not None else s.obj.detach()) for s in self.items}

    def restore(self) -> list[str]:
        """Put every saved tensor back; returns the keys that could not be restored exactly.

        Never stops at the first failure: a tensor whose ``copy_`` is broken (patched, or a
        subclass) gets its saved copy through ``.data`` instead, and the others are restored.
        """
        with torch.no_grad():
            for s in self.items:
                container = s.module._parameters if s.is_param else s.module._buffers
                if container.get(s.attr) is not s.obj:
                    container[s.attr] = s.obj  # undo an assign=True replacement
                if s.data is None:
                    continue
                try:
                    if s.obj.shape == s.data.shape and s.obj.dtype == s.data.dtype:
                        # the class's copy_, not an attribute patched onto this tensor
                        torch.Tensor.copy_(s.obj, s.data)
                    else:
                        s.obj.data = s.data.clone()
                except Exception:
                    with contextlib.suppress(Exception):  # else reported by matches_model()
                        s.obj.data = s.data.clone()
        return self.matches_model()

    def matches_model(self) -> list[str]:
        """Keys whose current value differs from the snapshot (empty after a clean restore)."""
        bad = []
        for s in self.items:
            container = s.module._parameters if s.is_param else s.module._buffers
            cur = container.get(s.attr)
            if cur is not s.obj or (s.data is not None and not _same(cur.detach(), s.data)):
                bad.append(s.key)
        return bad

    def release(self) -> None:
        self.items = []


def _load_memcmp() -> Any:
    try:
        name = ctypes.util.find_library("c") if sys.platform != "win32" else "msvcrt"
        fn = ctypes.CDLL(name).memcmp if name else None
    except (OSError, AttributeError):  # pragma: no cover - no C library to call
        return None
    if fn is not None:
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        fn.restype = ctypes.c_int
    return fn


_MEMCMP = _load_memcmp()


def _bytes_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` are dense CPU tensors of one dtype and shape holding the same
    bytes. ``False`` means "different, or not decidable this way" (callers then compare values).

    ``memcmp`` reads each byte once at memory speed (``torch.equal`` on float32 is ~3x slower),
    which makes verifying a load and checking a restore cheap. Identical bytes are identical
    values, NaN payloads included.
    """
    try:
        if (a.device.type != "cpu" or b.device.type != "cpu" or a.layout != torch.strided
                or b.layout != torch.strided or a.is_quantized or b.is_quantized
                or a.is_nested or b.is_nested or a.dtype != b.dtype or a.shape != b.shape
                or a.is_conj() or b.is_conj() or a.is_neg() or b.is_neg()  # lazy views: the
                or not a.is_contiguous() or not b.is_contiguous()):  # bytes are not the values
            return False
        n = a.numel() * a.element_size()
        if n == 0:
            return True
        pa, pb = a.data_ptr(), b.data_ptr()
        if not pa or not pb:
            return False
        if pa == pb:
            return True
        if _MEMCMP is None:  # pragma: no cover - no C library
            return False
        return _MEMCMP(pa, pb, n) == 0
    except (RuntimeError, TypeError, ctypes.ArgumentError):  # no storage (e.g. a subclass)
        return False


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (NaN equals NaN), same dtype and shape."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_meta or b.is_meta:  # no values: same when both are meta (a meta one left = not loaded)
        return a.is_meta and b.is_meta
    if _bytes_equal(a, b) or torch.equal(a, b):
        return True
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
    return False


def _check_castable(key: str, src: torch.Tensor, target: torch.Tensor) -> str | None:
    if src.is_complex() and not target.is_complex():
        return f"{key!r}: complex checkpoint tensor cannot be cast to {target.dtype} without loss"
    if src.is_floating_point() and not (target.is_floating_point() or target.is_complex()):
        return (
            f"{key!r}: floating-point checkpoint tensor ({src.dtype}) into an integer model "
            f"tensor ({target.dtype}) would truncate"
        )
    return None


def partial_load(
    model: nn.Module,
    plan: LoadPlan,
    *,
    verify: bool = True,
    stats: bool = True,
) -> LoadReport:
    """Load ``plan`` into ``model`` in place, all or nothing.

    Raises :class:`~sd_widgets.LoadError` after restoring every touched tensor when anything
    fails. A model on the meta device is loaded with ``assign=True`` (reported in
    ``LoadReport.assigned``). ``stats=False`` defers the before/after statistics to the first
    ``to_frame()`` call.
    """
    start = time.perf_counter()
    if not isinstance(plan, LoadPlan):
        raise TypeError(f"partial_load needs a LoadPlan (from Comparison.plan()), got {type(plan)}")
    if plan.comparison.model is None:
        raise LoadError(
            "this plan compares two checkpoints; build it with compare(model, checkpoint) to load"
        )
    live = model.state_dict(keep_vars=True)
    missing = [k for k in plan.entries if k not in live]
    if missing:
        raise LoadError(
            f"the model has no {missing[0]!r} ({len(missing)} planned keys are absent): the plan was "
            "made for a different model. Nothing was changed; compare this model again."
        )
    try:
        sd = plan.state_dict(model)
    except Exception as exc:
        raise LoadError(
            f"reading the planned tensors failed ({type(exc).__name__}: {exc}). Nothing was changed.",
            cause=exc,
        ) from exc
    problems = []
    for key, t in sd.items():
        target = live[key]
        if tuple(t.shape) != tuple(target.shape):
            problems.append(f"{key!r}: checkpoint {tuple(t.shape)} vs model {tuple(target.shape)}")
        elif (why := _check_castable(key, t, target)) is not None:
            problems.append(why)
    if problems:
        raise LoadError(
            f"{len(problems)} planned tensors do not fit the model (first: {problems[0]}). "
            "Nothing was changed; compare this model again and choose an adapter or skip them."
        )
    meta_keys = [k for k in sd if live[k].is_meta]
    bn_keys = [
        f"{m}.{b}" for m in plan.bn_reset_modules
        for b in ("running_mean", "running_var", "num_batches_tracked") if f"{m}.{b}" in live
    ]
    # keys tied to a loaded tensor (same Parameter object): loaded through it, kept tied
    loaded_ids = {id(live[k]): k for k in sd}
    tied_along = {k: loaded_ids[id(v)] for k, v in live.items()
                  if k not in sd and isinstance(v, torch.Tensor) and id(v) in loaded_ids}
    snapshot = _Snapshot(model, list(sd) + [k for k in bn_keys if k not in sd] + list(tied_along))
    results = []
    try:
        if meta_keys:
            meta_sd: OrderedDict[str, torch.Tensor] = OrderedDict(
                (k, sd[k].to(live[k].dtype) if sd[k].dtype != live[k].dtype else sd[k])
                for k in meta_keys
            )
            meta_sd._metadata = _fresh_metadata(sd)  # type: ignore[attr-defined]
            results.append(model.load_state_dict(meta_sd, strict=False, assign=True))
            _retie(model, tied_along)  # assign=True replaced the object the tied keys share
        meta_set = set(meta_keys)
        real_sd: OrderedDict[str, torch.Tensor] = OrderedDict(
            (k, v) for k, v in sd.items() if k not in meta_set
        )
        real_sd._metadata = _fresh_metadata(sd)  # type: ignore[attr-defined]
        if real_sd or not meta_keys:
            results.append(model.load_state_dict(real_sd, strict=False))
        for r in results:
            if r.unexpected_keys:
                raise RuntimeError(f"load_state_dict reported unexpected keys {r.unexpected_keys}")
        for name in plan.bn_reset_modules:
            model.get_submodule(name).reset_running_stats()  # type: ignore[operator]
        if verify:
            after = model.state_dict(keep_vars=True)
            for key, src in sd.items():
                cur = after[key].detach()
                expected = src.to(cur.dtype) if src.dtype != cur.dtype else src
                if not _same(cur, expected):  # memcmp first: about a third of torch.equal
                    raise RuntimeError(
                        f"{key!r} differs from its checkpoint tensor after loading (a load hook "
                        "changed it?)"
                    )
            for key, through in tied_along.items():
                if after[key] is not after[through]:
                    raise RuntimeError(f"{key!r} is no longer tied to {through!r} after loading")
    except BaseException as exc:
        unrestored = snapshot.restore()
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt and friends: rolled back, then propagate as they are
        failed_key = next((k for k in sd if k in str(exc)), None)
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        # torch's "Error(s) in loading state_dict for X:" says nothing without its next line
        detail = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines or [""])[0]
        rolled_back = (
            f"The model was rolled back: all {len(snapshot.items)} touched tensors are exactly "
            "as before." if not unrestored else
            f"Rolling back FAILED for {len(unrestored)} tensors (first: {unrestored[0]!r}); "
            "the others are as before. Rebuild the model or reload its weights."
        )
        raise LoadError(
            f"partial load failed ({type(exc).__name__}: {detail or repr(exc)}). "
            + rolled_back,
            cause=exc,
            key=failed_key,
        ) from exc
    entries = model_keys_of(live)
    bn_set = set(bn_keys)
    report = LoadReport(
        model=model,
        plan=plan,
        snapshot=snapshot,
        loaded=list(sd),
        assigned=bool(meta_keys),
        untouched=[k for k in entries if k not in sd and k not in bn_set
                   and k not in tied_along],
        seconds=0.0,
        incompatible=results,
        tied=tied_along,
    )
    if stats:
        report._compute_stats()
    report.seconds = time.perf_counter() - start
    return report


def _fresh_metadata(sd: Mapping[str, Any]) -> OrderedDict[str, dict[str, Any]]:
    """A private copy of ``sd._metadata`` for one ``load_state_dict`` call.

    ``load_state_dict(assign=True)`` stores ``assign_to_params_buffers=True`` in the per-module
    metadata dicts it is handed; sharing them would turn later in-place loads into assigns, and
    a flag already in ``sd`` (from such an earlier load) is dropped for the same reason.
    """
    meta = getattr(sd, "_metadata", None) or {}
    return OrderedDict((prefix, module_metadata(value)) for prefix, value in meta.items())


def _tensor_slot(model: nn.Module, key: str) -> tuple[dict[str, Any], str]:
    mod_name, _, attr = key.rpartition(".")
    module = model.get_submodule(mod_name)
    return (module._parameters if attr in module._parameters else module._buffers), attr


def _retie(model: nn.Module, tied_along: Mapping[str, str]) -> None:
    """Point every tied key at the (possibly new) object of the key it was loaded through."""
    for key, through in tied_along.items():
        src_slot, src_attr = _tensor_slot(model, through)
        slot, attr = _tensor_slot(model, key)
        if slot.get(attr) is not src_slot[src_attr]:
            slot[attr] = src_slot[src_attr]


def model_keys_of(sd: Mapping[str, Any]) -> list[str]:
    return [k for k, v in sd.items() if isinstance(v, torch.Tensor)]


class LoadReport:
    """What a partial load did, with before/after statistics and ``undo()``."""

    def __init__(self, *, model: nn.Module, plan: LoadPlan, snapshot: _Snapshot,
                 loaded: list[str], assigned: bool, untouched: list[str], seconds: float,
                 incompatible: list[Any], tied: Mapping[str, str] | None = None) -> None:
        self._model = weakref.ref(model)
        self.plan = plan
        self._snapshot = snapshot
        #: model keys loaded, in model order
        self.loaded = loaded
        #: key → why it was not loaded (everything selected but not loaded)
        self.skipped: OrderedDict[str, str] = OrderedDict(plan.skipped)
        #: model keys not loaded: they keep the values they had (initial values for new layers)
        self.untouched = untouched
        #: key → (checkpoint dtype, model dtype) for silent-in-PyTorch casts
        self.casts = plan.casts
        #: key → adapter used
        self.adapted = plan.adapted
        #: BatchNorm modules whose running statistics were reset (bn="reset")
        self.bn_reset = list(plan.bn_reset_modules)
        #: key → the loaded key it is tied to (same tensor): changed through it, still tied
        self.tied: dict[str, str] = dict(tied or {})
        #: True when meta-device tensors were replaced (assign=True) instead of copied into
        self.assigned = assigned
        self.seconds = seconds
        #: what load_state_dict returned (missing keys = everything not in the plan)
        self.incompatible = incompatible
        self.undone = False
        self._stats: list[dict[str, Any]] | None = None

    def __repr__(self) -> str:
        state = "undone" if self.undone else "applied"
        extra = ", assign=True (meta device)" if self.assigned else ""
        return (
            f"<LoadReport ({state}): loaded {len(self.loaded)}, skipped {len(self.skipped)}, "
            f"cast {len(self.casts)}, adapted {len(self.adapted)}, bn reset "
            f"{len(self.bn_reset)}{extra}>"
        )

    @property
    def model(self) -> nn.Module:
        m = self._model()
        if m is None:
            raise UndoError("the model this report belongs to no longer exists")
        return m

    # tensors ---------------------------------------------------------------------------------
    def before(self) -> dict[str, torch.Tensor]:
        """The touched tensors as they were before the load (copies)."""
        self._require_applied("the 'before' tensors")
        return self._snapshot.tensors()

    def after(self) -> dict[str, torch.Tensor]:
        """The touched tensors as they are now in the model (live, not copies)."""
        self._require_applied("the 'after' tensors")
        return {s.key: (s.module._parameters if s.is_param else s.module._buffers)[s.attr].detach()
                for s in self._snapshot.items}

    def _require_applied(self, what: str) -> None:
        if self.undone:
            raise UndoError(f"this load was undone: {what} are no longer available")

    # statistics ------------------------------------------------------------------------------
    def _compute_stats(self) -> None:
        from .stats import change_stats, tensor_stats

        before = self._snapshot.tensors()
        after = self.after()
        rows = []
        loaded = set(self.loaded)
        for key in before:
            b, a = before[key], after[key]
            entry = self.plan.entries.get(key)
            row: dict[str, Any] = {
                "key": key,
                "action": ("tied" if key in self.tied else "bn_reset") if key not in loaded else
                ("adapt" if entry is not None and entry.adapter else "load"),
                "ckpt_key": entry.ckpt_key if entry is not None else None,
                "cast": " → ".join(entry.cast) if entry is not None and entry.cast else None,
            }
            for prefix, t in (("before", b), ("after", a)):
                for name, value in tensor_stats(t).as_dict().items():
                    if name in ("numel", "dtype") and prefix == "after":
                        continue
                    row[name if name in ("numel", "dtype") else f"{prefix}_{name}"] = value
            if not b.is_meta and not a.is_meta and b.shape == a.shape:
                ch = change_stats(b, a)
                row["max_abs_change"] = ch.get("max_abs_change")
                row["mean_abs_change"] = ch.get("mean_abs_change")
                row["rel_l2_change"] = ch.get("relative_l2_change")
                row["changed_fraction"] = ch.get("changed_fraction")
            rows.append(row)
        self._stats = rows

    def to_frame(self) -> pd.DataFrame:
        """Per touched tensor: action, cast, before/after mean, std, min, max, l2,
        zero_fraction, nan/inf counts, and change (max_abs_change, rel_l2_change, ...)."""
        import pandas as pd

        if self._stats is None:
            self._require_applied("statistics")
            self._compute_stats()
        return pd.DataFrame(self._stats)

    def histogram(self, key: str, bins: int = 50) -> Histogram:
        """Before/after histogram of one touched tensor with shared bin edges."""
        from .stats import before_after_histogram

        before, after = self.before(), self.after()
        if key not in before:
            raise KeyError(f"{key!r} was not touched by this load")
        return before_after_histogram(before[key], after[key], bins=bins, key=key)

    def histograms(self, keys: Iterable[str] | None = None, bins: int = 50) -> list[Histogram]:
        keys = list(keys) if keys is not None else list(self.loaded)
        return [self.histogram(k, bins) for k in keys]

    def bn_modules(self) -> list[str]:
        """BatchNorm modules whose running statistics this load changed (loaded or reset)."""
        names: dict[str, None] = {}
        for s in self._snapshot.items:
            if s.attr == "running_mean":
                names[s.key.rpartition(".")[0]] = None
        return list(names)

    def bn_stats(self) -> dict[str, dict[str, torch.Tensor]]:
        """module → before/after running mean and variance."""
        before, after = self.before(), self.after()
        out = {}
        for m in self.bn_modules():
            if f"{m}.running_var" in before:
                out[m] = {
                    "before_mean": before[f"{m}.running_mean"],
                    "after_mean": after[f"{m}.running_mean"],
                    "before_var": before[f"{m}.running_var"],
                    "after_var": after[f"{m}.running_var"],
                }
        return out

    # figures ---------------------------------------------------------------------------------
    def plot_histograms(self, keys: Iterable[str] | None = None, bins: int = 50,
                        max_panels: int = 12) -> Figure:
        from .plots import histogram_overlay

        keys = list(keys) if keys is not None else list(self.loaded)
        before, after = self.before(), self.after()
        return histogram_overlay({k: before[k] for k in keys}, {k: after[k] for k in keys},
                                 bins=bins, max_panels=max_panels)

    def plot_bn(self, module: str | None = None) -> Figure:
        from .plots import bn_running_stats

        stats = self.bn_stats()
        if not stats:
            raise ValueError("this load did not touch any BatchNorm running statistics")
        name = module if module is not None else next(iter(stats))
        s = stats[name]
        return bn_running_stats(s["before_mean"], s["after_mean"], s["before_var"],
                                s["after_var"], name=name)

    def plot_summary(self) -> Figure:
        from .plots import load_summary

        return load_summary(self.to_frame())

    # undo ------------------------------------------------------------------------------------
    def undo(self) -> None:
        """Restore exactly the tensors that were there before the load. Works once."""
        if self.undone:
            raise UndoError(
                "this load was already undone; a second undo would do nothing. Load the plan "
                "again (sdw.partial_load) to re-apply it."
            )
        self.model  # noqa: B018 - raises if the model is gone
        bad = self._snapshot.restore()
        if bad:
            raise UndoError(f"undo could not restore {bad[:3]} exactly")
        self._snapshot.release()
        self.undone = True
