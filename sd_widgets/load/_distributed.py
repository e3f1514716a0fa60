"""Past one machine: partial loads and statistics of sharded models, on every rank of a job.

A model trained with FSDP2 (``torch.distributed.fsdp.fully_shard``) or tensor parallelism holds
DTensor parameters: every rank has its local shard, ``tensor.shape`` is the global shape.
:func:`sd_widgets.compare` reads only that metadata, so it already works on every rank and
gives the statuses of an unsharded copy. This module adds what needs the other ranks, built on
public ``torch.distributed`` APIs only (DTensor, ``torch.distributed.checkpoint``, collectives):

- :func:`partial_load_sharded` (what :func:`sd_widgets.partial_load` runs for a sharded model):
  one ``dcp.load`` of a dict holding only the planned keys (renamed keys as aliases), so each
  rank reads only the chunks of its own shards; a snapshot of the local shards it is about to
  change; an agreement of all ranks through ``all_gather_object`` after each local step, so a
  failure on one rank rolls every rank back and raises :class:`~sd_widgets.LoadError` naming it.
- :class:`ShardedLoadReport`: ``undo()`` (on every rank, all or nothing) and ``release()``.
- :func:`sharded_stats`: per-rank partial sums all-reduced into the statistics of the whole
  tensor, never gathering it.

Every function here is collective: call it on every rank of the default process group, in the
same order (as with ``dcp.load``). The process group's timeout bounds every wait.
"""

from __future__ import annotations

import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from ..checkpoint._dcp import safe_reader
from ..checkpoint._paths import verify_stamps
from ..errors import LoadError, UndoError
from ._report import live_model

if TYPE_CHECKING:
    import pandas as pd

    from ..plan._plan import LoadPlan
    from ._stats import TensorStats


def _dtensor_type() -> type | None:
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return DTensor


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter or buffer of ``model`` is a DTensor (FSDP2, tensor parallel)."""
    dtensor = _dtensor_type()
    if dtensor is None:
        return False
    return any(isinstance(t, dtensor) for t in (*model.parameters(), *model.buffers()))


def _local(t: torch.Tensor) -> torch.Tensor:
    """The part of ``t`` on this rank: a DTensor's local shard, a plain tensor itself."""
    dtensor = _dtensor_type()
    t = t.detach()
    return cast(Any, t).to_local() if dtensor is not None and isinstance(t, dtensor) else t


def _require_job() -> tuple[int, int]:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise LoadError(
            "the model is sharded (DTensor parameters) but torch.distributed is not "
            "initialised in this process: call this on every rank of the job, after "
            "init_process_group. Nothing was changed."
        )
    return dist.get_rank(), dist.get_world_size()


def _agree(error: str | None) -> list[tuple[int, str]]:
    """Every rank's error of the step just done (None: fine), gathered on every rank."""
    import torch.distributed as dist

    found: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(found, error)
    return [(rank, e) for rank, e in enumerate(found) if e is not None]


def _failed_ranks(failures: list[tuple[int, str]], verb: str = "failed") -> str:
    ranks = ", ".join(str(r) for r, _ in failures)
    first_rank, first = failures[0]
    return f"rank{'s' if len(failures) > 1 else ''} {ranks} {verb} (rank {first_rank}: {first})"


