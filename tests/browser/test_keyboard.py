"""The Explorer operated with the keyboard only, in a real JupyterLab (headless Chromium).

The tree follows the WAI-ARIA tree view pattern (one tab stop, roving tabindex, arrows, Space,
Shift+Arrow, Enter) and no key it handles reaches JupyterLab's shortcuts: the tests check both in
the DOM (focus, aria attributes) and in the kernel (selection, the model's tensors bit for bit),
and that no notebook cell was created or changed and the active cell did not move. Screenshots:
``tests/artifacts/keyboard-flow-*.png`` (listed in ``tests/browser/ARTIFACTS.md``).
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from .harness import NEW_HEAD, SETUP, assert_fits_the_cell, py, run_explorer

pytestmark = pytest.mark.browser

BIG = """\
from collections import OrderedDict
from torch import nn
model = nn.Sequential(OrderedDict(blocks=nn.ModuleList(
    nn.Sequential(*[nn.Linear(2, 2) for _ in range(10)]) for _ in range(120))))
sd = model.state_dict()
sd["blocks.77.3.weight"] = torch.zeros(5, 2)
w = sdw.Explorer(model, sd)
w
"""

# what the focused element is, as the tests see it
FOCUSED = """() => {
    const e = document.activeElement;
    if (!e) return null;
    return {role: e.getAttribute('role'), key: e.dataset.key || null, path: e.dataset.path || null,
            action: e.dataset.action || null, status: e.dataset.status || null,
            tabindex: e.getAttribute('tabindex'), checked: e.getAttribute('aria-checked'),
            inWidget: !!e.closest('.sdw-explorer')};
}"""

#: whether the focused element is a tree row drawn inside the tree's viewport, below its header
FOCUSED_ROW_IN_VIEW = """() => {
    const e = document.activeElement, v = e && e.closest('[data-role=viewport]');
    if (!v || e.getAttribute('role') !== 'treeitem') return false;
    const head = v.querySelector('[data-role=tree-head]').getBoundingClientRect();
    const r = e.getBoundingClientRect(), b = v.getBoundingClientRect();
    return r.height > 0 && r.top >= head.bottom - 1 && r.bottom <= b.bottom + 1;
}"""

NOTEBOOK_STATE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const nb = panel.content;
    return {n: nb.widgets.length, active: nb.activeCellIndex, mode: nb.mode,
            types: nb.widgets.map(c => c.model.type),
            sources: nb.widgets.map(c => c.model.sharedModel.getSource())};
}"""


def focused(lab) -> dict:
    return lab.page.evaluate(FOCUSED) or {}


def press_until(lab, key: str, predicate, limit: int = 120) -> dict:
    """Press ``key`` until ``predicate(focused)`` holds; return the focused element's facts."""
    for _ in range(limit):
        f = focused(lab)
        if predicate(f):
            return f
        lab.page.keyboard.press(key)
    f = focused(lab)
    assert predicate(f), f"pressed {key} {limit} times; focus is on {f}"
    return f


def selected(lab) -> list[str]:
    return json.loads(lab.execute("print(json.dumps(w.selected_keys))"))


