"""The numbered facts of ``docs/pytorch-facts.md``, each as a paired experiment.

Every test first runs the *control*: what plain PyTorch does, asserted, so that a future torch
that changes behaviour fails here and the facts (and the notebooks that teach them) get revisited.
Then it asserts how sd_widgets handles the same situation, on sd_widgets' own objects.

Fact → tests

1. ``strict=False`` does not skip shape mismatches
   → ``test_fact01_strict_false_still_raises_on_shape_mismatch``
2. a failed load is not atomic
   → ``test_fact02_failed_plain_load_is_half_loaded_partial_load_rolls_back``,
   ``test_fact02_misfitting_plan_is_refused_before_anything_is_copied``
3. renamed layers load nothing under ``strict=False``
   → ``test_fact03_renamed_layer_loads_nothing_until_renamed``
4. ``_IncompatibleKeys`` mixes parameters and persistent buffers; non-persistent buffers
   → ``test_fact04_missing_keys_mix_params_and_buffers``,
   ``test_fact04_non_persistent_buffers_never_missing_and_unexpected_in_checkpoint``
5. buffers are loaded too; ``reset_running_stats()``
   → ``test_fact05_bn_buffers_are_loaded_and_the_three_bn_policies``
6. a hand-filtered dict drops ``_metadata``
   → ``test_fact06_hand_filtered_dict_loses_metadata_plan_keeps_it``
7. dtype is cast silently; ``assign=True`` takes the checkpoint's dtype
   → ``test_fact07_dtype_cast_is_silent_in_torch_and_reported_by_sd_widgets``
8. loads are in place
   → ``test_fact08_loads_are_in_place_and_an_earlier_optimizer_stays_valid``
9. meta-device models
   → ``test_fact09_meta_model_without_assign_copies_nothing``
10. weights-only ``torch.load`` refuses pickled objects
   → ``test_fact10_namespace_checkpoint_refused_and_named``,
   ``test_fact10_malicious_reduce_runs_only_with_trust``
11. device: ``map_location``; ``mmap=True`` maps instead of reading
   → ``test_fact11_cuda_saved_checkpoint_needs_map_location``,
   ``test_fact11_mmap_maps_the_file_and_compare_reads_no_tensor_data``
12. lazy reading: safetensors headers, DCP metadata
   → ``test_fact12_safetensors_header_only``, ``test_fact12_dcp_metadata_only``

Checkpoints come from :mod:`sd_widgets.demo` (small real models, deterministic "pretraining").
Related, more detailed tests live in test_load.py, test_plan.py, test_compare.py and
test_checkpoint.py; this file is the index of the facts.
"""

from __future__ import annotations

import argparse
import collections
import copy
import gc
import os
import pickle
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from bitwise import assert_bit_identical, state
from hostile import write_malicious_checkpoint
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import sd_widgets as sdw
from sd_widgets import demo

# Importing torch.optim pulls in TorchDynamo, which warns about this from torch.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)

NO_OP = "copying from a non-meta parameter in the checkpoint to a meta parameter"
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


# ------------------------------------------------------------------------------------ helpers


def changed(before: Mapping[str, torch.Tensor], model: nn.Module) -> set[str]:
    now = model.state_dict()
    return {k for k in before if not torch.equal(before[k], now[k])}


def bn_keys(model: nn.Module) -> list[str]:
    return [k for k in model.state_dict() if k.rpartition(".")[2] in BN_BUFFERS]


def no_op_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if NO_OP in str(w.message)]


@pytest.fixture(scope="module")
def ckpt() -> collections.OrderedDict[str, torch.Tensor]:
    """The pretrained SmallCNN state dict (10 classes, BN statistics after 30 steps)."""
    return demo.variant("identical")


# ------------------------------------------------------------------------- 1, 2: shape, atomicity


