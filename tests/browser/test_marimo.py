"""The Explorer in marimo: a real ``marimo run`` app in headless Chromium.

``tests/browser/marimo_app.py`` wraps the Explorer in ``mo.ui.anywidget`` on a checkpoint saved
from a DataParallel model, at marimo's default (compact) width. The test does what a workshop
does: open it, apply the banner's rule, click a module, use the keyboard, ask Python what it
sees (a cell that reads ``selected_keys``: the page must show the selection the browser shows),
load, look at the results, undo. No ipykernel runs here: the comm is marimo's, there are no
IPython cell events and no kernel event loop, so this is where a change relying on them fails.
Choosing another checkpoint in the app's dropdown runs the Explorer's cell again: the Explorer
it built before must be freed. Screenshots: ``tests/artifacts/marimo-*.png``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from .marimo_host import MarimoApp

pytestmark = pytest.mark.browser

#: whether the tree's three columns are all inside the tree's box (nothing cut, no scrolling)
COLUMNS_FIT = """root => {
    const vp = root.querySelector('[data-role=viewport]');
    const model = root.querySelector('[data-role=column-header]').lastElementChild;
    return {scroll: vp.scrollWidth - vp.clientWidth,
            model_right: model.getBoundingClientRect().right - vp.getBoundingClientRect().right,
            fit: root.dataset.fit};
}"""


@pytest.fixture
def marimo_app(browser, tmp_path, sdw_artifacts, request) -> Iterator[MarimoApp]:
    """``marimo run tests/browser/marimo_app.py`` for this test."""
    app = MarimoApp(browser, tmp_path / "marimo", sdw_artifacts, request.node.name)
    try:
        yield app
    finally:
        if getattr(getattr(request.node, "rep_call", None), "failed", False):
            app.save_failure_artifacts(app.pages)
            print(app.process.describe(40))
        app.stop()


def python_sees(page) -> dict:
    """Press the app's button; the JSON its Python cell shows (after it re-ran)."""
    out = page.locator("[data-role=python-sees]")
    before = out.text_content() if out.count() else None
    page.get_by_role("button", name="What does Python see?").click()
    expect(out).not_to_have_text(before or "\x00never\x00")
    return json.loads(out.text_content())


def selected_in_browser(root) -> list[str]:
    return root.locator(".sdw-row[data-role=leaf][data-selected=true]").evaluate_all(
        "els => els.map(e => e.dataset.key)"
    )


