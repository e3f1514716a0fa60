"""Load selected stays reachable at 1280×720: the action bar is sticky to the notebook's scroller.

A DistributedDataParallel checkpoint (every key under ``module.``) of a deep conv/BatchNorm stack
(thousands of keys, the tree virtualised) is opened and the prefix rule applied. The test
scrolls the NOTEBOOK, not the tree, to the places where a bar below a capped tree would be off
screen, and checks what the user sees: the Load button inside the window and the topmost element
at its centre (nothing covers it), lifted over the tree with a shadow when needed; that a click
on it loads in the kernel; and that the bar hides no row for good (the last row is reachable by
keyboard and by scrolling). JupyterLab, Notebook 7 and Voilà. Screenshots:
``tests/artifacts/sticky-*.png``.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

BIG_DDP = """\
import torch
from torch import nn
import sd_widgets as sdw

def net(classes):
    blocks = [nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)) for _ in range(400)]
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(8, classes))

torch.manual_seed(0)
model = net(10)
ckpt = nn.DataParallel(net(10)).state_dict()   # every key is module.<key>
w = sdw.Explorer(model, ckpt)
w.handle_action({"action": "add_rule", "kind": "prefix", "old": "module.", "new": ""})
w
"""

LOADED = "print(all(torch.equal(v, ckpt['module.' + k]) for k, v in model.state_dict().items()))"

#: the Load button's centre is inside the window and it is what is there (nothing covers it)
ON_TOP = """e => {
    const r = e.getBoundingClientRect();
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    if (r.width === 0 || r.top < 0 || r.bottom > window.innerHeight || x < 0 || x > window.innerWidth)
        return false;
    const hit = document.elementFromPoint(x, y);
    return !!hit && (hit === e || e.contains(hit));
}"""

#: the nearest ancestor of the widget that scrolls vertically (the notebook's scroller)
SCROLLER = """r => {
    for (let e = r.parentElement; e; e = e.parentElement) {
        const o = getComputedStyle(e).overflowY;
        if ((o === 'auto' || o === 'scroll') && e.scrollHeight > e.clientHeight + 1) return e;
    }
    return document.scrollingElement;
}"""

#: scroll the notebook so the tree's top edge is at `at` (a fraction of the scroller's height)
PLACE_TREE = """([r, at]) => {
    const sc = (__SCROLLER__)(r);
    const b = sc === document.scrollingElement ? {top: 0, height: window.innerHeight}
        : sc.getBoundingClientRect();
    const v = r.querySelector('[data-role=viewport]');
    sc.scrollTop += v.getBoundingClientRect().top - (b.top + at * b.height);
    return v.getBoundingClientRect().top - (b.top + at * b.height);
}""".replace("__SCROLLER__", SCROLLER)

GEOMETRY = """r => {
    const sc = (__SCROLLER__)(r);
    const b = sc === document.scrollingElement ? {top: 0, bottom: window.innerHeight}
        : sc.getBoundingClientRect();
    const a = r.querySelector('[data-role=actions]').getBoundingClientRect();
    const v = r.querySelector('[data-role=viewport]').getBoundingClientRect();
    return {sTop: b.top, sBottom: b.bottom, aTop: a.top, aBottom: a.bottom, vTop: v.top,
            vBottom: v.bottom, stuck: r.querySelector('[data-role=actions]').dataset.stuck};
}""".replace("__SCROLLER__", SCROLLER)


#: how far (px) the widget reaches past the right edge of the notebook's scroller (<= 0: fits)
PAST_RIGHT = """r => {
    const sc = (__SCROLLER__)(r);
    const right = sc === document.scrollingElement ? window.innerWidth
        : sc.getBoundingClientRect().right;
    return r.getBoundingClientRect().right - right;
}""".replace("__SCROLLER__", SCROLLER)


def _open(page_root):
    root = page_root.locator(".sdw-explorer")
    expect(root).to_have_attribute("data-ready", "true")
    # the rule applied: every key pairs up
    expect(root.locator("[data-role=summary]")).to_have_text("2,802 keys: 2,802 matches")
    return root


def _place(page, root, at: float) -> dict:
    """Scroll the notebook so the tree's top is at `at` of the scroller; its geometry then."""
    handle = root.element_handle()
    page.evaluate(PLACE_TREE, [handle, at])
    # the bar's position and data-stuck follow scrolling within a frame or two
    page.wait_for_function(
        """([r, at]) => { const a = r.querySelector('[data-role=actions]');
            return a.dataset.stuck !== undefined; }""",
        arg=[handle, at],
    )
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    return root.evaluate(GEOMETRY)


def _check_stuck_bar(page, root, load) -> dict:
    """Tree top low on screen, most of it below: the bar is lifted to the scroller's bottom."""
    g = _place(page, root, 0.55)
    assert g["vBottom"] > g["sBottom"] + 100, g  # the tree runs far below the screen
    # its place is below the screen, yet the bar sits at the scroller's bottom edge (less the
    # scroller's padding: Voilà's page has 10 px), over the tree
    assert g["sBottom"] - 16 <= g["aBottom"] <= g["sBottom"] + 0.5, g
    assert g["aTop"] < g["vBottom"], g
    expect(root.locator("[data-role=actions]")).to_have_attribute("data-stuck", "true")
    assert load.evaluate(ON_TOP), g
    return g


