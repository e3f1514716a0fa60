"""Tests for ``partial_load`` and ``LoadReport``: transactional loads under injected faults,
in-place semantics, meta-device models, casts, tied weights, statistics, undo, and leaks."""

from __future__ import annotations

import collections
import gc
import os
import re
import weakref
from pathlib import Path

import pytest
import torch
from bitwise import assert_bit_identical, bits, changed, state
from torch import nn

import sd_widgets as sdw
from sd_widgets import demo
from sd_widgets.load import _transaction as transaction
from sd_widgets.plan._plan import PlanEntry

# Importing torch.optim pulls in TorchDynamo, which warns about this from torch.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)

# ------------------------------------------------------------------------------------ helpers


def full_plan(model: nn.Module, src) -> sdw.LoadPlan:
    return sdw.compare(model, src).plan()


# ------------------------------------------------------------------------- fault injection


@pytest.mark.parametrize("public", [True, False])
def test_raising_pre_hook_on_later_module_rolls_back_everything(model, ckpt, public):
    before = state(model)
    seen: dict[str, bool] = {}
    boom = ValueError("hook exploded")

    def hook(*args):
        # torch has already copied every earlier module's tensors when this runs
        seen["stem_copied"] = torch.equal(
            model.backbone.stem.conv.weight, ckpt["backbone.stem.conv.weight"]
        )
        seen["bn_buffers_copied"] = torch.equal(
            model.backbone.layer1[0].bn1.running_var, ckpt["backbone.layer1.0.bn1.running_var"]
        )
        raise boom

    if public:
        model.classifier.register_load_state_dict_pre_hook(hook)  # hook(module, sd, prefix, ...)
    else:
        model.classifier._register_load_state_dict_pre_hook(hook)  # hook(sd, prefix, ...)
    with pytest.raises(sdw.LoadError, match="rolled back") as info:
        sdw.partial_load(model, full_plan(model, ckpt))
    assert seen == {"stem_copied": True, "bn_buffers_copied": True}
    assert info.value.cause is boom
    assert info.value.__cause__ is boom
    assert_bit_identical(state(model), before)


def test_plain_load_with_the_same_hook_is_left_half_loaded(model, ckpt):
    """The control experiment: without sd_widgets the same fault leaves a half-loaded model."""
    before = state(model)

    def hook(module, sd, prefix, *rest):
        raise ValueError("hook exploded")

    model.classifier.register_load_state_dict_pre_hook(hook)
    with pytest.raises(ValueError):
        model.load_state_dict(ckpt)
    assert "backbone.stem.conv.weight" in changed(before, model)
    assert "classifier.weight" not in changed(before, model)


def test_hook_replacing_a_value_with_wrong_shape_after_validation(model, ckpt):
    before = state(model)

    def hook(module, sd, prefix, *rest):
        sd[prefix + "weight"] = torch.zeros(5, 5)  # passes our validation, fails torch's copy

    model.backbone.layer2[0].conv2.register_load_state_dict_pre_hook(hook)
    with pytest.raises(sdw.LoadError) as info:
        sdw.partial_load(model, full_plan(model, ckpt))
    assert isinstance(info.value.cause, RuntimeError)
    assert "size mismatch" in str(info.value.cause)
    assert info.value.key == "backbone.layer2.0.conv2.weight"
    assert_bit_identical(state(model), before)


def test_failing_copy_of_one_tensor_rolls_back(model, ckpt):
    """A parameter whose copy_ scribbles over it and then fails (patched on the instance)."""
    before = state(model)
    victim = model.backbone.layer2[0].conv1.weight
    ptr = victim.data_ptr()
    disk_error = OSError("disk on fire")

    def broken_copy(src, *args, **kwargs):
        torch.Tensor.copy_(victim, torch.full_like(victim, 7.0))  # half-written garbage
        raise disk_error

    victim.copy_ = broken_copy
    with pytest.raises(sdw.LoadError, match="rolled back") as info:
        sdw.partial_load(model, full_plan(model, ckpt))
    assert "disk on fire" in str(info.value.cause)
    assert info.value.key == "backbone.layer2.0.conv1.weight"
    assert_bit_identical(state(model), before)
    assert model.backbone.layer2[0].conv1.weight is victim and victim.data_ptr() == ptr


