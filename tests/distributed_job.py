"""One rank of a real torch.distributed job (run by tests/test_distributed.py under torchrun).

CPU, gloo. A transformer-like stack sharded with FSDP2 (``fully_shard``) is compared with, and
partially loaded from, a DCP checkpoint saved by the same job from another configuration (a head
of another size and an extra module). Every check raises AssertionError on the rank that sees
it; the process group's timeout makes a hang fail.

Usage: torchrun --nproc_per_node N tests/distributed_job.py WORKDIR [--quick]
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import os
import sys
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import sd_widgets as sdw
from sd_widgets.compare._compare import _model_side
from sd_widgets.load import _distributed as sdd
from sd_widgets.load._stats import tensor_stats


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.attn = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        q, k, v = self.attn(self.norm(h)).chunk(3, dim=-1)
        weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        h = h + self.proj(weights @ v)
        return h + self.mlp(h)


class Stack(nn.Module):
    def __init__(self, d: int = 32, layers: int = 3, head: int = 10, extra: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(101, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, head)
        if extra:
            self.pooler = nn.Linear(d, d)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


def build(seed: int, sharded: bool, **kw) -> Stack:
    torch.manual_seed(seed)
    model = Stack(**kw)
    with torch.no_grad():  # LayerNorm starts at 1/0: give every tensor distinct values
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    if sharded:
        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model


def local(model: nn.Module) -> dict[str, torch.Tensor]:
    """This rank's shards, copied."""
    return {k: sdd._local(v).clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys) -> None:
    for k in keys:
        assert torch.equal(a[k], b[k]), f"rank {dist.get_rank()}: {k} differs"


def error_of(kind: type[Exception], call: Callable[[], object], what: str) -> str:
    """The message of the ``kind`` error ``call()`` raises on this rank; when it raises none,
    an AssertionError saying ``what`` happened instead."""
    try:
        call()
    except kind as exc:
        return str(exc)
    raise AssertionError(f"rank {dist.get_rank()}: {what}")


@contextlib.contextmanager
def patched(owner: object, name: str, value: object) -> Iterator[None]:
    """``owner.name`` is ``value`` inside the block (a failure injected on some ranks)."""
    real = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, real)


