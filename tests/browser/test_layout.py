"""The Explorer's layout at 1280×720 in JupyterLab: it shows what it says.

A DistributedDataParallel-style checkpoint (every key under ``module.``) of a deep model (a
6-layer transformer encoder with a conv/BatchNorm stem and a resized head) is opened, the prefix
rule is applied from Python, and the test checks what the user sees: tree-relative names in
both columns (no ``module.`` keys), shapes/dtypes/status text never cut on deep rows, the module
path above the rows when scrolled deep, Load selected on screen, problems on the first screen,
and BatchNorm statistics under ``bn='keep'`` shown as not loaded, as the preview says.
Screenshots: ``tests/artifacts/layout-*.png``.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from .harness import explorer

pytestmark = pytest.mark.browser

DEEP_DDP = """\
import json
import torch
from torch import nn
import sd_widgets as sdw

class Net(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64), nn.ReLU())
        layer = nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
        self.head = nn.Linear(256, classes)

torch.manual_seed(0)
model = Net(10)
trained = Net(1000)                       # another head size: 2 shape mismatches
trained.encoder.layers[5].linear1.half()  # saved in half precision: 2 dtype mismatches
with torch.no_grad():
    trained.stem[1].running_mean.uniform_()
ckpt = nn.DataParallel(trained).state_dict()  # every key is module.<key>
original = {k: v.clone() for k, v in model.state_dict().items()}
w = sdw.Explorer(model, ckpt)
w
"""

PROBLEM_STATUSES = ("shape_mismatch", "dtype_mismatch", "missing", "missing_buffer", "unexpected")

CUT = """root => {
    // every shape/dtype/size/status/adapter/skip label of the drawn rows, and whether it is cut:
    // wider than its box, or its box reaching past its cell (the column)
    const out = [];
    for (const row of root.querySelectorAll('[data-role=canvas] .sdw-row[data-role=leaf]')) {
        for (const el of row.querySelectorAll(
                '[data-role=shape], [data-role=dtype], [data-role=size], [data-role=status] > *')) {
            const cell = el.closest('.sdw-cell');
            const r = el.getBoundingClientRect(), c = cell.getBoundingClientRect();
            const cut = el.scrollWidth > el.clientWidth + 1 || r.right > c.right + 1 || r.left < c.left - 1;
            if (cut) out.push([row.dataset.key, el.dataset.role || el.className, el.textContent]);
        }
        for (const cell of row.querySelectorAll('.sdw-cell')) {
            if (cell.scrollWidth > cell.clientWidth + 1) out.push([row.dataset.key, 'cell', cell.className]);
        }
    }
    return out;
}"""


ON_SCREEN = """e => {
    const r = e.getBoundingClientRect();
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    if (r.width === 0 || y < 0 || y > window.innerHeight || x < 0 || x > window.innerWidth) return false;
    const hit = document.elementFromPoint(x, y);
    return !!hit && (hit === e || e.contains(hit));
}"""


def on_screen(lab, locator) -> bool:
    """Whether the element's centre is inside the window and the element is what is there."""
    return locator.evaluate(ON_SCREEN)


