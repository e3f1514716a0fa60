"""Matplotlib figures for before/after comparisons of state_dict tensors.

Figures are built with :class:`matplotlib.figure.Figure` directly — never ``pyplot`` — so nothing
is shown, no global backend or figure registry is touched, and a figure can be rendered anywhere:
returned as the last expression of a notebook cell (the inline backend displays it), sent to a
widget as PNG bytes with :func:`figure_to_png`, or saved with ``fig.savefig``.

Colours are the Okabe–Ito colour-blind-safe pair: *before* blue ``#0072B2`` (filled), *after*
orange ``#E69F00`` (line), so the two stay distinguishable in greyscale too.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from matplotlib.axes import Axes
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.legend import Legend
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from ..statuses import STATUS_COLOURS, Status
from ._stats import before_after_histogram, bn_channel_stats, change_stats

if TYPE_CHECKING:
    import pandas as pd


BEFORE_COLOR = "#0072B2"  # Okabe–Ito blue
AFTER_COLOR = "#E69F00"  # Okabe–Ito orange
REFERENCE_COLOR = "0.55"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_OKABE_ITO = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
]
_LOADED = STATUS_COLOURS[Status.MATCH.value]  # loaded as is: the colour of a match
_ADAPTED = "#F0E442"  # Okabe–Ito yellow: a shape mismatch made to fit
_NOT_LOADED = "#999999"
STATUS_COLORS: dict[str, str] = {
    # comparison statuses: exactly the widget's and the CLI's colours (sd_widgets.statuses)
    **STATUS_COLOURS,
    # load outcomes (LoadReport.to_frame()["action"] and similar labels)
    "load": _LOADED,
    "loaded": _LOADED,
    "adapt": _ADAPTED,
    "adapted": _ADAPTED,
    "tied": STATUS_COLOURS[Status.TIED.value],  # follows the key it is tied to
    "bn_reset": "#000000",  # Okabe–Ito black: running statistics reset, not loaded
    "skipped": _NOT_LOADED,
    "failed": STATUS_COLOURS[Status.SHAPE_MISMATCH.value],
}
"""Colours of known statuses: the comparison statuses from :mod:`sd_widgets.statuses` (one
vocabulary with the Explorer and the CLI), then load outcomes; others get spare colours."""

_TITLE_SIZE = 9
_SMALL = 8


# --------------------------------------------------------------------------------------------
# helpers


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes with the Agg canvas (no pyplot, no display)."""
    if type(fig.canvas) is FigureCanvasBase:  # a bare Figure: attach an Agg canvas
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _literal(text: object) -> str:
    r"""``text`` as matplotlib must get it to draw it as it is: ``$`` escaped.

    Keys, module names and notes come from files: a ``$...$`` in them would otherwise be parsed
    as mathtext — drawn as formulas, or raising ``ValueError`` from the draw for an unknown
    command. matplotlib draws ``\$`` outside mathtext as a plain ``$``.
    """
    return str(text).replace("$", r"\$")


def shorten(text: str, width: int = 45) -> str:
    """Keep the end of a long key (its most specific part): ``"…layer4.1.bn2.weight"``."""
    text = str(text)
    return text if len(text) <= width else "…" + text[-(width - 1) :]