def test_load_selected_sticks_while_the_notebook_scrolls_jupyterlab(lab):
    lab.page.set_viewport_size({"width": 1280, "height": 720})
    lab.open_notebook(["print('\\n'.join(map(str, range(12))))", BIG_DDP, "print('after')"])
    lab.run_all_and_wait(timeout=180)
    page = lab.page
    root = _open(lab.output_area(1))
    n_keys = int(root.get_attribute("data-n-keys"))
    assert n_keys == 2802, n_keys
    root.locator("[data-action=expand-all]").click()
    assert int(root.get_attribute("data-n-visible")) > n_keys  # thousands of rows, windowed
    load = root.locator("[data-action=load]")
    bar = root.locator("[data-role=actions]")

    # 1. the tree's top scrolled off the screen, the tree's middle in view (the tree itself
    #    scrolled to its middle): Load selected is on screen and nothing covers it
    viewport = root.locator("[data-role=viewport]")
    viewport.evaluate("v => { v.scrollTop = v.scrollHeight / 2; }")
    g = _place(page, root, -0.25)
    assert g["vTop"] < g["sTop"] - 50, g
    assert load.evaluate(ON_TOP), g
    lab.screenshot("sticky-1-tree-top-off-screen")

    # 2. the tree's top low on the screen, most of it below: without sticky the bar would be far
    #    below the fold; it is lifted to the scroller's bottom edge, over the tree, with a shadow
    _check_stuck_bar(page, root, load)
    assert bar.evaluate("b => getComputedStyle(b).boxShadow") != "none"
    assert bar.evaluate("b => getComputedStyle(b).backgroundColor") not in (
        "rgba(0, 0, 0, 0)",
        "transparent",
    )
    lab.screenshot("sticky-2-bar-lifted-over-the-tree")
    # with the tree below the fold the bar stays with it and covers nothing above the tree
    g = _place(page, root, 1.1)
    assert g["aTop"] >= g["vTop"] and g["aTop"] > g["sBottom"], g
    _check_stuck_bar(page, root, load)

    # 3. clicked where it is, it loads (every key pairs up after the rule and is selected)
    assert lab.execute("print(len(w.selected_keys))").strip() == str(n_keys)
    load.click()
    lab.wait_for_stdout(LOADED, "True", timeout=60)
    expect(root.locator("[data-role=message]")).to_have_attribute("data-level", "success")
    # the output boxes no longer scroll sideways: the widget is never wider than the notebook's
    # column (the results table, wide, scrolls inside its own box)
    expect(root.locator("[data-role=results-table], .sdw-results-table").first).to_be_attached()
    assert root.evaluate(PAST_RIGHT) <= 1, root.evaluate(PAST_RIGHT)

    # 4. it hides no row for good: with the tree in view the bar is below it; End focuses the
    #    last row and scrolls the notebook so the bar does not cover it
    viewport.evaluate("v => { v.scrollTop = v.scrollHeight; }")
    viewport.evaluate("v => v.scrollIntoView({block: 'start'})")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    g = root.evaluate(GEOMETRY)
    assert g["aTop"] >= g["vBottom"] - 1, g
    last = root.locator(".sdw-row[data-key='401.bias']")
    assert last.evaluate(ON_TOP)
    _check_stuck_bar(page, root, load)
    root.locator("[data-role=canvas] > .sdw-row").first.focus()
    page.keyboard.press("End")
    expect(last).to_be_focused()
    assert last.evaluate(ON_TOP), root.evaluate(GEOMETRY)
    lab.screenshot("sticky-3-last-row-reachable")


def test_load_selected_sticks_in_notebook7(lab):
    lab.page.set_viewport_size({"width": 1280, "height": 720})
    lab.open_notebook(["print('\\n'.join(map(str, range(12))))", BIG_DDP], ui="notebook")
    lab.run_all_and_wait(timeout=180)
    root = _open(lab.page)
    root.locator("[data-action=expand-all]").click()
    load = root.locator("[data-action=load]")
    _check_stuck_bar(lab.page, root, load)
    lab.screenshot("sticky-4-notebook7")
    load.click()
    lab.wait_for_stdout(LOADED, "True", timeout=60)


def test_load_selected_sticks_in_voila(voila_server):
    # a tall output above the widget, so that the page scrolls and the tree can start low
    app = voila_server(["print('\\n'.join(map(str, range(40))))", BIG_DDP])
    page = app.open(wait_for=".sdw-explorer[data-ready=true]", timeout=180)
    page.set_viewport_size({"width": 1280, "height": 720})
    root = _open(page)
    root.locator("[data-action=expand-all]").click()
    load = root.locator("[data-action=load]")
    _check_stuck_bar(page, root, load)
    app.screenshot("sticky-5-voila")
    load.click()
    expect(root.locator("[data-role=message]")).to_have_attribute("data-level", "success")


def test_two_explorers_in_one_output_keep_it_unclipped(lab):
    """Both views unclip the shared output box; closing one leaves it unclipped for the other."""
    lab.page.set_viewport_size({"width": 1280, "height": 720})
    lab.open_notebook(
        [
            """\
import sd_widgets as sdw
from sd_widgets import demo
from IPython.display import display
w1 = sdw.Explorer(demo.target_model("new_head"), demo.variant("new_head"))
w2 = sdw.Explorer(demo.target_model("renamed_layer"), demo.variant("renamed_layer"))
display(w1, w2)
"""
        ]
    )
    lab.run_all_and_wait(timeout=120)
    roots = lab.output_area(0).locator(".sdw-explorer")
    expect(roots).to_have_count(2)
    for k in range(2):
        expect(roots.nth(k)).to_have_attribute("data-ready", "true")
    shared = "r => getComputedStyle(r.closest('.jp-OutputArea')).overflowX"
    assert roots.nth(1).evaluate(shared) == "clip"
    lab.execute("w1.close()")
    expect(roots).to_have_count(1)
    assert roots.first.evaluate(shared) == "clip"
    lab.execute("w2.close()")
    expect(roots).to_have_count(0)
    # no view left: the output area has its own overflow again
    assert lab.output_area(0).evaluate("o => getComputedStyle(o).overflowX") == "auto"
