"""The Explorer widget without a browser.

Front-end changes are simulated the way the browser makes them: setting a synced trait
(``selected_keys``, ``bn_policy``, ``adapters``) or sending a custom message, which lands in
``Explorer.handle_action``. The protocol tests go one level lower and feed raw comm messages
to the widget, asserting on the messages Python sends back.
"""

from __future__ import annotations

import base64
import json
import pickle
import re
import threading
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn
from traitlets import TraitError

import sd_widgets as sdw
from sd_widgets import demo
from sd_widgets.widget import _panels, _selection, _stale, _summary, _tree_payload
from sd_widgets.widget._explorer import Explorer

STATIC = Path(sdw.__file__).parent / "widget" / "static"

HOSTILE_KEYS = [
    "<img src=x onerror=alert(1)>.weight",
    "</script><script>alert(2)</script>.bias",
    "quote'\"`${x}`.weight",
    "ünïcödé.层.重み",
    "&amp;&lt;b&gt;.weight",
]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


class RecordingComm:
    """A comm that records what Python sends (like anywidget's and ipywidgets' test comms)."""

    comm_id = "test-comm"
    kernel = "a kernel"  # truthy: ipywidgets only sends state when the comm has a kernel

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self._handler = None

    def open(self, *args, **kwargs) -> None:
        pass

    def on_msg(self, handler) -> None:
        self._handler = handler

    def send(self, data=None, metadata=None, buffers=None) -> None:
        msg = json.loads(json.dumps(data))
        # binary buffers (the tree payload) travel beside the JSON: put them back where they
        # came from, decoded, so tests see every trait that was sent
        state = msg.get("state") if isinstance(msg, dict) else None
        for path, buf in zip(
            msg.get("buffer_paths", []) if state is not None else [], buffers or [], strict=True
        ):
            state[path[0]] = json.loads(bytes(buf).decode("utf-8"))
        self.sent.append(msg)

    def close(self, *args, **kwargs) -> None:
        pass

    # front end → kernel -------------------------------------------------------------------
    def from_frontend(self, data: dict) -> None:
        self._handler({"content": {"data": data}, "buffers": []})

    def updates(self) -> list[dict]:
        return [m for m in self.sent if m.get("method") == "update"]


def explorer(variant: str = "new_head", **kw) -> tuple[Explorer, nn.Module]:
    model = demo.target_model(variant)
    return Explorer(model, demo.variant(variant), **kw), model


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed_keys(before: dict[str, torch.Tensor], model: nn.Module) -> set[str]:
    now = model.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, now[k])}


def leaf_statuses(w: Explorer) -> dict[str, str]:
    index = _tree_payload.TreeIndex(w.tree)
    return {k: index.status(k) for k in index.keys}


def big_model(n_layers: int) -> nn.Module:
    """``2 * n_layers`` keys under ``blocks.<i>.lin``."""
    return nn.Sequential(
        OrderedDict(
            blocks=nn.ModuleList(nn.ModuleDict({"lin": nn.Linear(2, 2)}) for _ in range(n_layers))
        )
    )


# --------------------------------------------------------------------------------------------
# payload (pure functions)
# --------------------------------------------------------------------------------------------


def test_payload_has_one_row_per_comparison_row_and_aligned_sides():
    model = demo.target_model("renamed_layer")
    cmp = sdw.compare(model, demo.variant("renamed_layer"))
    p = _tree_payload.payload_from_comparison(cmp)
    cols = p["columns"]
    assert p["n_keys"] == len(cmp.rows)
    assert all(len(v) == p["n_entries"] for v in cols.values())
    index = _tree_payload.TreeIndex(p)
    assert set(index.keys) == {r.key for r in cmp.rows}
    for r in cmp.rows:
        row = index.row(r.key)
        assert row["status"] == r.status
        assert row["sides"] == (1 if r.ckpt_key else 0) | (2 if r.model_key else 0)
        assert row["ckpt_shape"] == (list(r.ckpt_shape) if r.ckpt_shape is not None else None)
        assert row["ckpt_dtype"] == r.ckpt_dtype and row["model_dtype"] == r.model_dtype
    # a key on both sides is ONE row; one-sided rows leave the other side empty
    assert index.row("backbone.stem.conv.weight")["sides"] == 3
    assert index.row("fc.weight")["sides"] == 1 and index.row("fc.weight")["model_shape"] is None
    assert index.row("classifier.weight")["sides"] == 2
    assert p["counts"] == [cmp.summary()[s] for s in p["statuses"]]


def test_payload_module_counts_cover_their_contiguous_subtree():
    cmp = sdw.compare(demo.target_model("new_head"), demo.variant("new_head"))
    p = _tree_payload.payload_from_comparison(cmp)
    cols = p["columns"]
    for i, t in enumerate(cols["t"]):
        if t != 0:
            continue
        leaves = [j for j in range(i + 1, cols["end"][i]) if cols["t"][j] == 1]
        counts = [0] * len(p["statuses"])
        for j in leaves:
            counts[cols["status"][j]] += 1
            assert cols["path"][j].startswith(cols["path"][i] + ".")
        assert counts == cols["counts"][i], cols["path"][i]
    classifier = cols["path"].index("classifier")
    assert cols["counts"][classifier][p["statuses"].index("shape_mismatch")] == 2


def test_selectable_and_reasons():
    cmp = sdw.compare(demo.target_model("new_head"), demo.variant("new_head"))
    selectable = _tree_payload.selectable_keys(cmp)
    assert "classifier.weight" not in selectable and len(selectable) == 36
    assert "classifier.weight" in _tree_payload.selectable_keys(
        cmp, {"classifier.weight": "overlap"}
    )
    p = _tree_payload.payload_from_comparison(cmp)  # the browser reads the reasons from the payload
    reasons = {
        path: why
        for path, why in zip(p["columns"]["path"], p["columns"]["reason"], strict=True)
        if why
    }
    assert set(reasons) == {"classifier.weight", "classifier.bias"}
    assert "shape mismatch" in reasons["classifier.weight"]
    assert "(10, 32)" in reasons["classifier.weight"] and "(3, 32)" in reasons["classifier.weight"]


def test_toggle_module_and_range_selection():
    cmp = sdw.compare(demo.target_model("new_head"), demo.variant("new_head"))
    index = _tree_payload.TreeIndex(_tree_payload.payload_from_comparison(cmp))
    ok = {"selectable": _tree_payload.selectable_keys(cmp)}
    stem = index.subtree_keys("backbone.stem")
    assert len(stem) == 6
    sel = _selection.toggle(index, [], modules=["backbone.stem"], **ok)
    assert sel == stem
    sel = _selection.toggle(
        index, [*sel, "backbone.layer1.0.conv1.weight"], modules=["backbone.stem"], **ok
    )
    assert sel == ["backbone.layer1.0.conv1.weight"]  # fully selected subtree → deselected
    # partly selected → everything in it selected
    assert _selection.toggle(index, stem[:2], modules=["backbone.stem"], **ok) == stem
    # not selectable keys never enter the selection
    assert _selection.toggle(index, [], modules=["classifier"], **ok) == []
    assert _selection.toggle(index, [], keys=["classifier.weight"], **ok) == []
    rng = _selection.apply_range(
        index, [], keys=stem[1:4], modules=["backbone.layer1"], select=True, **ok
    )
    assert rng == stem[1:4] + index.subtree_keys("backbone.layer1")
    assert (
        _selection.apply_range(index, rng, modules=["backbone.layer1"], select=False, **ok)
        == stem[1:4]
    )
    with pytest.raises(KeyError):
        index.subtree_keys("no.such.module")


def test_hostile_key_names_survive_unchanged():
    sd = OrderedDict((k, torch.zeros(2)) for k in HOSTILE_KEYS)
    model = nn.Linear(2, 2)
    cmp = sdw.compare(model, sd)
    p = _tree_payload.payload_from_comparison(cmp, source="<b>src</b>")
    index = _tree_payload.TreeIndex(p)
    assert set(HOSTILE_KEYS) <= set(index.keys)
    names = set(p["columns"]["name"])
    assert {"weight", "bias", "重み"} <= names
    assert "<img src=x onerror=alert(1)>" in p["columns"]["path"]  # a module node path
    # the JSON the browser receives holds the exact strings
    assert json.loads(json.dumps(p))["columns"]["path"] == p["columns"]["path"]
    html = _summary.summary_html(p)
    assert "<img" not in html and "<script" not in html and "<b>src" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.weight" in html


def test_static_fallback_html_shows_both_shapes_whole():
    """The HTML shown where no widget front end runs (nbviewer, GitHub) names both shapes
    exactly — a regression: stripping '( )' once ate the model shape's closing parenthesis."""
    cmp = sdw.compare(demo.target_model("new_head"), demo.variant("new_head"))
    html = _summary.summary_html(_tree_payload.payload_from_comparison(cmp))
    assert "checkpoint (10, 32) vs model (3, 32)</td>" in html
    assert "checkpoint (10,) vs model (3,)</td>" in html


def test_suggestions_payload_lists_rules_first_with_the_rule_to_add():
    cmp = sdw.compare(demo.target_model("renamed_layer"), demo.variant("renamed_layer"))
    sugg = _panels.suggestions_payload(cmp.suggest_renames(), cmp.prefix_suggestions())
    assert sugg[0]["type"] == "rule" and sugg[0]["fixes"] == 2
    assert sugg[0]["rule"] == {
        "kind": "prefix",
        "old": "fc.",
        "new": "classifier.",
        "label": "prefix 'fc.' → 'classifier.'",
    }
    pairs = [s for s in sugg if s["type"] == "pair"]
    assert {(s["ckpt_key"], s["model_key"]) for s in pairs} == {
        ("fc.weight", "classifier.weight"),
        ("fc.bias", "classifier.bias"),
    }
    assert len({s["id"] for s in sugg}) == len(sugg)


def test_rule_specs_round_trip_and_bad_rules_are_readable():
    for spec in (
        {"kind": "prefix", "old": "module.", "new": ""},
        {"kind": "regex", "old": r"^fc\.", "new": "classifier."},
        {"kind": "exact", "old": "re:odd", "new": "x"},
    ):
        rule = _panels.rule_from_spec(spec)
        assert {k: v for k, v in _panels.rule_to_spec(rule).items() if k != "label"} == spec
    with pytest.raises(ValueError, match="regex"):
        _panels.rule_from_spec({"kind": "regex", "old": "(", "new": ""})
    with pytest.raises(ValueError, match="kind"):
        _panels.rule_from_spec({"kind": "glob", "old": "a", "new": "b"})


# --------------------------------------------------------------------------------------------
# Explorer: construction, repr, static fallback
# --------------------------------------------------------------------------------------------


def test_initial_state_selects_everything_loadable_and_previews_it():
    w, model = explorer("new_head")
    index = _tree_payload.TreeIndex(w.tree)
    assert w.selected_keys == list(index.ordered(_tree_payload.selectable_keys(w.comparison)))
    assert len(w.selected_keys) == 36
    plan = w.plan()
    assert w.preview["n_tensors"] == len(plan.keys) == 36
    assert w.preview["n_params"] == plan.numel
    assert w.preview["nbytes"] == plan.nbytes
    assert w.preview["keys"] == plan.keys
    assert w.model is model
    assert not w.can_undo and not w.busy and w.message == {}
    assert (
        Explorer(
            demo.target_model("new_head"), demo.variant("new_head"), select="none"
        ).selected_keys
        == []
    )


def test_repr_is_cheap_stable_and_the_mimebundle_has_a_static_fallback():
    w, _ = explorer("new_head")
    r = repr(w)
    assert r == (
        "Explorer(SmallCNN ← in-memory state dict (38 tensors): 38 keys, 36 matches, 2 shape mismatches;"
        " 36 selected)"
    )
    assert not re.search(r"0x[0-9a-f]+", r)
    data, _meta = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "2 shape mismatches" in data["text/plain"]
    assert "classifier.weight" in data["text/plain"] and "(10, 32)" in data["text/plain"]
    assert "<table>" in data["text/html"] and "classifier.weight" in data["text/html"]
    assert not re.search(r"0x[0-9a-f]{6,}", data["text/plain"] + data["text/html"])


