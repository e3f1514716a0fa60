"""PEFT LoRA adapters (issue 19): recognised, paired with the weights they modify, merged.

The adapter files are written by PEFT's own ``save_pretrained`` on small transformers models
built from configs, and every merge is checked bit for bit against PEFT's own
``merge_and_unload`` on the same base weights.
"""

from __future__ import annotations

import copy
import inspect
import json
import textwrap

import pytest
import torch
from lora_models import GPT2_CONFIG, bert, gpt2, run_exported_load, write_adapter

import sd_widgets as sdw
from sd_widgets.compare._lora import merge_lora

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return [k for k in sa if not torch.equal(sa[k], sb[k])]


# ---------------------------------------------------------------------------------------- GPT-2


@pytest.fixture
def gpt2_adapter(tmp_path):
    base = gpt2()
    merged = write_adapter(
        base, tmp_path, r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True
    )
    return base, merged, tmp_path / "adapter_model.safetensors"


def test_a_lora_adapter_is_recognised_and_paired(gpt2_adapter):
    base, _, path = gpt2_adapter
    cmp = sdw.compare(base, path)
    lora = cmp.lora
    assert lora is not None
    assert (lora.rank, lora.alpha, lora.fan_in_fan_out) == (4, 8.0, True)
    assert lora.target_modules == ("c_attn", "c_proj")
    # every factor pair with the model weight it modifies (Conv1D: in x out, so B @ A transposed)
    pairs = {p.base_key: p for p in lora.pairs}
    assert sorted(pairs) == sorted(
        f"transformer.h.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_proj")
    )
    for key, p in pairs.items():
        assert p.a_key == f"base_model.model.{key[: -len('.weight')]}.lora_A.weight"
        assert p.b_key.endswith(".lora_B.weight") and p.problem is None and p.scale == 2.0
    text = lora.describe()
    assert "a LoRA adapter (rank 4, lora_alpha 8) for c_attn, c_proj" in text
    assert "6 factor pairs" in text and "holds no base weights" in text
    assert "plan(lora='merge')" in text
    # a plain checkpoint is no adapter
    assert sdw.compare(base, base.state_dict()).lora is None
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        sdw.compare(base, base.state_dict()).plan(lora="merge")


def test_merge_equals_peft_merge_and_unload_and_undo_restores(gpt2_adapter):
    base, merged, path = gpt2_adapter
    before = copy.deepcopy(base)
    plan = sdw.compare(base, path).plan(lora="merge")
    assert len(plan) == 6 and not plan.skipped
    assert set(plan.to_frame()["action"]) == {"merge"}
    report = sdw.partial_load(base, plan)
    assert sorted(report.loaded) == sorted(plan.lora)
    assert same_state(base, merged) == []  # bit for bit PEFT's merge
    notes = report.notes()
    assert notes["transformer.h.0.attn.c_attn.weight"] == ["LoRA merge: + 2 · B @ A (rank 4)"]
    assert set(report.to_frame()["action"]) == {"merge"}
    report.undo()
    assert same_state(base, before) == []  # W exactly as before


def test_merge_goes_into_the_current_weights(gpt2_adapter):
    base, _, path = gpt2_adapter
    with torch.no_grad():  # the model moved on since the adapter was trained (a fine-tune step)
        base.transformer.h[0].attn.c_attn.weight.add_(0.5)
    current = base.transformer.h[0].attn.c_attn.weight.detach().clone()
    cmp = sdw.compare(base, path)
    pair = next(p for p in cmp.lora.pairs if p.base_key == "transformer.h.0.attn.c_attn.weight")
    a, b = cmp.checkpoint.tensor(pair.a_key), cmp.checkpoint.tensor(pair.b_key)
    sdw.partial_load(base, cmp.plan(lora="merge"))
    expected = current + (b @ a).T * 2.0  # W + lora_alpha / r * (B @ A)^T
    assert torch.equal(base.transformer.h[0].attn.c_attn.weight.detach(), expected)