def _describe(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {' '.join(lines[:2])[:500] or repr(exc)}"


# --------------------------------------------------------------------------------------------
# the transactional load


def _by_shards(plan: LoadPlan) -> bool:
    """Whether each rank can read its own chunks: a DCP source, tensors loaded as they are.

    Otherwise (another format, adapters, LoRA merges) rank 0 builds the full tensors and
    ``set_model_state_dict(..., broadcast_from_rank0=True)`` distributes them.
    """
    src = plan.comparison.checkpoint.source
    return src.kind == "dcp" and src.path is not None and not (plan.adapted or plan.lora)


def _fit_problem(plan: LoadPlan, live: Mapping[str, Any]) -> str | None:
    """Why the plan does not fit the model (global shapes), or None."""
    if plan.bn_reset_modules:
        return (
            "it resets BatchNorm statistics (bn='reset'), which sharded loading does not do: "
            "plan with bn='load' or bn='skip'"
        )
    for key, entry in plan.entries.items():
        target = live.get(key)
        if not isinstance(target, torch.Tensor):
            return f"the model has no tensor {key!r}: the plan was made for a different model"
        row = plan.comparison[key]
        shape = row.ckpt_shape
        if entry.adapter is None and shape is not None and tuple(shape) != tuple(target.shape):
            return (
                f"{key!r}: checkpoint {tuple(shape)} vs model {tuple(target.shape)} "
                f"(checkpoint key {entry.ckpt_key!r})"
            )
    return None


def _copy_into(targets: Mapping[str, torch.Tensor], read: Mapping[str, torch.Tensor]) -> None:
    """Copy each read local shard into the model's local shard, then check it bit for bit."""
    from ._transaction import same

    with torch.no_grad():
        for key, src in read.items():
            dst = targets[key]
            dst.copy_(src)
            if not same(dst, src):
                raise RuntimeError(f"{key!r} differs from what dcp.load read after copying it")


def _restore(targets: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy the saved local shards back; the keys that could not be restored."""
    from ._transaction import same

    failed = []
    with torch.no_grad():
        for key, copy in saved.items():
            try:
                targets[key].copy_(copy)
                if not same(targets[key], copy):
                    failed.append(key)
            except Exception:
                failed.append(key)
    return failed


def partial_load_sharded(model: nn.Module, plan: LoadPlan) -> ShardedLoadReport:
    """Load ``plan`` into a sharded model on every rank, all or nothing across ranks.

    Called by :func:`sd_widgets.partial_load` when the model holds DTensors; call it on every
    rank. Each step is followed by an agreement of all ranks (``all_gather_object``):

    1. check the plan fits (global shapes) and copy this rank's local shards of the planned
       tensors (the snapshot for rollback and undo);
    2. read. From a DCP directory, tensors loaded as they are: one ``dcp.load`` of fresh
       DTensors laid out as the model's, keyed by the checkpoint's names (renamed keys as
       aliases), so each rank reads only the chunks of its own shards. Otherwise (another
       format, adapters, LoRA merges): rank 0 builds the planned tensors whole
       (:meth:`LoadPlan.state_dict`; the model tensors an adapter or merge starts from are
       gathered first) and ``set_model_state_dict(..., StateDictOptions(full_state_dict=True,
       broadcast_from_rank0=True, strict=False))`` distributes them;
    3. write and verify: each local shard is checked bit for bit against what was read (DCP)
       or against rank 0's tensor scattered again with ``distribute_tensor`` (broadcast).

    When any rank fails a step, every rank restores its snapshot and raises
    :class:`~sd_widgets.LoadError` naming the failing rank(s) and what happened there.
    """
    start = time.perf_counter()
    rank, world = _require_job()
    live = model.state_dict(keep_vars=True)
    targets: dict[str, torch.Tensor] = {}
    saved: dict[str, torch.Tensor] = {}
    error: str | None = None
    try:
        problem = _fit_problem(plan, live)
        if problem is not None:
            raise ValueError(problem)
        for key in plan.entries:
            targets[key] = _local(live[key])
            saved[key] = targets[key].clone()
        ckpt = plan.comparison.checkpoint
        verify_stamps(ckpt.stamps, f"loading from {ckpt.source.describe()}")
    except Exception as exc:
        error = _describe(exc)
    failures = _agree(error)
    if failures:
        raise LoadError(
            f"partial load refused: {_failed_ranks(failures)}. Nothing was changed on any rank."
        )
    if _by_shards(plan):
        _load_by_shards(plan, live, targets, saved)
    else:
        _load_broadcast(model, plan, live, targets, saved)
    return ShardedLoadReport(
        model=model,
        plan=plan,
        targets=targets,
        saved=saved,
        untouched=[k for k, v in live.items() if isinstance(v, torch.Tensor) and k not in targets],
        rank=rank,
        world_size=world,
        seconds=time.perf_counter() - start,
    )


def _roll_back_if_failed(
    error: str | None, targets: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor]
) -> None:
    """Agree on ``error``; when any rank failed, restore every rank and raise LoadError."""
    failures = _agree(error)
    if not failures:
        return
    unrestored = _restore(targets, saved)
    restored = _agree(f"{len(unrestored)} tensors not restored" if unrestored else None)
    outcome = (
        "Every rank was rolled back: its local shards are exactly as before."
        if not restored
        else f"Rolling back FAILED on {_failed_ranks(restored)}: rebuild the model or "
        "reload its weights."
    )
    raise LoadError(f"partial load failed: {_failed_ranks(failures)}. {outcome}")


def _load_by_shards(
    plan: LoadPlan,
    live: Mapping[str, Any],
    targets: Mapping[str, torch.Tensor],
    saved: Mapping[str, torch.Tensor],
) -> None:
    import torch.distributed.checkpoint as dcp

    src = plan.comparison.checkpoint.source
    directory, prefix = Path(str(src.path)), (src.key + "." if src.key else "")
    fresh = {
        prefix + e.ckpt_key: torch.empty_like(live[k].detach()) for k, e in plan.entries.items()
    }
    error = None
    try:
        dcp.load(fresh, storage_reader=safe_reader(directory))
    except dcp.CheckpointException as exc:  # a BaseException: every rank gets every failure
        mine = exc.failures.get(torch.distributed.get_rank())
        error = _describe(mine[0]) if mine is not None else None if exc.failures else str(exc)
    except Exception as exc:
        error = _describe(exc)
    failures = _agree(error)
    if failures:
        raise LoadError(
            f"partial load failed reading {str(directory)!r}: {_failed_ranks(failures)}. "
            "Nothing was changed on any rank."
        )
    read = {key: _local(fresh[prefix + e.ckpt_key]) for key, e in plan.entries.items()}
    error = None
    try:
        _copy_into(targets, read)
    except Exception as exc:
        error = _describe(exc)
    del read, fresh
    _roll_back_if_failed(error, targets, saved)


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on every rank (collective for a DTensor)."""
    dtensor = _dtensor_type()
    return cast(Any, t).full_tensor() if dtensor is not None and isinstance(t, dtensor) else t


def _scattered(t: torch.Tensor, whole: torch.Tensor | None) -> torch.Tensor:
    """The part on this rank of rank 0's ``whole``, laid out as ``t`` (collective)."""
    import torch.distributed as dist
    from torch.distributed.tensor import distribute_tensor

    dtensor = _dtensor_type()
    buf = whole if whole is not None else torch.empty(t.shape, dtype=t.dtype)
    if dtensor is not None and isinstance(t, dtensor):
        d: Any = t
        out: Any = distribute_tensor(buf, d.device_mesh, d.placements, src_data_rank=0)
        return out.to_local()
    dist.broadcast(buf, src=0)
    return buf


def _load_broadcast(
    model: nn.Module,
    plan: LoadPlan,
    live: Mapping[str, Any],
    targets: dict[str, torch.Tensor],
    saved: Mapping[str, torch.Tensor],
) -> None:
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    rank = dist.get_rank()
    # the model tensors adapters and merges start from, whole (gathered on every rank)
    current = {k: _full(live[k].detach()) for k in [*plan.adapted, *plan.lora]}
    sd: dict[str, torch.Tensor] = {}
    error = None
    try:
        if rank == 0:
            sd = dict(plan.state_dict(model, current=current))
            for key, t in sd.items():
                if not isinstance(t, torch.Tensor):
                    raise ValueError(f"{key!r} is not a tensor: sharded loading takes tensors only")
                if tuple(t.shape) != tuple(live[key].shape):
                    raise ValueError(
                        f"{key!r}: {tuple(t.shape)} built vs model {tuple(live[key].shape)}"
                    )
                sd[key] = t.to(live[key].dtype)  # as load_state_dict would cast
    except Exception as exc:
        error = _describe(exc)
    del current
    failures = _agree(error)
    if failures:
        raise LoadError(
            f"partial load failed building the tensors on rank 0: {_failed_ranks(failures)}. "
            "Nothing was changed on any rank."
        )
    error = None
    try:
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
        result = set_model_state_dict(model, dict(sd), options=options)
        unexpected = [k for k in result.unexpected_keys if k in plan.entries]
        if unexpected:
            raise RuntimeError(f"set_model_state_dict did not take {unexpected[:3]}")
    except Exception as exc:
        error = _describe(exc)
    # the model may hold new tensors now: verify and undo against what it holds
    now = model.state_dict(keep_vars=True)
    targets.update({k: _local(now[k]) for k in targets})
    checked: str | None = None
    for key in plan.entries:  # every rank, same order: rank 0's tensor scattered again
        expected = _scattered(now[key], sd.get(key))
        if checked is None and error is None:
            from ._transaction import same

            if not same(targets[key], expected):
                checked = f"{key!r} differs from rank 0's tensor after set_model_state_dict"
    _roll_back_if_failed(error or checked, targets, saved)


class ShardedLoadReport:
    """What :func:`partial_load_sharded` did on this rank; ``undo()`` on every rank.

    ``loaded`` and ``skipped`` are the same on every rank; ``snapshot_nbytes`` is this rank's
    (its local shards only). :meth:`undo`, :meth:`stats` and :meth:`to_frame` are collective.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        plan: LoadPlan,
        targets: dict[str, torch.Tensor],
        saved: dict[str, torch.Tensor],
        untouched: list[str],
        rank: int,
        world_size: int,
        seconds: float,
    ) -> None:
        from ._transaction import fingerprint

        self.plan = plan
        #: model keys loaded, in model order (the same on every rank)
        self.loaded = list(plan.entries)
        #: key → why it was not loaded
        self.skipped: OrderedDict[str, str] = OrderedDict(plan.skipped)
        #: model keys the load did not touch
        self.untouched = untouched
        self.rank = rank
        self.world_size = world_size
        self.seconds = seconds
        self.undone = False
        self.released = False
        self._model = weakref.ref(model)
        self._targets = targets
        self._saved = saved
        self._after = {k: fingerprint(t) for k, t in targets.items()}

    def __repr__(self) -> str:
        state = "undone" if self.undone else "released" if self.released else "applied"
        return (
            f"<ShardedLoadReport ({state}, rank {self.rank} of {self.world_size}): loaded "
            f"{len(self.loaded)}, skipped {len(self.skipped)}>"
        )

    @property
    def snapshot_nbytes(self) -> int:
        """Bytes of this rank's undo snapshot (its local shards of the loaded tensors)."""
        return sum(t.numel() * t.element_size() for t in self._saved.values())

    def changed_since_load(self) -> list[str]:
        """Keys whose local shard on this rank changed since the load (no collective)."""
        from ._transaction import fingerprint

        return [k for k, t in self._targets.items() if fingerprint(t) != self._after[k]]

    def _require_applied(self, what: str) -> None:
        if self.undone:
            raise UndoError(f"this load was undone: {what} is no longer possible")
        if self.released:
            raise UndoError(f"this load's undo snapshot was released: {what} is no longer possible")

    def undo(self, *, force: bool = False) -> None:
        """Restore every rank's local shards as they were before the load (collective).

        Refuses on every rank (:class:`~sd_widgets.UndoError`) when any rank cannot undo:
        already undone or released there, the model gone or its tensors replaced, or (unless
        ``force=True``) a tensor changed since the load (a training step).
        """
        changed: list[str] = []
        problem = None
        model = self._model()
        if self.undone or self.released:
            problem = "this load was " + ("undone already" if self.undone else "released")
        elif model is None:
            problem = "the model this report belongs to no longer exists"
        else:
            live = model.state_dict(keep_vars=True)
            replaced = [
                k
                for k, t in self._targets.items()
                if not isinstance(live.get(k), torch.Tensor)
                or _local(live[k]).data_ptr() != t.data_ptr()
                or _local(live[k]).shape != t.shape
            ]
            changed = [] if force else self.changed_since_load()
            if replaced:
                problem = (
                    f"{len(replaced)} tensors were replaced since the load (first: "
                    f"{replaced[0]!r}): there is nothing to restore them into"
                )
            elif changed:
                problem = (
                    f"{len(changed)} tensors changed since the load (first: {changed[0]!r}); "
                    "undo(force=True) restores over such changes"
                )
        problems = _agree(problem)
        if problems:
            raise UndoError(
                f"undo refused on every rank: {_failed_ranks(problems, 'refused')}",
                changed=changed,
            )
        unrestored = _restore(self._targets, self._saved)
        problems = _agree(
            f"{len(unrestored)} tensors not restored (first: {unrestored[0]!r})"
            if unrestored
            else None
        )
        if problems:
            raise UndoError(f"undo failed: {_failed_ranks(problems)}")
        self.undone = True
        self._saved = {}

    def release(self) -> None:
        """Drop this rank's undo snapshot (no collective); ``undo()`` then refuses."""
        self._require_applied("release")
        self._saved = {}
        self.released = True

    @property
    def model(self) -> nn.Module:
        """The model this report belongs to (held weakly); UndoError once it is gone."""
        return live_model(self._model)

    def stats(self) -> dict[str, TensorStats]:
        """Statistics of each loaded tensor as a whole, after the load (collective)."""
        live = self.model.state_dict(keep_vars=True)
        return {k: sharded_stats(live[k].detach()) for k in self.loaded}

    def to_frame(self) -> pd.DataFrame:
        """One row per loaded tensor: global statistics after the load (collective)."""
        import pandas as pd

        rows = [{"key": k, **s.as_dict()} for k, s in self.stats().items()]
        return pd.DataFrame(rows).set_index("key") if rows else pd.DataFrame()


# --------------------------------------------------------------------------------------------
# statistics


def _counts_here(t: Any) -> bool:
    """Whether this rank's local part counts toward the whole (one copy of replicated data)."""
    from torch.distributed.tensor import Partial, Replicate

    mesh = t.device_mesh
    coordinate = mesh.get_coordinate()
    if coordinate is None:
        return False  # not part of the mesh
    for dim, placement in enumerate(t.placements):
        if isinstance(placement, Partial):
            raise ValueError(
                "a DTensor with a Partial placement holds pending sums, not values: "
                "redistribute it first"
            )
        if isinstance(placement, Replicate) and coordinate[dim] != 0:
            return False
    return True


def sharded_stats(t: torch.Tensor) -> TensorStats:
    """The statistics of a DTensor as a whole, from per-rank partial sums (collective).

    Each rank measures its local shard (:class:`sd_widgets.load._stats.Moments`: count, sum, sum of
    squares, min, max, zeros, NaN/inf counts); ``all_reduce`` adds them up (min/max reduced as
    such) and a second all-reduced pass sums squared deviations from the global mean, so the
    standard deviation does not cancel. A plain tensor is measured as it is.
    """
    import torch.distributed as dist

    from ._stats import Moments, TensorStats, _prepare, dtype_name, tensor_stats

    dtensor = _dtensor_type()
    if dtensor is None or not isinstance(t, dtensor):
        return tensor_stats(t)
    d: Any = t.detach()
    local = d.to_local() if _counts_here(d) else d.to_local()[:0]
    m = Moments()
    flat = _prepare(local).reshape(-1)
    if flat.numel():
        m.add(flat)
    group = d.device_mesh.get_group() if d.device_mesh.ndim == 1 else None
    sums = torch.tensor([m.seen, m.nan, m.inf, m.n, m.zeros, m.s, m.q], dtype=torch.float64)
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
    extremes = torch.tensor([-m.mn, m.mx], dtype=torch.float64)
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX, group=group)
    seen, nan, inf, n = (int(v) for v in sums[:4].tolist())
    zeros, s, q = int(sums[4].item()), float(sums[5].item()), float(sums[6].item())
    mn, mx = -float(extremes[0].item()), float(extremes[1].item())
    dtype = dtype_name(t.dtype)
    nan_value = float("nan")
    if seen == 0:
        return TensorStats(0, dtype, *(nan_value,) * 6, 0, 0)
    if n == 0:
        return TensorStats(seen, dtype, *(nan_value,) * 5, zeros / seen, nan, inf)
    mean = s / n
    # sum of squared deviations from the global mean, over finite values, all-reduced
    if flat.numel():
        values = flat.to(torch.float64)
        values = values[torch.isfinite(values)]
        m2_local = float(((values - mean) ** 2).sum().item())
    else:
        m2_local = 0.0
    m2 = torch.tensor([m2_local], dtype=torch.float64)
    dist.all_reduce(m2, op=dist.ReduceOp.SUM, group=group)
    std = math.sqrt(max(float(m2.item()), 0.0) / (n - 1)) if n > 1 else nan_value
    return TensorStats(seen, dtype, mean, std, mn, mx, math.sqrt(q), zeros / seen, nan, inf)
