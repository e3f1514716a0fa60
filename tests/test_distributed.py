"""Real torch.distributed jobs: ``torchrun`` on CPU with gloo, 2 and 4 ranks.

Each job (tests/distributed_job.py) shards a transformer-like stack with FSDP2, saves a DCP
checkpoint of another configuration (another head size, an extra module) and checks, on every
rank: compare == an unsharded copy's statuses with global shapes; a partial load of the backbone
bit for bit what plain ``dcp.load`` of those keys gives and nothing else touched; a failure
injected on the last rank only rolls every rank back with a LoadError naming it; undo on every
rank (refused everywhere when one rank changed a tensor); sharded statistics equal the whole
tensor's; the exported code (no sd_widgets import) gives the same state.

Bounded twice: the process group's timeout (60 s per collective) and this file's subprocess
timeout, which kills the whole process group of the job.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

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
