"""Tests for LoadPlan (``Comparison.plan``): selection, renames, adapters, BN policy,
``state_dict()`` and ``to_code()`` — with real demo models and real checkpoint files."""

from __future__ import annotations

import collections
import copy
import importlib.util
import pathlib
import sys
import warnings
from collections.abc import Mapping

import pytest
import torch
from bitwise import assert_bit_identical, state
from torch import nn

import sd_widgets as sdw
from sd_widgets import demo

BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

# ------------------------------------------------------------------------------------ helpers


def prefixed(sd: Mapping[str, torch.Tensor], prefix: str) -> collections.OrderedDict:
    """``sd`` with every key (and ``_metadata`` module path) prefixed, as a wrapper module does."""
    out: collections.OrderedDict = collections.OrderedDict((prefix + k, v) for k, v in sd.items())
    meta = getattr(sd, "_metadata", None)
    if meta is not None:
        out._metadata = collections.OrderedDict(  # type: ignore[attr-defined]
            ((prefix + p if p else prefix[:-1]), dict(v)) for p, v in meta.items()
        )
    return out


def import_code(code: str, path: pathlib.Path):
    """Write generated code to ``path`` and import it as a fresh module."""
    path.write_text(code)
    name = f"sdw_generated_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


# ---------------------------------------------------------------------------------- selection


def test_select_by_key_module_subtree_and_glob(model, ckpt):
    cmp = sdw.compare(model, ckpt)
    assert cmp.plan(include="classifier.weight").keys == ["classifier.weight"]
    # a module path selects everything below it, in model order
    layer1 = cmp.plan(include="backbone.layer1").keys
    assert layer1 == [k for k in model.state_dict() if k.startswith("backbone.layer1.")]
    assert len(layer1) == 12
    # "backbone.layer" is not a module: no prefix-of-a-name matching
    with pytest.raises(KeyError, match="matches no key or module"):
        cmp.plan(include="backbone.layer")
    # glob patterns
    biases = cmp.plan(include="*.bias").keys
    assert biases and all(k.endswith(".bias") for k in biases)
    assert set(biases) == {k for k in model.state_dict() if k.endswith(".bias")}
    means = cmp.plan(include="backbone.*.running_mean").keys
    assert len(means) == 6 and all(k.endswith("running_mean") for k in means)


def test_include_and_exclude_combine(model, ckpt):
    cmp = sdw.compare(model, ckpt)
    plan = cmp.plan(include=["backbone", "classifier.bias"], exclude=["backbone.layer2", "*.bn*"])
    keys = plan.keys
    assert "classifier.bias" in keys and "classifier.weight" not in keys
    assert not any(k.startswith("backbone.layer2.") for k in keys)
    assert not any(".bn" in k for k in keys)
    assert keys == [
        "backbone.stem.conv.weight",
        "backbone.layer1.0.conv1.weight",
        "backbone.layer1.0.conv2.weight",
        "classifier.bias",
    ]
    # exclude alone: everything else
    everything_but_head = cmp.plan(exclude="classifier").keys
    assert everything_but_head == [k for k in model.state_dict() if not k.startswith("classifier")]
    # what is not selected is not in skipped either (it was never asked for)
    assert plan.skipped == {}


def test_plan_only_loads_selection(model, ckpt):
    before = state(model)
    plan = sdw.compare(model, ckpt).plan(include="backbone.layer1")
    report = sdw.partial_load(model, plan)
    after = model.state_dict()
    for k in after:
        expected = ckpt[k] if k.startswith("backbone.layer1.") else before[k]
        assert torch.equal(after[k], expected), k
    assert report.loaded == plan.keys


# ------------------------------------------------------------------------------------ renames


def test_strip_prefix_dataparallel(model, ckpt):
    dp = prefixed(ckpt, "module.")
    cmp = sdw.compare(model, dp)
    assert cmp.summary()["match"] == 0  # under plain names nothing matches
    plan = cmp.plan(renames={"module.": ""})
    assert plan.keys == list(model.state_dict())
    sd = plan.state_dict()
    assert list(sd) == list(model.state_dict())
    for k in sd:
        assert torch.equal(sd[k], dp["module." + k])
    # _metadata is carried over, renamed: no "module." paths left, BN keeps version 2
    assert not any(p.startswith("module") for p in sd._metadata)
    assert sd._metadata["backbone.stem.bn"]["version"] == 2
    sdw.partial_load(model, plan)
    assert_bit_identical(state(model), ckpt)


