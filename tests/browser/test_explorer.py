"""The Explorer in a real JupyterLab (and Voila), driven by headless Chromium.

Each test opens a notebook, runs it, drives the widget like a person would, and checks the
result both in the DOM and in the kernel (``lab.execute``). Screenshots of every state land in
``tests/artifacts/explorer-*.png``. The DOM contract used here is documented at the top of
``sd_widgets/widget/static/tree.js``.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from sd_widgets.statuses import STATUSES

from .harness import (
    NEW_HEAD,
    SETUP,
    assert_fits_the_cell,
    click_module,
    expect_selected,
    explorer,
    leaf,
    module,
    py,
    run_explorer,
)

pytestmark = pytest.mark.browser

RENAMED = """\
model = demo.target_model("renamed_layer")
ckpt = demo.variant("renamed_layer")
w = sdw.Explorer(model, ckpt)
w
"""

# The payloads avoid dots: a dot separates modules in a state_dict key, so the tree splits there.
# An inline handler's bare `__sdwXss=1` still sets window.__sdwXss, which the test checks.
HOSTILE_KEYS = [
    '<img src=x onerror="__sdwXss=1">.weight',
    "</script><script>__sdwXss=2</script>.bias",
    "quote'\"`${__sdwXss=3}`.weight",
    "ünïcödé.层.重み",
    "&amp;&lt;b&gt;.weight",
]

HOSTILE = f"""\
from collections import OrderedDict
from torch import nn
HOSTILE_KEYS = {json.dumps(HOSTILE_KEYS)}
model = nn.Linear(2, 2)
hostile = OrderedDict((k, torch.zeros(2)) for k in HOSTILE_KEYS)
hostile["weight"] = torch.ones(2, 2)
w = sdw.Explorer(model, hostile)
w
"""


def test_tree_renders_both_columns_with_statuses(lab):
    root = run_explorer(lab, [SETUP, NEW_HEAD])
    rows = root.locator(".sdw-row[data-role=leaf]")
    expect(rows).to_have_count(38)
    mismatch = leaf(root, "classifier.weight")
    assert "sdw-status-shape_mismatch" in mismatch.get_attribute("class")
    expect(mismatch.locator("[data-role=ckpt] [data-role=shape]")).to_have_text("[10, 32]")
    expect(mismatch.locator("[data-role=model] [data-role=shape]")).to_have_text("[3, 32]")
    expect(mismatch.locator("[data-role=status]")).to_contain_text("shape mismatch")
    assert mismatch.get_attribute("data-selectable") == "false"
    assert "shape mismatch" in mismatch.get_attribute("title")
    match = leaf(root, "backbone.stem.conv.weight")
    assert "sdw-status-match" in match.get_attribute("class")
    expect(match.locator("[data-role=ckpt] [data-role=dtype]")).to_have_text("float32")
    expect(match.locator("[data-role=ckpt] [data-role=size]")).to_have_text("1.7 KB")
    expect(root.locator("[data-role=legend-item]")).to_have_count(len(STATUSES))  # one each
    lab.screenshot("explorer-initial", root)


def same_as(name: str, key: str) -> str:
    """Python expression: is the model's ``key`` equal to ``name[key]``?"""
    return f"torch.equal(model.state_dict()[{key!r}], {name}[{key!r}])"


def test_collapse_expand_search_and_filters(lab):
    root = run_explorer(lab, [SETUP, NEW_HEAD])
    leaves = root.locator(".sdw-row[data-role=leaf]")
    head = module(root, "classifier")
    head.locator("[data-role=ckpt] [data-action=expand]").click()
    expect(head).to_have_attribute("data-expanded", "false")
    expect(leaf(root, "classifier.weight")).to_have_count(0)
    expect(leaves).to_have_count(36)
    # a collapsed module still says what is wrong below it
    counts = head.locator("[data-role=counts] [data-status=shape_mismatch]")
    expect(counts).to_have_text("≠ 2 shape mismatches")
    lab.screenshot("explorer-collapsed", root)
    head.locator("[data-role=model] [data-action=expand]").click()
    expect(leaves).to_have_count(38)

    root.locator("[data-action=collapse-all]").click()
    expect(root.locator(".sdw-canvas > .sdw-row")).to_have_count(2)  # backbone, classifier
    expect(module(root, "backbone").locator("[data-role=counts]")).to_contain_text("✓ 36")
    root.locator("[data-action=expand-all]").click()
    expect(leaves).to_have_count(38)

    root.locator("[data-role=search]").fill("running_var")
    expect(leaves).to_have_count(6)
    root.locator("[data-role=search]").fill("")
    expect(leaves).to_have_count(38)
    root.locator("[data-role=only-problems]").check()
    expect(leaves).to_have_count(2)
    expect(root.locator(".sdw-row[data-role=leaf].sdw-status-match")).to_have_count(0)
    lab.screenshot("explorer-only-problems", root)
    root.locator("[data-role=only-problems]").uncheck()
    root.locator("[data-role=legend-item][data-status=match]").click()  # hide matches
    expect(leaves).to_have_count(2)
    root.locator("[data-role=legend-item][data-status=match]").click()
    expect(leaves).to_have_count(38)


