"""The Explorer's panels in a real JupyterLab: the Code tab pasted into a new cell and run, the
one-rule banner on a DDP checkpoint, the per-tensor results table on 3,000 tensors, the error
state, the stale view, and the Explorer's cell run again. Each test does what a user does and asserts on what the user sees
and on the kernel's state. Screenshots (listed in tests/browser/ARTIFACTS.md):
tests/artifacts/{first-view,banner,banner-applied,results-table,results-table-picked,
error-state,stale}.png. The panels' DOM contract is in docs/widget-protocol.md.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from . import harness
from .harness import assert_fits_the_cell, explorer, py, run_explorer

pytestmark = pytest.mark.browser

SETUP = (
    harness.SETUP
    + """\
import copy
from collections import OrderedDict
from torch import nn
"""
)

# a BatchNorm-heavy model with 3,000 keys (500 BatchNorm modules) and a "trained" checkpoint
BIG = """\
torch.manual_seed(0)
model = nn.Sequential(*[nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4))
                        for _ in range(500)])
g = torch.Generator().manual_seed(1)
sd = OrderedDict()
for i, (k, v) in enumerate(model.state_dict().items()):
    sd[k] = v + torch.randn(v.shape, generator=g) * 0.01 * (1 + i % 7) if v.is_floating_point() else v + 3
w = sdw.Explorer(model, sd, max_histograms=4)
w
"""


#: JupyterLab's window for the "first view" screenshots (issue 10: 1280×720)
FIRST_VIEW = {"width": 1280, "height": 720}

#: whether an element lies wholly inside the browser window
IN_WINDOW = """e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.top >= 0 && r.left >= 0
        && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
}"""


def message(root):
    return root.locator("[data-role=message]")


def type_into_cell(lab, index: int, text: str | None = None) -> None:
    """Click into cell ``index``'s editor; paste the clipboard (``text=None``) or type text."""
    editor = lab.cell(index).locator(".cm-content")
    editor.click()
    if text is None:
        lab.page.keyboard.press("Control+V")
    else:
        lab.page.keyboard.insert_text(text)


def run_cell(lab, index: int, timeout: float = 60) -> None:
    lab.cell(index).locator(".cm-content").click()
    lab.page.keyboard.press("Shift+Enter")
    lab.wait_idle(timeout)


def test_code_tab_pasted_into_a_new_cell_loads_exactly_like_partial_load(lab):
    lab.open_notebook(
        [
            SETUP,
            'model = demo.target_model("new_head")\n'
            'torch.save(demo.variant("new_head"), "new_head.pt")\n'
            'w = sdw.Explorer(model, "new_head.pt", select="none")\nw',
            "",
        ]
    )
    lab.run_all_and_wait()
    root = explorer(lab)
    lab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.server.url)
    # select a subtree and reset its BatchNorm statistics
    module = root.locator('.sdw-row[data-role=module][data-path="backbone.layer1"]')
    module.locator("[data-role=ckpt] [data-role=name]").click()
    root.locator("input[data-role=bn-policy][value=reset]").check()
    lab.wait_for_stdout(
        "print(len(w.selected_keys), w.bn_policy)",
        lambda s: s.split()[1:] == ["reset"] and int(s.split()[0]) > 0,
    )
    # another tab: no code (the kernel writes it when the Code tab opens, after any work it
    # is busy with): nothing to copy until it arrives
    lab.execute("w.tab = 'results'")
    expect(root.locator("[data-action=copy-code]")).to_be_disabled()
    root.locator("[data-role=tab][data-tab=code]").click()
    expect(root.locator("[data-action=copy-code]")).to_be_enabled()
    # the model variable of the notebook is called `net` here: say so in the Code tab
    name = root.locator("input[data-role=model-name]")
    expect(name).to_have_value("model")
    name.fill("1net")
    expect(root.locator("[data-role=code-error]")).to_contain_text("not a Python variable name")
    name.fill("net")
    code = root.locator("pre[data-role=code]")
    expect(code).to_contain_text("where ``net`` is the model")
    expect(root.locator("[data-role=code-error]")).to_have_text("")
    lab.execute(
        "net = model\ntwin = copy.deepcopy(model)\n"
        "before = {k: v.clone() for k, v in model.state_dict().items()}"
    )
    root.locator("[data-action=copy-code]").click()
    copied = lab.page.evaluate("() => navigator.clipboard.readText()")
    assert copied == code.text_content() and "load_partial" in copied
    # paste into the new, empty cell with the keyboard and run it
    type_into_cell(lab, 2)
    expect(lab.cell(2).locator(".cm-content")).to_contain_text("def load_partial")
    run_cell(lab, 2)
    out = lab.cell(2).locator(".jp-OutputArea")
    expect(out).to_contain_text("into net")
    # the kernel: the pasted code changed `model` exactly as partial_load changes its twin
    result = json.loads(
        py(
            lab,
            "__import__('json').dumps([len(sdw.partial_load(twin, w.plan())"
            ".loaded), sorted(k for k, v in model.state_dict().items() if "
            "not torch.equal(v, before[k])), all(torch.equal(a, b) and a.dtype"
            " == b.dtype for a, b in zip(model.state_dict().values(), "
            "twin.state_dict().values()))])",
        )
    )
    n_loaded, changed, identical = result
    assert n_loaded > 0 and changed and all(k.startswith("backbone.layer1.") for k in changed)
    assert identical, "pasted code and partial_load differ"