class StubbornParameter(nn.Parameter):
    """A Parameter subclass that refuses every copy_ (as some wrapped/quantised tensors do)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.copy_:
            raise RuntimeError("this tensor cannot be copied into")
        return super().__torch_function__(func, types, args, kwargs or {})


def test_tensor_subclass_whose_copy_fails_rolls_back(model, ckpt):
    model.classifier.weight = StubbornParameter(model.classifier.weight.detach().clone())
    before = state(model)
    with pytest.raises(sdw.LoadError, match="cannot be copied into"):
        sdw.partial_load(model, full_plan(model, ckpt))
    assert_bit_identical(state(model), before)
    assert type(model.classifier.weight) is StubbornParameter


def test_hooked_modules_load_as_plain_torch_loads_them_and_are_named(model, ckpt):
    """A module with load hooks is loaded by its own code, once: the result is what plain torch
    gives (here a post-hook that scales the weight and a pre-hook that shifts a buffer), the
    keys are named in ``report.transformed``, and undo restores. (Deliberate change: these hooks
    used to be refused as 'differs from its checkpoint tensor' unless transforms="any".)"""

    def scale(module, incompatible_keys):
        with torch.no_grad():
            module.weight.mul_(1.0001)

    def shift(module, sd, prefix, *rest):
        sd[prefix + "running_mean"] = sd[prefix + "running_mean"] + 1

    control = demo.make_model("cnn", seed=1)
    for m in (model, control):
        m.backbone.layer1[0].conv2.register_load_state_dict_post_hook(scale)
        m.backbone.stem.bn.register_load_state_dict_pre_hook(shift)
    control.load_state_dict(ckpt)
    before = state(model)
    report = sdw.partial_load(model, full_plan(model, ckpt))
    assert_bit_identical(state(model), state(control))
    assert "backbone.layer1.0.conv2.weight" in report.transformed
    assert "backbone.stem.bn.running_mean" in report.transformed
    assert "backbone.layer2.0.conv1.weight" not in report.transformed  # verified bit for bit
    report.undo()
    assert_bit_identical(state(model), before)


def test_hook_on_one_module_changing_another_modules_value_is_caught(model, ckpt):
    """Plain modules are verified bit for bit: a hook on one module that changes the loaded
    tensor of another, plain module is caught and rolled back."""
    before = state(model)

    def sneaky(module, incompatible_keys):
        if module is model.classifier:  # not the meta twin the comparison may load
            with torch.no_grad():
                model.backbone.stem.conv.weight.add_(1.0)  # a tensor of another, plain module

    model.classifier.register_load_state_dict_post_hook(sneaky)
    with pytest.raises(sdw.LoadError, match="differs from its checkpoint tensor") as info:
        sdw.partial_load(model, full_plan(model, ckpt))
    assert info.value.key == "backbone.stem.conv.weight"
    assert_bit_identical(state(model), before)
    # with verify=False the change goes through (the check above is what caught it)
    report = sdw.partial_load(model, full_plan(model, ckpt), verify=False)
    assert not torch.equal(model.backbone.stem.conv.weight, ckpt["backbone.stem.conv.weight"])
    report.undo()
    assert_bit_identical(state(model), before)


def test_keyboard_interrupt_in_hook_rolls_back_and_propagates(model, ckpt):
    before = state(model)

    def interrupt(module, sd, prefix, *rest):
        raise KeyboardInterrupt

    model.backbone.layer2.register_load_state_dict_pre_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        sdw.partial_load(model, full_plan(model, ckpt))
    assert_bit_identical(state(model), before)


def test_failure_after_assign_on_meta_puts_the_meta_tensors_back(ckpt):
    with torch.device("meta"):
        meta_model = demo.SmallCNN()
    ids = {k: id(v) for k, v in meta_model.state_dict(keep_vars=True).items()}

    def late_failure(module, incompatible_keys):
        raise RuntimeError("late failure")

    meta_model.classifier.register_load_state_dict_post_hook(late_failure)
    with pytest.raises(sdw.LoadError, match="late failure"):
        sdw.partial_load(meta_model, full_plan(meta_model, ckpt))
    after = meta_model.state_dict(keep_vars=True)
    assert all(v.is_meta for v in after.values())
    assert {k: id(v) for k, v in after.items()} == ids  # the original objects are back


def test_failure_after_bn_reset_restores_the_statistics(model, ckpt):
    model.train()(torch.randn(4, 3, 16, 16))  # give the BN buffers values of their own
    before = state(model)
    last_bn = model.backbone.layer2[0].downsample[1]
    original_reset = last_bn.reset_running_stats

    def reset_then_fail() -> None:
        original_reset()
        raise RuntimeError("reset failed half-way")

    last_bn.reset_running_stats = reset_then_fail
    plan = sdw.compare(model, ckpt).plan(bn="reset")
    assert plan.bn_reset_modules[-1] == "backbone.layer2.0.downsample.1"
    with pytest.raises(sdw.LoadError, match="reset failed half-way"):
        sdw.partial_load(model, plan)
    assert_bit_identical(state(model), before)


def test_unreadable_source_fails_before_touching_the_model(tmp_path, model, ckpt):
    path = demo.save(ckpt, tmp_path / "w.safetensors", "safetensors")
    plan = full_plan(model, path)
    path.write_bytes(b"\0" * 16)  # the file is replaced after planning
    before = state(model)
    with pytest.raises(sdw.LoadError, match="Nothing was changed") as info:
        sdw.partial_load(model, plan)
    assert info.value.cause is not None
    assert_bit_identical(state(model), before)


def test_plan_for_another_model_is_refused(ckpt):
    plan = full_plan(demo.make_model("cnn", seed=1), ckpt)
    other = demo.make_model("mlp", seed=1)
    before = state(other)
    with pytest.raises(sdw.LoadError, match="different model"):
        sdw.partial_load(other, plan)
    assert_bit_identical(state(other), before)
    with pytest.raises(TypeError, match="LoadPlan"):
        sdw.partial_load(other, ckpt)  # type: ignore[arg-type]
    diff = sdw.compare(ckpt, demo.variant("fp16")).plan()  # checkpoint vs checkpoint
    with pytest.raises(sdw.LoadError, match="two checkpoints"):
        sdw.partial_load(other, diff)


def test_a_checkpoint_or_comparison_in_place_of_a_plan_says_how_to_make_one(ckpt, tmp_path):
    """``partial_load(model, "ckpt.pt")`` is the first call many users try: the error says
    what to write instead, for a path, a state dict and a comparison."""
    model = demo.make_model("cnn", seed=1)
    before = state(model)
    path = tmp_path / "ckpt.pt"
    torch.save(ckpt, path)
    for given, expected in [
        (str(path), "got str: compare the checkpoint with the model and plan first"),
        (path, re.escape("sdw.partial_load(model, sdw.compare(model, checkpoint).plan())")),
        (ckpt, "got OrderedDict: compare the checkpoint"),
        (sdw.compare(model, ckpt), re.escape("got Comparison: make one with its .plan()")),
        (42, r"got int \(from sdw.compare"),
    ]:
        with pytest.raises(TypeError, match=expected):
            sdw.partial_load(model, given)  # type: ignore[arg-type]
    assert_bit_identical(state(model), before)


def test_a_model_built_under_inference_mode_loads_and_undoes_inside_it_and_is_refused_outside():
    """torch writes an inference tensor in place only inside ``torch.inference_mode()``: its
    own load outside half-loads the model and raises. partial_load and undo there refuse before
    touching anything (they used to fail inside their own checks), and work inside it; the
    Explorer opens on such a model and says why Load cannot run."""
    sd = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).state_dict()
    with torch.inference_mode():
        model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    with torch.inference_mode():
        before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = sdw.compare(model, sd).plan()
    with pytest.raises(sdw.LoadError, match=r"inference tensors .*Nothing was changed"):
        sdw.partial_load(model, plan)
    with torch.inference_mode():
        assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
        report = sdw.partial_load(model, plan)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    with pytest.raises(sdw.UndoError, match=r"inference tensors .*Nothing was restored"):
        report.undo()
    with pytest.raises(sdw.UndoError, match="inference tensors"):
        report.changed_since_load()
    with torch.inference_mode():
        assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
        report.undo()
        assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    w = sdw.Explorer(model, sd)
    w.handle_action({"action": "load"})
    assert w.message["level"] == "error" and "inference tensors" in w.message["text"]


# ------------------------------------------------------------------------- in place / meta


def test_load_is_in_place_and_optimizer_stays_valid(model, ckpt):
    params = dict(model.named_parameters())
    ptrs = {k: p.data_ptr() for k, p in params.items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    report = sdw.partial_load(model, full_plan(model, ckpt))
    assert report.assigned is False
    for k, p in model.named_parameters():
        assert p is params[k] and p.data_ptr() == ptrs[k], k
        assert torch.equal(p, ckpt[k])
    # a step of the optimizer built BEFORE the load moves the loaded weights
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    assert torch.equal(model.classifier.weight, ckpt["classifier.weight"] - 0.5)
    assert torch.equal(model.backbone.stem.conv.weight, ckpt["backbone.stem.conv.weight"] - 0.5)


def test_meta_model_is_loaded_with_assign(ckpt):
    with torch.device("meta"):
        meta_model = demo.SmallCNN()
    report = sdw.partial_load(meta_model, full_plan(meta_model, ckpt))
    assert report.assigned is True
    sd = meta_model.state_dict(keep_vars=True)
    assert not any(v.is_meta for v in sd.values())
    for k, p in meta_model.named_parameters():
        assert type(p) is nn.Parameter and p.requires_grad, k
        assert p.device.type == "cpu" and torch.equal(p, ckpt[k])
    assert torch.equal(sd["backbone.stem.bn.running_var"], ckpt["backbone.stem.bn.running_var"])
    # it runs
    meta_model.eval()(torch.zeros(1, 3, 16, 16))
    frame = report.to_frame().set_index("key")
    assert frame.loc["classifier.weight", "after_l2"] > 0
    report.undo()
    assert all(v.is_meta for v in meta_model.state_dict().values())


def test_assign_on_meta_does_not_leak_into_later_in_place_loads():
    """torch's load_state_dict(assign=True) writes ``assign_to_params_buffers`` into the
    ``_metadata`` dicts it is given; if those were the checkpoint's own, every later load from
    the same checkpoint would silently replace parameters instead of copying into them."""
    source = demo.variant("identical")
    with torch.device("meta"):
        meta_model = demo.SmallCNN()
    sdw.partial_load(meta_model, full_plan(meta_model, source))
    assert all("assign_to_params_buffers" not in v for v in source._metadata.values())
    real = demo.make_model("cnn", seed=3)
    params = dict(real.named_parameters())
    report = sdw.partial_load(real, full_plan(real, source))
    assert report.assigned is False
    assert all(p is params[k] for k, p in real.named_parameters())
    # and a user's own plain load of plan.state_dict() cannot poison the plan either
    plan = full_plan(real, source)
    filtered = plan.state_dict()
    with torch.device("meta"):
        other_meta = demo.SmallCNN()
    other_meta.load_state_dict(filtered, strict=False, assign=True)
    assert all("assign_to_params_buffers" not in v for v in plan.state_dict()._metadata.values())


def test_meta_model_partial_plan_leaves_the_rest_on_meta(ckpt):
    with torch.device("meta"):
        meta_model = demo.SmallCNN(num_classes=10)
    plan = sdw.compare(meta_model, demo.variant("fp16")).plan(include="classifier")
    report = sdw.partial_load(meta_model, plan)
    assert report.assigned and report.loaded == ["classifier.weight", "classifier.bias"]
    assert meta_model.classifier.weight.dtype == torch.float32  # model dtype kept
    assert torch.equal(meta_model.classifier.weight, ckpt["classifier.weight"].half().float())
    assert meta_model.backbone.stem.conv.weight.is_meta


def test_dtype_differences_are_cast_and_reported(model, ckpt):
    fp16 = demo.variant("fp16")
    ptr = model.classifier.weight.data_ptr()
    cmp = sdw.compare(model, fp16)
    assert cmp["classifier.weight"].status == "dtype_mismatch"
    assert cmp["backbone.stem.bn.num_batches_tracked"].status == "match"
    report = sdw.partial_load(model, cmp.plan())
    assert len(report.casts) == 32
    assert report.casts["classifier.weight"] == ("float16", "float32")
    assert "backbone.stem.bn.num_batches_tracked" not in report.casts
    assert model.classifier.weight.dtype == torch.float32
    assert model.classifier.weight.data_ptr() == ptr
    assert torch.equal(model.classifier.weight, fp16["classifier.weight"].float())
    frame = report.to_frame().set_index("key")
    assert frame.loc["classifier.weight", "cast"] == "float16 → float32"


def test_lossy_cast_is_refused_before_loading(model, ckpt):
    bad = collections.OrderedDict(ckpt)
    bad["backbone.stem.bn.num_batches_tracked"] = torch.tensor(2.5)  # float into int64 buffer
    before = state(model)
    plan = full_plan(model, bad)
    key = "backbone.stem.bn.num_batches_tracked"
    if key not in plan.entries:  # the plan already skips it; partial_load must refuse it too
        assert "whole number" in plan.skipped.pop(key)
        plan.entries[key] = PlanEntry(key, key, "match")
    with pytest.raises(sdw.LoadError, match="truncate"):
        sdw.partial_load(model, plan)
    assert_bit_identical(state(model), before)


def test_tied_weights_loaded_once_and_stay_tied():
    model = demo.tied_model(seed=0)
    src = demo.tied_model(seed=5).state_dict()
    shared = model.embed.weight
    plan = full_plan(model, src)
    (through,) = [k for k in ("embed.weight", "lm_head.weight") if k in plan.keys]
    (other,) = {"embed.weight", "lm_head.weight"} - {through}
    assert "tied" in plan.skipped[other]
    report = sdw.partial_load(model, plan)
    assert model.lm_head.weight is model.embed.weight is shared
    assert torch.equal(model.embed.weight, src[through])
    assert report.tied == {other: through}
    assert other not in report.untouched
    report.undo()
    assert model.lm_head.weight is model.embed.weight is shared


def test_tied_weights_stay_tied_on_meta():
    with torch.device("meta"):
        model = demo.TiedLM()
    src = demo.tied_model(seed=5).state_dict()
    report = sdw.partial_load(model, full_plan(model, src))
    assert report.assigned
    assert model.lm_head.weight is model.embed.weight
    assert not model.lm_head.weight.is_meta
    assert torch.equal(model.lm_head.weight, src["embed.weight"])
    model(torch.tensor([[1, 2, 3]]))


# ------------------------------------------------------------------------------ the report


def test_report_fields(ckpt):
    model = demo.make_model("cnn", num_classes=3, seed=1)
    plan = sdw.compare(model, ckpt).plan(exclude="backbone.layer2", bn="keep")
    report = sdw.partial_load(model, plan)
    assert report.loaded == plan.keys
    assert set(report.skipped) == set(plan.skipped)
    assert "shape mismatch" in report.skipped["classifier.weight"]
    layer2 = [k for k in model.state_dict() if k.startswith("backbone.layer2.")]
    bn_stats = [
        k
        for k in plan.skipped
        if k.rpartition(".")[2] in ("running_mean", "running_var", "num_batches_tracked")
    ]
    assert report.untouched == [
        k
        for k in model.state_dict()
        if k in set(layer2) | set(bn_stats) | {"classifier.weight", "classifier.bias"}
    ]
    assert report.casts == {}
    assert 0 < report.seconds < 30
    assert f"loaded {len(plan.keys)}" in repr(report) and len(plan.keys) == 9


def test_report_frame_before_after_statistics(model, ckpt):
    bad = collections.OrderedDict(ckpt)
    bias = ckpt["classifier.bias"].clone()
    bias[0], bias[1], bias[2] = float("nan"), float("inf"), 0.0
    bad["classifier.bias"] = bias
    before = state(model)
    report = sdw.partial_load(model, sdw.compare(model, bad).plan(include="classifier"))
    frame = report.to_frame().set_index("key")
    for col in (
        "before_mean",
        "before_std",
        "before_min",
        "before_max",
        "before_l2",
        "before_zero_fraction",
        "before_nan_count",
        "before_inf_count",
        "after_mean",
        "after_std",
        "after_min",
        "after_max",
        "after_l2",
        "after_zero_fraction",
        "after_nan_count",
        "after_inf_count",
        "max_abs_change",
    ):
        assert col in frame.columns, col
    w0, w1 = before["classifier.weight"].double(), ckpt["classifier.weight"].double()
    row = frame.loc["classifier.weight"]
    assert row["before_mean"] == pytest.approx(w0.mean().item(), rel=1e-6)
    assert row["after_std"] == pytest.approx(w1.std().item(), rel=1e-6)
    assert row["after_min"] == pytest.approx(w1.min().item())
    assert row["after_max"] == pytest.approx(w1.max().item())
    assert row["after_l2"] == pytest.approx(w1.norm().item(), rel=1e-6)
    assert row["max_abs_change"] == pytest.approx((w1 - w0).abs().max().item(), rel=1e-6)
    b = frame.loc["classifier.bias"]
    assert (b["after_nan_count"], b["after_inf_count"]) == (1, 1)
    assert (b["before_nan_count"], b["before_inf_count"]) == (0, 0)
    assert b["after_zero_fraction"] == pytest.approx(1 / 10)
    assert b["action"] == "load"
    assert list(frame.index) == ["classifier.weight", "classifier.bias"]
    # stats=False defers the same numbers to to_frame()
    model2 = demo.make_model("cnn", seed=1)
    lazy = sdw.partial_load(
        model2, sdw.compare(model2, bad).plan(include="classifier"), stats=False
    )
    assert lazy.to_frame().set_index("key")["after_l2"].equals(frame["after_l2"])


def test_report_histograms_and_bn(model, ckpt):
    report = sdw.partial_load(model, full_plan(model, ckpt))
    hist = report.histogram("classifier.weight", bins=20)
    assert hist.bins == 20
    assert report.bn_modules()[0] == "backbone.stem.bn"
    s = report.bn_stats()["backbone.stem.bn"]
    assert torch.equal(s["after_var"], ckpt["backbone.stem.bn.running_var"])
    assert torch.equal(s["before_var"], torch.ones(16))
    with pytest.raises(KeyError):
        report.histogram("no.such.key")


def test_undo_restores_exactly_once(model, ckpt):
    before = state(model)
    ptrs = {k: p.data_ptr() for k, p in model.named_parameters()}
    report = sdw.partial_load(model, full_plan(model, demo.variant("fp16")))
    assert changed(before, model)
    report.undo()
    assert report.undone
    assert_bit_identical(state(model), before)
    assert {k: p.data_ptr() for k, p in model.named_parameters()} == ptrs
    with pytest.raises(sdw.UndoError, match="already undone"):
        report.undo()
    with pytest.raises(sdw.UndoError):
        report.before()
    assert_bit_identical(state(model), before)
    assert "undone" in repr(report)


def test_undo_refuses_to_overwrite_later_training_unless_forced(model, ckpt):
    """Deliberate change: undo() used to overwrite work done after the load."""
    before = state(model)
    report = sdw.partial_load(model, full_plan(model, ckpt))
    loaded = state(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    opt.step()  # a training step: every parameter and the BN statistics move
    trained = state(model)
    with pytest.raises(sdw.UndoError, match="force=True") as info:
        report.undo()
    assert "classifier.weight" in info.value.changed
    assert "backbone.stem.bn.running_mean" in info.value.changed
    assert set(info.value.changed) <= set(report.after())
    assert_bit_identical(state(model), trained)  # nothing was restored
    assert not report.undone
    report.undo(force=True)
    assert_bit_identical(state(model), before)
    assert not changed(before, model) and changed(loaded, model)


def test_undo_refuses_after_a_single_in_place_edit(model, ckpt):
    report = sdw.partial_load(model, full_plan(model, ckpt))
    with torch.no_grad():
        model.backbone.layer2[0].conv1.weight[3, 2, 1, 0] += 1e-6  # one element, one ulp-ish
    with pytest.raises(sdw.UndoError) as info:
        report.undo()
    assert info.value.changed == ["backbone.layer2.0.conv1.weight"]
    assert report.changed_since_load() == ["backbone.layer2.0.conv1.weight"]
    with torch.no_grad():  # swapping two values of one tensor is a change too
        w = model.classifier.weight
        w[0, 0], w[5, 7] = w[5, 7].clone(), w[0, 0].clone()
    assert "classifier.weight" in report.changed_since_load()
    # a parameter replaced by another object is a change as well
    model.classifier.bias = nn.Parameter(model.classifier.bias.detach().clone())
    assert "classifier.bias" in report.changed_since_load()


def test_undo_sees_a_replaced_module_and_forced_undo_keeps_the_users_objects(model, ckpt):
    """A module replaced after the load is a change (restoring into the detached old module
    would report success and change nothing the model uses); a forced undo restores the
    values from before the load into the tensors the model holds now, keeping the user's
    objects, so an optimizer built on them still trains the model."""
    before = state(model)
    report = sdw.partial_load(model, full_plan(model, ckpt))
    old = model.classifier
    new_head = nn.Linear(old.in_features, old.out_features)
    model.classifier = new_head
    with pytest.raises(sdw.UndoError, match="force=True") as info:
        report.undo()
    assert {"classifier.weight", "classifier.bias"} <= set(info.value.changed)
    assert {"classifier.weight", "classifier.bias"} <= set(report.changed_since_load())
    bias = nn.Parameter(new_head.bias.detach().clone())  # a parameter replaced as well
    new_head.bias = bias
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    report.undo(force=True)
    assert report.undone
    assert model.classifier is new_head and new_head.bias is bias
    assert_bit_identical(state(model), before)
    # the optimizer's parameters are the model's: a step changes the model
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    opt.step()
    assert not torch.equal(new_head.bias, before["classifier.bias"])


def test_forced_undo_restores_into_a_replaced_module_even_an_empty_container():
    """The module found at a key's place is used whatever its truthiness: an empty
    ``nn.Sequential`` holding a parameter directly has ``len() == 0``."""

    def holder(value: float) -> nn.Sequential:
        seq = nn.Sequential()
        seq.register_parameter("w", nn.Parameter(torch.full((3,), value)))
        return seq

    model = nn.Module()
    model.block = holder(1.0)
    ckpt = {"block.w": torch.full((3,), 2.0)}
    report = sdw.partial_load(model, sdw.compare(model, ckpt).plan())
    model.block = fresh = holder(5.0)
    assert len(fresh) == 0 and "block.w" in report.changed_since_load()
    report.undo(force=True)
    assert model.block is fresh and torch.equal(fresh.w, torch.full((3,), 1.0))


def test_release_drops_the_undo_and_says_so(model, ckpt):
    report = sdw.partial_load(model, full_plan(model, ckpt))
    total = sum(s.data.nbytes for s in report._snapshot.items if s.data is not None)
    assert report.snapshot_nbytes == total > 0
    frame = report.to_frame()
    copies = [weakref.ref(s.data) for s in report._snapshot.items if s.data is not None]
    report.release()
    gc.collect()
    assert all(r() is None for r in copies)
    assert report.snapshot_nbytes == 0 and report.released and "released" in repr(report)
    with pytest.raises(sdw.UndoError, match="released"):
        report.undo()
    with pytest.raises(sdw.UndoError, match="released"):
        report.before()
    assert report.to_frame().equals(frame)  # statistics taken before stay
    report.release()  # twice: nothing


# ------------------------------------------------------------------------------------ leaks


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_repeated_load_undo_does_not_leak(ckpt):
    model = demo.make_model("cnn", seed=1)
    before = state(model)
    plan = full_plan(model, ckpt)

    def cycle() -> None:
        report = sdw.partial_load(model, plan)
        report.to_frame()
        report.undo()

    for _ in range(30):  # warm-up: allocator pools, lazy imports
        cycle()
    gc.collect()
    start = _rss()
    for _ in range(300):
        cycle()
    gc.collect()
    growth = _rss() - start
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB over 300 load/undo cycles"
    assert_bit_identical(state(model), before)


def test_snapshots_are_released_after_undo_and_report_deletion(model, ckpt):
    plan = full_plan(model, ckpt)
    report = sdw.partial_load(model, plan)
    copies = [weakref.ref(s.data) for s in report._snapshot.items if s.data is not None]
    assert len(copies) == 38
    report.undo()
    gc.collect()
    assert all(r() is None for r in copies)  # undo released the saved tensors
    # a report that is simply dropped frees its snapshot (no cycles keep it alive)
    report2 = sdw.partial_load(model, plan)
    copies2 = [weakref.ref(s.data) for s in report2._snapshot.items if s.data is not None]
    report_ref = weakref.ref(report2)
    del report2
    gc.collect()
    assert report_ref() is None
    assert all(r() is None for r in copies2)


def test_failed_loads_do_not_keep_snapshots(model, ckpt, monkeypatch):
    plan = full_plan(model, ckpt)
    refs: list[weakref.ref] = []
    orig = transaction.Snapshot.save

    def spy(self, *args, **kwargs):
        saved = orig(self, *args, **kwargs)
        if saved.data is not None:
            refs.append(weakref.ref(saved.data))
        return saved

    def hook(module, sd, prefix, *rest):
        raise ValueError("no")

    model.classifier.register_load_state_dict_pre_hook(hook)
    monkeypatch.setattr(transaction.Snapshot, "save", spy)
    for _ in range(5):
        with pytest.raises(sdw.LoadError):
            sdw.partial_load(model, plan)
    gc.collect()
    assert len(refs) == 5 * 38 and all(r() is None for r in refs)


# ------------------------------------------------------------- modules that transform loads


class Conv1D(nn.Module):
    """GPT-2-style projection that stores its weight as (in, out) and, through a load pre-hook
    of its own, accepts nn.Linear-format (out, in) checkpoints by transposing them."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n))
        self.bias = nn.Parameter(torch.randn(n))
        self.register_load_state_dict_pre_hook(self._from_linear_layout)

    def _from_linear_layout(self, module, state_dict, prefix, *rest) -> None:
        key = prefix + "weight"
        if key in state_dict:
            state_dict[key] = state_dict[key].t().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class HalfStep(nn.Linear):
    """A module whose class overrides ``_load_from_state_dict`` to convert a legacy format:
    checkpoints store twice the weight it keeps."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        key = prefix + "weight"
        if key in state_dict:
            state_dict[key] = state_dict[key] / 2
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _transforming(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 8), Conv1D(8), nn.ReLU(), HalfStep(8, 4))


def _linear_checkpoint(seed: int) -> collections.OrderedDict:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)).state_dict()


def test_modules_that_transform_what_they_load_are_verified_by_their_own_loading():
    src = _linear_checkpoint(5)
    control = _transforming(1)
    control.load_state_dict(src)  # plain torch loads it: transposed and halved
    assert torch.equal(control[1].weight, src["1.weight"].t())
    assert torch.equal(control[3].weight, src["3.weight"] / 2)
    model = _transforming(1)
    before = state(model)
    report = sdw.partial_load(model, full_plan(model, src))
    assert_bit_identical(state(model), state(control))  # what torch's own load gives
    assert set(report.transformed) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    assert all("own loading code" in how for how in report.transformed.values())
    assert "0.weight" not in report.transformed  # plain modules: checked against the checkpoint
    frame = report.to_frame().set_index("key")
    assert frame.loc["3.weight", "after_max"] == pytest.approx(float(src["3.weight"].max() / 2))
    report.undo()
    assert_bit_identical(state(model), before)


def test_a_transformed_load_that_fails_later_rolls_back_everything():
    src = _linear_checkpoint(5)
    model = _transforming(1)
    before = state(model)

    def late(module, incompatible):
        raise RuntimeError("late failure")

    model[3].register_load_state_dict_post_hook(late)
    with pytest.raises(sdw.LoadError, match="late failure"):
        sdw.partial_load(model, full_plan(model, src))
    assert_bit_identical(state(model), before)


class Counting(nn.Linear):
    """Counts every call of its own loading code (override, pre-hook, post-hook)."""

    def __init__(self) -> None:
        super().__init__(4, 4)
        self.calls = collections.Counter()
        self.register_load_state_dict_pre_hook(self._pre)
        self.register_load_state_dict_post_hook(self._post)

    def _pre(self, module, sd, prefix, *rest) -> None:
        self.calls["pre"] += 1

    def _post(self, module, incompatible) -> None:
        self.calls["post"] += 1

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.calls["override"] += 1
        super()._load_from_state_dict(*args, **kwargs)


def test_hooks_and_overrides_run_exactly_as_often_as_in_plain_torch():
    """Issue 17: verification never re-runs user code (it used to load a deep copy again)."""
    torch.manual_seed(0)
    src = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)).state_dict()
    plain, ours = (
        nn.Sequential(nn.Linear(4, 4), Counting()),
        nn.Sequential(nn.Linear(4, 4), Counting()),
    )
    root_calls = collections.Counter()
    ours.register_load_state_dict_post_hook(lambda m, k: root_calls.update(["root"]))
    plain.load_state_dict(src)
    plan = full_plan(ours, src)
    ours[1].calls.clear()  # whatever comparing did, it did to a twin or before the load
    root_calls.clear()
    report = sdw.partial_load(ours, plan)
    assert ours[1].calls == plain[1].calls == {"pre": 1, "post": 1, "override": 1}
    assert root_calls == {"root": 1}
    assert_bit_identical(state(ours), state(plain))
    report.to_frame()
    report.undo()
    assert ours[1].calls == {"pre": 1, "post": 1, "override": 1}  # undo runs no loading code


def test_chunked_and_one_call_loads_agree_bit_for_bit(ckpt):
    """The module-by-module path (no hooks anywhere) and torch's one load_state_dict call (a
    harmless post-hook forces it) give the same model, report and statistics."""
    fast, slow = demo.make_model("cnn", seed=1), demo.make_model("cnn", seed=1)
    slow.classifier.register_load_state_dict_post_hook(lambda module, keys: None)
    plan_fast = sdw.compare(fast, demo.variant("fp16")).plan()
    plan_slow = sdw.compare(slow, demo.variant("fp16")).plan()
    r_fast, r_slow = sdw.partial_load(fast, plan_fast), sdw.partial_load(slow, plan_slow)
    assert_bit_identical(state(fast), state(slow))
    assert r_fast.loaded == r_slow.loaded and r_fast.untouched == r_slow.untouched
    missing = [list(r.missing_keys) for r in r_fast.incompatible]
    assert missing == [list(r.missing_keys) for r in r_slow.incompatible]
    assert r_fast.to_frame().equals(r_slow.to_frame())


def test_incompatible_keys_are_what_load_state_dict_returns(model, ckpt):
    plan = sdw.compare(model, ckpt).plan(exclude=["backbone.layer2", "*.num_batches_tracked"])
    twin = demo.make_model("cnn", seed=1)
    expected = twin.load_state_dict(plan.state_dict(twin), strict=False)
    report = sdw.partial_load(model, plan)
    assert [list(r.missing_keys) for r in report.incompatible] == [list(expected.missing_keys)]
    assert all(r.unexpected_keys == [] for r in report.incompatible)


# ------------------------------------------------------------------ meta-device leftovers


def test_keys_left_on_meta_are_reported_by_key():
    with torch.device("meta"):
        meta_model = demo.SmallCNN(num_classes=10)
    src = collections.OrderedDict(demo.variant("identical"))
    del src["backbone.layer2.0.conv1.weight"]  # missing from the checkpoint
    report = sdw.partial_load(meta_model, sdw.compare(meta_model, src).plan())
    assert report.still_on_meta == ["backbone.layer2.0.conv1.weight"]
    assert meta_model.backbone.layer2[0].conv1.weight.is_meta
    reason = report.skipped["backbone.layer2.0.conv1.weight"]
    assert "initial)" not in reason and "current" not in reason and "meta device" in reason
    from sd_widgets.load._report import STILL_ON_META

    assert STILL_ON_META == "the model cannot run until these are initialised"
    assert "1 still on meta" in repr(report)
    with torch.device("meta"):
        fresh = demo.SmallCNN(num_classes=10)
    partial = sdw.partial_load(fresh, sdw.compare(fresh, src).plan(include="classifier"))
    assert "backbone.stem.conv.weight" in partial.still_on_meta
    assert "classifier.weight" not in partial.still_on_meta


# ------------------------------------------------------------------ snapshot on disk


@pytest.mark.parametrize("kind", ["disk", "auto"])
def test_disk_snapshot_rolls_back_and_undoes_bit_for_bit(model, ckpt, kind, tmp_path):
    budget = 0 if kind == "auto" else None
    before = state(model)
    report = sdw.partial_load(model, full_plan(model, ckpt), snapshot=kind, snapshot_budget=budget)
    assert report.snapshot == "disk"
    assert changed(before, model)
    assert report.to_frame()["before_l2"].notna().all()
    report.undo()
    assert_bit_identical(state(model), before)

    def boom(module, keys):
        raise RuntimeError("boom")

    model.classifier.register_load_state_dict_post_hook(boom)
    with pytest.raises(sdw.LoadError, match="rolled back"):
        sdw.partial_load(model, full_plan(model, ckpt), snapshot=kind, snapshot_budget=budget)
    assert_bit_identical(state(model), before)


def test_auto_snapshot_spills_to_disk_past_its_budget(model, ckpt):
    before = state(model)
    total = sum(v.nbytes for v in before.values())
    report = sdw.partial_load(
        model, full_plan(model, ckpt), snapshot="auto", snapshot_budget=total // 2
    )
    assert report.snapshot == "memory+disk"
    assert (
        0
        < report._snapshot.memory_bytes
        <= total // 2
        < total - report._snapshot.disk_bytes + total // 2
    )
    report.undo()
    assert_bit_identical(state(model), before)
    assert sdw.partial_load(model, full_plan(model, ckpt)).snapshot == "memory"
    with pytest.raises(ValueError, match="snapshot"):
        sdw.partial_load(model, full_plan(model, ckpt), snapshot="cloud")  # type: ignore[arg-type]


# ------------------------------------------------------------------ statistics later


def test_stats_false_then_compute_stats_gives_the_same_numbers(ckpt):
    a, b = demo.make_model("cnn", seed=1), demo.make_model("cnn", seed=1)
    eager = sdw.partial_load(a, full_plan(a, demo.variant("fp16")), stats=True)
    lazy = sdw.partial_load(b, full_plan(b, demo.variant("fp16")), stats=False)
    assert eager.stats_ready and not lazy.stats_ready
    lazy.compute_stats()
    assert lazy.stats_ready
    pd_eager, pd_lazy = eager.to_frame(), lazy.to_frame()
    assert list(pd_eager.columns) == list(pd_lazy.columns)
    assert pd_eager.equals(pd_lazy)


def _wide(seed: int) -> nn.Module:
    """Two Linear weights of 2**20 and 3 * 2**18 + 5 elements (whole 16 MB chunks, the second
    ending in a ragged tail) beside small tensors reduced in batches."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1024, 1024), nn.Linear(3 * 2**18 + 5, 1), nn.Linear(4, 4))


