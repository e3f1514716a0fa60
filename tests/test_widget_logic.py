"""The Explorer widget without a browser.

Front-end changes are simulated the way the browser makes them: setting a synced trait
(``selected_keys``, ``bn_policy``, ``adapters``) or sending a custom message, which lands in
``Explorer.handle_action``. The protocol tests go one level lower and feed raw comm messages
to the widget, asserting on the messages Python sends back.
"""

from __future__ import annotations

import base64
import json
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import sd_widgets as sdw
from sd_widgets import demo
from sd_widgets.widgets import payload as pl
from sd_widgets.widgets.explorer import Explorer

STATIC = Path(sdw.__file__).parent / "widgets" / "static"

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
        self.sent.append(json.loads(json.dumps(data)))

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
    index = pl.TreeIndex(w.tree)
    return {k: index.status(k) for k in index.keys}


def big_model(n_layers: int) -> nn.Module:
    """``2 * n_layers`` keys under ``blocks.<i>.lin``."""
    return nn.Sequential(OrderedDict(
        blocks=nn.ModuleList(nn.ModuleDict({"lin": nn.Linear(2, 2)}) for _ in range(n_layers))
    ))


# --------------------------------------------------------------------------------------------
# payload (pure functions)
# --------------------------------------------------------------------------------------------


def test_payload_has_one_row_per_comparison_row_and_aligned_sides():
    model = demo.target_model("renamed_layer")
    cmp = sdw.compare(model, demo.variant("renamed_layer"))
    p = pl.build_tree_payload(cmp.tree())
    cols = p["columns"]
    assert p["n_keys"] == len(cmp.rows)
    assert all(len(v) == p["n_entries"] for v in cols.values())
    index = pl.TreeIndex(p)
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
    p = pl.build_tree_payload(cmp.tree())
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
    index = pl.TreeIndex(pl.build_tree_payload(cmp.tree()))
    assert not index.selectable("classifier.weight")
    assert index.selectable("classifier.weight", {"classifier.weight": "overlap"})
    reasons = index.not_selectable()
    assert set(reasons) == {"classifier.weight", "classifier.bias"}
    assert "shape mismatch" in reasons["classifier.weight"]
    assert "(10, 32)" in reasons["classifier.weight"] and "(3, 32)" in reasons["classifier.weight"]


def test_toggle_module_and_range_selection():
    cmp = sdw.compare(demo.target_model("new_head"), demo.variant("new_head"))
    index = pl.TreeIndex(pl.build_tree_payload(cmp.tree()))
    stem = index.subtree_keys("backbone.stem")
    assert len(stem) == 6
    sel = pl.toggle(index, [], modules=["backbone.stem"])
    assert sel == stem
    sel = pl.toggle(index, [*sel, "backbone.layer1.0.conv1.weight"], modules=["backbone.stem"])
    assert sel == ["backbone.layer1.0.conv1.weight"]  # fully selected subtree → deselected
    # partly selected → everything in it selected
    assert pl.toggle(index, stem[:2], modules=["backbone.stem"]) == stem
    # not selectable keys never enter the selection
    assert pl.toggle(index, [], modules=["classifier"]) == []
    assert pl.toggle(index, [], keys=["classifier.weight"]) == []
    rng = pl.apply_range(index, [], keys=stem[1:4], modules=["backbone.layer1"], select=True)
    assert rng == stem[1:4] + index.subtree_keys("backbone.layer1")
    assert pl.apply_range(index, rng, modules=["backbone.layer1"], select=False) == stem[1:4]
    with pytest.raises(KeyError):
        index.subtree_keys("no.such.module")


def test_hostile_key_names_survive_unchanged():
    sd = OrderedDict((k, torch.zeros(2)) for k in HOSTILE_KEYS)
    model = nn.Linear(2, 2)
    cmp = sdw.compare(model, sd)
    p = pl.build_tree_payload(cmp.tree(), source="<b>src</b>")
    index = pl.TreeIndex(p)
    assert set(HOSTILE_KEYS) <= set(index.keys)
    names = set(p["columns"]["name"])
    assert {"weight", "bias", "重み"} <= names
    assert "<img src=x onerror=alert(1)>" in p["columns"]["path"]  # a module node path
    # the JSON the browser receives holds the exact strings
    assert json.loads(json.dumps(p))["columns"]["path"] == p["columns"]["path"]
    html = pl.summary_html(p)
    assert "<img" not in html and "<script" not in html and "<b>src" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.weight" in html