def test_marimo_open_apply_click_keyboard_load_undo(marimo_app):
    root = marimo_app.open()
    page = marimo_app.page
    n = 38  # the demo CNN's keys; every one under 'module.' in the checkpoint

    # open: banner, problems first, and the three columns fit marimo's column
    banner = root.locator("[data-role=banner]")
    expect(banner.locator("[data-role=banner-text]")).to_contain_text(
        f"{n} missing + {n} unexpected keys pair up"
    )
    expect(root.locator("[data-role=problems]")).to_contain_text(f"{2 * n} problems")
    fit = root.evaluate(COLUMNS_FIT)
    assert fit["scroll"] <= 1 and fit["model_right"] <= 1, fit
    marimo_app.screenshot("marimo-1-first-view", root)

    # Apply the rule: the tree realigns, everything loadable is selected
    banner.locator("[data-action=apply-banner]").click()
    message = root.locator("[data-role=message]")
    expect(message).to_contain_text(f"{n} keys now pair up")
    expect(banner).to_be_hidden()
    expect(root.locator("[data-role=summary]")).to_contain_text(f"{n} matches")
    preview = root.locator("[data-role=preview]")
    expect(preview).to_have_attribute("data-n-tensors", str(n))
    seen = python_sees(page)
    assert len(seen["selected_keys"]) == n and seen["can_undo"] is False, seen

    # click a module: its subtree leaves the selection
    layer1 = root.locator(".sdw-row[data-role=module][data-path='backbone.layer1']")
    layer1.locator("[data-role=ckpt] [data-role=name]").click()
    expect(layer1).to_have_attribute("aria-checked", "false")
    n_layer1 = root.locator(
        ".sdw-row[data-role=leaf][data-key^='backbone.layer1.'][data-selected=false]"
    ).count()
    assert n_layer1 > 0
    expect(preview).to_have_attribute("data-n-tensors", str(n - n_layer1))

    # the keyboard: Home, Down to the stem, Space takes its subtree out too
    expect(layer1).to_be_focused()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowDown")
    stem = root.locator(".sdw-row[data-role=module][data-path='backbone.stem']")
    expect(stem).to_be_focused()
    page.keyboard.press(" ")
    expect(stem).to_have_attribute("aria-checked", "false")
    n_stem = root.locator(".sdw-row[data-role=leaf][data-key^='backbone.stem.']").count()
    expect(preview).to_have_attribute("data-n-tensors", str(n - n_layer1 - n_stem))

    # a Python cell reads selected_keys: it shows exactly the rows the browser shows selected
    seen = python_sees(page)
    shown = selected_in_browser(root)
    assert seen["selected_keys"] == shown and len(shown) == n - n_layer1 - n_stem, (seen, shown)
    marimo_app.screenshot("marimo-2-selected", root)

    # load: the message first, then the results table and the histograms
    root.locator("[data-action=load]").click()
    expect(message).to_have_attribute("data-level", "success", timeout=60_000)
    expect(message).to_contain_text(f"Loaded {len(shown)} tensors")
    rows = root.locator("[data-role=results-table] tr[data-role=result-row]")
    expect(rows.first).to_be_visible(timeout=60_000)
    assert rows.count() == len(shown)
    expect(root.locator("img[data-role=histogram]").first).to_be_visible(timeout=60_000)
    expect(root.locator("[data-role=busy-panel]")).to_have_attribute("data-busy", "false")
    seen = python_sees(page)
    assert seen["can_undo"] is True and seen["loads"] == 1, seen
    marimo_app.screenshot("marimo-3-loaded", root)

    # undo: the model is as before; Python agrees
    root.locator("[data-action=undo]").click()
    expect(message).to_contain_text("Undone")
    expect(root.locator("[data-action=undo]")).to_be_disabled()
    seen = python_sees(page)
    assert seen["can_undo"] is False and seen["loads"] == 0, seen
    assert seen["selected_keys"] == selected_in_browser(root)
    marimo_app.screenshot("marimo-4-undone", root)
    assert not [line for line in marimo_app.console if "[pageerror]" in line], marimo_app.console


def test_marimo_cell_run_again_frees_the_explorer_it_built_before(marimo_app):
    """marimo runs the Explorer's cell again when the dropdown it reads changes: it closes the
    old widget's comm, never the widget, and sends no cell id. The Explorer whose comm closed
    lets go (``widget/_cells.close_with_comm``): after a load and a new choice, the first
    Explorer and its undo snapshot are freed, and the new one works."""
    root = marimo_app.open()
    page = marimo_app.page
    root.locator("[data-action=apply-banner]").click()
    expect(root.locator("[data-role=summary]")).to_contain_text("38 matches")
    root.locator("[data-action=load]").click()
    expect(root.locator("[data-role=message]")).to_have_attribute(
        "data-level", "success", timeout=60_000
    )
    expect(root.locator("[data-role=busy-panel]")).to_have_attribute("data-busy", "false")
    seen = python_sees(page)
    assert (seen["built"], seen["alive"], seen["loads"]) == (1, 1, 1), seen

    page.get_by_test_id("marimo-plugin-dropdown").select_option("identical")
    new = page.locator(".sdw-explorer[data-ready=true]")
    expect(new.locator("[data-role=banner]")).to_be_hidden()  # no prefix to strip now
    expect(new.locator("[data-role=summary]")).to_contain_text("38 matches")
    expect(page.locator(".sdw-explorer")).to_have_count(1)
    seen = python_sees(page)
    assert (seen["built"], seen["alive"], seen["loads"]) == (2, 1, 0), seen

    # the new Explorer loads as the first did
    new.locator("[data-action=load]").click()
    expect(new.locator("[data-role=message]")).to_have_attribute(
        "data-level", "success", timeout=60_000
    )
    seen = python_sees(page)
    assert (seen["built"], seen["alive"], seen["loads"]) == (2, 1, 1), seen
    marimo_app.screenshot("marimo-5-cell-ran-again", new)
    assert not [line for line in marimo_app.console if "[pageerror]" in line], marimo_app.console
