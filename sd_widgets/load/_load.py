"""``partial_load``: a transactional partial load with verification, rollback and undo.

Plain ``load_state_dict`` is not atomic (PyTorch fact 2): when it raises, every tensor whose
shape matched has already been copied. ``partial_load`` checks that the plan fits the model,
then runs a transaction (:mod:`sd_widgets.load._transaction`): it snapshots exactly the state the
load can touch, loads through the model's own ``load_state_dict`` once (so module versions,
hooks, extra state and key conversions run exactly as in torch), verifies what torch's plain
loading copied bit for bit, and on any failure — ``KeyboardInterrupt`` included — restores the
snapshot before raising :class:`~sd_widgets.LoadError`. What it did is a
:class:`~sd_widgets.load._report.LoadReport`.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from ..errors import LoadError
from ..plan._plan import LoadPlan
from ._distributed import ShardedLoadReport, is_sharded, partial_load_sharded
from ._report import LoadReport
from ._transaction import (
    SNAPSHOT_KINDS,
    Interrupts,
    Job,
    Snapshot,
    Transaction,
    _owner,
    _path,
    own_loading,
)


def partial_load(
    model: nn.Module,
    plan: LoadPlan,
    *,
    verify: bool = True,
    stats: bool = True,
    snapshot: Literal["memory", "disk", "auto"] = "auto",
    snapshot_budget: int | None = None,
) -> LoadReport | ShardedLoadReport:
    """Load ``plan`` into ``model`` in place, all or nothing.

    Parameters
    ----------
    model : nn.Module
        The model the plan was made for (tensors on the meta device are loaded with
        ``assign=True``, reported in ``LoadReport.assigned``; keys left on meta are
        ``still_on_meta``).
    plan : LoadPlan
        From ``compare(model, checkpoint).plan(...)``.
    verify : bool
        Check every tensor torch's plain loading copied bit for bit against its source (read
        while it is in cache). Keys a module's own loading code handles (load hooks, a
        ``_load_from_state_dict`` override, ``set_extra_state``) are what that code made of
        them: ``LoadReport.transformed`` names them; their code runs once, as in torch.
    stats : bool
        Measure before/after and change statistics during the load, on the chunks the
        snapshot and the verification read anyway. ``False`` returns as soon as the tensors are
        loaded and verified; ``report.compute_stats()`` or ``report.to_frame()`` computes the
        same numbers later.
    snapshot : {"auto", "memory", "disk"}
        Where the copies for rollback and undo are kept: RAM, a temporary file mapped into
        memory, or RAM up to ``snapshot_budget`` bytes (default: half the available memory)
        and the rest on disk, so a model close to the machine's memory still has a rollback.
        ``LoadReport.snapshot`` says which was used, ``LoadReport.snapshot_nbytes`` its size.
    snapshot_budget : int, optional
        Bytes of RAM ``snapshot="auto"`` may use.

    Returns
    -------
    LoadReport or ShardedLoadReport
        What was loaded, skipped, cast, adapted, reset, tied; statistics; ``undo()``. A
        :class:`~sd_widgets.load._distributed.ShardedLoadReport` for a model holding DTensors.

    A model holding DTensors (FSDP2, tensor parallel) is loaded on every rank of its job by
    :func:`sd_widgets.load._distributed.partial_load_sharded` (call this on every rank; the result
    is a :class:`~sd_widgets.load._distributed.ShardedLoadReport`).

    Raises
    ------
    LoadError
        After restoring every touched tensor bit for bit, when anything fails (torch raises,
        or reports a planned key unexpected or missing, or a verification fails); or before
        touching anything, when the plan does not fit the model.
    KeyboardInterrupt
        After the same rollback: Ctrl-C at any moment leaves the model as it was. (The one
        exception is the instant ``partial_load`` returns, after the last check.)
    """
    start = time.perf_counter()
    _check_arguments(plan, snapshot)
    if is_sharded(model):  # DTensor parameters (FSDP2, tensor parallel): on every rank
        # a ShardedLoadReport: loaded, skipped, untouched, undo(force=), release() as here
        return partial_load_sharded(model, plan)
    live = model.state_dict(keep_vars=True)
    sd = _fitting_state_dict(model, plan, live)
    job = Job.build(model, sd, live, plan.bn_reset_modules)
    snap = Snapshot(job.sizes(), snapshot, budget=snapshot_budget)
    txn: Transaction | None = None
    try:
        with Interrupts() as interrupts:
            txn = Transaction(job, snap, interrupts, verify=verify, stats=stats)
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
                raise _rolled_back(exc, [*sd, *live], snap, unrestored) from exc
        return report
    except KeyboardInterrupt:
        # Ctrl-C as the default handler came back (leaving the ``with``): roll back as well
        if txn is not None:
            txn.rollback()
        raise


# --------------------------------------------------------------------------------------------
# fit checking


def _check_arguments(plan: Any, snapshot: str) -> None:
    if not isinstance(plan, LoadPlan):
        what = type(plan).__name__
        if callable(getattr(plan, "plan", None)):  # a Comparison
            hint = ": make one with its .plan(), e.g. sdw.partial_load(model, cmp.plan())"
        elif isinstance(plan, (str, os.PathLike, Mapping)):  # a checkpoint
            hint = (
                ": compare the checkpoint with the model and plan first, e.g. "
                "sdw.partial_load(model, sdw.compare(model, checkpoint).plan())"
            )
        else:
            hint = " (from sdw.compare(model, checkpoint).plan())"
        raise TypeError(f"partial_load(model, plan) needs a LoadPlan, got {what}{hint}")
    if snapshot not in SNAPSHOT_KINDS:
        raise ValueError(f"snapshot={snapshot!r}: use one of {SNAPSHOT_KINDS}")
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


def _converted(modules: Mapping[str, nn.Module], key: str) -> bool:
    """Whether a key the model's state_dict lacks may be taken by a module's own loading.

    That is, a module on its path (not the root alone) has loading code of its own, e.g. the
    old ``weight_norm`` keys ``weight_g``/``weight_v`` of a parametrized ``weight_norm``.
    Whether it really does is torch's answer at load time (unexpected: rolled back).
    """
    owner = _owner(modules, key)
    return bool(owner) and any(own_loading(modules[p]) for p in _path(owner) if p)


def _fitting_state_dict(
    model: nn.Module, plan: LoadPlan, live: Mapping[str, Any]
) -> OrderedDict[str, torch.Tensor]:
    """The planned tensors, read, after checking that each one fits its model tensor.

    Raises LoadError (nothing changed) otherwise.
    """
    modules = dict(model.named_modules(remove_duplicate=False))
    missing = [k for k in plan.entries if k not in live and not _converted(modules, k)]
    if missing:
        raise LoadError(
            f"the model has no {missing[0]!r} ({len(missing)} planned keys are absent): the plan was "
            "made for a different model. Nothing was changed; compare this model again."
        )
    # the model tensors the plan writes, by key
    targets = {k: t for k in plan.entries if isinstance(t := live.get(k), torch.Tensor)}
    lazy = [k for k, t in targets.items() if is_lazy(t)]
    if lazy:  # torch's load changes such a tensor object in place: there is nothing to put back
        raise LoadError(
            f"{len(lazy)} planned tensors belong to lazy modules not initialised yet (first: "
            f"{lazy[0]!r}): an uninitialised parameter has no shape or values an undo could "
            "restore, so partial_load does not load into it. Nothing was changed. Run one "
            "forward pass with a dummy batch first (the parameters get their shapes), then load; "
            "or load without undo: model.load_state_dict(plan.state_dict(model), strict=False) "
            "gives them the checkpoint's shapes and values (so does the code plan.to_code() "
            "writes, the Explorer's Code tab)."
        )
    if not torch.is_inference_mode_enabled():
        frozen = [k for k, t in targets.items() if t.is_inference()]
        if frozen:  # torch's own load would fail half-way (the tensors before it are written)
            raise LoadError(
                f"{len(frozen)} planned tensors are inference tensors (first: {frozen[0]!r}): "
                "the model was built under torch.inference_mode(), and torch writes such a "
                "tensor in place only inside it. Nothing was changed. Load inside it: "
                "`with torch.inference_mode(): sdw.partial_load(model, plan)` (undo there "
                "too), or build the model outside inference mode."
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
        target = live.get(key)
        if not isinstance(target, torch.Tensor) or not isinstance(t, torch.Tensor):
            continue  # extra state, or a key the module's own loading converts: torch decides
        if is_lazy(target):
            continue  # a lazy module takes the checkpoint's shape
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
    touched = set(job.sd) | {s.key for s in txn.snapshot.items}
    still_on_meta = []
    for key, was in job.live.items():
        if not isinstance(was, torch.Tensor):
            continue
        mod_name, _, attr = key.rpartition(".")
        module = job.modules.get(mod_name)
        now: torch.Tensor | None = None
        if module is not None:
            now = module._parameters.get(attr)
            if now is None:
                now = module._buffers.get(attr)
        if (now if now is not None else was).is_meta:
            still_on_meta.append(key)
    return LoadReport(
        model=job.model,
        plan=plan,
        snapshot=txn.snapshot,
        loaded=list(job.sd),
        assigned=bool(job.meta_modules),
        untouched=[
            k for k, v in job.live.items() if isinstance(v, torch.Tensor) and k not in touched
        ],
        seconds=0.0,
        incompatible=[txn.result],
        tied=job.tied,
        transformed=txn.transformed,
        converted=txn.converted,
        still_on_meta=still_on_meta,
    )


def _rolled_back(
    exc: Exception, keys: list[str], snapshot: Snapshot, unrestored: list[str]
) -> LoadError:
    message = str(exc)
    failed_key = next((k for k in keys if k in message), None)
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