def test_statistics_of_large_chunks_are_exact_and_equal_later_ones():
    model, lazy_model = _wide(1), _wide(1)
    sd = _wide(2).state_dict()
    before = {k: t.detach().double().clone() for k, t in model.state_dict().items()}
    eager = sdw.partial_load(model, full_plan(model, sd), stats=True)
    lazy = sdw.partial_load(lazy_model, full_plan(lazy_model, sd), stats=False)
    lazy.compute_stats()
    frame = eager.to_frame().set_index("key")
    assert frame.equals(lazy.to_frame().set_index("key"))
    for key in ("0.weight", "1.weight"):
        b, a = before[key].reshape(-1), sd[key].double().reshape(-1)
        row = frame.loc[key]
        assert row["before_mean"] == pytest.approx(b.mean().item(), rel=1e-9, abs=1e-12)
        assert row["after_std"] == pytest.approx(a.std().item(), rel=1e-9)
        assert (row["after_min"], row["after_max"]) == (a.min().item(), a.max().item())
        assert row["max_abs_change"] == (a - b).abs().max().item()


# ------------------------------------------------------------------ the undo guard


def test_fingerprints_in_parts_on_threads_equal_one_pass(monkeypatch):
    """fingerprints() cuts large tensors into parts run on the call's threads while the small
    ones are fingerprinted in the calling thread: every value is the one-pass Fingerprint of
    the whole tensor, and a changed value or two swapped values change it."""
    g = torch.Generator().manual_seed(5)
    tensors = [
        torch.randn(300_001, generator=g),  # int32 words, a tail row
        torch.randn(70_000, generator=g).double(),
        torch.randint(0, 255, (70_003,), dtype=torch.uint8, generator=g),
        torch.randn(1000, generator=g).half()[1:],  # a view at an odd offset
        torch.empty(0),
        torch.empty(3, device="meta"),
        *[torch.randn(7, generator=g) for _ in range(50)],
    ]

    def one_pass(t: torch.Tensor) -> int | None:
        if t.is_meta:
            return None
        fp = transaction.Fingerprint()
        fp.add(transaction._as_words(t))
        return fp.value

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(transaction, "FINGERPRINT_PART_BYTES", 4096)
        monkeypatch.setattr(transaction, "FINGERPRINT_SPLIT_BYTES", 100_000)
        got = transaction.fingerprints(tensors)
        assert got == [one_pass(t) for t in tensors]
        assert [transaction.fingerprint(t) for t in tensors] == got
        big = tensors[0].clone()
        big[200_000] += 1.0
        assert transaction.fingerprint(big) != got[0]
        big = tensors[0].clone()
        big[[10, 250_000]] = big[[250_000, 10]]
        assert transaction.fingerprint(big) != got[0]
    finally:
        torch.set_num_threads(threads)