def test_add_prefix_for_wrapped_model(ckpt):
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = demo.make_model("cnn", seed=1)

    wrapped = Wrapper()
    cmp = sdw.compare(wrapped, ckpt)
    [suggestion] = [s for s in cmp.prefix_suggestions() if s.rule.new == "model."]
    assert suggestion.fixes == len(ckpt)
    for renames in ({"": "model."}, [sdw.Rename.add_prefix("model.")], [suggestion]):
        plan = cmp.plan(renames=renames)
        assert plan.keys == ["model." + k for k in ckpt]
        assert plan.state_dict()._metadata["model.backbone.stem.bn"]["version"] == 2
    sdw.partial_load(wrapped, plan)
    assert_bit_identical(state(wrapped.model), ckpt)


def test_regex_and_explicit_pair_renames(model):
    renamed = demo.variant("renamed_layer")  # classifier.* saved as fc.*
    cmp = sdw.compare(model, renamed)
    assert set(cmp.keys("unexpected")) == {"fc.weight", "fc.bias"}
    assert set(cmp.keys("missing")) == {"classifier.weight", "classifier.bias"}
    regex = cmp.plan(renames={"re:^fc\\.": "classifier."})
    pairs = cmp.plan(renames=[("fc.weight", "classifier.weight"), ("fc.bias", "classifier.bias")])
    rule_objects = cmp.plan(renames=[sdw.Rename.regex(r"^fc\.(weight|bias)$", r"classifier.\1")])
    for plan in (regex, pairs, rule_objects):
        assert plan.keys == list(model.state_dict())
        assert plan.entries["classifier.weight"].ckpt_key == "fc.weight"
        assert torch.equal(plan.state_dict()["classifier.bias"], renamed["fc.bias"])
    # the renamed module's _metadata entry follows the rename
    assert "fc" not in regex.state_dict()._metadata
    # an explicit pair renames one key only
    one = cmp.plan(renames={"fc.weight": "classifier.weight"})
    assert "classifier.weight" in one.keys and "classifier.bias" not in one.keys
    assert one.skipped["fc.bias"] == "checkpoint key the model does not have"


def test_accepted_suggestions_are_renames(model):
    renamed = demo.variant("renamed_layer")
    cmp = sdw.compare(model, renamed)
    suggestions = cmp.suggest_renames()
    assert [(s.ckpt_key, s.model_key) for s in suggestions] == [
        ("fc.weight", "classifier.weight"),
        ("fc.bias", "classifier.bias"),
    ]
    rules = cmp.prefix_suggestions()
    assert rules[0].rule == sdw.Rename.prefix("fc.", "classifier.") and rules[0].fixes == 2
    # accepted suggestions go straight into plan(renames=...) and compare(renames=...)
    for accepted in (suggestions, rules[:1], [suggestions[0], ("fc.bias", "classifier.bias")]):
        plan = cmp.plan(renames=accepted)
        assert plan.keys == list(model.state_dict()), accepted
        assert sdw.compare(model, renamed, renames=accepted).loads_cleanly
    # accepting only one suggestion loads only that key
    plan = cmp.plan(renames=suggestions[:1])
    assert "classifier.weight" in plan.keys and "classifier.bias" not in plan.keys
    report = sdw.partial_load(model, cmp.plan(renames=suggestions))
    assert torch.equal(model.classifier.weight, renamed["fc.weight"])
    assert "classifier.weight" in report.loaded


def test_colliding_renames_are_refused(model, ckpt):
    with pytest.raises(ValueError, match="map both"):
        sdw.compare(model, ckpt).plan(renames={"re:\\.(weight|bias)$": ".weight"})


# ------------------------------------------------------------------------ shapes and adapters


def test_shape_mismatch_skipped_with_reason_rest_loaded(ckpt):
    model = demo.make_model("cnn", num_classes=3, seed=1)
    before = state(model)
    cmp = sdw.compare(model, ckpt)
    plan = cmp.plan()
    assert set(plan.skipped) == {"classifier.weight", "classifier.bias"}
    assert "checkpoint (10, 32) vs model (3, 32)" in plan.skipped["classifier.weight"]
    assert "adapt=" in plan.skipped["classifier.weight"]  # says how to opt in
    assert "classifier.weight" not in plan.state_dict()
    report = sdw.partial_load(model, plan)
    assert report.skipped == plan.skipped
    assert torch.equal(model.classifier.weight, before["classifier.weight"])
    assert torch.equal(model.backbone.stem.conv.weight, ckpt["backbone.stem.conv.weight"])


