"""The Explorer in narrow containers: 600, 800 and 1280 px wide, in JupyterLab and in marimo.

The window is sized so that the widget's container (JupyterLab's output area, marimo's cell at
``width="full"``) is exactly that wide; then, with a DataParallel checkpoint aligned by its
rule, the test checks what the user can reach: the Explorer is no wider than its container, the
three tree columns fit without scrolling sideways, every control of the toolbar, legend, banner
and action bar is inside the widget, and every name, shape, dtype or status label that had to
be shortened carries its full text on hover. At 1280 px nothing is shortened.
Screenshots: ``tests/artifacts/narrow-<host>-<width>.png``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from .harness import SETUP, explorer
from .marimo_host import APP, MarimoApp

pytestmark = pytest.mark.browser

WIDTHS = (600, 800, 1280)

ALIGNED_DDP = """\
model = demo.target_model("dataparallel")
w = sdw.Explorer(model, demo.variant("dataparallel"))
w.handle_action({"action": "accept_suggestion", "id": w.banner["id"]})
w
"""

#: what does not fit at the root's current width (empty lists: everything fits)
LAYOUT = """root => {
    const R = e => e.getBoundingClientRect();
    const box = R(root), vp = root.querySelector('[data-role=viewport]'), vbox = R(vp);
    const visible = e => { const r = R(e); return r.width > 0 && r.height > 0; };
    const out = {width: box.width, fit: root.dataset.fit, scroll: vp.scrollWidth - vp.clientWidth,
                 outside: [], cut_columns: [], no_title: [], shortened: 0};
    // every control outside the tree: inside the widget's box
    for (const e of root.querySelectorAll('button, input, select, [data-role=legend-item]')) {
        if (!visible(e) || vp.contains(e)) continue;
        const r = R(e);
        if (r.left < box.left - 1 || r.right > box.right + 1) out.outside.push(e.dataset.action || e.dataset.role || e.textContent);
    }
    for (const row of root.querySelectorAll('[data-role=canvas] .sdw-row')) {
        const model = row.querySelector('[data-role=model]');
        if (model && R(model).right > vbox.right + 1) out.cut_columns.push(row.dataset.key || row.dataset.path);
        // a shortened text says itself in full on hover (its own title, or its row's)
        for (const e of row.querySelectorAll('[data-role=name], [data-role=shape], [data-role=dtype], [data-role=size], .sdw-badge, .sdw-type')) {
            if (e.scrollWidth <= e.clientWidth + 1) continue;
            out.shortened++;
            const full = e.textContent.replace('…', '');
            const title = (e.closest('[title]') || {}).title || '';  // what hovering it shows
            const key = row.dataset.key || row.dataset.path;
            const ok = title && (title.includes(full) || (e.dataset.role === 'name' && title.includes(key)));
            if (!ok) out.no_title.push([key, e.dataset.role || e.className, e.textContent, title]);
        }
    }
    return out;
}"""


def check_layout(root, width: int) -> dict:
    got = root.evaluate(LAYOUT)
    assert abs(got["width"] - width) <= 1, got
    assert got["scroll"] <= 1, f"the tree scrolls sideways at {width}px: {got}"
    assert got["outside"] == [], got["outside"]
    assert got["cut_columns"] == [], got["cut_columns"][:5]
    assert got["no_title"] == [], got["no_title"][:5]
    if width >= 1280:
        assert got["fit"] == "full" and got["shortened"] == 0, got
    else:
        assert got["fit"] in ("full", "narrow"), got
    if width == 600:
        assert got["fit"] == "narrow", got
    return got


def size_container(page, root, width: int) -> None:
    """Resize the window so that the Explorer (as wide as its container) is ``width`` px.

    The host's chrome around the widget need not be the same at every window width (marimo
    pads a narrow window differently), so the window is corrected until the widget is that wide.
    """
    handle = root.element_handle()
    for _ in range(4):
        now = root.evaluate("e => e.getBoundingClientRect().width")
        if abs(now - width) <= 1:
            break
        size = page.viewport_size
        page.set_viewport_size(
            {"width": int(size["width"] + width - now), "height": size["height"]}
        )
        page.wait_for_function(  # the host laid the page out again
            "([e, w]) => Math.abs(e.getBoundingClientRect().width - w) > 0.5",
            arg=[handle, now],
            timeout=15_000,
        )
    got = root.evaluate("e => e.getBoundingClientRect().width")
    assert abs(got - width) <= 1, f"the Explorer is {got} px wide, not {width}"
    # the columns were fitted to this width (ResizeObserver → sizeColumns)
    page.wait_for_function(
        "e => e.dataset.fit && Math.abs(e.querySelector('[data-role=viewport]').scrollWidth"
        " - e.querySelector('[data-role=viewport]').clientWidth) <= 1",
        arg=handle,
        timeout=15_000,
    )


#: tall enough for the whole widget: a screenshot then never resizes the window (a resize can
#: change the host's scrollbars, and with them the width the shot would show)
TALL = 1600


def test_narrow_jupyterlab(lab, sdw_artifacts):
    lab.page.set_viewport_size({"width": 1400, "height": TALL})
    lab.open_notebook([SETUP, ALIGNED_DDP])
    lab.run_all_and_wait()
    root = explorer(lab, cell=1)
    expect(root.locator("[data-role=summary]")).to_contain_text("38 matches")
    for width in WIDTHS:
        size_container(lab.page, root, width)
        got = check_layout(root, width)
        print(f"[sdw] JupyterLab {width}px: {got['fit']}, {got['shortened']} texts shortened")
        lab.screenshot(f"narrow-lab-{width}", root)


@pytest.fixture
def marimo_full(browser, tmp_path, sdw_artifacts, request) -> Iterator[MarimoApp]:
    """The marimo app at ``width="full"`` (its cells follow the window)."""
    text = APP.read_text().replace("marimo.App()", 'marimo.App(width="full")')
    assert 'width="full"' in text
    app = MarimoApp(browser, tmp_path / "marimo", sdw_artifacts, request.node.name, text)
    try:
        yield app
    finally:
        if getattr(getattr(request.node, "rep_call", None), "failed", False):
            app.save_failure_artifacts(app.pages)
        app.stop()


def test_narrow_marimo(marimo_full):
    root = marimo_full.open(viewport={"width": 1400, "height": TALL})
    root.locator("[data-action=apply-banner]").click()
    expect(root.locator("[data-role=summary]")).to_contain_text("38 matches")
    for width in WIDTHS:
        size_container(marimo_full.page, root, width)
        got = check_layout(root, width)
        print(f"[sdw] marimo {width}px: {got['fit']}, {got['shortened']} texts shortened")
        marimo_full.screenshot(f"narrow-marimo-{width}", root)