def test_ddp_checkpoint_banner_apply_realigns_and_says_what_changed(lab):
    lab.page.set_viewport_size(FIRST_VIEW)  # laid out at 1280×720 from the start
    lab.open_notebook(
        [
            SETUP,
            'model = demo.target_model("dataparallel")\n'
            'w = sdw.Explorer(model, demo.variant("dataparallel"))\nw',
        ],
        # in a folder of its own: the file browser of first-view.png lists only this notebook
        name="first-view/ddp_checkpoint.ipynb",
    )
    lab.run_all_and_wait()
    root = explorer(lab)
    banner = root.locator("[data-role=banner]")
    expect(banner).to_be_visible()
    n = int(py(lab, "w.tree['n_keys'] // 2"))
    # the head claims what the rule does: every missing and unexpected key pairs up
    expect(banner.locator("[data-role=banner-head]")).to_have_text(
        "One rule pairs up every missing and unexpected key: "
    )
    expect(banner.locator("[data-role=banner-text]")).to_contain_text("'module.'")
    expect(banner.locator("[data-role=banner-text]")).to_contain_text(
        f"{n} missing + {n} unexpected keys pair up"
    )
    # the banner is above the tree: the first screen shows the problem and its fix
    box, tree_box = banner.bounding_box(), root.locator("[data-role=viewport]").bounding_box()
    assert box["y"] < tree_box["y"]
    # the first view: the widget scrolled to the top of the notebook, as after running its cell
    root.evaluate("e => e.scrollIntoView({block: 'start'})")
    assert banner.evaluate(IN_WINDOW), "the banner is not on the first screen"
    lab.screenshot("first-view")
    lab.screenshot("banner", banner)
    banner.locator("[data-action=apply-banner]").click()
    expect(message(root)).to_contain_text(f"{n} keys now pair up: {n} matches.")
    expect(banner).to_be_hidden()
    expect(root.locator("[data-role=summary]")).to_contain_text(f"{n} matches")
    expect(root.locator("[data-role=busy-panel]")).to_have_attribute("data-busy", "false")
    lab.screenshot("banner-applied", root)
    assert py(lab, "(w.rename_rules[0]['old'], w.tree['counts'][0])") == f"('module.', {n})"