def main() -> None:
    workdir = sys.argv[1]
    quick = "--quick" in sys.argv
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    ckpt = os.path.join(workdir, f"dcp{world}")
    # the checkpoint: another configuration, saved by this job with FSDP2 (one file per rank)
    other = build(1, True, head=7, extra=True)
    dcp.save(other.state_dict(), checkpoint_id=ckpt)
    # the same tensors under other names: blocks.N. -> layers.N.
    renamed_ckpt = os.path.join(workdir, f"renamed{world}")
    renamed = {k.replace("blocks.", "layers.", 1): v for k, v in other.state_dict().items()}
    dcp.save(renamed, checkpoint_id=renamed_ckpt)
    del other, renamed

    # 1. compare on every rank: global shapes, the statuses of an unsharded copy
    model = build(0, True)
    assert sdd.is_sharded(model)
    cmp = sdw.compare(model, ckpt)
    plain = sdw.compare(build(0, False), ckpt)
    with torch.device("meta"):
        on_meta = Stack()
    meta_cmp = sdw.compare(on_meta, ckpt)
    for r in plain:
        for other_cmp in (cmp, meta_cmp):
            o = other_cmp[r.key]
            assert (o.status, o.model_shape, o.ckpt_shape) == (
                r.status,
                r.model_shape,
                r.ckpt_shape,
            ), f"rank {rank}: {r.key}: {o} vs {r}"
    assert cmp.summary() == plain.summary()
    # FSDP2's reshard hooks on every sharded module are no reason for a meta-twin dry run
    assert _model_side(model).roots == _model_side(build(0, False)).roots == []
    assert cmp["head.weight"].status == "shape_mismatch"
    assert cmp["head.weight"].model_shape == (10, 32)  # global, not this rank's (10/world, 32)
    assert cmp["pooler.weight"].status == "unexpected"

    plan = cmp.plan(include=["embed", "blocks", "norm"])
    backbone = list(plan.entries)
    assert backbone and not any(k.startswith("head") for k in backbone)
    before = local(model)

    # what plain DCP loading of those keys gives, into an identical sharded model
    reference = build(0, True)
    ref_sd = reference.state_dict()
    dcp.load({k: ref_sd[k] for k in backbone}, checkpoint_id=ckpt)
    expected = local(reference)

    # 2. a failure on one rank only: every rank rolls back and names it
    if not quick:
        real_copy = sdd._copy_into

        def copy_then_fail(targets, read):
            real_copy(targets, read)  # the model's shards are written, then this rank fails
            if dist.get_rank() == world - 1:
                raise OSError("disk on fire (injected)")

        with patched(sdd, "_copy_into", copy_then_fail):
            message = error_of(sdw.LoadError, lambda: sdw.partial_load(model, plan), "no LoadError")
        assert f"rank {world - 1} failed" in message and "disk on fire" in message, message
        assert "rolled back" in message, message
        same(local(model), before, before)

    # a read that fails on one rank only (its reader raises inside dcp.load's collectives)
    if not quick:
        real_reader = sdd.safe_reader

        def failing_reader(directory):
            reader = real_reader(directory)
            if dist.get_rank() == world - 1:

                def read_data(plan, planner):
                    raise OSError("data file unreadable (injected)")

                reader.read_data = read_data
            return reader

        with patched(sdd, "safe_reader", failing_reader):
            message = error_of(sdw.LoadError, lambda: sdw.partial_load(model, plan), "no LoadError")
        assert f"rank {world - 1} failed" in message and "injected" in message, message
        assert "rank 0 failed" not in message, message
        same(local(model), before, before)

    # a plan made for another model is refused on every rank before anything changes
    if not quick:
        narrow = build(0, True, d=16)
        narrow_before = local(narrow)
        message = error_of(
            sdw.LoadError,
            lambda: sdw.partial_load(narrow, plan),
            "a plan for another model was loaded",
        )
        assert "refused" in message and "(101, 32)" in message and "(101, 16)" in message, message
        assert "Nothing was changed on any rank" in message, message
        same(local(narrow), narrow_before, narrow_before)

    # 3. the load: exactly the plan's keys, bit for bit what dcp.load gives; the rest untouched
    report = sdw.partial_load(model, plan)
    assert isinstance(report, sdd.ShardedLoadReport)
    assert report.loaded == backbone
    now = local(model)
    same(now, expected, backbone)
    same(now, before, [k for k in now if k not in backbone])
    assert any(not torch.equal(now[k], before[k]) for k in backbone)
    # and FSDP2 computes with what was written: the forward of an unsharded copy loaded alike
    unsharded = build(0, False)
    sdw.partial_load(unsharded, sdw.compare(unsharded, ckpt).plan(include=backbone))
    tokens = torch.randint(0, 101, (2, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(model(tokens), unsharded(tokens), rtol=1e-5, atol=1e-6)

    # 5. sharded statistics: all-reduced partial sums == statistics of the whole tensor
    for key in ("embed.weight", "blocks.0.attn.weight", "norm.bias"):
        dt = model.state_dict()[key]
        got, want = sdd.sharded_stats(dt), tensor_stats(dt.full_tensor())
        assert got.numel == want.numel and got.nan_count == want.nan_count == 0, (got, want)
        for f in ("min", "max", "zero_fraction"):  # exact
            assert getattr(got, f) == getattr(want, f), (f, got, want)
        for f in ("mean", "std", "l2"):  # sums: equal up to the order of float additions
            g, w = getattr(got, f), getattr(want, f)
            assert abs(g - w) <= 1e-6 * max(1e-3, abs(w)), f"{key}.{f}: {g} vs {w}"
    frame = report.to_frame()
    assert list(frame.index) == backbone and (frame["numel"] > 0).all()

    # 4. undo on every rank; refused everywhere when one rank changed a tensor since
    if not quick:
        with torch.no_grad():
            if rank == 0:
                sdd._local(model.state_dict()["blocks.1.proj.weight"]).add_(1.0)
        message = error_of(sdw.UndoError, report.undo, "undo over a changed tensor was not refused")
        assert "rank 0" in message and "undo(force=True)" in message, message
        report.undo(force=True)
    else:
        report.undo()
    same(local(model), before, before)
    error_of(sdw.UndoError, report.undo, "a second undo was not refused")

    # 6. the exported code, run on every rank: the same state as partial_load
    if not quick:
        code = plan.to_code()
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(code))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in (node.names if isinstance(node, ast.Import) else [node])
            if isinstance(alias, ast.alias)
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(ast.parse(code))
            if isinstance(node, ast.ImportFrom)
        }
        assert "sd_widgets" not in imported and "torch" in imported, imported
        namespace: dict = {"__name__": "exported"}
        exec(compile(code, "exported.py", "exec"), namespace)
        fresh = build(0, True)
        namespace["load_sharded"](fresh)
        same(local(fresh), expected, backbone)
        same(local(fresh), before, [k for k in before if k not in backbone])

    # renamed keys: read under the checkpoint's names (aliases), in the plan and in the export
    if not quick:
        target = build(0, True)
        rules = [sdw.Rename.prefix("layers.", "blocks.")]
        renamed_plan = sdw.compare(target, renamed_ckpt, renames=rules).plan(include=backbone)
        assert list(renamed_plan.entries) == backbone
        assert renamed_plan.entries["blocks.0.attn.weight"].ckpt_key == "layers.0.attn.weight"
        report = sdw.partial_load(target, renamed_plan)
        same(local(target), expected, backbone)
        report.undo()
        same(local(target), before, before)
        # one rank released its snapshot: undo is refused on every rank, naming it
        report = sdw.partial_load(target, renamed_plan)
        if rank == world - 1:
            report.release()
        message = error_of(sdw.UndoError, report.undo, f"undo went ahead without rank {world - 1}")
        assert f"rank {world - 1} refused" in message and "released" in message, message
        same(local(target), expected, backbone)
        sdw.partial_load(target, renamed_plan).undo()  # nothing to undo: back to expected
        same(local(target), expected, backbone)
        namespace = {"__name__": "exported"}
        exec(compile(renamed_plan.to_code(), "exported_renamed.py", "exec"), namespace)
        namespace["load_sharded"](target)
        same(local(target), expected, backbone)

    # tensor parallelism: DTensors sharded by rows (Shard(0)), by columns (Shard(1)) and
    # replicated biases (Replicate), loaded the same way; statistics count a replica once
    if not quick:
        from torch.distributed.tensor.parallel import (
            ColwiseParallel,
            RowwiseParallel,
            parallelize_module,
        )

        def tensor_parallel(seed: int) -> Stack:
            m = build(seed, False)
            mesh = init_device_mesh("cpu", (world,))
            for block in m.blocks:
                parallelize_module(
                    block, mesh, {"attn": ColwiseParallel(), "proj": RowwiseParallel()}
                )
            return m

        tp = tensor_parallel(0)
        assert sdd.is_sharded(tp)
        placements = {
            str(tp.state_dict()[k].placements)
            for k in ("blocks.0.attn.weight", "blocks.0.proj.weight", "blocks.0.proj.bias")
        }
        assert placements == {"(Shard(dim=0),)", "(Shard(dim=1),)", "(Replicate(),)"}, placements
        tp_before = local(tp)
        tp_plan = sdw.compare(tp, ckpt).plan(include=["embed", "blocks", "norm"])
        assert tp_plan.summary() == plan.summary()
        tp_ref = tensor_parallel(0)
        ref_sd = tp_ref.state_dict()
        dcp.load({k: ref_sd[k] for k in backbone}, checkpoint_id=ckpt)
        report = sdw.partial_load(tp, tp_plan)
        same(local(tp), local(tp_ref), backbone)
        same(local(tp), tp_before, [k for k in tp_before if k not in backbone])
        for key in ("blocks.0.proj.bias", "blocks.0.proj.weight", "blocks.0.attn.weight"):
            dt = tp.state_dict()[key]
            got, want = sdd.sharded_stats(dt), tensor_stats(dt.full_tensor())
            assert (got.numel, got.min, got.max) == (want.numel, want.min, want.max), (got, want)
            assert abs(got.mean - want.mean) <= 1e-6 * max(1e-3, abs(want.mean)), (got, want)
        report.undo()
        same(local(tp), tp_before, tp_before)

    # compare reads no other rank: one rank alone gets its answer (no collective to hang in)
    if rank == 0:
        assert sdw.compare(model, ckpt).summary() == plain.summary()
    dist.barrier()

    # 7. a full-tensor file and adapters: rank 0 builds the tensors, set_model_state_dict
    # broadcasts them; the sharded model then computes what the unsharded one loaded alike does
    if not quick:
        pt = os.path.join(workdir, f"other{world}.pt")
        if rank == 0:
            torch.save(build(1, False, head=7, extra=True).state_dict(), pt)
        dist.barrier()
        adapt = {"head.*": "overlap"}
        include = ["embed", "blocks", "head"]
        unsharded = build(0, False)
        sdw.partial_load(unsharded, sdw.compare(unsharded, pt).plan(include=include, adapt=adapt))
        sharded = build(0, True)
        before = local(sharded)
        full_plan = sdw.compare(sharded, pt).plan(include=include, adapt=adapt)
        assert full_plan.adapted == {"head.weight": "overlap", "head.bias": "overlap"}
        report = sdw.partial_load(sharded, full_plan)
        for key, value in unsharded.state_dict().items():
            assert torch.equal(sharded.state_dict()[key].full_tensor(), value), key
        tokens = torch.randint(0, 101, (2, 6), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            assert torch.allclose(sharded(tokens), unsharded(tokens), rtol=1e-5, atol=1e-6)
        report.undo()
        same(local(sharded), before, before)
        # the DCP checkpoint with the same adapter: whole tensors on rank 0, then broadcast
        adapted_plan = sdw.compare(sharded, ckpt).plan(include=include, adapt=adapt)
        report = sdw.partial_load(sharded, adapted_plan)
        for key, value in unsharded.state_dict().items():
            assert torch.equal(sharded.state_dict()[key].full_tensor(), value), key
        report.undo()
        same(local(sharded), before, before)

    dist.barrier()
    print(f"rank {rank} of {world}: OK", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
