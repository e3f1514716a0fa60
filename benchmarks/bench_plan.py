"""``LoadPlan.build`` for the Explorer's click: an exact list of row keys, 3,000 to 30,000 keys.

    python benchmarks/bench_plan.py [--sizes 3000,10000,30000] [--repeats 15] [--check]

Every click in the Explorer re-plans its selection (``Comparison.plan(include=selected_keys)``),
so at 30,000 keys the plan is most of the kernel's share of the click round trip (target:
< 150 ms, ``bench_widget.py``). Two layouts per size, each with one shape mismatch, one missing
and one unexpected key:

* ``linear``: the widget benchmark's model (blocks of ten ``Linear(4, 4)``), ``bn='load'``;
* ``conv+bn``: blocks of ``Conv2d`` + ``BatchNorm2d`` (five keys a block), ``bn='keep'`` and
  ``adapt='overlap'``, so BatchNorm policy, step counters and an adapter are decided too.

The selection is every key but one block's (what a click that deselects a block leaves). Timed,
interleaved, median of ``--repeats``:

* ``general``: the general path (patterns, modules, globs; every row decided afresh) as every
  click ran it before the fast path; ``gc paused``: the same with the cyclic garbage collector
  paused, as ``LoadPlan.build`` now runs either path;
* ``fast``: the exact-key-list path ``LoadPlan.build`` takes for such a list (each row's outcome
  decided once per comparison and BatchNorm policy, then reused);
* ``first``: the fast path's first build on a fresh comparison, which decides every row once
  (its per-comparison index, which either path builds on its first plan, is built untimed).

Both paths must give the same plan (checked). Target: the fast path plans 30,000 keys in
< 15 ms (a tenth of the click budget) and at least 3x faster than the general path.

``--explorer`` adds the kernel's side of a click in the Explorer at the largest size (no
browser): setting ``selected_keys`` (every key, then all but block 0, alternately) runs the
widget's validation, plan and preview, with the fast path and with ``LoadPlan.build`` forced
onto the general path, interleaved. Then, at every size, the whole kernel handler of a click as
the browser sends it (``{"action": "toggle", "modules": ["1"]}`` through ``handle_action``,
block 1 deselected and selected again alternately) including the state update it sends: the
widget's comm serialises each message as ipykernel would (ipywidgets' buffer split, then
jupyter_client's ``json_packer``). Target: <= 40 ms at 30,000 keys (the browser's click round
trip budget is 150 ms, ``bench_widget.py``; the rest is the websocket and the page's redraw).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402
from _common import (  # noqa: E402
    Target,
    fmt_ratio,
    interleaved,
    machine_line,
    median,
    report_targets,
    text_table,
)
from torch import nn  # noqa: E402

import sd_widgets as sdw  # noqa: E402
from sd_widgets.plan import LoadPlan, _index, _normalise_adapt  # noqa: E402
from sd_widgets.renames import gc_paused  # noqa: E402


def linear_model(n_keys: int) -> nn.Module:
    """``n_keys`` keys: blocks of ten Linear(4, 4) (the widget benchmark's layout)."""
    n_layers = n_keys // 2
    return nn.Sequential(
        *[
            nn.Sequential(*[nn.Linear(4, 4) for _ in range(min(10, n_layers - i))])
            for i in range(0, n_layers, 10)
        ]
    )


def conv_bn_model(n_keys: int) -> nn.Module:
    """About ``n_keys`` keys: blocks of Conv2d(2, 2, 1, bias=False) + BatchNorm2d(2)."""
    return nn.Sequential(
        *[
            nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.BatchNorm2d(2))
            for _ in range(max(1, n_keys // 6))
        ]
    )


def case(layout: str, n_keys: int) -> tuple[sdw.Comparison, dict]:
    torch.manual_seed(0)
    model = linear_model(n_keys) if layout == "linear" else conv_bn_model(n_keys)
    sd = model.state_dict()
    first = next(iter(sd))
    sd[first] = torch.zeros(5, *sd[first].shape[1:])  # one shape mismatch
    del sd[list(sd)[3]]  # one missing key
    sd["0.extra"] = torch.zeros(1)  # one unexpected key
    kwargs = {"bn": "load"} if layout == "linear" else {"bn": "keep", "adapt": "overlap"}
    return sdw.compare(model, sd), kwargs


def selection(cmp: sdw.Comparison) -> list[str]:
    """Every row key but block 1's, model order (the Explorer's selection after a click)."""
    return [r.key for r in cmp.rows if not r.key.startswith("1.")]


def measure(layout: str, n_keys: int, repeats: int) -> dict:
    cmp, kwargs = case(layout, n_keys)
    keys = selection(cmp)
    adapters = _normalise_adapt(kwargs.get("adapt"))
    bn = kwargs["bn"]
    _index(cmp)  # the per-comparison index either path builds on its first plan (untimed)
    t0 = time.perf_counter()
    fast = LoadPlan.build(cmp, include=keys, **kwargs)  # fresh comparison: fills the cache
    first = time.perf_counter() - t0
    slow = LoadPlan._build_general(cmp, _index(cmp), keys, None, bn, adapters)
    same = (
        list(fast.entries.items()) == list(slow.entries.items())
        and list(fast.skipped.items()) == list(slow.skipped.items())
        and fast.bn_reset_modules == slow.bn_reset_modules
    )

    def general_nogc() -> None:
        with gc_paused():
            LoadPlan._build_general(cmp, _index(cmp), keys, None, bn, adapters)

    times = interleaved(
        {
            "general": lambda: LoadPlan._build_general(cmp, _index(cmp), keys, None, bn, adapters),
            "general_nogc": general_nogc,
            "fast": lambda: LoadPlan.build(cmp, include=keys, **kwargs),
        },
        repeats,
        warmup=2,
    )
    return {
        "layout": layout,
        "keys": len(cmp),
        "selected": len(keys),
        "loaded": len(fast.entries),
        "skipped": len(fast.skipped),
        "general": median(times["general"]),
        "general_nogc": median(times["general_nogc"]),
        "fast": median(times["fast"]),
        "first": first,
        "same": same,
    }


def click_case(n_keys: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The Explorer benchmarks' model and checkpoint: a shape mismatch, a missing and an
    unexpected key among ``n_keys`` matches."""
    torch.manual_seed(0)
    model = linear_model(n_keys)
    sd = model.state_dict()
    sd["0.1.weight"] = torch.zeros(5, 4)
    del sd["0.2.bias"]
    sd["0.extra"] = torch.zeros(1)
    return model, sd


def explorer_click(n_keys: int, repeats: int) -> dict[str, float]:
    """Median seconds of the kernel's side of an Explorer click, fast vs general plan path."""
    import os

    os.environ["SDW_WIDGET_SYNC"] = "1"  # no event loop here: follow-up work runs inline
    model, sd = click_case(n_keys)
    w = sdw.Explorer(model, sd)
    every = list(w.selected_keys)
    others = [k for k in every if not k.startswith("0.")]
    state = {"i": 0}

    def click() -> None:
        state["i"] += 1
        w.selected_keys = others if state["i"] % 2 else every

    fast_build = LoadPlan.__dict__["build"]

    def general_build(cls, cmp, *, include=None, exclude=None, bn="load", adapt=None):
        with gc_paused():
            return cls._build_general(
                cmp, _index(cmp), include, exclude, bn, _normalise_adapt(adapt)
            )

    def with_general() -> None:
        LoadPlan.build = classmethod(general_build)  # type: ignore[method-assign]
        try:
            click()
        finally:
            LoadPlan.build = fast_build  # type: ignore[method-assign]

    times = interleaved({"fast": click, "general": with_general}, repeats, warmup=2)
    return {
        "keys": len(w.comparison),
        "fast": median(times["fast"]),
        "general": median(times["general"]),
    }


class _PackingComm:
    """A comm that serialises what the widget sends as ipykernel does (``json_packer``)."""

    comm_id = "bench"
    kernel = "a kernel"  # truthy: ipywidgets only sends state when the comm has a kernel
    encodes_iterables = True  # json_packer writes any iterable as an array (as ipykernel's)

    def __init__(self) -> None:
        self.sent_bytes = 0
        self.messages = 0

    def open(self, *args: object, **kwargs: object) -> None:
        pass

    def on_msg(self, handler: object) -> None:
        pass

    def close(self, *args: object, **kwargs: object) -> None:
        pass

    def send(self, data: object = None, metadata: object = None, buffers: object = None) -> None:
        from jupyter_client.session import json_packer

        self.sent_bytes += len(json_packer({"data": data, "comm_id": self.comm_id}))
        self.messages += 1


def explorer_toggle(n_keys: int, repeats: int) -> dict[str, float]:
    """The whole kernel handler of a module click (toggle action + state sync), median seconds."""
    import os

    os.environ["SDW_WIDGET_SYNC"] = "1"
    model, sd = click_case(n_keys)
    comm = _PackingComm()
    w = sdw.Explorer(model, sd, comm=comm)
    w._cell_hook = True  # in a kernel the staleness check runs after cells, not per click
    n_all = len(w.selected_keys)
    sizes = set()

    def click() -> None:
        w.handle_action({"action": "toggle", "modules": ["1"]})
        sizes.add(len(w.selected_keys))

    comm.sent_bytes = comm.messages = 0
    times = interleaved({"toggle": click}, repeats, warmup=2)
    clicks = repeats + 2
    if sizes != {n_all, n_all - 20}:
        raise AssertionError(f"a click on block 1 should toggle 20 keys of {n_all}: saw {sizes}")
    return {
        "keys": len(w.comparison),
        "toggle": median(times["toggle"]),
        "kb_per_click": comm.sent_bytes / clicks / 1e3,
        "messages_per_click": comm.messages / clicks,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="3000,10000,30000")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--explorer", action="store_true", help="also time an Explorer click (kernel)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(machine_line())
    results = [measure(layout, n, args.repeats) for n in sizes for layout in ("linear", "conv+bn")]
    rows = [
        [
            r["layout"],
            f"{r['keys']:,}",
            f"{r['selected']:,}",
            f"{r['loaded']:,} / {r['skipped']:,}",
            f"{r['general'] * 1e3:.1f} ms",
            f"{r['general_nogc'] * 1e3:.1f} ms",
            f"{r['fast'] * 1e3:.1f} ms",
            fmt_ratio(r["general"] / r["fast"]),
            f"{r['first'] * 1e3:.1f} ms",
            "yes" if r["same"] else "NO",
        ]
        for r in results
    ]
    headers = ["layout", "keys", "selected", "load / skip", "general", "gc paused", "fast"]
    headers += ["ratio", "first"]
    print(text_table([*headers, "same plan"], rows))
    targets = [
        Target(
            "fast path gives the general path's plan",
            all(r["same"] for r in results),
            ", ".join(f"{r['layout']} {r['keys']:,}: {r['same']}" for r in results),
        )
    ]
    for r in results:
        if r["keys"] < 25_000:
            continue
        targets.append(
            Target(
                f"{r['layout']}, {r['keys']:,} keys: fast path < 15 ms and >= 3x the general path",
                r["fast"] < 0.015 and r["general"] / r["fast"] >= 3,
                f"{r['fast'] * 1e3:.1f} ms vs {r['general'] * 1e3:.1f} ms "
                f"({fmt_ratio(r['general'] / r['fast'])})",
            )
        )
    if args.explorer:
        click = explorer_click(max(sizes), args.repeats)
        print(
            f"\nExplorer click, kernel side, {click['keys']:,} keys: "
            f"{click['fast'] * 1e3:.1f} ms with the fast path, "
            f"{click['general'] * 1e3:.1f} ms with the general one "
            f"({fmt_ratio(click['general'] / click['fast'])})"
        )
        toggles = [explorer_toggle(n, args.repeats) for n in sizes]
        print("\nExplorer click, whole kernel handler (toggle action + the state update sent):")
        print(
            text_table(
                ["keys", "handler", "sent per click", "messages"],
                [
                    [
                        f"{r['keys']:,}",
                        f"{r['toggle'] * 1e3:.1f} ms",
                        f"{r['kb_per_click']:.0f} KB",
                        f"{r['messages_per_click']:.0f}",
                    ]
                    for r in toggles
                ],
            )
        )
        for r in toggles:
            if r["keys"] >= 25_000:
                targets.append(
                    Target(
                        f"Explorer click, {r['keys']:,} keys: whole kernel handler <= 40 ms",
                        r["toggle"] <= 0.040,
                        f"{r['toggle'] * 1e3:.1f} ms",
                    )
                )
    return report_targets(targets, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