def test_results_table_sorts_searches_and_picks_any_tensor_and_bn_module(lab):
    root = run_explorer(lab, [SETUP, BIG], timeout=120)
    root.locator("[data-action=load]").click()
    expect(message(root)).to_have_attribute("data-level", "success", timeout=60_000)
    expect(message(root)).to_contain_text("Loaded 3,000 tensors")
    table = root.locator("[data-role=results-table]")
    rows = table.locator("tr[data-role=result-row]")
    expect(rows).to_have_count(50, timeout=60_000)  # page 1 of 60
    expect(root.locator("[data-role=results-count]")).to_have_text("3,000 of 3,000 tensors")
    # default: most changed first
    cells = rows.locator("td[data-col=rel_change]").all_text_contents()
    rel = [float("inf") if x.startswith("∞") else float(x or "nan") for x in cells]  # ∞: from 0
    assert rel == sorted(rel, reverse=True), rel
    # the grid shows the most-changed floating tensors (every one changed here; the integer
    # BatchNorm counters are never plotted)
    expect(root.locator("img[data-role=histogram]")).to_have_count(4, timeout=60_000)
    grid_keys = json.loads(py(lab, "__import__('json').dumps([h['key'] for h in w.histograms])"))
    most_changed = "[k for k in w.histogram_keys if not k.endswith('num_batches_tracked')][:4]"
    assert grid_keys == json.loads(py(lab, f"__import__('json').dumps({most_changed})"))
    # the default view: most changed first, the grid of the most-changed tensors
    assert_fits_the_cell(root)
    lab.screenshot("results-table", root.locator("[data-panel=results]"))
    # sort by key, ascending then descending
    root.locator("th[data-sort=key]").click()
    expect(root.locator("th[data-sort=key]")).to_have_attribute("aria-sort", "ascending")
    first = rows.first.get_attribute("data-key")
    assert first == "0.0.weight", first
    root.locator("th[data-sort=key]").click()
    expect(root.locator("th[data-sort=key]")).to_have_attribute("aria-sort", "descending")
    expect(rows.first).to_have_attribute("data-key", "99.1.weight")
    # pages
    root.locator("[data-action=page-next]").click()
    expect(root.locator("[data-role=results-page]")).to_have_text("page 2 / 60")
    # search and pick a tensor far beyond the first 2,000
    root.locator("input[data-role=results-search]").fill("498.0.")
    expect(rows).to_have_count(1)
    expect(root.locator("[data-role=results-count]")).to_have_text("1 of 3,000 tensors")
    rows.first.click()
    picked = root.locator("img[data-role=picked-histogram]")
    expect(picked).to_have_attribute("data-key", "498.0.weight")
    assert py(lab, "w.histogram['key']") == "498.0.weight"
    # any BatchNorm module of the 500, by name
    expect(root.locator("[data-role=bn-count]")).to_contain_text("500 modules changed")
    bn = root.locator("input[data-role=bn-picker]")
    bn.fill("450.1")
    bn.press("Enter")
    lab.wait_for_stdout("print(w.bn_plot.get('module'))", "450.1", timeout=30)
    expect(root.locator("img[data-role=bn-plot]")).to_be_visible()
    root.locator("input[data-role=results-search]").fill("")
    expect(rows).to_have_count(50)
    lab.page.set_viewport_size({"width": 1280, "height": 900})
    assert_fits_the_cell(root)  # longer keys on this page: the table scrolls, the widget stays
    lab.screenshot("results-table-picked", root.locator("[data-panel=results]"))


def test_unreadable_file_shows_the_error_and_the_fix_not_an_empty_tree(lab):
    lab.open_notebook(
        [
            SETUP,
            'open("broken.pt", "wb").write(b"not a checkpoint at all")\n'
            'w = sdw.Explorer(demo.target_model("identical"), "broken.pt")\nw',
        ]
    )
    lab.run_all_and_wait()
    root = explorer(lab)
    expect(root).to_have_attribute("data-state", "error")
    panel = root.locator("[data-role=error-state]")
    expect(panel).to_be_visible()
    expect(panel.locator("[data-role=error-title]")).to_have_text(
        "The checkpoint could not be read"
    )
    expect(panel.locator("[data-role=error-text]")).to_contain_text("broken.pt")
    expect(panel.locator("[data-role=error-fix]")).to_contain_text("torch.save")
    for role in ("viewport", "legend", "actions", "toolbar"):
        expect(root.locator(f"[data-role={role}]")).to_be_hidden()
    expect(root.locator("[data-action=load]")).to_be_hidden()
    lab.screenshot("error-state", root)


