"""``partial_load``: a transactional partial load with verification, rollback and undo.

Plain ``load_state_dict`` is not atomic (PyTorch fact 2): when it raises, every tensor whose
shape matched has already been copied. ``partial_load`` checks that the plan fits the model,
then runs a transaction (:mod:`sd_widgets.transaction`): it snapshots exactly the tensors it
will touch, loads them through torch's own loading code (so module versions and hooks run),
verifies every loaded tensor against its source, and on any failure — ``KeyboardInterrupt``
included — restores the snapshot before raising :class:`~sd_widgets.LoadError`. What it did
is a :class:`~sd_widgets.report.LoadReport`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from .errors import LoadError
from .plan import LoadPlan
from .report import STILL_ON_META, LoadReport
from .transaction import SNAPSHOT_KINDS, Interrupts, Job, Snapshot, Transaction

__all__ = ["STILL_ON_META", "LoadError", "LoadReport", "partial_load"]

TRANSFORMS = ("declared", "any")


def partial_load(
    model: nn.Module,
    plan: LoadPlan,
    *,
    verify: bool = True,
    stats: bool = True,
    snapshot: Literal["memory", "disk", "auto"] = "auto",
    snapshot_budget: int | None = None,
    transforms: Literal["declared", "any"] = "declared",
) -> LoadReport:
    """Load ``plan`` into ``model`` in place, all or nothing.

    Parameters
    ----------
    model : nn.Module
        The model the plan was made for (a meta-device model is loaded with ``assign=True``,
        reported in ``LoadReport.assigned``; keys left on meta are ``still_on_meta``).
    plan : LoadPlan
        From ``compare(model, checkpoint).plan(...)``.
    verify : bool
        Check every loaded tensor bit for bit against its source (cheap: it reads the tensor
        while it is in cache).
    stats : bool
        Measure before/after and change statistics during the load. ``False`` returns as soon
        as the tensors are loaded and verified; ``report.compute_stats()`` or
        ``report.to_frame()`` computes the same numbers later (the Explorer shows its message
        first and streams the statistics and histograms after).
    snapshot : {"auto", "memory", "disk"}
        Where the copies for rollback and undo are kept: RAM, a temporary file mapped into
        memory, or RAM up to ``snapshot_budget`` bytes (default: half the available memory)
        and the rest on disk, so a model close to the machine's memory still has a rollback.
        ``LoadReport.snapshot`` says which was used.
    snapshot_budget : int, optional
        Bytes of RAM ``snapshot="auto"`` may use.
    transforms : {"declared", "any"}
        Modules that transform what they load (their class overrides ``_load_from_state_dict``,
        or they registered their own methods as load hooks) are verified against a throwaway
        copy that loaded the same entries (``LoadReport.transformed``); ``"any"`` extends this
        to hooks registered on a module from outside, which by default must leave every
        loaded value equal to its checkpoint tensor.

    Returns
    -------
    LoadReport
        What was loaded, skipped, cast, adapted, reset, tied; statistics; ``undo()``.

    Raises
    ------
    LoadError
        After restoring every touched tensor bit for bit, when anything fails; or before
        touching anything, when the plan does not fit the model.
    KeyboardInterrupt
        After the same rollback: Ctrl-C at any moment leaves the model as it was. (The one
        exception is the instant ``partial_load`` returns, after the last check.)
    """
    start = time.perf_counter()
    _check_arguments(plan, snapshot, transforms)
    live = model.state_dict(keep_vars=True)
    sd = _fitting_state_dict(model, plan, live)
    job = Job.build(model, sd, live, plan.bn_reset_modules)
    snap = Snapshot(job.sizes(), snapshot, budget=snapshot_budget)
    txn: Transaction | None = None
    try:
        with Interrupts() as interrupts:
            txn = Transaction(
                job, snap, interrupts, verify=verify, stats=stats, any_hook=transforms == "any"
            )
            try:
                txn.run()
                report = _report(txn, plan)
                if stats:
                    report.compute_stats(txn.measured)
                report.seconds = time.perf_counter() - start
                interrupts.check()
            except BaseException as exc:
                unrestored = txn.rollback()
                if not isinstance(exc, Exception):
                    raise  # KeyboardInterrupt and friends: rolled back, then propagate as is
                raise _rolled_back(exc, sd, snap, unrestored) from exc
        return report
    except KeyboardInterrupt:
        # Ctrl-C as the default handler came back (leaving the ``with``): roll back as well
        if txn is not None:
            txn.rollback()
        raise


# --------------------------------------------------------------------------------------------
# fit checking


def _check_arguments(plan: Any, snapshot: str, transforms: str) -> None:
    if not isinstance(plan, LoadPlan):
        raise TypeError(f"partial_load needs a LoadPlan (from Comparison.plan()), got {type(plan)}")
    if snapshot not in SNAPSHOT_KINDS:
        raise ValueError(f"snapshot={snapshot!r}: use one of {SNAPSHOT_KINDS}")
    if transforms not in TRANSFORMS:
        raise ValueError(f"transforms={transforms!r}: use one of {TRANSFORMS}")
    if plan.comparison.model is None:
        raise LoadError(
            "this plan compares two checkpoints; build it with compare(model, checkpoint) to load"
        )


def _check_castable(key: str, src: torch.Tensor, target: torch.Tensor) -> str | None:
    if src.is_complex() and not target.is_complex():
        return f"{key!r}: complex checkpoint tensor cannot be cast to {target.dtype} without loss"
    if src.is_floating_point() and not (target.is_floating_point() or target.is_complex()):
        return (
            f"{key!r}: floating-point checkpoint tensor ({src.dtype}) into an integer model "
            f"tensor ({target.dtype}) would truncate"
        )
    return None


def _fitting_state_dict(
    model: nn.Module, plan: LoadPlan, live: Mapping[str, Any]
) -> OrderedDict[str, torch.Tensor]:
    """The planned tensors, read, after checking that each one fits its model tensor.

    Raises LoadError (nothing changed) otherwise.
    """
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
    return sd


# --------------------------------------------------------------------------------------------
# report building


def _report(txn: Transaction, plan: LoadPlan) -> LoadReport:
    job = txn.job
    touched = set(job.sd) | set(job.extra_keys)
    now = job.model.state_dict(keep_vars=True)
    return LoadReport(
        model=job.model,
        plan=plan,
        snapshot=txn.snapshot,
        loaded=list(job.sd),
        assigned=bool(job.meta_keys),
        untouched=[
            k for k, v in job.live.items() if isinstance(v, torch.Tensor) and k not in touched
        ],
        seconds=0.0,
        incompatible=txn.incompatible,
        tied=job.tied,
        transformed=txn.transformed.how,
        still_on_meta=[k for k, v in now.items() if isinstance(v, torch.Tensor) and v.is_meta],
    )


def _rolled_back(
    exc: Exception, sd: Mapping[str, torch.Tensor], snapshot: Snapshot, unrestored: list[str]
) -> LoadError:
    failed_key = next((k for k in sd if k in str(exc)), None)
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    # torch's "Error(s) in loading state_dict for X:" says nothing without its next line
    detail = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines or [""])[0]
    rolled_back = (
        f"The model was rolled back: all {len(snapshot.items)} touched tensors are exactly "
        "as before."
        if not unrestored
        else f"Rolling back FAILED for {len(unrestored)} tensors (first: {unrestored[0]!r}); "
        "the others are as before. Rebuild the model or reload its weights."
    )
    return LoadError(
        f"partial load failed ({type(exc).__name__}: {detail or repr(exc)}). " + rolled_back,
        cause=exc,
        key=failed_key,
    )
