"""A real-world corpus: real architectures, real files, checked against the peers' own truth.

transformers models from small configs (random init, no hub) saved with ``save_pretrained``
(single file, sharded index, fp16, bf16, tied embeddings), and a ResNet-152-sized CNN saved the
way DDP and torch.compile save it. For each: sd_widgets' statuses against torch's
``load_state_dict(strict=False)`` and transformers' ``from_pretrained(output_loading_info=True)``;
the suggested top rule and its name; and ``partial_load`` bit-identical to the peer's loader.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from bitwise import assert_bit_identical, bits, state
from realworld import (
    LPIPS_WHEEL,
    LPIPSHead,
    bert_config,
    build,
    from_pretrained,
    gpt2_config,
    llama_config,
    lpips_weights,
    resnet152,
    silently_filled,
    torch_verdict,
)
from safetensors.torch import load_file
from torch import nn

import sd_widgets as sdw
from sd_widgets.compare._renames import Rename
from sd_widgets.statuses import PROBLEM_STATUSES

transformers = pytest.importorskip("transformers")

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:transformers"),
    pytest.mark.filterwarnings("ignore::FutureWarning:transformers"),
    pytest.mark.filterwarnings("ignore::UserWarning:transformers"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated"),
]


def missing_keys(cmp: sdw.Comparison) -> set[str]:
    """What a plain strict load_state_dict lists as missing: missing rows and tied ones."""
    return set(cmp.keys(["missing", "missing_buffer", "tied"]))


def untied_missing(cmp: sdw.Comparison) -> set[str]:
    return set(cmp.keys(["missing", "missing_buffer"]))


def assert_loaded_like(model: nn.Module, peer: nn.Module, keys: list[str]) -> None:
    """Every loaded key is bit-identical to what the peer's own loader produced."""
    ours, theirs = model.state_dict(), peer.state_dict()
    assert keys
    for k in keys:
        assert ours[k].dtype == theirs[k].dtype and ours[k].shape == theirs[k].shape, k
        assert torch.equal(bits(ours[k]), bits(theirs[k])), k


# ------------------------------------------------------------------------------------ BERT


@pytest.fixture(scope="module")
def bert_dirs(tmp_path_factory) -> dict[str, Path]:
    from transformers import BertForSequenceClassification, BertModel

    root = tmp_path_factory.mktemp("bert")
    out = {}
    build(BertModel, bert_config(), 0).save_pretrained(out.setdefault("base", root / "base"))
    build(BertForSequenceClassification, bert_config(), 1).save_pretrained(
        out.setdefault("task", root / "task")
    )
    return out


def test_bert_base_checkpoint_into_a_classification_model(bert_dirs):
    from transformers import BertForSequenceClassification

    path = bert_dirs["base"] / "model.safetensors"
    model = build(BertForSequenceClassification, bert_config(), 2)
    cmp = sdw.compare(model, path)
    # before any rule: the same verdict as torch's own loader
    t_missing, t_unexpected = torch_verdict(model, load_file(path))
    assert missing_keys(cmp) == t_missing and set(cmp.keys("unexpected")) == t_unexpected
    # the top rule is the base-model prefix, named for what it is
    best = cmp.prefix_suggestions()[0]
    assert best.rule == Rename.add_prefix("bert.") and best.convention == "hf_base"
    assert "BertForSequenceClassification" in best.reason and "Lightning" not in best.reason
    assert best.fixes == len(load_file(path))
    # after it: the same verdict as transformers' from_pretrained
    peer, info = from_pretrained(BertForSequenceClassification, bert_dirs["base"])
    fixed = cmp.with_renames(best.rule)
    assert missing_keys(fixed) == info["missing"] == {"classifier.weight", "classifier.bias"}
    assert set(fixed.keys("unexpected")) == info["unexpected"] == set()
    assert set(fixed.keys("shape_mismatch")) == info["mismatched"] == set()
    report = sdw.partial_load(model, fixed.plan())
    assert set(report.loaded) == set(model.state_dict()) - info["missing"]
    assert_loaded_like(model, peer, report.loaded)


def test_bert_task_checkpoint_into_the_base_model(bert_dirs):
    from transformers import BertModel

    model = build(BertModel, bert_config(), 3)
    cmp = sdw.compare(model, bert_dirs["task"] / "model.safetensors")
    best = cmp.prefix_suggestions()[0]
    assert best.rule == Rename.strip_prefix("bert.") and best.convention == "hf_base"
    assert "base model BertModel" in best.reason
    peer, info = from_pretrained(BertModel, bert_dirs["task"])
    fixed = cmp.with_renames(best)
    assert (
        set(fixed.keys("unexpected"))
        == info["unexpected"]
        == {"classifier.weight", "classifier.bias"}
    )
    assert missing_keys(fixed) == info["missing"] == set()
    report = sdw.partial_load(model, fixed.plan())
    assert set(report.loaded) == set(model.state_dict())
    assert_loaded_like(model, peer, report.loaded)