def test_static_fallback_html_shows_both_shapes_whole():
    """The HTML shown where no widget front end runs (nbviewer, GitHub) names both shapes
    exactly — a regression: stripping '( )' once ate the model shape's closing parenthesis."""
    cmp = sdw.compare(demo.target_model("new_head"), demo.variant("new_head"))
    html = pl.summary_html(pl.build_tree_payload(cmp.tree()))
    assert "checkpoint (10, 32) vs model (3, 32)</td>" in html
    assert "checkpoint (10,) vs model (3,)</td>" in html


def test_suggestions_payload_lists_rules_first_with_the_rule_to_add():
    cmp = sdw.compare(demo.target_model("renamed_layer"), demo.variant("renamed_layer"))
    sugg = pl.suggestions_payload(cmp.suggest_renames(), cmp.prefix_suggestions())
    assert sugg[0]["type"] == "rule" and sugg[0]["fixes"] == 2
    assert sugg[0]["rule"] == {"kind": "prefix", "old": "fc.", "new": "classifier.",
                               "label": "prefix 'fc.' → 'classifier.'"}
    pairs = [s for s in sugg if s["type"] == "pair"]
    assert {(s["ckpt_key"], s["model_key"]) for s in pairs} == {
        ("fc.weight", "classifier.weight"), ("fc.bias", "classifier.bias")}
    assert len({s["id"] for s in sugg}) == len(sugg)


def test_rule_specs_round_trip_and_bad_rules_are_readable():
    for spec in ({"kind": "prefix", "old": "module.", "new": ""},
                 {"kind": "regex", "old": r"^fc\.", "new": "classifier."},
                 {"kind": "exact", "old": "re:odd", "new": "x"}):
        rule = pl.rule_from_spec(spec)
        assert {k: v for k, v in pl.rule_to_spec(rule).items() if k != "label"} == spec
    with pytest.raises(ValueError, match="regex"):
        pl.rule_from_spec({"kind": "regex", "old": "(", "new": ""})
    with pytest.raises(ValueError, match="kind"):
        pl.rule_from_spec({"kind": "glob", "old": "a", "new": "b"})


# --------------------------------------------------------------------------------------------
# Explorer: construction, repr, static fallback
# --------------------------------------------------------------------------------------------


def test_initial_state_selects_everything_loadable_and_previews_it():
    w, model = explorer("new_head")
    index = pl.TreeIndex(w.tree)
    assert w.selected_keys == index.selectable_keys()
    assert len(w.selected_keys) == 36
    plan = w.plan()
    assert w.preview["n_tensors"] == len(plan.keys) == 36
    assert w.preview["n_params"] == plan.numel
    assert w.preview["nbytes"] == plan.nbytes
    assert w.preview["keys"] == plan.keys
    assert w.model is model
    assert not w.can_undo and not w.busy and w.message == {}
    assert Explorer(demo.target_model("new_head"), demo.variant("new_head"),
                    select="none").selected_keys == []


def test_repr_is_cheap_stable_and_the_mimebundle_has_a_static_fallback():
    w, _ = explorer("new_head")
    r = repr(w)
    assert r == ("Explorer(SmallCNN ← mapping: 38 keys, 36 matches, 2 shape mismatches; "
                 "36 selected)")
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
    js = (STATIC / "tree.js").read_text()
    assert "export default" in js
    assert "innerHTML" not in js and "outerHTML" not in js and "insertAdjacentHTML" not in js
    assert ".sdw-status-shape_mismatch" in (STATIC / "tree.css").read_text()
    w, _ = explorer("identical")
    assert "export default" in w._esm and ".sdw-explorer" in w._css


# --------------------------------------------------------------------------------------------
# selection from the front end
# --------------------------------------------------------------------------------------------


def test_front_end_selection_is_cleaned_and_previewed():
    w, _ = explorer("new_head")
    w.selected_keys = ["classifier.weight", "backbone.stem.conv.weight", "nope",
                       "backbone.stem.conv.weight"]
    assert w.selected_keys == ["backbone.stem.conv.weight"]
    assert w.preview["n_tensors"] == 1
    assert w.preview["n_params"] == 16 * 3 * 3 * 3
    assert w.preview["nbytes"] == 16 * 3 * 3 * 3 * 4
    assert w.preview["keys"] == ["backbone.stem.conv.weight"]