def test_include_chooses_the_weights_to_merge(gpt2_adapter):
    base, merged, path = gpt2_adapter
    plan = sdw.compare(base, path).plan(lora="merge", include="transformer.h.1")
    assert sorted(plan.lora) == [
        "transformer.h.1.attn.c_attn.weight",
        "transformer.h.1.attn.c_proj.weight",
        "transformer.h.1.mlp.c_proj.weight",
    ]
    sdw.partial_load(base, plan)
    assert torch.equal(
        base.transformer.h[1].mlp.c_proj.weight, merged.transformer.h[1].mlp.c_proj.weight
    )
    assert not torch.equal(
        base.transformer.h[0].mlp.c_proj.weight, merged.transformer.h[0].mlp.c_proj.weight
    )


def test_exported_merge_runs_without_sd_widgets(gpt2_adapter, tmp_path):
    base, merged, path = gpt2_adapter
    code = sdw.compare(base, path).plan(lora="merge").to_code()
    assert "def merge_lora(" in code and "LORA = [" in code
    assert "W + scale * (B @ A)" in code
    build = f"""
        from transformers import GPT2Config, GPT2LMHeadModel
        model = GPT2LMHeadModel(GPT2Config(**{GPT2_CONFIG!r}))
    """
    out = run_exported_load(code, base, build, tmp_path)
    for k, v in merged.state_dict().items():
        assert torch.equal(out[k], v), k


# ----------------------------------------------------------------------------------------- BERT


def test_bert_linear_with_rslora_and_patterns(tmp_path):
    base = bert()
    merged = write_adapter(
        base,
        tmp_path,
        r=4,
        lora_alpha=16,
        target_modules=["query", "value", "dense"],
        use_rslora=True,
        rank_pattern={"output.dense": 2},
        alpha_pattern={"output.dense": 4},
    )
    cmp = sdw.compare(base, tmp_path / "adapter_model.safetensors")
    pairs = {p.base_key: p for p in cmp.lora.pairs}
    query = pairs["encoder.layer.0.attention.self.query.weight"]
    assert (query.rank, query.scale, query.fan_in_fan_out) == (4, 16 / 2.0, False)
    out_dense = pairs["encoder.layer.0.output.dense.weight"]
    assert (out_dense.rank, out_dense.scale) == (2, 4 / 2**0.5)
    sdw.partial_load(base, cmp.plan(lora="merge"))
    assert same_state(base, merged) == []


