#!/usr/bin/env python
"""``sdw.partial_load`` of a ResNet-50 state dict vs plain ``model.load_state_dict(sd)``.

The model is a standard bottleneck ResNet-50 (25.6M parameters, 320 state-dict entries with the
BatchNorm buffers) defined below, so torchvision is not needed. The checkpoint is the full state
dict of another ResNet-50 (a different seed, so every value changes), and both ways read the SAME
source:

* ``memory``: an in-memory dict of tensors; the plain way gets the dict, sd_widgets gets the
  dict through ``compare(model, sd).plan()``;
* ``mmap file`` (skipped with ``--no-file``): the dict ``torch.save``-d once; the plain way loads
  it with ``torch.load(path, mmap=True, weights_only=True)``, sd_widgets with
  ``open_checkpoint(path)`` (which does the same ``torch.load``). Opening is done once, outside
  the load timing, for both.

Measured per round, round-robin (so load from other processes on the machine hits all ways
alike), after one warm-up round; every tensor of the model is changed (``+1``) before each call,
so each load really changes every value. Wall-time medians (and minimum, and process CPU time):

* ``plain load_state_dict``: ``model.load_state_dict(sd)`` (strict);
* ``floor: clone + load_state_dict``: a clone of every model tensor, then the plain load — the
  least any load that can be rolled back or undone must do (for reference; no target);
* ``partial_load stats=False``: ``sdw.partial_load(model, plan, stats=False)`` — validate,
  snapshot every touched tensor, load through ``load_state_dict(strict=False)``, verify every
  loaded tensor bit for bit;
* ``partial_load stats=True``: the same plus before/after per-tensor statistics and change
  statistics (what ``report.to_frame()`` shows);
* ``report.undo()``: undo of the ``stats=False`` load (restore every tensor, then check it).

Targets (ratio of wall-time medians to the plain load): <= 1.5x without statistics, <= 3x with.
After each call the model is checked to hold the checkpoint (every way really loaded).

``compare()`` + ``plan()`` (and opening the file) are NOT in the load timings; they are printed
on their own (median of 3, plus the first call in the process). Peak extra RSS per way (Linux
VmHWM, reset through /proc/self/clear_refs) is measured in a separate, untimed call.

Usage::

    python benchmarks/bench_load.py             # exit 1 when a target is missed
    python benchmarks/bench_load.py --no-fail   # report only
    python benchmarks/bench_load.py --repeats 9 --no-file --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from _common import (
    Target,
    current_rss_bytes,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    median,
    peak_rss_bytes,
    report_targets,
    text_table,
)
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sd_widgets as sdw

#: targets: partial_load time / plain load_state_dict time
TARGET_NO_STATS = 1.5
TARGET_STATS = 3.0

# --------------------------------------------------------------------------------------------
# ResNet-50 (torchvision's layout and key names: conv1, bn1, layer1.0.conv1, ..., fc)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50(nn.Module):
    def __init__(self, num_classes: int = 1000, layers: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True), 1):
            stride = 1 if i == 1 else 2
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def build(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = ResNet50()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so loading them changes them
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(seed + 100)
    return model


# --------------------------------------------------------------------------------------------
# measuring

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so the next peak is the call's own."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def peak_extra_bytes(fn: Callable[[], object]) -> int | None:
    """Peak resident memory above the starting level while ``fn`` runs (Linux only); what
    ``fn`` returns is kept alive until the peak was read (a report holds its snapshot)."""
    gc.collect()
    _malloc_trim()
    try:
        _CLEAR_REFS.write_text("5")  # VmHWM := VmRSS
    except OSError:
        return None
    start = _status_kib("VmRSS")
    kept = fn()
    peak = _status_kib("VmHWM")
    del kept
    return None if start is None or peak is None else max(0, peak - start) * 1024


class Source:
    """One checkpoint source, seen the plain way (a dict) and the sd_widgets way (a plan)."""

    def __init__(self, name: str, model: nn.Module, sd_plain: OrderedDict,
                 open_sdw: Callable[[], object], open_plain_seconds: float) -> None:
        self.name = name
        self.model = model
        self.sd = sd_plain
        self.open_plain_seconds = open_plain_seconds
        t0 = time.perf_counter()
        src = open_sdw()
        self.open_seconds = time.perf_counter() - t0
        compares, plans = [], []
        for _ in range(3):  # the first compare() in a process also pays one-off imports
            t0 = time.perf_counter()
            self.cmp = sdw.compare(model, src)
            t1 = time.perf_counter()
            self.plan = self.cmp.plan()
            compares.append(t1 - t0)
            plans.append(time.perf_counter() - t1)
        self.compare_seconds, self.plan_seconds = median(compares), median(plans)
        self.first_compare_seconds = compares[0]
        if self.cmp.summary()["match"] != len(self.cmp) or len(self.plan) != len(sd_plain):
            raise SystemExit(f"{name}: the checkpoint does not match the model: "
                             f"{self.cmp.summary()}")

    # the measured operations ------------------------------------------------------------------
    def plain(self) -> None:
        self.model.load_state_dict(self.sd)

    def floor(self) -> list[torch.Tensor]:
        """What any rollback-able in-place load must at least do: copy the old values once."""
        keep = [v.detach().clone() for v in self.model.state_dict().values()]
        self.model.load_state_dict(self.sd)
        return keep

    def sdw_load(self, stats: bool) -> sdw.LoadReport:
        return sdw.partial_load(self.model, self.plan, stats=stats)


def check_loaded(model: nn.Module, sd: OrderedDict) -> None:
    """Every tensor of the model equals the checkpoint's (each way really loaded)."""
    live = model.state_dict()
    bad = [k for k, v in sd.items() if not torch.equal(live[k], v)]
    if bad:
        raise SystemExit(f"model does not hold the checkpoint after loading: {bad[:3]}")