def test_tensorflow_style_layernorm_names_are_one_rule(bert_dirs, tmp_path):
    from transformers import BertModel

    sd = load_file(bert_dirs["base"] / "model.safetensors")
    old = OrderedDict(
        (
            k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            ),
            v,
        )
        for k, v in sd.items()
    )
    renamed = sum(1 for k in old if k.endswith(("gamma", "beta")))
    assert renamed == 2 * (1 + 2 * 3)  # embeddings + attention and output of each layer
    model = build(BertModel, bert_config(), 4)
    cmp = sdw.compare(model, old)
    best = cmp.prefix_suggestions()[0]
    assert best.convention == "tf_names" and best.fixes == renamed
    assert best.rule == Rename.leaves({"gamma": "weight", "beta": "bias"})
    report = sdw.partial_load(model, cmp.with_renames(best).plan())
    assert set(report.loaded) == set(model.state_dict())
    assert_bit_identical(OrderedDict((k, model.state_dict()[k]) for k in sd), sd)


# ------------------------------------------------------------------------------------ GPT-2


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    from transformers import GPT2LMHeadModel

    d = tmp_path_factory.mktemp("gpt2")
    build(GPT2LMHeadModel, gpt2_config(), 0).save_pretrained(d)
    return d


def test_gpt2_tied_embeddings_are_reported_as_tied(gpt2_dir):
    from transformers import GPT2LMHeadModel

    file_keys = set(load_file(gpt2_dir / "model.safetensors"))
    assert "lm_head.weight" not in file_keys  # save_pretrained writes the tied tensor once
    model = build(GPT2LMHeadModel, gpt2_config(), 5)
    assert model.lm_head.weight is model.transformer.wte.weight
    cmp = sdw.compare(model, gpt2_dir / "model.safetensors")
    # torch calls it missing; transformers knows it is tied; sd_widgets says so
    t_missing, t_unexpected = torch_verdict(model, load_file(gpt2_dir / "model.safetensors"))
    assert missing_keys(cmp) == t_missing == {"lm_head.weight"} and not t_unexpected
    row = cmp["lm_head.weight"]
    assert row.status == "tied" and row.tied_to == "transformer.wte.weight"
    assert "initial" not in row.reason and "tied to 'transformer.wte.weight'" in row.reason
    assert "strict plain load_state_dict still lists it as missing" in row.reason
    assert not any(cmp.summary()[s] for s in PROBLEM_STATUSES)  # 0 problems
    frame = cmp.to_frame().set_index("key")
    assert frame.loc["lm_head.weight", "tied_to"] == "transformer.wte.weight"
    peer, info = from_pretrained(GPT2LMHeadModel, gpt2_dir)
    assert untied_missing(cmp) == info["missing"] == set()
    assert not cmp.prefix_suggestions()  # nothing to rename
    report = sdw.partial_load(model, cmp.plan())
    # every key — the tied lm_head.weight included — equals transformers' own load
    assert_loaded_like(model, peer, list(model.state_dict()))
    assert "lm_head.weight" not in report.loaded