def test_clicks_select_subtrees_and_ranges_and_update_the_preview(lab):
    root = run_explorer(lab, [SETUP, NEW_HEAD])
    with lab.count_messages() as msgs:
        click_module(root, "backbone.layer1")
        expect_selected(root, 12)
    assert msgs.to_kernel == 1 and msgs.to_browser == 1, msgs.summary()
    assert py(lab, "len(w.selected_keys)") == "12"
    expect(module(root, "backbone.layer1")).to_have_attribute("data-check", "all")
    expect(leaf(root, "backbone.layer1.0.conv1.weight")).to_have_attribute("data-selected", "true")
    expect(root.locator("[data-role=preview-keys] li")).to_have_count(12)
    expect(root.locator("[data-role=preview-line]")).to_contain_text("12 tensors")
    lab.screenshot("explorer-module-selected", root)

    # clicking a not-selectable key does nothing (its hover text says why)
    leaf(root, "classifier.weight").click(force=True)  # aria-disabled: force the click
    assert py(lab, "len(w.selected_keys)") == "12"

    # a leaf toggles; shift-click selects the range from it
    leaf(root, "backbone.stem.conv.weight").click()
    expect_selected(root, 13)
    leaf(root, "backbone.stem.bn.running_var").click(modifiers=["Shift"])
    expect_selected(root, 17)
    stem = [k for k in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")]
    selected = json.loads(lab.execute("import json; print(json.dumps(w.selected_keys))"))
    assert [k for k in selected if k.startswith("backbone.stem.")] == [
        f"backbone.stem.{k}" for k in stem
    ]
    # clicking the fully selected module again deselects its subtree
    click_module(root, "backbone.layer1", "model")
    expect_selected(root, 5)
    root.locator("[data-action=select-loadable]").click()
    expect_selected(root, 36)
    expect(root.locator("[data-role=preview-skipped-none]")).to_have_text(
        "Nothing: every selected key will be loaded."
    )
    # BatchNorm policy "keep": the running statistics stay selected but are listed as skipped
    root.locator("input[type=radio][value=keep]").check()
    expect_selected(root, 18)
    skipped = root.locator("[data-role=preview-skipped] li")
    expect(skipped).to_have_count(18)
    expect(skipped.first).to_contain_text("backbone.stem.bn.running_mean — bn='keep'")
    assert py(lab, "w.bn_policy") == "keep"
    root.locator("input[type=radio][value=load]").check()
    expect_selected(root, 36)
    root.locator("[data-action=select-none]").click()
    expect_selected(root, 0)


def test_load_selected_changes_the_kernel_model_and_undo_restores(lab):
    root = run_explorer(lab, [SETUP, NEW_HEAD])
    click_module(root, "backbone.layer1")
    expect_selected(root, 12)
    root.locator("[data-action=load]").click()
    expect(root.locator("[data-role=message]")).to_have_attribute("data-level", "success")
    expect(root.locator("[data-role=message-text]")).to_contain_text("Loaded 12 tensors")
    assert py(lab, same_as("ckpt", "backbone.layer1.0.conv1.weight")) == "True"
    assert py(lab, same_as("ckpt", "backbone.layer1.0.bn1.running_mean")) == "True"
    assert py(lab, same_as("original", "backbone.stem.conv.weight")) == "True"
    # the Results tab opens with before/after histograms rendered as images
    expect(root.locator("[data-panel=results]")).to_be_visible()
    images = root.locator("img[data-role=histogram]")
    expect(images.first).to_be_visible(timeout=30_000)
    # the plots come one per event-loop turn (Undo is served between two): wait for the last
    lab.wait_for_stdout("print(repr(w.busy_text))", "''", timeout=60)
    n = int(py(lab, "len(w.histograms)"))
    assert n >= 3
    expect(images).to_have_count(n)
    widths = images.evaluate_all("els => els.map(e => e.naturalWidth)")
    assert all(wd > 100 for wd in widths), widths
    bn = root.locator("img[data-role=bn-plot]")
    expect(bn).to_be_visible()
    assert bn.evaluate("e => e.naturalWidth") > 100
    assert_fits_the_cell(root)  # the results table's long keys scroll inside it
    lab.screenshot("explorer-loaded", root)
    # pick one tensor
    root.locator("[data-role=histogram-picker]").select_option("backbone.layer1.0.bn2.running_var")
    single = root.locator("img[data-role=histogram-single]")
    expect(single).to_be_visible(timeout=30_000)
    expect(single).to_have_attribute("data-key", "backbone.layer1.0.bn2.running_var")
    expect(images).to_have_count(0)
    lab.screenshot("explorer-histogram-picked", root)

    root.locator("[data-action=undo]").click()
    expect(root.locator("[data-role=message-text]")).to_contain_text("Undone")
    assert (
        py(lab, "all(torch.equal(v, original[k]) for k, v in model.state_dict().items())") == "True"
    )
    expect(root.locator("[data-action=undo]")).to_be_disabled()
    lab.screenshot("explorer-undone", root)


def test_code_view_shows_the_plan(lab):
    root = run_explorer(lab, [SETUP, NEW_HEAD])
    click_module(root, "backbone.stem")
    expect_selected(root, 6)
    root.locator("[data-role=tab][data-tab=code]").click()
    code = root.locator("pre[data-role=code]")
    expect(code).to_contain_text("load_state_dict")
    expect(code).to_contain_text("'backbone.stem.bn.running_var'")
    assert code.text_content() == lab.execute("print(w.plan().to_code(), end='')")
    lab.screenshot("explorer-code", root)
    # "Copy" puts exactly that code on the clipboard, ready to paste into a training script
    lab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.server.url)
    root.locator("[data-action=copy-code]").click()
    expect(root.locator("[data-action=copy-code]")).to_have_text("Copied")
    assert lab.page.evaluate("() => navigator.clipboard.readText()") == code.text_content()