def scramble(model: nn.Module) -> None:
    """Change every tensor, so that the next load really changes values (outside timings)."""
    with torch.no_grad():
        for v in model.state_dict().values():
            v.add_(1)


PLAIN, FLOOR, NO_STATS, STATS, UNDO = (
    "plain load_state_dict", "floor: clone + load_state_dict", "partial_load stats=False",
    "partial_load stats=True", "report.undo()")
WAYS = (PLAIN, FLOOR, NO_STATS, STATS, UNDO)


def measure(src: Source, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall seconds, process CPU seconds) per way, one sample per round, ways round-robin."""
    wall: dict[str, list[float]] = {w: [] for w in WAYS}
    cpu: dict[str, list[float]] = {w: [] for w in WAYS}
    calls: dict[str, Callable[[], object]] = {
        PLAIN: src.plain, FLOOR: src.floor, NO_STATS: lambda: src.sdw_load(False),
        STATS: lambda: src.sdw_load(True),
    }
    for round_ in range(repeats + 1):  # round 0 is the warm-up
        for way, call in calls.items():
            scramble(src.model)
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            result = call()
            t1, c1 = time.perf_counter(), time.process_time()
            check_loaded(src.model, src.sd)
            if round_:
                wall[way].append(t1 - t0)
                cpu[way].append(c1 - c0)
            if way == NO_STATS:
                assert isinstance(result, sdw.LoadReport)
                c0, t0 = time.process_time(), time.perf_counter()
                result.undo()
                t1, c1 = time.perf_counter(), time.process_time()
                if round_:
                    wall[UNDO].append(t1 - t0)
                    cpu[UNDO].append(c1 - c0)
            del result
    return wall, cpu


def memory(src: Source) -> dict[str, int | None]:
    return {
        PLAIN: peak_extra_bytes(src.plain),
        FLOOR: peak_extra_bytes(src.floor),
        NO_STATS: peak_extra_bytes(lambda: src.sdw_load(False)),
        STATS: peak_extra_bytes(lambda: src.sdw_load(True)),
    }


def profile(src: Source) -> None:
    import cProfile
    import pstats

    for stats in (False, True):
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(3):
            src.sdw_load(stats)
        prof.disable()
        print(f"\n--- cProfile: 3 x partial_load(stats={stats}), by own time ---")
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


# --------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="measured rounds (median reported)")
    ap.add_argument("--no-file", action="store_true", help="skip the mmap-ed .pt file source")
    ap.add_argument("--no-fail", action="store_true", help="exit 0 even when a target is missed")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile 3 x partial_load(stats=False/True) and print the top")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"bench_load: {machine_line()}")

    model = build(seed=1)
    source_model = build(seed=0)
    # the checkpoint: standalone copies, with _metadata, as model.state_dict() is usually saved
    ckpt_sd = OrderedDict((k, v.detach().clone()) for k, v in source_model.state_dict().items())
    ckpt_sd._metadata = source_model.state_dict()._metadata  # type: ignore[attr-defined]
    del source_model
    n_params = sum(p.numel() for p in model.parameters())
    nbytes = sum(v.nbytes for v in ckpt_sd.values())
    print(f"model: ResNet-50, {n_params / 1e6:.1f}M parameters, {len(ckpt_sd)} state-dict "
          f"entries, {fmt_bytes(nbytes)} float32; {args.repeats} rounds after 1 warm-up")

    sources = [Source("memory", model, ckpt_sd, lambda: ckpt_sd, 0.0)]
    tmp = None
    if not args.no_file:
        tmp = tempfile.TemporaryDirectory(prefix="sdw-bench-load-")
        path = Path(tmp.name) / "resnet50.pt"
        torch.save(ckpt_sd, path)
        t0 = time.perf_counter()
        mapped = torch.load(path, mmap=True, weights_only=True, map_location="cpu")
        opened = time.perf_counter() - t0
        sources.append(Source("mmap file", model, mapped, lambda: sdw.open_checkpoint(path),
                              opened))
    if args.profile:
        profile(sources[0])

    results = []
    for src in sources:
        wall, cpu = measure(src, args.repeats)
        results.append((src, wall, cpu, memory(src)))

    headers = ["source", "way", "wall median", "wall min", "CPU median", "vs plain (wall)",
               "target", "peak extra RSS"]
    rows = []
    targets = []
    for src, wall, cpu, mem in results:
        base = median(wall[PLAIN])
        for way in WAYS:
            t = median(wall[way])
            target = {NO_STATS: TARGET_NO_STATS, STATS: TARGET_STATS}.get(way)
            rows.append([src.name, way, fmt_seconds(t), fmt_seconds(min(wall[way])),
                         fmt_seconds(median(cpu[way])), fmt_ratio(t / base),
                         f"<= {target}x" if target else "",
                         fmt_bytes(mem[way]) if way in mem else ""])
            if target:
                targets.append(Target(
                    f"{src.name}: {way} <= {target}x plain load_state_dict", t / base <= target,
                    f"{fmt_ratio(t / base)} ({fmt_seconds(t)} vs {fmt_seconds(base)}; CPU-time "
                    f"ratio {fmt_ratio(median(cpu[way]) / median(cpu[PLAIN]))})"))
    print("\n" + text_table(headers, rows))
    print("\n(medians over the rounds; CPU = process CPU time, all threads; floor = the copy of "
          "the old values any rollback needs, plus load_state_dict; peak extra RSS: VmHWM above "
          "the RSS before the call, report kept alive, freed heap trimmed first)")
    print("\nnot in the load timings (once per source):")
    for src, *_ in results:
        opening = (f"torch.load(mmap=True) {fmt_seconds(src.open_plain_seconds)} (plain way) vs "
                   f"sdw.open_checkpoint {fmt_seconds(src.open_seconds)}; "
                   if src.name != "memory" else "")
        print(f"  {src.name}: {opening}compare() {fmt_seconds(src.compare_seconds)} (first call "
              f"in the process {fmt_seconds(src.first_compare_seconds)}), plan() "
              f"{fmt_seconds(src.plan_seconds)}")
    del sources, results
    if tmp is not None:
        gc.collect()
        tmp.cleanup()
    print(f"\npeak RSS of the process: {fmt_bytes(peak_rss_bytes())} (now "
          f"{fmt_bytes(current_rss_bytes())}); benchmark took "
          f"{fmt_seconds(time.perf_counter() - started)}")
    print(machine_line())
    return report_targets(targets, check=not args.no_fail)


if __name__ == "__main__":
    sys.exit(main())