def test_explorer_accepts_a_comparison():
    model = demo.target_model("new_head")
    cmp = sdw.compare(model, demo.variant("new_head"))
    w = Explorer(cmp)
    assert w.model is model and w.comparison is cmp
    assert w.tree["n_keys"] == 38


def test_esm_and_css_ship_inside_the_package_and_never_use_innerhtml():
    from sd_widgets.widget._explorer import BUNDLE

    modules = sorted(STATIC.glob("*.js"))
    js = "\n".join(path.read_text() for path in modules)
    assert "export default { render }" in (STATIC / "explorer.js").read_text()
    for path in [*modules, BUNDLE / "explorer.js"]:
        text = path.read_text()
        assert "innerHTML" not in text and "outerHTML" not in text, path.name
        assert "insertAdjacentHTML" not in text, path.name
    # status colours: one CSS rule per legend entry, written by the front end from the payload
    assert ".sdw-status-${item.status}" in js and "--sdw-c-${item.status}" in js
    w, _ = explorer("identical")
    # the one bundled module (esbuild writes its default export as `export { x as default }`)
    assert w._esm == (BUNDLE / "explorer.js").read_text(encoding="utf-8")
    assert re.search(r"^export \{\s*\w+ as default\s*\};\s*$", w._esm, re.M)
    assert not re.search(r"^\s*import\b", w._esm, re.M)  # nothing left to fetch
    assert ".sdw-explorer" in w._css and "@import" not in w._css


# --------------------------------------------------------------------------------------------
# selection from the front end
# --------------------------------------------------------------------------------------------


def test_front_end_selection_is_cleaned_and_previewed():
    w, _ = explorer("new_head")
    w.selected_keys = [
        "classifier.weight",
        "backbone.stem.conv.weight",
        "nope",
        "backbone.stem.conv.weight",
    ]
    assert w.selected_keys == ["backbone.stem.conv.weight"]
    assert w.preview["n_tensors"] == 1
    assert w.preview["n_params"] == 16 * 3 * 3 * 3
    assert w.preview["nbytes"] == 16 * 3 * 3 * 3 * 4
    assert w.preview["keys"] == ["backbone.stem.conv.weight"]


def test_module_click_toggles_its_subtree_and_shift_range():
    w, _ = explorer("new_head", select="none")
    w.handle_action({"action": "toggle", "modules": ["backbone.layer1"]})
    layer1 = _tree_payload.TreeIndex(w.tree).subtree_keys("backbone.layer1")
    assert w.selected_keys == layer1 and len(layer1) == 12
    assert w.preview["n_tensors"] == 12
    w.handle_action({"action": "toggle", "modules": ["backbone.layer1"]})
    assert w.selected_keys == []
    w.handle_action({"action": "toggle", "keys": ["backbone.stem.conv.weight"]})
    w.handle_action(
        {
            "action": "select_range",
            "select": True,
            "keys": ["backbone.stem.conv.weight", "backbone.stem.bn.weight"],
            "modules": ["backbone.layer2"],
        }
    )
    assert len(w.selected_keys) == 2 + 18
    w.handle_action({"action": "select_none"})
    assert w.selected_keys == [] and w.preview["n_tensors"] == 0
    w.handle_action({"action": "select_all_loadable"})
    assert len(w.selected_keys) == 36
    assert w.message == {}


def test_bn_policy_and_code_view_follow_the_selection():
    w, model = explorer("new_head")
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert w.code == ""  # the listing is only built while the Code view is shown
    w.tab = "code"
    assert "load_state_dict" in w.code and "backbone.stem.bn.running_mean" in w.code
    n_all = w.preview["n_tensors"]
    w.bn_policy = "keep"
    assert w.preview["n_tensors"] == n_all - 3 * n_bn  # running stats + num_batches_tracked
    assert any("bn='keep'" in why for _, why in w.preview["skipped"])
    assert "'keep'" in w.code
    w.handle_action({"action": "set_bn", "policy": "nonsense"})
    assert w.message["level"] == "error" and w.bn_policy == "keep"
    with pytest.raises(TraitError, match="nonsense"):  # from Python: a plain error, no message
        w.bn_policy = "nonsense"
    assert w.bn_policy == "keep"


# --------------------------------------------------------------------------------------------
# load, histograms, undo
# --------------------------------------------------------------------------------------------