def test_sharded_save_pretrained_index(gpt2_dir, tmp_path):
    from transformers import GPT2LMHeadModel

    peer0 = build(GPT2LMHeadModel, gpt2_config(), 0)
    peer0.save_pretrained(tmp_path, max_shard_size="60KB")
    index = tmp_path / "model.safetensors.index.json"
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert index.exists() and len(shards) >= 3
    model = build(GPT2LMHeadModel, gpt2_config(), 6)
    cmp = sdw.compare(model, index)
    assert len(cmp.checkpoint.source.files) == len(shards)
    assert cmp.summary()["match"] == len(model.state_dict()) - 1
    assert cmp["lm_head.weight"].tied_to == "transformer.wte.weight"
    peer, info = from_pretrained(GPT2LMHeadModel, tmp_path)
    assert untied_missing(cmp) == info["missing"] and not info["unexpected"]
    sdw.partial_load(model, cmp.plan())
    assert_loaded_like(model, peer, list(model.state_dict()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_saves_load_like_from_pretrained(bert_dirs, tmp_path, dtype):
    from transformers import BertModel

    half = build(BertModel, bert_config(), 0).to(dtype)
    half.save_pretrained(tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    assert {v.dtype for v in sd.values() if v.is_floating_point()} == {dtype}
    model = build(BertModel, bert_config(), 7)
    cmp = sdw.compare(model, tmp_path / "model.safetensors")
    floats = {k for k, v in sd.items() if v.is_floating_point()}
    assert set(cmp.keys("dtype_mismatch")) == floats
    assert all(cmp[k].ckpt_dtype == str(dtype).removeprefix("torch.") for k in floats)
    peer, info = from_pretrained(BertModel, tmp_path, dtype=torch.float32)
    assert next(peer.parameters()).dtype == torch.float32
    assert missing_keys(cmp) == info["missing"] and not info["unexpected"]
    report = sdw.partial_load(model, cmp.plan())
    assert set(report.loaded) == set(model.state_dict())
    assert_loaded_like(model, peer, report.loaded)  # the same cast, bit for bit


# ------------------------------------------------------- base checkpoints into a model with a head


def base_into_head(
    tmp_path: Path, base_cls: Any, head_cls: Any, config: Any, seed: int, prefix: str
) -> tuple[nn.Module, Any, sdw.Comparison, nn.Module, dict[str, set[str]]]:
    """A base model saved with ``save_pretrained``, compared with ``head_cls`` (the base under
    ``prefix`` plus a head): the top prefix rule is transformers' base-model convention, adding
    ``prefix``, and names ``head_cls``.  Returns (model, that suggestion, the comparison after it,
    and transformers' own ``from_pretrained`` model and loading info)."""
    build(base_cls, config, 0).save_pretrained(tmp_path)
    model = build(head_cls, config, seed)
    cmp = sdw.compare(model, tmp_path / "model.safetensors")
    best = cmp.prefix_suggestions()[0]
    assert best.rule == Rename.add_prefix(prefix) and best.convention == "hf_base"
    assert head_cls.__name__ in best.reason
    peer, info = from_pretrained(head_cls, tmp_path)
    return model, best, cmp.with_renames(best), peer, info


def test_llama_base_into_causal_lm_is_not_called_lightning(tmp_path):
    from transformers import LlamaForCausalLM, LlamaModel

    model, best, fixed, peer, info = base_into_head(
        tmp_path, LlamaModel, LlamaForCausalLM, llama_config(), 8, "model."
    )
    assert "Lightning" not in best.reason
    assert missing_keys(fixed) == info["missing"] == {"lm_head.weight"}
    assert fixed["lm_head.weight"].tied_to is None  # Llama does not tie by default
    assert set(fixed.keys("unexpected")) == info["unexpected"] == set()
    report = sdw.partial_load(model, fixed.plan())
    assert_loaded_like(model, peer, report.loaded)
    assert set(report.loaded) == set(model.state_dict()) - {"lm_head.weight"}


def test_gpt2_base_into_lm_head_model_adds_transformer_and_ties_the_head(tmp_path):
    from transformers import GPT2LMHeadModel, GPT2Model

    model, _best, fixed, peer, info = base_into_head(
        tmp_path, GPT2Model, GPT2LMHeadModel, gpt2_config(), 9, "transformer."
    )
    # lm_head.weight is absent from a base checkpoint, and tied to the embedding it loads
    assert fixed["lm_head.weight"].tied_to == "transformer.wte.weight"
    assert untied_missing(fixed) == info["missing"] == set()
    assert set(fixed.keys("unexpected")) == info["unexpected"] == set()
    sdw.partial_load(model, fixed.plan())
    assert_loaded_like(model, peer, list(model.state_dict()))


# ------------------------------------------------------------------------------------ ResNet-152


@pytest.fixture(scope="module")
def resnet_trained() -> nn.Module:
    return resnet152(0)


def test_resnet152_has_the_real_key_count(resnet_trained):
    keys = list(resnet_trained.state_dict())
    assert len(keys) == 932  # torchvision's resnet152 state dict has 932 keys
    assert keys[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert "layer3.35.bn3.running_var" in keys and keys[-1] == "fc.bias"


@pytest.mark.parametrize("wrapper", ["ddp", "compile"])
def test_resnet152_wrapper_checkpoint(resnet_trained, tmp_path, wrapper):
    if wrapper == "ddp":
        sd = nn.DataParallel(resnet_trained).state_dict()  # the prefix DDP writes too
        prefix, conv, origin = "module.", "ddp", "DistributedDataParallel"
    else:
        sd = torch.compile(resnet_trained).state_dict()  # lazy: keys without compiling
        prefix, conv, origin = "_orig_mod.", "compile", "torch.compile"
    assert all(k.startswith(prefix) for k in sd)
    path = tmp_path / "checkpoint.pt"
    torch.save(sd, path)
    model = resnet152(1)
    t0 = time.perf_counter()
    cmp = sdw.compare(model, path)
    rules = cmp.prefix_suggestions()
    pairs = cmp.suggest_renames()
    elapsed = time.perf_counter() - t0
    assert elapsed < 5, f"compare + suggestions on 932 prefixed keys took {elapsed:.2f} s"
    # the verdict of torch's own loader
    t_missing, t_unexpected = torch_verdict(model, sd)
    assert set(cmp.keys("unexpected")) == t_unexpected == set(sd)
    assert missing_keys(cmp) - t_missing == silently_filled(model, sd)
    assert t_missing <= missing_keys(cmp)
    # the right rule, named right, explaining every key
    best = rules[0]
    assert best.rule == Rename.strip_prefix(prefix) and best.convention == conv
    assert origin in best.reason and best.fixes == len(sd) == 932
    assert len(pairs) == 50 and all(p.model_key == p.ckpt_key[len(prefix) :] for p in pairs)
    # after it: torch's own prefix stripper and strict load agree, bit for bit
    fixed = cmp.with_renames(best)
    assert fixed.loads_cleanly and fixed.summary()["match"] == 932
    peer = resnet152(1)
    stripped = copy.copy(sd)
    torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(stripped, prefix)
    peer.load_state_dict(stripped, strict=True)
    report = sdw.partial_load(model, fixed.plan())
    assert len(report.loaded) == 932
    assert_bit_identical(state(model), state(peer))
    assert_bit_identical(state(model), state(resnet_trained))


def test_resnet152_ddp_checkpoint_into_a_meta_model(resnet_trained, tmp_path):
    sd = nn.DataParallel(resnet_trained).state_dict()
    with torch.device("meta"):
        model = resnet152(1, trained=False)
    cmp = sdw.compare(model, sd)
    row = cmp["fc.weight"]
    assert row.status == "missing" and "meta device" in row.reason
    assert "initial value" not in row.reason
    best = cmp.prefix_suggestions()[0]
    assert best.rule == Rename.strip_prefix("module.") and best.fixes == 932


# ------------------------------------------------------------------------------------ real files


@pytest.fixture(scope="module")
def lpips_dir(tmp_path_factory) -> Path:
    found = lpips_weights(tmp_path_factory.mktemp("lpips"))
    if found is None:
        pytest.skip(f"could not download the {LPIPS_WHEEL} wheel from the registry")
    return found


@pytest.mark.parametrize("net, version", [("alex", "v0.1"), ("vgg", "v0.1"), ("squeeze", "v0.0")])
def test_lpips_weights_shipped_in_a_wheel(lpips_dir, net, version):
    """Real pretrained files nobody here wrote: saved on CUDA, legacy format, and loaded by
    LPIPS itself with ``load_state_dict(torch.load(path, map_location='cpu'), strict=False)``
    into a model whose ``lins.K`` are the same modules as ``linK``."""
    path = lpips_dir / version / f"{net}.pth"
    ckpt = sdw.open_checkpoint(path)
    assert ckpt.source.kind == "torch-legacy"
    assert all(i.location == str(path) for i in ckpt.values())
    n = len(LPIPSHead.CHANNELS[net])
    assert sorted(ckpt) == sorted(f"lin{i}.model.1.weight" for i in range(n))
    model = LPIPSHead(net)
    cmp = sdw.compare(model, path)
    # torch's verdict: the lins.* copies and the scaling buffers are "missing"
    peer = LPIPSHead(net)
    result = peer.load_state_dict(
        torch.load(path, map_location="cpu", weights_only=True), strict=False
    )
    assert missing_keys(cmp) == set(result.missing_keys) and not result.unexpected_keys
    assert cmp.summary()["match"] == n
    # ... but lins.K is linK: the truthful row says it follows the file's key
    for i in range(n):
        row = cmp[f"lins.{i}.model.1.weight"]
        assert row.status == "tied" and row.tied_to == f"lin{i}.model.1.weight"
    assert untied_missing(cmp) == {"scaling_layer.shift", "scaling_layer.scale"}
    assert cmp["scaling_layer.shift"].status == "missing_buffer"
    report = sdw.partial_load(model, cmp.plan())
    assert sorted(report.loaded) == sorted(ckpt)
    assert_bit_identical(state(model), state(peer))
    assert torch.equal(model.lins[n - 1].model[1].weight, ckpt.tensor(f"lin{n - 1}.model.1.weight"))


def test_explorer_opens_a_prefixed_resnet152_without_quadratic_work(resnet_trained, tmp_path):
    path = tmp_path / "ddp.pt"
    torch.save(nn.DataParallel(resnet_trained).state_dict(), path)
    t0 = time.perf_counter()
    explorer = sdw.Explorer(resnet152(1), path)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10, f"Explorer() on a 932-key DDP checkpoint took {elapsed:.2f} s"
    cmp = explorer.comparison
    assert cmp is not None and cmp.summary()["unexpected"] == 932
    assert cmp.prefix_suggestions()[0].rule == Rename.strip_prefix("module.")
