"""Tests for ``partial_load`` and ``LoadReport``: transactional loads under injected faults,
in-place semantics, meta-device models, casts, tied weights, statistics, undo, and leaks."""

from __future__ import annotations

import collections
import gc
import os
import weakref

import pytest
import torch
from bitwise import assert_bit_identical, changed, state
from torch import nn

import sd_widgets as sdw
from sd_widgets import demo
from sd_widgets import transaction
from sd_widgets.plan import PlanEntry

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
        seen["stem_copied"] = torch.equal(model.backbone.stem.conv.weight, ckpt[
            "backbone.stem.conv.weight"])
        seen["bn_buffers_copied"] = torch.equal(
            model.backbone.layer1[0].bn1.running_var, ckpt["backbone.layer1.0.bn1.running_var"])
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


def test_post_hook_silently_changing_a_value_is_caught(model, ckpt):
    before = state(model)

    def sneaky(module, incompatible_keys):
        with torch.no_grad():
            module.weight.mul_(1.0001)

    model.backbone.layer1[0].conv2.register_load_state_dict_post_hook(sneaky)
    with pytest.raises(sdw.LoadError, match="differs from its checkpoint tensor") as info:
        sdw.partial_load(model, full_plan(model, ckpt))
    assert info.value.key == "backbone.layer1.0.conv2.weight"
    assert_bit_identical(state(model), before)
    # with verify=False the change goes through (the check above is what caught it)
    report = sdw.partial_load(model, full_plan(model, ckpt), verify=False)
    assert not torch.equal(model.backbone.layer1[0].conv2.weight,
                           ckpt["backbone.layer1.0.conv2.weight"])
    report.undo()
    assert_bit_identical(state(model), before)


def test_pre_hook_substituting_a_same_shaped_value_is_caught(model, ckpt):
    before = state(model)

    def substitute(module, sd, prefix, *rest):
        sd[prefix + "running_mean"] = sd[prefix + "running_mean"] + 1

    model.backbone.stem.bn.register_load_state_dict_pre_hook(substitute)
    with pytest.raises(sdw.LoadError, match=r"backbone\.stem\.bn\.running_mean"):
        sdw.partial_load(model, full_plan(model, ckpt))
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
    assert plan.keys == ["embed.weight", "proj.weight", "proj.bias"]
    assert "tied" in plan.skipped["lm_head.weight"]
    report = sdw.partial_load(model, plan)
    assert model.lm_head.weight is model.embed.weight is shared
    assert torch.equal(model.embed.weight, src["embed.weight"])
    assert report.tied == {"lm_head.weight": "embed.weight"}
    assert "lm_head.weight" not in report.untouched
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
    bn_stats = [k for k in plan.skipped if k.rpartition(".")[2] in
                ("running_mean", "running_var", "num_batches_tracked")]
    assert report.untouched == [k for k in model.state_dict()
                                if k in set(layer2) | set(bn_stats) | {"classifier.weight",
                                                                       "classifier.bias"}]
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
    for col in ("before_mean", "before_std", "before_min", "before_max", "before_l2",
                "before_zero_fraction", "before_nan_count", "before_inf_count",
                "after_mean", "after_std", "after_min", "after_max", "after_l2",
                "after_zero_fraction", "after_nan_count", "after_inf_count", "max_abs_change"):
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
    lazy = sdw.partial_load(model2, sdw.compare(model2, bad).plan(include="classifier"),
                            stats=False)
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


def test_undo_after_later_training_restores_pre_load_values(model, ckpt):
    before = state(model)
    report = sdw.partial_load(model, full_plan(model, ckpt))
    with torch.no_grad():
        model.classifier.weight.add_(1.0)  # the user trains on after the load
    report.undo()
    assert_bit_identical(state(model), before)


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
        refs.extend(weakref.ref(s.data) for s in saved if s.data is not None)
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