def test_layout_ddp_checkpoint_at_1280x720(lab):
    lab.page.set_viewport_size({"width": 1280, "height": 720})
    lab.open_notebook([DEEP_DDP])
    lab.run_all_and_wait(timeout=120)
    root = explorer(lab, cell=0)
    tree = root.locator("[data-role=canvas]")

    # problems first: before any rule every key is a problem; the strip shows the first ones
    problems = root.locator("[data-role=problems]")
    expect(problems).to_be_visible()
    expect(problems).to_contain_text("problems")
    assert problems.locator("[data-action=goto-problem]").count() >= 3
    assert on_screen(lab, problems.locator("[data-action=goto-problem]").first)
    lab.screenshot("layout-1-ddp-first-screen")

    # the prefix rule, from Python (the banner's Apply does the same)
    lab.execute(
        'w.handle_action({"action": "add_rule", "kind": "prefix", "old": "module.", "new": ""})'
    )
    expect(
        root.locator(".sdw-row[data-key='encoder.layers.0.self_attn.in_proj_weight']")
    ).to_have_attribute("data-status", "match")
    counts = json.loads(lab.execute("import json; print(json.dumps(w.comparison.summary()))"))
    assert counts["shape_mismatch"] == 2 and counts["dtype_mismatch"] == 2, counts
    root.locator("[data-action=expand-all]").click()

    # tree-relative names in the checkpoint column: no row repeats the full "module." key
    names = tree.locator(".sdw-row[data-role=leaf] [data-role=ckpt] [data-role=name]")
    texts = names.evaluate_all("els => els.map(e => e.textContent)")
    assert texts and not [t for t in texts if t.startswith("module.") or "." in t], texts[:10]
    leaf = tree.locator(".sdw-row[data-key='encoder.layers.0.self_attn.out_proj.weight']")
    expect(leaf.locator("[data-role=ckpt] [data-role=name]")).to_have_text("weight")
    expect(leaf.locator("[data-role=model] [data-role=name]")).to_have_text("weight")
    # the prefix every renamed key shares is said once, in the column header
    expect(root.locator("[data-role=ckpt-prefix]")).to_have_text("keys under module.")
    expect(tree.locator("[data-role=rename-note]")).to_have_count(0)
    # the original key on hover and in the details
    assert "module.encoder.layers.0.self_attn.out_proj.weight" in (
        leaf.locator("[data-role=ckpt] [data-role=name]").get_attribute("title")
    )
    leaf.click()  # focuses it (and toggles its selection; put back below)
    lab.page.keyboard.press("Enter")
    details = root.locator("[data-role=details]")
    expect(details).to_contain_text("module.encoder.layers.0.self_attn.out_proj.weight")
    expect(details).to_contain_text("[256, 256] float32")
    lab.page.keyboard.press(" ")  # select it again
    lab.wait_for_stdout(
        "print('encoder.layers.0.self_attn.out_proj.weight' in w.selected_keys)", "True"
    )

    # shapes, dtypes, sizes, status text and the adapter label: never cut, on the deepest rows too
    viewport = root.locator("[data-role=viewport]")
    cut = root.evaluate(CUT)
    assert cut == [], cut[:10]
    mismatch = tree.locator(".sdw-row[data-key='encoder.layers.5.linear1.weight']")
    viewport.evaluate("(v, y) => { v.scrollTop = y; }", mismatch.evaluate("e => e.offsetTop"))
    expect(mismatch.locator("[data-role=ckpt] [data-role=dtype]")).to_have_text("float16")
    expect(mismatch.locator("[data-role=model] [data-role=dtype]")).to_have_text("float32")
    expect(mismatch.locator("[data-role=status]")).to_contain_text("dtype mismatch")
    head = tree.locator(".sdw-row[data-key='head.weight']")
    head.scroll_into_view_if_needed()
    expect(head.locator("[data-action=adapt]")).to_have_text("adapt")
    expect(head.locator("[data-role=ckpt] [data-role=shape]")).to_have_text("[1000, 256]")
    assert root.evaluate(CUT) == []

    # scrolled deep, the module path of the first row in view stays visible above the rows
    viewport.evaluate("v => v.scrollIntoView({block: 'start'})")  # the tree on screen
    deep = tree.locator(".sdw-row[data-key='encoder.layers.3.self_attn.out_proj.bias']")
    viewport.evaluate("(v, y) => { v.scrollTop = y; }", deep.evaluate("e => e.offsetTop"))
    crumb = root.locator("[data-role=breadcrumb]")
    expect(crumb).to_have_attribute("data-path", "encoder.layers.3.self_attn.out_proj")
    expect(crumb).to_have_text("in encoder › layers › 3 › self_attn › out_proj")
    assert on_screen(lab, crumb)

    # Load selected stays on screen at 1280×720 with the notebook scrolled to the tree: the
    # tree's height leaves room for the action bar, and scrolling inside the tree keeps it there
    load = root.locator("[data-action=load]")
    viewport.evaluate("v => v.scrollIntoView({block: 'start'})")
    lab.page.wait_for_function(ON_SCREEN, arg=load.element_handle(), timeout=5_000)
    for y in (0, 10_000, 1_500):
        viewport.evaluate("(v, y) => { v.scrollTop = y; }", y)
        assert on_screen(lab, load), f"Load selected left the screen with the tree scrolled to {y}"
    # it does not cover any row of the tree
    assert root.evaluate("""r => r.querySelector('[data-role=actions]').getBoundingClientRect().top
        >= r.querySelector('[data-role=viewport]').getBoundingClientRect().bottom - 1""")
    viewport.evaluate("(v, y) => { v.scrollTop = y; }", deep.evaluate("e => e.offsetTop"))
    viewport.evaluate("v => { v.scrollLeft = 0; }")
    lab.screenshot("layout-2-after-rule-scrolled-deep")

    # the user can resize the columns (drag, or focus a separator and press Left/Right)
    before = root.evaluate("r => r.style.getPropertyValue('--sdw-col-ckpt')")
    root.locator("[data-role=col-resize][data-col=ckpt]").focus()
    lab.page.keyboard.press("ArrowRight")
    lab.page.keyboard.press("ArrowRight")
    after = root.evaluate("r => r.style.getPropertyValue('--sdw-col-ckpt')")
    assert int(after.rstrip("px")) >= int(before.rstrip("px")) + 40, (before, after)

    # BatchNorm policy "keep": the running statistics show as not loaded, like the preview
    lab.execute('w.bn_policy = "keep"')
    expect(root.locator("[data-role=preview-skipped] li")).to_have_count(3)
    skipped_py = json.loads(lab.execute("print(json.dumps(sorted(w.plan().skipped)))"))
    assert skipped_py == ["stem.1.num_batches_tracked", "stem.1.running_mean", "stem.1.running_var"]
    viewport.evaluate("v => { v.scrollTop = 0; }")
    rm = tree.locator(".sdw-row[data-key='stem.1.running_mean']")
    expect(rm).to_have_attribute("data-skipped", "true")
    expect(rm.locator("[data-role=skip-note]")).to_have_text("not loaded")
    shown = tree.locator(".sdw-row[data-skipped=true]").evaluate_all(
        "els => els.map(e => e.dataset.key)"
    )
    assert sorted(shown) == skipped_py
    expect(tree.locator(".sdw-row[data-key='stem.1.weight']")).to_have_attribute(
        "data-skipped", "false"
    )
    assert root.evaluate(CUT) == []
    viewport.evaluate("v => { v.scrollLeft = 0; }")
    lab.screenshot("layout-3-bn-keep", root)
    lab.execute('w.bn_policy = "load"')
    expect(rm).to_have_attribute("data-skipped", "false")