def test_module_click_toggles_its_subtree_and_shift_range():
    w, _ = explorer("new_head", select="none")
    w.handle_action({"action": "toggle", "modules": ["backbone.layer1"]})
    layer1 = pl.TreeIndex(w.tree).subtree_keys("backbone.layer1")
    assert w.selected_keys == layer1 and len(layer1) == 12
    assert w.preview["n_tensors"] == 12
    w.handle_action({"action": "toggle", "modules": ["backbone.layer1"]})
    assert w.selected_keys == []
    w.handle_action({"action": "toggle", "keys": ["backbone.stem.conv.weight"]})
    w.handle_action({"action": "select_range", "select": True,
                     "keys": ["backbone.stem.conv.weight", "backbone.stem.bn.weight"],
                     "modules": ["backbone.layer2"]})
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
    w.show_code = True
    assert "load_state_dict" in w.code and "backbone.stem.bn.running_mean" in w.code
    n_all = w.preview["n_tensors"]
    w.bn_policy = "keep"
    assert w.preview["n_tensors"] == n_all - 3 * n_bn  # running stats + num_batches_tracked
    assert any("bn='keep'" in why for _, why in w.preview["skipped"])
    assert "'keep'" in w.code
    w.handle_action({"action": "set_bn", "policy": "nonsense"})
    assert w.message["level"] == "error" and w.bn_policy == "keep"


# --------------------------------------------------------------------------------------------
# load, histograms, undo
# --------------------------------------------------------------------------------------------


def test_load_changes_the_live_model_and_shows_histograms_then_undo_restores_exactly():
    w, model = explorer("new_head", select="none")
    ckpt = demo.variant("new_head")
    before = snapshot(model)
    w.selected_keys = ["backbone.stem.conv.weight", "backbone.stem.bn.weight",
                       "backbone.stem.bn.running_mean", "backbone.stem.bn.running_var"]
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    assert changed_keys(before, model) == set(w.selected_keys)
    for k in w.selected_keys:
        assert torch.equal(model.state_dict()[k], ckpt[k])
    assert w.can_undo and not w.busy
    assert w.last_load["loaded"] == 4
    assert [h["key"] for h in w.histograms] == ["backbone.stem.conv.weight",
                                                 "backbone.stem.bn.weight"]
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
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                   for k in changed)
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
    pair = next(s for s in w.suggestions if s["type"] == "pair"
                and s["model_key"] == "classifier.weight")
    w.handle_action({"action": "accept_suggestion", "id": pair["id"]})
    statuses = leaf_statuses(w)
    assert "fc.weight" not in statuses
    assert statuses["classifier.weight"] == "match"
    assert statuses["fc.bias"] == "unexpected"
    assert pl.TreeIndex(w.tree).row("classifier.weight")["ckpt_key"] == "fc.weight"
    assert w.rename_rules == [{"kind": "exact", "old": "fc.weight", "new": "classifier.weight",
                               "label": "'fc.weight' → 'classifier.weight'"}]
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
    assert w.tree["counts"] == [38, 0, 0, 0, 0, 0]
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
    w.handle_action({"action": "add_rule", "kind": "regex", "old": r"\.(weight|bias)$",
                     "new": ".x"})
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
    comm.from_frontend({"method": "custom", "content": {"action": "toggle",
                                                       "modules": ["backbone.stem"]}})
    updates = comm.updates()
    assert len(updates) == 1, comm.sent
    state = updates[0]["state"]
    assert state["selected_keys"] == pl.TreeIndex(w.tree).subtree_keys("backbone.stem")
    assert state["preview"]["n_tensors"] == 6
    assert "tree" not in state  # the payload is not re-sent on a click


def test_protocol_front_end_selection_update_is_cleaned_and_sent_back():
    comm = RecordingComm()
    w = Explorer(demo.target_model("new_head"), demo.variant("new_head"), select="none",
                 comm=comm)
    comm.sent.clear()
    comm.from_frontend({"method": "update", "buffer_paths": [],
                        "state": {"selected_keys": ["classifier.weight",
                                                    "backbone.stem.conv.weight"]}})
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
    assert {"method": "custom", "content": {"type": "show_tab", "tab": "results"}} in comm.sent
    # busy went up before the work and down after it
    busy = [m["state"]["busy"] for m in comm.updates() if "busy" in m["state"]]
    assert busy[0] is True and busy[-1] is False
    comm.from_frontend({"method": "custom", "content": {"action": "undo"}})
    assert changed_keys(before, model) == set()
    assert w.can_undo is False


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
    comm.from_frontend({"method": "custom", "content": {"action": "toggle",
                                                       "keys": ["blocks.0.lin.weight"]}})
    assert len(comm.sent) == 1
