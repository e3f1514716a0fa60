"""The Explorer's value view in a real JupyterLab (issue 18): a model fine-tuned with a "frozen"
backbone in train() mode against its pretrained checkpoint. The user opens "Values", clicks
Compare values, and sees a change badge on every row and module (the backbone's convolutions
identical, its BatchNorm statistics changed), the frozen-BatchNorm call-out, the list filtered
by kind of change, and the before/after and difference histograms of a clicked tensor; a load
then marks the comparison stale. Screenshot: tests/artifacts/values-view.png.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from . import harness
from .harness import leaf, module, py, run_explorer

pytestmark = pytest.mark.browser

TUNED = """\
base = demo.pretrained("cnn")
tuned = demo.fine_tune(demo.pretrained("cnn"), freeze="backbone", steps=5)
w = sdw.Explorer(tuned, base.state_dict(), select="none")
w
"""


def test_value_view_shows_what_changed_in_the_tree(lab):
    root = run_explorer(lab, [harness.SETUP, TUNED], timeout=120)
    values = root.locator("[data-role=values]")
    expect(values).to_have_attribute("data-state", "none")
    values.locator("summary").click()
    values.locator("[data-action=compare_values]").click()
    expect(values).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(root.locator("[data-role=values-summary]")).to_have_text(
        "(model): 20 of 38 tensors changed"
    )
    expect(root.locator("[data-role=values-callout]")).to_contain_text(
        "requires_grad=False does not freeze BatchNorm in train() mode"
    )
    # module rows roll their subtree up; tensor rows carry their change, colour-scaled
    expect(module(root, "backbone").locator("[data-role=value]")).to_have_text("Δ 18/36")
    expect(module(root, "classifier").locator("[data-role=value]")).to_have_text("Δ 2/2")
    # the frozen-looking backbone is flagged in its own row too (the sentence on hover)
    flag = module(root, "backbone").locator("[data-role=frozen-bn]")
    expect(flag).to_be_visible()
    assert "requires_grad=False" in flag.get_attribute("title")
    head = leaf(root, "classifier.weight").locator("[data-role=value]")
    expect(head).to_contain_text("Δ")
    assert float(head.get_attribute("data-shade")) > 0
    # the list: changed tensors by default, most changed first; filter to identical ones
    rows = root.locator("[data-role=values-row]")
    expect(rows).to_have_count(20)
    want = json.loads(py(lab, "json.dumps([r.key for r in w._values.most_changed(20)])"))
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.key)") == want
    # the list's numbers, up to "50. " (its length cap), fit its left padding (were clipped
    # from "10." on: ".0.", ".1.")
    assert root.locator("[data-role=values-list]").evaluate(
        """ol => {
          const probe = document.createElement("span");
          probe.textContent = "50. ";
          probe.style.whiteSpace = "pre";
          ol.firstElementChild.appendChild(probe);
          const width = probe.getBoundingClientRect().width;
          probe.remove();
          return width <= parseFloat(getComputedStyle(ol).paddingLeft);
        }"""
    )
    root.locator("select[data-role=values-filter]").select_option("identical")
    expect(rows).to_have_count(18)
    keys = rows.evaluate_all("rs => rs.map(r => r.dataset.key)")
    stats = ("running_mean", "running_var", "num_batches_tracked")
    assert all(k.startswith("backbone.") and not k.endswith(stats) for k in keys), keys
    root.locator("select[data-role=values-filter]").select_option(
        "nan_appeared,from_zero,large,tiny"
    )
    root.locator("input[data-role=values-search]").fill("stem.bn.running_mean")
    expect(rows).to_have_count(1)
    rows.first.click()
    img = root.locator("img[data-role=values-plot-img]")
    expect(img).to_have_attribute("data-key", "backbone.stem.bn.running_mean", timeout=30_000)
    assert py(lab, "w.value_plot['key']") == "backbone.stem.bn.running_mean"
    lab.screenshot("values-view", root)
    # a load changes the model: the comparison says it is stale
    lab.execute("w.handle_action({'action': 'select_all_loadable'})")
    root.locator("[data-action=load]").click()
    expect(values).to_have_attribute("data-state", "stale", timeout=60_000)
    expect(root.locator("[data-role=values-summary]")).to_contain_text("compare again")


TWO_CHECKPOINTS = """\
import pathlib, tempfile
from safetensors.torch import save_file
d = pathlib.Path(tempfile.mkdtemp())
base = demo.pretrained("cnn")
tuned = demo.fine_tune(demo.pretrained("cnn"), freeze="backbone", steps=5)
torch.save(base.state_dict(), d / "base.pt")
save_file({k: v.contiguous() for k, v in tuned.state_dict().items()}, str(d / "tuned.safetensors"))
w = sdw.Explorer(sdw.compare_values(d / "base.pt", d / "tuned.safetensors"))
w
"""


def test_two_checkpoints_filtered_and_sorted_by_change_from_the_keyboard(lab):
    root = run_explorer(lab, [harness.SETUP, TWO_CHECKPOINTS], timeout=120)
    # the values arrive with the tree: no model, so nothing is offered to select or load
    values = root.locator("[data-role=values]")
    expect(values).to_have_attribute("data-state", "ready")
    expect(root).to_have_attribute("data-values-of", "checkpoints")
    expect(root.locator("[data-action=load]")).to_be_hidden()
    expect(root.locator("[data-action=select-loadable]")).to_be_hidden()
    expect(root.locator("[data-role=ckpt-head]")).to_contain_text("b (after)")
    expect(root.locator("[data-role=model-head]")).to_have_text("a (before)")
    expect(root.locator("[data-role=values-summary]")).to_have_text(
        "(all keys): 20 of 38 tensors changed"
    )
    # module rows roll their subtree up; the frozen-looking backbone is flagged in its row
    expect(module(root, "backbone").locator("[data-role=value]")).to_have_text("Δ 18/36")
    expect(module(root, "classifier").locator("[data-role=value]")).to_have_text("Δ 2/2")
    flag = module(root, "backbone").locator("[data-role=frozen-bn]")
    expect(flag).to_be_visible()
    assert "requires_grad=False does not freeze BatchNorm" in flag.get_attribute("title")
    assert module(root, "classifier").locator("[data-role=frozen-bn]").count() == 0
    # the tree's own filter bar, by keyboard: "changed (any kind)", then most changed first
    change = root.locator("select[data-role=change-filter]")
    expect(change).to_be_visible()
    change.focus()
    lab.page.keyboard.press("ArrowDown")
    expect(change).to_have_value("nan_appeared,from_zero,large,tiny")
    leaves = root.locator(".sdw-row[data-role=leaf]")
    expect(leaves).to_have_count(20)
    changed = json.loads(py(lab, "json.dumps(sorted(r.key for r in w._values if r.changed))"))
    assert sorted(leaves.evaluate_all("rs => rs.map(r => r.dataset.key)")) == changed
    lab.page.keyboard.press("Tab")
    sort = root.locator("[data-role=sort-change]")
    expect(sort).to_be_focused()
    lab.page.keyboard.press("Space")
    expect(sort).to_have_attribute("aria-pressed", "true")
    ranked = json.loads(py(lab, "json.dumps([r.key for r in w._values.most_changed()])"))
    shown = leaves.evaluate_all("rs => rs.map(r => r.dataset.key)")
    # depth first, every module's rows most changed first: the most changed key comes first,
    # and within each module the rows follow the ranking
    assert shown[0] == ranked[0], (shown[:3], ranked[:3])
    by_module: dict[str, list[str]] = {}
    for k in shown:
        by_module.setdefault(k.rpartition(".")[0], []).append(k)
    for keys in by_module.values():
        assert keys == sorted(keys, key=ranked.index), keys
    # the values view's details: Enter on a row shows its numbers and histograms
    top = leaf(root, ranked[0])
    top.focus()
    lab.page.keyboard.press("Enter")
    details = root.locator("[data-role=details]")
    expect(details).to_have_attribute("data-key", ranked[0])
    expect(details.locator("[data-role=value-detail]")).to_contain_text("relative L2 change")
    # its sides are named as in the column headers; nothing about loading or selecting
    labels = details.locator(".sdw-detail-label").all_inner_texts()
    assert {"b key", "a key", "b (after)", "a (before)"} <= set(labels), labels
    assert not {"Checkpoint", "Model", "Selected"} & set(labels), labels
    img = details.locator("img[data-role=value-detail-img]")
    expect(img).to_have_attribute("data-key", ranked[0], timeout=30_000)
    assert py(lab, "w.value_plot['key']") == ranked[0]
    assert img.evaluate("i => i.naturalWidth") > 200
    lab.screenshot("values-two-checkpoints", root)
    # a click on another row's change badge opens that row's details instead of selecting it
    other = ranked[1]
    leaf(root, other).locator("[data-role=value]").click()
    expect(details).to_have_attribute("data-key", other)
    expect(img).to_have_attribute("data-key", other, timeout=30_000)
    assert py(lab, "w.selected_keys") == "[]"
    # Space on a row selects nothing either, and says why
    leaf(root, other).focus()
    lab.page.keyboard.press("Space")
    expect(root.locator("[data-role=tree-note]")).to_contain_text("nothing to select or load")
    assert py(lab, "(w.selected_keys, w.adapters)") == "([], {})"
    # two checkpoints, nothing to select: a click anywhere on a row opens its details too
    third = ranked[2]
    leaf(root, third).locator("[data-role=ckpt] [data-role=name]").click()
    expect(details).to_have_attribute("data-key", third)
    expect(img).to_have_attribute("data-key", third, timeout=30_000)
    # sorting off again: tree order; the filter back to every row
    sort.focus()
    lab.page.keyboard.press("Space")
    expect(sort).to_have_attribute("aria-pressed", "false")
    change.focus()
    lab.page.keyboard.press("ArrowUp")
    expect(change).to_have_value("")
    leaves_all = root.locator(".sdw-row[data-role=leaf]")
    expect(leaves_all).to_have_count(38)
    want_tree = json.loads(py(lab, "json.dumps([r.key for r in w.comparison])"))
    assert leaves_all.evaluate_all("rs => rs.map(r => r.dataset.key)") == want_tree
