"""The standalone HTML report: one offline file, opened from disk in a real browser.

``Explorer.to_html(path)`` and ``sd-widgets diff ... --format html > report.html`` write one
self-contained page (the Explorer's own front end and payload inlined). Here Chromium opens it
from disk in an offline context with every request but the file itself aborted, and the test
operates it: search, "only problems", a legend filter, expand/collapse, the problems strip and
the details. It is read-only (no Load, Undo, selection or tabs; a click selects nothing), says
which files and which sd_widgets version produced it, and key names from a hostile checkpoint
(``<img src=x onerror=...>``, ``</script>``, a right-to-left override, control characters) stay
literal text: no element is injected, no script runs, nothing is fetched.
Screenshots: ``tests/artifacts/report-*.png``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from playwright.sync_api import expect
from torch import nn

import sd_widgets as sdw
from sd_widgets import demo

from .harness import isolated_env

pytestmark = pytest.mark.browser

#: module names a stranger's checkpoint may hold (no dots: each is one module of the model)
HOSTILE = {
    "img": "<img src=x onerror=alert(1)>",
    "script": "</script><script>alert(2)</script>",
    "rtl": "evil\u202egnp_exe",
    "ctrl": "bell\x07esc\x1b[31mnl\nnul\x00",
}

NETS_PY = f"""
import torch
from torch import nn

HOSTILE = {HOSTILE!r}


def build():
    model = nn.Sequential()
    model.add_module("stem", nn.Linear(4, 4))
    for name in HOSTILE.values():
        model.add_module(name, nn.Linear(4, 2))
    return model
"""


def hostile_case(tmp_path: Path) -> tuple[nn.Module, dict[str, torch.Tensor], Path]:
    """A model with hostile module names and a checkpoint of hostile keys (both files)."""
    nets = tmp_path / "nets.py"
    nets.write_text(NETS_PY)
    namespace: dict = {}
    exec(compile(NETS_PY, str(nets), "exec"), namespace)
    model = namespace["build"]()
    ckpt = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("stem.")}
    ckpt["</script><!--.weight"] = torch.zeros(3)  # unexpected: only in the checkpoint
    ckpt[HOSTILE["img"] + ".bias"] = torch.zeros(5)  # shape mismatch
    path = tmp_path / "hostile <ckpt>.pt"
    torch.save(ckpt, path)
    return model, ckpt, path


class Shots:
    """``shots.screenshot(name)``: ``<artifacts>/<name>.png`` of the page (as the harness names
    them; tests/browser/ARTIFACTS.md lists them)."""

    def __init__(self, page, artifacts: Path):
        self.page, self.artifacts = page, artifacts

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path))
        print(f"[sdw] screenshot: {path}")
        return path


@pytest.fixture
def offline_page(browser, sdw_artifacts, request):
    """A page in an offline context that aborts every request but file:// ones.

    Yields ``(page, fetched, dialogs, errors)``: URLs asked for, dialogs opened, page errors.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    fetched: list[str] = []
    dialogs: list[str] = []
    errors: list[str] = []

    def route(r):
        fetched.append(r.request.url)
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        yield page, fetched, dialogs, errors
    finally:
        if getattr(getattr(request.node, "rep_call", None), "failed", False):
            page.screenshot(path=str(sdw_artifacts / f"FAILED-{request.node.name}-report.png"))
        context.close()


def open_report(page, path: Path):
    page.goto(path.resolve().as_uri())
    root = page.locator(".sdw-explorer")
    expect(root).to_have_attribute("data-ready", "true")
    expect(root).to_have_attribute("data-readonly", "true")
    return root


#: what the row of key ``k`` shows in the model column: its name, its hover text, and the name
#: of its module's row
SHOWN = """(r, k) => {
    const row = [...r.querySelectorAll('.sdw-row[data-role=leaf]')].find(e => e.dataset.key === k);
    const name = row.querySelector('[data-role=model] [data-role=name]');
    const mod = [...r.querySelectorAll('.sdw-row[data-role=module]')].find(
        e => e.dataset.path === k.slice(0, k.lastIndexOf('.')));
    return {name: name.textContent, title: name.title,
            module: mod.querySelector('[data-role=model] [data-role=name]').textContent};
}"""


def leaf(root, key: str):
    return root.locator(f".sdw-row[data-role=leaf][data-key={json.dumps(key)}]")


