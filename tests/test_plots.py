"""Tests for sd_widgets.load._plots: figure structure, PNG rendering, no pyplot.

Each plot is also written to /tmp/sdw_plots/ so it can be looked at.
"""

from __future__ import annotations

import ast
import math
import pickle
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from sd_widgets.load import _plots as plots_module
from sd_widgets.load import _stats as stats_module
from sd_widgets.load._plots import (
    AFTER_COLOR,
    BEFORE_COLOR,
    PNG_SIGNATURE,
    STATUS_COLORS,
    bn_running_stats,
    figure_to_png,
    histogram_overlay,
    load_summary,
    shorten,
)
from sd_widgets.load._stats import change_frame
from sd_widgets.statuses import STATUS_INFO, STATUSES

OUT = Path("/tmp/sdw_plots")


def save(fig: Figure, name: str) -> bytes:
    png = figure_to_png(fig, dpi=100)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.png").write_bytes(png)
    return png


def small_cnn(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3),
        torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 4 * 4, 10),
    )


@pytest.fixture(scope="module")
def before_after():
    """A freshly initialised model (before) and a 'pretrained' one with trained BN stats (after)."""
    before = small_cnn(0)
    after = small_cnn(1)
    after.train()
    with torch.no_grad():
        for _ in range(3):
            after(torch.randn(8, 3, 8, 8) * 2 + 0.5)
    return before.state_dict(), after.state_dict()


# ------------------------------------------------------------------------------- helpers


def test_figure_to_png_and_shorten():
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    assert figure_to_png(fig).startswith(PNG_SIGNATURE)
    assert shorten("short") == "short"
    long = "encoder.layers.11.self_attention.output_projection.weight"
    s = shorten(long, 30)
    assert len(s) == 30 and s.startswith("…") and long.endswith(s[1:])


def _imports(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is None:  # from .. import x
            names.update("." * node.level + a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + node.module)
    return names


def test_imports_no_pyplot_and_only_allowed_modules():
    """plots never touches pyplot; stats/plots import only torch, matplotlib, pandas, tqdm,
    stdlib — stats may import units and _kernels and plots stats and statuses (leaf modules:
    the one dtype spelling, the fused passes, the one vocabulary)."""
    allowed = {"torch", "matplotlib", "pandas", "tqdm", "numpy", *sys.stdlib_module_names}
    for module, local in (
        (stats_module, {"..units", ".._kernels"}),
        (plots_module, {"._stats", "..statuses"}),
    ):
        names = _imports(module)
        assert not any("pyplot" in n for n in names)
        assert {n for n in names if n.startswith(".")} <= local
        assert {n.split(".")[0] for n in names if not n.startswith(".")} <= allowed


# ------------------------------------------------------------------------------- histogram_overlay


def test_histogram_overlay_grid(before_after):
    before, after = before_after
    fig = histogram_overlay(before, after)
    float_keys = [k for k in before if k in after]
    assert len(float_keys) == 16
    assert len(fig.axes) == 12  # max_panels default
    assert "+4 more" in fig.get_suptitle()
    save(fig, "histogram_overlay_all")


def test_histogram_overlay_truncates(before_after):
    before, after = before_after
    keys = [k for k in before if before[k].is_floating_point()]
    fig = histogram_overlay(before, after, keys=keys, bins=40, max_panels=4)
    assert len(fig.axes) == 4
    assert f"+{len(keys) - 4} more" in fig.get_suptitle()
    for ax, key in zip(fig.axes, keys, strict=False):
        assert ax.get_title() == shorten(key)
        # filled before + before outline + after line, all StepPatch artists
        assert len(ax.patches) == 3
        assert ax.get_xlabel() == "value"
    fill, outline, line = fig.axes[0].patches
    assert to_hex(fill.get_facecolor()) == to_hex(outline.get_edgecolor()) == BEFORE_COLOR.lower()
    assert to_hex(line.get_edgecolor()) == AFTER_COLOR.lower()
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["before", "after"]
    save(fig, "histogram_overlay")


def test_histogram_overlay_single_and_odd_tensors():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 64, generator=g)
    fig = histogram_overlay(
        w, w * 0.5 + 0.1, keys=["backbone.stages.3.blocks.2.attention.qkv.weight"]
    )
    assert len(fig.axes) == 1 and fig.axes[0].get_title().startswith("…")
    with_nan = w.clone()
    with_nan[0, :5] = float("nan")
    odd = {
        "nan": (w, with_nan),
        "meta": (torch.empty(10, device="meta"), torch.randn(10, generator=g)),
        "empty": (torch.empty(0), torch.empty(0)),
        "const": (torch.tensor(3), torch.tensor(3)),
        "reshaped": (torch.randn(4, 4, generator=g), torch.randn(2, 8, generator=g)),
    }
    fig = histogram_overlay({k: v[0] for k, v in odd.items()}, {k: v[1] for k, v in odd.items()})
    assert len(fig.axes) == 5
    texts = {ax.get_title(): " ".join(t.get_text() for t in ax.texts) for ax in fig.axes}
    assert "after: 5 NaN/inf" in texts["nan"]
    assert "before: meta tensor" in texts["meta"]
    assert "empty" in texts["empty"] and "unchanged" in texts["const"]
    assert "shape (4, 4) → (2, 8)" in texts["reshaped"]
    save(fig, "histogram_overlay_edge_cases")
    with pytest.raises(KeyError, match="not in both"):
        histogram_overlay({"a": w}, {"b": w}, keys=["a"])
    empty = histogram_overlay({}, {})
    assert figure_to_png(empty).startswith(PNG_SIGNATURE)