def test_a_fingerprint_in_halves_on_two_threads_is_the_one_pass_fingerprint():
    """The verification pass fingerprints each large chunk in two halves on two threads
    (``Fingerprint(halves=True)``): the value is the one-pass value for any start word and
    length, and a difference from the expected bytes in either half is found."""
    g = torch.Generator().manual_seed(9)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for n, start in ((2**20 + 3, 0), (2**19 + 1, 12_345), (1000, 7)):
            words = transaction._as_words(torch.randn(n, generator=g))
            plain, halves = (
                transaction.Fingerprint(start),
                transaction.Fingerprint(start, halves=True),
            )
            assert plain.add(words) and halves.add(words)
            assert halves.value == plain.value and halves.words == plain.words
            for at in (5, words.numel() - 5):  # the first half, then the second
                expected = words.clone()
                expected[at] += 1
                assert not transaction.Fingerprint(start, halves=True).add(words, expected)
        # the load's fingerprint is what undo's check computes later
        t = torch.randn(2**21 + 11, generator=g)
        fp = transaction.Fingerprint(halves=True)
        for chunk in transaction.chunks_of(transaction._as_words(t)):
            fp.add(chunk)
        assert fp.value == transaction.fingerprint(t)
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------ Ctrl-C anywhere


def _interrupt_targets():
    from sd_widgets.load import _report as report_module
    from sd_widgets.load import _stats as stats_module

    return [
        (transaction, "same"),
        (transaction.Snapshot, "save"),
        (transaction.Fingerprint, "add"),
        (transaction, "retie"),
        (transaction.Measures, "add_before"),
        (transaction.Measures, "add_after"),
        (stats_module.Moments, "add"),
        (stats_module.Change, "add"),
        (report_module, "measure_many"),
        (nn.Module, "_load_from_state_dict"),
        (nn.Module, "load_state_dict"),
        (torch.Tensor, "clone"),
    ]