def test_api_report_offline_operates_and_is_read_only(offline_page, tmp_path, sdw_artifacts):
    page, fetched, dialogs, errors = offline_page
    shots = Shots(page, sdw_artifacts)
    model = demo.target_model("dataparallel")
    w = sdw.Explorer(model, demo.variant("dataparallel"))
    n = w.tree["n_keys"]
    out = w.to_html(tmp_path / "report.html")
    assert out == tmp_path / "report.html"
    text = out.read_text(encoding="utf-8")
    # one file: nothing it refers to outside itself
    for ref in ('src="http', 'href="http', "<link", "@import", "url(http"):
        assert ref not in text, ref
    root = open_report(page, out)

    head = page.locator("[data-role=report-head]")
    expect(head).to_contain_text(f"sd_widgets {sdw.__version__}")
    expect(head).to_contain_text("SmallCNN")
    expect(head).to_contain_text(f"{n}:")
    # the same side-by-side tree, legend, banner text and problems strip
    expect(root.locator("[data-role=summary]")).to_contain_text(f"{n} keys")
    expect(root.locator("[data-role=legend-item]").first).to_be_visible()
    expect(root.locator("[data-role=problems]")).to_contain_text(f"{n} problems")
    expect(root.locator("[data-role=banner-text]")).to_contain_text("'module.'")
    # read-only: nothing that would ask a kernel for something
    for sel in (
        "[data-action=load]",
        "[data-action=undo]",
        "[data-action=select-loadable]",
        "[data-action=select-none]",
        "[data-action=apply-banner]",
        "[data-role=tab]",
        "[data-role=values]",  # no values were compared: Compare would need a kernel
    ):
        expect(root.locator(sel).first).to_be_hidden()
    shots.screenshot("report-api")

    # search
    key = "backbone.stem.conv.weight"
    n_all = int(root.get_attribute("data-n-visible"))
    root.locator("input[data-role=search]").fill("stem.conv")
    expect(leaf(root, key)).to_be_visible()
    expect(root).not_to_have_attribute("data-n-visible", str(n_all))
    assert int(root.get_attribute("data-n-visible")) < n_all
    expect(root.locator(".sdw-row[data-role=leaf][data-key='classifier.weight']")).to_have_count(0)
    shots.screenshot("report-api-search")
    root.locator("input[data-role=search]").fill("")
    expect(root).to_have_attribute("data-n-visible", str(n_all))
    # a legend filter: hide the missing buffers
    buffers = root.locator("[data-role=legend-item][data-status=missing_buffer]")
    buffers.click()
    expect(buffers).to_have_attribute("aria-pressed", "false")
    expect(leaf(root, "backbone.stem.bn.running_mean")).to_have_count(0)
    buffers.click()
    expect(leaf(root, "backbone.stem.bn.running_mean")).to_have_count(1)
    # collapse / expand all
    root.locator("[data-action=collapse-all]").click()
    expect(leaf(root, key)).to_have_count(0)
    root.locator("[data-action=expand-all]").click()
    expect(leaf(root, key)).to_be_visible()
    # only problems (every key of an unaligned DDP checkpoint is one): the same rows
    root.locator("input[data-role=only-problems]").check()
    expect(leaf(root, key)).to_be_visible()
    # the problems strip jumps to a row; Enter opens its details
    chip = root.locator("[data-action=goto-problem]").first
    target = chip.get_attribute("data-key")
    chip.click()
    expect(leaf(root, target)).to_be_focused()
    page.keyboard.press("Enter")
    expect(root.locator("[data-role=details]")).to_contain_text(target)
    shots.screenshot("report-api-details")

    # the banner's rule applied in the widget: the report shows the aligned tree; a click or
    # Space on a loadable row selects nothing (there is no kernel), nothing is checked
    w.handle_action({"action": "accept_suggestion", "id": w.banner["id"]})
    assert w.selected_keys and not w.banner
    # with the values compared (the model and the checkpoint were trained apart: all changed)
    w.handle_action({"action": "compare_values"})
    assert w.values["state"] == "ready", w.message
    root = open_report(page, w.to_html(tmp_path / "aligned.html"))
    expect(root.locator("[data-role=summary]")).to_contain_text(f"{n // 2} matches")
    values = root.locator("[data-role=values]")
    expect(values).to_be_visible()
    expect(root.locator("[data-action=compare_values]")).to_be_hidden()
    badges = root.locator("[data-role=canvas] .sdw-row[data-role=leaf] [data-role=value]")
    expect(badges.first).to_be_visible()
    assert badges.count() == root.locator("[data-role=canvas] .sdw-row[data-role=leaf]").count()
    row = leaf(root, "classifier.weight")
    expect(row).to_have_attribute("data-selectable", "true")
    row.click()
    page.keyboard.press(" ")
    expect(row).to_be_focused()
    expect(row).to_have_attribute("data-selected", "false")
    assert root.locator(".sdw-row[data-selected=true]").count() == 0
    expect(root.locator("[data-role=banner]")).to_be_hidden()
    shots.screenshot("report-api-aligned")

    assert [u for u in fetched if not u.startswith("file://")] == []
    assert dialogs == [] and errors == [], (dialogs, errors)