def test_fact01_strict_false_still_raises_on_shape_mismatch():
    ckpt10 = demo.variant("new_head")  # 10-class checkpoint
    model = demo.target_model("new_head")  # 3-class model
    # control: strict=False does not make torch skip the size mismatch
    with pytest.raises(RuntimeError, match=r"size mismatch for classifier\.weight"):
        copy.deepcopy(model).load_state_dict(ckpt10, strict=False)
    # sd_widgets: the mismatch is a status, the plan skips it with a reason, the load succeeds
    cmp = sdw.compare(model, ckpt10)
    assert cmp.keys("shape_mismatch") == ["classifier.weight", "classifier.bias"]
    assert cmp["classifier.weight"].ckpt_shape == (10, 32)
    assert cmp["classifier.weight"].model_shape == (3, 32)
    plan = cmp.plan()
    assert list(plan.skipped) == ["classifier.weight", "classifier.bias"]
    assert plan.skipped["classifier.weight"].startswith(
        "shape mismatch: checkpoint (10, 32) vs model (3, 32)"
    )
    head = model.classifier.weight.detach().clone()
    report = sdw.partial_load(model, plan)
    assert report.loaded == [k for k in ckpt10 if not k.startswith("classifier.")]
    assert list(report.skipped) == ["classifier.weight", "classifier.bias"]
    assert torch.equal(model.backbone.stem.conv.weight, ckpt10["backbone.stem.conv.weight"])
    assert torch.equal(model.classifier.weight, head)


def test_fact02_failed_plain_load_is_half_loaded_partial_load_rolls_back(ckpt):
    def explode(module, sd, prefix, *rest):
        raise ValueError("the classifier's load hook failed")

    # control: torch has copied every earlier tensor when the classifier's hook raises
    plain = demo.make_model("cnn", seed=1)
    before = state(plain)
    plain.classifier.register_load_state_dict_pre_hook(explode)
    with pytest.raises(ValueError, match="load hook failed"):
        plain.load_state_dict(ckpt)
    half = changed(before, plain)
    assert "backbone.stem.conv.weight" in half and "backbone.layer2.0.bn2.running_var" in half
    assert not half & {"classifier.weight", "classifier.bias"}
    # ... and the same with a genuine size mismatch under strict=False (fact 1)
    mismatched = demo.target_model("new_head")
    before = state(mismatched)
    with pytest.raises(RuntimeError, match="size mismatch"):
        mismatched.load_state_dict(ckpt, strict=False)
    assert len(changed(before, mismatched)) == len(ckpt) - 2  # all but the head were copied
    # sd_widgets: the same failure rolls every touched tensor back, bit for bit
    model = demo.make_model("cnn", seed=1)
    before = state(model)
    model.classifier.register_load_state_dict_pre_hook(explode)
    with pytest.raises(sdw.LoadError, match="rolled back") as info:
        sdw.partial_load(model, sdw.compare(model, ckpt).plan())
    assert isinstance(info.value.cause, ValueError)
    assert_bit_identical(state(model), before)


def test_fact02_misfitting_plan_is_refused_before_anything_is_copied(ckpt):
    plan = sdw.compare(demo.make_model("cnn", seed=1), ckpt).plan()  # made for a 10-class model
    model = demo.target_model("new_head")  # 3 classes: the head does not fit
    before = state(model)
    with pytest.raises(sdw.LoadError, match=r"do not fit the model.*Nothing was changed"):
        sdw.partial_load(model, plan)
    assert_bit_identical(state(model), before)


# ------------------------------------------------------------------------------------ 3: renames


def test_fact03_renamed_layer_loads_nothing_until_renamed():
    renamed = demo.variant("renamed_layer", base="mlp")  # head.* saved as output.*
    model = demo.make_model("mlp", seed=1)
    # same place in the order, other names
    assert list(renamed)[-2:] == ["output.weight", "output.bias"]
    assert list(model.state_dict())[-2:] == ["head.weight", "head.bias"]
    # control: matched by name, never by position: missing + unexpected, nothing copied
    probe = copy.deepcopy(model)
    result = probe.load_state_dict(renamed, strict=False)
    assert result.missing_keys == ["head.weight", "head.bias"]
    assert result.unexpected_keys == ["output.weight", "output.bias"]
    assert changed(state(model), probe) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    # sd_widgets: the same two statuses, a suggestion pairing them, and a plan that loads them
    cmp = sdw.compare(model, renamed)
    assert cmp.keys("missing") == ["head.weight", "head.bias"]
    assert cmp.keys("unexpected") == ["output.weight", "output.bias"]
    pairs = [(s.ckpt_key, s.model_key) for s in cmp.suggest_renames()]
    assert pairs == [("output.weight", "head.weight"), ("output.bias", "head.bias")]
    report = sdw.partial_load(model, cmp.plan(renames=cmp.suggest_renames()))
    assert report.loaded[-2:] == ["head.weight", "head.bias"] and not report.skipped
    assert torch.equal(model.head.weight, renamed["output.weight"])
    assert torch.equal(model.head.bias, renamed["output.bias"])


