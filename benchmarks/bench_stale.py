"""The Explorer's after-cell staleness check (``sd_widgets/widget/_stale.py``): what it costs.

    python benchmarks/bench_stale.py [--keys 98304] [--repeat 20] [--no-fail]

After every notebook cell each Explorer asks its ``ModelWatch`` what changed: registrations
and optimizer steps noted by torch's global hooks (nothing to do when there were none), and the
values of the tensors one check reads within ``VALUE_CHECK_SECONDS`` (20 ms, estimated as
``SECONDS_PER_TENSOR`` per tensor plus bytes at ``BYTES_PER_SECOND``). Printed:

* the two constants measured: a fingerprint of a small tensor (with the identity, shape and
  dtype checks around it) and the fingerprint throughput on a 64 MiB tensor. The estimate must
  not be below what was measured, or a check spends more than its budget;
* the after-cell check when nothing changed, median of ``--repeat``, at ``--keys`` keys: a CPU
  model of small tensors (a Mixture of Experts' 4x4 experts: the most tensors), the same layout
  on the meta device, and a model of large tensors (4 x 64 MiB); target <= 20 ms each;
* what the baseline costs (``rebaseline``: after each load, undo and refresh), and how many
  tensors' values a check reads.

Wall-clock times decide; the load average is printed with them (2 shared cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from sd_widgets.load._transaction import fingerprint  # noqa: E402
from sd_widgets.widget import _stale  # noqa: E402


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Expert(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(4, 4, bias=False)
        self.up_proj = nn.Linear(4, 4, bias=False)
        self.down_proj = nn.Linear(4, 4, bias=False)


def moe(n_keys: int) -> nn.Module:
    """64 layers of experts, three 4x4 weights each: about ``n_keys`` keys."""
    experts = max(1, n_keys // (64 * 3))
    return nn.ModuleList(nn.ModuleList(Expert() for _ in range(experts)) for _ in range(64))


def constants(repeat: int) -> tuple[float, float]:
    """(seconds per small tensor, bytes per second) as a check spends them."""
    model = nn.ModuleList(nn.Linear(4, 4) for _ in range(1000))
    values = [
        _stale._value(key, module, attr, t) for key, module, attr, t in _stale.named_tensors(model)
    ]
    per_tensor = median_seconds(lambda: [v.changed() for v in values], repeat) / len(values)
    big = torch.randn(16 * 2**20)  # 64 MiB
    fingerprint(big)
    per_big = median_seconds(lambda: fingerprint(big), max(3, repeat // 4))
    return per_tensor, big.numel() * big.element_size() / per_big


def check(label: str, model: nn.Module, repeat: int) -> tuple[str, float, bool]:
    t0 = time.perf_counter()
    watch = _stale.ModelWatch(model)
    watch.rebaseline()
    t_base = time.perf_counter() - t0
    assert watch.changed() == []
    t_check = median_seconds(watch.changed, repeat)
    n_keys = sum(1 for _ in _stale.named_tensors(model))
    watch.close()
    ok = t_check <= _stale.VALUE_CHECK_SECONDS
    print(
        f"{'PASS' if ok else 'FAIL'}  {label}: {n_keys:,} keys, after-cell check "
        f"{t_check * 1e3:.1f} ms (<= {_stale.VALUE_CHECK_SECONDS * 1e3:.0f} ms), values read of "
        f"{len(watch._values):,} tensors; baseline {t_base * 1e3:.0f} ms"
    )
    return label, t_check, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=98_304)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-fail", action="store_true", help="exit 0 even when a target is missed")
    args = ap.parse_args(argv)
    print(
        f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, torch {torch.__version__}"
    )

    per_tensor, throughput = constants(args.repeat)
    ok_t = per_tensor <= _stale.SECONDS_PER_TENSOR
    ok_b = throughput >= _stale.BYTES_PER_SECOND
    print(
        f"{'PASS' if ok_t else 'FAIL'}  one small tensor checked: {per_tensor * 1e6:.1f} µs "
        f"(estimate SECONDS_PER_TENSOR = {_stale.SECONDS_PER_TENSOR * 1e6:.0f} µs)"
    )
    print(
        f"{'PASS' if ok_b else 'FAIL'}  fingerprint throughput: {throughput / 1e9:.2f} GB/s "
        f"(estimate BYTES_PER_SECOND = {_stale.BYTES_PER_SECOND / 1e9:.0f} GB/s)"
    )
    results = [ok_t, ok_b]
    torch.manual_seed(0)
    results.append(check("MoE on CPU (4x4 experts)", moe(args.keys), args.repeat)[2])
    with torch.device("meta"):
        meta = moe(args.keys)
    results.append(check("MoE on the meta device", meta, args.repeat)[2])
    large = nn.Sequential(*(nn.Linear(4096, 4096) for _ in range(4)))
    results.append(check("4 x 64 MiB Linear", large, args.repeat)[2])
    return 0 if all(results) or args.no_fail else 1


if __name__ == "__main__":
    raise SystemExit(main())