class ConvEmbedNet(torch.nn.Module):
    """Every layer kind PEFT merges LoRA into besides Linear: an Embedding, a k x k and a 1 x 1
    Conv2d, a Conv1d and a Conv3d, and a Linear head."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 16)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.pointwise = torch.nn.Conv2d(8, 8, 1)
        self.temporal = torch.nn.Conv1d(16, 12, 5)
        self.volume = torch.nn.Conv3d(2, 4, (3, 3, 2))
        self.head = torch.nn.Linear(12, 5)


def conv_embed_net(dtype=torch.float32):
    torch.manual_seed(4)
    return ConvEmbedNet().to(dtype)


TARGETS = ["embed", "conv", "pointwise", "temporal", "volume", "head"]


def test_embedding_and_convolutions_merge_as_peft_does(tmp_path):
    base = conv_embed_net()
    merged = write_adapter(base, tmp_path, r=3, lora_alpha=6, target_modules=TARGETS)
    cmp = sdw.compare(base, tmp_path / "adapter_model.safetensors")
    pairs = {p.base_key: p for p in cmp.lora.pairs}
    assert {k: p.layer for k, p in pairs.items()} == {
        "embed.weight": "Embedding",
        "conv.weight": "Conv2d",
        "pointwise.weight": "Conv2d",
        "temporal.weight": "Conv1d",
        "volume.weight": "Conv3d",
        "head.weight": "Linear",
    }
    assert pairs["embed.weight"].a_key == "base_model.model.embed.lora_embedding_A"
    assert all(p.problem is None and p.scale == 2.0 for p in pairs.values())
    plan = cmp.plan(lora="merge")
    assert len(plan) == 6
    before = copy.deepcopy(base)
    report = sdw.partial_load(base, plan)
    assert same_state(base, merged) == []  # bit for bit PEFT's merge_and_unload
    report.undo()
    assert same_state(base, before) == []


def test_exported_embedding_and_convolution_merges_run_without_sd_widgets(tmp_path):
    base = conv_embed_net()
    merged = write_adapter(base, tmp_path, r=3, lora_alpha=6, target_modules=TARGETS)
    code = sdw.compare(base, tmp_path / "adapter_model.safetensors").plan(lora="merge").to_code()
    assert "'Embedding', None)" in code and "'Conv2d', None)" in code and "'Conv3d', None)" in code
    (tmp_path / "nets.py").write_text(
        "import torch\n\n\n" + textwrap.dedent(inspect.getsource(ConvEmbedNet))
    )
    build = """
        from nets import ConvEmbedNet
        model = ConvEmbedNet()
    """
    out = run_exported_load(code, base, build, tmp_path)
    for k, v in merged.state_dict().items():
        assert torch.equal(out[k], v), k


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_merges_as_peft_does(tmp_path, dtype):
    """PEFT keeps the factors in float32 and adds the delta in place (Linear, convolutions:
    float32 arithmetic, then rounded) or cast first (Embedding): each is matched bit for bit."""
    base = conv_embed_net(dtype)
    merged = write_adapter(base, tmp_path, r=2, lora_alpha=3, target_modules=TARGETS)
    sdw.partial_load(
        base, sdw.compare(base, tmp_path / "adapter_model.safetensors").plan(lora="merge")
    )
    assert same_state(base, merged) == []


def test_merge_lora_formula_of_each_layer():
    """The formulas, independently of PEFT: B @ A (Linear), its transpose (Conv1D, Embedding),
    and for a convolution the kernel of A followed by B's 1 x 1 mixing, as an einsum."""
    g = torch.Generator().manual_seed(3)
    w, a, b = (
        torch.randn(8, 6, generator=g),
        torch.randn(2, 6, generator=g),
        torch.randn(8, 2, generator=g),
    )
    assert torch.allclose(merge_lora(w, a, b, 1.5, "Linear"), w + 1.5 * b @ a)
    assert torch.allclose(merge_lora(w.T, a, b, 1.5, "Conv1D"), w.T + 1.5 * (b @ a).T)
    emb, ea, eb = (
        torch.randn(10, 4, generator=g),
        torch.randn(2, 10, generator=g),
        torch.randn(4, 2, generator=g),
    )
    assert torch.allclose(merge_lora(emb, ea, eb, 0.5, "Embedding"), emb + 0.5 * (eb @ ea).T)
    k, ka, kb = (
        torch.randn(5, 3, 3, 3, generator=g),
        torch.randn(2, 3, 3, 3, generator=g),
        torch.randn(5, 2, 1, 1, generator=g),
    )
    expected = k + 2.0 * torch.einsum("or,rihw->oihw", kb[:, :, 0, 0], ka)
    assert torch.allclose(merge_lora(k, ka, kb, 2.0, "Conv2d"), expected, atol=1e-6)


def test_gpt2_adapter_whose_config_says_no_fan_in_fan_out_still_merges_transposed(tmp_path):
    """PEFT sets fan_in_fan_out by the layer (True for Conv1D, with a warning; it even saves
    True then) whatever the config says: c_proj is square (32 x 32), so trusting a config that
    says False (hand-written, another tool's) would merge B @ A untransposed into it without
    any shape error."""
    base = gpt2()
    with pytest.warns(UserWarning, match="fan_in_fan_out is set to False"):
        merged = write_adapter(base, tmp_path, r=4, lora_alpha=8, target_modules=["c_proj"])
    config_path = tmp_path / "adapter_config.json"
    config_path.write_text(
        json.dumps({**json.loads(config_path.read_text()), "fan_in_fan_out": False})
    )
    cmp = sdw.compare(base, tmp_path / "adapter_model.safetensors")
    assert {p.layer for p in cmp.lora.pairs} == {"Conv1D"}
    sdw.partial_load(base, cmp.plan(lora="merge"))
    assert same_state(base, merged) == []


# ----------------------------------------------------------------------------- what it refuses


def test_without_its_config_it_is_recognised_but_not_merged(gpt2_adapter):
    base, _, path = gpt2_adapter
    (path.parent / "adapter_config.json").unlink()
    cmp = sdw.compare(base, path)
    assert cmp.lora is not None and cmp.lora.rank is None
    assert "no adapter_config.json beside the adapter file" in cmp.lora.describe()
    with pytest.raises(ValueError, match=r"lora_alpha .*is unknown"):
        cmp.plan(lora="merge")
    # in memory: recognised, and the message says to pass the file
    from safetensors.torch import load_file

    in_memory = sdw.compare(base, load_file(path))
    assert len(in_memory.lora.pairs) == 6
    assert "given in memory" in in_memory.lora.describe()


