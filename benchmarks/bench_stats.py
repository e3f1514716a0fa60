"""Benchmark sd_widgets.load._stats: 50,000 small tensors after a load, and one large tensor.

    python benchmarks/bench_stats.py [--small 50000] [--numel 100000000] [--repeats 3]

Small tensors (issue 21 target: <= 2 s): a model of 25,000 ``nn.Linear(8, 8)`` (50,000 tensors,
as a large MoE or a deep model's norms and biases) loaded with ``partial_load(stats=False)``,
then ``report.compute_stats()`` (before/after/change statistics of every tensor, what the
Explorer computes after its success message); also ``stats=True`` minus ``stats=False``.
PASS/FAIL printed; exit 1 on a miss unless ``--no-fail``.

Times ``tensor_stats(t) + before_after_histogram(t, u)`` (``u`` = a slightly changed copy of
``t``, as after a load) against the naive one-liners

    t.mean(); t.std(); t.min(); t.max(); t.norm(); (t == 0).float().mean(); torch.histc(t)

and reports best-of-N wall time, peak extra resident memory (Linux: VmHWM after resetting it via
/proc/self/clear_refs; elsewhere an RSS-sampling thread) and the ratio. Component rows compare
the statistics alone and the before/after histogram alone (naive: min/max of both, two histc).
Needs ~1.3 GB of RAM at the default size.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sd_widgets as sdw
from sd_widgets.load._stats import before_after_histogram, tensor_stats

TARGET_SMALL_SECONDS = 2.0

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _can_reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
        return True
    except (OSError, KeyError):
        return False


def _rss_bytes() -> int:
    try:
        return _status_kib("VmRSS") * 1024
    except (OSError, KeyError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_extra_bytes(fn: Callable[[], object]) -> int:
    """Peak resident memory above the starting level while ``fn`` runs."""
    gc.collect()
    if _can_reset_peak():
        _CLEAR_REFS.write_text("5")  # VmHWM := VmRSS
        start = _status_kib("VmRSS")
        fn()
        return max(0, _status_kib("VmHWM") - start) * 1024
    start = _rss_bytes()
    peak = start
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(0, peak - start)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time over ``repeats`` runs (after one warm-up run)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def small_tensors(n: int, repeats: int) -> bool:
    """Statistics of ``n`` small tensors after a load; True when within the target."""
    torch.manual_seed(0)

    def build() -> torch.nn.Module:
        # 20 x 25 x n/1000 Linear layers: torch's loader filters each child's keys out of its
        # parent's dict, quadratic in the width of a flat ModuleList (plain torch pays it too)
        def group(k: int) -> torch.nn.ModuleList:
            return torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(k))

        inner = max(1, n // 1000)
        return torch.nn.ModuleList(
            torch.nn.ModuleList(group(inner) for _ in range(25)) for _ in range(20)
        )

    model, src = build(), build().state_dict()
    n = len(src)
    plan = sdw.compare(model, src).plan()
    later, together, without = [], [], []
    for _ in range(repeats):
        report = sdw.partial_load(model, plan, stats=False)
        start = time.perf_counter()
        report.compute_stats()
        later.append(time.perf_counter() - start)
        report.undo()
        start = time.perf_counter()
        sdw.partial_load(model, plan, stats=False).undo()
        without.append(time.perf_counter() - start)
        start = time.perf_counter()
        sdw.partial_load(model, plan, stats=True).undo()
        together.append(time.perf_counter() - start)
    best = min(later)
    extra = min(together) - min(without)
    ok = best <= TARGET_SMALL_SECONDS
    print(
        f"{n:,} small tensors: report.compute_stats() {best:.2f} s; partial_load stats=True "
        f"{min(together):.2f} s vs stats=False {min(without):.2f} s (+{extra:.2f} s); best of "
        f"{repeats}"
    )
    print(
        f"{'PASS' if ok else 'FAIL'}: statistics of {n:,} small tensors <= "
        f"{TARGET_SMALL_SECONDS:.0f} s — {best:.2f} s"
    )
    return ok


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=50_000, help="small tensors (0: skip)")
    parser.add_argument("--numel", type=int, default=100_000_000, help="large tensor (0: skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even on a missed target")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ok = small_tensors(args.small, args.repeats) if args.small else True
    if args.numel:
        large_tensor(args)
    return 0 if ok or args.no_fail else 1


def large_tensor(args: argparse.Namespace) -> None:
    """One large float32 tensor: ours vs naive one-liners."""

    torch.manual_seed(0)
    t = torch.randn(args.numel)
    u = t.clone().mul_(1.01).add_(1e-3)  # "after": a slightly changed copy, no temporaries

    def ours_stats() -> None:
        tensor_stats(t)

    def ours_hist() -> None:
        before_after_histogram(t, u, bins=50)

    def ours() -> None:
        tensor_stats(t)
        before_after_histogram(t, u, bins=50)

    def naive_stats() -> None:
        t.mean(), t.std(), t.min(), t.max(), t.norm(), (t == 0).float().mean()

    def naive_hist() -> None:
        lo = min(float(t.min()), float(u.min()))
        hi = max(float(t.max()), float(u.max()))
        torch.histc(t, 50, lo, hi), torch.histc(u, 50, lo, hi)

    def naive() -> None:
        t.mean(), t.std(), t.min(), t.max(), t.norm(), (t == 0).float().mean(), torch.histc(t)

    rows = [
        ("tensor_stats + before_after_histogram", ours, "naive one-liners + histc(t)", naive),
        ("tensor_stats", ours_stats, "mean/std/min/max/norm/(t==0)", naive_stats),
        ("before_after_histogram", ours_hist, "min/max both + 2x histc", naive_hist),
    ]
    gib = 1024**3
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, os.cpu_count()="
        f"{os.cpu_count()}; tensor: {args.numel:,} float32 ({t.numel() * 4 / gib:.2f} GiB); "
        f"best of {args.repeats}"
    )
    print(
        f"{'':40s} {'ours':>9s} {'naive':>9s} {'ratio':>7s}   {'ours mem':>10s} {'naive mem':>10s}"
    )
    for name, ours_fn, naive_name, naive_fn in rows:
        to, tn = best_time(ours_fn, args.repeats), best_time(naive_fn, args.repeats)
        mo, mn = peak_extra_bytes(ours_fn), peak_extra_bytes(naive_fn)
        print(
            f"{name:40s} {to * 1e3:7.0f}ms {tn * 1e3:7.0f}ms {tn / to:6.2f}x   "
            f"{mo / 2**20:8.1f}MiB {mn / 2**20:8.1f}MiB   (naive: {naive_name})"
        )
    st = tensor_stats(t)
    ref_std = float(t.double().std())
    print(f"check: std {st.std:.9f} vs float64 reference {ref_std:.9f}")


if __name__ == "__main__":
    sys.exit(main())