@pytest.mark.parametrize("stats", [True, False])
def test_keyboard_interrupt_at_every_call_leaves_the_model_as_it_was(ckpt, monkeypatch, stats):
    """KeyboardInterrupt raised by the Nth call of any function partial_load uses (loading,
    snapshot, verification, statistics), for every N: the model is bit-identical afterwards."""
    model = demo.make_model("cnn", seed=1)
    with torch.device("meta"):
        meta_model = demo.SmallCNN(num_classes=3)
    cases = [
        (model, full_plan(model, ckpt)),
        (meta_model, sdw.compare(meta_model, ckpt).plan(include="backbone")),
    ]
    counter = {"n": 0, "at": -1}

    def wrap(fn):
        def wrapper(*args, **kwargs):
            counter["n"] += 1
            if counter["n"] == counter["at"]:
                raise KeyboardInterrupt
            return fn(*args, **kwargs)

        return wrapper

    for owner, name in _interrupt_targets():
        monkeypatch.setattr(owner, name, wrap(getattr(owner, name)))
    for target, plan in cases:
        before = {
            k: v.detach().clone() if not v.is_meta else v
            for k, v in target.state_dict(keep_vars=True).items()
        }
        ids = {k: id(v) for k, v in target.state_dict(keep_vars=True).items()}
        counter.update(n=0, at=-1)
        done = sdw.partial_load(target, plan, stats=stats)
        total = counter["n"]
        done.undo()
        assert total > 50
        for at in range(1, total + 1):
            counter.update(n=0, at=at)
            with pytest.raises(KeyboardInterrupt):
                sdw.partial_load(target, plan, stats=stats)
            now = target.state_dict(keep_vars=True)
            assert {k: id(v) for k, v in now.items()} == ids, at
            for k, v in before.items():
                if v.is_meta:
                    assert now[k].is_meta, (at, k)
                else:
                    assert torch.equal(bits(now[k]), bits(v)), (at, k)