def test_accepting_a_rename_realigns_the_tree(lab):
    root = run_explorer(lab, [SETUP, RENAMED])
    expect(leaf(root, "fc.weight")).to_have_attribute("data-status", "unexpected")
    expect(leaf(root, "classifier.weight")).to_have_attribute("data-status", "missing")
    expect(leaf(root, "fc.weight").locator("[data-role=model]")).to_have_class(
        "sdw-cell sdw-cell-side sdw-model sdw-absent"
    )
    root.locator("[data-role=tab][data-tab=renames]").click()
    suggestion = root.locator("[data-role=suggestion]").first
    expect(suggestion).to_contain_text("prefix 'fc.' → 'classifier.'")
    lab.screenshot("explorer-renames-before", root)
    suggestion.locator("[data-action=accept-suggestion]").click()
    expect(leaf(root, "classifier.weight")).to_have_attribute("data-status", "match")
    expect(leaf(root, "fc.weight")).to_have_count(0)
    renamed = leaf(root, "classifier.weight").locator("[data-role=ckpt] [data-role=name]")
    expect(renamed).to_have_text("fc.weight")  # the checkpoint column shows the original key
    expect(root.locator("[data-role=rule]")).to_have_count(1)
    expect(root.locator("[data-role=summary]")).to_have_text("38 keys: 38 matches")
    assert py(lab, "[r['label'] for r in w.rename_rules]") == "[\"prefix 'fc.' → 'classifier.'\"]"
    lab.screenshot("explorer-renames-accepted", root)
    # a rule typed by hand, then removed
    root.locator("[data-role=rule] [data-action=remove-rule]").click()
    expect(leaf(root, "fc.weight")).to_have_attribute("data-status", "unexpected")
    root.locator("[data-role=rule-kind]").select_option("regex")
    root.locator("[data-role=rule-old]").fill(r"^fc\.")
    root.locator("[data-role=rule-new]").fill("classifier.")
    root.locator("[data-action=add-rule]").click()
    expect(leaf(root, "classifier.bias")).to_have_attribute("data-status", "match")
    root.locator("[data-role=rule-old]").fill("(")
    root.locator("[data-action=add-rule]").click()
    expect(root.locator("[data-role=message]")).to_have_attribute("data-level", "error")
    expect(root.locator("[data-role=message-text]")).to_contain_text("invalid regex")
    lab.screenshot("explorer-rule-error", root)


