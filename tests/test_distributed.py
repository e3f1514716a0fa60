"""Real torch.distributed jobs: ``torchrun`` on CPU with gloo, 2 and 4 ranks.

Each job (tests/distributed_job.py) shards a transformer-like stack with FSDP2, saves a DCP
checkpoint of another configuration (another head size, an extra module) and checks, on every
rank: compare == an unsharded copy's statuses with global shapes (also on one rank alone, and
for a meta-device model); a partial load of the backbone bit for bit what plain ``dcp.load`` of
those keys gives, nothing else touched, and FSDP2's forward equal to an unsharded copy's; a
failure injected on the last rank only rolls every rank back with a LoadError naming it; undo on
every rank (refused everywhere when one rank changed a tensor or released its snapshot);
sharded statistics equal the whole tensor's; the exported code (no sd_widgets import) gives the
same state; renamed keys read as aliases; a ``.pt`` of another configuration with an adapter
through ``set_model_state_dict(broadcast_from_rank0=True)`` equals the unsharded load; a
tensor-parallel model (Shard(0), Shard(1), Replicate) loads as plain ``dcp.load`` does.

Bounded twice: the process group's timeout (60 s per collective) and this file's subprocess
timeout, which kills the whole process group of the job.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import warnings

import pytest
import torch
import torch.distributed.checkpoint as dcp
from distributed_job import Stack

import sd_widgets as sdw

JOB = pathlib.Path(__file__).with_name("distributed_job.py")
TIMEOUT = 240


def run_job(nproc: int, workdir: pathlib.Path) -> str:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port: jobs running side by side do not meet
        f"--nproc_per_node={nproc}",
        str(JOB),
        str(workdir),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and every rank
        out, _ = proc.communicate()
        pytest.fail(f"the {nproc}-rank job did not finish in {TIMEOUT} s:\n{out[-4000:]}")
    assert proc.returncode == 0, out[-6000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 4])
def test_fsdp2_compare_partial_load_rollback_undo_export(nproc, tmp_path):
    out = run_job(nproc, tmp_path)
    for rank in range(nproc):
        assert f"rank {rank} of {nproc}: OK" in out, out[-4000:]
    # the checkpoint was written by every rank of the job: one data file each
    assert len(list((tmp_path / f"dcp{nproc}").glob("*.distcp"))) == nproc


def _exported_names(code: str) -> set[str]:
    namespace: dict = {"__name__": "exported"}
    exec(compile(code, "exported.py", "exec"), namespace)
    return set(namespace)


def test_dcp_export_has_a_sharded_loader_only_where_it_reads_shards(tmp_path):
    """``load_sharded`` is exported for a DCP source loaded as it is; an adapter needs the whole
    tensor (no per-rank loader), and other formats have none (run under torchrun above)."""
    torch.manual_seed(0)
    other = Stack(head=7, extra=True).state_dict()
    with warnings.catch_warnings():  # "torch.distributed is disabled": one process, on purpose
        warnings.simplefilter("ignore", UserWarning)
        dcp.save(other, checkpoint_id=tmp_path / "dcp", no_dist=True)
    torch.save(other, tmp_path / "other.pt")
    model = Stack()
    as_is = sdw.compare(model, tmp_path / "dcp").plan(include=["embed", "blocks"])
    assert "load_sharded" in _exported_names(as_is.to_code())
    adapted = sdw.compare(model, tmp_path / "dcp").plan(adapt={"head.*": "overlap"})
    assert adapted.adapted and "load_sharded" not in _exported_names(adapted.to_code())
    from_pt = sdw.compare(model, tmp_path / "other.pt").plan(include=["embed"])
    assert "load_sharded" not in _exported_names(from_pt.to_code())