# ------------------------------------------------------------------------------- bn_running_stats


def test_bn_running_stats_tensors(before_after):
    before, after = before_after
    fig = bn_running_stats(
        before["1.running_mean"],
        after["1.running_mean"],
        before["1.running_var"],
        after["1.running_var"],
        name="1",
    )
    assert len(fig.axes) == 2
    mean_ax, var_ax = fig.axes
    assert mean_ax.get_title() == "1 · running_mean" and var_ax.get_title() == "1 · running_var"
    # before, after, reset reference line
    assert len(mean_ax.lines) == 3 and len(var_ax.lines) == 3
    assert (
        mean_ax.lines[0].get_color() == BEFORE_COLOR and mean_ax.lines[1].get_color() == AFTER_COLOR
    )
    assert mean_ax.lines[1].get_ydata().tolist() == pytest.approx(after["1.running_mean"].tolist())
    assert "before: reset values" in " ".join(t.get_text() for t in mean_ax.texts)
    save(fig, "bn_running_stats")


def test_bn_running_stats_mapping(before_after):
    before, after = before_after
    modules = {
        f"block{i}.bn": {
            "before_mean": before[f"{m}.running_mean"],
            "after_mean": after[f"{m}.running_mean"],
            "before_var": before[f"{m}.running_var"],
            "after_var": after[f"{m}.running_var"],
        }
        for i, m in enumerate(["1", "4", "1", "4", "1"])
    }
    fig = bn_running_stats(modules, max_modules=3)
    assert len(fig.axes) == 6
    assert "+2 more modules" in fig.get_suptitle()
    assert fig.axes[2].get_title().startswith("block1.bn")
    save(fig, "bn_running_stats_modules")
    only_before = bn_running_stats(torch.zeros(4), None, torch.ones(4), None)
    assert len(only_before.axes[0].lines) == 2
    assert figure_to_png(only_before).startswith(PNG_SIGNATURE)


# ------------------------------------------------------------------------------- load_summary


def report(before, after) -> pd.DataFrame:
    frame = change_frame(before, after)
    frame.insert(1, "status", "loaded")
    frame.loc[frame["key"].str.startswith("7."), "status"] = "skipped"
    frame.loc[frame["status"] == "skipped", ["rel_l2_change", "max_abs_change"]] = math.nan
    return frame


def test_load_summary_full(before_after):
    before, after = before_after
    frame = report(before, after)
    fig = load_summary(frame)
    assert len(fig.axes) == 3  # bars, status counts, std scatter
    bars_ax, status_ax, scatter_ax = fig.axes
    rel = frame["rel_l2_change"]
    finite = rel[rel.map(math.isfinite)]
    assert len(bars_ax.patches) == len(finite) == 10
    labels = [t.get_text() for t in bars_ax.get_yticklabels()]
    assert labels[0] == frame.loc[finite.idxmax(), "key"]  # largest change first
    widths = [p.get_width() for p in bars_ax.patches]
    assert widths == sorted(widths, reverse=True) and widths[0] == pytest.approx(finite.max())
    # running_mean / num_batches_tracked were all zeros before: relative change is inf, listed
    note = " ".join(t.get_text() for t in bars_ax.texts)
    assert "∞ for 4 tensor(s) that were all zeros before" in note
    assert [t.get_text() for t in status_ax.get_yticklabels()] == ["loaded", "skipped"]
    assert len(scatter_ax.collections) == 1
    assert "Load summary" in fig.get_suptitle()
    save(fig, "load_summary")


