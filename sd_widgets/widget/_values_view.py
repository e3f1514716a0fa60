"""The Explorer's value view: one JSON payload, and the histograms of one key.

A :class:`~sd_widgets.ValueComparison` as the payload the browser draws, and the
before/after and difference histograms of one compared key.

What the browser draws (``static/values.js``): a change column per tensor row and module row
of the tree, colour-scaled by change (identical / tiny / large / from zero / NaN appeared),
module roll-ups ("backbone: 0 of 160 tensors changed"), the frozen-BatchNorm call-outs, and
the plot of a clicked row. Numbers only: tensors never cross to the browser.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..compare._values import CHANGES, TINY, ValueComparison, change_rank, module_text

_LOOKS: dict[str, tuple[str, str, str]] = {  # change -> label, icon, tone
    "nan_appeared": ("NaN appeared", "!", "error"),
    "from_zero": ("from zero", "0→", "warn"),
    "large": ("changed", "Δ", "warn"),
    "tiny": ("tiny change", "≈", "info"),
    "identical": ("identical", "=", "ok"),
    "not_compared": ("not compared", "–", "none"),
}
#: the change column's legend, in :data:`CHANGES` order: label, icon and tone per change, and
#: the flags the browser decides by (no change string is spelled in JS): ``changed`` (compared
#: and not equal: what "changed (any kind)" filters) and ``compared`` (both tensors were read,
#: so there is something to plot)
CHANGE_LEGEND: list[dict[str, Any]] = [
    {
        "change": change,
        "label": _LOOKS[change][0],
        "icon": _LOOKS[change][1],
        "tone": _LOOKS[change][2],
        "changed": change not in ("identical", "not_compared"),
        "compared": change != "not_compared",
    }
    for change in CHANGES
]


def values_none() -> dict[str, Any]:
    """The value view before a comparison."""
    return {"state": "none"}


def _rel_json(x: float) -> float | str | None:
    """JSON has no infinity: a change from zero is ``"inf"``; NaN (not measured) is None."""
    if x == math.inf:
        return "inf"
    return x if math.isfinite(x) else None


def values_payload(
    vc: ValueComparison, *, a_label: str, b_label: str, a_is_model: bool = True
) -> dict[str, Any]:
    """The value comparison as the browser's columnar payload.

    ``rows``: ``key``, ``change`` (index into ``legend``), ``rel`` (relative L2 change, "inf"
    from zero), ``max_abs``, ``cosine``, ``rank`` (0 = most changed); ``modules``: path →
    ``[tensors, changed, max_rel, text]`` for every module of the tree; ``callouts``: the
    frozen-looking modules whose BatchNorm statistics changed, and ``frozen_bn`` the same
    sentences by module path (the tree flags those module rows); ``a``/``b`` name the two
    sides, ``a_is_model`` says whether ``a`` is a live model (False: two checkpoints).
    """
    codes = {c: i for i, c in enumerate(CHANGES)}
    rows = vc.rows
    order = sorted(range(len(rows)), key=lambda i: change_rank(rows[i]), reverse=True)
    rank = [0] * len(rows)
    for position, i in enumerate(order):
        rank[i] = position
    modules = {
        m: [int(t), int(ch), _rel_json(float(mx)), text]
        for m, t, ch, mx, text in vc.by_module()[
            ["module", "tensors", "changed", "max_rel_l2_change", "text"]
        ].itertuples(index=False)
    }
    changed = sum(1 for r in rows if r.changed)
    frozen = vc.frozen_bn_changes()
    return {
        "state": "ready",
        "a": a_label,
        "b": b_label,
        "a_is_model": a_is_model,
        "tiny": TINY,
        "legend": CHANGE_LEGEND,
        "rows": {
            "key": [r.key for r in rows],
            "change": [codes[r.change] for r in rows],
            "rel": [_rel_json(r.rel_l2_change) for r in rows],
            "max_abs": [_rel_json(r.max_abs_diff) for r in rows],
            "cosine": [_rel_json(r.cosine) for r in rows],
            "rank": rank,
        },
        "modules": modules,
        # the root of a model is "(model)"; of two checkpoints, every key
        "root": module_text("" if a_is_model else "(all keys)", changed, len(rows)),
        "summary": vc.summary(),
        "callouts": list(frozen.values()),
        "frozen_bn": frozen,
    }


def value_figure_src(key: str, a: torch.Tensor, b: torch.Tensor, *, bins: int = 40) -> str:
    """PNG data URL: ``a`` and ``b`` overlaid on shared bins, and the histogram of ``b - a``."""
    from matplotlib.figure import Figure

    from ..load._plots import figure_to_png
    from ._summary import png_data_url

    x = a.detach().reshape(-1).to(torch.float64)
    y = b.detach().reshape(-1).to(torch.float64)
    fig = Figure(figsize=(6.4, 2.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    both = torch.cat([x, y])
    both = both[torch.isfinite(both)]
    if both.numel():
        lo, hi = float(both.min()), float(both.max())
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        edges = torch.linspace(lo, hi, bins + 1).numpy()
        for t, label in ((x, "a (before)"), (y, "b (after)")):
            finite = t[torch.isfinite(t)]
            left.hist(finite.numpy(), bins=edges, alpha=0.55, label=label)
        left.legend(fontsize=7)
    left.set_title("values", fontsize=9)
    d = y - x if x.shape == y.shape else torch.zeros(0, dtype=torch.float64)
    d = d[torch.isfinite(d)]
    if d.numel() and bool((d != 0).any()):
        right.hist(d.numpy(), bins=bins, color="tab:red", alpha=0.8)
        right.set_title("difference b − a", fontsize=9)
    else:
        right.set_title("difference b − a: none", fontsize=9)
    for ax in (left, right):
        ax.tick_params(labelsize=7)
    # a key from a file: drawn as text (no mathtext), control characters escaped
    title = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in key[:120])
    fig.suptitle(title, fontsize=9, parse_math=False)
    return png_data_url(figure_to_png(fig, dpi=80))