def test_load_changes_the_live_model_and_shows_histograms_then_undo_restores_exactly():
    w, model = explorer("new_head", select="none")
    ckpt = demo.variant("new_head")
    before = snapshot(model)
    w.selected_keys = [
        "backbone.stem.conv.weight",
        "backbone.stem.bn.weight",
        "backbone.stem.bn.running_mean",
        "backbone.stem.bn.running_var",
    ]
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    assert changed_keys(before, model) == set(w.selected_keys)
    for k in w.selected_keys:
        assert torch.equal(model.state_dict()[k], ckpt[k])
    assert w.can_undo and not w.busy
    assert w.last_load["loaded"] == 4
    # the grid: every changed floating tensor, most changed first: the running mean changed
    # from zero (rel. change "inf"), so it leads
    grid = [h["key"] for h in w.histograms]
    assert grid[0] == "backbone.stem.bn.running_mean" and set(grid) == set(w.selected_keys)
    assert grid == w.histogram_keys
    for h in w.histograms:
        assert h["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(h["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert w.bn_plot["src"].startswith("data:image/png;base64,")
    assert w.bn_plot["modules"] == ["backbone.stem.bn"]
    assert set(w.histogram_keys) == set(w.selected_keys)
    # pick one tensor in the browser
    w.histogram_key = "backbone.stem.bn.running_var"
    assert w.histogram["key"] == "backbone.stem.bn.running_var"
    assert w.histogram["src"].startswith("data:image/png;base64,")

    w.handle_action({"action": "undo"})
    assert w.message["level"] == "success", w.message
    assert changed_keys(before, model) == set()  # bit-identical
    assert not w.can_undo and w.histograms == [] and w.last_load["undone"]
    w.handle_action({"action": "undo"})
    assert w.message["level"] == "warning" and "Nothing to undo" in w.message["text"]


def test_two_loads_undo_in_reverse_order():
    w, model = explorer("new_head", select="none")
    s0 = snapshot(model)
    w.selected_keys = ["backbone.stem.conv.weight"]
    w.handle_action({"action": "load"})
    s1 = snapshot(model)
    w.selected_keys = ["backbone.layer1.0.conv1.weight"]
    w.handle_action({"action": "load"})
    assert len(w.reports) == 2
    w.handle_action({"action": "undo"})
    assert changed_keys(s1, model) == set() and w.can_undo
    w.handle_action({"action": "undo"})
    assert changed_keys(s0, model) == set() and not w.can_undo


def test_bn_policies_reach_the_model():
    w, model = explorer("identical")
    before = snapshot(model)
    w.bn_policy = "keep"
    w.handle_action({"action": "load"})
    changed = changed_keys(before, model)
    assert "backbone.stem.conv.weight" in changed
    assert not any(
        k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed
    )
    w.handle_action({"action": "undo"})

    model.backbone.stem.bn.running_mean.fill_(5.0)
    w.bn_policy = "reset"
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    assert torch.equal(model.backbone.stem.bn.running_mean, torch.zeros(16))
    assert torch.equal(model.backbone.stem.bn.running_var, torch.ones(16))
    assert "reset BatchNorm statistics" in w.message["text"]
    w.handle_action({"action": "undo"})
    assert torch.equal(model.backbone.stem.bn.running_mean, torch.full((16,), 5.0))


def test_adapter_makes_a_shape_mismatch_loadable():
    w, model = explorer("new_head", select="none")
    ckpt = demo.variant("new_head")
    old = model.classifier.weight.detach().clone()
    w.handle_action({"action": "toggle", "keys": ["classifier.weight"]})
    assert w.selected_keys == []  # not selectable without an adapter
    w.handle_action({"action": "adapt", "key": "classifier.weight", "adapter": "overlap"})
    assert w.adapters == {"classifier.weight": "overlap"}
    assert w.selected_keys == ["classifier.weight"]
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    assert torch.equal(model.classifier.weight, ckpt["classifier.weight"][:3])
    w.handle_action({"action": "undo"})
    assert torch.equal(model.classifier.weight, old)
    w.handle_action({"action": "adapt", "key": "classifier.weight", "adapter": None})
    assert w.adapters == {} and w.selected_keys == []
    w.handle_action({"action": "adapt", "key": "backbone.stem.conv.weight", "adapter": "overlap"})
    assert w.message["level"] == "error" and "no adapter applies" in w.message["text"]
    w.adapters = {"backbone.stem.conv.weight": "overlap", "classifier.bias": "bogus"}
    assert w.adapters == {}  # the front end cannot smuggle in bad adapters


def test_setting_an_adapter_says_what_it_does_and_which_rows_it_leaves_alone():
    """An adapter applies to its one row: the message says what it does there and names the
    layer's other mismatched rows, which keep the model's values (accepted, then loaded)."""
    w, model = explorer("new_head", select="none")
    bias = model.classifier.bias.detach().clone()
    w.handle_action({"action": "adapt", "key": "classifier.weight", "adapter": "overlap"})
    text = w.message["text"]
    assert w.message["level"] == "info"
    assert text.startswith(
        "classifier.weight: the overlap adapter copies the checkpoint's rows 0..2"
    )
    assert "Not adapted in the same module: classifier.bias. It keeps the model's values" in text
    w.handle_action({"action": "load"})
    assert torch.equal(model.classifier.bias, bias)  # what the message said
    w.handle_action({"action": "undo"})
    w.handle_action({"action": "adapt", "key": "classifier.bias", "adapter": "overlap"})
    assert w.message["text"].startswith("classifier.bias: the overlap adapter copies")
    assert "Not adapted" not in w.message["text"]  # the weight has its adapter
    w.handle_action({"action": "adapt", "key": "classifier.weight", "adapter": None})
    assert w.message["text"] == (
        "classifier.weight: no adapter. A shape mismatch is not loaded without one."
    )


def test_an_adapter_gesture_plans_the_preview_once(monkeypatch):
    """Setting, changing or dropping an adapter builds one LoadPlan for the preview, whether the
    selection changes with it (the selection's observer plans it) or not."""
    w, _model = explorer("new_head", select="none")
    builds = []
    plan = Explorer.plan
    monkeypatch.setattr(Explorer, "plan", lambda self: builds.append(1) or plan(self))

    def gesture(content):
        builds.clear()
        w.handle_action(content)
        assert w.message is None or w.message.get("level") != "error", w.message
        return len(builds)

    assert gesture({"action": "adapt", "key": "classifier.weight", "adapter": "overlap"}) == 1
    assert w.selected_keys == ["classifier.weight"] and w.preview["n_keys_total"] == 1
    w.handle_action({"action": "select_all_loadable"})
    assert gesture({"action": "adapt", "key": "classifier.weight", "adapter": None}) == 1
    assert "classifier.weight" not in w.selected_keys
    assert gesture({"action": "adapt", "key": "classifier.weight", "adapter": "auto"}) == 1
    assert "classifier.weight" in w.selected_keys
    builds.clear()
    w.adapters = dict(w.adapters)  # set from Python, the same adapters: nothing to plan again
    assert builds == []


def test_the_notebook_variable_holds_the_new_weights():
    model = demo.target_model("identical")
    ckpt = demo.variant("identical")
    w = Explorer(model, ckpt)
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success"
    assert torch.equal(model.backbone.stem.conv.weight, ckpt["backbone.stem.conv.weight"])
    x = torch.randn(2, 3, 16, 16)
    reference = demo.pretrained("cnn").eval()
    assert torch.allclose(model.eval()(x), reference(x))


# --------------------------------------------------------------------------------------------
# renames
# --------------------------------------------------------------------------------------------


def test_accepting_a_suggested_rename_realigns_the_tree():
    w, model = explorer("renamed_layer")
    assert leaf_statuses(w)["fc.weight"] == "unexpected"
    assert leaf_statuses(w)["classifier.weight"] == "missing"
    pair = next(
        s for s in w.suggestions if s["type"] == "pair" and s["model_key"] == "classifier.weight"
    )
    w.handle_action({"action": "accept_suggestion", "id": pair["id"]})
    statuses = leaf_statuses(w)
    assert "fc.weight" not in statuses
    assert statuses["classifier.weight"] == "match"
    assert statuses["fc.bias"] == "unexpected"
    assert _tree_payload.TreeIndex(w.tree).row("classifier.weight")["ckpt_key"] == "fc.weight"
    assert w.rename_rules == [
        {
            "kind": "exact",
            "old": "fc.weight",
            "new": "classifier.weight",
            "label": "'fc.weight' → 'classifier.weight'",
        }
    ]
    assert "Matches: 36 → 37" in w.message["text"]
    # the whole selection was "everything loadable": the newly matched key joins it
    assert "classifier.weight" in w.selected_keys
    w.handle_action({"action": "load"})
    ckpt = demo.variant("renamed_layer")
    assert torch.equal(model.classifier.weight, ckpt["fc.weight"])


def test_prefix_rule_fixes_dataparallel_and_removing_it_reverts():
    w, _ = explorer("dataparallel")
    assert w.tree["counts"][w.tree["statuses"].index("match")] == 0
    rule = next(s for s in w.suggestions if s["type"] == "rule")
    assert rule["rule"]["old"] == "module."
    w.handle_action({"action": "add_rule", "kind": "prefix", "old": "module.", "new": ""})
    counts = dict(zip(w.tree["statuses"], w.tree["counts"], strict=True))
    assert {s: n for s, n in counts.items() if n} == {"match": 38}
    assert len(w.selected_keys) == 38  # everything became loadable and was selected
    w.handle_action({"action": "remove_rule", "index": 0})
    assert w.rename_rules == [] and w.tree["counts"][0] == 0 and w.selected_keys == []


def test_regex_rule_and_rules_set_from_python():
    w, _ = explorer("renamed_layer")
    w.handle_action({"action": "add_rule", "kind": "regex", "old": r"^fc\.", "new": "classifier."})
    assert w.tree["counts"][0] == 38
    w.rename_rules = []
    assert w.tree["counts"][0] == 36


def test_bad_rules_leave_a_readable_message_and_the_tree_unchanged():
    w, _ = explorer("renamed_layer")
    tree = w.tree
    w.handle_action({"action": "add_rule", "kind": "regex", "old": "(", "new": ""})
    assert w.message["level"] == "error"
    assert "invalid regex" in w.message["text"]
    assert w.tree is tree and w.rename_rules == []
    # two checkpoint keys mapped to one name
    w.handle_action(
        {"action": "add_rule", "kind": "regex", "old": r"\.(weight|bias)$", "new": ".x"}
    )
    assert w.message["level"] == "error" and "map both" in w.message["text"]
    assert w.rename_rules == []
    w.rename_rules = [{"kind": "regex", "old": "(", "new": ""}]
    assert w.rename_rules == [] and w.message["level"] == "error"
    w.handle_action({"action": "accept_suggestion", "id": "pair:999"})
    assert "no longer offered" in w.message["text"]
    w.handle_action({"action": "remove_rule", "index": 3})
    assert "no rename rule number 3" in w.message["text"]


# --------------------------------------------------------------------------------------------
# errors end up in the widget, readable
# --------------------------------------------------------------------------------------------


def test_unreadable_file_is_a_message_not_a_traceback(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    w = Explorer(demo.target_model("identical"), bad)
    assert w.message["level"] == "error"
    assert "Opening the checkpoint failed" in w.message["text"]
    assert str(bad) in w.message["text"]
    assert "Traceback" in w.message["detail"]
    assert isinstance(w.last_error, sdw.CheckpointError)
    assert w.tree["n_keys"] == 0 and w.selected_keys == []
    w.handle_action({"action": "load"})
    assert w.message["level"] == "error" and "no checkpoint to load from" in w.message["text"]
    # nothing was read or tried: a usage error, not a CheckpointError (issue 11 section 4)
    assert type(w.last_error) is ValueError
    missing = Explorer(demo.target_model("identical"), tmp_path / "nope.pt")
    assert "nope.pt" in missing.message["text"]
    assert repr(missing).startswith("Explorer(SmallCNN ← ")


def test_rolled_back_load_is_reported_and_the_model_is_unchanged():
    w, model = explorer("identical")
    before = snapshot(model)

    def explode(module, incompatible):
        raise RuntimeError("hook exploded")

    handle = model.register_load_state_dict_post_hook(explode)
    try:
        w.handle_action({"action": "load"})
    finally:
        handle.remove()
    assert w.message["level"] == "error"
    assert "rolled back" in w.message["text"] and "hook exploded" in w.message["text"]
    assert isinstance(w.last_error, sdw.LoadError)
    assert changed_keys(before, model) == set()
    assert not w.can_undo and not w.busy


def test_empty_selection_and_unknown_actions_are_explained():
    w, model = explorer("identical", select="none")
    before = snapshot(model)
    w.handle_action({"action": "load"})
    assert w.message["level"] == "warning" and "Nothing is selected" in w.message["text"]
    assert changed_keys(before, model) == set()
    w.handle_action({"action": "fly"})
    assert w.message["level"] == "error" and "'fly'" in w.message["text"]
    w.handle_action({"action": "toggle", "keys": ["no.such.key"]})
    assert w.message["level"] == "error" and "no.such.key" in w.message["text"]
    w.handle_action({"action": "dismiss_message"})
    assert w.message == {}


# --------------------------------------------------------------------------------------------
# protocol level: raw comm messages in, messages out
# --------------------------------------------------------------------------------------------


def test_protocol_custom_toggle_message_gets_one_update_back():
    comm = RecordingComm()
    model = demo.target_model("new_head")
    w = Explorer(model, demo.variant("new_head"), select="none", comm=comm)
    comm.sent.clear()
    comm.from_frontend(
        {"method": "custom", "content": {"action": "toggle", "modules": ["backbone.stem"]}}
    )
    updates = comm.updates()
    assert len(updates) == 1, comm.sent
    state = updates[0]["state"]
    assert state["selected_keys"] == _tree_payload.TreeIndex(w.tree).subtree_keys("backbone.stem")
    assert state["preview"]["n_tensors"] == 6
    assert "tree" not in state  # the payload is not re-sent on a click


def test_protocol_front_end_selection_update_is_cleaned_and_sent_back():
    comm = RecordingComm()
    w = Explorer(demo.target_model("new_head"), demo.variant("new_head"), select="none", comm=comm)
    comm.sent.clear()
    comm.from_frontend(
        {
            "method": "update",
            "buffer_paths": [],
            "state": {"selected_keys": ["classifier.weight", "backbone.stem.conv.weight"]},
        }
    )
    assert w.selected_keys == ["backbone.stem.conv.weight"]
    sent_state: dict = {}
    for m in comm.updates():
        sent_state.update(m["state"])
    assert sent_state["selected_keys"] == ["backbone.stem.conv.weight"]
    assert sent_state["preview"]["n_tensors"] == 1


def test_protocol_load_and_undo_requests():
    comm = RecordingComm()
    model = demo.target_model("new_head")
    before = snapshot(model)
    w = Explorer(model, demo.variant("new_head"), comm=comm, max_histograms=2)
    comm.sent.clear()
    comm.from_frontend({"method": "custom", "content": {"action": "load"}})
    assert changed_keys(before, model)
    sent_state: dict = {}
    for m in comm.updates():
        sent_state.update(m["state"])
    assert sent_state["can_undo"] is True and sent_state["busy"] is False
    assert len(sent_state["histograms"]) == 2
    assert sent_state["message"]["level"] == "success"
    assert sent_state["tab"] == "results"  # a trait, not a custom message
    # busy went up before the work and down after it
    busy = [m["state"]["busy"] for m in comm.updates() if "busy" in m["state"]]
    assert busy[0] is True and busy[-1] is False
    comm.from_frontend({"method": "custom", "content": {"action": "undo"}})
    assert changed_keys(before, model) == set()
    assert w.can_undo is False


def test_protocol_undo_refused_then_the_offer_sent_back_as_it_came():
    """The browser gets the refusal with its offer in ``message`` and sends ``offer.content``
    back unchanged (traits.js); the BatchNorm radios and the name field are actions too."""
    comm = RecordingComm()
    model = demo.target_model("identical")
    before = snapshot(model)
    w = Explorer(model, demo.variant("identical"), comm=comm)
    comm.from_frontend({"method": "custom", "content": {"action": "load"}})
    with torch.no_grad():
        model.classifier.bias.add_(1.0)  # a change after the load
    edited = snapshot(model)
    comm.sent.clear()
    comm.from_frontend({"method": "custom", "content": {"action": "undo"}})
    sent: dict = {}
    for m in comm.updates():
        sent.update(m["state"])
    assert sent["message"]["level"] == "warning" and "classifier.bias" in sent["message"]["text"]
    assert changed_keys(edited, model) == set() and "classifier.bias" in sent["stale"]["keys"]
    comm.from_frontend({"method": "custom", "content": sent["message"]["offer"]["content"]})
    assert changed_keys(before, model) == set() and not w.can_undo and w.stale == {}
    comm.from_frontend({"method": "custom", "content": {"action": "set_bn", "policy": "reset"}})
    comm.from_frontend({"method": "custom", "content": {"action": "set_model_name", "name": "m"}})
    assert (w.bn_policy, w.model_name) == ("reset", "m")


@pytest.mark.parametrize("n_layers", [150, 1500])
def test_protocol_messages_per_click_do_not_grow_with_the_tree(n_layers):
    comm = RecordingComm()
    model = big_model(n_layers)
    w = Explorer(model, model.state_dict(), select="none", comm=comm)
    assert w.tree["n_keys"] == 2 * n_layers
    comm.sent.clear()
    comm.from_frontend({"method": "custom", "content": {"action": "toggle", "modules": ["blocks"]}})
    assert len(comm.sent) == 1 and len(w.selected_keys) == 2 * n_layers
    comm.sent.clear()
    comm.from_frontend(
        {"method": "custom", "content": {"action": "toggle", "keys": ["blocks.0.lin.weight"]}}
    )
    assert len(comm.sent) == 1


# --------------------------------------------------------------------------------------------
# construction errors, error state
# --------------------------------------------------------------------------------------------


def test_wrong_or_swapped_arguments_raise_a_clear_type_error(tmp_path):
    model = demo.target_model("identical")
    ckpt = demo.variant("identical")
    with pytest.raises(TypeError, match=r"first argument must be the nn\.Module.*state dict"):
        Explorer(model.state_dict(), ckpt)
    with pytest.raises(TypeError, match=r"'resnet50'.*not its name"):
        Explorer("resnet50", ckpt)
    path = tmp_path / "ckpt.pt"
    torch.save(ckpt, path)
    with pytest.raises(TypeError, match=r"swapped.*second is the model SmallCNN"):
        Explorer(str(path), model)
    with pytest.raises(TypeError, match="swapped"):
        Explorer(ckpt, model)
    with pytest.raises(TypeError, match="looks like a checkpoint path"):
        Explorer(path, ckpt)
    with pytest.raises(TypeError, match="give the checkpoint"):
        Explorer(model)
    with pytest.raises(ValueError, match="not a Python variable name"):
        Explorer(model, ckpt, model_name="1net")


def test_error_state_says_what_failed_and_how_to_fix_it(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    w = Explorer(demo.target_model("identical"), bad)
    assert w.error["title"] and str(bad) in w.error["text"]
    assert "torch.save" in w.error["fix"]
    assert w.bn_policy == "load" and w.selected_keys == [] and w.banner == {}
    w.handle_action({"action": "set_bn", "policy": "nonsense"})  # what the radios send
    assert w.bn_policy == "load" and w.message["level"] == "error"
    missing = Explorer(demo.target_model("identical"), tmp_path / "nope.pt")
    assert missing.error["kind"] == "not_found" and "nope.pt" in missing.error["fix"]
    w.handle_action({"action": "load"})
    assert "no checkpoint to load from" in w.message["text"]
    good = Explorer(demo.target_model("identical"), demo.variant("identical"))
    assert good.error == {}


# --------------------------------------------------------------------------------------------
# the one-rule banner and truthful rule-change messages
# --------------------------------------------------------------------------------------------


def test_ddp_banner_names_the_rule_and_apply_says_truly_what_changed():
    w, _ = explorer("dataparallel")
    n = w.tree["n_keys"] // 2  # every key is missing once and unexpected once
    assert w.banner["fixes"] == n
    assert "'module.'" in w.banner["text"]
    assert f"{n} missing + {n} unexpected keys pair up" in w.banner["text"]
    assert w.banner["head"] == "One rule pairs up every missing and unexpected key"
    w.handle_action({"action": "accept_suggestion", "id": w.banner["id"]})
    assert w.tree["counts"][w.tree["statuses"].index("match")] == n
    assert f"{n} keys now pair up: {n} matches." in w.message["text"], w.message
    # nothing matched before: a total of matches would only repeat the pairs
    assert "Matches:" not in w.message["text"], w.message
    assert w.banner == {}  # nothing left to fix
    w.handle_action({"action": "remove_rule", "index": 0})
    assert f"{n} keys no longer pair up" in w.message["text"]
    assert f"Matches: {n:,} → 0." in w.message["text"], w.message


def test_banner_head_says_most_when_some_missing_or_unexpected_keys_stay():
    """The banner's words claim what the rule does and no more: with keys the rule leaves
    unpaired it says "most", and its text counts those that stay."""
    model = demo.target_model("identical")
    sd = OrderedDict((f"module.{k}", v) for k, v in model.state_dict().items())
    sd["stray.weight"] = torch.zeros(3)  # unexpected with or without the rule
    w = Explorer(model, sd)
    assert w.banner["head"] == "One rule pairs up most missing and unexpected keys"
    assert w.banner["text"].endswith("(1 other missing/unexpected key stays)"), w.banner


def test_rule_message_counts_shape_mismatches_and_casts():
    model = demo.target_model("identical")
    sd = OrderedDict((f"module.{k}", v) for k, v in model.state_dict().items())
    sd["module.classifier.weight"] = torch.zeros(7, 32)
    sd["module.classifier.bias"] = torch.zeros(7)
    sd["module.backbone.stem.conv.weight"] = sd["module.backbone.stem.conv.weight"].half()
    w = Explorer(model, sd)
    assert w.banner, "one rule explains every problem"
    w.handle_action({"action": "accept_suggestion", "id": w.banner["id"]})
    n = len(sd)
    text = w.message["text"]
    assert (
        f"{n} keys now pair up: {n - 3} matches, 2 shape mismatches, 1 dtype mismatch." in text
    ), text


def test_rule_change_shows_busy_while_it_works():
    comm = RecordingComm()
    w = Explorer(demo.target_model("dataparallel"), demo.variant("dataparallel"), comm=comm)
    comm.sent.clear()
    comm.from_frontend(
        {"method": "custom", "content": {"action": "accept_suggestion", "id": w.banner["id"]}}
    )
    states = [m["state"] for m in comm.updates()]
    busy = [s["busy"] for s in states if "busy" in s]
    assert busy[0] is True and busy[-1] is False
    first_busy = next(i for i, s in enumerate(states) if s.get("busy") is True)
    tree_at = next(i for i, s in enumerate(states) if "tree" in s)
    assert first_busy < tree_at  # the sign went out before the work
    assert any(s.get("busy_text") == "Re-aligning the tree…" for s in states)


# --------------------------------------------------------------------------------------------
# results that scale: table, most-changed grid, any tensor, any BatchNorm module
# --------------------------------------------------------------------------------------------


def conv_bn_stack(n_blocks: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        *[nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4)) for _ in range(n_blocks)]
    )


def trained_state(model: nn.Module, seed: int = 1) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    out = OrderedDict()
    for i, (k, v) in enumerate(sd.items()):
        if v.is_floating_point():
            out[k] = v + torch.randn(v.shape, generator=g) * (0.01 * (1 + i % 7))
        else:
            out[k] = v + 3
    out._metadata = sd._metadata  # type: ignore[attr-defined]
    return out


def test_results_table_covers_every_tensor_most_changed_first():
    model = conv_bn_stack(500)  # 3,000 keys, 500 BatchNorm modules
    sd = trained_state(model)
    w = Explorer(model, sd, max_histograms=4)
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    res = w.results
    assert res["state"] == "ready" and res["n"] == len(sd) == 3000
    names = [c["name"] for c in res["columns"]]
    assert {
        "key",
        "rel_change",
        "before_mean",
        "after_mean",
        "before_std",
        "after_std",
        "cast",
        "adapter",
        "nonfinite",
        "tied",
    } <= set(names)
    d = res["data"]
    assert len(d["key"]) == 3000 and set(d["key"]) == set(sd)
    # the picker offers every tensor (no 2,000 cap), most changed first
    assert len(w.histogram_keys) == 3000
    # a change from zero (the fresh BatchNorm running means) is "inf" and ranks first
    rel = {
        k: float(v) if v is not None else None
        for k, v in zip(d["key"], d["rel_change"], strict=True)
    }
    ordered = [rel[k] for k in w.histogram_keys if rel[k] is not None]
    assert ordered == sorted(ordered, reverse=True) and ordered[0] == float("inf")
    from_zero = [k for k in w.histogram_keys if rel[k] == float("inf")]
    assert {k.rpartition(".")[2] for k in from_zero} == {
        "bias",
        "running_mean",
        "num_batches_tracked",
    }
    assert len(from_zero) == 1500
    # the grid shows the truly most-changed tensors (from zero first), never a counter
    grid = [h["key"] for h in w.histograms]
    assert grid == [k for k in from_zero if not k.endswith("num_batches_tracked")][:4]
    # any tensor can be picked, also past the first 2,000
    far = list(sd)[2500]
    w.histogram_key = far
    assert w.histogram["key"] == far and w.histogram["src"].startswith("data:image/png")
    # every BatchNorm module, not 3 and "+497 more"
    assert len(w.bn_modules) == 500 and w.bn_module == w.bn_modules[0]
    w.handle_action({"action": "bn_module", "module": "499.1"})
    assert w.bn_module == "499.1" and w.bn_plot["module"] == "499.1"
    assert w.bn_plot["src"].startswith("data:image/png")
    w.bn_module = "no.such.bn"  # the validator keeps a valid choice
    assert w.bn_module in w.bn_modules


def test_results_table_shows_casts_and_adapters():
    w, _ = explorer("new_head", select="none")
    w.handle_action({"action": "adapt", "key": "classifier.weight", "adapter": "overlap"})
    w.handle_action({"action": "load"})
    d = w.results["data"]
    row = d["key"].index("classifier.weight")
    assert d["adapter"][row] == "overlap" and d["action"][row] == "adapt"
    half = OrderedDict(
        (k, v.half() if v.is_floating_point() else v) for k, v in demo.variant("identical").items()
    )
    w2 = Explorer(demo.target_model("identical"), half)
    w2.handle_action({"action": "load"})
    d2 = w2.results["data"]
    row = d2["key"].index("backbone.stem.conv.weight")
    assert "float16" in d2["cast"][row] and "float32" in d2["cast"][row]


def test_load_message_goes_out_before_the_statistics():
    comm = RecordingComm()
    model = conv_bn_stack(50)
    w = Explorer(model, trained_state(model), comm=comm)
    comm.sent.clear()
    comm.from_frontend({"method": "custom", "content": {"action": "load"}})
    states = [m["state"] for m in comm.updates()]
    msg_at = next(i for i, s in enumerate(states) if s.get("message", {}).get("level") == "success")
    ready_at = next(i for i, s in enumerate(states) if s.get("results", {}).get("state") == "ready")
    plots_at = next(i for i, s in enumerate(states) if s.get("histograms"))
    assert msg_at < ready_at < plots_at
    assert states[msg_at]["results"]["state"] == "computing"
    assert states[msg_at]["tab"] == "results"
    assert w.busy is False and w.busy_text == ""


def test_undo_is_served_right_after_the_load_while_the_plots_are_drawn(monkeypatch):
    """In a kernel the statistics and the plots follow the load one event-loop turn at a time
    (a histogram per turn): the load's own work ends ``busy`` (the front end refuses Load and
    Undo only then), the busy sign (``busy_text``) stays while plots are drawn, and an Undo
    sent between two turns restores the model at once and ends the drawing."""
    from sd_widgets.widget import _explorer

    turns = []

    class KernelLoop:  # what ipykernel's loop does with call_soon: run it on a later turn
        def call_soon(self, fn, *args):
            turns.append((fn, args))

    monkeypatch.setattr(_explorer, "_kernel_loop", KernelLoop)
    model = conv_bn_stack(20)
    before = snapshot(model)
    w = Explorer(model, trained_state(model))
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success" and w.can_undo and changed_keys(before, model)
    assert w.busy is False and w.busy_text == "Computing statistics…"
    fn, args = turns.pop(0)
    fn(*args)  # the statistics
    assert w.results["state"] == "ready" and w.histograms == [] and not w.busy
    fn, args = turns.pop(0)
    fn(*args)  # one histogram, the next one waits for the next turn
    assert len(w.histograms) == 1 and len(turns) == 1 and not w.busy
    assert w.busy_text == f"Drawing plots (1 of {w.max_histograms})…"
    w.handle_action({"action": "undo"})
    assert w.message["text"].startswith("Undone"), w.message
    assert changed_keys(before, model) == set() and not w.can_undo
    while turns:
        fn, args = turns.pop(0)
        fn(*args)
    assert w.histograms == [] and w.bn_plot == {} and w.results["state"] == "none"
    assert w.busy is False and w.busy_text == ""


# --------------------------------------------------------------------------------------------
# staleness
# --------------------------------------------------------------------------------------------


def test_a_change_outside_the_widget_makes_the_view_stale_until_refresh():
    w, model = explorer("identical")
    assert not w.check_stale() and w.stale == {}
    w.handle_action({"action": "load"})
    assert w.results["state"] == "ready" and w.stale == {}  # our own load is not "outside"
    # other weights (a freshly initialised model's): writing equal values changes nothing
    other = demo.target_model("identical").state_dict()
    model.load_state_dict(
        {k: v for k, v in other.items() if not k.startswith("classifier")}, strict=False
    )
    assert w.check_stale()
    assert w.stale["n_changed"] > 0 and "Refresh" in w.stale["text"]
    assert w.results["state"] == "stale"
    w.handle_action({"action": "refresh"})
    assert w.stale == {} and w.results["state"] == "none" and w.histograms == []
    assert w.message["level"] == "info" and "Refreshed" in w.message["text"]
    assert not w.check_stale()


def test_an_optimizer_step_is_detected_on_the_next_action():
    w, model = explorer("identical", select="none")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    opt.step()
    w.handle_action({"action": "select_all_loadable"})  # any action checks first
    # every parameter stepped, and the training-mode forward moved every BatchNorm buffer
    # (running_mean, running_var, num_batches_tracked: their values are read after the step)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert w.stale["n_changed"] == sum(1 for _ in model.parameters()) + 3 * n_bn
    assert all(any(k.startswith(m + ".") for k in w.stale["keys"]) for m in ["backbone.stem"])
    # a parameter replaced by a new object is a change too
    w.handle_action({"action": "refresh"})
    model.classifier.weight = nn.Parameter(torch.zeros_like(model.classifier.weight))
    assert w.check_stale() and "classifier.weight" in w.stale["keys"]


def test_a_replaced_tensor_or_module_is_seen_by_torchs_registration_hooks(monkeypatch):
    """Without reading any value (a model too large for the after-cell read): a parameter or
    buffer assigned, a module swapped, load_state_dict(assign=True); another model's are not
    this model's changes."""
    monkeypatch.setattr(_stale, "VALUE_CHECK_SECONDS", 0.0)
    w, model = explorer("identical", select="none")
    assert w._watch is not None and w._watch._values == []  # no value is read
    other = demo.target_model("identical")
    other.classifier.weight = nn.Parameter(torch.zeros_like(other.classifier.weight))
    assert not w.check_stale() and w.stale == {}
    model.classifier.weight = nn.Parameter(torch.zeros_like(model.classifier.weight))
    bn = model.backbone.stem.bn
    bn.running_mean = torch.ones_like(bn.running_mean)
    assert w.check_stale()
    assert w.stale["keys"] == ["backbone.stem.bn.running_mean", "classifier.weight"]
    w.handle_action({"action": "refresh"})
    assert not w.check_stale()
    model.classifier = nn.Linear(32, 10)
    assert w.check_stale() and w.stale["keys"] == ["classifier.weight", "classifier.bias"]
    w.handle_action({"action": "refresh"})
    model.classifier.bias = nn.Parameter(torch.ones(10))  # inside the module swapped in
    assert w.check_stale() and w.stale["keys"] == ["classifier.bias"]
    w.handle_action({"action": "refresh"})
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(sd, assign=True)  # equal values, new tensor objects
    assert w.check_stale() and w.stale["n_changed"] == len(sd)
    # nothing was put on the user's model: it pickles (a hook closure would not), and a load
    # finds no module loading code of its own (no load hooks), so it verifies every key
    assert pickle.loads(pickle.dumps(model)) is not model
    report = sdw.partial_load(model, sdw.compare(model, demo.variant("identical")).plan())
    assert len(report.loaded) == len(sd) and not report.transformed


def test_an_optimizer_step_is_seen_by_its_hook_and_the_hook_goes_with_the_explorer(
    monkeypatch,
):
    """The parameters the step could change (requiring grad), not a frozen backbone's, nor
    another model's; after ``close()`` the global hook is gone."""
    monkeypatch.setattr(_stale, "VALUE_CHECK_SECONDS", 0.0)
    w, model = explorer("identical", select="none")
    watch = w._watch
    assert watch is not None
    elsewhere = nn.Linear(2, 2)
    opt_elsewhere = torch.optim.SGD(elsewhere.parameters(), lr=0.1)
    elsewhere(torch.ones(1, 2)).sum().backward()
    opt_elsewhere.step()
    assert not w.check_stale()
    model.backbone.requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.eval()(torch.randn(2, 3, 16, 16)).sum().backward()
    opt.step()
    assert w.check_stale() and w.stale["keys"] == ["classifier.weight", "classifier.bias"]
    w.close()
    opt.step()
    assert len(watch._stepped) == 0  # the hook no longer records


def test_an_edit_in_a_cell_under_no_grad_and_a_data_swap_are_read_after_the_cell():
    w, model = explorer("identical", select="none")
    with torch.no_grad():
        model.backbone.layer1[0].conv1.weight.mul_(2.0)
    assert w.check_stale() and w.stale["keys"] == ["backbone.layer1.0.conv1.weight"]
    assert "1 tensor (backbone.layer1.0.conv1.weight) was modified" in w.stale["text"]
    w.handle_action({"action": "refresh"})
    assert "(1 tensor had changed outside the explorer)" in w.message["text"]
    model.classifier.weight.data = model.classifier.weight.data.double()  # same object
    assert w.check_stale() and w.stale["keys"] == ["classifier.weight"]


def test_a_large_tensor_edit_is_not_read_after_a_cell_but_undo_refuses_and_names_it():
    """A 128 MiB weight is past what one after-cell check reads (20 ms): an in-place edit of it
    is not flagged after the cell; Undo's own fingerprints refuse over it, and the stale banner
    then names it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8192, 4096), nn.Linear(4, 4))
    ckpt = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    w = Explorer(model, ckpt)
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    assert w._watch is not None
    watched = {v.key for v in w._watch._values}
    assert "0.weight" not in watched and {"0.bias", "1.weight", "1.bias"} <= watched
    with torch.no_grad():
        model[0].weight[100, 7] = 1.0  # one value of 33.5 million
        model[1].weight[0, 0] = 1.0
    assert w.check_stale() and w.stale["keys"] == ["1.weight"]  # the large one is not read
    w.handle_action({"action": "undo"})
    assert "Undo refused" in w.message["text"] and "0.weight" in w.message["text"]
    assert w.stale["keys"] == ["0.weight", "1.weight"]
    assert float(model[0].weight.detach()[100, 7]) == 1.0 and w.can_undo


def test_the_after_cell_check_waits_for_an_action_in_another_thread_and_then_runs():
    """A cell ending while an action holds the widget in another thread: the check waits for
    the action's end and runs then (never skipped); the action's own writes, taken as its new
    baseline, are not an outside change."""
    w, model = explorer("identical")
    acting, done = threading.Event(), threading.Event()

    def action(rebaseline: bool) -> None:
        with w._exclusive():  # what handle_action and deferred plot work hold
            if rebaseline:  # a load writing the model
                with torch.no_grad():
                    model.classifier.weight.add_(1.0)
            acting.set()
            assert done.wait(timeout=30)
            if rebaseline:
                w._rebaseline()  # as a load does when it ends

    for rebaseline in (True, False):
        acting.clear()
        done.clear()
        thread = threading.Thread(target=action, args=(rebaseline,))
        thread.start()
        try:
            assert acting.wait(timeout=30)
            with torch.no_grad():
                model.classifier.bias.add_(1.0)  # the cell's own change
            w._after_cell()  # the cell ends while the action runs
            assert w.stale == {} and w._check_pending
        finally:
            done.set()
            thread.join(timeout=30)
        assert not thread.is_alive() and not w._check_pending  # run when the action ended
        if rebaseline:  # a load: its writes and everything before its end are its baseline
            assert w.stale == {}
        else:  # deferred plot work: the cell's change is flagged, not lost
            assert w.stale["keys"] == ["classifier.bias"]
    w.handle_action({"action": "refresh"})
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    w._after_cell()  # nothing runs: checked at once
    assert w.stale["keys"] == ["classifier.weight"]


def test_a_sharded_model_is_loaded_by_partial_load_on_every_rank_not_by_the_explorer():
    """``partial_load`` returns a ShardedLoadReport for a DTensor model (its annotation says
    so); the Explorer, whose views need a LoadReport, refuses the load and says what to run."""
    import typing

    import torch.distributed as dist
    from torch.distributed.tensor import distribute_module, init_device_mesh

    from sd_widgets.load._distributed import ShardedLoadReport

    assert typing.get_type_hints(sdw.partial_load)["return"] == sdw.LoadReport | ShardedLoadReport
    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.HashStore())
    try:
        model = nn.Linear(4, 4)
        distribute_module(model, init_device_mesh("cpu", (1,)))
        before = snapshot(model)
        w = Explorer(model, {"weight": torch.zeros(4, 4), "bias": torch.zeros(4)})
        w.handle_action({"action": "load"})
        assert w.message["level"] == "error" and "DTensors" in w.message["text"]
        assert "sdw.partial_load(model, w.plan()) on every rank" in w.message["text"]
        assert changed_keys(before, model) == set() and not w.can_undo
        report = sdw.partial_load(model, w.plan())
        assert isinstance(report, ShardedLoadReport) and report.loaded == ["weight", "bias"]
    finally:
        dist.destroy_process_group()


def test_undo_is_not_a_change_from_outside():
    w, _ = explorer("identical")
    w.handle_action({"action": "load"})
    w.handle_action({"action": "undo"})
    assert not w.check_stale() and w.stale == {}


def test_undo_refuses_to_overwrite_later_work_and_undo_anyway_restores():
    """Load, a training step and an edit in a cell, Undo: refused, nothing lost; then anyway."""
    w, model = explorer("identical", select="none")
    before = snapshot(model)
    loaded = ["backbone.stem.conv.weight", "backbone.stem.bn.weight", "classifier.weight"]
    w.selected_keys = loaded
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success" and w.stale == {}
    after_load = snapshot(model)
    # an "epoch": one SGD step on the loaded classifier, and an edit of a tensor not loaded
    opt = torch.optim.SGD([model.classifier.weight], lr=0.5)
    model.eval()(torch.randn(4, 3, 16, 16)).sum().backward()
    opt.step()
    with torch.no_grad():
        model.backbone.layer1[0].conv1.weight.mul_(2.0)
    trained = snapshot(model)
    assert changed_keys(after_load, model) == {
        "classifier.weight",
        "backbone.layer1.0.conv1.weight",
    }

    w.handle_action({"action": "undo"})
    assert w.message["level"] == "warning", w.message
    assert "Undo refused" in w.message["text"] and "classifier.weight" in w.message["text"]
    assert "backbone.stem.conv.weight" not in w.message["text"]  # unchanged since the load
    offer = w.message["offer"]
    assert offer["label"] == "Undo anyway" and offer["content"] == {"action": "undo", "force": True}
    assert changed_keys(trained, model) == set()  # the epoch is still there
    assert w.can_undo and len(w.reports) == 1 and not w.reports[0].undone
    assert "classifier.weight" in w.stale["keys"]  # the stale banner stays

    w.handle_action(offer["content"])  # "Undo anyway"
    assert w.message["level"] == "success" and "Undone anyway" in w.message["text"]
    assert changed_keys(before, model) == {"backbone.layer1.0.conv1.weight"}  # not the load's
    assert not w.can_undo and w.reports == []
    # the edit outside the load is still an outside change: the banner names it, and only it
    assert w.stale["keys"] == ["backbone.layer1.0.conv1.weight"], w.stale


def big_linear_model() -> nn.Module:
    """Four 1024x1024 linear layers: 16.0 MiB of float32 weights (+16 KiB of biases)."""
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Linear(1024, 1024) for _ in range(4)))


def test_undo_budget_releases_the_oldest_undo_snapshots_first():
    model = big_linear_model()
    before = snapshot(model)
    layer = 1024 * 1024 * 4 + 1024 * 4  # one layer's weight and bias, in bytes
    ckpt = {k: torch.full_like(v, 7.0) for k, v in model.state_dict().items()}
    # room for the latest load's snapshot and one older one, not two older ones
    w = Explorer(model, ckpt, select="none", undo_budget=int(2.5 * layer))
    reports = []
    for i in range(3):  # three loads of one layer each: 4 MiB of snapshot each
        w.handle_action({"action": "toggle", "modules": [str(i)]})
        w.handle_action({"action": "load"})
        assert w.message["level"] == "success", w.message
        reports.append(w.reports[-1])
        assert reports[-1].snapshot_nbytes >= layer - 4096
        w.handle_action({"action": "select_none"})
    assert w.reports == reports[1:]
    assert re.search(r"Released the undo of the oldest load \(4\.\d MB\)", w.message["text"])
    assert "Undo now goes back 2 loads" in w.message["text"]
    assert reports[0].released and reports[0].snapshot_nbytes == 0  # its memory is let go
    with pytest.raises(sdw.UndoError, match="released"):
        reports[0].undo()
    w.handle_action({"action": "undo"})
    w.handle_action({"action": "undo"})
    assert not w.can_undo and w.message["level"] == "success"
    assert changed_keys(before, model) == {"0.weight", "0.bias"}  # its undo was released
    # the default budget (1 GiB) keeps all three
    w = Explorer(big_linear_model(), ckpt, select="none")
    for i in range(3):
        w.handle_action({"action": "toggle", "modules": [str(i)]})
        w.handle_action({"action": "load"})
        w.handle_action({"action": "select_none"})
    assert len(w.reports) == 3 and w.undo_budget == 2**30


def test_close_gives_back_every_undo_snapshot_and_undo_then_says_why():
    import gc
    import weakref

    model = big_linear_model()
    before = snapshot(model)
    ckpt = {k: torch.full_like(v, 3.0) for k, v in model.state_dict().items()}
    w = Explorer(model, ckpt, select="none")
    for i in range(2):
        w.handle_action({"action": "toggle", "modules": [str(i)]})
        w.handle_action({"action": "load"})
        w.handle_action({"action": "select_none"})
    reports = w.reports
    assert len(reports) == 2 and all(r.snapshot_nbytes > 4 * 2**20 for r in reports)
    generation = w._generation
    w.close()
    assert w.comm is None and w._cell_hook is None
    # plot work the last load deferred, when its turn comes after the close: it stops
    w._stream_results(reports[-1], generation)
    assert w.message == {"level": "info", "text": "This Explorer was closed."}
    assert [(r.released, r.snapshot_nbytes) for r in reports] == [(True, 0), (True, 0)]
    with pytest.raises(sdw.UndoError, match="released \\(its Explorer was closed\\)"):
        reports[-1].undo()
    for action in ("undo", "load", "refresh"):  # from Python, after close: said, not done
        w.handle_action({"action": action})
        assert w.message["level"] == "warning", w.message
        assert "this Explorer was closed" in w.message["text"]
    assert changed_keys(before, model) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    assert len(reports[-1].loaded) == 2  # the reports kept elsewhere stay readable
    # everything else it held is let go: the model can be freed while the object lives on
    assert (w.model, w.comparison, w.reports, w.can_undo) == (None, None, [], False)
    assert w.tree["n_keys"] == 0 and w.selected_keys == [] and "_tree_json_cache" not in vars(w)
    with pytest.raises(ValueError, match="no checkpoint is open"):
        w.plan()
    alive = weakref.ref(model)
    del model, reports
    gc.collect()
    assert alive() is None


class _HostComm(RecordingComm):
    """A comm its host closes (marimo closes a widget's comm when its cell runs again)."""

    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    def close(self, *args, **kwargs) -> None:
        if self.closes:  # as ipykernel's and marimo's comms: closing again does nothing
            return
        self.closes += 1


def test_a_comm_its_host_closes_closes_the_explorer_and_gives_back_its_undo():
    """marimo closes the comm of a widget whose cell runs again (it sends no cell id and never
    closes the widget): the Explorer then lets go as ``close()`` does. Its own ``close()``
    still closes the comm once."""
    import gc
    import weakref

    model = big_linear_model()
    ckpt = {k: torch.full_like(v, 3.0) for k, v in model.state_dict().items()}
    comm = _HostComm()
    w = Explorer(model, ckpt, comm=comm)
    w.handle_action({"action": "load"})
    report = w.reports[-1]
    assert report.snapshot_nbytes > 4 * 2**20 and w.can_undo
    comm.close()  # what marimo's cell lifecycle does on a re-run
    assert w._closed and w.comm is None and comm.closes == 1
    assert (report.released, report.snapshot_nbytes) == (True, 0)
    with pytest.raises(sdw.UndoError, match="released \\(its Explorer was closed\\)"):
        report.undo()
    w.handle_action({"action": "undo"})
    assert "this Explorer was closed" in w.message["text"]
    alive = weakref.ref(model)
    del model, report
    gc.collect()
    assert alive() is None

    # a comm replaced later is followed: the old one closing does nothing, the new one does
    other, later = _HostComm(), _HostComm()
    w2 = Explorer(demo.target_model("new_head"), demo.variant("new_head"), comm=other)
    w2.comm = later
    other.close()
    assert not w2._closed and w2.comm is later
    later.close()
    assert (w2._closed, later.closes, w2.comm) == (True, 1, None)
    # the Explorer's own close() closes its comm (once) and lets go once
    own = _HostComm()
    w3 = Explorer(demo.target_model("new_head"), demo.variant("new_head"), comm=own)
    w3.close()
    assert (w3._closed, own.closes, w3.comm) == (True, 1, None)


def test_close_waits_for_a_load_another_thread_is_running(monkeypatch):
    """A comm handler's load in another thread ends before ``close()`` lets go: the load is
    whole, and then its undo is released with the rest (not kept by a closed Explorer)."""
    from sd_widgets.widget import _actions

    model = big_linear_model()
    before = snapshot(model)
    ckpt = {k: torch.full_like(v, 5.0) for k, v in model.state_dict().items()}
    w = Explorer(model, ckpt)
    inside, go = threading.Event(), threading.Event()
    loaded: list = []
    load = _actions.ACTIONS["load"]

    def held_load(widget: Explorer, content: dict) -> None:
        inside.set()
        assert go.wait(30)
        load.handler(widget, content)
        loaded.extend(widget.reports)

    monkeypatch.setitem(_actions.ACTIONS, "load", load._replace(handler=held_load))
    loader = threading.Thread(target=w.handle_action, args=({"action": "load"},))
    loader.start()
    assert inside.wait(30)
    closer = threading.Thread(target=w.close)
    closer.start()
    closer.join(timeout=1.0)  # without the wait, close() is done well within this
    closed_while_loading = not closer.is_alive()
    go.set()
    loader.join(30)
    closer.join(30)
    assert not closed_while_loading
    assert not loader.is_alive() and not closer.is_alive()
    assert changed_keys(before, model) == set(before)  # the load ran whole
    (report,) = loaded
    assert report.released and w.reports == [] and w.model is None


class _Shell:
    """What ``_cells.this_run`` reads of ipykernel's shell: the request being run."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def run(self, cell: str | None, msg: str, msg_type: str = "execute_request") -> None:
        self.parent = {
            "header": {"msg_id": msg, "msg_type": msg_type},
            "metadata": {} if cell is None else {"cellId": cell},
        }

    def get_parent(self) -> dict:
        return self.parent


def test_a_cell_run_again_closes_the_explorers_its_earlier_run_built(monkeypatch):
    import IPython

    from sd_widgets.widget import _cells

    shell = _Shell()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    monkeypatch.setattr(_cells, "_RUNS", {})
    model = big_linear_model()
    ckpt = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}

    def opened(*ws: Explorer) -> list[bool]:
        return [w.comm is not None for w in ws]

    shell.run("cell-a", "run-1")
    a1, a2 = Explorer(model, ckpt), Explorer(model, ckpt)  # one run may build several
    a1.handle_action({"action": "load"})
    (loaded,) = a1.reports
    shell.run("cell-b", "run-2")
    b = Explorer(model, ckpt)
    assert opened(a1, a2, b) == [True, True, True]
    shell.run("cell-a", "run-3")  # cell a again: its output was cleared
    a3 = Explorer(model, ckpt)
    assert opened(a1, a2, b, a3) == [False, False, True, True]
    assert loaded.released and a1.reports == []
    assert a3.message["level"] == "info"
    assert re.fullmatch(
        r"This cell ran again: the Explorer it built before was closed and the undo of its "
        r"load \(16\.\d MB\) released; what that load wrote stays in its model\.",
        a3.message["text"],
    )
    assert b.message.get("text", "") == ""  # nothing was closed for it: nothing said
    # requests no cell names close nothing: a button's handler, a console, a script
    shell.run("cell-b", "msg-4", msg_type="comm_msg")
    c = Explorer(model, ckpt)
    shell.run(None, "msg-5")
    d = Explorer(model, ckpt)
    assert opened(b, a3, c, d) == [True, True, True, True]
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert _cells.this_run() is None
    Explorer(model, ckpt)
    assert opened(b, a3, c, d) == [True, True, True, True]


def test_undo_budget_always_keeps_the_latest_load():
    model = big_linear_model()
    before = snapshot(model)
    ckpt = {k: torch.ones_like(v) for k, v in model.state_dict().items()}
    w = Explorer(model, ckpt, undo_budget=0)  # smaller than any one snapshot
    w.handle_action({"action": "load"})
    assert len(w.reports) == 1 and "Released" not in w.message["text"]
    w.handle_action({"action": "load"})
    assert len(w.reports) == 1 and "Released the undo of the oldest load" in w.message["text"]
    w.handle_action({"action": "undo"})
    assert w.message["level"] == "success"
    assert changed_keys(before, model) == set(before)  # the first load cannot be undone
    with pytest.raises(ValueError, match="undo_budget"):
        Explorer(model, ckpt, undo_budget=-1)


def test_actions_from_several_threads_at_once_undo_each_load_once():
    import threading

    w, model = explorer("identical", select="none")
    s0 = snapshot(model)
    w.selected_keys = ["backbone.stem.conv.weight"]
    w.handle_action({"action": "load"})
    w.selected_keys = ["classifier.weight", "classifier.bias"]
    w.handle_action({"action": "load"})
    messages: list[dict] = []
    w.observe(lambda change: messages.append(change["new"]), names=["message"])
    start = threading.Barrier(6)

    def undo() -> None:
        start.wait()
        w.handle_action({"action": "undo"})

    threads = [threading.Thread(target=undo) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads)
    # (a message equal to the one before raises no change: "Nothing to undo" shows up once)
    texts = [m["text"] for m in messages if m]
    undone = [t for t in texts if t.startswith("Undone")]
    assert len(undone) == 2 and "the 2 tensors" in undone[0] and "the 1 tensors" in undone[1]
    assert any("Nothing to undo" in t for t in texts), texts
    assert not [m for m in messages if m and m["level"] == "error"], messages
    assert changed_keys(s0, model) == set() and w.reports == [] and not w.can_undo


# --------------------------------------------------------------------------------------------
# code tab, tab trait, weight sets, meta leftovers, one action table
# --------------------------------------------------------------------------------------------


def test_model_name_is_validated_and_used_by_the_code():
    w, _ = explorer("new_head")
    w.tab = "code"
    assert w.code
    name = {"action": "set_model_name"}  # what the Code tab's name field sends
    w.handle_action({**name, "name": "net"})
    assert w.model_name == "net" and w.code_error == "" and "load_partial(net, " in w.code
    w.handle_action({**name, "name": "1net"})
    assert w.model_name == "net" and "not a Python variable name" in w.code_error
    w.handle_action({**name, "name": "class"})
    assert w.model_name == "net" and w.code_error
    # the exported code's own names and builtins would shadow what the code needs
    for taken in ("print", "KEYS", "load_partial"):
        w.handle_action({**name, "name": taken})
        assert w.model_name == "net" and "exported code uses itself" in w.code_error
    w.handle_action({**name, "name": "net2"})
    assert w.model_name == "net2" and w.code_error == ""
    # set from Python, a bad name is a plain error (the validator has no side effects)
    with pytest.raises(TraitError, match="1net"):
        w.model_name = "1net"
    assert w.model_name == "net2"
    w.tab = "nonsense"
    assert w.tab == "code"
    w.tab = "preview"
    assert w.code == ""


def test_model_name_reaches_to_code():
    w, _ = explorer("new_head")
    w.model_name = "net"
    w.tab = "code"
    assert "net" in w.code and w.code == w.plan().to_code(model_name="net")


def test_training_checkpoint_weight_sets_can_be_switched(tmp_path):
    model = demo.target_model("identical")
    plain = demo.variant("identical")
    ema = OrderedDict((k, v + 1 if v.is_floating_point() else v) for k, v in plain.items())
    path = tmp_path / "train.ckpt"
    torch.save({"epoch": 3, "state_dict": plain, "ema": ema}, path)
    w = Explorer(model, path)
    sets = {s["key"]: s for s in w.weight_sets}
    assert set(sets) == {"state_dict", "ema"}
    current = next(s["key"] for s in w.weight_sets if s["current"])
    other = "ema" if current == "state_dict" else "state_dict"
    w.handle_action({"action": "switch_weights", "key": other})
    assert w.message["level"] == "info" and repr(other) in w.message["text"]
    assert next(s["key"] for s in w.weight_sets if s["current"]) == other
    assert w.comparison.checkpoint.source.key == other
    w.handle_action({"action": "load"})
    want = ema if other == "ema" else plain
    assert torch.equal(model.backbone.stem.conv.weight, want["backbone.stem.conv.weight"])
    w.handle_action({"action": "switch_weights", "key": "nope"})
    assert w.message["level"] == "error" and "not a weight set" in w.message["text"]


def test_meta_device_leftovers_are_named_after_a_load():
    with torch.device("meta"):
        model = demo.target_model("identical")
    sd = demo.variant("identical")
    w = Explorer(model, sd, select="none")
    w.handle_action({"action": "toggle", "modules": ["backbone"]})
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    left = w.meta_leftovers
    assert left["n"] == sum(1 for k in sd if k.startswith("classifier"))
    assert set(left["keys"]) == {k for k in sd if k.startswith("classifier")}
    assert "cannot run until these are initialised" in left["text"]
    assert "meta device" in w.message["text"]


def test_every_action_the_front_end_sends_is_registered_once():
    from sd_widgets.widget._actions import ACTIONS

    sent = set()
    for path in STATIC.glob("*.js"):
        # every message object the view builds ({action: ...}), not DOM data-action attributes
        text = path.read_text()
        sent |= set(re.findall(r'(?<!dataset: \{ )\baction: "([a-z_]+)"', text))
    assert len(sent) >= 12, sorted(sent)
    assert sent <= set(ACTIONS), sent - set(ACTIONS)
    assert all(a.label for a in ACTIONS.values())
    assert {"refresh", "switch_weights", "dismiss_banner", "bn_module"} <= set(ACTIONS)


def test_the_legend_and_colours_come_from_the_one_vocabulary():
    from sd_widgets.statuses import legend

    w, _ = explorer("new_head")
    assert w.tree["legend"] == legend()
    assert all(item["colour"].startswith("#") for item in w.tree["legend"])
    assert "--sdw-c-${item.status}" in (STATIC / "tree.js").read_text()  # statusColours


def tied_lm() -> nn.Module:
    """The demo's tiny language model whose ``lm_head.weight`` IS ``embed.weight`` (GPT-2 style)."""
    return demo.TiedLM(vocab_size=11, dim=4)


def test_tied_rows_say_what_they_follow_in_the_tree_and_the_results():
    torch.manual_seed(0)
    model = tied_lm()
    saved = {k: v.clone() + 1 for k, v in tied_lm().state_dict().items() if k != "lm_head.weight"}
    w = Explorer(model, saved)
    index = _tree_payload.TreeIndex(w.tree)
    head = index.row("lm_head.weight")
    assert head["tied_to"] == "embed.weight" and "tied to 'embed.weight'" in head["reason"]
    assert index.row("embed.weight")["tied_to"] is None
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    assert torch.equal(model.lm_head.weight, saved["embed.weight"])  # through the tie
    d = w.results["data"]
    row = d["key"].index("lm_head.weight")  # changed through the tie: a row of its own
    assert d["tied"][row] == "embed.weight" and d["action"][row] == "tied"


def test_preview_lists_every_skipped_key():
    model = conv_bn_stack(300)  # 300 BatchNorm modules: 900 running-stat keys under bn='keep'
    w = Explorer(model, trained_state(model), bn="keep")
    assert w.preview["n_skipped_total"] == 900
    assert len(w.preview["skipped"]) == 500 and len(w.preview["skipped_keys"]) == 900


@pytest.mark.parametrize("variant", ["new_head", "dataparallel", "renamed_layer", "tied"])
def test_the_payload_says_what_the_comparison_rows_say(variant):
    """Checked against the rows and the model themselves, not against another serialiser."""
    from collections import Counter

    from sd_widgets.compare._compare import ROW_FIELDS

    if variant == "tied":
        model: nn.Module = tied_lm()
        cmp = sdw.compare(model, {"embed.weight": torch.zeros(11, 4), "x.y": torch.ones(3)})
    else:
        model = demo.target_model(variant)
        cmp = sdw.compare(model, demo.variant(variant))
        cmp = cmp.with_renames([r.rule for r in cmp.prefix_suggestions()[:1]])
    p = _tree_payload.payload_from_comparison(cmp)
    cols, index = p["columns"], _tree_payload.TreeIndex(p)
    # the row columns stand in the one field order
    assert [c for c in cols if c in ROW_FIELDS] == [f for f in ROW_FIELDS if f in cols]
    assert sorted(index.keys) == sorted(r.key for r in cmp.rows)
    for r in cmp.rows:
        row, d = index.row(r.key), r.to_json()
        for f in ("status", "kind", "ckpt_key", "model_key", "ckpt_shape", "model_shape"):
            assert row[f] == d[f], (r.key, f)
        assert (row["ckpt_dtype"], row["model_dtype"], row["nbytes"]) == (
            r.ckpt_dtype,
            r.model_dtype,
            r.nbytes,
        )
        assert (row["loadable"], row["adaptable"]) == (int(r.loadable), int(r.adaptable))
        assert (row["reason"], row["tied"], row["tied_to"]) == (
            r.reason,
            d["tied"] or None,
            r.tied_to,
        )
        assert row["name"] == r.key.rpartition(".")[2]
    assert p["counts"] == [cmp.summary()[s] for s in p["statuses"]]
    types = {n: type(m).__name__ for n, m in model.named_modules()}
    for i, t in enumerate(cols["t"]):
        if t != 0:
            continue
        path = cols["path"][i]
        under = [r for r in cmp.rows if r.module == path or r.module.startswith(path + ".")]
        assert sorted(index.subtree_keys(path)) == sorted(r.key for r in under)
        n = Counter(r.status for r in under)
        assert cols["counts"][i] == [n[s] for s in p["statuses"]]
        assert cols["nbytes"][i] == sum(r.nbytes for r in under)
        assert cols["module_type"][i] == types.get(path)
    if variant == "tied":
        assert index.row("lm_head.weight")["tied_to"] == "embed.weight"
        x = cols["path"].index("x")
        assert cols["t"][x] == 0 and cols["module_type"][x] is None  # a checkpoint-only module
        assert index.row("x.y")["status"] == "unexpected" and index.subtree_keys("x") == ["x.y"]


def test_the_serialiser_handles_hostile_tied_and_top_level_keys():
    sd = OrderedDict((k, torch.zeros(2)) for k in HOSTILE_KEYS)
    sd["weight"] = torch.ones(2, 2)
    for cmp in (
        sdw.compare(nn.Linear(2, 2), sd),
        sdw.compare(tied_lm(), {"proj.weight": torch.zeros(4, 4)}),
    ):
        p = _tree_payload.payload_from_comparison(cmp)
        index = _tree_payload.TreeIndex(p)
        assert sorted(index.keys) == sorted(r.key for r in cmp.rows)
        for r in cmp.rows:
            assert index.row(r.key)["status"] == r.status
            assert index.row(r.key)["tied_to"] == r.tied_to
        assert (
            json.loads(_tree_payload.tree_to_json(p).tobytes()) == p
        )  # hostile strings survive the wire


def test_tensorflow_leaf_names_are_one_rule_in_the_widget():
    """A checkpoint with TF-style BatchNorm names (gamma/beta): the banner offers one leaf rule,
    and the same rule typed into the rule form (kind 'leaf') re-aligns the tree."""
    import collections

    import sd_widgets as sdw
    from sd_widgets import demo

    sd = demo.variant("identical")
    tf = collections.OrderedDict(
        (k.replace(".bn1.weight", ".bn1.gamma").replace(".bn1.bias", ".bn1.beta"), v)
        for k, v in sd.items()
    )
    w = sdw.Explorer(demo.target_model("identical"), tf)
    assert w.banner["rule"]["kind"] == "leaf" and "TensorFlow" in w.banner["text"]
    assert w.comparison.summary()["missing"] == 4
    w.handle_action(
        {"action": "add_rule", "kind": "leaf", "old": "gamma,beta", "new": "weight,bias"}
    )
    assert w.comparison.summary()["match"] == len(sd)
    assert "4 keys now pair up: 4 matches" in w.message["text"]
    w.handle_action({"action": "add_rule", "kind": "leaf", "old": "gamma", "new": "a,b"})
    assert w.message["level"] == "error" and "leaf" in w.message["text"]


def test_adapt_toggle_picks_the_adapter_that_applies():
    """The tree's adapt toggle sends ``"auto"``: the kernel takes the first adapter the registry
    offers for that row — ``input_conv`` for an RGB stem going to 1 channel on a meta model,
    where ``overlap`` (which needs the model's own values) does not apply."""
    import torch
    from torch import nn

    import sd_widgets as sdw

    ckpt = nn.Sequential(nn.Conv2d(3, 8, 3)).state_dict()
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(1, 8, 3))
    w = sdw.Explorer(model, ckpt)
    row = w.comparison["0.weight"]
    assert row.adapters == ("input_conv",)
    w.handle_action({"action": "adapt", "key": "0.weight", "adapter": "overlap"})
    assert w.message["level"] == "error" and "'input_conv'" in w.message["text"]
    assert w.adapters == {}
    w.handle_action({"action": "adapt", "key": "0.weight", "adapter": "auto"})
    assert w.adapters == {"0.weight": "input_conv"} and "0.weight" in w.selected_keys
    report = sdw.partial_load(model, w.plan())
    assert "0.weight" in report.loaded and model[0].weight.device.type == "cpu"
    torch.testing.assert_close(model[0].weight, ckpt["0.weight"].sum(dim=1, keepdim=True))


@pytest.mark.parametrize("variant", ["new_head", "resized_layer", "fp16", "no_bn_stats"])
@pytest.mark.parametrize("bn", ["load", "keep"])
def test_preview_from_cached_row_sizes_equals_the_plans_own_totals(variant, bn):
    # the widget sums per-row sizes computed once per comparison; they must add up to exactly
    # what the plan reports, also with an adapter and BatchNorm statistics skipped
    w, _model = explorer(variant, bn=bn)
    cmp = w.comparison
    adaptable = [r.key for r in cmp if r.adaptable]
    if adaptable:
        w.handle_action({"action": "adapt", "key": adaptable[0], "adapter": "overlap"})
    plan = w.plan()
    fast = _panels.preview_from_plan(plan, sizes=_panels.row_sizes(cmp))
    fresh = w.plan()
    assert fast == _panels.preview_from_plan(fresh)
    assert (fast["n_params"], fast["nbytes"]) == (fresh.numel, fresh.nbytes)
    assert fast["n_params"] > 0
    assert {**fast, "bn": bn} == w.preview


def test_preview_sizes_of_tied_weights_match_the_plan():
    model = demo.tied_model()
    w = Explorer(model, model.state_dict())
    plan = w.plan()
    assert _panels.preview_from_plan(
        plan, sizes=_panels.row_sizes(w.comparison)
    ) == _panels.preview_from_plan(w.plan())
    assert w.preview["n_params"] == plan.numel and w.preview["nbytes"] == plan.nbytes


def test_statistics_follow_the_load_when_a_foreign_event_loop_is_running():
    """Outside a kernel the follow-up work runs at once, even when another library keeps an
    asyncio loop marked running in this thread (Playwright's sync API does: the browser tests
    then made every later load here stay at "computing statistics…" forever)."""
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.events._set_running_loop(loop)  # what a sync-API library leaves behind
    try:
        assert asyncio.get_running_loop() is loop
        w, _model = explorer("identical")
        w.handle_action({"action": "load"})
        assert w.message["level"] == "success"
        assert w.results["state"] == "ready" and not w.busy
    finally:
        asyncio.events._set_running_loop(None)
        loop.close()


def test_the_tree_travels_as_one_binary_buffer_of_json():
    """ipywidgets walks every item of a trait's value looking for buffers; the tree goes as one
    buffer of ASCII JSON instead (hostile keys, lone surrogates included, come back exact)."""
    from hostile import hostile_keys_state_dict

    comm = RecordingComm()
    sd = hostile_keys_state_dict()
    raw: list[tuple[dict, list]] = []
    original = comm.send
    comm.send = lambda data=None, metadata=None, buffers=None: (  # type: ignore[method-assign]
        raw.append((data, list(buffers or []))),
        original(data, metadata, buffers),
    )
    w = Explorer(nn.Module(), sd, comm=comm)
    opened = [d for d, _ in raw if d and ["tree"] in d.get("buffer_paths", [])]
    assert opened and all("tree" not in d["state"] for d in opened)
    buf = next(b for d, b in raw if d and ["tree"] in d.get("buffer_paths", []))[0]
    bytes(buf).decode("ascii")  # pure ASCII
    assert json.loads(bytes(buf)) == w.tree
    assert set(sd) <= set(w.tree["columns"]["path"])


# --------------------------------------------------------------------------------------------
# histogram notes: what only the load knows (cast, adapter, tie) is written under the panel
# --------------------------------------------------------------------------------------------


def _figure_words(fig) -> str:
    """Every text of a figure, whitespace collapsed (a wrapped note reads as one line)."""
    from matplotlib.text import Text

    return " ".join(" ".join(t.get_text() for t in fig.findobj(Text)).split())


@pytest.fixture
def drawn_figures(monkeypatch) -> list[str]:
    """The texts of every figure the Explorer turns into a PNG, in drawing order."""
    import sd_widgets.load._plots as plots

    seen: list[str] = []
    real = plots.figure_to_png

    def recording(fig, *args, **kwargs):
        seen.append(_figure_words(fig))
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(plots, "figure_to_png", recording)
    return seen


def test_histogram_panels_say_cast_and_adapter(drawn_figures):
    ckpt = demo.variant("new_head")
    ckpt["backbone.stem.conv.weight"] = ckpt["backbone.stem.conv.weight"].half()
    w = Explorer(demo.target_model("new_head"), ckpt, select="none")
    w.handle_action({"action": "adapt", "key": "classifier.weight", "adapter": "overlap"})
    w.handle_action({"action": "toggle", "keys": ["backbone.stem.conv.weight"]})
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    report = w.reports[-1]
    assert report.notes() == {
        "backbone.stem.conv.weight": ["cast float16 → float32"],
        "classifier.weight": ["adapter: overlap"],
    }
    # the grid (both loaded parameters) and a picked panel say so, under the right key
    grid = {h["key"] for h in w.histograms}
    assert grid == {"backbone.stem.conv.weight", "classifier.weight"}
    assert sum("cast float16 → float32" in t for t in drawn_figures) == 1
    assert sum("adapter: overlap" in t for t in drawn_figures) == 1
    drawn_figures.clear()
    w.histogram_key = "backbone.stem.conv.weight"
    assert w.histogram["key"] == "backbone.stem.conv.weight"
    assert len(drawn_figures) == 1 and "cast float16 → float32" in drawn_figures[0]
    assert "adapter" not in drawn_figures[0]
    # the report's own figure says the same
    words = _figure_words(report.plot_histograms())
    assert "cast float16 → float32" in words and "adapter: overlap" in words
    only_cast = _figure_words(report.plot_histograms(["backbone.stem.conv.weight"]))
    assert "cast float16 → float32" in only_cast and "adapter" not in only_cast


def test_histogram_panel_says_what_a_tied_tensor_follows(drawn_figures):
    torch.manual_seed(0)
    model = tied_lm()
    saved = {k: v.clone() + 1 for k, v in tied_lm().state_dict().items() if k != "lm_head.weight"}
    w = Explorer(model, saved)
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    report = w.reports[-1]
    assert report.notes()["lm_head.weight"] == ["tied to embed.weight"]
    assert "embed.weight" not in report.notes()
    drawn_figures.clear()
    w.histogram_key = "lm_head.weight"
    assert len(drawn_figures) == 1 and "tied to embed.weight" in drawn_figures[0]
    assert "tied to embed.weight" in _figure_words(report.plot_histograms(["lm_head.weight"]))


# --------------------------------------------------------------------------------------------
# selection at scale: a 30,000-key model, every gesture gives the keys the rows say
# --------------------------------------------------------------------------------------------


class KernelComm(RecordingComm):
    """A recording comm that encodes like ipykernel's (jupyter_client's ``json_packer``)."""

    encodes_iterables = True

    def __init__(self) -> None:
        super().__init__()
        self.wire: list[bytes] = []

    def send(self, data=None, metadata=None, buffers=None) -> None:
        from jupyter_client.session import json_packer

        packed = json_packer(data)
        self.wire.append(packed)
        super().send(json.loads(packed), metadata, buffers)


def blocks_model(n_keys: int) -> nn.Module:
    """``n_keys`` keys: blocks ``"0"``, ``"1"``, ... of ten ``Linear(4, 4)`` (bench_plan's)."""
    n_layers = n_keys // 2
    return nn.Sequential(
        *[
            nn.Sequential(*[nn.Linear(4, 4) for _ in range(min(10, n_layers - i))])
            for i in range(0, n_layers, 10)
        ]
    )


@pytest.fixture(scope="module")
def big_explorer() -> Explorer:
    torch.manual_seed(0)
    model = blocks_model(30_000)
    sd = model.state_dict()
    sd["0.1.weight"] = torch.zeros(5, 4)  # shape mismatch: selectable only with an adapter
    del sd["0.2.bias"]  # missing
    sd["0.extra"] = torch.zeros(1)  # unexpected
    sd["3.4.weight"] = sd["3.4.weight"].half()  # dtype mismatch: loadable (a cast)
    sd["7.0.bias"] = torch.zeros(3)  # another shape mismatch
    return Explorer(model, sd, comm=KernelComm())


def _rows_loadable(w: Explorer) -> list[str]:
    """Every loadable key in tree order, asked of the comparison's rows one by one."""
    cmp = w.comparison
    return [k for k in _tree_payload.TreeIndex(w.tree).keys if cmp[k].loadable]


def _old_toggle(order: list[str], allowed: set[str], selection: list[str], target: list[str]):
    """The gesture as the widget computed it before (a Python test per row, tree order)."""
    current, wanted = set(selection), set(target)
    target = [k for k in order if k in wanted and k in allowed]
    if target and all(k in current for k in target):
        current.difference_update(target)
    else:
        current.update(target)
    return [k for k in order if k in current and k in allowed]


def test_selection_gestures_at_30k_keys_give_the_keys_the_rows_say(big_explorer):
    w = big_explorer
    w.handle_action({"action": "select_all_loadable"})
    loadable = _rows_loadable(w)
    assert len(w.tree["columns"]["t"]) > 30_000 and len(loadable) == 30_000 - 3
    assert w.selected_keys == loadable and "3.4.weight" in loadable
    assert not {"0.1.weight", "0.2.bias", "0.extra", "7.0.bias"} & set(w.selected_keys)
    order = _tree_payload.TreeIndex(w.tree).keys
    allowed = set(loadable)
    # a module click deselects its subtree, a second one selects it again
    w.handle_action({"action": "toggle", "modules": ["1"]})
    assert w.selected_keys == [k for k in loadable if not k.startswith("1.")]
    assert w.preview["n_tensors"] == len(loadable) - 20
    w.handle_action({"action": "toggle", "modules": ["1"]})
    assert w.selected_keys == loadable
    # block 0 holds the problems: only its selectable keys move
    w.handle_action({"action": "toggle", "modules": ["0"]})
    assert w.selected_keys == [k for k in loadable if not k.startswith("0.")]
    assert len(loadable) - len(w.selected_keys) == 18  # 20 keys but 0.1.weight, 0.2.bias
    # keys and modules together, a partly selected target selects all of it
    gesture = {"keys": ["5.3.weight", "0.1.weight"], "modules": ["0", "12.4", "1499"]}
    before = list(w.selected_keys)
    w.handle_action({"action": "toggle", **gesture})
    targets = ["5.3.weight", *[k for k in order if k.split(".")[0] in ("0", "1499")]]
    targets += ["12.4.weight", "12.4.bias"]
    assert w.selected_keys == _old_toggle(order, allowed, before, targets)
    assert w.selected_keys == loadable
    w.handle_action({"action": "toggle", **gesture})
    assert w.selected_keys == _old_toggle(order, allowed, loadable, targets)
    assert "5.3.weight" not in w.selected_keys and "12.4.bias" not in w.selected_keys
    # a shift-click range: deselect then select two blocks and a row
    w.handle_action({"action": "select_all_loadable"})
    rng = {"action": "select_range", "modules": ["2", "3"], "keys": ["4.0.weight"]}
    w.handle_action({**rng, "select": False})
    gone = {k for k in loadable if k.split(".")[0] in ("2", "3")} | {"4.0.weight"}
    assert w.selected_keys == [k for k in loadable if k not in gone]
    w.handle_action({**rng, "select": True})
    assert w.selected_keys == loadable
    # the whole tree (module "") and nothing
    w.handle_action({"action": "toggle", "modules": [""]})
    assert w.selected_keys == []
    w.handle_action({"action": "toggle", "modules": [""]})
    assert w.selected_keys == loadable
    w.handle_action({"action": "select_none"})
    assert w.selected_keys == [] and w.preview["n_tensors"] == 0
    w.handle_action({"action": "select_all_loadable"})
    assert w.selected_keys == loadable
    assert w.message.get("level") != "error", w.message


def test_selection_at_30k_keys_from_the_browser_and_with_an_adapter(big_explorer):
    w = big_explorer
    comm = w.comm
    loadable = _rows_loadable(w)
    # the browser sends any order, repeats and junk: the kernel keeps the tree order
    sent = [*reversed(loadable[:5000]), "0.1.weight", "no.such.key", loadable[10], "0.extra"]
    comm.from_frontend({"method": "update", "buffer_paths": [], "state": {"selected_keys": sent}})
    assert w.selected_keys == loadable[:5000]
    # an adapter makes the shape mismatch selectable: it joins in its tree position
    w.handle_action({"action": "select_all_loadable"})
    w.handle_action({"action": "adapt", "key": "0.1.weight", "adapter": "overlap"})
    now_allowed = {*loadable, "0.1.weight"}
    with_adapter = [k for k in _tree_payload.TreeIndex(w.tree).keys if k in now_allowed]
    assert w.selected_keys == with_adapter and with_adapter.index("0.1.weight") == 2
    w.handle_action({"action": "toggle", "modules": ["0"]})
    assert w.selected_keys == [k for k in loadable if not k.startswith("0.")]
    w.handle_action({"action": "adapt", "key": "0.1.weight", "adapter": None})
    w.handle_action({"action": "select_all_loadable"})
    assert w.selected_keys == loadable


def test_selected_keys_go_out_as_the_same_json_list(big_explorer):
    """The update a click sends is byte for byte the JSON of the plain list."""
    from jupyter_client.session import json_packer

    w = big_explorer
    comm = w.comm
    w.handle_action({"action": "select_all_loadable"})
    comm.sent.clear()
    comm.wire.clear()
    w.handle_action({"action": "toggle", "modules": ["9"]})
    (update,) = comm.updates()
    assert update["state"]["selected_keys"] == w.selected_keys
    assert isinstance(update["state"]["selected_keys"], list)
    plain = {**update, "state": {**update["state"], "selected_keys": list(w.selected_keys)}}
    assert comm.wire[-1] == json_packer(plain)
    # a comm that does not say it encodes iterables gets plain lists (standard json works)
    plain_comm = RecordingComm()
    w.comm = plain_comm
    try:
        w.handle_action({"action": "toggle", "modules": ["9"]})
        assert plain_comm.updates()[-1]["state"]["selected_keys"] == w.selected_keys
    finally:
        w.comm = comm
    # outside an update message (open, embedding) the state is the plain list
    assert type(w.get_state("selected_keys")["selected_keys"]) is list
    # what the browser just set is compared as a plain list (no echo of its own value)
    comm.sent.clear()
    same = list(w.selected_keys)
    comm.from_frontend({"method": "update", "buffer_paths": [], "state": {"selected_keys": same}})
    assert all("selected_keys" not in m["state"] for m in comm.updates())
    w.handle_action({"action": "select_all_loadable"})


def test_resolve_names_keys_and_subtrees_in_tree_order_and_refuses_unknown_names():
    model = big_model(30)
    index = _tree_payload.TreeIndex(
        w_tree := _tree_payload.payload_from_comparison(sdw.compare(model, model))
    )
    keys = index.keys
    assert index.resolve(modules=["blocks.3"]) == ["blocks.3.lin.weight", "blocks.3.lin.bias"]
    assert index.resolve(keys=["blocks.7.lin.bias"], modules=["blocks.2.lin", "blocks.7"]) == [
        "blocks.2.lin.weight",
        "blocks.2.lin.bias",
        "blocks.7.lin.weight",
        "blocks.7.lin.bias",
    ]
    # a row key named as a "module" is itself; the root is every key
    assert index.resolve(modules=["blocks.9.lin.bias", "blocks.1.lin.weight"]) == [
        "blocks.1.lin.weight",
        "blocks.9.lin.bias",
    ]
    assert index.resolve(modules=["blocks.4", ""]) == keys and len(keys) == 60
    with pytest.raises(KeyError, match="not a row key"):
        index.resolve(keys=["blocks.1"])
    with pytest.raises(KeyError, match="neither a module path nor a row key"):
        index.resolve(modules=["", "blocks.99"])
    with pytest.raises(KeyError, match="neither a module path nor a row key"):
        index.resolve(modules=["nope"])
    assert w_tree["n_keys"] == 60


def test_two_checkpoints_take_no_adapter():
    """Explorer(compare_values(a, b)) of two checkpoints: a shape mismatch the overlap adapter
    could load is not adapted (Space on its row sent "adapt" and set one silently): there is
    no model to load into, and the message says so."""
    a = demo.target_model("new_head").state_dict()  # 3-class head
    w = Explorer(sdw.compare_values(a, demo.variant("new_head")))  # 10-class head
    assert w.model is None and w.comparison["classifier.weight"].adaptable
    w.handle_action({"action": "adapt", "key": "classifier.weight", "adapter": "auto"})
    assert w.adapters == {} and w.selected_keys == []
    assert w.message["level"] == "error" and "nothing to load into" in w.message["text"]


def test_a_change_outside_makes_the_value_comparison_out_of_date():
    """The values view said "38 identical" after an edit in a cell had changed a weight."""
    model = demo.pretrained("cnn")
    w = Explorer(model, demo.variant("identical"))
    w.handle_action({"action": "compare_values"})
    assert w.values["state"] == "ready", w.message
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    assert w.check_stale() and w.values["state"] == "stale"
    w.handle_action({"action": "compare_values"})
    assert w.values["state"] == "ready" and "1 changed" in w.message["text"], w.message