def test_load_summary_missing_columns_and_many_rows():
    n = 80
    frame = pd.DataFrame(
        {
            "key": [f"layers.{i}.mlp.fc.weight" for i in range(n)],
            "relative_l2_change": [10 ** (-i / 10) for i in range(n)],
        }
    )
    fig = load_summary(frame, max_bars=25)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.patches) == 25 and "largest 25 of 80" in ax.get_title()
    assert ax.get_xscale() == "log"
    save(fig, "load_summary_minimal")
    no_metric = load_summary(pd.DataFrame({"key": ["a"], "status": ["skipped"]}))
    assert len(no_metric.axes) == 2
    assert figure_to_png(no_metric).startswith(PNG_SIGNATURE)
    empty = load_summary(pd.DataFrame(columns=["key", "status", "rel_l2_change"]))
    assert figure_to_png(empty).startswith(PNG_SIGNATURE)
    zeros = load_summary(pd.DataFrame({"key": ["a", "b"], "rel_l2_change": [0.0, 0.0]}))
    assert "all changes are 0" in " ".join(t.get_text() for t in zeros.axes[0].texts)


def test_load_summary_load_report_columns():
    """The frame LoadReport.to_frame() produces: an ``action`` column, None/NA values."""
    frame = pd.DataFrame(
        {
            "key": ["fc.weight", "fc.bias", "bn.running_mean", "bn.running_var", "head.weight"],
            "action": ["load", "load", "load", "bn_reset", "adapt"],
            "before_std": [0.1, 0.0, 0.0, 0.2, 0.05],
            "after_std": [0.12, 0.01, 0.3, 0.0, 0.05],
            "max_abs_change": [0.3, 0.02, 0.9, 0.4, None],
            "rel_l2_change": [0.25, math.inf, math.inf, 1.0, pd.NA],
        }
    )
    fig = load_summary(frame)
    bars_ax, action_ax, _ = fig.axes
    assert [t.get_text() for t in bars_ax.get_yticklabels()] == ["bn.running_var", "fc.weight"]
    assert action_ax.get_title() == "Action"
    assert [t.get_text() for t in action_ax.get_yticklabels()] == ["load", "bn_reset", "adapt"]
    save(fig, "load_summary_actions")
    # every relative change infinite: fall back to max_abs_change
    all_inf = frame.assign(rel_l2_change=math.inf)
    ax = load_summary(all_inf).axes[0]
    assert "max |after − before|" in ax.get_xlabel() and len(ax.patches) == 4


def test_change_of_an_all_zero_tensor_is_labelled_without_inf():
    """A fresh bias or running_mean starts at zero: its relative change is undefined, so the
    panel says what happened instead of printing 'inf'."""
    import torch

    from sd_widgets.load._plots import histogram_overlay

    after = torch.tensor([0.5, -0.25, 0.0, 1.0])
    fig = histogram_overlay({"bias": torch.zeros(4)}, {"bias": after})
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("was all zeros; max |change| 1" in t for t in texts), texts
    assert not any("inf" in t for t in texts), texts


# --------------------------------------------------------------------------- one vocabulary


def test_status_colours_come_from_the_one_vocabulary(before_after):
    # the plots, the Explorer and the CLI colour every comparison status alike
    for status, info in STATUS_INFO.items():
        assert STATUS_COLORS[status] == info.colour, status
    assert STATUS_COLORS["match"] != STATUS_COLORS["missing"]
    assert STATUS_COLORS["missing"] != STATUS_COLORS["missing_buffer"]
    assert len({STATUS_COLORS[s] for s in STATUSES}) == len(STATUSES)
    # load outcomes: a plain load looks like a match; each outcome has its own colour
    actions = ("load", "adapt", "tied", "bn_reset", "skipped")
    assert STATUS_COLORS["load"] == STATUS_INFO["match"].colour
    assert len({STATUS_COLORS[a] for a in actions}) == len(actions)
    # and the status-count bars really are drawn in those colours
    before, after = before_after
    frame = change_frame(before, after)
    statuses = [STATUSES[i % len(STATUSES)] for i in range(len(frame))]
    frame.insert(1, "status", statuses)
    fig = load_summary(frame)
    status_ax = fig.axes[1]
    names = [t.get_text() for t in status_ax.get_yticklabels()]
    drawn = {n: to_hex(p.get_facecolor()) for n, p in zip(names, status_ax.patches, strict=True)}
    assert drawn == {s: STATUS_INFO[s].colour.lower() for s in set(statuses)}


