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

Targets (ratio of wall-time medians to the plain load, issue 12): ``stats=False`` <= 2.5x,
``stats=True`` <= 4x, ``report.undo()`` <= 2.2x. Any load that can be rolled back must copy what
it overwrites first, so the floor row (about 1.8x) is the least possible; the targets sit just
above it. After each call the model is checked to hold the checkpoint (every way really loaded).

Large scale (``--large``; the default ``auto`` runs it only when the machine has the memory): a
GPT-2-XL-sized layout (48 blocks of width 1600, 50,257-token embedding: 1.56B parameters, 6.2 GB
float32) built in code, loaded from an mmap-ed ``torch.save`` file. The same ratios, plus peak
extra memory of each ``partial_load`` <= touched bytes (the snapshot) + 10% + 256 MB, printed.
``partial_load`` runs with its default ``snapshot="auto"`` (RAM up to half the available memory,
the rest spilled to a temporary file); the table says where each snapshot went.

``compare()`` + ``plan()`` (and opening the file) are NOT in the load timings; they are printed
on their own (median of 3, plus the first call in the process). Peak extra RSS (Linux VmHWM
above the RSS before the call, reset through /proc/self/clear_refs before each timed call, the
call's result kept alive until it is read) is the largest over the rounds.

Usage::

    python benchmarks/bench_load.py             # exit 1 when a target is missed
    python benchmarks/bench_load.py --no-fail   # report only
    python benchmarks/bench_load.py --repeats 9 --no-file --threads 1 --large no
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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _common import (
    Target,
    available_memory_bytes,
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

#: targets: time / plain load_state_dict time (issue 12)
TARGET_NO_STATS = 2.5
TARGET_STATS = 4.0
TARGET_UNDO = 2.2
#: peak extra memory of a partial_load: touched bytes * (1 + this) + MEMORY_SLACK_BYTES
MEMORY_SLACK_FRACTION = 0.10
MEMORY_SLACK_BYTES = 256 * 2**20

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
# GPT-2-XL-sized layout (GPT2Model's key names; Linear instead of GPT-2's Conv1D)


class Attention(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)


class MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = Attention(d)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = MLP(d)


class GPT2Layout(nn.Module):
    """GPT-2 XL's parameter layout: 1.56B parameters, 6.2 GB float32, 580 state-dict keys."""

    def __init__(
        self, vocab: int = 50257, positions: int = 1024, d: int = 1600, layers: int = 48
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(positions, d)
        self.h = nn.ModuleList(Block(d) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)


def build_large(seed: int, **kw: int) -> nn.Module:
    """Materialised without torch's (slow, here pointless) initialisers: uniform values."""
    with torch.device("meta"):
        model = GPT2Layout(**kw)
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.05, 0.05, generator=g)
    return model


def large_bytes(**kw: int) -> int:
    with torch.device("meta"):
        model = GPT2Layout(**kw)
    return sum(p.numel() * p.element_size() for p in model.parameters())


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


def reset_peak() -> int | None:
    """Make VmHWM the current RSS (Linux); returns that RSS in bytes, or None."""
    try:
        _CLEAR_REFS.write_text("5")  # VmHWM := VmRSS
    except OSError:
        return None
    start = _status_kib("VmRSS")
    return None if start is None else start * 1024


def peak_since(start: int | None) -> int | None:
    """Peak RSS above ``start`` (from :func:`reset_peak`) since then, in bytes."""
    peak = _status_kib("VmHWM")
    return None if start is None or peak is None else max(0, peak * 1024 - start)


class Source:
    """One checkpoint source, seen the plain way (a dict) and the sd_widgets way (a plan)."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        sd_plain: OrderedDict,
        open_sdw: Callable[[], object],
        open_plain_seconds: float,
        large: bool = False,
    ) -> None:
        self.name = name
        self.large = large
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
            raise SystemExit(
                f"{name}: the checkpoint does not match the model: {self.cmp.summary()}"
            )

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
    "plain load_state_dict",
    "floor: clone + load_state_dict",
    "partial_load stats=False",
    "partial_load stats=True",
    "report.undo()",
)
WAYS = (PLAIN, FLOOR, NO_STATS, STATS, UNDO)


@dataclass
class Measured:
    """Samples of one source: wall and CPU seconds per way, peak extra RSS, snapshot kinds."""

    wall: dict[str, list[float]] = field(default_factory=lambda: {w: [] for w in WAYS})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {w: [] for w in WAYS})
    peak: dict[str, int] = field(default_factory=dict)
    snapshots: set[str] = field(default_factory=set)

    def add(self, way: str, wall: float, cpu: float, peak: int | None) -> None:
        self.wall[way].append(wall)
        self.cpu[way].append(cpu)
        if peak is not None:
            self.peak[way] = max(self.peak.get(way, 0), peak)


def timed_call(call: Callable[[], object]) -> tuple[object, float, float, int | None]:
    """(result, wall seconds, CPU seconds, peak extra RSS) of one call; freed heap is trimmed
    first so the peak is the call's own."""
    gc.collect()
    _malloc_trim()
    start = reset_peak()
    c0, t0 = time.process_time(), time.perf_counter()
    result = call()
    t1, c1 = time.perf_counter(), time.process_time()
    return result, t1 - t0, c1 - c0, peak_since(start)


def measure(src: Source, repeats: int, warmup: int = 1) -> Measured:
    """One sample per way per round, ways round-robin, after ``warmup`` rounds."""
    out = Measured()
    calls: dict[str, Callable[[], object]] = {
        PLAIN: src.plain,
        FLOOR: src.floor,
        NO_STATS: lambda: src.sdw_load(False),
        STATS: lambda: src.sdw_load(True),
    }
    for round_ in range(repeats + warmup):
        for way, call in calls.items():
            scramble(src.model)
            result, wall, cpu, peak = timed_call(call)
            check_loaded(src.model, src.sd)
            if round_ >= warmup:
                out.add(way, wall, cpu, peak)
            if isinstance(result, sdw.LoadReport):
                out.snapshots.add(result.snapshot)
            if way == NO_STATS:
                assert isinstance(result, sdw.LoadReport)
                _, wall, cpu, peak = timed_call(result.undo)
                if round_ >= warmup:
                    out.add(UNDO, wall, cpu, peak)
            del result
    return out


def touched_bytes(model: nn.Module) -> int:
    seen: dict[int, int] = {}
    for v in model.state_dict(keep_vars=True).values():
        seen[id(v)] = v.numel() * v.element_size()
    return sum(seen.values())


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


def results_table(results: list[tuple[Source, Measured]], targets: list[Target]) -> str:
    headers = [
        "source",
        "way",
        "wall median",
        "wall min",
        "CPU median",
        "vs plain (wall)",
        "min vs min",
        "target",
        "peak extra RSS",
    ]
    rows = []
    for src, m in results:
        base = median(m.wall[PLAIN])
        limit = touched_bytes(src.model) * (1 + MEMORY_SLACK_FRACTION) + MEMORY_SLACK_BYTES
        for way in WAYS:
            t = median(m.wall[way])
            target = {NO_STATS: TARGET_NO_STATS, STATS: TARGET_STATS, UNDO: TARGET_UNDO}.get(way)
            peak = m.peak.get(way)
            rows.append(
                [
                    src.name,
                    way,
                    fmt_seconds(t),
                    fmt_seconds(min(m.wall[way])),
                    fmt_seconds(median(m.cpu[way])),
                    fmt_ratio(t / base),
                    fmt_ratio(min(m.wall[way]) / min(m.wall[PLAIN])),
                    f"<= {target}x" if target else "",
                    fmt_bytes(peak),
                ]
            )
            if target:
                targets.append(
                    Target(
                        f"{src.name}: {way} <= {target}x plain load_state_dict",
                        t / base <= target,
                        f"{fmt_ratio(t / base)} ({fmt_seconds(t)} vs {fmt_seconds(base)}; CPU-time "
                        f"ratio {fmt_ratio(median(m.cpu[way]) / median(m.cpu[PLAIN]))}; fastest "
                        f"vs fastest {fmt_ratio(min(m.wall[way]) / min(m.wall[PLAIN]))})",
                    )
                )
            if src.large and way in (NO_STATS, STATS):
                targets.append(
                    Target(
                        f"{src.name}: {way} peak extra memory <= touched bytes + 10% + 256 MB",
                        None if peak is None else peak <= limit,
                        f"{fmt_bytes(peak)} vs {fmt_bytes(limit)} (touched "
                        f"{fmt_bytes(touched_bytes(src.model))}; snapshot: "
                        f"{', '.join(sorted(m.snapshots))})",
                    )
                )
    return text_table(headers, rows)


def file_source(
    name: str, model: nn.Module, sd: OrderedDict, directory: str, large: bool = False
) -> Source:
    path = Path(directory) / f"{name.replace(' ', '-')}.pt"
    torch.save(sd, path)
    t0 = time.perf_counter()
    mapped = torch.load(path, mmap=True, weights_only=True, map_location="cpu")
    opened = time.perf_counter() - t0
    return Source(name, model, mapped, lambda: sdw.open_checkpoint(path), opened, large=large)


def large_sources(args: argparse.Namespace, directory: str) -> list[Source]:
    """The GPT-2-XL-sized model, when asked for or (auto) when the memory is there: the model,
    its snapshot and the checkpoint's page cache need about 3 x 6.2 GB."""
    size = large_bytes()
    avail = available_memory_bytes()
    need = 3 * size + 2 * 2**30
    if args.large == "no" or (args.large == "auto" and (avail is None or avail < need)):
        print(
            f"large model: skipped (--large {args.large}; {fmt_bytes(avail)} available, "
            f"{fmt_bytes(need)} wanted)"
        )
        return []
    t0 = time.perf_counter()
    model = build_large(seed=1)
    sd = OrderedDict((k, v.detach().add(1)) for k, v in model.state_dict().items())
    src = file_source("GPT-2-XL layout, mmap file", model, sd, directory, large=True)
    del sd
    gc.collect()
    n = sum(p.numel() for p in model.parameters())
    print(
        f"large model: GPT-2-XL layout, {n / 1e9:.2f}B parameters, "
        f"{len(model.state_dict())} keys, {fmt_bytes(size)} float32 (built and saved in "
        f"{fmt_seconds(time.perf_counter() - t0)}; {fmt_bytes(avail)} available)"
    )
    return [src]


# --------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="measured rounds (median reported)")
    ap.add_argument("--no-file", action="store_true", help="skip the mmap-ed .pt file source")
    ap.add_argument("--no-fail", action="store_true", help="exit 0 even when a target is missed")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument(
        "--large",
        choices=("auto", "yes", "no"),
        default="auto",
        help="the 6.2 GB GPT-2-XL-sized model (auto: when the memory is there)",
    )
    ap.add_argument("--large-repeats", type=int, default=3, help="measured rounds, large model")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile 3 x partial_load(stats=False/True) and print the top",
    )
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
    print(
        f"model: ResNet-50, {n_params / 1e6:.1f}M parameters, {len(ckpt_sd)} state-dict "
        f"entries, {fmt_bytes(nbytes)} float32; {args.repeats} rounds after 1 warm-up"
    )

    tmp = tempfile.TemporaryDirectory(prefix="sdw-bench-load-")
    sources = [Source("memory", model, ckpt_sd, lambda: ckpt_sd, 0.0)]
    if not args.no_file:
        sources.append(file_source("mmap file", model, ckpt_sd, tmp.name))
    if args.profile:
        profile(sources[0])
    results = [(src, measure(src, args.repeats)) for src in sources]
    for src in large_sources(args, tmp.name):
        results.append((src, measure(src, args.large_repeats)))
        del src
        gc.collect()

    targets: list[Target] = []
    print("\n" + results_table(results, targets))
    print(
        "\n(medians over the rounds; min vs min: fastest round vs fastest plain round, the ratio "
        "least disturbed by other processes; CPU = process CPU time, all threads; floor = the copy of "
        "the old values any rollback needs, plus load_state_dict; peak extra RSS: VmHWM above "
        "the RSS before the call, result kept alive, freed heap trimmed first, largest over "
        "the rounds)"
    )
    print("\nnot in the load timings (once per source):")
    for src, m in results:
        opening = (
            f"torch.load(mmap=True) {fmt_seconds(src.open_plain_seconds)} (plain way) vs "
            f"sdw.open_checkpoint {fmt_seconds(src.open_seconds)}; "
            if src.name != "memory"
            else ""
        )
        print(
            f"  {src.name}: {opening}compare() {fmt_seconds(src.compare_seconds)} (first call "
            f"in the process {fmt_seconds(src.first_compare_seconds)}), plan() "
            f"{fmt_seconds(src.plan_seconds)}; snapshot: {', '.join(sorted(m.snapshots))}"
        )
    del sources, results
    gc.collect()
    tmp.cleanup()
    print(
        f"\npeak RSS of the process: {fmt_bytes(peak_rss_bytes())} (now "
        f"{fmt_bytes(current_rss_bytes())}); benchmark took "
        f"{fmt_seconds(time.perf_counter() - started)}"
    )
    print(machine_line())
    return report_targets(targets, check=not args.no_fail)


if __name__ == "__main__":
    sys.exit(main())