@pytest.mark.parametrize(
    "config, error",
    [
        ("[1, 2]", "not an object"),
        ("{not json", "not readable JSON"),
        ('{"r": "four", "lora_alpha": 8}', "r is 'four', not a number"),
        ('{"r": 4, "lora_alpha": -1}', "lora_alpha is -1, not a positive number"),
        ('{"r": 4, "lora_alpha": 8, "use_dora": true}', "use_dora is set, but the adapter has no"),
        ('{"r": 8, "lora_alpha": 8}', "the factors have rank 4, the config says r=8"),
    ],
)
def test_a_bad_config_says_what_it_found(gpt2_adapter, config, error):
    base, _, path = gpt2_adapter
    (path.parent / "adapter_config.json").write_text(config)
    try:
        cmp = sdw.compare(base, path)
        text = cmp.lora.describe()
    except sdw.CheckpointError as exc:
        text = str(exc)
    assert error in text
    if error.startswith("the factors"):  # a per-pair problem: skipped with the reason
        plan = cmp.plan(lora="merge")
        assert len(plan) == 0 and all(error in why for why in plan.skipped.values())


def test_dora_merges_as_peft_does_and_undo_restores(tmp_path):
    """PEFT's own DoRA adapter (use_dora: a lora_magnitude_vector per layer) on every layer kind:
    W + scale · ΔW rescaled row by row to the magnitude, bit for bit PEFT's merge_and_unload."""
    for name, base, targets in (
        ("convs", conv_embed_net(), TARGETS),
        ("gpt2", gpt2(), ["c_attn", "c_proj"]),
        ("half", conv_embed_net(torch.float16), ["embed", "conv", "pointwise", "head"]),
    ):
        folder = tmp_path / name
        merged = write_adapter(
            base, folder, r=3, lora_alpha=6, target_modules=targets, use_dora=True
        )
        cmp = sdw.compare(base, folder / "adapter_model.safetensors")
        assert cmp.lora.use_dora and "rescaled to its DoRA magnitude" in cmp.lora.describe()
        assert all(p.magnitude_key and p.problem is None for p in cmp.lora.pairs)
        before = copy.deepcopy(base)
        report = sdw.partial_load(base, cmp.plan(lora="merge"))
        assert same_state(base, merged) == [], name
        note = "LoRA merge: + 2 · B @ A (rank 3), rows rescaled to the DoRA magnitude"
        assert all(n == [note] for n in report.notes().values())
        report.undo()
        assert same_state(base, before) == [], name


def test_exported_dora_merge_runs_without_sd_widgets(tmp_path):
    base = bert()
    merged = write_adapter(
        base, tmp_path, r=2, lora_alpha=4, target_modules=["query", "value"], use_dora=True
    )
    code = sdw.compare(base, tmp_path / "adapter_model.safetensors").plan(lora="merge").to_code()
    assert ".lora_magnitude_vector')" in code
    namespace = {"__name__": "exported", "__builtins__": __builtins__}
    exec(compile(code, "export.py", "exec"), namespace)  # the module itself imports no sd_widgets
    assert "import sd_widgets" not in code and "from sd_widgets" not in code
    namespace["load_partial"](base, namespace["read_checkpoint"]())
    assert same_state(base, merged) == []


def test_a_dora_magnitude_without_use_dora_is_refused(tmp_path):
    """With use_dora removed from adapter_config.json (hand-edited, another tool), PEFT would
    ignore the magnitudes; merging A and B alone would be wrong for a DoRA-trained layer."""
    base = bert()
    write_adapter(base, tmp_path, r=2, lora_alpha=4, target_modules=["query"], use_dora=True)
    config_path = tmp_path / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "use_dora": False}))
    cmp = sdw.compare(base, tmp_path / "adapter_model.safetensors")
    assert cmp.lora.problem is None and len(cmp.lora.pairs) == 2
    for pair in cmp.lora.pairs:
        held = f"base_model.model.{pair.base_key[: -len('.weight')]}.lora_magnitude_vector"
        assert f"also holds {held!r} for this layer (a DoRA magnitude)" in (pair.problem or "")
        assert "does not set use_dora" in pair.problem
    plan = cmp.plan(lora="merge")
    assert len(plan) == 0 and len(plan.skipped) == 2