def test_hostile_key_names_render_literally_and_run_nothing(lab):
    root = run_explorer(lab, [SETUP, HOSTILE])
    keys = root.locator(".sdw-row[data-role=leaf]").evaluate_all(
        "els => els.map(e => e.dataset.key)"
    )
    assert set(HOSTILE_KEYS) <= set(keys)
    names = root.locator("[data-role=name]").evaluate_all("els => els.map(e => e.textContent)")
    for literal in (
        '<img src=x onerror="__sdwXss=1">',
        "</script><script>__sdwXss=2</script>",
        "quote'\"`${__sdwXss=3}`",
        "&amp;&lt;b&gt;",
        "ünïcödé",
        "层",
        "重み",
    ):
        assert literal in names, literal
    assert root.locator("img, script, b").count() == 0
    assert lab.page.evaluate("() => window.__sdwXss === undefined")
    # hover text is text too
    title = module(root, '<img src=x onerror="__sdwXss=1">').get_attribute("title")
    assert title.startswith('<img src=x onerror="__sdwXss=1">')
    root.locator("[data-role=tab][data-tab=preview]").click()
    expect(root.locator("[data-role=preview-keys] li").first).to_be_visible()
    lab.screenshot("explorer-hostile-keys", root)
    assert lab.page.evaluate("() => window.__sdwXss === undefined")


ERRORS = """\
import pathlib
pathlib.Path("broken.pt").write_bytes(b"not a checkpoint at all")
bad = sdw.Explorer(demo.target_model("identical"), "broken.pt")
bad
"""

ROLLBACK = """\
model = demo.target_model("identical")
original = {k: v.clone() for k, v in model.state_dict().items()}
def explode(module, incompatible):
    raise RuntimeError("hook exploded")
model.register_load_state_dict_post_hook(explode)
w = sdw.Explorer(model, demo.variant("identical"))
w
"""


def test_errors_appear_in_the_widget(lab):
    lab.open_notebook([SETUP, ERRORS, ROLLBACK])
    lab.run_all_and_wait()
    bad = explorer(lab, 1)
    expect(bad.locator("[data-role=message]")).to_have_attribute("data-level", "error")
    expect(bad.locator("[data-role=message-text]")).to_contain_text("Opening the checkpoint failed")
    expect(bad.locator("[data-role=message-text]")).to_contain_text("broken.pt")
    # the error state says what to do; there is no empty tree and no Load button to press
    expect(bad.locator("[data-role=error-state]")).to_be_visible()
    expect(bad.locator("[data-role=error-fix]")).to_contain_text("torch.save")
    expect(bad.locator("[data-role=viewport]")).to_be_hidden()
    expect(bad.locator("[data-action=load]")).to_be_hidden()
    lab.screenshot("explorer-error-unreadable", bad)
    lab.execute("bad.handle_action({'action': 'load'})")
    expect(bad.locator("[data-role=message-text]")).to_contain_text("no checkpoint to load from")

    root = explorer(lab, 2)
    root.locator("[data-action=load]").click()
    expect(root.locator("[data-role=message]")).to_have_attribute("data-level", "error")
    expect(root.locator("[data-role=message-text]")).to_contain_text("rolled back")
    expect(root.locator("[data-role=message-text]")).to_contain_text("hook exploded")
    assert (
        py(lab, "all(torch.equal(v, original[k]) for k, v in model.state_dict().items())") == "True"
    )
    expect(root.locator("[data-action=load]")).to_be_enabled()  # never a dead button
    lab.screenshot("explorer-error-rollback", root)


BIG = """\
from collections import OrderedDict
from torch import nn
def big_model(n_blocks, per_block=10):
    return nn.Sequential(OrderedDict(blocks=nn.ModuleList(
        nn.Sequential(*[nn.Linear(2, 2) for _ in range(per_block)]) for _ in range(n_blocks))))
model = big_model(600)            # 12,000 keys
sd = model.state_dict()
sd["blocks.7.3.weight"] = torch.zeros(5, 2)      # one shape mismatch
del sd["blocks.599.9.bias"]                      # one missing parameter
sd["blocks.42.extra"] = torch.zeros(1)           # one unexpected key
w = sdw.Explorer(model, sd)
w
"""