# ------------------------------------------------------------------ 4, 5: incompatible keys, BN


def test_fact04_missing_keys_mix_params_and_buffers():
    sd = demo.variant("no_bn_stats")  # every BN buffer removed, _metadata kept
    del sd["classifier.weight"]  # and one parameter
    model = demo.make_model("cnn", seed=1)
    buffers = bn_keys(model)
    # control: one flat list of keys, parameters and buffers mixed, nothing says which is which
    result = copy.deepcopy(model).load_state_dict(sd, strict=False)
    assert type(result).__name__ == "_IncompatibleKeys"
    assert result._fields == ("missing_keys", "unexpected_keys")
    assert set(result.missing_keys) == {"classifier.weight", *buffers}
    assert result.unexpected_keys == []
    # sd_widgets: two statuses and a kind
    cmp = sdw.compare(model, sd)
    assert cmp.keys("missing") == ["classifier.weight"]
    assert cmp.keys("missing_buffer") == buffers
    assert {cmp[k].kind for k in buffers} == {"buffer"} and cmp["classifier.weight"].kind == "param"
    frame = cmp.to_frame().set_index("key")
    assert frame.loc["backbone.stem.bn.running_mean", "status"] == "missing_buffer"
    assert set(cmp.keys(["missing", "missing_buffer"])) == set(result.missing_keys)


def test_fact04_non_persistent_buffers_never_missing_and_unexpected_in_checkpoint():
    model = demo.non_persistent_buffer_model()
    assert "mask" in dict(model.named_buffers()) and "mask" not in model.state_dict()
    # control: never missing; a checkpoint entry for it is unexpected (and not loaded)
    assert copy.deepcopy(model).load_state_dict({}, strict=False).missing_keys == [
        "scale",
        "fc.weight",
        "fc.bias",
    ]  # the module's own entries first, then its children
    with_mask = dict(model.state_dict(), mask=torch.zeros(4, 4))
    probe = copy.deepcopy(model)
    assert probe.load_state_dict(with_mask, strict=False).unexpected_keys == ["mask"]
    assert torch.equal(probe.mask, model.mask)
    # sd_widgets: no row for it on the model side; the checkpoint entry is "unexpected"
    assert "mask" not in sdw.compare(model, model.state_dict())
    cmp = sdw.compare(model, with_mask)
    assert cmp["mask"].status == "unexpected" and cmp["mask"].kind is None
    assert cmp.keys("missing") == cmp.keys("missing_buffer") == []
    plan = cmp.plan()
    assert plan.skipped == {"mask": "checkpoint key the model does not have"}
    mask = model.mask.clone()
    sdw.partial_load(model, plan)
    assert torch.equal(model.mask, mask)


def test_fact05_bn_buffers_are_loaded_and_the_three_bn_policies(ckpt):
    x, _ = demo.synthetic_data(n=32, seed=5)

    def fresh() -> nn.Module:
        m = demo.make_model("cnn", seed=1)
        m.train()(x)  # own running statistics: not the checkpoint's, not 0/1, one batch seen
        return m

    bn = "backbone.stem.bn"
    # control: a plain load overwrites the buffers; reset_running_stats() gives 0 / 1 / 0
    plain = fresh()
    plain.load_state_dict(ckpt)
    for b in BN_BUFFERS:
        assert torch.equal(plain.get_buffer(f"{bn}.{b}"), ckpt[f"{bn}.{b}"]), b
    assert int(ckpt[f"{bn}.num_batches_tracked"]) == 30
    plain.get_submodule(bn).reset_running_stats()
    assert torch.equal(plain.get_buffer(f"{bn}.running_mean"), torch.zeros(16))
    assert torch.equal(plain.get_buffer(f"{bn}.running_var"), torch.ones(16))
    assert int(plain.get_buffer(f"{bn}.num_batches_tracked")) == 0
    # sd_widgets: bn="load" | "keep" | "reset"; the parameters are loaded every time
    for policy in ("load", "keep", "reset"):
        model = fresh()
        own = state(model)
        report = sdw.partial_load(model, sdw.compare(model, ckpt).plan(bn=policy))
        now = model.state_dict()
        assert torch.equal(now[f"{bn}.weight"], ckpt[f"{bn}.weight"]), policy
        for key in bn_keys(model):
            leaf = key.rpartition(".")[2]
            if policy == "load":
                assert torch.equal(now[key], ckpt[key]), key
            elif policy == "keep":
                assert torch.equal(now[key], own[key]) and key in report.skipped, key
            else:
                expected = {"running_mean": 0, "running_var": 1, "num_batches_tracked": 0}[leaf]
                assert bool((now[key] == expected).all()), key
        if policy == "reset":
            assert report.bn_reset == [
                n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
            ]
            report.undo()
            assert_bit_identical(state(model), own)