def test_lora_bias_merges_as_peft_does_and_exports(tmp_path):
    """PEFT's own lora_bias adapter (a lora_B.bias per layer): the weight as for plain LoRA and
    the layer's bias + scale · lora_B.bias, bit for bit PEFT's merge_and_unload (Linear,
    Conv1D, convolutions, float16); undo restores both; the exported code does the same."""
    for name, base, targets in (
        ("convs", conv_embed_net(), ["conv", "pointwise", "temporal", "volume", "head"]),
        ("gpt2", gpt2(), ["c_attn", "c_proj"]),
        ("half", conv_embed_net(torch.float16), ["conv", "head"]),
    ):
        folder = tmp_path / name
        merged = write_adapter(
            base, folder, r=3, lora_alpha=6, target_modules=targets, lora_bias=True
        )
        cmp = sdw.compare(base, folder / "adapter_model.safetensors")
        assert all(p.bias_key and p.problem is None for p in cmp.lora.pairs)
        plan = cmp.plan(lora="merge")
        assert len(plan) == 2 * len(cmp.lora.pairs)  # every weight and its bias
        before = copy.deepcopy(base)
        report = sdw.partial_load(base, plan)
        assert same_state(base, merged) == [], name
        bias = cmp.lora.pairs[0].bias_target
        assert report.notes()[bias] == ["LoRA bias: + 2 · lora_B.bias"]
        report.undo()
        assert same_state(base, before) == [], name
    code = plan.to_code()
    assert "def merge_lora_bias(" in code and "LORA_BIAS = [" in code
    namespace = {"__name__": "exported"}
    exec(compile(code, "export.py", "exec"), namespace)
    namespace["load_partial"](base, namespace["read_checkpoint"]())
    assert same_state(base, merged) == []


def test_lora_bias_needs_its_config_and_the_layers_bias(tmp_path):
    """With lora_bias removed from adapter_config.json (hand-edited, another tool), PEFT would
    ignore the lora_B.bias tensors: merging A and B alone would silently drop part of the
    adapter, so each pair is refused; a model whose layer has no bias cannot take one."""
    base = bert()
    write_adapter(base, tmp_path, r=2, lora_alpha=4, target_modules=["query"], lora_bias=True)
    path = tmp_path / "adapter_model.safetensors"
    config_path = tmp_path / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "lora_bias": False}))
    cmp = sdw.compare(base, path)
    assert cmp.lora.problem is None and len(cmp.lora.pairs) == 2
    for pair in cmp.lora.pairs:
        held = f"base_model.model.{pair.base_key[: -len('.weight')]}.lora_B.bias"
        assert f"also holds {held!r} for this layer (a LoRA bias)" in (pair.problem or "")
        assert "does not set lora_bias" in pair.problem
    plan = cmp.plan(lora="merge")
    assert len(plan) == 0 and len(plan.skipped) == 2
    config_path.write_text(json.dumps(config))
    without_bias = bert()
    for layer in without_bias.encoder.layer:
        layer.attention.self.query.bias = None
    cmp = sdw.compare(without_bias, path)
    assert all(
        "the model has no" in (p.problem or "") and ".query.bias'" in p.problem
        for p in cmp.lora.pairs
    )


def test_a_huge_config_is_refused(gpt2_adapter):
    base, _, path = gpt2_adapter
    (path.parent / "adapter_config.json").write_text(json.dumps({"r": 4, "pad": "x" * (2 << 20)}))
    with pytest.raises(sdw.CheckpointError, match="a few kB"):
        sdw.compare(base, path).lora  # noqa: B018


def test_an_adapter_for_another_model_says_which_weights_do_not_fit(gpt2_adapter):
    _, _, path = gpt2_adapter
    from transformers import GPT2Config, GPT2LMHeadModel

    wider = GPT2LMHeadModel(
        GPT2Config(vocab_size=64, n_positions=32, n_embd=48, n_layer=2, n_head=4)
    )
    cmp = sdw.compare(wider, path)
    assert all(p.problem for p in cmp.lora.pairs)
    plan = cmp.plan(lora="merge")
    assert len(plan) == 0
    why = plan.skipped["transformer.h.0.attn.c_attn.weight"]
    assert (
        "B @ A is [96, 32]; a Conv1D stores it transposed as [32, 96]; the model's weight is [48, 144]"
        in why
    )