class _FittingLayout(ConstrainedLayoutEngine):
    """Constrained layout that first fits the registered texts into their panel's width.

    It runs when the figure is drawn — after any resize or font change made to the figure once
    it was built (the Explorer shrinks panels and enlarges their text) — so a panel's title and
    notes never run over the figure's edge or into the next panel. A text is restored to its full
    value before each fit, so drawing twice gives the same picture.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fits: list[tuple[Text, str, str, Axes | None]] = []
        self._legends: list[tuple[Legend, Axes, int]] = []
        self._tick_axes: list[Axes] = []

    def fit(self, text: Text, mode: str, ax: Axes | None = None) -> None:
        """Fit ``text`` to the width of ``ax`` (the figure's when None) at each draw.

        ``mode`` ``"tail"`` keeps the end of each line (a key's most specific part), ``"wrap"``
        breaks lines between words.
        """
        self._fits.append((text, text.get_text(), mode, ax))

    def fit_legend(self, legend: Legend, ax: Axes, ncols: int) -> None:
        """Stack ``legend`` in one column when ``ncols`` columns are wider than ``ax``."""
        self._legends.append((legend, ax, ncols))

    def fit_ticks(self, ax: Axes) -> None:
        """Use fewer x ticks (2 to 5) when their labels would crowd a narrow ``ax``."""
        self._tick_axes.append(ax)

    def execute(self, fig: Any) -> Any:
        """Fit texts, legends and ticks to the panel widths, lay out, refit, and lay out again.

        Texts are first fitted to where their panels are now, so that a long note does not make
        the layout shrink its panel; the second layout runs only when refitting to the widths
        the first one gave changed what the layout depends on (a text's number of lines, a text
        wider than its panel was, a legend's columns, the tick count).
        """
        for legend, _, ncols in self._legends:
            legend.set_ncols(ncols)
        ticks_before = [
            _set_nbins(ax, _tick_count(fig, ax, laid_out=False)) for ax in self._tick_axes
        ]
        before = [self._fit_one(fig, fit, laid_out=False) for fit in self._fits]
        done = super().execute(fig)
        after = [self._fit_one(fig, fit, laid_out=True) for fit in self._fits]
        # within its panel a text's width does not move the layout; its number of lines does
        changed = any(
            old.count("\n") != new.count("\n") or old_width > new_width + 0.5
            for (old, old_width), (new, new_width) in zip(before, after, strict=True)
        )
        for legend, ax, ncols in self._legends:
            if ncols > 1 and legend.get_window_extent().width > 0.9 * ax.get_window_extent().width:
                legend.set_ncols(1)
                changed = True
        ticks_after = [
            _set_nbins(ax, _tick_count(fig, ax, laid_out=True)) for ax in self._tick_axes
        ]
        changed |= ticks_after != ticks_before
        return super().execute(fig) if changed else done

    @staticmethod
    def _fit_one(
        fig: Any, fit: tuple[Text, str, str, Axes | None], *, laid_out: bool
    ) -> tuple[str, float]:
        """Fit one text to its panel; the text and the width it was fitted to."""
        text, full, mode, panel = fit
        if panel is None:
            width = 0.96 * fig.bbox.width
        elif laid_out:
            width = panel.get_window_extent().width
        else:  # where the panel is before this layout (the figure may have been resized)
            width = panel.get_position().width * fig.bbox.width
        return _fitted(text, full, width, mode), width


_MAX_XTICKS = 5


def _tick_count(fig: Any, ax: Axes, *, laid_out: bool) -> int:
    """How many x ticks (2 to 5) the panel's width leaves room for."""
    width = ax.get_window_extent().width if laid_out else ax.get_position().width * fig.bbox.width
    ticks = ax.xaxis.get_major_ticks()
    size = (ticks[0].label1.get_fontsize() if ticks else _SMALL) * fig.dpi / 72
    # a label is about five characters ("-0.15"): leave as much again between two
    return max(2, min(_MAX_XTICKS, int(width / (4.5 * float(size)))))


def _set_nbins(ax: Axes, n: int) -> int:
    locator = ax.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):
        locator.set_params(nbins=n)
    return n


def _width(text: Text, value: str) -> float:
    text.set_text(value)
    return float(text.get_window_extent().width)


def _fitted(text: Text, full: str, width: float, mode: str) -> str:
    """``full`` made to fit ``width`` pixels at ``text``'s font: wrapped or cut line by line."""
    out: list[str] = []
    for line in full.split("\n"):
        if not line or _width(text, line) <= width:
            out.append(line)
        elif mode == "wrap":
            current = ""
            for word in line.split():
                candidate = f"{current} {word}" if current else word
                if not current or _width(text, candidate) <= width:
                    current = candidate
                else:
                    out.append(_cut(text, current, width, keep_end=False))
                    current = word
            out.append(_cut(text, current, width, keep_end=False))
        else:
            out.append(_cut(text, line, width, keep_end=True))
    value = "\n".join(out)
    text.set_text(value)
    return value


def _cut(text: Text, line: str, width: float, *, keep_end: bool) -> str:
    """The longest ``…end`` (or ``start…``) of ``line`` that fits ``width``."""
    full = _width(text, line)
    if full <= width:
        return line

    def part(n: int) -> str:
        # never keep half of an escaped "\\$" (see _literal): a lone backslash would show
        return "…" + line[-n:] if keep_end else line[:n].removesuffix("\\") + "…"

    # start from the proportional guess, then step: a few measurements instead of a search
    n = max(1, min(len(line) - 1, int(len(line) * width / full) - 1))
    if _width(text, part(n)) <= width:
        while n + 1 < len(line) and _width(text, part(n + 1)) <= width:
            n += 1
    else:
        while n > 1:
            n -= 1
            if _width(text, part(n)) <= width:
                break
    return part(n)


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout=_FittingLayout())


def _fit(ax: Axes, text: Text, mode: str, *, to_figure: bool = False) -> None:
    engine = ax.figure.get_layout_engine()
    if isinstance(engine, _FittingLayout):
        engine.fit(text, mode, None if to_figure else ax)


def _message(fig: Figure, text: str) -> Figure:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, _literal(text), ha="center", va="center", fontsize=10, color="0.3", wrap=True)
    return fig