# ------------------------------------------------------------------------------ 6: _metadata


def test_fact06_hand_filtered_dict_loses_metadata_plan_keeps_it(ckpt):
    model = demo.make_model("cnn", seed=1)
    nbt = [k for k in model.state_dict() if k.endswith(".num_batches_tracked")]
    assert len(nbt) == 6
    # control: the usual filtering idiom drops _metadata; BatchNorm then takes its legacy path
    hand = collections.OrderedDict((k, v) for k, v in ckpt.items() if k not in nbt)
    assert hasattr(ckpt, "_metadata") and not hasattr(hand, "_metadata")
    assert copy.deepcopy(model).load_state_dict(hand, strict=False).missing_keys == []
    copy.deepcopy(model).load_state_dict(hand, strict=True)  # not even strict notices
    faithful = collections.OrderedDict(hand)
    faithful._metadata = ckpt._metadata  # type: ignore[attr-defined]
    assert copy.deepcopy(model).load_state_dict(faithful, strict=False).missing_keys == nbt
    # sd_widgets: compare says what is absent; plan.state_dict() carries _metadata along
    assert sdw.compare(model, hand).keys("missing_buffer") == nbt
    plan = sdw.compare(model, ckpt).plan(exclude="*.num_batches_tracked")
    filtered = plan.state_dict()
    assert list(filtered) == list(hand)
    assert filtered._metadata == ckpt._metadata
    assert copy.deepcopy(model).load_state_dict(filtered, strict=False).missing_keys == nbt
    report = sdw.partial_load(model, plan)
    assert set(nbt) <= set(report.untouched)
    assert [k for r in report.incompatible for k in r.missing_keys if k in nbt] == nbt


# ------------------------------------------------------------------- 7, 8, 9: dtype, in place, meta