def test_real_ctrl_c_at_any_line_leaves_the_model_as_it_was_or_returns_a_report(ckpt):
    """A real SIGINT delivered at the Nth line partial_load executes (any sd_widgets line: fit
    check, snapshot, loading, verification, statistics, report, rollback), for N spread over
    the whole run: either KeyboardInterrupt with the model bit-identical, or a report whose
    undo() restores it. Python's default SIGINT handler is in place, as in a script."""
    import signal
    import sys

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    package = os.path.dirname(sdw.__file__)
    model = demo.make_model("cnn", seed=1)
    plan = full_plan(model, demo.variant("fp16"))
    before = state(model)
    seen = {"n": 0, "at": -1}

    def tracer(frame, event, arg):
        if not frame.f_code.co_filename.startswith(package):
            return None
        if event == "line":
            seen["n"] += 1
            if seen["n"] == seen["at"]:
                signal.raise_signal(signal.SIGINT)
        return tracer

    def run(at: int):
        seen.update(n=0, at=at)
        sys.settrace(tracer)
        try:
            return sdw.partial_load(model, plan)
        finally:
            sys.settrace(None)

    run(-1).undo()
    total = seen["n"]
    assert total > 1000
    points = sorted(
        {*range(1, 25), *range(total - 60, total + 1), *range(1, total, max(1, total // 80))}
    )
    outcomes = collections.Counter()
    for at in points:
        try:
            report = run(at)
        except KeyboardInterrupt:
            outcomes["interrupted"] += 1
        else:
            outcomes["completed"] += 1
            report.undo()
        assert_bit_identical(state(model), before)
    assert outcomes["interrupted"] >= len(points) - 5, outcomes


# ------------------------------------------------- extra state, keys converted by modules


class WithExtra(nn.Module):
    """A module with extra state (a tensor, as Transformer Engine's FP8 scales, or any value)."""

    def __init__(self, value) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.value = value
        self.set_calls = 0

    def get_extra_state(self):
        return self.value

    def set_extra_state(self, state) -> None:
        self.set_calls += 1
        if isinstance(state, dict) and state.get("fail"):
            raise ValueError("refused this extra state")
        self.value = state.clone() if isinstance(state, torch.Tensor) else dict(state)


def test_tensor_extra_state_loads_through_set_extra_state_and_undoes():
    src = WithExtra(torch.arange(4.0)).state_dict()
    model = WithExtra(torch.zeros(4))
    plan = full_plan(model, src)
    assert "_extra_state" in plan.keys
    report = sdw.partial_load(model, plan)
    assert torch.equal(model.value, torch.arange(4.0)) and model.set_calls == 1
    assert "_extra_state" in report.transformed
    report.undo()
    assert torch.equal(model.value, torch.zeros(4)) and model.set_calls == 2


def test_any_extra_state_value_loads_and_rolls_back(monkeypatch):
    """Non-tensor extra state reaches set_extra_state as it is; a failure after it restores the
    previous value through set_extra_state too."""
    model = WithExtra({"step": 0})
    plan = sdw.compare(model, WithExtra({"step": 1}).lin.state_dict()).plan(renames={"": "lin."})
    planned = plan.state_dict

    def with_extra(value):
        def state_dict(model=None):
            out = planned(model)
            out["_extra_state"] = value
            return out

        return state_dict

    monkeypatch.setattr(plan, "state_dict", with_extra({"step": 7}))
    report = sdw.partial_load(model, plan)
    assert model.value == {"step": 7} and model.set_calls == 1
    report.undo()
    assert model.value == {"step": 0}
    before = state(model.lin)
    monkeypatch.setattr(plan, "state_dict", with_extra({"step": 9, "fail": True}))
    with pytest.raises(sdw.LoadError, match="refused this extra state"):
        sdw.partial_load(model, plan)
    assert model.value == {"step": 0}
    assert_bit_identical(state(model.lin), before)


def test_old_weight_norm_checkpoint_loads_as_torch_loads_it():
    """weight_g/weight_v into the parametrized weight_norm: the module's own pre-hook converts
    them, once; the result is torch's, and undo restores the parametrization's originals."""
    import warnings

    from torch.nn.utils import weight_norm as old_weight_norm
    from torch.nn.utils.parametrizations import weight_norm

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        src = nn.Sequential(old_weight_norm(nn.Conv1d(4, 4, 3))).state_dict()
    assert {"0.weight_g", "0.weight_v"} <= set(src)
    model = nn.Sequential(weight_norm(nn.Conv1d(4, 4, 3)))
    control = nn.Sequential(weight_norm(nn.Conv1d(4, 4, 3)))
    control.load_state_dict(src)
    before = state(model)
    report = sdw.partial_load(model, full_plan(model, src))
    assert_bit_identical(state(model), state(control))
    assert "0.parametrizations.weight.original0" in report.after()
    assert all(k.startswith("0.") for k in report.transformed)
    report.undo()
    assert_bit_identical(state(model), before)


# ------------------------------------------------------------------ memory comes back


def _rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no RssAnon here (not Linux)")


@pytest.mark.parametrize("stats", [False, True], ids=["stats=False", "stats=True"])
def test_undo_gives_the_snapshot_pages_back_to_the_system(stats):
    """48 tensors of 8 MB (below glibc's mmap threshold: the snapshot copies come from its
    heap, which keeps freed blocks): after each undo the process's anonymous memory is back
    where it was before the load, not one freed snapshot higher (it used to keep 16-248 MB of
    this 384 MB snapshot, and 1.9 GB of a GPT-2-XL-sized one)."""
    model = nn.Sequential(*[nn.Linear(1024, 2048, bias=False) for _ in range(48)])
    src = {k: v + 1 for k, v in model.state_dict().items()}
    plan = full_plan(model, src)
    for _ in range(4):
        gc.collect()
        start = _rss_anon()
        report = sdw.partial_load(model, plan, stats=stats)
        assert report.snapshot_nbytes >= 380 * 2**20
        report.undo()
        del report
        gc.collect()
        kept = _rss_anon() - start
        assert kept < 32 * 2**20, f"{kept / 2**20:.0f} MB of the 384 MB snapshot stayed resident"


def test_memory_comes_back_after_undo_and_dropping_the_report():
    """Four load/undo cycles of a ~200 MB model: RSS does not grow (no pool keeps snapshots)."""
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(2048, 2048) for _ in range(12)])  # 12 x 16 MB = 201 MB
    src = nn.Sequential(*[nn.Linear(2048, 2048) for _ in range(12)]).state_dict()
    plan = full_plan(model, src)
    before = state(model)

    copies: list[weakref.ref] = []

    def snapshot_refs(report: sdw.LoadReport) -> list[weakref.ref]:
        refs = [weakref.ref(t) for t in report.before().values()]
        assert len(refs) == len(plan)
        return refs

    def cycle() -> None:
        report = sdw.partial_load(model, plan, stats=False)
        assert report.snapshot_nbytes >= 190 * 2**20
        copies.extend(snapshot_refs(report))
        report.undo()

    cycle()
    gc.collect()
    start = proc.memory_info().rss
    for _ in range(4):
        cycle()
        gc.collect()
    # nothing keeps a snapshot once undone and dropped: every copy is gone
    assert copies and all(ref() is None for ref in copies)
    # and memory does not pile up over cycles: glibc may keep one freed snapshot's pages in its
    # heap for reuse (how much depends on what ran before in the process), a pool or a leak
    # keeps every one: 4 x 200 MB
    growth = proc.memory_info().rss - start
    assert growth < 300 * 2**20, f"RSS grew by {growth / 2**20:.0f} MB over 4 load/undo cycles"
    # a report dropped without undo frees its snapshot as well
    kept = sdw.partial_load(model, plan, stats=False)
    dropped = snapshot_refs(kept)
    del kept
    gc.collect()
    assert all(ref() is None for ref in dropped)
    assert_bit_identical(state(model), src)  # dropping a report keeps its load
    assert before.keys() == src.keys()