def _grid(n: int, ncols: int | None) -> tuple[int, int]:
    cols = max(1, min(n, ncols or 3))
    return math.ceil(n / cols), cols


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return str(v) if not math.isfinite(v) else "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


def _pct(fraction: float) -> str:
    if fraction >= 0.9995 or fraction == 0:
        return f"{fraction:.0%}"
    return f"{fraction:.1%}" if fraction >= 0.001 else f"{fraction * 100:.2g}%"


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _data_numel(t: torch.Tensor) -> int:
    return 0 if t.device.type == "meta" else t.numel()


class _UnderXAxis:
    """Annotation coordinates: the box of a panel's x axis (ticks, labels), computed when drawn.

    A class rather than a lambda, so that figures stay picklable.
    """

    def __init__(self, ax: Axes) -> None:
        self.ax = ax

    def __call__(self, renderer: Any) -> Any:
        return self.ax.xaxis.get_tightbbox(renderer) or self.ax.bbox


def _notes(ax: Axes, lines: Sequence[str]) -> None:
    """A panel's notes, under its x axis: outside the data, the legend and the next panel.

    The layout makes room for them, and they are wrapped to the panel's width when drawn.
    """
    if not lines:
        return
    note = ax.annotate(
        "\n".join(_literal(line) for line in lines),
        xy=(0, 0),
        xycoords=("axes fraction", _UnderXAxis(ax)),
        xytext=(0, -3),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=7,
        color="0.2",
        annotation_clip=False,
    )
    _fit(ax, note, "wrap")


def _title(ax: Axes, text: str) -> None:
    """The panel title (a key), cut from the left to the panel's width when drawn."""
    ax.set_title(_literal(text), fontsize=_TITLE_SIZE)
    _fit(ax, ax.title, "tail")


# --------------------------------------------------------------------------------------------
# histogram overlay


def _pairs(
    before: Mapping[str, Any] | torch.Tensor,
    after: Mapping[str, Any] | torch.Tensor,
    keys: Sequence[str] | None,
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    if isinstance(before, torch.Tensor) or isinstance(after, torch.Tensor):
        if not (isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor)):
            raise TypeError("pass two tensors or two mappings of tensors, not one of each")
        label = keys[0] if keys else ""
        return [(label, before, after)]
    if keys is None:
        keys = [
            k
            for k, v in before.items()
            if k in after and isinstance(v, torch.Tensor) and isinstance(after[k], torch.Tensor)
        ]
    missing = [k for k in keys if k not in before or k not in after]
    if missing:
        raise KeyError(
            f"{len(missing)} key(s) not in both mappings: {missing[:5]}"
            + (" …" if len(missing) > 5 else "")
            + "; pass keys present in before and after"
        )
    return [(k, before[k], after[k]) for k in keys]