def test_fact07_dtype_cast_is_silent_in_torch_and_reported_by_sd_widgets():
    fp16 = demo.variant("fp16")
    floating = [k for k, v in fp16.items() if v.is_floating_point()]
    assert fp16["classifier.weight"].dtype == torch.float16
    # control: fp16 into fp32, not a word; assign=True takes the checkpoint's dtype and storage
    plain = demo.make_model("cnn", seed=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        plain.load_state_dict(fp16)
    assert record == []
    assert plain.classifier.weight.dtype == torch.float32
    assert torch.equal(plain.classifier.weight, fp16["classifier.weight"].float())
    assigned = demo.make_model("cnn", seed=1)
    assigned.load_state_dict(fp16, assign=True)
    assert assigned.classifier.weight.dtype == torch.float16
    assert assigned.classifier.weight.data_ptr() == fp16["classifier.weight"].data_ptr()
    # sd_widgets: a dtype_mismatch status, and the casts listed in the plan and the report
    model = demo.make_model("cnn", seed=1)
    cmp = sdw.compare(model, fp16)
    assert cmp.keys("dtype_mismatch") == floating
    assert cmp.keys("match") == [k for k in fp16 if k.endswith("num_batches_tracked")]
    row = cmp["classifier.weight"]
    assert (row.ckpt_dtype, row.model_dtype, row.loadable) == ("float16", "float32", True)
    report = sdw.partial_load(model, cmp.plan())
    assert report.casts == dict.fromkeys(floating, ("float16", "float32"))
    frame = report.to_frame().set_index("key")
    assert frame.loc["classifier.weight", "cast"] == "float16 → float32"
    assert model.classifier.weight.dtype == torch.float32
    assert torch.equal(model.classifier.weight, fp16["classifier.weight"].float())


def test_fact08_loads_are_in_place_and_an_earlier_optimizer_stays_valid(ckpt):
    def setup() -> tuple[nn.Module, dict[str, nn.Parameter], torch.optim.Optimizer]:
        m = demo.make_model("cnn", seed=1)
        return m, dict(m.named_parameters()), torch.optim.SGD(m.parameters(), lr=0.5)

    def step(opt: torch.optim.Optimizer) -> None:
        for p in opt.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        opt.step()

    # control: in place without assign (same objects, same storage) ...
    plain, params, opt = setup()
    ptrs = {k: p.data_ptr() for k, p in params.items()}
    plain.load_state_dict(ckpt)
    assert all(p is params[k] and p.data_ptr() == ptrs[k] for k, p in plain.named_parameters())
    step(opt)
    assert torch.equal(plain.classifier.weight, ckpt["classifier.weight"] - 0.5)
    # ... while assign=True swaps the objects: the earlier optimizer now steps orphans ...
    source = demo.variant("identical")  # a dict of its own: assign=True writes into it
    swapped, params, opt = setup()
    swapped.load_state_dict(source, assign=True)
    assert swapped.classifier.weight is not params["classifier.weight"]
    step(opt)
    assert torch.equal(swapped.classifier.weight, source["classifier.weight"])  # not stepped
    # ... and marks the dict's _metadata, so every later plain load from it assigns as well
    assert all(v["assign_to_params_buffers"] is True for v in source._metadata.values())
    later, params, _ = setup()
    later.load_state_dict(source)  # no assign=True here
    assert later.classifier.weight is not params["classifier.weight"]
    # sd_widgets: in place, like the plain load without assign — even from the marked dict
    for src in (ckpt, source):
        model, params, opt = setup()
        ptrs = {k: p.data_ptr() for k, p in params.items()}
        report = sdw.partial_load(model, sdw.compare(model, src).plan())
        assert report.assigned is False
        assert all(p is params[k] and p.data_ptr() == ptrs[k] for k, p in model.named_parameters())
        step(opt)
        assert torch.equal(model.classifier.weight, ckpt["classifier.weight"] - 0.5)
        plan_meta = sdw.compare(model, src).plan().state_dict()._metadata
        assert not any("assign_to_params_buffers" in v for v in plan_meta.values())


def test_fact09_meta_model_without_assign_copies_nothing(ckpt):
    with torch.device("meta"):
        plain = demo.SmallCNN()
    # control: one warning per tensor, nothing copied, yet "All keys matched successfully"
    with pytest.warns(UserWarning, match=NO_OP) as record:
        result = plain.load_state_dict(ckpt)
    assert len(no_op_warnings(record.list)) == len(ckpt) == 38
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert str(result) == "<All keys matched successfully>"
    assert all(v.is_meta for v in plain.state_dict().values())
    # control: with assign=True the checkpoint tensors become the parameters
    with torch.device("meta"):
        assigned = demo.SmallCNN()
    source = demo.variant("identical")  # not the shared fixture: assign=True marks the dict
    assigned.load_state_dict(source, assign=True)
    assert assigned.classifier.weight.data_ptr() == source["classifier.weight"].data_ptr()
    # sd_widgets: the meta model is detected, loaded with assign=True, and the report says so
    with torch.device("meta"):
        model = demo.SmallCNN()
    cmp = sdw.compare(model, ckpt)
    assert all(r.model_on_meta for r in cmp) and cmp.loads_cleanly
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report = sdw.partial_load(model, cmp.plan())
    assert no_op_warnings(record) == []
    assert report.assigned is True and "assign=True (meta device)" in repr(report)
    assert report.loaded == list(ckpt)
    assert not any(v.is_meta for v in model.state_dict().values())
    assert_bit_identical(state(model), ckpt)


# ------------------------------------------------------------------------------ 10: safety


def test_fact10_namespace_checkpoint_refused_and_named(tmp_path):
    path = demo.write_unsafe_checkpoint(tmp_path / "train.pt", "namespace")
    # control: torch.load is weights-only by default and names nothing in its refusal's type
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == ["argparse.Namespace"]
    with torch.serialization.safe_globals([argparse.Namespace]):  # the allow-list opt-in
        assert isinstance(torch.load(path)["args"], argparse.Namespace)
    # sd_widgets: a typed error naming the global and the opt-in; no silent fallback
    for attempt in (
        lambda: sdw.open_checkpoint(path),
        lambda: sdw.open_checkpoint(path, key="model_state_dict"),
        lambda: sdw.compare(demo.make_model(), path),
    ):
        with pytest.raises(sdw.UnsafeCheckpointError) as info:
            attempt()
        assert isinstance(info.value, sdw.CheckpointError)
        assert info.value.globals == ["argparse.Namespace"]
        assert "argparse.Namespace" in str(info.value) and "trust=True" in str(info.value)
    trusted = sdw.open_checkpoint(path, trust=True)
    assert trusted.source.trusted and trusted.source.other_entries["args"] == "Namespace"
    assert len(trusted) == 38


def test_fact10_malicious_reduce_runs_only_with_trust(tmp_path):
    marker = tmp_path / "PWNED"
    path = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    # control: the default torch.load refuses it without running it
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(path)
    assert not marker.exists()
    # sd_widgets: refused, named, nothing run — whichever way the file is reached
    for attempt in (
        lambda: sdw.open_checkpoint(path),
        lambda: sdw.open_checkpoint(tmp_path),
        lambda: sdw.compare(demo.make_model(), path),
        lambda: sdw.compare(path, demo.variant("identical")),
    ):
        with pytest.raises(sdw.UnsafeCheckpointError) as info:
            attempt()
        assert info.value.globals == ["io.open"] and "trust=True" in str(info.value)
        assert not marker.exists()
    # trust=True is the only way to unpickle it; then the payload really runs (it is live)
    ckpt = sdw.open_checkpoint(path, trust=True)
    assert marker.exists() and ckpt.source.key == "state_dict"


# ------------------------------------------------------------------------------ 11: device, mmap


def _cuda_tagged_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """Storages recorded as 'cuda:0', exactly as torch.save writes them on a GPU machine (the
    approach of test_checkpoint.test_cuda_saved_checkpoint_maps_to_cpu: there is no GPU)."""
    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(sd, path)
    return sd


def test_fact11_cuda_saved_checkpoint_needs_map_location(tmp_path, monkeypatch):
    path = tmp_path / "gpu.pt"
    sd = _cuda_tagged_file(path, monkeypatch)
    # control: refused on this CPU-only machine, mmap or not, until map_location is given
    for mmap in (False, True):
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, mmap=mmap)
        assert torch.equal(torch.load(path, mmap=mmap, map_location="cpu")["w"], sd["w"])
    # sd_widgets: map_location="cpu" is the default; without it the error says what to pass
    ckpt = sdw.open_checkpoint(path)
    assert ckpt.tensor("w").device.type == "cpu" and torch.equal(ckpt.tensor("w"), sd["w"])
    with pytest.raises(
        sdw.UnreadableCheckpointError, match=r"saved from a GPU.*map_location='cpu'"
    ):
        sdw.open_checkpoint(path, map_location=None)


