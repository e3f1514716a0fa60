"""compare(): statuses checked against what torch's load_state_dict really does, kinds, meta
models, laziness, prefixes and renames, rename suggestions, the tree, select and summaries."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import safetensors
import torch
from realworld import silently_filled
from torch import nn

import sd_widgets as sdw
from sd_widgets import demo
from sd_widgets.checkpoint import Checkpoint
from sd_widgets.compare._compare import STATUSES, Comparison
from sd_widgets.compare._renames import Rename

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)

FLAT_VARIANTS = [v for v in demo.VARIANTS if v not in demo.NESTED_VARIANTS]
DESIGN_COLUMNS = [
    "key",
    "status",
    "kind",
    "module",
    "ckpt_key",
    "model_key",
    "ckpt_shape",
    "model_shape",
    "ckpt_dtype",
    "model_dtype",
]


# ------------------------------------------------------------------------------------ helpers


def torch_verdict(model: nn.Module, sd: Mapping[str, torch.Tensor]):
    """(missing, unexpected, size-mismatched) keys as torch reports them for a strict load."""
    try:
        copy.deepcopy(model).load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        msg = str(exc)
    else:
        return set(), set(), set()

    def listed(label: str) -> set[str]:
        m = re.search(label + r' key\(s\) in state_dict: ((?:"[^"]+"(?:, )?)+)', msg)
        return set(re.findall(r'"([^"]+)"', m.group(1))) if m else set()

    return (
        listed("Missing"),
        listed("Unexpected"),
        set(re.findall(r"size mismatch for (\S+):", msg)),
    )


@pytest.fixture(scope="module")
def variants() -> dict[str, Any]:
    return {v: demo.variant(v) for v in demo.VARIANTS}


def leaves(node: dict[str, Any]) -> list[dict[str, Any]]:
    if node["type"] == "tensor":
        return [node]
    return [leaf for child in node["children"] for leaf in leaves(child)]


def modules(node: dict[str, Any]) -> list[dict[str, Any]]:
    if node["type"] == "tensor":
        return []
    return [node] + [m for child in node["children"] for m in modules(child)]


# ------------------------------------------------------------------------------------ statuses


@pytest.mark.parametrize("name", FLAT_VARIANTS)
def test_statuses_agree_with_load_state_dict(name, variants):
    sd = variants[name]
    model = demo.target_model(name)
    cmp = sdw.compare(model, sd)
    missing, unexpected, size = torch_verdict(model, sd)
    ours_missing = set(cmp.keys(["missing", "missing_buffer"]))
    # the only allowed difference: BN counters torch fills in silently for legacy metadata
    assert ours_missing - missing == silently_filled(model, sd)
    assert missing <= ours_missing
    assert set(cmp.keys("unexpected")) == unexpected
    assert set(cmp.keys("shape_mismatch")) == size
    # loads_cleanly predicts whether a strict load succeeds
    try:
        copy.deepcopy(model).load_state_dict(sd, strict=True)
        loaded = True
    except RuntimeError:
        loaded = False
    assert cmp.loads_cleanly is loaded
    # one row per key of the union, no duplicates
    assert len(cmp) == len(set(model.state_dict()) | set(sd))
    assert len(set(cmp.keys())) == len(cmp)
    assert sum(cmp.summary().values()) == len(cmp)


def test_identical_all_match(variants):
    cmp = sdw.compare(demo.target_model("identical"), variants["identical"])
    assert cmp.summary() == {
        "match": 38,
        "shape_mismatch": 0,
        "dtype_mismatch": 0,
        "missing": 0,
        "missing_buffer": 0,
        "unexpected": 0,
        "tied": 0,
    }
    assert cmp.loads_cleanly
    assert all(r.loadable and r.reason is None for r in cmp)


def test_shape_mismatch(variants):
    cmp = sdw.compare(demo.target_model("new_head"), variants["new_head"])
    assert cmp.keys("shape_mismatch") == ["classifier.weight", "classifier.bias"]
    row = cmp["classifier.weight"]
    assert (row.ckpt_shape, row.model_shape) == ((10, 32), (3, 32))
    assert (row.ckpt_key, row.model_key, row.kind, row.module) == (
        "classifier.weight",
        "classifier.weight",
        "param",
        "classifier",
    )
    assert not row.loadable and row.adaptable
    assert "(10, 32)" in row.reason and "(3, 32)" in row.reason and "overlap" in row.reason
    assert not cmp.loads_cleanly


def test_dtype_mismatch_is_loadable(variants):
    cmp = sdw.compare(demo.target_model("fp16"), variants["fp16"])
    assert cmp.summary()["dtype_mismatch"] == 32
    assert set(cmp.keys("match")) == {k for k in variants["fp16"] if "num_batches" in k}
    row = cmp["classifier.weight"]
    assert (row.status, row.ckpt_dtype, row.model_dtype) == ("dtype_mismatch", "float16", "float32")
    assert row.nbytes == 10 * 32 * 2  # checkpoint bytes
    assert row.loadable and cmp.loads_cleanly  # torch casts silently (fact 7)


def test_missing_params_and_missing_buffers(variants):
    model = demo.target_model("removed_layer")
    cmp = sdw.compare(model, variants["removed_layer"])
    params = {n for n, _ in model.named_parameters()}
    buffers = {n for n, _ in model.named_buffers()}
    missing = cmp.keys("missing")
    missing_buffer = cmp.keys("missing_buffer")
    assert missing and set(missing) <= params
    assert missing_buffer and set(missing_buffer) <= buffers
    assert all(k.startswith("backbone.layer1.0.") for k in missing + missing_buffer)
    assert "backbone.layer1.0.bn1.running_mean" in missing_buffer
    row = cmp["backbone.layer1.0.conv1.weight"]
    assert (row.ckpt_key, row.ckpt_shape, row.ckpt_dtype) == (None, None, None)
    assert row.model_shape == (16, 16, 3, 3)
    assert "keeps its current" in row.reason


def test_bn_stats_absent_are_missing_buffers(variants):
    cmp = sdw.compare(demo.target_model("no_bn_stats"), variants["no_bn_stats"])
    assert len(cmp.keys("missing_buffer")) == 18
    assert {k.rpartition(".")[2] for k in cmp.keys("missing_buffer")} == {
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }
    assert cmp.keys("missing") == []
    assert {cmp[k].kind for k in cmp.keys("missing_buffer")} == {"buffer"}


def test_unexpected(variants):
    cmp = sdw.compare(demo.target_model("added_layer"), variants["added_layer"])
    unexpected = cmp.keys("unexpected")
    assert len(unexpected) == 12 and all(k.startswith("backbone.layer2.1.") for k in unexpected)
    row = cmp[unexpected[0]]
    assert (row.kind, row.model_key, row.model_shape, row.model_dtype) == (None, None, None, None)
    assert row.ckpt_key == row.key
    assert row.reason == "checkpoint key the model does not have"


def test_frame_columns_and_kinds(variants):
    model = demo.target_model("new_head")
    frame = sdw.compare(model, variants["added_layer"]).to_frame()
    assert set(DESIGN_COLUMNS) <= set(frame.columns)
    assert list(frame.columns[: len(DESIGN_COLUMNS)]) == DESIGN_COLUMNS
    assert set(frame["status"].astype(str)) <= set(STATUSES)
    assert frame["key"].is_unique
    params = {n for n, _ in model.named_parameters()}
    buffers = {n for n, _ in model.named_buffers()}
    for row in frame.to_dict("records"):
        if pd.isna(row["model_key"]):  # None (a missing value) for checkpoint-only rows
            assert pd.isna(row["kind"])
        else:
            assert row["kind"] == ("param" if row["model_key"] in params else "buffer")
            assert row["model_key"] in params | buffers
    by_key = frame.set_index("key")
    assert by_key.loc["classifier.weight", "ckpt_shape"] == (10, 32)
    assert by_key.loc["classifier.weight", "model_shape"] == (3, 32)
    assert by_key.loc["backbone.stem.bn.running_var", "kind"] == "buffer"
    assert by_key.loc["backbone.stem.bn.running_var", "module"] == "backbone.stem.bn"


def test_non_persistent_buffers_are_not_expected():
    model = demo.non_persistent_buffer_model()
    sd = model.state_dict()
    assert "mask" not in sd
    cmp = sdw.compare(model, sd)
    assert "mask" not in cmp
    assert cmp["scale"].kind == "buffer" and cmp.loads_cleanly
    # a checkpoint entry for the non-persistent buffer is unexpected (fact 4) ...
    with_mask = dict(sd, mask=model.mask.clone())
    cmp = sdw.compare(model, with_mask)
    assert cmp["mask"].status == "unexpected"
    assert not cmp.loads_cleanly
    result = copy.deepcopy(model).load_state_dict(with_mask, strict=False)
    assert result.unexpected_keys == ["mask"]  # ... exactly as torch says
    # and its absence is not "missing"
    without_scale = {k: v for k, v in sd.items() if k != "scale"}
    assert sdw.compare(model, without_scale).keys("missing_buffer") == ["scale"]


def test_meta_device_model(variants):
    with torch.device("meta"):
        meta_model = demo.SmallCNN(num_classes=3)
    cmp = sdw.compare(meta_model, variants["new_head"])
    cpu = sdw.compare(demo.target_model("new_head"), variants["new_head"])
    assert [(r.key, r.status, r.kind) for r in cmp] == [(r.key, r.status, r.kind) for r in cpu]
    assert all(r.model_on_meta for r in cmp if r.model_key)
    assert not cmp["classifier.weight"].adaptable  # no values on meta to adapt from
    assert cmp.tree()["counts"] == cpu.tree()["counts"]


def test_tied_parameters_are_marked():
    model = demo.tied_model()
    cmp = sdw.compare(model, model.state_dict())
    assert cmp["lm_head.weight"].tied == ("embed.weight",)
    assert cmp["embed.weight"].tied == ("lm_head.weight",)
    assert cmp.loads_cleanly


# ------------------------------------------------------------------------------------ laziness


def test_compare_never_materialises_checkpoint_tensors(monkeypatch, tmp_path, variants):
    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint tensor was materialised")

    path = demo.save(variants["renamed_layer"], tmp_path / "w.safetensors", "safetensors")
    for name in ("tensor", "tensors", "state_dict", "_read"):
        monkeypatch.setattr(Checkpoint, name, forbidden)
    monkeypatch.setattr(safetensors, "safe_open", forbidden)
    monkeypatch.setattr(torch, "from_file", forbidden)
    for src in (path, variants["renamed_layer"]):
        cmp = sdw.compare(demo.target_model("renamed_layer"), src)
        assert cmp.summary()["unexpected"] == 2
        cmp.to_frame()
        cmp.tree()
        cmp.suggest_renames()
        fixed = cmp.with_renames(cmp.prefix_suggestions()[0].rule)
        assert fixed.loads_cleanly
        cmp.select("*.weight")
        repr(cmp)
        cmp._repr_html_()


# ------------------------------------------------------------------------------------ prefixes


def test_real_dataparallel_state_dict_suggests_stripping_module():
    model = demo.make_model("mlp")
    sd = nn.DataParallel(model).state_dict()
    assert all(k.startswith("module.") for k in sd)
    cmp = sdw.compare(demo.make_model("mlp", seed=1), sd)
    assert cmp.summary()["unexpected"] == len(sd) and not cmp.loads_cleanly
    best = cmp.prefix_suggestions()[0]
    assert best.rule == Rename.strip_prefix("module.")
    assert best.fixes == len(sd)
    assert "DataParallel" in best.reason
    fixed = cmp.with_renames(best.rule)
    assert fixed.loads_cleanly and fixed.summary()["match"] == len(sd)
    assert fixed["fc1.weight"].ckpt_key == "module.fc1.weight"


@pytest.mark.parametrize(
    ("name", "prefix", "origin"),
    [
        ("dataparallel", "module.", "DataParallel"),
        ("compiled", "_orig_mod.", "torch.compile"),
        ("lightning", "model.", "Lightning"),
    ],
)
def test_wrapper_prefix_suggestions(name, prefix, origin, tmp_path):
    path = demo.write_checkpoint(tmp_path, name, "torch")  # through a real file
    cmp = sdw.compare(demo.target_model(name), path)
    assert not cmp.loads_cleanly
    best = cmp.prefix_suggestions()[0]
    assert best.rule == Rename.strip_prefix(prefix)
    assert best.fixes == 38 and origin in best.reason
    assert cmp.with_renames(best.rule).loads_cleanly
    assert sdw.compare(demo.target_model(name), path, renames={prefix: ""}).loads_cleanly


def test_add_prefix_suggested_when_the_model_is_wrapped(variants):
    wrapped = nn.DataParallel(demo.make_model())
    cmp = sdw.compare(wrapped, variants["identical"])
    best = cmp.prefix_suggestions()[0]
    assert best.rule == Rename.add_prefix("module.")
    assert cmp.with_renames(best.rule).loads_cleanly


# ------------------------------------------------------------------------------------ renames


@pytest.mark.parametrize(
    "renames",
    [
        {"fc.": "classifier."},
        {"re:^fc\\.": "classifier."},
        {"fc.weight": "classifier.weight", "fc.bias": "classifier.bias"},
        [Rename.prefix("fc.", "classifier.")],
        [("fc.weight", "classifier.weight"), Rename.exact("fc.bias", "classifier.bias")],
        Rename.regex(r"^fc\.(weight|bias)$", r"classifier.\1"),
    ],
    ids=["prefix", "regex", "exact-pairs", "rule-list", "mixed-list", "single-rule"],
)
def test_explicit_renames(renames, variants):
    model = demo.target_model("renamed_layer")
    sd = variants["renamed_layer"]
    plain = sdw.compare(model, sd)
    assert set(plain.keys("unexpected")) == {"fc.weight", "fc.bias"}
    for cmp in (sdw.compare(model, sd, renames=renames), plain.with_renames(renames)):
        assert cmp.loads_cleanly, cmp.summary()
        row = cmp["classifier.weight"]
        assert (row.status, row.ckpt_key, row.model_key) == (
            "match",
            "fc.weight",
            "classifier.weight",
        )
        assert "fc.weight" not in cmp
    assert plain.renames == ()  # with_renames returns a new comparison
    assert not plain.loads_cleanly


def test_with_renames_appends_or_replaces(variants):
    model = demo.target_model("renamed_layer")
    cmp = sdw.compare(model, variants["renamed_layer"], renames={"fc.weight": "classifier.weight"})
    both = cmp.with_renames({"fc.bias": "classifier.bias"})
    assert len(both.renames) == 2 and both.loads_cleanly
    replaced = cmp.with_renames({"fc.bias": "classifier.bias"}, replace=True)
    assert replaced.renames == (Rename.exact("fc.bias", "classifier.bias"),)
    assert replaced["fc.weight"].status == "unexpected"


def test_rename_collision_is_a_clear_error(variants):
    model = demo.target_model("identical")
    with pytest.raises(ValueError, match="map both") as info:
        sdw.compare(model, variants["identical"], renames={"re:\\.bias$": ".weight"})
    message = str(info.value)
    assert re.search(r"map both '(\S+)\.weight' and '\1\.bias' to '\1\.weight'", message)
    assert "more specific" in message
    with pytest.raises(ValueError, match="map both"):
        sdw.compare(model, variants["identical"]).with_renames({"re:.*": "x"})


def test_invalid_rename_specs():
    model = demo.make_model("mlp")
    with pytest.raises(TypeError, match="is a string"):
        sdw.compare(model, model.state_dict(), renames="module.")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid regex"):
        sdw.compare(model, model.state_dict(), renames={"re:(": ""})


class Before(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 4)
        self.head = nn.Linear(4, 2)


class After(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.different_linear = nn.Linear(8, 4)
        self.decoy = nn.Linear(8, 5)
        self.head = nn.Linear(4, 2)


def test_suggest_renames_ranks_the_renamed_layer_first():
    sd = Before().state_dict()
    model = After()
    cmp = sdw.compare(model, sd)
    assert set(cmp.keys("unexpected")) == {"linear.weight", "linear.bias"}
    suggestions = cmp.suggest_renames()
    assert (suggestions[0].ckpt_key, suggestions[0].model_key) == (
        "linear.weight",
        "different_linear.weight",
    )
    assert ("linear.bias", "different_linear.bias") in [
        (s.ckpt_key, s.model_key) for s in suggestions
    ]
    assert all(s.model_key.startswith("different_linear.") for s in suggestions)  # decoy: shape
    assert "same shape (4, 8)" in suggestions[0].reason
    assert [s.score for s in suggestions] == sorted((s.score for s in suggestions), reverse=True)
    rule = cmp.prefix_suggestions()[0]
    assert rule.rule == Rename.prefix("linear.", "different_linear.") and rule.fixes == 2
    # fact 3: torch copies nothing for the renamed layer under strict=False
    before = model.different_linear.weight.detach().clone()
    result = model.load_state_dict(sd, strict=False)
    assert torch.equal(model.different_linear.weight, before)
    assert set(result.unexpected_keys) == {"linear.weight", "linear.bias"}
    fixed = cmp.with_renames([(s.ckpt_key, s.model_key) for s in suggestions])
    assert fixed.keys("unexpected") == [] and set(fixed.keys("missing")) == {
        "decoy.weight",
        "decoy.bias",
    }


# ------------------------------------------------------------------------------------ tree


def _check_counts(node: dict[str, Any]) -> dict[str, int]:
    if node["type"] == "tensor":
        return {node["status"]: 1}
    total: dict[str, int] = {}
    for child in node["children"]:
        for status, n in _check_counts(child).items():
            total[status] = total.get(status, 0) + n
    expected = {s: total[s] for s in STATUSES if s in total}
    assert node["counts"] == expected, node["path"]
    assert list(node["counts"]) == list(expected)  # vocabulary order, zeros left out
    return total


@pytest.mark.parametrize("name", ["new_head", "added_layer", "removed_layer", "renamed_layer"])
def test_tree_counts_alignment_and_order(name, variants):
    model = demo.target_model(name)
    cmp = sdw.compare(model, variants[name])
    tree = cmp.tree()
    json.dumps(tree)  # the widget payload is JSON
    assert (tree["type"], tree["path"], tree["name"], tree["module_type"]) == (
        "module",
        "",
        "",
        "SmallCNN",
    )
    _check_counts(tree)
    assert tree["counts"] == {s: n for s, n in cmp.summary().items() if n}
    tensors = leaves(tree)
    assert [leaf["path"] for leaf in tensors if leaf["model_key"]] == list(model.state_dict())
    assert sorted(leaf["path"] for leaf in tensors) == sorted(cmp.keys())  # one leaf per row
    for leaf in tensors:
        row = cmp[leaf["path"]]
        assert leaf["status"] == row.status and leaf["kind"] == row.kind
        assert leaf["ckpt_key"] == row.ckpt_key and leaf["model_key"] == row.model_key
        assert leaf["loadable"] == row.loadable and leaf["reason"] == row.reason
        if row.status in ("match", "shape_mismatch", "dtype_mismatch"):
            assert leaf["ckpt_key"] and leaf["model_key"]  # both sides on one aligned row
        assert leaf["name"] == leaf["path"].rpartition(".")[2]
    types = {m["path"]: m["module_type"] for m in modules(tree)}
    assert types["backbone"] == "Sequential" and types["backbone.layer1.0"] == "BasicBlock"
    assert types["classifier"] == "Linear"


def test_tree_puts_checkpoint_only_modules_after_model_ones(variants):
    cmp = sdw.compare(demo.target_model("added_layer"), variants["added_layer"])
    layer2 = next(m for m in modules(cmp.tree()) if m["path"] == "backbone.layer2")
    assert [c["name"] for c in layer2["children"]] == ["0", "1"]
    extra = layer2["children"][1]
    assert extra["module_type"] is None  # the model has no such module
    assert extra["counts"] == {"unexpected": 12}
    assert layer2["counts"] == {"match": len(cmp.select("backbone.layer2.0")), "unexpected": 12}


def test_tree_shape_mismatch_leaf(variants):
    cmp = sdw.compare(demo.target_model("new_head"), variants["new_head"])
    leaf = next(x for x in leaves(cmp.tree()) if x["path"] == "classifier.weight")
    assert leaf["ckpt_shape"] == [10, 32] and leaf["model_shape"] == [3, 32]
    assert leaf["adaptable"] is True and leaf["loadable"] is False
    assert leaf["nbytes"] == 10 * 32 * 4


# ------------------------------------------------------------------------------------ select


def test_select_keys_modules_globs(variants):
    cmp = sdw.compare(
        demo.target_model("renamed_layer"),
        variants["renamed_layer"],
        renames={"fc.": "classifier."},
    )
    assert cmp.select("classifier.bias") == ["classifier.bias"]
    assert cmp.select("fc.weight") == ["classifier.weight"]  # checkpoint name before renaming
    layer1 = cmp.select("backbone.layer1")
    assert layer1 and all(k.startswith("backbone.layer1.") for k in layer1)
    assert len(layer1) == 12
    assert cmp.select("backbone.layer1.") == layer1
    keys = cmp.keys()
    assert cmp.select("*.bias") == [k for k in keys if k.endswith(".bias")]
    assert cmp.select(["classifier.weight", "backbone.stem"]) == [
        k for k in keys if k.startswith("backbone.stem.") or k == "classifier.weight"
    ]
    assert cmp.select("*.no_such_leaf") == []  # a glob may match nothing


@pytest.mark.parametrize(
    ("pattern", "hint"), [("classifer", "classifier"), ("backbone.layer3", "backbone.layer1")]
)
def test_select_unknown_pattern_suggests(pattern, hint, variants):
    cmp = sdw.compare(demo.target_model("identical"), variants["identical"])
    with pytest.raises(KeyError, match="matches no key or module") as info:
        cmp.select(pattern)
    assert "did you mean" in str(info.value) and hint in str(info.value)


def test_keys_rejects_unknown_status(variants):
    cmp = sdw.compare(demo.target_model("identical"), variants["identical"])
    with pytest.raises(ValueError, match="unknown status"):
        cmp.keys("mismatch")


# ------------------------------------------------------------------------------------ two files


def test_compare_two_checkpoint_files(tmp_path):
    base = demo.write_checkpoint(tmp_path, "identical", "torch")
    half = demo.write_checkpoint(tmp_path, "fp16", "safetensors")
    deeper = demo.write_checkpoint(tmp_path, "added_layer", "torch")
    cmp = sdw.compare(base, half)
    assert isinstance(cmp, Comparison) and cmp.model is None
    assert cmp.summary()["dtype_mismatch"] == 32 and cmp.summary()["match"] == 6
    assert cmp["backbone.stem.bn.running_mean"].kind == "buffer"  # kinds guessed from names
    assert cmp["backbone.stem.conv.weight"].kind == "param"
    cmp = sdw.compare(base, deeper)
    assert len(cmp.keys("unexpected")) == 12
    cmp = sdw.compare(deeper, base)
    assert len(cmp.keys("missing")) + len(cmp.keys("missing_buffer")) == 12
    assert not cmp.loads_cleanly
    assert cmp.tree()["module_type"] is None


def test_compare_with_key_and_nested_file(tmp_path):
    path = demo.write_checkpoint(tmp_path, "ema", "torch")
    cmp = sdw.compare(demo.target_model("ema"), path, key="ema")
    assert cmp.checkpoint.source.key == "ema"
    assert cmp.loads_cleanly
    assert "weights from entry 'ema'" in repr(cmp)


def test_summary_repr_and_html(variants):
    cmp = sdw.compare(demo.target_model("new_head"), variants["new_head"])
    assert list(cmp.summary()) == list(STATUSES)
    assert "36 match" in repr(cmp) and "2 shape_mismatch" in repr(cmp)
    html = cmp._repr_html_()
    assert "<b>2</b> shape mismatch" in html


def test_compare_accepts_every_file_format(tmp_path):
    paths = demo.write_all_formats(tmp_path, "new_head")
    for fmt, path in paths.items():
        model = demo.target_model("new_head")
        renames = {"model.": ""} if fmt == "lightning" else None
        cmp = sdw.compare(model, path, renames=renames)
        assert cmp.summary()["match"] == 36 and cmp.keys("shape_mismatch") == [
            "classifier.weight",
            "classifier.bias",
        ], fmt
        assert Path(cmp.checkpoint.source.path).exists()


def test_shape_mismatch_reason_on_a_meta_model_names_the_meta_device():
    """On meta the overlap adapter cannot apply (no values to keep outside the overlap); the
    reason must say that, not blame the number of dimensions."""
    import torch

    with torch.device("meta"):
        meta = demo.target_model("new_head")
    rows = {r.key: r for r in sdw.compare(meta, demo.variant("new_head")).rows}
    row = rows["classifier.weight"]
    assert row.status == "shape_mismatch" and not row.adaptable
    assert "meta device" in row.reason and "dimensions" not in row.reason
    real = {
        r.key: r for r in sdw.compare(demo.target_model("new_head"), demo.variant("new_head")).rows
    }
    assert real["classifier.weight"].adaptable


def test_compare_progress_bar_can_be_turned_off(tmp_path, capsys):
    """Reading many shard headers shows a bar (auto above 16 shards); progress=False hides it,
    which notebooks under nbval and scripts logging to files need."""
    sd = demo.variant("identical")
    index = demo.save(sd, tmp_path / "sharded", "safetensors_sharded", num_shards=20)
    model = demo.target_model("identical")
    capsys.readouterr()
    sdw.compare(model, index, progress=True)
    assert "reading shard headers" in capsys.readouterr().err
    cmp = sdw.compare(model, index, progress=False)
    assert capsys.readouterr().err == ""
    assert cmp.summary()["match"] == len(sd)


def test_row_to_json_is_the_one_row_serialisation():
    """Tree leaves are Row.to_json under ``path``; every value survives json.dumps unchanged."""
    model = demo.target_model("new_head")
    cmp = sdw.compare(model, demo.variant("new_head"))
    leaves = {}

    def walk(node):
        for child in node.get("children", ()):
            if child["type"] == "tensor":
                leaves[child["path"]] = child
            else:
                walk(child)

    walk(cmp.tree())
    assert set(leaves) == {r.key for r in cmp.rows}
    for r in cmp.rows:
        d = r.to_json()
        assert list(d)[:3] == ["key", "status", "kind"]
        assert json.loads(json.dumps(d)) == d
        assert d["ckpt_shape"] == (None if r.ckpt_shape is None else list(r.ckpt_shape))
        assert (d["loadable"], d["adaptable"], d["reason"]) == (r.loadable, r.adaptable, r.reason)
        leaf = leaves[r.key]
        assert {k: v for k, v in leaf.items() if k not in ("type", "name")} == r.to_json("path")
        assert leaf["name"] == r.key.rpartition(".")[2]
    head = cmp["classifier.weight"].to_json()
    assert head["status"] == "shape_mismatch" and head["adaptable"] is True


def test_the_row_field_table_is_what_each_output_reads():
    """compare.ROW_FIELDS names every field once; to_json and to_frame follow its order."""
    from sd_widgets.compare._compare import FRAME_FIELDS, JSON_FIELDS, ROW_FIELDS, Row, row_fields

    cmp = sdw.compare(demo.target_model("new_head"), demo.variant("new_head"))
    r = cmp["classifier.weight"]
    assert all(hasattr(r, f) for f in ROW_FIELDS)
    assert all(isinstance(text, str) and text for text in ROW_FIELDS.values())
    assert tuple(r.to_json()) == JSON_FIELDS and next(iter(r.to_json("path"))) == "path"
    frame = cmp.to_frame()
    assert tuple(frame.columns) == FRAME_FIELDS
    assert frame.set_index("key").loc["classifier.weight", "reason"] == r.reason
    assert row_fields() == tuple(ROW_FIELDS)
    assert row_fields(without=["module", "tied"]) == tuple(
        f for f in ROW_FIELDS if f not in ("module", "tied")
    )
    with pytest.raises(ValueError, match="not row fields: \\['shape'\\]"):
        row_fields(without=["shape"])
    # every dataclass field of Row that is shown anywhere is in the table
    assert {f.name for f in dataclasses.fields(Row)} <= set(ROW_FIELDS)