def _draw_histogram(
    ax: Axes,
    key: str,
    before: torch.Tensor,
    after: torch.Tensor,
    bins: int,
    log: bool,
    extra_notes: Sequence[str] = (),
) -> None:
    # Few values spread over many bins look like noise: use at most ~2·sqrt(n) bins.
    n = max(_data_numel(before), _data_numel(after))
    h = before_after_histogram(
        before, after, bins=min(bins, max(10, math.ceil(2 * n**0.5))), key=key
    )
    ax.stairs(
        h.before,
        h.edges,
        fill=True,
        facecolor=BEFORE_COLOR,
        edgecolor="none",
        alpha=0.35,
        label="before",
    )
    ax.stairs(h.before, h.edges, color=BEFORE_COLOR, linewidth=0.8)
    ax.stairs(h.after, h.edges, color=AFTER_COLOR, linewidth=1.6, label="after")
    top = max(max(h.before, default=0), max(h.after, default=0))
    if log and top > 0:  # (nothing to count: a linear axis, no log scale of no data)
        ax.set_yscale("log")
        ax.set_ylim(0.7, top * 12)  # headroom for the legend
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        ax.yaxis.get_offset_text().set_fontsize(_SMALL - 1)
        ax.set_ylim(0, top * 1.35 if top > 0 else 1)
    ax.set_xlim(h.edges[0], h.edges[-1])
    ax.xaxis.set_major_locator(MaxNLocator(nbins=_MAX_XTICKS))
    engine = ax.figure.get_layout_engine()
    if isinstance(engine, _FittingLayout):
        engine.fit_ticks(ax)
    _title(ax, shorten(key) if key else "tensor")
    ax.tick_params(labelsize=_SMALL)

    lines = []
    for side, t in (("before", before), ("after", after)):
        if t.device.type == "meta":
            lines.append(f"{side}: meta tensor (no data)")
            continue
        nonfinite = t.numel() - (sum(h.before) if side == "before" else sum(h.after))
        if t.numel() == 0:
            lines.append(f"{side}: empty")
        elif nonfinite:
            lines.append(f"{side}: {nonfinite} NaN/inf")
    if before.shape == after.shape and "meta" not in (before.device.type, after.device.type):
        ch = change_stats(before, after)
        if ch["changed_count"] == 0 and ch["numel"]:
            lines.insert(0, "unchanged")
        elif ch["changed_count"]:
            rel = ch["relative_l2_change"]
            first = (
                f"rel. L2 change {_fmt(rel)}"
                if math.isfinite(rel)
                else f"was all zeros; max |change| {_fmt(ch['max_abs_change'])}"
            )
            lines[:0] = [first, f"{_pct(ch['changed_fraction'])} of values changed"]
    elif before.shape != after.shape:
        lines.insert(0, f"shape {tuple(before.shape)} → {tuple(after.shape)}")
    if before.dtype != after.dtype:
        lines.append(f"dtype {_dtype(before.dtype)} → {_dtype(after.dtype)}")
    _notes(ax, [*lines, *extra_notes])


