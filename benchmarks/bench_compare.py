#!/usr/bin/env python
"""``sdw.compare`` on Llama-7B and Llama-70B layouts vs the plain way, without the RAM.

For each layout the script writes a sharded safetensors checkpoint exactly as
``save_pretrained`` lays it out (``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``)
with real headers and real ``data_offsets``, but the tensor data is a hole: every shard is a sparse
file of the right size (``truncate``), so 138 GB of 70B shards take a few hundred KB of disk. The
model side is a small Llama-like ``nn.Module`` built under ``torch.device("meta")``.

Each side runs in a fresh interpreter (its own peak RSS, from ``VmHWM``):

* ``sd_widgets``: ``sdw.compare(meta_model, "model.safetensors.index.json")`` — headers only;
* plain, safetensors: ``safetensors.torch.load_file`` for every shard into one dict, then
  compare keys and shapes against ``meta_model.state_dict()``. ``load_file`` maps the file and
  its tensors stay unread until touched, so its memory stays low (and so would it on real
  data): the memory ratio against it is close to 1x, which the report says plainly;
* plain, ``.bin``: the same layout as ``pytorch_model-0000k-of-0000n.bin`` shards (written with
  ``torch.save``, real bytes on disk, one shard at a time) loaded with ``torch.load`` — which
  reads every tensor into memory — then the same comparison; ``sdw.compare`` on the matching
  ``pytorch_model.bin.index.json`` is measured next to it. The memory target is judged here.

Neither plain way is run for 70B (it would need the whole checkpoint in memory).

Usage::

    python benchmarks/bench_compare.py            # 7B + 70B (about a minute)
    python benchmarks/bench_compare.py --check    # exit 1 when a target is missed
    python benchmarks/bench_compare.py --smoke    # tiny layouts, for tests
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import (
    Target,
    available_memory_bytes,
    current_rss_bytes,
    disk_usage_bytes,
    emit_result,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    markdown_table,
    median,
    report_targets,
    run_child,
    text_table,
    timed,
)
from torch import nn

GB = 10**9

# --------------------------------------------------------------------------------------------
# layouts


@dataclass(frozen=True)
class Layout:
    name: str
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    dtype: torch.dtype
    #: save_pretrained's max_shard_size (transformers' default is 5 GB)
    shard_bytes: int = 5 * GB
    #: run the plain way (load everything) — never for layouts that cannot fit in RAM
    run_plain: bool = True

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Key → shape in ``state_dict`` / Hugging Face order."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (self.vocab, h))]
        for n in range(self.layers):
            p = f"model.layers.{n}."
            out += [
                (p + "self_attn.q_proj.weight", (h, h)),
                (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)),
                (p + "self_attn.o_proj.weight", (h, h)),
                (p + "mlp.gate_proj.weight", (i, h)),
                (p + "mlp.up_proj.weight", (i, h)),
                (p + "mlp.down_proj.weight", (h, i)),
                (p + "input_layernorm.weight", (h,)),
                (p + "post_attention_layernorm.weight", (h,)),
            ]
        out += [("model.norm.weight", (h,)), ("lm_head.weight", (self.vocab, h))]
        return out

    @property
    def numel(self) -> int:
        return sum(_numel(s) for _, s in self.shapes())

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


LAYOUTS = {
    "7B": Layout("7B", 4096, 32, 11008, 32000, 32, 32, torch.float16),
    "70B": Layout("70B", 8192, 80, 28672, 32000, 64, 8, torch.bfloat16, run_plain=False),
    # --smoke: same code paths, kilobytes of data (the second one stands in for 70B: GQA, bf16,
    # many shards, plain way not run)
    "tiny": Layout("tiny", 64, 2, 172, 512, 4, 4, torch.float16, shard_bytes=40_000),
    "tiny-gqa": Layout(
        "tiny-gqa", 128, 3, 344, 512, 8, 2, torch.bfloat16, shard_bytes=60_000, run_plain=False
    ),
}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# --------------------------------------------------------------------------------------------
# the model: Llama-like, built on the meta device


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        # a meta model has no values to initialise; and ``normal_`` on the meta device imports
        # sympy & co. through torch._refs (~70 MB RSS, ~1 s) — a cost of building the model
        # that both measured sides would pay, not a cost of comparing
        pass


class RMSNorm(nn.Module):
    def __init__(self, dim: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype))


class Attention(nn.Module):
    def __init__(self, L: Layout) -> None:
        super().__init__()
        h, kv, dt = L.hidden, L.kv_dim, L.dtype
        self.q_proj = nn.Linear(h, h, bias=False, dtype=dt)
        self.k_proj = nn.Linear(h, kv, bias=False, dtype=dt)
        self.v_proj = nn.Linear(h, kv, bias=False, dtype=dt)
        self.o_proj = nn.Linear(h, h, bias=False, dtype=dt)


class MLP(nn.Module):
    def __init__(self, L: Layout) -> None:
        super().__init__()
        h, i, dt = L.hidden, L.intermediate, L.dtype
        self.gate_proj = nn.Linear(h, i, bias=False, dtype=dt)
        self.up_proj = nn.Linear(h, i, bias=False, dtype=dt)
        self.down_proj = nn.Linear(i, h, bias=False, dtype=dt)


class DecoderLayer(nn.Module):
    def __init__(self, L: Layout) -> None:
        super().__init__()
        self.self_attn = Attention(L)
        self.mlp = MLP(L)
        self.input_layernorm = RMSNorm(L.hidden, L.dtype)
        self.post_attention_layernorm = RMSNorm(L.hidden, L.dtype)


class LlamaModel(nn.Module):
    def __init__(self, L: Layout) -> None:
        super().__init__()
        self.embed_tokens = Embedding(L.vocab, L.hidden, dtype=L.dtype)
        self.layers = nn.ModuleList(DecoderLayer(L) for _ in range(L.layers))
        self.norm = RMSNorm(L.hidden, L.dtype)


class LlamaForCausalLM(nn.Module):
    def __init__(self, L: Layout) -> None:
        super().__init__()
        self.model = LlamaModel(L)
        self.lm_head = nn.Linear(L.hidden, L.vocab, bias=False, dtype=L.dtype)


def build_meta_model(L: Layout) -> nn.Module:
    with torch.device("meta"):
        return LlamaForCausalLM(L)


# --------------------------------------------------------------------------------------------
# writing the sparse sharded checkpoint

_ST_DTYPE = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}


def shard_groups(L: Layout) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Keys and shapes split into shards of at most ``L.shard_bytes``, as save_pretrained does."""
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for key, shape in L.shapes():
        nbytes = _numel(shape) * L.dtype.itemsize
        if groups[-1] and size + nbytes > L.shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((key, shape))
        size += nbytes
    return groups