def test_keyboard_only_flow_find_select_load_undo(lab, sdw_artifacts):
    root = run_explorer(lab, [SETUP, NEW_HEAD])
    page = lab.page
    tree = root.locator("[data-role=canvas]")
    expect(tree).to_have_attribute("role", "tree")

    # start in the widget's search box, then Tab into the tree: one tab stop
    root.locator("[data-role=search]").focus()
    nb_before = page.evaluate(NOTEBOOK_STATE)
    f = press_until(lab, "Tab", lambda f: f.get("role") == "treeitem", limit=40)
    assert f["tabindex"] == "0"
    assert tree.locator("[tabindex='0']").count() == 1
    rows = tree.locator(".sdw-row")
    assert rows.count() == rows.evaluate_all(
        "els => els.filter(e => e.getAttribute('role') === 'treeitem').length"
    )
    levels = rows.evaluate_all(
        "els => els.map(e => [e.dataset.depth, e.getAttribute('aria-level')])"
    )
    assert all(int(d) + 1 == int(a) for d, a in levels), levels
    expect(tree.locator(".sdw-row[data-role=module][data-path=backbone]")).to_have_attribute(
        "aria-expanded", "true"
    )
    lab.screenshot("keyboard-flow-1-tree-focused", root)

    # find a problem with the arrow keys: the head's shape mismatch
    page.keyboard.press("Home")
    f = press_until(lab, "ArrowDown", lambda f: f.get("status") not in (None, "match"))
    assert f["key"] == "classifier.weight" and f["status"] == "shape_mismatch"
    problem = tree.locator(".sdw-row[data-key='classifier.weight']")
    # an adaptable row holds an enabled control: never aria-disabled around it
    assert problem.get_attribute("aria-disabled") is None
    adapt = problem.locator("[data-action=adapt]")
    assert adapt.evaluate("b => !b.disabled && !b.closest('[aria-disabled=true]')")
    page.keyboard.press("Enter")  # details of the focused row
    details = root.locator("[data-role=details]")
    expect(details).to_be_visible()
    expect(details).to_have_attribute("data-key", "classifier.weight")
    expect(details).to_contain_text("checkpoint (10, 32) vs model (3, 32)")
    expect(details).to_contain_text("[10, 32] float32")
    assert focused(lab)["key"] == "classifier.weight"
    lab.screenshot("keyboard-flow-2-problem-details", root)
    # Space on an adaptable mismatch switches the overlap adapter on, which selects it
    page.keyboard.press(" ")
    lab.wait_for_stdout("print(w.adapters)", "{'classifier.weight': 'overlap'}")
    expect(problem).to_have_attribute("aria-checked", "true")
    assert focused(lab)["key"] == "classifier.weight", "focus survives the redraw"
    # an unexpected-free tree has no aria-disabled row but the other head row, until adapted
    expect(tree.locator(".sdw-row[data-key='classifier.bias']")).not_to_have_attribute(
        "aria-disabled", "true"
    )
    page.keyboard.press("Enter")  # Enter again closes the details
    expect(details).to_be_hidden()

    # select a subtree with Space: backbone.layer1 (12 keys); its parent becomes "mixed"
    page.keyboard.press("Home")
    press_until(lab, "ArrowDown", lambda f: f.get("path") == "backbone.layer1")
    page.keyboard.press(" ")
    lab.wait_for_stdout("print(len(w.selected_keys))", "13")
    layer1 = tree.locator(".sdw-row[data-path='backbone.layer1']")
    expect(layer1).to_have_attribute("aria-checked", "true")
    expect(tree.locator(".sdw-row[data-path=backbone]")).to_have_attribute("aria-checked", "mixed")
    expect(tree.locator(".sdw-row[data-path='backbone.stem']")).to_have_attribute(
        "aria-checked", "false"
    )
    page.keyboard.press("ArrowLeft")
    expect(layer1).to_have_attribute("aria-expanded", "false")
    expect(tree.locator(".sdw-row[data-key='backbone.layer1.0.conv1.weight']")).to_have_count(0)
    page.keyboard.press("ArrowRight")
    expect(layer1).to_have_attribute("aria-expanded", "true")
    assert focused(lab)["path"] == "backbone.layer1"

    # Space then Shift+Down twice: from the stem conv weight over the bn module row to bn.weight
    page.keyboard.press("Home")
    press_until(lab, "ArrowDown", lambda f: f.get("key") == "backbone.stem.conv.weight")
    page.keyboard.press(" ")
    lab.wait_for_stdout("print(len(w.selected_keys))", "14")
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("Shift+ArrowDown")
    lab.wait_for_stdout("print(len(w.selected_keys))", "15")
    stem = [k for k in selected(lab) if k.startswith("backbone.stem.")]
    assert stem == ["backbone.stem.conv.weight", "backbone.stem.bn.weight"]
    assert focused(lab)["key"] == "backbone.stem.bn.weight"
    lab.screenshot("keyboard-flow-3-selected", root)

    # JupyterLab's command-mode shortcuts do not fire while the tree has focus (letters only
    # jump between rows by name; c/v/x/z would copy/paste/cut/undo cells, a/b insert, dd delete)
    for key in ("a", "b", "d", "d", "m", "y", "Shift+M", "c", "v", "x", "z", "Shift+V"):
        page.keyboard.press(key)
        assert focused(lab).get("role") == "treeitem", key
    nb_mid = page.evaluate(NOTEBOOK_STATE)
    assert nb_mid["n"] == nb_before["n"] and nb_mid["types"] == nb_before["types"]
    assert nb_mid["sources"] == nb_before["sources"]
    want = selected(lab)
    assert "classifier.weight" in want and len(want) == 15

    # Tab to "Load selected" and press it with Enter
    press_until(lab, "Tab", lambda f: f.get("action") == "load", limit=15)
    page.keyboard.press("Enter")
    expect(root.locator("[data-role=message]")).to_have_attribute("data-level", "success")
    expect(root.locator("[data-role=message-text]")).to_contain_text("Loaded 15 tensors")
    exact = [k for k in want if k != "classifier.weight"]
    assert py(lab, f"all(torch.equal(model.state_dict()[k], ckpt[k]) for k in {exact!r})") == "True"
    # the overlap adapter copied the overlapping slice, bit for bit
    assert (
        py(
            lab,
            "torch.equal(model.state_dict()['classifier.weight'], ckpt['classifier.weight'][:3])",
        )
        == "True"
    )
    assert (
        py(
            lab,
            f"all(torch.equal(v, original[k]) for k, v in model.state_dict().items() if k not in {want!r})",
        )
        == "True"
    )

    # Undo, by keyboard: Tab from Load to Undo (enabled once the load is done), Enter
    expect(root.locator("[data-action=undo]")).to_be_enabled(timeout=60_000)  # after the plots
    assert focused(lab)["action"] == "load", "focus stays on Load selected through the load"
    assert_fits_the_cell(root)
    lab.screenshot("keyboard-flow-4-loaded", root)  # the results drawn, focus on Load selected
    # Shift+Tab goes back into the tree after the load: one tab stop, a row in view, ringed
    press_until(lab, "Shift+Tab", lambda f: f.get("role") == "treeitem", limit=10)
    assert tree.locator("[tabindex='0']").count() == 1
    assert page.evaluate(FOCUSED_ROW_IN_VIEW), f"focused row {focused(lab)} is not in view"
    lab.screenshot("keyboard-flow-4b-loaded-back-in-tree", root)
    press_until(lab, "Tab", lambda f: f.get("action") == "load", limit=10)
    press_until(lab, "Tab", lambda f: f.get("action") == "undo", limit=5)
    page.keyboard.press("Enter")
    expect(root.locator("[data-role=message-text]")).to_contain_text("Undone")
    assert (
        py(lab, "all(torch.equal(v, original[k]) for k, v in model.state_dict().items())") == "True"
    )
    # nothing to search, page or pick after an undo: only the "no results" line shows
    expect(root.locator("[data-role=results-state]")).to_contain_text("No results yet")
    expect(root.locator("input[data-role=results-search]")).to_be_hidden()
    expect(root.locator("[data-role=histogram-picker]")).to_be_hidden()
    lab.screenshot("keyboard-flow-5-undone", root)

    nb_after = page.evaluate(NOTEBOOK_STATE)
    assert nb_after["n"] == nb_before["n"], "no notebook cell was created or deleted"
    assert nb_after["types"] == nb_before["types"] and nb_after["sources"] == nb_before["sources"]
    assert nb_after["active"] == nb_before["active"], "the active cell did not move"
    assert nb_after["mode"] == "command"
    assert focused(lab)["inWidget"], "focus stayed inside the widget"