def test_the_cli_footer_names_the_adapter(gpt2_adapter, tmp_path, capsys, monkeypatch):
    from sd_widgets.cli import _main as cli

    _, _, path = gpt2_adapter
    (tmp_path / "gpt2_for_cli.py").write_text(
        "from transformers import GPT2Config, GPT2LMHeadModel\n\n\n"
        "def build():\n"
        "    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32,\n"
        "                                      n_layer=2, n_head=4))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = cli.main(["diff", str(path), "--model", "gpt2_for_cli:build", "--only-problems"])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 1, text
    assert "lora: a LoRA adapter (rank 4, lora_alpha 8) for c_attn, c_proj: 6 factor pairs" in text
    assert "merges 6 of them" in text  # the model is built on the meta device: pairing is shapes


def test_an_adapter_of_the_task_model_merges_into_the_base_model(gpt2_adapter):
    """PEFT trained on GPT2LMHeadModel (keys under 'transformer.'), merged into a GPT2Model:
    the pairs cross the model's base_model_prefix."""
    base, merged, path = gpt2_adapter
    backbone = copy.deepcopy(base.transformer)
    cmp = sdw.compare(backbone, path)
    assert sorted(p.base_key for p in cmp.lora.mergeable) == sorted(
        f"h.{i}.{m}.weight" for i in range(2) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_proj")
    )
    sdw.partial_load(backbone, cmp.plan(lora="merge"))
    assert same_state(backbone, merged.transformer) == []


# --------------------------------------------------------------------------------- the Explorer


def test_the_explorer_says_what_the_adapter_is_merges_it_and_undo_restores(gpt2_adapter):
    """The widget's side of the LoRA view (tests/browser/test_lora_browser.py drives it in
    JupyterLab): the ``lora`` trait, the ``merge_lora`` action, the Code tab, Undo."""
    from sd_widgets.widget import Explorer

    base, merged, path = gpt2_adapter
    before = copy.deepcopy(base)
    w = Explorer(base, path)
    lora = w.lora
    assert lora["text"] == (
        "LoRA adapter, rank 4, alpha 8, targets c_attn, c_proj; holds no base weights"
    )
    assert lora["can_merge"] and not lora["merged"] and lora["why_not"] == ""
    assert lora["merge_label"] == "Merge 6 factor pairs into the model's weights"
    pair = next(p for p in lora["pairs"] if p["base"] == "transformer.h.0.attn.c_attn.weight")
    assert pair["a_key"] == "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"
    assert pair["factors"] == "A (4, 32) · B (96, 4), × 2, transposed (Conv1D)"
    w.handle_action({"action": "merge_lora"})
    assert w.message["level"] == "success", w.message
    assert w.message["text"].startswith("Merged 6 LoRA factor pairs into the model's weights")
    assert same_state(base, merged) == []  # PEFT's merge_and_unload, bit for bit
    assert w.lora["merged"] and w.can_undo
    w.tab = "code"
    assert "def merge_lora(" in w.code and "LORA = [" in w.code
    w.handle_action({"action": "undo"})
    assert w.message["level"] == "success", w.message
    assert same_state(base, before) == []  # W exactly
    assert not w.lora["merged"]
    assert sdw.Explorer(base, base.state_dict()).lora == {}  # a plain checkpoint: no LoRA view


def test_the_explorer_says_why_an_adapter_without_its_config_cannot_merge(gpt2_adapter):
    from sd_widgets.widget import Explorer

    base, _, path = gpt2_adapter
    (path.parent / "adapter_config.json").unlink()
    w = Explorer(base, path)
    assert w.lora["text"].startswith("LoRA adapter, rank unknown, alpha unknown")
    assert not w.lora["can_merge"]
    assert "no adapter_config.json beside the adapter file" in w.lora["why_not"]
    w.handle_action({"action": "merge_lora"})
    assert w.message["level"] == "error"
    assert "no adapter_config.json" in w.message["text"]