def test_cli_report_keeps_hostile_names_literal(offline_page, tmp_path, sdw_artifacts):
    page, fetched, dialogs, errors = offline_page
    shots = Shots(page, sdw_artifacts)
    model, ckpt, path = hostile_case(tmp_path)
    report = tmp_path / "report.html"
    env = isolated_env(tmp_path / "env")
    with report.open("w", encoding="utf-8") as fh:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "sd_widgets",
                "diff",
                str(path),
                "--model",
                f"{tmp_path / 'nets.py'}:build",
                "--format",
                "html",
            ],
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
    assert proc.returncode == 1, proc.stderr  # different: exit status as for every format
    text = report.read_text(encoding="utf-8")
    assert text.count("</script>") == 2, "a key closed a <script> element"
    assert "<img" not in text and "<!--" not in text
    root = open_report(page, report)

    head = page.locator("[data-role=report-head]")
    expect(head).to_contain_text(f"sd_widgets {sdw.__version__}")
    expect(head).to_contain_text("nets.py:build")
    expect(head).to_contain_text("hostile <ckpt>.pt")
    root.locator("[data-action=expand-all]").click()

    # every key is one row whose data-key is the key, exactly (looked up in the page: CSS
    # selectors cannot spell NUL)
    drawn = root.evaluate(
        "r => [...r.querySelectorAll('.sdw-row[data-role=leaf]')].map(e => e.dataset.key)"
    )
    assert sorted(drawn) == sorted({*model.state_dict(), *ckpt})
    for name in HOSTILE.values():
        seen = root.evaluate(SHOWN, f"{name}.weight")
        assert seen == {"name": "weight", "title": f"{name}.weight", "module": name}, seen
    # the hostile texts are text, in the details too
    leaf(root, f"{HOSTILE['img']}.bias").click(force=True)  # aria-disabled: not selectable
    page.keyboard.press("Enter")
    expect(root.locator("[data-role=details]")).to_contain_text(f"{HOSTILE['img']}.bias")
    # search for a piece of markup finds the key it is in
    root.locator("input[data-role=search]").fill("</script><!--")
    expect(leaf(root, "stem.weight")).to_have_count(0)
    expect(leaf(root, "</script><!--.weight")).to_be_visible()
    chip = root.locator("[data-action=goto-problem][data-key='</script><!--.weight']")
    assert chip.evaluate("e => e.textContent").endswith("</script><!--.weight")
    shots.screenshot("report-cli-hostile")

    # nothing was injected, nothing ran, nothing was fetched
    assert page.locator("img").count() == 0
    assert page.evaluate("document.scripts.length") == 2
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    assert [u for u in fetched if not u.startswith("file://")] == []
    assert dialogs == [] and errors == [], (dialogs, errors)


def test_report_json_cannot_leave_its_script_element():
    from sd_widgets.widget._html import script_json

    value = {"k": ["</script><script>x</script>", "<!--", "a\u2028b", "&amp;"]}
    text = script_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


def test_report_of_an_unreadable_checkpoint_says_so(tmp_path):
    """An Explorer in its error state still writes a report that says so."""
    missing = tmp_path / "nope.pt"
    w = sdw.Explorer(demo.target_model("identical"), str(missing))
    text = w.to_html(tmp_path / "r.html").read_text(encoding="utf-8")
    assert str(missing) in text and '"error":{' in text


