"""``LoadPlan.build`` (ONE planning path) for the Explorer's click.

    python benchmarks/bench_plan.py [--sizes 3000,10000,30000] [--repeats 15] [--explorer]
                                    [--check]

Every click in the Explorer re-plans its selection (``Comparison.plan(include=selected_keys)``).
There is one planning path: the selection (a list of row keys is checked in a few C-level
passes), then each row's own outcome, decided once per comparison and BatchNorm policy and
reused. Two layouts per size, each with one shape mismatch, one missing and one unexpected key:

* ``linear``: the widget benchmark's model (blocks of ten ``Linear(4, 4)``), ``bn='load'``;
* ``conv+bn``: blocks of ``Conv2d`` + ``BatchNorm2d`` (five keys a block), ``bn='keep'`` and
  ``adapt='overlap'``, so BatchNorm policy, step counters and an adapter are decided too.

The selection is every key but one block's (what a click that deselects a block leaves).
``plan`` is the median of ``--repeats``; ``first`` the first plan of a fresh comparison, which
decides every row once. Target: 30,000 keys planned in <= 15 ms.

``--explorer`` adds the kernel's side of a click in the Explorer (no browser): setting
``selected_keys`` (validation, plan, preview) at the largest size, then at every size the whole
kernel handler of a click as the browser sends it (``{"action": "toggle", "modules": ["1"]}``
through ``handle_action``) including the state update it sends, serialised as ipykernel would
(ipywidgets' buffer split, then jupyter_client's ``json_packer``). Target: <= 40 ms at 30,000
keys (the click round trip budget is 150 ms, ``bench_widget.py``).

The Mixture-of-Experts case (Explorer(), the prefix rule and a click at ~100,000 keys) is in
``bench_widget.py --kernel-only``.
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
    interleaved,
    machine_line,
    median,
    report_targets,
    text_table,
)
from torch import nn  # noqa: E402

import sd_widgets as sdw  # noqa: E402
from sd_widgets.plan._plan import LoadPlan  # noqa: E402


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
    t0 = time.perf_counter()
    plan = LoadPlan.build(cmp, include=keys, **kwargs)  # fresh comparison: decides every row
    first = time.perf_counter() - t0
    times = interleaved({"plan": lambda: LoadPlan.build(cmp, include=keys, **kwargs)}, repeats)
    return {
        "layout": layout,
        "keys": len(cmp),
        "selected": len(keys),
        "loaded": len(plan.entries),
        "skipped": len(plan.skipped),
        "plan": median(times["plan"]),
        "first": first,
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
    """Median seconds of setting ``selected_keys`` in the Explorer (validation, plan, preview)."""
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

    times = interleaved({"click": click}, repeats, warmup=2)
    return {"keys": len(w.comparison), "click": median(times["click"])}


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
    # in a kernel the staleness check runs after cells, not per click (_cell_hook: its remover)
    w._cell_hook = lambda: None
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
            f"{r['plan'] * 1e3:.1f} ms",
            f"{r['first'] * 1e3:.1f} ms",
        ]
        for r in results
    ]
    headers = ["layout", "keys", "selected", "load / skip", "plan", "first"]
    print(text_table(headers, rows))
    targets = [
        Target(
            f"{r['layout']}, {r['keys']:,} keys: one planning path <= 15 ms",
            r["plan"] <= 0.015,
            f"{r['plan'] * 1e3:.1f} ms (first plan {r['first'] * 1e3:.0f} ms)",
        )
        for r in results
        if r["keys"] >= 25_000
    ]
    if args.explorer:
        click = explorer_click(max(sizes), args.repeats)
        print(
            f"\nExplorer click, kernel side, {click['keys']:,} keys: setting selected_keys "
            f"(validation, plan, preview) {click['click'] * 1e3:.1f} ms"
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