@pytest.mark.parametrize(
    "adapt",
    [
        {"classifier.weight": "overlap", "classifier.bias": "overlap"},
        {"classifier.*": "overlap"},
        {"classifier": "overlap"},
        "overlap",
    ],
)
def test_overlap_adapter_classifier_10_to_3(ckpt, adapt):
    model = demo.make_model("cnn", num_classes=3, seed=1)
    plan = sdw.compare(model, ckpt).plan(adapt=adapt)
    assert plan.skipped == {}
    assert plan.adapted == {"classifier.weight": "overlap", "classifier.bias": "overlap"}
    sd = plan.state_dict()
    assert sd["classifier.weight"].shape == (3, 32)
    assert torch.equal(sd["classifier.weight"], ckpt["classifier.weight"][:3])
    assert torch.equal(sd["classifier.bias"], ckpt["classifier.bias"][:3])
    report = sdw.partial_load(model, plan)
    assert torch.equal(model.classifier.weight, ckpt["classifier.weight"][:3])
    assert report.adapted == plan.adapted
    frame = report.to_frame().set_index("key")
    assert frame.loc["classifier.weight", "action"] == "adapt"


def test_overlap_adapter_only_where_asked(ckpt):
    model = demo.make_model("cnn", num_classes=3, seed=1)
    plan = sdw.compare(model, ckpt).plan(adapt={"classifier.bias": "overlap"})
    assert list(plan.adapted) == ["classifier.bias"]
    assert list(plan.skipped) == ["classifier.weight"]


class Embedder(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 4)
        self.out = nn.Linear(4, 2)


def test_overlap_adapter_grown_embedding_keeps_new_rows():
    old = Embedder(8)
    model = Embedder(12)
    initial = model.embed.weight.detach().clone()
    plan = sdw.compare(model, old.state_dict()).plan(adapt={"embed.weight": "overlap"})
    assert plan.adapted == {"embed.weight": "overlap"}
    sdw.partial_load(model, plan)
    w = model.embed.weight.detach()
    assert w.shape == (12, 4)
    assert torch.equal(w[:8], old.embed.weight)  # old rows from the checkpoint
    assert torch.equal(w[8:], initial[8:])  # new rows keep their initial values
    assert torch.equal(model.out.weight, old.out.weight)


def test_different_ndim_never_reshaped(ckpt):
    model = demo.make_model("cnn", seed=1)
    bad = collections.OrderedDict(ckpt)
    bad["classifier.weight"] = ckpt["classifier.weight"].reshape(10, 32, 1, 1)  # conv-shaped
    bad["backbone.stem.conv.weight"] = ckpt["backbone.stem.conv.weight"].reshape(16, 27)
    cmp = sdw.compare(model, bad)
    assert cmp["classifier.weight"].status == "shape_mismatch"
    assert not cmp["classifier.weight"].adaptable
    plan = cmp.plan(adapt="overlap")  # even when the adapter is asked for everywhere
    assert set(plan.skipped) == {"classifier.weight", "backbone.stem.conv.weight"}
    assert "cannot handle" in plan.skipped["classifier.weight"]
    assert "(10, 32, 1, 1)" in plan.skipped["classifier.weight"]
    without = cmp.plan()
    assert "different number of dimensions" in without.skipped["classifier.weight"]
    before = state(model)
    sdw.partial_load(model, plan)
    assert torch.equal(model.classifier.weight, before["classifier.weight"])
    assert torch.equal(model.backbone.stem.conv.weight, before["backbone.stem.conv.weight"])


def test_unknown_adapter_and_bn_policy_rejected(model, ckpt):
    cmp = sdw.compare(model, ckpt)
    with pytest.raises(ValueError, match="unknown adapter"):
        cmp.plan(adapt={"classifier.*": "bicubic"})
    with pytest.raises(ValueError, match="BatchNorm policy"):
        cmp.plan(bn="freeze")