# --------------------------------------------------------------------------- readable layout

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _tick_labels(fig: Figure) -> tuple[list[Text], set[int]]:
    """Tick labels drawn (their tick inside the view), and the ids of every tick label."""
    drawn: list[Text] = []
    every: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            eps = (hi - lo) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for label in (tick.label1, tick.label2):
                    every.add(id(label))
                    loc = tick.get_loc()
                    inside = loc is not None and lo - eps <= loc <= hi + eps
                    if inside and label.get_visible() and label.get_text().strip():
                        drawn.append(label)
    return drawn, every


def layout_problems(fig: Figure, name: str) -> list[str]:
    """Draw ``fig`` and list every text or legend that leaves the figure or overlaps another
    (tick labels among themselves excepted: those are matplotlib's own spacing). The PNG goes
    to tests/artifacts/ to be looked at."""
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"plots-layout-{name}.png").write_bytes(figure_to_png(fig, dpi=int(fig.dpi)))
    renderer = fig.canvas.get_renderer()
    legends = [leg for leg in fig.findobj(Legend) if leg.get_visible()]
    in_legends = {id(t) for leg in legends for t in [*leg.get_texts(), leg.get_title()]}
    ticks, tick_ids = _tick_labels(fig)
    boxes: list[tuple[str, Bbox, bool]] = [
        (f"tick {t.get_text()!r}", t.get_window_extent(renderer), True) for t in ticks
    ]
    for t in fig.findobj(Text):
        if id(t) in in_legends or id(t) in tick_ids or not t.get_visible():
            continue
        if t.get_text().strip():
            boxes.append((f"text {t.get_text()!r}", t.get_window_extent(renderer), False))
    boxes += [
        (f"legend {i}", leg.get_window_extent(renderer), False) for i, leg in enumerate(legends)
    ]
    page = fig.bbox
    problems = [
        f"{what} leaves the figure ({box.bounds} not in {page.bounds})"
        for what, box, _ in boxes
        if box.x0 < page.x0 - 0.5
        or box.y0 < page.y0 - 0.5
        or box.x1 > page.x1 + 0.5
        or box.y1 > page.y1 + 0.5
    ]
    for i, (what_a, a, tick_a) in enumerate(boxes):
        for what_b, b, tick_b in boxes[i + 1 :]:
            if tick_a and tick_b:
                continue
            if a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5:
                problems.append(f"{what_a} overlaps {what_b}")
    return problems


def odd_pairs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Tensors that bring every kind of note: all zeros before, NaN after, unchanged, reshaped,
    meta, empty, an fp16 -> fp32 cast, counts large enough for a scientific offset."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 3, 7, 7, generator=g) * 0.05
    nan = w * 1.3
    nan[0, 0, :2] = float("nan")
    return {
        "downsample.0.bias": (torch.zeros(256), torch.randn(256, generator=g) * 0.1),
        "conv1.weight": (w, nan),
        "bn1.weight": (torch.ones(64), torch.ones(64)),
        "stem.conv.weight": (torch.randn(64, 3, 7, 7, generator=g), torch.randn(64, 1, 7, 7)),
        "head.weight": (torch.empty(10, 512, device="meta"), torch.randn(10, 512, generator=g)),
        "empty": (torch.empty(0), torch.empty(0)),
        "embed.weight": (torch.randn(300, 64, generator=g).half(), torch.randn(300, 64)),
        "encoder.layers.11.self_attention.output_projection.weight": (
            torch.randn(512, 512, generator=g),
            torch.randn(512, 512, generator=g) * 2,
        ),
    }