def test_plain_load_state_dict_in_another_cell_makes_the_view_stale_until_refresh(lab):
    lab.open_notebook(
        [
            SETUP,
            'model = demo.target_model("identical")\n'
            'w = sdw.Explorer(model, demo.variant("identical"))\nw',
            "",
        ]
    )
    lab.run_all_and_wait()
    root = explorer(lab)
    root.locator("[data-action=load]").click()
    expect(message(root)).to_have_attribute("data-level", "success")
    expect(root.locator("img[data-role=histogram]").first).to_be_visible(timeout=60_000)
    stale = root.locator("[data-role=stale]")
    expect(stale).to_be_hidden()
    # the user loads other weights (a freshly built model's) with plain torch in a new cell
    type_into_cell(
        lab,
        2,
        'other = demo.target_model("identical")\n'
        "model.backbone.load_state_dict(other.backbone.state_dict())",
    )
    run_cell(lab, 2)
    expect(stale).to_be_visible()
    expect(stale.locator("[data-role=stale-text]")).to_contain_text("changed outside")
    expect(root).to_have_attribute("data-stale", "true")
    expect(root.locator("[data-role=results-state]")).to_contain_text("stale")
    assert_fits_the_cell(root)  # the Refresh action at the stale banner's end is on screen
    lab.screenshot("stale", root)
    stale.locator("[data-action=refresh]").click()
    expect(stale).to_be_hidden()
    expect(message(root)).to_contain_text("Refreshed")
    expect(root.locator("img[data-role=histogram]")).to_have_count(0)
    # the BatchNorm plot was cleared too: no claim about "the last load" it no longer shows
    expect(root.locator("[data-role=bn-plot-box]")).to_have_text(
        "No plot yet: load something to see BatchNorm running statistics here."
    )
    assert py(lab, "(w.stale, w.results['state'])") == "({}, 'none')"


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_running_the_explorers_cell_again_closes_the_old_one_and_gives_back_its_undo(lab, ui):
    """A cell run again clears its output, but ipywidgets and ``Out`` keep the old Explorer:
    its undo snapshot, after-cell check and torch hooks would stay. The new run closes it
    (JupyterLab and Notebook 7 both name the cell in the request that runs it)."""
    lab.open_notebook(
        [
            SETUP,
            'model = demo.target_model("identical")\n'
            'w = sdw.Explorer(model, demo.variant("identical"))\nw',
            "",
        ],
        ui=ui,
    )
    lab.run_all_and_wait()
    root = explorer(lab)
    root.locator("[data-action=load]").click()
    expect(message(root)).to_have_attribute("data-level", "success")
    lab.execute(
        "import gc, weakref\n"
        "old, old_model = w, weakref.ref(model)\n"
        "checks = len(get_ipython().events.callbacks['post_run_cell'])"
    )
    assert py(lab, "(old.reports[-1].snapshot_nbytes > 0, old.comm is not None)") == "(True, True)"
    run_cell(lab, 1)
    root = explorer(lab)
    expect(lab.output_area(1).locator(".sdw-explorer")).to_have_count(1)
    expect(message(root)).to_contain_text("This cell ran again: the Explorer it built before")
    if ui == "lab":
        lab.screenshot("cell-ran-again", root)
    assert py(lab, "(w is not old, old.comm is None, w.comm is not None)") == "(True, True, True)"
    # the old Explorer lives on (in `old` and in Out) holding nothing: its model (which the
    # cell replaced) is freed, its undo snapshot with it
    assert py(lab, "(old.model, old.reports, gc.collect() >= 0, old_model())") == (
        "(None, [], True, None)"
    )
    # one after-cell check, the new Explorer's: the old one's went with it
    assert py(lab, "len(get_ipython().events.callbacks['post_run_cell']) == checks") == "True"
    lab.execute("old.handle_action({'action': 'undo'})")
    assert "this Explorer was closed" in py(lab, "old.message['text']")
    # the new Explorer works as the first did: its load, then its undo
    root.locator("[data-action=load]").click()
    expect(message(root)).to_have_attribute("data-level", "success")
    root.locator("[data-action=undo]").click()
    expect(message(root)).to_contain_text("Undone")
    # a cell the front end does not name (this helper's own code) closes nothing
    lab.execute("again = sdw.Explorer(model, demo.variant('identical'))")
    assert py(lab, "(w.comm is not None, again.comm is not None)") == "(True, True)"
