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
    expect(module(root, "backbone").locator("[data-role=value]")).to_have_text("18 of 36 changed")
    expect(module(root, "classifier").locator("[data-role=value]")).to_have_text("2 of 2 changed")
    head = leaf(root, "classifier.weight").locator("[data-role=value]")
    expect(head).to_contain_text("Δ")
    assert float(head.get_attribute("data-shade")) > 0
    # the list: changed tensors by default, most changed first; filter to identical ones
    rows = root.locator("[data-role=values-row]")
    expect(rows).to_have_count(20)
    want = json.loads(py(lab, "json.dumps([r.key for r in w._values.most_changed(20)])"))
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.key)") == want
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