def write_sparse_checkpoint(L: Layout, directory: Path) -> tuple[Path, list[Path]]:
    """Shards with real headers and hole-only data, plus the index. Returns (index, shards)."""
    directory.mkdir(parents=True, exist_ok=True)
    groups = shard_groups(L)
    weight_map: dict[str, str] = {}
    shards: list[Path] = []
    for n, group in enumerate(groups, 1):
        name = f"model-{n:05d}-of-{len(groups):05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for key, shape in group:
            end = offset + _numel(shape) * L.dtype.itemsize
            header[key] = {
                "dtype": _ST_DTYPE[L.dtype],
                "shape": list(shape),
                "data_offsets": [offset, end],
            }
            offset = end
            weight_map[key] = name
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes
        path = directory / name
        with open(path, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            f.truncate(8 + len(raw) + offset)  # the data: a hole, no disk blocks
        _, allocated = disk_usage_bytes([str(path)])
        if allocated > 64 * 2**20:
            raise SystemExit(
                f"{directory} does not keep sparse files ({path.name} allocated "
                f"{fmt_bytes(allocated)}); pass --workdir on another file system"
            )
        shards.append(path)
    index = directory / "model.safetensors.index.json"
    index.write_text(
        json.dumps({"metadata": {"total_size": L.nbytes}, "weight_map": weight_map}, indent=2)
    )
    return index, shards


def write_bin_checkpoint(L: Layout, directory: Path) -> tuple[Path, list[Path]]:
    """``pytorch_model-0000k-of-0000n.bin`` shards (torch.save of zero tensors: real bytes on
    disk, one shard in memory at a time — calloc'd zeros cost no RAM until written) + index."""
    directory.mkdir(parents=True, exist_ok=True)
    groups = shard_groups(L)
    weight_map: dict[str, str] = {}
    shards: list[Path] = []
    for n, group in enumerate(groups, 1):
        name = f"pytorch_model-{n:05d}-of-{len(groups):05d}.bin"
        shard = {key: torch.zeros(shape, dtype=L.dtype) for key, shape in group}
        torch.save(shard, directory / name)
        del shard
        weight_map.update(dict.fromkeys((key for key, _ in group), name))
        shards.append(directory / name)
    index = directory / "pytorch_model.bin.index.json"
    index.write_text(
        json.dumps({"metadata": {"total_size": L.nbytes}, "weight_map": weight_map}, indent=2)
    )
    return index, shards


# --------------------------------------------------------------------------------------------
# children: one measured side each


def child_sdw(L: Layout, index: Path, repeats: int) -> None:
    import sd_widgets as sdw

    t0 = time.perf_counter()
    model = build_meta_model(L)
    build = time.perf_counter() - t0
    gc.collect()
    rss_before = current_rss_bytes()
    t0 = time.perf_counter()
    cmp = sdw.compare(model, index)
    first = time.perf_counter() - t0
    summary = cmp.summary()
    n = len(cmp)
    if summary["match"] != n:
        raise SystemExit(f"layout/model disagree: {summary}")
    del cmp
    warm = [timed(lambda: sdw.compare(model, index)) for _ in range(max(0, repeats - 1))]
    emit_result(
        {
            "seconds": first,
            "warm": median(warm) if warm else None,
            "build": build,
            "rss_before": rss_before,
            "keys": n,
            "problems": 0,
        }
    )


def child_plain(L: Layout, index: Path) -> None:
    from safetensors.torch import load_file

    def read(path: Path) -> dict[str, torch.Tensor]:
        if path.suffix == ".bin":  # what users do with .bin shards: everything into memory
            return torch.load(path, map_location="cpu", weights_only=True)
        return load_file(path)

    t0 = time.perf_counter()
    model = build_meta_model(L)
    build = time.perf_counter() - t0
    gc.collect()
    rss_before = current_rss_bytes()
    t0 = time.perf_counter()
    weight_map = json.loads(index.read_text())["weight_map"]
    sd: dict[str, torch.Tensor] = {}
    for shard in dict.fromkeys(weight_map.values()):
        sd.update(read(index.parent / shard))
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [k for k, v in expected.items() if k in sd and sd[k].shape != v.shape]
    seconds = time.perf_counter() - t0
    problems = len(missing) + len(unexpected) + len(mismatched)
    loaded = sum(t.nbytes for t in sd.values())
    emit_result(
        {
            "seconds": seconds,
            "warm": None,
            "build": build,
            "rss_before": rss_before,
            "keys": len(sd),
            "problems": problems,
            "loaded_bytes": loaded,
        }
    )


# --------------------------------------------------------------------------------------------
# the parent: write, measure, report


@dataclass
class Measured:
    layout: Layout
    shards: int
    apparent: int
    allocated: int
    sdw: dict
    plain: dict | None
    plain_reason: str | None
    #: the .bin layout: sdw.compare on its index, and torch.load of every shard
    bin_sdw: dict | None = None
    bin_plain: dict | None = None


def measure_layout(L: Layout, root: Path, repeats: int) -> Measured:
    directory = root / L.name
    t0 = time.perf_counter()
    index, shards = write_sparse_checkpoint(L, directory)
    apparent, allocated = disk_usage_bytes([str(p) for p in [*shards, index]])
    print(
        f"\n{L.name}: {L.numel / 1e9:.2f}B parameters ({L.dtype}), {len(L.shapes())} tensors, "
        f"{len(shards)} shards written in {fmt_seconds(time.perf_counter() - t0)}: "
        f"{fmt_bytes(apparent)} apparent, {fmt_bytes(allocated)} on disk (sparse)"
    )
    script = str(Path(__file__).resolve())
    common = ["--layout", L.name, "--index", str(index)]
    try:
        sdw = run_child(script, ["--child", "sdw", *common, "--repeats", str(repeats)])
        plain = None
        reason = None
        avail = available_memory_bytes()
        if not L.run_plain:
            reason = f"not run: needs ~{fmt_bytes(L.nbytes)} of RAM for the tensors alone"
        elif avail is not None and avail < 1.3 * L.nbytes + 2 * GB:
            reason = (
                f"not run: needs ~{fmt_bytes(L.nbytes)} of RAM, only {fmt_bytes(avail)} available"
            )
        else:
            print(
                f"  plain way: loading {fmt_bytes(L.nbytes)} with safetensors.torch.load_file ...",
                flush=True,
            )
            plain = run_child(script, ["--child", "plain", *common], timeout=900)
        if reason:
            print(f"  plain way {reason}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    bin_sdw = bin_plain = None
    if plain is not None:
        bin_dir = root / f"{L.name}-bin"
        try:
            t0 = time.perf_counter()
            bin_index, bin_shards = write_bin_checkpoint(L, bin_dir)
            print(
                f"  .bin shards: {len(bin_shards)} written with torch.save in "
                f"{fmt_seconds(time.perf_counter() - t0)} ({fmt_bytes(L.nbytes)} on disk)",
                flush=True,
            )
            bin_common = ["--layout", L.name, "--index", str(bin_index)]
            bin_sdw = run_child(script, ["--child", "sdw", *bin_common, "--repeats", str(repeats)])
            print(f"  plain way: loading {fmt_bytes(L.nbytes)} with torch.load ...", flush=True)
            bin_plain = run_child(script, ["--child", "plain", *bin_common], timeout=900)
        finally:
            shutil.rmtree(bin_dir, ignore_errors=True)
    return Measured(L, len(shards), apparent, allocated, sdw, plain, reason, bin_sdw, bin_plain)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def report(results: list[Measured], check: bool) -> int:
    headers = ["layout", "checkpoint", "way", "time", "peak RSS", "RSS growth", "keys"]
    rows = []

    def row(name: str, checkpoint: str, way: str, r: dict) -> list[str]:
        growth = r["peak_rss"] - r["rss_before"]
        return [
            name,
            checkpoint,
            way,
            fmt_seconds(r["seconds"]),
            fmt_bytes(r["peak_rss"]),
            fmt_bytes(growth),
            str(r["keys"]),
        ]

    for m in results:
        L = m.layout
        ck = f"{fmt_bytes(L.nbytes)}, {m.shards} shards"
        rows.append(row(L.name, ck, "sdw.compare", m.sdw))
        if m.plain is not None:
            rows.append(row(L.name, ck, "load_file + compare", m.plain))
        else:
            rows.append(
                [L.name, ck, "load_file + compare", m.plain_reason or "not run", "", "", ""]
            )
        for way, r in (("sdw.compare (.bin)", m.bin_sdw), ("torch.load + compare", m.bin_plain)):
            if r is not None:
                rows.append(row(L.name, ck.replace("shards", ".bin shards"), way, r))
    print("\n" + text_table(headers, rows))
    print(
        "\n(time: first call in a fresh process, model already built; peak RSS: VmHWM of "
        "the whole process, Python + torch included; RSS growth: peak minus RSS just before "
        "the call)"
    )
    for m in results:
        if m.sdw.get("warm") is not None:
            print(
                f"{m.layout.name}: sdw.compare again in the same process: "
                f"{fmt_seconds(m.sdw['warm'])} (median); meta model built in "
                f"{fmt_seconds(m.sdw['build'])}"
            )
    print()
    for m in results:
        if m.plain is None:
            print(
                f"ratio {m.layout.name}: plain way {m.plain_reason}; sdw.compare "
                f"{fmt_seconds(m.sdw['seconds'])}, {fmt_bytes(m.sdw['peak_rss'])} peak RSS"
            )
            continue
        tr = _ratio(m.plain["seconds"], m.sdw["seconds"])
        mr = _ratio(m.plain["peak_rss"], m.sdw["peak_rss"])
        print(
            f"ratio {m.layout.name}: sdw.compare is {fmt_ratio(tr)} faster and uses "
            f"{fmt_ratio(mr)} less peak memory than load_file + compare (load_file maps the "
            "shards lazily, so its memory stays low until tensors are touched)"
        )
        if m.bin_sdw is not None and m.bin_plain is not None:
            tr = _ratio(m.bin_plain["seconds"], m.bin_sdw["seconds"])
            mr = _ratio(m.bin_plain["peak_rss"], m.bin_sdw["peak_rss"])
            print(
                f"ratio {m.layout.name} (.bin): sdw.compare is {fmt_ratio(tr)} faster and uses "
                f"{fmt_ratio(mr)} less peak memory than torch.load + compare"
            )

    small, big = results[0], results[-1]
    targets = [
        Target(
            f"{big.layout.name} compare < 0.5 s",
            big.sdw["seconds"] < 0.5,
            fmt_seconds(big.sdw["seconds"]),
        ),
        Target(
            f"{big.layout.name} compare peak RSS < 300 MB",
            big.sdw["peak_rss"] < 300e6,
            fmt_bytes(big.sdw["peak_rss"]),
        ),
    ]
    if small.plain is not None and small.bin_plain is not None and small.bin_sdw is not None:
        tr = _ratio(small.plain["seconds"], small.sdw["seconds"]) or 0.0
        btr = _ratio(small.bin_plain["seconds"], small.bin_sdw["seconds"]) or 0.0
        bmr = _ratio(small.bin_plain["peak_rss"], small.bin_sdw["peak_rss"]) or 0.0
        targets += [
            Target(
                f"{small.layout.name} compare >= 50x faster than load_file + compare",
                tr >= 50,
                fmt_ratio(tr),
            ),
            Target(
                f"{small.layout.name} compare >= 50x faster than torch.load + compare (.bin)",
                btr >= 50,
                fmt_ratio(btr),
            ),
            Target(
                f"{small.layout.name} compare >= 40x less peak memory than torch.load + "
                "compare (.bin)",
                bmr >= 40,
                fmt_ratio(bmr),
            ),
        ]
    else:
        targets.append(Target(f"{small.layout.name} ratios", None, small.plain_reason or ""))
    code = report_targets(targets, check)

    print("\nMarkdown (README):\n")
    md_rows = []
    for m in results:
        L = m.layout
        ck = f"{L.name} ({fmt_bytes(L.nbytes)}, {m.shards} shards)"
        how = "`load_file` every shard, compare keys/shapes"
        md_rows += _markdown_rows(ck, how, m.sdw, m.plain, L.nbytes)
        if m.bin_sdw is not None and m.bin_plain is not None:
            bck = f"{L.name} ({fmt_bytes(L.nbytes)}, {m.shards} .bin shards)"
            how = "`torch.load` every shard, compare keys/shapes"
            md_rows += _markdown_rows(bck, how, m.bin_sdw, m.bin_plain, L.nbytes)
    print(markdown_table(["checkpoint", "how", "time", "peak RSS"], md_rows))
    print(f"\n{machine_line()}")
    return code


def _markdown_rows(ck: str, how: str, s: dict, p: dict | None, nbytes: int) -> list[list[str]]:
    """README rows for one checkpoint: sd_widgets, the plain way (or why not run), the ratios."""
    rows = [
        [
            ck,
            "`sdw.compare(meta_model, index)`",
            fmt_seconds(s["seconds"]),
            fmt_bytes(s["peak_rss"]),
        ]
    ]
    if p is None:
        return [*rows, [ck, how, "not run", f"needs ~{fmt_bytes(nbytes)}"]]
    rows.append([ck, how, fmt_seconds(p["seconds"]), fmt_bytes(p["peak_rss"])])
    rows.append(
        [
            ck,
            "ratio",
            fmt_ratio(_ratio(p["seconds"], s["seconds"])) + " faster",
            fmt_ratio(_ratio(p["peak_rss"], s["peak_rss"])) + " less",
        ]
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny layouts (seconds), for tests")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--workdir", help="where to write the sparse checkpoints (default: a tmp dir)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="sdw.compare calls per child (first one reported; default 5, smoke 1)",
    )
    ap.add_argument("--child", choices=["sdw", "plain"], help=argparse.SUPPRESS)
    ap.add_argument("--layout", help=argparse.SUPPRESS)
    ap.add_argument("--index", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        L = LAYOUTS[args.layout]
        if args.child == "sdw":
            child_sdw(L, Path(args.index), args.repeats or 1)
        else:
            child_plain(L, Path(args.index))
        return 0

    layouts = (
        [LAYOUTS["tiny"], LAYOUTS["tiny-gqa"]] if args.smoke else [LAYOUTS["7B"], LAYOUTS["70B"]]
    )
    repeats = args.repeats or (1 if args.smoke else 5)
    print(f"bench_compare: {machine_line()}")
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="sdw-bench-compare-", dir=args.workdir))
    try:
        results = [measure_layout(L, root, repeats) for L in layouts]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return report(results, args.check)


if __name__ == "__main__":
    sys.exit(main())
