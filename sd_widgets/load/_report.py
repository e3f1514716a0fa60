"""``LoadReport``: what a partial load did, its before/after statistics, figures and ``undo()``."""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import UndoError
from ..units import gc_paused
from ._stats import change_columns
from ._transaction import Interrupts, Measured, Snapshot, keep_trying, measure_many

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ..plan._plan import LoadPlan
    from ._stats import Histogram


_NO_CHANGE = {
    "max_abs_change": float("nan"),
    "mean_abs_change": float("nan"),
    "relative_l2_change": float("nan"),
    "changed_fraction": float("nan"),
}

STILL_ON_META = "the model cannot run until these are initialised"
"""What :attr:`LoadReport.still_on_meta` means for the user (the widget shows it with the keys)."""


class LoadReport:
    """What a partial load did, with before/after statistics and ``undo()``.

    Statistics: ``partial_load(..., stats=True)`` measures every touched tensor during the load.
    With ``stats=False`` the load returns as soon as the tensors are loaded and verified; call
    :meth:`compute_stats` (or :meth:`to_frame`, which calls it) afterwards — the Explorer shows
    its success message first and the statistics and histograms after. The numbers are the same
    either way.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        plan: LoadPlan,
        snapshot: Snapshot,
        loaded: list[str],
        assigned: bool,
        untouched: list[str],
        seconds: float,
        incompatible: list[Any],
        tied: Mapping[str, str] | None = None,
        transformed: Mapping[str, str] | None = None,
        converted: list[str] | None = None,
        still_on_meta: list[str] | None = None,
    ) -> None:
        self._model = weakref.ref(model)
        self.plan = plan
        self._snapshot = snapshot
        #: model keys loaded, in model order
        self.loaded = loaded
        #: key → why it was not loaded (everything selected but not loaded)
        self.skipped: OrderedDict[str, str] = OrderedDict(plan.skipped)
        #: model keys not loaded: they keep the values they had (on a meta-device model they
        #: have none: see :attr:`still_on_meta`)
        self.untouched = untouched
        #: key → (checkpoint dtype, model dtype) for silent-in-PyTorch casts
        self.casts = plan.casts
        #: key → adapter used
        self.adapted = plan.adapted
        #: BatchNorm modules whose running statistics were reset (bn="reset")
        self.bn_reset = list(plan.bn_reset_modules)
        #: key → the loaded key it is tied to (same tensor): changed through it, still tied
        self.tied: dict[str, str] = dict(tied or {})
        #: key → how it was verified, for keys a module's own loading code handled (a
        #: ``_load_from_state_dict`` override, load hooks, ``set_extra_state``): their value is
        #: what that code made of the checkpoint entry (run once, as torch runs it)
        self.transformed: dict[str, str] = dict(transformed or {})
        #: model keys the load changed that the plan does not name: what a module's own loading
        #: wrote (e.g. ``parametrizations.weight.original0`` from an old ``weight_g``)
        self.converted: list[str] = list(converted or [])
        #: model keys still on the meta device after the load: :data:`STILL_ON_META`
        self.still_on_meta: list[str] = list(still_on_meta or [])
        #: True when meta-device tensors were replaced (assign=True) instead of copied into
        self.assigned = assigned
        #: where the copies for rollback and undo were kept: "memory", "disk" or "memory+disk"
        self.snapshot = snapshot.used
        self.seconds = seconds
        #: what load_state_dict returned (missing keys = everything not in the plan)
        self.incompatible = incompatible
        self.undone = False
        #: True once :meth:`release` dropped the undo snapshot
        self.released = False
        #: who or what released it (said by the errors that follow)
        self._released_by = "report.release()"
        self._stats: list[dict[str, Any]] | None = None
        for key in self.still_on_meta:
            if key in self.skipped and "meta device" not in self.skipped[key]:
                self.skipped[key] = (
                    self.skipped[key].partition(":")[0]
                    + ": stays on the meta device; "
                    + STILL_ON_META
                )

    def __repr__(self) -> str:
        state = "undone" if self.undone else "released" if self.released else "applied"
        extra = ", assign=True (meta device)" if self.assigned else ""
        if self.still_on_meta:
            extra += f", {len(self.still_on_meta)} still on meta"
        return (
            f"<LoadReport ({state}): loaded {len(self.loaded)}, skipped {len(self.skipped)}, "
            f"cast {len(self.casts)}, adapted {len(self.adapted)}, bn reset "
            f"{len(self.bn_reset)}{extra}>"
        )

    @property
    def model(self) -> nn.Module:
        """The model this report belongs to (held weakly); UndoError once it is gone."""
        return live_model(self._model)

    # tensors ---------------------------------------------------------------------------------
    def before(self) -> dict[str, torch.Tensor]:
        """The touched tensors as they were before the load (copies)."""
        self._require_applied("the 'before' tensors")
        return self._snapshot.tensors()

    def after(self) -> dict[str, torch.Tensor]:
        """The touched tensors as they are now in the model (live, not copies)."""
        self._require_applied("the 'after' tensors")
        out = {}
        for s in self._snapshot.items:
            t = s.current()
            if t is not None:
                out[s.key] = t.detach()
        return out

    def _require_applied(self, what: str) -> None:
        if self.undone:
            raise UndoError(f"this load was undone: {what} are no longer available")
        if self.released:
            raise UndoError(
                f"this load's undo snapshot was released ({self._released_by}): {what} are "
                "no longer available"
            )

    # statistics ------------------------------------------------------------------------------
    @property
    def stats_ready(self) -> bool:
        """True once the before/after statistics exist (``to_frame()`` then costs nothing)."""
        return self._stats is not None

    def compute_stats(self, measured: Measured | None = None) -> None:
        """Compute the before/after and change statistics of every touched tensor (once).

        ``partial_load(..., stats=False)`` leaves this for later: call it (or :meth:`to_frame`)
        when the numbers are wanted. ``measured``: statistics the load already took while the
        tensors were in cache (key → (before, after, change)); the others are computed here the
        same way (:func:`sd_widgets.load._transaction.measure_many`: same chunks, same numbers).
        """
        if self._stats is not None:
            return
        self._require_applied("statistics")
        with gc_paused():  # many small acyclic objects: the collector would scan the model
            self._stats = self._rows(measured or {})

    def _rows(self, measured: Measured) -> list[dict[str, Any]]:
        before, after = self.before(), self.after()
        todo = [key for key in before if key not in measured]
        measured = {
            **measured,
            **dict(zip(todo, measure_many([(before[k], after[k]) for k in todo]), strict=True)),
        }
        loaded, converted = set(self.loaded), set(self.converted)
        return [self._row(key, *measured[key], loaded, converted) for key in before]

    def _row(
        self,
        key: str,
        sb: Any,
        sa: Any,
        ch: Mapping[str, Any] | None,
        loaded_keys: set[str],
        converted: set[str],
    ) -> dict[str, Any]:
        entry = self.plan.entries.get(key)
        loaded = entry is not None and key in loaded_keys
        row: dict[str, Any] = {
            "key": key,
            "action": ("merge" if key in self.plan.lora else "adapt" if entry.adapter else "load")
            if loaded and entry
            else ("tied" if key in self.tied else "converted" if key in converted else "bn_reset"),
            "ckpt_key": entry.ckpt_key if entry is not None else None,
            "cast": " → ".join(entry.cast) if entry is not None and entry.cast else None,
            "numel": sb.numel,
            "dtype": sb.dtype,
        }
        for prefix, st in (("before", sb), ("after", sa)):
            for name, value in st.as_dict().items():
                if name not in ("numel", "dtype"):
                    row[f"{prefix}_{name}"] = value
        # no change to measure (a meta tensor before an assign): the columns are there, NaN
        row.update(change_columns(ch if ch is not None else _NO_CHANGE))
        return row

    def to_frame(self) -> pd.DataFrame:
        """One row per touched tensor, as a pandas DataFrame.

        Columns: action, cast, before/after mean, std, min, max, l2, zero_fraction, nan/inf
        counts, and change (max_abs_change, rel_l2_change, ...).
        """
        import pandas as pd

        self.compute_stats()
        return pd.DataFrame(self._stats)

    def histogram(self, key: str, bins: int = 50) -> Histogram:
        """Before/after histogram of one touched tensor with shared bin edges."""
        from ._stats import before_after_histogram

        before, after = self.before(), self.after()
        if key not in before:
            raise KeyError(f"{key!r} was not touched by this load")
        return before_after_histogram(before[key], after[key], bins=bins, key=key)

    def bn_modules(self) -> list[str]:
        """BatchNorm modules whose running statistics this load changed (loaded or reset).

        Only modules whose running mean or variance now differs from before (a load of equal
        values changes nothing), the most changed first (a change from zero first).
        """
        frame = self.to_frame()
        rel = dict(zip(frame["key"], frame["rel_l2_change"], strict=True)) if len(frame) else {}
        change: dict[str, float] = {}
        for s in self._snapshot.items:
            if s.attr not in ("running_mean", "running_var"):
                continue
            r = rel.get(s.key)
            r = math.inf if r is None or r != r else float(r)  # unmeasured or NaN: changed
            module = s.key.rpartition(".")[0]
            if r != 0.0 or module in change:
                change[module] = max(change.get(module, 0.0), r)
        ranked = sorted(change, key=lambda m: -change[m])  # stable: model order on ties
        return [m for m in ranked if change[m] != 0.0]

    def bn_stats(self) -> dict[str, dict[str, torch.Tensor]]:
        """Module → before/after running mean and variance."""
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
    def plot_histograms(
        self, keys: Iterable[str] | None = None, bins: int = 50, max_panels: int = 12
    ) -> Figure:
        """Before/after histograms of ``keys`` (default: the loaded keys), ``max_panels`` at most."""
        from ._plots import histogram_overlay

        keys = list(keys) if keys is not None else list(self.loaded)
        before, after = self.before(), self.after()
        notes = self.notes()
        return histogram_overlay(
            {k: before[k] for k in keys},
            {k: after[k] for k in keys},
            bins=bins,
            max_panels=max_panels,
            notes={k: notes[k] for k in keys if k in notes},
        )

    def notes(self) -> dict[str, list[str]]:
        """Key → what only the load knows about it, as lines for its histogram panel.

        A dtype cast (``"cast float16 → float32"``), the adapter used (``"adapter: overlap"``),
        a LoRA merge (``"LoRA merge: + 2 · B @ A (rank 4)"``) and a tie (``"tied to embed.weight"``: the key changed because the tensor it shares
        storage with loaded). Keys with nothing to say are left out.

        Returns
        -------
        dict of str to list of str
            The lines per touched key, in the order cast, adapter, tie.
        """
        out: dict[str, list[str]] = {}
        for key, (src, dst) in self.casts.items():
            out.setdefault(key, []).append(f"cast {src} → {dst}")
        for key, adapter in self.adapted.items():
            out.setdefault(key, []).append(f"adapter: {adapter}")
        for key, pair in self.plan.lora.items():
            out.setdefault(key, []).append(
                f"LoRA merge: + {pair.scale:g} · B @ A (rank {pair.rank})"
                + (", rows rescaled to the DoRA magnitude" if pair.magnitude_key else "")
                if key == pair.base_key
                else f"LoRA bias: + {pair.scale:g} · lora_B.bias"
            )
        for key, other in self.tied.items():
            out.setdefault(key, []).append(f"tied to {other}")
        return out

    def did_it_load(self) -> str:
        """One line: does the model now hold the checkpoint's values, key by key.

        Reads the model and the checkpoint again (:func:`sd_widgets.compare_values`, streamed)
        and checks every loaded tensor against its checkpoint tensor (a cast: the same float64
        values; adapted tensors are not compared); the model's other tensors kept their own
        values, and the line says how many of them differ from the checkpoint.
        """
        from ..compare._values import ValueComparison

        self._require_applied("the loaded values")
        cmp = self.plan.comparison
        vc = ValueComparison(cmp, self.model, cmp.checkpoint)
        loaded = set(self.loaded)
        compared = [k for k in self.loaded if k not in self.adapted and k in vc.comparison]
        wrong = [k for k in compared if not vc[k].equal and k not in self.transformed]
        kept = [
            r.key
            for r in vc
            if r.a_key is not None and r.key not in loaded and r.key not in self.tied
        ]
        kept_differ = [k for k in kept if not vc[k].equal]
        differ = (
            f"; {len(kept_differ):,} other model tensor{'s' if len(kept_differ) != 1 else ''} "
            f"kept {'their' if len(kept_differ) != 1 else 'its'} own values "
            f"({_first(kept_differ)})"
            if kept_differ
            else ""
        )
        if wrong:
            return (
                f"NO: {len(wrong):,} of {len(compared):,} loaded tensors differ from the "
                f"checkpoint ({_first(wrong)}){differ}."
            )
        extra = f", {len(self.adapted):,} adapted (not compared)" if self.adapted else ""
        return f"Yes: all {len(compared):,} loaded tensors equal the checkpoint{extra}{differ}."

    def plot_bn(self, module: str | None = None) -> Figure:
        """Running mean and variance of a BatchNorm ``module`` (default: the first), before/after."""
        from ._plots import bn_running_stats

        stats = self.bn_stats()
        if not stats:
            raise ValueError("this load did not touch any BatchNorm running statistics")
        name = module if module is not None else next(iter(stats))
        s = stats[name]
        return bn_running_stats(
            s["before_mean"], s["after_mean"], s["before_var"], s["after_var"], name=name
        )

    def plot_summary(self) -> Figure:
        """One figure of the whole load: the change of every touched tensor (see ``to_frame``)."""
        from ._plots import load_summary

        return load_summary(self.to_frame())

    # undo ------------------------------------------------------------------------------------
    @property
    def snapshot_nbytes(self) -> int:
        """Bytes the undo snapshot holds (RAM and disk); 0 once undone or released."""
        return self._snapshot.nbytes if not (self.undone or self.released) else 0

    def changed_since_load(self) -> list[str]:
        """Keys of touched tensors whose value changed after the load (a training step, an edit).

        Each tensor's 64-bit fingerprint, taken while the load verified it, is compared with
        the tensor now: one read of each touched tensor, no second copy kept.
        """
        self._require_applied("the tensors the load wrote")
        self._require_inference_mode()
        return self._snapshot.changed_since(self.model)

    def _require_inference_mode(self) -> None:
        """UndoError when the load wrote inference tensors and inference mode is off.

        The undo guard reads them through views and undo writes them in place, which torch
        allows on such tensors only inside that mode; nothing is touched.
        """
        if torch.is_inference_mode_enabled():
            return
        keys = self._snapshot.inference_keys()
        if keys:
            raise UndoError(
                f"{len(keys)} tensors this load wrote are inference tensors ({_first(keys)}): "
                "the model was built under torch.inference_mode(), and torch allows the views "
                "and in-place writes undo needs only inside it. Nothing was restored. Undo "
                "inside it: "
                "`with torch.inference_mode(): report.undo()`."
            )

    def undo(self, force: bool = False) -> None:
        """Restore exactly the tensors that were there before the load. Works once.

        Refuses (:class:`~sd_widgets.UndoError` naming them in ``changed``) when a tensor it
        would restore changed after the load, e.g. a training step or an in-place edit: undo
        would overwrite that work. ``force=True`` restores anyway.
        """
        if self.undone:
            raise UndoError(
                "this load was already undone; a second undo would do nothing. Load the plan "
                "again (sdw.partial_load) to re-apply it."
            )
        if self.released:
            raise UndoError(
                f"this load's undo snapshot was released ({self._released_by}), so it cannot "
                "be undone. Reload the weights you want instead (e.g. sdw.partial_load of "
                "another plan)."
            )
        model = self.model  # raises if the model is gone
        self._require_inference_mode()
        if not force:
            changed = self._snapshot.changed_since(model)
            if changed:
                names = ", ".join(repr(k) for k in changed[:3])
                more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
                raise UndoError(
                    f"{len(changed)} tensor(s) this load wrote changed after it ({names}{more}): "
                    "undo would overwrite that later work. Nothing was restored. Call "
                    "report.undo(force=True) to restore the values from before the load anyway.",
                    changed=changed,
                )
        with Interrupts():  # Ctrl-C waits until every tensor is back, then is raised
            bad = keep_trying(lambda: self._snapshot.restore(model))
            if not bad:
                self._snapshot.release()
                self.undone = True
        if bad:
            raise UndoError(f"undo could not restore {bad[:3]} exactly")

    def release(self, *, why: str = "report.release()") -> None:
        """Drop the undo snapshot on purpose (its memory comes back); undo is then impossible.

        The statistics already computed stay; ``before()`` and new statistics need the
        snapshot and raise :class:`~sd_widgets.UndoError`, whose message gives ``why`` (what
        released it). Releasing twice does nothing.
        """
        if self.undone or self.released:
            return
        self._snapshot.release()
        self.released = True
        self._released_by = why


def _first(keys: list[str], n: int = 3) -> str:
    """``"a, b, c and 4 more"``: the first keys of a list (names escaped as repr)."""
    shown = ", ".join(ascii(k)[1:-1] for k in keys[:n])
    return shown + (f" and {len(keys) - n:,} more" if len(keys) > n else "")


def live_model(ref: weakref.ref[nn.Module]) -> nn.Module:
    """The model a report holds weakly; UndoError once it is gone (either report's ``model``)."""
    m = ref()
    if m is None:
        raise UndoError("the model this report belongs to no longer exists")
    return m
