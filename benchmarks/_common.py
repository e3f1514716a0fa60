"""Helpers shared by the benchmark scripts: child processes, peak RSS, timing, tables, targets.

The scripts run from a checkout (``python benchmarks/bench_compare.py``); this module is imported
as ``_common`` because the script's own directory is first on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

RESULT_PREFIX = "SDW-BENCH-RESULT "


# --------------------------------------------------------------------------------------------
# memory


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: the high-water mark of this process's
    own address space. ``ru_maxrss`` is not used there because it carries the parent's
    high-water mark across fork/exec — a child started by a parent that once held 5 GB would
    report at least 5 GB whatever it did itself.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def current_rss_bytes() -> int:
    """Resident set size now."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover - psutil is a dev dependency
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def available_memory_bytes() -> int | None:
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:  # pragma: no cover
        return None


def disk_usage_bytes(paths: Sequence[str]) -> tuple[int, int]:
    """(apparent size, bytes actually allocated on disk) of ``paths`` — sparse files differ."""
    apparent = allocated = 0
    for p in paths:
        st = os.stat(p)
        apparent += st.st_size
        allocated += st.st_blocks * 512
    return apparent, allocated


# --------------------------------------------------------------------------------------------
# child processes: each measured side runs in a fresh interpreter so peak RSS is its own


def emit_result(payload: dict) -> None:
    """Print the child's result as one line the parent can find among other output."""
    payload = dict(payload, peak_rss=peak_rss_bytes(), rss_end=current_rss_bytes())
    print(RESULT_PREFIX + json.dumps(payload), flush=True)


def run_child(script: str, args: Sequence[str], timeout: float = 600) -> dict:
    """Run ``python script *args`` and return the payload of its :func:`emit_result` line."""
    cmd = [sys.executable, script, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(
        f"benchmark child failed (exit {proc.returncode}): {' '.join(cmd)}\n"
        f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )


# --------------------------------------------------------------------------------------------
# timing


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time several functions round-robin (warm-up rounds first), so that load from other
    processes on the machine hits all of them alike. Returns name → list of seconds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            out[name].append(timed(fn))
    return out


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


# --------------------------------------------------------------------------------------------
# formatting


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB", "MB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def machine_line() -> str:
    import torch

    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        load = "?"
    return (
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"load average {load}"
    )


# --------------------------------------------------------------------------------------------
# targets


@dataclass
class Target:
    name: str
    passed: bool | None  # None: not measured
    detail: str


def report_targets(targets: Sequence[Target], check: bool) -> int:
    """Print one PASS/FAIL line per target; the exit code (1 only with ``check`` and a miss)."""
    print()
    for t in targets:
        word = "PASS" if t.passed else "FAIL" if t.passed is not None else "SKIP"
        print(f"{word}: {t.name} — {t.detail}")
    missed = [t for t in targets if t.passed is False]
    if missed and check:
        print(f"\n{len(missed)} target(s) missed (--check): exit 1")
        return 1
    return 0