#: per visible row: a tensor's leaf name cut (its text wider than its box, or its box reaching
#: past its cell), and a change badge reaching past its status cell or shortened
NARROW_CUTS = """root => {
    const R = e => e.getBoundingClientRect();
    const out = {leaves: 0, deep: 0, cut_leaves: [], badges: 0, cut_badges: []};
    for (const row of root.querySelectorAll('[data-role=canvas] .sdw-row')) {
        for (const name of row.dataset.role === 'leaf' ? row.querySelectorAll('[data-role=name]') : []) {
            const cell = name.closest('.sdw-cell');
            const text = name.textContent;
            const leaf = text.slice(text.lastIndexOf('.') + 1);
            if (leaf.length > 10) continue;  // rows.js LEAF_CHARS: longer leaves are shortened
            out.leaves++;
            const inside = R(name).right <= R(cell).right + 1 && R(name).left >= R(cell).left - 1;
            // the room the cell has after its indent: a leaf that fits there is shown whole
            const room = cell.clientWidth - parseFloat(getComputedStyle(cell).paddingLeft);
            const need = name.scrollWidth * (leaf.length + (text === leaf ? 0 : 1)) / text.length;
            if (room < need) out.deep++;
            const whole = room < need || name.clientWidth + 1 >= need;
            if (!inside || !whole) out.cut_leaves.push([row.dataset.key, text, name.clientWidth, need, room]);
        }
        for (const badge of row.querySelectorAll('[data-role=value]')) {
            out.badges++;
            const cell = badge.closest('.sdw-cell');
            const inside = R(badge).right <= R(cell).right + 1;
            // a module's count ('Δ 18/36') and a tensor's number ('Δ 0.086') are shown whole;
            // a label ('= identical') may shorten, its title says it
            const whole = badge.scrollWidth <= badge.clientWidth + 1;
            if (!inside || (!whole && (row.dataset.role === 'module' || /[0-9]/.test(badge.textContent))))
                out.cut_badges.push([row.dataset.key || row.dataset.path, badge.textContent,
                                     Math.round(R(badge).right), Math.round(R(cell).right)]);
        }
    }
    return out;
}"""


def test_narrow_report_keeps_leaf_names_and_change_badges_readable(
    offline_page, tmp_path, sdw_artifacts
):
    """A 304 px wide tree shows each tensor's own name whole ('weight', never '…ght'; the full
    key on hover), and in a 420 px report of two checkpoints the modules' change badges
    ('Δ 30/36', the sentence on hover) and the tensors' numbers fit their Status cells."""
    page, _fetched, _dialogs, errors = offline_page
    shots = Shots(page, sdw_artifacts)
    a = demo.variant("identical")
    torch.manual_seed(0)
    b = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in a.items()}

    page.set_viewport_size({"width": 304, "height": 900})
    path = sdw.Explorer(demo.target_model("identical"), a).to_html(tmp_path / "narrow.html")
    root = open_report(page, path)
    root.locator("[data-action=expand-all]").click()
    got = root.evaluate(NARROW_CUTS)
    assert got["leaves"] >= 10 and got["cut_leaves"] == [], got
    assert got["deep"] <= 6, got  # only the deepest rows' indent leaves too little room
    name = root.locator(".sdw-row[data-role=leaf] [data-role=ckpt] [data-role=name]").first
    assert name.evaluate("e => [e.textContent, e.title]") == ["weight", "backbone.stem.conv.weight"]
    shots.screenshot("report-narrow-304")

    page.set_viewport_size({"width": 420, "height": 900})
    path = sdw.Explorer(sdw.compare_values(a, b)).to_html(tmp_path / "values.html")
    root = open_report(page, path)
    root.locator("[data-action=expand-all]").click()
    got = root.evaluate(NARROW_CUTS)
    assert got["badges"] >= 10 and got["cut_badges"] == [], got
    backbone = root.locator(".sdw-row[data-role=module][data-path=backbone] [data-role=value]")
    n = sum(1 for k, v in a.items() if k.startswith("backbone.") and not torch.equal(v, b[k]))
    assert 0 < n < 36
    expect(backbone).to_have_text(f"Δ {n}/36")
    assert f"{n} of 36 tensors changed" in backbone.evaluate("e => e.title")
    assert got["cut_leaves"] == [], got
    shots.screenshot("report-values-420")
    assert errors == [], errors