# --------------------------------------------------------------------------------- BN policy


def _stir_bn(model: nn.Module) -> None:
    """Give the model's BN buffers non-default values of their own (a few training steps)."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(5)))


def test_bn_load_takes_checkpoint_statistics(model, ckpt):
    plan = sdw.compare(model, ckpt).plan(bn="load")
    sdw.partial_load(model, plan)
    bn = model.backbone.layer1[0].bn1
    assert torch.equal(bn.running_mean, ckpt["backbone.layer1.0.bn1.running_mean"])
    assert torch.equal(bn.running_var, ckpt["backbone.layer1.0.bn1.running_var"])
    assert int(bn.num_batches_tracked) == int(ckpt["backbone.layer1.0.bn1.num_batches_tracked"])
    assert int(bn.num_batches_tracked) != 0


def test_bn_keep_keeps_model_buffers(model, ckpt):
    _stir_bn(model)
    before = state(model)
    plan = sdw.compare(model, ckpt).plan(bn="keep")
    stats_keys = [k for k in ckpt if k.rpartition(".")[2] in BN_BUFFERS]
    assert len(stats_keys) == 18
    assert all("bn='keep'" in plan.skipped[k] for k in stats_keys)
    assert not any(k in plan for k in stats_keys)
    report = sdw.partial_load(model, plan)
    after = model.state_dict()
    for k in stats_keys:
        assert torch.equal(after[k], before[k]), k
    assert torch.equal(after["backbone.stem.bn.weight"], ckpt["backbone.stem.bn.weight"])
    assert set(report.untouched) == set(stats_keys)


def test_bn_reset_resets_touched_modules_only(model, ckpt):
    _stir_bn(model)
    before = state(model)
    plan = sdw.compare(model, ckpt).plan(include=["backbone.layer1", "classifier"], bn="reset")
    assert plan.bn_reset_modules == ["backbone.layer1.0.bn1", "backbone.layer1.0.bn2"]
    report = sdw.partial_load(model, plan)
    for name in plan.bn_reset_modules:
        bn = model.get_submodule(name)
        assert torch.equal(bn.running_mean, torch.zeros(16))
        assert torch.equal(bn.running_var, torch.ones(16))
        assert int(bn.num_batches_tracked) == 0
        # the affine parameters do come from the checkpoint
        assert torch.equal(bn.weight, ckpt[f"{name}.weight"])
        assert torch.equal(bn.bias, ckpt[f"{name}.bias"])
    # BN modules outside the selection keep what they had
    assert torch.equal(model.backbone.stem.bn.running_mean, before["backbone.stem.bn.running_mean"])
    assert report.bn_reset == plan.bn_reset_modules
    frame = report.to_frame().set_index("key")
    assert frame.loc["backbone.layer1.0.bn1.running_var", "action"] == "bn_reset"
    # and undo brings the model's own statistics back
    report.undo()
    assert_bit_identical(state(model), before)


# ------------------------------------------------------------------------------ state_dict()


def test_state_dict_exact_ordered_with_metadata(ckpt):
    model = demo.make_model("cnn", num_classes=3, seed=1)
    # checkpoint in a shuffled order: the plan still yields model order
    shuffled = collections.OrderedDict(reversed(list(ckpt.items())))
    shuffled._metadata = ckpt._metadata  # type: ignore[attr-defined]
    plan = sdw.compare(model, shuffled).plan(
        include=["classifier", "backbone.stem", "backbone.layer2.0.bn1"],
        exclude="*.num_batches_tracked",
        adapt={"classifier.weight": "overlap"},
    )
    sd = plan.state_dict()
    assert type(sd) is collections.OrderedDict
    expected = [k for k in model.state_dict() if k in set(plan.keys)]
    assert list(sd) == expected == plan.keys
    assert "classifier.bias" not in sd and "classifier.bias" in plan.skipped
    assert torch.equal(sd["classifier.weight"], ckpt["classifier.weight"][:3])
    assert torch.equal(sd["backbone.stem.conv.weight"], ckpt["backbone.stem.conv.weight"])
    assert sd._metadata == ckpt._metadata
    assert sd._metadata is not ckpt._metadata


def test_state_dict_metadata_fact6_pitfall(model, ckpt):
    """A filtered OrderedDict built by hand loses _metadata: BatchNorm takes the legacy path
    and silently fills num_batches_tracked in instead of reporting it missing."""
    plan = sdw.compare(model, ckpt).plan(exclude="*.num_batches_tracked")
    nbt = [k for k in model.state_dict() if k.endswith("num_batches_tracked")]
    hand = collections.OrderedDict((k, v) for k, v in ckpt.items() if k in plan)
    assert not hasattr(hand, "_metadata")
    missing = demo.make_model("cnn", seed=1).load_state_dict(hand, strict=False).missing_keys
    assert missing == []  # num_batches_tracked silently filled in: not reported
    sd = plan.state_dict()
    assert list(sd) == list(hand)
    result = demo.make_model("cnn", seed=1).load_state_dict(sd, strict=False)
    assert result.missing_keys == nbt  # reported, as with the full checkpoint


def test_state_dict_from_safetensors_uses_model_metadata(tmp_path, model, ckpt):
    """safetensors has no _metadata: the model's module versions keep BN out of the legacy path."""
    path = demo.save(ckpt, tmp_path / "w.safetensors", "safetensors")
    plan = sdw.compare(model, path).plan(exclude="*.num_batches_tracked")
    sd = plan.state_dict()
    assert sd._metadata["backbone.stem.bn"] == {"version": 2}
    result = demo.make_model("cnn", seed=1).load_state_dict(sd, strict=False)
    assert len(result.missing_keys) == 6