_SMAPS = Path("/proc/self/smaps")


def mapping(path: Path) -> tuple[list[tuple[int, int]], int]:
    """Address ranges of ``path`` mapped into this process, and how many KiB of it are resident
    (Linux ``/proc/self/smaps``): a mapped page that was never read is not resident."""
    target = os.path.realpath(path)
    ranges: list[tuple[int, int]] = []
    resident = 0
    current = False
    for line in _SMAPS.read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:  # a mapping header
            current = len(parts) >= 6 and " ".join(parts[5:]) == target
            if current:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((lo, hi))
        elif current and parts and parts[0] == "Rss:":
            resident += int(parts[1])
    return ranges, resident


def inside(t: torch.Tensor, ranges: list[tuple[int, int]]) -> bool:
    return any(lo <= t.data_ptr() < hi for lo, hi in ranges)


class Wide(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Linear(2048, 2048)  # 16 MiB of float32
        self.small = nn.Linear(4, 4)


@pytest.mark.skipif(not _SMAPS.exists(), reason="needs Linux /proc/self/smaps")
def test_fact11_mmap_maps_the_file_and_compare_reads_no_tensor_data(tmp_path):
    source = Wide()
    mib16 = 16 * 1024  # KiB
    control, ours = tmp_path / "control.pt", tmp_path / "ours.pt"
    torch.save(source.state_dict(), control)
    shutil.copy(control, ours)
    # control: without mmap the file is read into memory (not mapped) ...
    loaded = torch.load(control)
    assert mapping(control) == ([], 0)
    del loaded
    # ... with mmap=True the tensors live in a mapping of the file, unread until used
    mapped = torch.load(control, mmap=True)
    ranges, resident = mapping(control)
    assert inside(mapped["big.weight"], ranges) and resident < 1024
    float(mapped["big.weight"].sum())
    assert mapping(control)[1] >= mib16
    del mapped
    gc.collect()
    # sd_widgets opens torch zip files with mmap=True; compare and plan read no tensor data
    model = Wide()
    ckpt = sdw.open_checkpoint(ours)
    cmp = sdw.compare(model, ckpt)
    plan = cmp.plan()
    ranges, resident = mapping(ours)
    assert cmp.loads_cleanly and resident < 1024
    assert inside(ckpt.tensor("big.weight"), ranges)
    sdw.partial_load(model, plan, stats=False)  # loading does read it
    assert mapping(ours)[1] >= mib16
    assert torch.equal(model.big.weight, source.big.weight)


# ------------------------------------------------------------------------- 12: lazy reading


@pytest.mark.skipif(not _SMAPS.exists(), reason="needs Linux /proc/self/smaps")
def test_fact12_safetensors_header_only(tmp_path):
    source = Wide()
    path = tmp_path / "w.safetensors"
    save_file(source.state_dict(), str(path))
    # control: safe_open's keys() and get_slice().get_shape() touch the header only
    with safe_open(str(path), framework="pt") as f:
        assert sorted(f.keys()) == sorted(source.state_dict())
        assert f.get_slice("big.weight").get_shape() == [2048, 2048]
        assert mapping(path)[1] < 1024
        data = f.get_tensor("big.weight")
        float(data.sum())
        assert mapping(path)[1] >= 16 * 1024  # reading data is visible in the same measure
    del data
    # sd_widgets: compare works on a checkpoint whose tensor data is gone (would fail if read)
    ckpt = sdw.open_checkpoint(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: 8 + int.from_bytes(raw[:8], "little")])  # keep only the header
    model = Wide()
    cmp = sdw.compare(model, ckpt)
    assert cmp.loads_cleanly and cmp["big.weight"].ckpt_shape == (2048, 2048)
    plan = cmp.plan()
    assert cmp.tree()["counts"] == {"match": 4}
    assert "big.weight" in plan.to_code()
    assert plan.nbytes == sum(v.nbytes for v in source.state_dict().values())
    before = state(model)
    with pytest.raises(sdw.LoadError, match=r"reading the planned tensors failed.*Nothing was"):
        sdw.partial_load(model, plan)
    assert_bit_identical(state(model), before)


def test_fact12_dcp_metadata_only(tmp_path, ckpt):
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    directory = demo.save(ckpt, tmp_path / "dcp", "dcp")
    for data in directory.glob("*.distcp"):
        data.unlink()  # only .metadata is left
    # control: read_metadata() gives every key's size and dtype without any tensor data
    meta = FileSystemReader(str(directory)).read_metadata().state_dict_metadata
    assert all(isinstance(m, TensorStorageMetadata) for m in meta.values())
    assert {k: (tuple(m.size), m.properties.dtype) for k, m in meta.items()} == {
        k: (tuple(v.shape), v.dtype) for k, v in ckpt.items()
    }
    # sd_widgets: open and compare from .metadata alone; loading needs the data and says so
    model = demo.target_model("new_head")
    cmp = sdw.compare(model, directory)
    assert cmp.checkpoint.source.kind == "dcp"
    assert cmp.keys("shape_mismatch") == ["classifier.weight", "classifier.bias"]
    assert cmp.summary()["match"] == len(ckpt) - 2
    before = state(model)
    with pytest.raises(sdw.LoadError, match="Nothing was changed"):
        sdw.partial_load(model, cmp.plan())
    assert_bit_identical(state(model), before)