def test_explorer_histogram_panels_have_no_overlapping_or_cut_annotations(monkeypatch):
    """The panels exactly as the Explorer draws them (its own function: a small figure with
    enlarged text): the title, the notes (all zeros, NaN, unchanged, shape, meta, empty, cast)
    and the legend neither overlap one another nor leave the picture."""
    from sd_widgets.widget import _explorer as explorer

    drawn: list[Figure] = []
    real = plots_module.figure_to_png

    def capture(fig: Figure, dpi: int = 100) -> bytes:
        drawn.append(fig)
        return real(fig, dpi=dpi)

    monkeypatch.setattr(plots_module, "figure_to_png", capture)
    # what only the load knows, as the caller's notes: long ones are wrapped to the panel
    notes = [
        "cast float16 → float32",
        "adapter 'overlap': checkpoint (10, 512) → model (3, 512)",
        "tied to 'backbone.layer4.1.embed.weight'",
    ]
    fig = histogram_overlay(
        torch.randn(3, 512),
        torch.randn(3, 512),
        keys=["head.weight"],
        title="",
        notes={"head.weight": notes},
    )
    fig.set_size_inches(3.6, 2.7)
    for text in fig.findobj(Text):
        text.set_fontsize(max(float(text.get_fontsize()) * 1.3, 8.0))
    problems = layout_problems(fig, "explorer-caller-notes")
    shown = fig.axes[0].texts[0].get_text()
    assert all(note in " ".join(shown.split()) for note in notes), shown  # all of it, wrapped
    assert len(shown.splitlines()) > 2 + len(notes), shown
    for key, (before, after) in odd_pairs().items():
        src = explorer._histogram_src(f"backbone.layer4.1.{key}", before, after)
        assert src.startswith("data:image/png;base64,")
        fig = drawn.pop()
        texts = " ".join(t.get_text() for t in fig.axes[0].texts)
        problems += [f"{key}: {p}" for p in layout_problems(fig, f"explorer-{key}")]
        if key == "downsample.0.bias":
            assert "was all zeros" in texts and "100% of values changed" in texts
        if key == "embed.weight":
            assert "dtype float16 → float32" in texts
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("name", "kwargs", "size"),
    [
        ("grid", {}, None),
        (
            "one-column",
            {"ncols": 1, "max_panels": 4, "title": "Values before vs after a long load"},
            None,
        ),
        ("wide-row", {"ncols": 8}, None),
        ("log", {"log": True, "ncols": 4}, None),
        ("squeezed", {"ncols": 4}, (9.0, 5.0)),
    ],
)
def test_histogram_grids_have_no_overlapping_or_cut_annotations(name, kwargs, size):
    """Many panels, one column, one wide row, log counts, and a figure squeezed after it was
    built (text is fitted when drawn): nothing overlaps, nothing leaves the figure."""
    pairs = odd_pairs()
    fig = histogram_overlay(
        {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}, **kwargs
    )
    if size is not None:
        fig.set_size_inches(*size)
    problems = layout_problems(fig, f"grid-{name}")
    assert not problems, "\n".join(problems)
    assert figure_to_png(fig) == figure_to_png(fig)  # fitting starts from the full texts
    assert figure_to_png(pickle.loads(pickle.dumps(fig))).startswith(PNG_SIGNATURE)
    # the fitted titles keep the end of the key (its most specific part), more than a stub
    titles = [ax.get_title() for ax in fig.axes]
    for title, key in zip(titles, pairs, strict=False):
        assert key.endswith(title.removeprefix("…")) and len(title) >= min(len(key), 8), title


def test_bn_plots_have_no_overlapping_or_cut_annotations(before_after):
    """BatchNorm figures as the Explorer draws them (one module) and with several modules, reset
    notes on both sides, a meta side and a long module name: legend outside the data, notes
    under the axes, nothing overlapping."""
    before, after = before_after
    one = {
        "layer1.0.bn1": {
            "before_mean": before["1.running_mean"],
            "after_mean": after["1.running_mean"],
            "before_var": before["1.running_var"],
            "after_var": after["1.running_var"],
        }
    }
    fig = bn_running_stats(one, max_modules=1)
    fig.set_dpi(80)
    problems = layout_problems(fig, "bn-explorer")
    many = {
        "encoder.stages.3.blocks.11.downsample.norm_layer.bn": one["layer1.0.bn1"],
        "reset.bn": {
            "before_mean": torch.zeros(16),
            "after_mean": torch.zeros(16),
            "before_var": torch.ones(16),
            "after_var": torch.ones(16),
        },
        "meta.bn": {
            "before_mean": torch.empty(16, device="meta"),
            "after_mean": torch.randn(16),
            "before_var": torch.empty(16, device="meta"),
            "after_var": torch.rand(16),
        },
        "more.bn": one["layer1.0.bn1"],
    }
    fig = bn_running_stats(many, max_modules=3)
    problems += layout_problems(fig, "bn-modules")
    notes = " ".join(t.get_text() for t in fig.axes[2].texts)
    assert "before: reset values" in notes and "after: reset values" in notes
    assert "+1 more modules" in fig.get_suptitle()
    fig.set_size_inches(5.0, 6.0)  # narrow: titles and notes are fitted when drawn
    problems += layout_problems(fig, "bn-narrow")
    assert not problems, "\n".join(problems)