def test_twelve_thousand_keys_search_filter_and_scroll(lab):
    root = run_explorer(lab, [SETUP, BIG], timeout=120)
    assert root.get_attribute("data-n-keys") == "12001"
    root.locator("[data-action=expand-all]").click()
    assert int(root.get_attribute("data-n-visible")) == 12001 + 600 * 11 + 1
    drawn = root.locator(".sdw-canvas > .sdw-row").count()
    assert drawn < 200, drawn  # virtualised: only the rows in view (plus overscan) exist
    viewport = root.locator("[data-role=viewport]")
    viewport.evaluate("v => { v.scrollTop = v.scrollHeight; }")
    expect(leaf(root, "blocks.599.9.bias")).to_have_attribute("data-status", "missing")
    root.locator("[data-role=only-problems]").check()
    expect(root.locator(".sdw-row[data-role=leaf]")).to_have_count(3)
    expect(leaf(root, "blocks.7.3.weight")).to_have_attribute("data-status", "shape_mismatch")
    root.locator("[data-role=only-problems]").uncheck()
    root.locator("[data-role=search]").fill("blocks.123.4.")
    expect(root.locator(".sdw-row[data-role=leaf]")).to_have_count(2)
    # the root holds three kinds of problem: compact chips that fit, full words on hover
    root_counts = module(root, "blocks").locator("[data-role=counts]")
    expect(root_counts.locator("[data-status=shape_mismatch]")).to_have_text("≠ 1")
    expect(root_counts.locator("[data-status=unexpected]")).to_have_text("+ 1")
    assert "1 shape mismatch" in root_counts.get_attribute("title")
    assert root_counts.evaluate("e => e.scrollWidth <= e.clientWidth"), "counts overflow"
    lab.screenshot("explorer-12k-search", root)
    click_module(root, "blocks.123.4")
    root.locator("[data-role=search]").fill("")
    expect_selected(root, 11996)
    assert py(lab, "len(w.selected_keys)") == "11996"


def test_dark_theme(lab):
    root = run_explorer(lab, [SETUP, NEW_HEAD])
    lab.page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme', "
        "{theme: 'JupyterLab Dark'})"
    )
    lab.page.wait_for_function(
        "() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000
    )
    root.locator("[data-action=select-loadable]").click()
    expect_selected(root, 36)
    # wait for the theme's CSS to reach the widget (no fixed sleep): its background turns dark
    root.evaluate("""e => new Promise((resolve, reject) => {
        const dark = () => {
            const m = getComputedStyle(e).backgroundColor.match(/\\d+/g) || [];
            return m.length >= 3 && (+m[0]) + (+m[1]) + (+m[2]) < 300;
        };
        const t0 = performance.now();
        const poll = () => dark() ? resolve(true)
            : performance.now() - t0 > 10000 ? reject(new Error("widget background stayed light"))
            : requestAnimationFrame(poll);
        poll();
    })""")
    bg = root.evaluate("e => getComputedStyle(e).backgroundColor")
    rgb = [int(x) for x in bg[bg.index("(") + 1 : bg.index(")")].split(",")[:3]]
    assert sum(rgb) < 3 * 100, bg
    lab.screenshot("explorer-dark", root)
    lab.page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme', "
        "{theme: 'JupyterLab Light'})"
    )


def test_notebook7_renders_selects_and_loads(lab):
    """The same widget in Notebook 7's page (its own front end, the same server)."""
    lab.open_notebook([SETUP, NEW_HEAD], ui="notebook")
    assert "/notebooks/" in lab.page.url
    lab.run_all_and_wait()
    root = explorer(lab)
    expect(root.locator(".sdw-row[data-role=leaf]")).to_have_count(38)
    expect(leaf(root, "classifier.weight")).to_have_attribute("data-status", "shape_mismatch")
    click_module(root, "backbone")
    expect_selected(root, 36)
    root.locator("[data-action=load]").click()
    expect(root.locator("[data-role=message-text]")).to_contain_text("Loaded 36 tensors")
    assert py(lab, same_as("ckpt", "backbone.layer2.0.conv2.weight")) == "True"
    assert py(lab, same_as("original", "classifier.weight")) == "True"
    expect(root.locator("img[data-role=histogram]").first).to_be_visible(timeout=30_000)
    expect(root.locator("img[data-role=bn-plot]").first).to_be_visible(timeout=30_000)
    expect(root.locator("[data-action=undo]")).to_be_enabled()
    lab.screenshot("explorer-notebook7", root)