def test_keyboard_focus_stays_rendered_in_a_virtualised_tree(lab):
    root = run_explorer(lab, [SETUP, BIG], timeout=120)
    page = lab.page
    tree = root.locator("[data-role=canvas]")
    # the first screen shows the problem: its block opens by itself (problems first)
    expect(tree.locator(".sdw-row[data-key='blocks.77.3.weight']")).to_have_count(1)
    root.locator("[data-action=expand-all]").click()
    assert int(root.get_attribute("data-n-visible")) > 600  # virtualised
    root.locator("[data-role=search]").focus()
    press_until(lab, "Tab", lambda f: f.get("role") == "treeitem", limit=40)
    viewport = root.locator("[data-role=viewport]")

    def focus_in_view() -> dict:
        f = focused(lab)
        assert f["role"] == "treeitem" and f["tabindex"] == "0", f
        assert tree.locator("[tabindex='0']").count() == 1
        inside = page.evaluate("""() => {
            const e = document.activeElement, v = e.closest('[data-role=viewport]');
            const head = v.querySelector('[data-role=tree-head]').getBoundingClientRect();
            const r = e.getBoundingClientRect(), b = v.getBoundingClientRect();
            return r.top >= head.bottom - 1 && r.bottom <= b.bottom + 1;
        }""")
        assert inside, f"focused row {f} is not scrolled into view"
        return f

    page.keyboard.press("End")
    f = focus_in_view()
    assert f["key"] == "blocks.119.9.bias"
    assert tree.locator(".sdw-row").count() < 200
    page.keyboard.press("Home")
    assert focus_in_view()["path"] == "blocks"
    for _ in range(5):
        page.keyboard.press("PageDown")
        focus_in_view()
    for _ in range(30):
        page.keyboard.press("ArrowDown")
    before = focus_in_view()
    # scrolled far away with the mouse, the focused row stays rendered (it is the tab stop)
    viewport.evaluate("v => { v.scrollTop = v.scrollHeight; }")
    page.wait_for_function(
        "() => document.querySelector('[data-role=canvas] .sdw-row[data-key=\"blocks.119.9.bias\"]')"
    )
    kept = tree.locator("[tabindex='0']")
    expect(kept).to_have_count(1)
    assert (kept.get_attribute("data-key") or kept.get_attribute("data-path")) in (
        before["key"],
        before["path"],
    )
    # and the next arrow key brings it back into view
    page.keyboard.press("ArrowDown")
    focus_in_view()
    crumb = root.locator("[data-role=breadcrumb]")
    expect(crumb).to_contain_text("blocks ›")
    lab.screenshot("keyboard-flow-virtualised", root)

    # find the problem by keyboard: "/" jumps to the search box, Down goes back into the
    # (filtered) tree, End to its last row
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.dataset.role") == "search"
    page.keyboard.type("77.3.w")
    page.keyboard.press("ArrowDown")
    assert focused(lab)["path"] == "blocks"
    expect(root).to_have_attribute("data-n-visible", "4")
    page.keyboard.press("End")
    f = focus_in_view()
    assert f["key"] == "blocks.77.3.weight" and f["status"] == "shape_mismatch"
    # and the problems strip above the tree gets there too: Tab to its chip, Enter
    page.keyboard.press("/")  # back to the search box, clear it
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    expect(root).not_to_have_attribute("data-n-visible", "4")
    root.locator("[data-action=select-none]").focus()
    press_until(lab, "Shift+Tab", lambda f: f.get("action") == "goto-problem", limit=30)
    page.keyboard.press("Enter")
    f = focus_in_view()
    assert f["key"] == "blocks.77.3.weight"
