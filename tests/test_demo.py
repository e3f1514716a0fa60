"""Tests for sd_widgets.demo: real models, checkpoint variants and files, checked with plain torch."""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import pickle
import re
import time
import warnings
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from bitwise import assert_bit_identical
from hostile import write_malicious_checkpoint
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

import sd_widgets
from sd_widgets import demo
from sd_widgets.demo.variants import _prefix_sd
from sd_widgets.statuses import BN_BUFFERS

# Importing TorchDynamo (torch.compile, and any torch.optim optimizer) emits these from torch.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)

# ------------------------------------------------------------------------------------ helpers


def copied_keys(before: Mapping[str, torch.Tensor], model: nn.Module) -> set[str]:
    """Keys whose tensor changed in ``model`` compared with the snapshot ``before``."""
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def read_dcp(directory: pathlib.Path) -> dict[str, torch.Tensor]:
    import torch.distributed.checkpoint as dcp

    md = dcp.FileSystemReader(str(directory)).read_metadata()
    target = {
        k: torch.empty(m.size, dtype=m.properties.dtype) for k, m in md.state_dict_metadata.items()
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(target, checkpoint_id=str(directory), no_dist=True)
    return target


# ------------------------------------------------------------------------------------- models


def test_models_are_small_fast_and_deterministic() -> None:
    for name in demo.MODELS:
        demo.make_model(name)  # warm up
        best = min(_timed(lambda n=name: demo.make_model(n)) for _ in range(3))
        assert best < 0.05, f"{name} took {best:.3f}s to build"
        a, b = demo.make_model(name, seed=3), demo.make_model(name, seed=3)
        assert_bit_identical(a.state_dict(), b.state_dict())
        c = demo.make_model(name, seed=4)
        assert any(
            not torch.equal(v, c.state_dict()[k])
            for k, v in a.state_dict().items()
            if v.is_floating_point() and "running" not in k
        )


def test_make_model_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    demo.make_model("cnn", seed=9)
    assert torch.equal(torch.rand(3), expected)


def _timed(fn: Any) -> float:
    """CPU seconds used by this process (robust to other processes hogging a shared CPU)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def test_cnn_structure_and_forward() -> None:
    model = demo.make_model("cnn")
    sd = model.state_dict()
    for key in (
        "backbone.stem.conv.weight",
        "backbone.stem.bn.running_mean",
        "backbone.layer1.0.conv1.weight",
        "backbone.layer1.0.bn2.num_batches_tracked",
        "backbone.layer2.0.downsample.0.weight",
        "backbone.layer2.0.downsample.1.running_var",
        "classifier.weight",
        "classifier.bias",
    ):
        assert key in sd, key
    assert sd["classifier.weight"].shape == (10, 32)
    assert {k.rsplit(".", 1)[1] for k in sd} >= set(BN_BUFFERS)
    x, _ = demo.synthetic_data(n=5)
    assert model(x).shape == (5, 10)
    assert demo.make_model("cnn", num_classes=3)(x).shape == (5, 3)


def test_mlp_structure_and_forward() -> None:
    model = demo.make_model("mlp")
    assert list(model.state_dict()) == [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
        "head.weight",
        "head.bias",
    ]
    x, _ = demo.synthetic_data(n=4, image=False)
    assert x.shape == (4, 20)
    assert model(x).shape == (4, 10)


def test_make_model_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown demo model"):
        demo.make_model("resnet50")


def test_synthetic_data() -> None:
    x, y = demo.synthetic_data(n=64, seed=1)
    assert x.shape == (64, 3, 16, 16) and x.dtype == torch.float32
    assert y.shape == (64,) and y.dtype == torch.int64 and int(y.max()) < 10
    x2, y2 = demo.synthetic_data(n=64, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = demo.synthetic_data(n=64, seed=2)
    assert not torch.equal(x, x3)
    xs, ys = demo.synthetic_data(n=64, seed=1, shift=2.0)
    assert torch.equal(ys, y)
    assert float(xs.mean() - x.mean()) > 1.5 and float(xs.std()) > 2 * float(x.std())
    xv, yv = demo.synthetic_data(n=8, num_classes=3, image=False)
    assert xv.shape == (8, 20) and int(yv.max()) < 3


def test_pretrained_is_fast_trained_and_deterministic() -> None:
    seed = 4242  # not used elsewhere, so the cache is cold
    elapsed = _timed(lambda: demo.pretrained("cnn", seed=seed))
    assert elapsed < 1.0, f"pretrained took {elapsed:.2f}s"
    model = demo.pretrained("cnn", seed=seed)
    again = demo.pretrained("cnn", seed=seed)
    assert model is not again
    assert_bit_identical(model.state_dict(), again.state_dict())
    assert not model.training

    fresh = demo.make_model("cnn", seed=seed)
    other = demo.make_model("cnn", seed=seed + 1)
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            assert not torch.equal(v, fresh.state_dict()[k]) or k.endswith("bias"), k
            assert not torch.equal(v, other.state_dict()[k]), k
    sd = model.state_dict()
    for prefix in ("backbone.stem.bn", "backbone.layer2.0.bn2"):
        mean, var = sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"]
        assert mean.abs().max() > 1e-3  # not the 0 of a fresh BatchNorm
        assert (var - 1).abs().max() > 1e-2  # not the 1 of a fresh BatchNorm
        assert int(sd[f"{prefix}.num_batches_tracked"]) == 30

    # It learned the synthetic task (held-out seed), a fresh model did not.
    x, y = demo.synthetic_data(n=256, seed=99)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.6
        assert (fresh.eval()(x).argmax(1) == y).float().mean() < 0.3


def test_pretrained_returns_independent_modules() -> None:
    a = demo.pretrained("mlp")
    with torch.no_grad():
        a.fc1.weight.zero_()
    b = demo.pretrained("mlp")
    assert b.fc1.weight.abs().sum() > 0


def test_tied_model() -> None:
    model = demo.tied_model()
    assert model.lm_head.weight is model.embed.weight
    sd = model.state_dict()
    assert {"embed.weight", "lm_head.weight"} <= set(sd)
    assert sd["embed.weight"].data_ptr() == sd["lm_head.weight"].data_ptr()
    assert len(list(model.parameters())) == len(sd) - 1
    assert model(torch.tensor([[1, 2, 3]])).shape == (1, 3, 50)


def test_non_persistent_buffer_model() -> None:
    model = demo.non_persistent_buffer_model()
    sd = model.state_dict()
    assert "scale" in sd and "mask" not in sd
    assert "mask" in dict(model.named_buffers())
    # Fact 4: a checkpoint entry for a non-persistent buffer is *unexpected*.
    sd_with_mask = collections.OrderedDict(sd, mask=torch.zeros(4, 4))
    sd_with_mask._metadata = sd._metadata  # type: ignore[attr-defined]
    result = model.load_state_dict(sd_with_mask, strict=False)
    assert result.unexpected_keys == ["mask"] and result.missing_keys == []
    del sd_with_mask["scale"]
    result = model.load_state_dict(sd_with_mask, strict=False)
    assert result.missing_keys == ["scale"]  # persistent buffers *are* reported missing


# ----------------------------------------------------------------------------------- variants


def test_variant_registry_and_docs() -> None:
    assert demo.VARIANTS == (
        "identical",
        "new_head",
        "resized_layer",
        "added_layer",
        "removed_layer",
        "renamed_layer",
        "dataparallel",
        "compiled",
        "lightning",
        "fp16",
        "no_bn_stats",
        "training",
        "ema",
    )
    for name in demo.VARIANTS:
        assert len(demo.variant_doc(name)) > 40
    text = demo.describe()
    assert all(name in text for name in demo.VARIANTS)
    assert "SmallCNN" in text and "MLP" in text
    with pytest.raises(ValueError, match="unknown variant"):
        demo.variant("nope")
    with pytest.raises(ValueError, match="BatchNorm"):
        demo.variant("no_bn_stats", base="mlp")
    assert "no_bn_stats" not in demo.variants_for("mlp")
    assert demo.variants_for("cnn") == demo.VARIANTS


def _flat(obj: Any, name: str) -> collections.OrderedDict[str, torch.Tensor]:
    return obj[demo.NESTED_VARIANTS[name]] if name in demo.NESTED_VARIANTS else obj


@pytest.mark.parametrize("base", demo.MODELS)
def test_metadata_preserved_on_every_state_dict(base: str) -> None:
    reference = demo.pretrained(base).state_dict()._metadata
    for name in demo.variants_for(base):
        obj = demo.variant(name, base=base)
        dicts = [obj["model"], obj["ema"]] if name == "ema" else [_flat(obj, name)]
        for sd in dicts:
            assert isinstance(sd, collections.OrderedDict), name
            meta = getattr(sd, "_metadata", None)
            assert meta is not None, name
            # every module path of the checkpoint has an entry, with BN at version 2
            modules = {k.rpartition(".")[0] for k in sd}
            assert modules <= set(meta), (name, modules - set(meta))
            if name in ("identical", "new_head", "fp16", "no_bn_stats", "training", "ema"):
                assert meta == reference, name
    # prefixed/renamed variants carry the transformed metadata
    if base == "cnn":
        assert demo.variant("dataparallel")._metadata["module.backbone.stem.bn"] == {"version": 2}
        assert demo.variant("compiled")._metadata["_orig_mod.backbone.stem.bn"] == {"version": 2}
        assert "fc" in demo.variant("renamed_layer")._metadata
        assert "classifier" not in demo.variant("renamed_layer")._metadata
        assert demo.variant("lightning")["state_dict"]._metadata["model.backbone.stem.bn"] == {
            "version": 2
        }


@pytest.mark.parametrize("base", demo.MODELS)
def test_identical_loads_strictly(base: str) -> None:
    ckpt = demo.variant("identical", base=base)
    model = demo.target_model("identical", base=base)
    result = model.load_state_dict(ckpt)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert_bit_identical(model.state_dict(), ckpt)
    assert_bit_identical(ckpt, demo.pretrained(base).state_dict())


@pytest.mark.parametrize("base", demo.MODELS)
def test_variants_are_deterministic_and_fresh(base: str) -> None:
    for name in ("identical", "fp16", "renamed_layer"):
        a, b = demo.variant(name, base=base), demo.variant(name, base=base)
        assert_bit_identical(a, b)
        first = next(iter(a))
        assert a[first].data_ptr() != b[first].data_ptr()  # callers may mutate freely
    other = demo.variant("identical", base=base, seed=1)
    assert not torch.equal(
        next(iter(other.values())), next(iter(demo.variant("identical", base=base).values()))
    )


@pytest.mark.parametrize(("base", "head"), [("cnn", "classifier"), ("mlp", "head")])
def test_new_head_raises_size_mismatch_even_non_strict(base: str, head: str) -> None:
    ckpt = demo.variant("new_head", base=base)
    assert ckpt[f"{head}.weight"].shape[0] == 10
    model = demo.target_model("new_head", base=base)
    assert model.state_dict()[f"{head}.weight"].shape[0] == 3
    before = snapshot(model)
    with pytest.raises(RuntimeError, match=re.escape(f"size mismatch for {head}.weight")) as info:
        model.load_state_dict(ckpt, strict=False)
    assert f"size mismatch for {head}.bias" in str(info.value)
    # Fact 2: not atomic -- everything else was already copied in place.
    changed = copied_keys(before, model)
    assert changed, "nothing copied?"
    assert not any(k.startswith(head + ".") for k in changed)
    for k in changed:
        assert torch.equal(model.state_dict()[k], ckpt[k])


def test_resized_layer_mismatches_exactly_that_layer() -> None:
    ckpt = demo.variant("resized_layer")
    model = demo.target_model("resized_layer")
    msd = model.state_dict()
    assert list(ckpt) == list(msd)
    mismatched = {k for k in ckpt if ckpt[k].shape != msd[k].shape}
    p = "backbone.layer2.0."
    assert mismatched == {
        p + "conv1.weight",
        p + "bn1.weight",
        p + "bn1.bias",
        p + "bn1.running_mean",
        p + "bn1.running_var",
        p + "conv2.weight",
    }
    assert ckpt[p + "conv1.weight"].shape == (48, 16, 3, 3)
    with pytest.raises(
        RuntimeError, match=re.escape("size mismatch for backbone.layer2.0.conv1.weight")
    ):
        model.load_state_dict(ckpt, strict=False)

    mlp = demo.variant("resized_layer", base="mlp")
    msd = demo.make_model("mlp").state_dict()
    assert {k for k in mlp if mlp[k].shape != msd[k].shape} == {
        "fc2.weight",
        "fc2.bias",
        "head.weight",
    }


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        (
            "cnn",
            {
                f"backbone.layer2.1.{m}.{t}"
                for m, ts in (
                    ("conv1", ("weight",)),
                    ("conv2", ("weight",)),
                    ("bn1", ("weight", "bias", *BN_BUFFERS)),
                    ("bn2", ("weight", "bias", *BN_BUFFERS)),
                )
                for t in ts
            },
        ),
        ("mlp", {"fc3.weight", "fc3.bias"}),
    ],
)
def test_added_layer_gives_unexpected_keys(base: str, expected: set[str]) -> None:
    ckpt = demo.variant("added_layer", base=base)
    model = demo.target_model("added_layer", base=base)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict(ckpt)
    model = demo.target_model("added_layer", base=base)
    result = model.load_state_dict(ckpt, strict=False)
    assert set(result.unexpected_keys) == expected
    assert result.missing_keys == []


@pytest.mark.parametrize("base", demo.MODELS)
def test_removed_layer_gives_missing_keys(base: str) -> None:
    ckpt = demo.variant("removed_layer", base=base)
    model = demo.target_model("removed_layer", base=base)
    missing_expected = set(model.state_dict()) - set(ckpt)
    if base == "cnn":
        assert missing_expected and all(
            k.startswith("backbone.layer1.0.") for k in missing_expected
        )
        assert "backbone.layer1.0.bn1.running_mean" in missing_expected  # buffers too
    else:
        assert missing_expected == {"fc2.weight", "fc2.bias"}
    before = snapshot(model)
    result = model.load_state_dict(ckpt, strict=False)
    assert result.unexpected_keys == []
    if base == "cnn":
        # The shallower model's _metadata has no entry for backbone.layer1.0.bn*, so BatchNorm
        # takes the legacy path (version None) and fills num_batches_tracked in silently from
        # the model itself: those two keys are *not* reported missing (fact 6, for real).
        nbt = {k for k in missing_expected if k.endswith("num_batches_tracked")}
        assert len(nbt) == 2
        assert set(result.missing_keys) == missing_expected - nbt
        assert not copied_keys(before, model) & missing_expected
    else:
        assert set(result.missing_keys) == missing_expected


@pytest.mark.parametrize(
    ("base", "old", "new"), [("cnn", "classifier", "fc"), ("mlp", "head", "output")]
)
def test_renamed_layer_loads_nothing_for_the_head(base: str, old: str, new: str) -> None:
    ckpt = demo.variant("renamed_layer", base=base)
    model = demo.target_model("renamed_layer", base=base)
    before = snapshot(model)
    result = model.load_state_dict(ckpt, strict=False)
    assert sorted(result.missing_keys) == [f"{old}.bias", f"{old}.weight"]
    assert sorted(result.unexpected_keys) == [f"{new}.bias", f"{new}.weight"]
    changed = copied_keys(before, model)
    assert not any(k.startswith(old + ".") for k in changed)  # matched by name, never by order
    assert torch.equal(ckpt[f"{new}.weight"], demo.variant("identical", base=base)[f"{old}.weight"])


@pytest.mark.parametrize(
    ("name", "prefix"), [("dataparallel", "module."), ("compiled", "_orig_mod.")]
)
def test_prefixed_variants(name: str, prefix: str) -> None:
    ckpt = demo.variant(name)
    assert ckpt and all(k.startswith(prefix) for k in ckpt)
    model = demo.target_model(name)
    result = model.load_state_dict(ckpt, strict=False)
    assert set(result.unexpected_keys) == set(ckpt)
    # Nothing matches, and no BatchNorm finds its _metadata entry under the unprefixed name,
    # so each takes the legacy path and num_batches_tracked is *not* reported missing.
    assert set(result.missing_keys) == {
        k for k in model.state_dict() if not k.endswith("num_batches_tracked")
    }
    consume_prefix_in_state_dict_if_present(ckpt, prefix)
    assert "" in ckpt._metadata and "backbone.stem.bn" in ckpt._metadata
    model.load_state_dict(ckpt)  # strict
    assert_bit_identical(model.state_dict(), demo.variant("identical"))


def test_hand_prefixing_matches_real_wrappers() -> None:
    # The torch.compile fallback and the Lightning wrapping of flat dicts prefix by hand;
    # they must produce what a real wrapper module produces, _metadata included.
    ident = demo.variant("identical")
    for name, prefix in (("compiled", "_orig_mod"), ("dataparallel", "module")):
        by_hand = _prefix_sd(ident, prefix)
        real = demo.variant(name)
        assert_bit_identical(by_hand, real)
        assert by_hand._metadata == real._metadata
        assert list(by_hand._metadata) == list(real._metadata)


def test_lightning_variant() -> None:
    ckpt = demo.variant("lightning")
    assert ckpt["pytorch-lightning_version"] == "2.4.0"
    assert isinstance(ckpt["epoch"], int) and isinstance(ckpt["global_step"], int)
    sd = ckpt["state_dict"]
    assert all(k.startswith("model.") for k in sd)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["momentum"] == 0.9
    consume_prefix_in_state_dict_if_present(sd, "model.")
    assert_bit_identical(sd, demo.variant("identical"))
    demo.target_model("lightning").load_state_dict(sd)


def test_fp16_variant_is_cast_silently() -> None:
    ckpt = demo.variant("fp16")
    ident = demo.variant("identical")
    for k, v in ckpt.items():
        if ident[k].is_floating_point():
            assert v.dtype == torch.float16, k
            assert torch.equal(v, ident[k].half())
        else:
            assert v.dtype == torch.int64 and torch.equal(v, ident[k])
    model = demo.target_model("fp16")
    model.load_state_dict(ckpt)  # Fact 7: no error, no warning
    assert model.classifier.weight.dtype == torch.float32
    assert torch.equal(model.classifier.weight, ckpt["classifier.weight"].float())


def test_no_bn_stats_reports_missing_buffers() -> None:
    ckpt = demo.variant("no_bn_stats")
    model = demo.target_model("no_bn_stats")
    expected = {k for k in model.state_dict() if k.rsplit(".", 1)[1] in BN_BUFFERS}
    assert len(expected) == 6 * 3  # six BatchNorms
    assert not expected & set(ckpt)
    result = model.load_state_dict(ckpt, strict=False)
    assert set(result.missing_keys) == expected
    assert result.unexpected_keys == []

    # Fact 6: without _metadata BatchNorm treats the dict as legacy and fills in
    # num_batches_tracked silently, so it is no longer reported missing.
    no_meta = collections.OrderedDict(ckpt)
    assert not hasattr(no_meta, "_metadata")
    result = demo.target_model("no_bn_stats").load_state_dict(no_meta, strict=False)
    assert set(result.missing_keys) == {k for k in expected if "num_batches" not in k}


def test_training_variant_has_real_optimizer_state() -> None:
    ckpt = demo.variant("training")
    assert ckpt["epoch"] == 3 and ckpt["loss"] == pytest.approx(0.42)
    # trained with the real torch.optim.SGD: bit-identical to the hand-written update
    assert_bit_identical(ckpt["model_state_dict"], demo.variant("identical"))
    opt_sd = ckpt["optimizer_state_dict"]
    model = demo.target_model("training")
    model.load_state_dict(ckpt["model_state_dict"])
    params = list(model.parameters())
    assert len(opt_sd["state"]) == len(params)
    for i, p in enumerate(params):
        assert opt_sd["state"][i]["momentum_buffer"].shape == p.shape
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.5)
    opt.load_state_dict(opt_sd)
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["lr"] == 0.05


def test_ema_variant() -> None:
    ckpt = demo.variant("ema")
    assert set(ckpt) == {"model", "ema"}
    raw, ema = ckpt["model"], ckpt["ema"]
    assert list(raw) == list(ema)
    assert_bit_identical(raw, demo.variant("identical"))
    differs = [k for k in raw if raw[k].is_floating_point() and not torch.equal(raw[k], ema[k])]
    assert len(differs) > len(raw) // 2
    assert torch.equal(
        raw["backbone.stem.bn.num_batches_tracked"], ema["backbone.stem.bn.num_batches_tracked"]
    )
    demo.target_model("ema").load_state_dict(ema)


def test_nested_variants_are_weights_only_loadable(tmp_path: pathlib.Path) -> None:
    for name in ("lightning", "training", "ema"):
        path = demo.write_checkpoint(tmp_path, name, "torch")
        obj = torch.load(path)  # weights_only=True by default
        inner = obj[demo.NESTED_VARIANTS[name]]
        assert_bit_identical(inner, demo.variant(name)[demo.NESTED_VARIANTS[name]])


# -------------------------------------------------------------------------------------- files


def test_all_formats_round_trip_bit_identical(tmp_path: pathlib.Path) -> None:
    source = demo.variant("identical")
    paths = demo.write_all_formats(tmp_path)
    assert set(paths) == set(demo.FORMATS)

    for fmt in ("torch", "torch_legacy"):
        loaded = torch.load(paths[fmt])
        assert_bit_identical(loaded, source)
        assert loaded._metadata == source._metadata
    assert paths["torch"].suffix == ".pt" and paths["torch_legacy"].suffix == ".pth"
    # mmap works on the zip format only
    assert_bit_identical(torch.load(paths["torch"], mmap=True), source)

    assert paths["safetensors"].suffix == ".safetensors"
    # safetensors stores keys sorted: order is not kept, contents are
    assert_bit_identical(load_file(paths["safetensors"]), source, ordered=False)
    with safe_open(paths["safetensors"], framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert list(f.get_slice("classifier.weight").get_shape()) == [10, 32]

    for fmt, index_name, reader in (
        ("safetensors_sharded", "model.safetensors.index.json", load_file),
        ("bin_sharded", "pytorch_model.bin.index.json", torch.load),
    ):
        index_path = paths[fmt]
        assert index_path.name == index_name
        index = json.loads(index_path.read_text())
        assert index["metadata"]["total_size"] == sum(
            v.numel() * v.element_size() for v in source.values()
        )
        assert set(index["weight_map"]) == set(source)
        files = sorted(set(index["weight_map"].values()))
        assert len(files) == 3
        assert files[0].endswith("-00001-of-00003." + files[0].rsplit(".", 1)[1])
        merged: dict[str, torch.Tensor] = {}
        for fname in files:
            part = reader(index_path.parent / fname)
            assert all(index["weight_map"][k] == fname for k in part)
            merged.update(part)
        assert_bit_identical({k: merged[k] for k in source}, source)

    import torch.distributed.checkpoint as dcp

    md = dcp.FileSystemReader(str(paths["dcp"])).read_metadata()
    assert set(md.state_dict_metadata) == set(source)
    assert list(md.state_dict_metadata["classifier.weight"].size) == [10, 32]
    loaded = read_dcp(paths["dcp"])
    assert_bit_identical({k: loaded[k] for k in source}, source)

    ckpt = torch.load(paths["lightning"])
    assert paths["lightning"].suffix == ".ckpt"
    assert ckpt["pytorch-lightning_version"] == "2.4.0"
    sd = ckpt["state_dict"]
    assert all(k.startswith("model.") for k in sd)
    consume_prefix_in_state_dict_if_present(sd, "model.")
    assert_bit_identical(sd, source)
    assert sd._metadata == source._metadata


def test_other_variants_round_trip(tmp_path: pathlib.Path) -> None:
    fp16 = demo.variant("fp16", base="mlp")
    path = demo.write_checkpoint(tmp_path, "fp16", "safetensors", base="mlp")
    assert_bit_identical(load_file(path), fp16, ordered=False)
    renamed = demo.variant("renamed_layer")
    path = demo.write_checkpoint(tmp_path, "renamed_layer", "torch_legacy")
    loaded = torch.load(path)
    assert_bit_identical(loaded, renamed)
    assert loaded._metadata == renamed._metadata
    with pytest.raises(ValueError, match="flat mapping"):
        demo.write_checkpoint(tmp_path, "training", "safetensors")
    with pytest.raises(ValueError, match="unknown format"):
        demo.write_checkpoint(tmp_path, "identical", "onnx")


def test_safetensors_handles_tied_weights(tmp_path: pathlib.Path) -> None:
    sd = demo.tied_model().state_dict()
    path = demo.save(sd, tmp_path / "tied.safetensors", "safetensors")
    loaded = load_file(path)
    assert_bit_identical(loaded, sd, ordered=False)
    assert loaded["embed.weight"].data_ptr() != loaded["lm_head.weight"].data_ptr()
    index = demo.save(sd, tmp_path / "tied_sharded", "safetensors_sharded", num_shards=2)
    assert len(set(json.loads(index.read_text())["weight_map"].values())) == 2
    # the caller's dict is untouched (still tied)
    assert sd["embed.weight"].data_ptr() == sd["lm_head.weight"].data_ptr()


# ------------------------------------------------------------------------------------- unsafe


def test_unsafe_namespace_checkpoint(tmp_path: pathlib.Path) -> None:
    path = demo.write_unsafe_checkpoint(tmp_path / "ns.pt", "namespace")
    with pytest.raises(pickle.UnpicklingError, match=re.escape("argparse.Namespace")):
        torch.load(path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == ["argparse.Namespace"]
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = torch.load(path)
    assert isinstance(obj["args"], argparse.Namespace)
    assert_bit_identical(obj["model_state_dict"], demo.variant("identical"))


def test_unsafe_malicious_checkpoint(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    path = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    assert not marker.exists()  # writing executes nothing
    with pytest.raises(pickle.UnpicklingError, match=re.escape("io.open")):
        torch.load(path)
    assert not marker.exists()  # weights-only refused before running anything
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == ["io.open"]
    assert not marker.exists()  # the static scan runs nothing either
    # The payload is real: an unsafe load runs it.
    obj = torch.load(path, weights_only=False)
    obj["callback"].close()
    assert marker.exists()


def test_demo_ships_no_code_running_payload(tmp_path: pathlib.Path) -> None:
    # The wheel must not ship an exploit generator: only the harmless Namespace kind is left.
    assert demo.UNSAFE_KINDS == ("namespace",)
    with pytest.raises(ValueError, match=r"unknown unsafe kind 'malicious'.*tests/hostile\.py"):
        demo.write_unsafe_checkpoint(tmp_path / "x.pt", "malicious")
    with pytest.raises(ValueError, match="unknown unsafe kind"):
        demo.write_unsafe_checkpoint(tmp_path / "x.pt", "nope")
    assert not (tmp_path / "x.pt").exists()
    package = pathlib.Path(sd_widgets.__file__).parent
    for source in package.rglob("*.py"):
        text = source.read_text()
        assert "def __reduce__" not in text, f"{source} defines a pickle payload"


def test_demo_package_is_split_by_role_and_self_contained() -> None:
    # models / training / variants / files, re-exported by the package; each module imports
    # only its siblings and the one vocabulary (sd_widgets.statuses), never the core or widgets
    import ast

    package = pathlib.Path(demo.__file__).parent
    assert {p.stem for p in package.glob("*.py")} == {
        "__init__",
        "models",
        "training",
        "variants",
        "files",
    }
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        relative = {
            "." * node.level + (node.module or "")
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level
        }
        assert relative <= {".models", ".training", ".variants", ".files", "..statuses"}, (
            source.name,
            relative,
        )
        absolute = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and not node.level and node.module
        }
        assert not absolute & {"sd_widgets", "ipywidgets", "anywidget", "pandas"}, source.name
    for name in demo.__all__:
        assert hasattr(demo, name), name