def histogram_overlay(
    before: Mapping[str, Any] | torch.Tensor,
    after: Mapping[str, Any] | torch.Tensor,
    keys: Sequence[str] | None = None,
    bins: int = 50,
    max_panels: int = 12,
    *,
    ncols: int | None = None,
    log: bool = False,
    title: str | None = None,
    notes: Mapping[str, str | Sequence[str]] | None = None,
) -> Figure:
    """Before/after value histograms on shared bin edges, one panel per tensor.

    ``before``/``after`` are two tensors (``keys=["name"]`` titles the panel) or two mappings of
    key → tensor (``keys`` defaults to the keys holding a tensor on both sides, in ``before``'s
    order). At most ``max_panels`` panels are drawn (``ncols`` per row, 3 by default); a note
    says how many were left out. Each panel notes the relative L2 change and any NaN/inf values.
    ``log=True`` uses a logarithmic count axis. ``notes`` adds lines under a key's panel (what
    the tensors alone cannot tell: ``"cast float16 → float32"``, ``"adapter 'overlap'"``,
    ``"tied to 'embed.weight'"``). Notes, titles and the legend are laid out so that none
    overlaps another or leaves the figure, at whatever size the figure is drawn.
    """
    pairs = _pairs(before, after, keys)
    shown = pairs[: max(1, int(max_panels))]
    extra = len(pairs) - len(shown)
    if not shown:
        return _message(_new_figure(5, 2), "no tensors to compare")
    nrows, cols = _grid(len(shown), ncols)
    fig = _new_figure(4.2 * cols, 2.8 * nrows + 0.5)
    axes = fig.subplots(nrows, cols, squeeze=False)
    for i, (key, b, a) in enumerate(shown):
        ax = axes[i // cols][i % cols]
        extra_notes = (notes or {}).get(key, ())
        if isinstance(extra_notes, str):
            extra_notes = [extra_notes]
        _draw_histogram(ax, key, b, a, bins, log, extra_notes)
        ax.set_xlabel("value", fontsize=_SMALL)
        if i % cols == 0:
            ax.set_ylabel("count", fontsize=_SMALL)
    for j in range(len(shown), nrows * cols):
        fig.delaxes(axes[j // cols][j % cols])
    heading = title if title is not None else "Values before vs after"
    if extra:
        heading += f"   (+{extra} more not shown; max_panels={max_panels})"
    if heading:
        _fit(axes[0][0], fig.suptitle(_literal(heading), fontsize=10), "wrap", to_figure=True)
    handles = [
        Patch(facecolor=BEFORE_COLOR, alpha=0.35, edgecolor=BEFORE_COLOR, label="before"),
        Patch(facecolor="none", edgecolor=AFTER_COLOR, linewidth=1.6, label="after"),
    ]
    # one row in the headroom above the bars (the notes are under the axis)
    legend = axes[0][0].legend(
        handles=handles,
        fontsize=_SMALL,
        loc="upper right",
        ncols=2,
        frameon=False,
        borderaxespad=0.3,
        handlelength=1.4,
        columnspacing=1.0,
    )
    engine = fig.get_layout_engine()
    if isinstance(engine, _FittingLayout):
        engine.fit_legend(legend, axes[0][0], 2)
    return fig


# --------------------------------------------------------------------------------------------
# BatchNorm running statistics


def _channel_plot(
    ax: Axes,
    before: torch.Tensor | None,
    after: torch.Tensor | None,
    reference: float,
    what: str,
) -> None:
    many = max((t.numel() for t in (before, after) if t is not None), default=0) > 64
    drawn = []
    for t, color, style, marker, label in (
        (before, BEFORE_COLOR, "-", "o", "before"),
        (after, AFTER_COLOR, "--", "s", "after"),
    ):
        if t is None or t.device.type == "meta":
            continue
        y = t.detach().to("cpu", torch.float64).reshape(-1)
        x = torch.arange(y.numel())
        ax.plot(
            x.tolist(),
            y.tolist(),
            linestyle=style,
            marker=None if many else marker,
            markersize=3.5,
            markerfacecolor="none" if label == "before" else color,
            linewidth=1.0 if many else 1.2,
            color=color,
            label=label,
        )
        drawn.append(y[torch.isfinite(y)])
    ax.axhline(reference, color=REFERENCE_COLOR, linewidth=0.9, linestyle=":", label="reset value")
    values = torch.cat(drawn) if drawn else torch.empty(0)
    if what == "var" and values.numel() and bool((values > 0).all()):
        lo, hi = float(values.min()), float(values.max())
        if hi / lo > 50:
            ax.set_yscale("log")
    ax.set_xlabel("channel", fontsize=_SMALL)
    ax.tick_params(labelsize=_SMALL)
    if not drawn:
        ax.text(0.5, 0.5, "no data (meta)", transform=ax.transAxes, ha="center", color="0.4")


def _bn_entries(
    before_mean: Any,
    after_mean: torch.Tensor | None,
    before_var: torch.Tensor | None,
    after_var: torch.Tensor | None,
    name: str,
) -> list[tuple[str, dict[str, torch.Tensor | None]]]:
    if isinstance(before_mean, Mapping):
        entries = []
        for mod, d in before_mean.items():
            if not isinstance(d, Mapping):
                raise TypeError(
                    "bn_running_stats mapping values must be dicts with before_mean, after_mean, "
                    f"before_var, after_var; got {type(d).__name__} for {mod!r}"
                )
            entries.append(
                (
                    str(mod),
                    {k: d.get(k) for k in ("before_mean", "after_mean", "before_var", "after_var")},
                )
            )
        return entries
    return [
        (
            name,
            {
                "before_mean": before_mean,
                "after_mean": after_mean,
                "before_var": before_var,
                "after_var": after_var,
            },
        )
    ]


def bn_running_stats(
    before_mean: torch.Tensor | Mapping[str, Mapping[str, torch.Tensor]],
    after_mean: torch.Tensor | None = None,
    before_var: torch.Tensor | None = None,
    after_var: torch.Tensor | None = None,
    name: str = "",
    *,
    max_modules: int = 4,
) -> Figure:
    """Per-channel BatchNorm ``running_mean`` and ``running_var``, before vs after a load.

    Either four tensors (any may be ``None``; ``name`` titles the row) or a mapping of BN module
    name → ``{"before_mean", "after_mean", "before_var", "after_var"}``, of which the first
    ``max_modules`` are drawn, one row each. Dotted grey lines mark the values
    ``reset_running_stats()`` sets (mean 0, var 1); a note flags buffers still at those values.
    """
    entries = _bn_entries(before_mean, after_mean, before_var, after_var, name)
    shown = entries[: max(1, int(max_modules))]
    extra = len(entries) - len(shown)
    if not shown:
        return _message(_new_figure(5, 2), "no BatchNorm modules to show")
    fig = _new_figure(10, 2.7 * len(shown) + 0.5)
    axes = fig.subplots(len(shown), 2, squeeze=False)
    for row, (mod, d) in enumerate(shown):
        ax_m, ax_v = axes[row]
        _channel_plot(ax_m, d["before_mean"], d["after_mean"], 0.0, "mean")
        _channel_plot(ax_v, d["before_var"], d["after_var"], 1.0, "var")
        label = shorten(mod, 40) + " · " if mod else ""
        _title(ax_m, f"{label}running_mean")
        _title(ax_v, f"{label}running_var")
        ax_m.set_ylabel("running mean", fontsize=_SMALL)
        ax_v.set_ylabel("running var", fontsize=_SMALL)
        notes = []
        for side in ("before", "after"):
            m, v = d[f"{side}_mean"], d[f"{side}_var"]
            if m is None or v is None or m.shape != v.shape or m.dim() != 1:
                continue
            if bn_channel_stats(m, v)["is_reset"]:
                notes.append(f"{side}: reset values (mean 0, var 1)")
        _notes(ax_m, notes)
    # under the panels, outside the data (every channel may sit where a legend would)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=_SMALL, loc="outside lower center", ncols=3, frameon=False)
    heading = "BatchNorm running statistics"
    if extra:
        heading += f"   (+{extra} more modules not shown; max_modules={max_modules})"
    _fit(axes[0][0], fig.suptitle(heading, fontsize=10), "wrap", to_figure=True)
    return fig


# --------------------------------------------------------------------------------------------
# load summary

_METRICS = (
    ("rel_l2_change", "relative L2 change  ‖after − before‖ / ‖before‖"),
    ("relative_l2_change", "relative L2 change  ‖after − before‖ / ‖before‖"),
    ("max_abs_change", "max |after − before|"),
)


def _status_colors(statuses: Sequence[str]) -> dict[str, str]:
    colors: dict[str, str] = {}
    spare = [c for c in _OKABE_ITO if c not in STATUS_COLORS.values()] + _OKABE_ITO
    for s in statuses:
        if s in colors:
            continue
        colors[s] = STATUS_COLORS.get(s) or spare[len(colors) % len(spare)]
    return colors


def _bars(
    ax: Axes, frame: pd.DataFrame, column: str, label: str, colors: dict[str, str], max_bars: int
) -> None:
    keys = [str(k) for k in frame["key"].tolist()]
    values = [float(v) for v in frame[column].tolist()]
    status = [str(s) for s in frame["status"].tolist()] if "status" in frame else [""] * len(keys)
    rows = [(k, v, s) for k, v, s in zip(keys, values, status, strict=True) if math.isfinite(v)]
    infinite = [k for k, v in zip(keys, values, strict=True) if math.isinf(v)]
    ax.set_title("Change per tensor", fontsize=_TITLE_SIZE)
    notes = []
    if infinite:
        # relative change of a tensor that was all zeros (fresh biases, running_mean,
        # num_batches_tracked) is infinite: list them instead of drawing a meaningless bar
        names = ", ".join(shorten(k, 30) for k in infinite[:3]) + (
            " …" if len(infinite) > 3 else ""
        )
        notes.append(f"∞ for {len(infinite)} tensor(s) that were all zeros before: {names}")
    if not rows:
        ax.set_axis_off()
        notes.insert(0, f"no finite {column} values")
        ax.text(
            0.5,
            0.5,
            _literal("\n".join(notes)),
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="0.3",
            fontsize=8,
            wrap=True,
        )
        return
    rows.sort(key=lambda r: r[1], reverse=True)
    shown = rows[:max_bars]
    if len(rows) > len(shown):
        ax.set_title(
            f"Change per tensor (largest {len(shown)} of {len(rows)})", fontsize=_TITLE_SIZE
        )
    positive = [v for _, v, _ in shown if v > 0]
    log = bool(positive) and max(positive) / min(positive) > 100
    y = list(range(len(shown)))
    ax.barh(
        y,
        [v for _, v, _ in shown],
        color=[colors.get(s, BEFORE_COLOR) for _, _, s in shown],
        height=0.7,
    )
    if log:
        ax.set_xscale("log")
        left = min(positive) / 2
        ax.set_xlim(left, max(positive) * 2.5)
    else:
        left = 0.0
        ax.set_xlim(0, (max(positive, default=0.0) or 1.0) * 1.25)
    for yi, (_, v, _) in zip(y, shown, strict=True):
        ax.text(max(v, left), yi, " " + _fmt(v), va="center", ha="left", fontsize=7, color="0.25")
    ax.set_yticks(y, [_literal(shorten(k, 40)) for k, _, _ in shown], fontsize=7)
    if not positive:
        notes.insert(0, "all changes are 0: the loaded values equal the previous ones")
    # largest on top; thin bars for few rows; free rows at the bottom for the notes
    ax.set_ylim(max(len(shown), 12) - 0.5 + 1.3 * len(notes), -0.5)
    ax.tick_params(axis="x", labelsize=_SMALL)
    ax.set_xlabel(label + (" (log scale)" if log else ""), fontsize=_SMALL)
    if notes:
        ax.text(
            0.98,
            0.02,
            _literal("\n".join(notes)),
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            color="0.25",
            wrap=True,
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.8", "alpha": 0.9},
        )


def _status_counts(
    ax: Axes, frame: pd.DataFrame, colors: dict[str, str], title: str = "Status"
) -> None:
    counts: dict[str, int] = {}
    for s in frame["status"].tolist():
        counts[str(s)] = counts.get(str(s), 0) + 1
    names = list(counts)
    y = list(range(len(names)))
    ax.barh(y, [counts[n] for n in names], color=[colors[n] for n in names], height=0.6)
    for yi, n in zip(y, names, strict=True):
        ax.text(counts[n], yi, f" {counts[n]}", va="center", fontsize=_SMALL)
    ax.set_yticks(y, [_literal(n) for n in names], fontsize=_SMALL)
    ax.set_ylim(max(len(names), 4) - 0.5, -0.5)
    ax.set_xlim(0, max(counts.values()) * 1.25)
    ax.set_xlabel("tensors", fontsize=_SMALL)
    ax.tick_params(axis="x", labelsize=_SMALL)
    ax.set_title(title, fontsize=_TITLE_SIZE)


def _std_scatter(ax: Axes, frame: pd.DataFrame, colors: dict[str, str]) -> None:
    b = [float(v) for v in frame["before_std"].tolist()]
    a = [float(v) for v in frame["after_std"].tolist()]
    status = [str(s) for s in frame["status"].tolist()] if "status" in frame else [""] * len(b)
    pts = [
        (x, y, s)
        for x, y, s in zip(b, a, status, strict=True)
        if math.isfinite(x) and math.isfinite(y)
    ]
    ax.set_title("std before vs after", fontsize=_TITLE_SIZE)
    ax.set_xlabel("before std", fontsize=_SMALL)
    ax.set_ylabel("after std", fontsize=_SMALL)
    ax.tick_params(labelsize=_SMALL)
    if not pts:
        ax.text(0.5, 0.5, "no finite std values", transform=ax.transAxes, ha="center", color="0.3")
        return
    ax.scatter(
        [p[0] for p in pts],
        [p[1] for p in pts],
        s=14,
        c=[colors.get(p[2], BEFORE_COLOR) for p in pts],
        edgecolors="white",
        linewidths=0.4,
        zorder=3,
    )
    lo = min(min(p[0], p[1]) for p in pts)
    hi = max(max(p[0], p[1]) for p in pts)
    if lo > 0 and hi / lo > 100:
        ax.set_xscale("log")
        ax.set_yscale("log")
        lo, hi = lo / 1.5, hi * 1.5
    else:
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 1e-3)
        lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], color=REFERENCE_COLOR, linestyle="--", linewidth=0.9, zorder=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.text(
        0.97,
        0.03,
        "dashed: unchanged",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=7,
        color="0.4",
    )


def load_summary(report_frame: pd.DataFrame, *, max_bars: int = 30) -> Figure:
    """One figure summarising a partial load from its per-key report frame.

    Expected columns (all optional except that at least one change column is needed for the
    bars; missing ones just drop their panel):

    * ``key`` — tensor name (the index is used when absent);
    * ``status`` (or ``action``, as in :meth:`sd_widgets.LoadReport.to_frame`: ``load``,
      ``adapt``, ``tied``, ``bn_reset``) — colours bars and points, counted in a panel;
    * ``rel_l2_change`` (or ``relative_l2_change``; else ``max_abs_change``) — one horizontal bar
      per tensor with a finite value, largest ``max_bars`` first; tensors with ``inf`` (all zeros
      before: fresh biases, ``running_mean``) are listed in a note instead of drawn;
    * ``before_std`` and ``after_std`` — scatter with the ``y = x`` (unchanged) line.

    Other columns (``before_mean``, ``after_mean``, ...) are ignored.
    """
    import pandas as pd

    frame = report_frame.copy()
    if "key" not in frame.columns:
        frame["key"] = [str(i) for i in frame.index]
    if len(frame) == 0:
        return _message(_new_figure(6, 2), "empty load report: nothing to summarise")
    group = next((c for c in ("status", "action") if c in frame.columns), None)
    if group is not None:
        frame["status"] = frame[group].astype(str)
    for col in ("rel_l2_change", "relative_l2_change", "max_abs_change", "before_std", "after_std"):
        if col in frame.columns:  # None / pd.NA / strings -> NaN, so float() never fails
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    candidates = [(c, lbl) for c, lbl in _METRICS if c in frame.columns]
    # prefer a column with finite values (relative change is inf for all-zero "before" tensors)
    metric = next(
        (m for m in candidates if frame[m[0]].map(math.isfinite).any()),
        candidates[0] if candidates else None,
    )
    has_status = group is not None
    has_std = "before_std" in frame.columns and "after_std" in frame.columns
    colors = _status_colors([str(s) for s in frame["status"].tolist()] if has_status else [])

    n_bars = 0
    if metric is not None:
        n_bars = min(int(frame[metric[0]].map(math.isfinite).sum()), max_bars)
    side = int(has_status) + int(has_std)
    height = max(3.6, 0.2 * n_bars + 1.4, 3.0 * side)
    fig = _new_figure(11 if side else 7.5, height)
    if side:
        gs = fig.add_gridspec(side, 2, width_ratios=[1.7, 1])
        ax_bars = fig.add_subplot(gs[:, 0])
        row = 0
        if group is not None:
            _status_counts(fig.add_subplot(gs[row, 1]), frame, colors, group.capitalize())
            row += 1
        if has_std:
            _std_scatter(fig.add_subplot(gs[row, 1]), frame, colors)
    else:
        ax_bars = fig.add_subplot()
    if metric is None:
        ax_bars.set_axis_off()
        ax_bars.text(
            0.5,
            0.5,
            "no change column (rel_l2_change / max_abs_change) in the frame",
            ha="center",
            va="center",
            transform=ax_bars.transAxes,
            color="0.3",
        )
    else:
        _bars(ax_bars, frame, metric[0], metric[1], colors, max(1, int(max_bars)))
    fig.suptitle(f"Load summary: {len(frame)} tensors", fontsize=10)
    return fig