# ---------------------------------------------------------------------------------- to_code()


def _check_code_equivalent(model: nn.Module, plan, tmp_path: pathlib.Path, name: str) -> None:
    """Run plan.to_code() on a deepcopy of the pre-load model; compare with partial_load."""
    fresh = copy.deepcopy(model)
    code = plan.to_code()
    compile(code, name, "exec")
    imports = [line for line in code.splitlines() if line.startswith(("import ", "from "))]
    assert imports and not any("sd_widgets" in line for line in imports)  # self-contained
    sdw.partial_load(model, plan)
    module = import_code(code, tmp_path / f"{name}.py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # DCP: "torch.distributed is disabled"
        result = module.load_partial(fresh, module.read_checkpoint())
    assert not result.unexpected_keys
    assert_bit_identical(state(fresh), state(model))


def _renamed_file(tmp_path: pathlib.Path) -> pathlib.Path:
    sd = prefixed(demo.variant("renamed_layer"), "module.")
    path = tmp_path / "renamed.pt"
    torch.save(sd, path)
    return path


PLANS = {
    "subset": dict(include=["backbone.layer1", "*.bias"], exclude="backbone.layer1.0.bn2"),
    "renames": dict(renames=[("module.", ""), ("re:^fc\\.", "classifier.")]),
    "overlap": dict(adapt={"classifier.*": "overlap"}),
    "bn_reset": dict(include=["backbone.layer2", "classifier"], bn="reset"),
    "bn_keep": dict(bn="keep"),
    "fp16": dict(exclude="backbone.stem"),
}


@pytest.mark.parametrize("kind", list(PLANS))
def test_to_code_matches_partial_load(tmp_path, kind):
    if kind == "renames":
        path = _renamed_file(tmp_path)
    else:
        variant = "fp16" if kind == "fp16" else "identical"
        path = demo.write_checkpoint(tmp_path, variant, "torch")
    num_classes = 3 if kind == "overlap" else 10
    model = demo.make_model("cnn", num_classes=num_classes, seed=1)
    _stir_bn(model)
    model.eval()
    plan = sdw.compare(model, path).plan(**PLANS[kind])
    assert len(plan) > 0
    if kind == "fp16":
        assert plan.casts
    before = state(model)
    _check_code_equivalent(model, plan, tmp_path, kind)
    changed = [k for k, v in state(model).items() if not torch.equal(v, before[k])]
    assert changed  # the plan did change the model (so the comparison is meaningful)


@pytest.mark.parametrize(
    "fmt",
    [
        "torch",
        "torch_legacy",
        "lightning",
        "safetensors",
        "safetensors_sharded",
        "bin_sharded",
        "dcp",
    ],
)
def test_to_code_matches_partial_load_for_every_format(tmp_path, fmt, ckpt):
    path = demo.save(ckpt, tmp_path / f"ck-{fmt}", fmt)
    model = demo.make_model("cnn", num_classes=3, seed=1)
    renames = {"model.": ""} if fmt == "lightning" else None
    cmp = sdw.compare(model, path)
    if fmt == "lightning":
        assert cmp.checkpoint.source.key == "state_dict"  # nested: found automatically
    plan = cmp.plan(
        include=["backbone.layer2", "classifier"],
        renames=renames,
        bn="reset",
        adapt={"classifier.weight": "overlap"},
    )
    assert len(plan) == 10 and "classifier.bias" in plan.skipped
    code = plan.to_code()
    assert repr(str(path)) in code
    _check_code_equivalent(model, plan, tmp_path, f"fmt_{fmt}")
    assert torch.equal(model.classifier.weight, ckpt["classifier.weight"][:3])


def test_to_code_for_in_memory_state(model, ckpt, tmp_path):
    """An in-memory source has no file to read: the code says which object to pass (issue 10
    asks for that instead of a read_checkpoint() raising NotImplementedError)."""
    plan = sdw.compare(model, ckpt).plan(include="classifier")
    code = plan.to_code()
    assert "Pass the state dict you gave sd_widgets: load_partial(model, state_dict)" in code
    module = import_code(code, tmp_path / "mem.py")
    assert not hasattr(module, "read_checkpoint")
    fresh = copy.deepcopy(model)
    module.load_partial(fresh, ckpt)
    sdw.partial_load(model, plan)
    assert_bit_identical(state(fresh), state(model))


# ------------------------------------------------------------------------------------- views


def test_plan_views(ckpt):
    model = demo.make_model("cnn", num_classes=3, seed=1)
    plan = sdw.compare(model, demo.variant("fp16")).plan(exclude="backbone.layer2")
    summary = plan.summary()
    assert summary["load"] == len(plan) == len(plan.keys)
    assert summary["skip"] == len(plan.skipped) == 2  # the two classifier tensors
    assert plan.casts["backbone.stem.conv.weight"] == ("float16", "float32")
    assert plan.nbytes == sum(v.numel() * v.element_size() for v in plan.state_dict().values())
    frame = plan.to_frame()
    assert set(frame["action"]) == {"load", "skip"}
    assert frame.loc[frame.key == "classifier.weight", "reason"].item().startswith("shape")
    assert "LoadPlan" in repr(plan)


def test_bn_step_counter_is_not_loaded_without_its_running_statistics():
    """A resized BatchNorm: running_mean/var cannot load (shape), num_batches_tracked could.
    Loading the counter alone would pair the checkpoint's count with the model's own
    statistics (and with momentum=None weight every update by batches never seen)."""
    import collections

    from torch import nn

    src = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6))
    src.train()(torch.randn(8, 3))
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=None))
    plan = sdw.compare(model, src).plan()
    assert "1.num_batches_tracked" not in plan.entries
    assert "'running_mean' and 'running_var'" in plan.skipped["1.num_batches_tracked"]
    report = sdw.partial_load(model, plan)
    assert int(model[1].num_batches_tracked) == 0 and "1.num_batches_tracked" not in report.loaded
    # a partial selection inside one BatchNorm: the counter follows the statistics
    same = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6))
    only_mean = sdw.compare(same, src).plan(include=["1.running_mean", "1.num_batches_tracked"])
    assert list(only_mean.entries) == ["1.running_mean"]
    assert (
        "'running_var' of this BatchNorm is not loaded"
        in only_mean.skipped["1.num_batches_tracked"]
    )
    # when the statistics load, the counter loads with them
    full = sdw.compare(same, src).plan()
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked"} <= set(full.entries)
    assert isinstance(full.state_dict(), collections.OrderedDict)