def test_voila_renders_and_a_click_round_trips(voila_server):
    app = voila_server([SETUP, NEW_HEAD])
    page = app.open(wait_for=".sdw-explorer[data-ready=true]")
    root = page.locator(".sdw-explorer")
    expect(root.locator(".sdw-row[data-role=leaf]")).to_have_count(38)
    with app.count_messages() as msgs:
        click_module(root, "backbone.layer2")
        expect_selected(root, 18)
    assert msgs.to_kernel == 1 and msgs.to_browser == 1, msgs.summary()
    app.screenshot("explorer-voila", root)


def test_undo_refuses_over_a_change_made_in_a_cell_and_undo_anyway_restores(lab):
    """Load, change a loaded tensor from a cell, Undo: refused (the change stays, the stale
    banner stays); "Undo anyway", pressed from the keyboard, restores what was there before."""
    root = run_explorer(lab, [SETUP, NEW_HEAD])
    click_module(root, "backbone.layer1")
    expect_selected(root, 12)
    root.locator("[data-action=load]").click()
    expect(root.locator("[data-role=message-text]")).to_contain_text("Loaded 12 tensors")
    lab.execute(
        "with torch.no_grad():\n"
        "    model.backbone.layer1[0].conv1.weight.add_(1.0)\n"
        "edited = {k: v.clone() for k, v in model.state_dict().items()}"
    )
    stale = root.locator("[data-role=stale]")
    expect(stale).to_be_visible()  # the cell's change is seen after the cell
    expect(stale).to_contain_text("backbone.layer1.0.conv1.weight")

    root.locator("[data-action=undo]").click()
    message = root.locator("[data-role=message]")
    expect(message).to_have_attribute("data-level", "warning")
    expect(message.locator("[data-role=message-text]")).to_contain_text("Undo refused")
    expect(message.locator("[data-role=message-text]")).to_contain_text(
        "backbone.layer1.0.conv1.weight"
    )
    assert py(lab, "all(torch.equal(v, edited[k]) for k, v in model.state_dict().items())") == (
        "True"
    )
    expect(stale).to_be_visible()  # the refusal leaves the banner where it was
    offer = message.locator("[data-action=message-offer]")
    expect(offer).to_have_text("Undo anyway")
    lab.screenshot("explorer-undo-refused", root)

    offer.focus()  # a real button in the tab order: Enter presses it
    lab.page.keyboard.press("Enter")
    expect(message.locator("[data-role=message-text]")).to_contain_text("Undone anyway")
    expect(offer).to_be_hidden()
    assert py(lab, "all(torch.equal(v, original[k]) for k, v in model.state_dict().items())") == (
        "True"
    )
    expect(stale).to_be_hidden()  # every changed tensor was one the undo restored
    expect(root.locator("[data-action=undo]")).to_be_disabled()


TWO_EXPLORERS = """\
model2 = demo.target_model("new_head")
w2 = sdw.Explorer(model2, demo.variant("new_head"), select="none", bn="keep")
w2
"""


def test_two_explorers_on_one_page_have_their_own_ids_and_batchnorm_radio_groups(lab):
    """The arrow keys in one Explorer's BatchNorm radio group never reach the other's."""
    run_explorer(lab, [SETUP, NEW_HEAD, TWO_EXPLORERS])
    first, second = explorer(lab, 1), explorer(lab, 2)
    radio = "input[type=radio][data-role=bn-policy]"
    expect(second.locator(f"{radio}[value=keep]")).to_be_checked()
    expect(first.locator(f"{radio}[value=load]")).to_be_checked()
    names = [el.locator(radio).first.get_attribute("name") for el in (first, second)]
    assert names[0] != names[1], names
    ids = lab.page.evaluate(
        "() => [...document.querySelectorAll('.sdw-explorer [id]')].map(e => e.id)"
    )
    assert len(ids) == len(set(ids)) >= 2, ids

    first.locator(f"{radio}[value=load]").focus()
    for policy in ("keep", "reset", "load"):  # the last press wraps around in its own group
        lab.page.keyboard.press("ArrowRight")
        expect(first.locator(f"{radio}[value={policy}]")).to_be_checked()
        assert py(lab, "w.bn_policy") == policy
        assert py(lab, "w2.bn_policy") == "keep"
        expect(second.locator(f"{radio}[value=keep]")).to_be_checked()
    lab.screenshot("explorer-two-views", lab.notebook_panel)