def test_load_summary_has_no_overlapping_or_cut_annotations(before_after):
    """The load summary's notes (tensors that were all zeros, all changes 0) and bar labels:
    with a report, with 80 keys, and with half the changes infinite."""
    before, after = before_after
    frame = report(before, after)
    n = 80
    many = pd.DataFrame(
        {
            "key": [f"encoder.layers.{i}.mlp.fc.weight" for i in range(n)],
            "relative_l2_change": [10 ** (-i / 10) for i in range(n)],
        }
    )
    half_inf = frame.assign(
        rel_l2_change=[math.inf if i % 2 else 0.1 * i for i in range(len(frame))]
    )
    problems = []
    for name, f in (("report", frame), ("many", many), ("half-inf", half_inf)):
        problems += [f"{name}: {p}" for p in layout_problems(load_summary(f), f"summary-{name}")]
    assert not problems, "\n".join(problems)


def _shown(fig: Figure) -> list[tuple[str, bool]]:
    """Every text of a drawn figure as matplotlib shows it: (string, parsed as mathtext)."""
    fig.canvas.draw()
    out = []
    for text in fig.findobj(Text):
        if text.get_text():
            shown, ismath = text._preprocess_math(text.get_text())
            out.append((shown, bool(ismath)))
    return out


def test_dollar_signs_in_keys_from_a_file_are_drawn_as_text_not_mathtext():
    # module names may hold "$" (only "." is refused): unescaped, "$\nosuchcmd$" raised
    # ValueError from the draw and "$x^2$" was typeset as a formula
    import sd_widgets as sdw

    hostile = ["$\\nosuchcmd$", "$x^$", "a$b$c$d", "\\$", "$$"]
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    for name in hostile:
        model.add_module(
            name, torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
        )
    ckpt = {k: v + 1 for k, v in model.state_dict().items()}
    ckpt.update({k: torch.randn(3) for k in ckpt if k.endswith("running_mean")})
    report = sdw.partial_load(model, sdw.compare(model, ckpt).plan())
    figures = {
        "histograms": report.plot_histograms(),
        "bn": bn_running_stats({f"{n}.1": report.bn_stats()[f"{n}.1"] for n in hostile[:3]}),
        "summary": load_summary(report.to_frame()),
        "notes": histogram_overlay(
            {"$x^$": torch.zeros(4)}, {"$x^$": torch.ones(4)}, notes={"$x^$": ["tied to $x^$"]}
        ),
    }
    for name, fig in figures.items():
        assert figure_to_png(fig).startswith(PNG_SIGNATURE), name
        shown = _shown(fig)
        assert not [s for s, ismath in shown if ismath], name
        joined = "\n".join(s for s, _ in shown)
        if name == "notes":
            assert "tied to $x^$" in joined and "$x^$" in joined
        save(fig, f"dollar_keys_{name}")
    hist = "\n".join(s for s, _ in _shown(figures["histograms"]))
    assert "$\\nosuchcmd$.0.weight" in hist or "…" in hist
    bn = "\n".join(s for s, _ in _shown(figures["bn"]))
    assert "$\\nosuchcmd$.1 · running_mean" in bn and "$x^$.1 · running_var" in bn
    ticks = [t.get_text() for t in figures["summary"].axes[0].get_yticklabels()]
    assert all(t.replace("\\$", "$") in report.to_frame()["key"].tolist() for t in ticks)


def test_a_cut_never_leaves_half_an_escaped_dollar():
    fig = Figure(figsize=(2, 1))
    text = fig.text(0, 0, "")
    for line in ["ab\\$cd\\$ef\\$gh\\$ij\\$kl\\$mn" * 3]:
        for width in range(10, 200, 7):
            cut = plots_module._cut(text, line, float(width), keep_end=False)
            assert not cut.endswith("\\…"), (width, cut)