def test_exported_code_loads_in_place_even_from_a_dict_once_loaded_with_assign():
    """A checkpoint dict that was once loaded with assign=True carries the assign flag in its
    _metadata; the exported code must still copy into the existing parameters."""
    ckpt = demo.variant("identical")
    with torch.device("meta"):
        demo.SmallCNN().load_state_dict(ckpt, assign=True)  # torch writes the flag into ckpt
    assert any("assign_to_params_buffers" in v for v in ckpt._metadata.values())
    model = demo.target_model("identical")
    params = dict(model.named_parameters())
    namespace: dict = {}
    exec(sdw.compare(model, ckpt).plan().to_code(), namespace)
    namespace["load_partial"](model, ckpt)
    assert all(p is params[k] for k, p in model.named_parameters())
    assert torch.equal(model.classifier.weight, ckpt["classifier.weight"])
    assert model.classifier.weight.data_ptr() != ckpt["classifier.weight"].data_ptr()


def test_module_selection_is_the_dotted_prefix_scan():
    """Selecting a module is every key starting with ``module + "."`` (looked up in an index
    built once), odd names included; a thousand module patterns cost no thousand scans."""
    keys = ["a.b.c", "a.bx", "a..b.c", ".x", "a.b.", "ab.c", "a.b.c.d", "z"]
    sd = {k: torch.zeros(1) for k in keys}
    cmp = sdw.compare(sd, dict(sd))  # checkpoint vs checkpoint: any key names
    for module in ["a", "a.b", "a.", "a..b", "", ".", "a.b.c", "ab"]:
        prefix = module.rstrip(".") + "." if module else ""
        expected = [module] if module in keys else [k for k in keys if k.startswith(prefix)]
        if expected:
            assert cmp.select(module) == expected, module
        else:
            with pytest.raises(KeyError):
                cmp.select(module)
    assert cmp.select(["a.b", "a"]) == cmp.select("a")  # overlapping patterns: each key once
    big = {f"block{i}.{j}.weight": torch.zeros(1) for i in range(2000) for j in range(3)}
    cmp = sdw.compare(big, dict(big))
    chosen = cmp.select([f"block{i}" for i in range(0, 2000, 2)])
    assert len(chosen) == 3000 and chosen[:3] == [
        "block0.0.weight",
        "block0.1.weight",
        "block0.2.weight",
    ]


