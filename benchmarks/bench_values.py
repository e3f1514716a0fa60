"""compare_values: time and memory of a value comparison against the floor of reading the bytes.

Targets (issue 18):

* two GPT-2-XL-sized float32 safetensors files (1.56B parameters each, 6.2 GB each): comparing
  them takes at most 2x the time of reading every byte of both files once (the floor, measured
  in the same run, in the same page-cache state), and the extra anonymous memory (RssAnon,
  sampled every 5 ms) stays under 1 GB;
* 50,000 small tensors (two safetensors files, one tensor in three changed): open, compare keys
  and compare values in at most 3 s in all.

The large files are written to ``--dir`` (default: the system's temporary directory) tensor by
tensor (never a whole state dict in memory) and deleted afterwards; they need 12.5 GB of disk.
``--large no`` skips them.

    python benchmarks/bench_values.py                 # both cases
    python benchmarks/bench_values.py --large no      # the 50,000-tensor case only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import torch
from _common import Target, fmt_bytes, fmt_ratio, fmt_seconds, machine_line, report_targets

import sd_widgets as sdw

GPT2_XL = {"vocab": 50257, "ctx": 1024, "d": 1600, "layers": 48}


def gpt2_xl_layout() -> Iterator[tuple[str, tuple[int, ...]]]:
    """Keys and shapes of GPT-2 XL's state dict (transformers' names, Conv1D layout)."""
    d, g = GPT2_XL["d"], GPT2_XL
    yield "wte.weight", (g["vocab"], d)
    yield "wpe.weight", (g["ctx"], d)
    for i in range(g["layers"]):
        p = f"h.{i}."
        yield p + "ln_1.weight", (d,)
        yield p + "ln_1.bias", (d,)
        yield p + "attn.c_attn.weight", (d, 3 * d)
        yield p + "attn.c_attn.bias", (3 * d,)
        yield p + "attn.c_proj.weight", (d, d)
        yield p + "attn.c_proj.bias", (d,)
        yield p + "ln_2.weight", (d,)
        yield p + "ln_2.bias", (d,)
        yield p + "mlp.c_fc.weight", (d, 4 * d)
        yield p + "mlp.c_fc.bias", (4 * d,)
        yield p + "mlp.c_proj.weight", (4 * d, d)
        yield p + "mlp.c_proj.bias", (d,)
    yield "ln_f.weight", (d,)
    yield "ln_f.bias", (d,)


def write_safetensors(path: str, layout: list[tuple[str, tuple[int, ...]]], tuned: bool) -> None:
    """A float32 safetensors file written tensor by tensor (header first, then the data).

    ``tuned``: the "fine-tuned" twin: every tensor but the first layer's gets small noise, so
    the comparison finds both identical and changed tensors (the identical ones still cost a
    full read and a byte comparison).
    """
    header, offset = {}, 0
    for key, shape in layout:
        n = 4
        for s in shape:
            n *= s
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for i, (key, shape) in enumerate(layout):
            gen = torch.Generator().manual_seed(i)
            t = torch.randn(shape, generator=gen).mul_(0.02)
            if tuned and not key.startswith("h.0."):
                t.add_(torch.randn(shape, generator=gen), alpha=1e-4)
            f.write(t.numpy().tobytes())
            del t


def read_floor(paths: list[str], block: int = 16 << 20) -> float:
    """Seconds to read every byte of ``paths`` once, into one reused buffer."""
    buf = bytearray(block)
    view = memoryview(buf)
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(view):
                pass
    return time.perf_counter() - t0


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class AnonPeak:
    """Samples RssAnon every 5 ms while running; ``extra`` is its peak above the start."""

    def __enter__(self) -> AnonPeak:
        self.start = rss_anon()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_anon())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon())

    @property
    def extra(self) -> int:
        return self.peak - self.start


def large_case(directory: str) -> list[Target]:
    layout = list(gpt2_xl_layout())
    numel = sum(torch.Size(s).numel() for _, s in layout)
    need = 2 * 4 * numel + (1 << 30)
    free = shutil.disk_usage(directory).free
    if free < need:
        return [
            Target(
                "GPT-2-XL pair",
                None,
                f"needs {fmt_bytes(need)} free in {directory}, has {fmt_bytes(free)}",
            )
        ]
    paths = [os.path.join(directory, f"sdw-bench-values-{n}.safetensors") for n in "ab"]
    try:
        t0 = time.perf_counter()
        for path, tuned in zip(paths, (False, True), strict=True):
            write_safetensors(path, layout, tuned)
        print(
            f"wrote 2 x {fmt_bytes(4 * numel)} ({numel / 1e9:.3f}B parameters each, "
            f"{len(layout)} tensors) in {fmt_seconds(time.perf_counter() - t0)}"
        )
        floor_before = read_floor(paths)
        with AnonPeak() as mem:
            t0 = time.perf_counter()
            vc = sdw.compare_values(paths[0], paths[1])
            summary = vc.summary()
            took = time.perf_counter() - t0
        floor_after = read_floor(paths)
        floor = min(floor_before, floor_after)
        ratio = took / floor
        print(
            f"floor (read both files once): {fmt_seconds(floor_before)} before, "
            f"{fmt_seconds(floor_after)} after; compare_values: {fmt_seconds(took)} "
            f"= {fmt_ratio(ratio)} the floor; extra anonymous memory {fmt_bytes(mem.extra)}; "
            f"{summary}"
        )
        expected_identical = sum(1 for k, _ in layout if k.startswith("h.0."))
        assert summary["identical"] == expected_identical, summary
        return [
            Target(
                "GPT-2-XL pair: time <= 2x reading every byte once",
                ratio <= 2.0,
                f"{fmt_seconds(took)} vs floor {fmt_seconds(floor)} = {fmt_ratio(ratio)}",
            ),
            Target(
                "GPT-2-XL pair: extra anonymous memory < 1 GB",
                mem.extra < 1e9,
                fmt_bytes(mem.extra),
            ),
        ]
    finally:
        for p in paths:
            if os.path.exists(p):
                os.remove(p)


def small_case(directory: str, n: int = 50_000) -> list[Target]:
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    a = {
        f"blocks.{i // 10}.m{i % 10}.weight": torch.randn(16 + i % 48, generator=gen)
        for i in range(n)
    }
    b = {k: (v + 1e-3 if i % 3 == 0 else v.clone()) for i, (k, v) in enumerate(a.items())}
    paths = [os.path.join(directory, f"sdw-bench-values-small-{x}.safetensors") for x in "ab"]
    save_file(a, paths[0])
    save_file(b, paths[1])
    del a, b
    try:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            summary = sdw.compare_values(paths[0], paths[1]).summary()
            times.append(time.perf_counter() - t0)
        assert summary["changed"] == (n + 2) // 3, summary
        best = min(times)
        print(
            f"{n:,} small tensors: open + compare + values "
            f"{', '.join(fmt_seconds(t) for t in times)} (best {fmt_seconds(best)}); {summary}"
        )
        return [Target(f"{n:,} small tensors in <= 3 s", best <= 3.0, fmt_seconds(best))]
    finally:
        for p in paths:
            os.remove(p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", choices=("yes", "no"), default="yes")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    print(machine_line())
    # the large case first: its memory baseline must not include the small case's freed heap
    targets = large_case(args.dir) if args.large == "yes" else []
    targets += small_case(args.dir)
    return report_targets(targets, args.check)


if __name__ == "__main__":
    sys.exit(main())