def test_missing_rows_look_different_from_selected_rows(lab):
    lab.page.set_viewport_size({"width": 1280, "height": 720})
    lab.open_notebook(
        [
            """\
import sd_widgets as sdw
from sd_widgets import demo
w = sdw.Explorer(demo.target_model("renamed_layer"), demo.variant("renamed_layer"))
w
"""
        ]
    )
    lab.run_all_and_wait()
    root = explorer(lab, cell=0)
    tree = root.locator("[data-role=canvas]")
    missing = tree.locator(".sdw-row[data-key='classifier.weight']")
    picked = tree.locator(".sdw-row[data-key='backbone.stem.conv.weight']")
    expect(missing).to_have_attribute("data-status", "missing")
    expect(picked).to_have_attribute("data-selected", "true")
    style = """e => { const c = getComputedStyle(e), k = e.querySelector('[data-role=ckpt]');
        return [c.backgroundColor, c.backgroundImage, getComputedStyle(k).backgroundImage,
                e.querySelector('.sdw-cell-check').textContent]; }"""
    m, p = missing.evaluate(style), picked.evaluate(style)
    assert m != p, (m, p)
    assert "repeating-linear-gradient" in m[2]  # the absent checkpoint side is hatched
    assert m[3] == "⊘" and p[3] == "☑"
    assert missing.get_attribute("aria-disabled") == "true"  # nothing can select a missing row
    assert picked.get_attribute("aria-disabled") is None
    lab.screenshot("layout-4-missing-vs-selected", root)