def test_units_are_the_ones_the_rest_prints():
    """units.py holds the one numel / human_bytes / shape_text; the checkpoint prints bytes with
    it, and the texts are the ones the checkpoint's own format printed before it adopted it."""
    from sd_widgets import units
    from sd_widgets.checkpoint import open_checkpoint

    sizes = (0, 1, 999, 1000, 1536, 10**6 - 1, 2.5e9, 7e12, 3e15, -2048)
    assert [units.human_bytes(n) for n in sizes] == [
        "0 B",
        "1 B",
        "999 B",
        "1.0 KB",
        "1.5 KB",
        "1.0 MB",  # 999,999 B rounds to 1000.0 KB: the next unit says it
        "2.5 GB",
        "7.0 TB",
        "3000.0 TB",
        "-2.0 KB",
    ]
    assert units.human_bytes(81_200) == "81.2 KB"
    assert repr(open_checkpoint({"w": torch.zeros(20_300)})).endswith(", 81.2 KB>")
    assert units.numel((64, 3, 7, 7)) == 9408 and units.numel(()) == 1
    assert units.numel(torch.Size([0, 5])) == 0
    assert units.shape_text((10,)) == "(10,)" and units.shape_text(None) == "?"
    assert units.shape_text(torch.Size([3, 32])) == "(3, 32)"


# ------------------------------------------------------------------- one planning path


def test_a_key_list_in_any_order_plans_in_model_order_like_its_module_path():
    """The Explorer sends row keys; a script sends module paths or globs: one path plans both,
    in model order, with the same entries and reasons."""
    model = demo.make_model("cnn", num_classes=3, seed=1)
    cmp = sdw.compare(model, demo.variant("new_head"))
    by_module = cmp.plan(include="backbone.layer1", bn="reset", adapt="overlap")
    keys = cmp.select("backbone.layer1")
    shuffled = keys[1::2] + keys[::2]
    by_keys = cmp.plan(include=shuffled, bn="reset", adapt="overlap")
    assert list(by_keys.entries.items()) == list(by_module.entries.items())
    assert list(by_keys.skipped.items()) == list(by_module.skipped.items())
    assert by_keys.bn_reset_modules == by_module.bn_reset_modules != []
    head = cmp.plan(include=["classifier.bias", "classifier.weight"], adapt="overlap")
    assert list(head.entries) == ["classifier.weight", "classifier.bias"]
    assert head.adapted == {"classifier.weight": "overlap", "classifier.bias": "overlap"}
    with pytest.raises(KeyError, match="matches no key"):
        cmp.plan(include=["classifier.weight", "no.such.key"])
