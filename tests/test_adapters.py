"""Shape adapters offered only where their meaning fits the tensor (issues 16, 17, 19).

* ViT position embeddings (timm ``pos_embed``, Hugging Face ``embeddings.position_embeddings``,
  CLIP ``positional_embedding``) trained at one image size and loaded into a model for another:
  ``interpolate`` is offered and never ``overlap``; it resamples exactly as timm's
  ``resample_abs_pos_embed`` (transcribed below from timm's source, not from this package).
* ``input_conv`` is offered only where timm's ``adapt_input_conv`` produces the model's shape.
* ``overlap`` on a grown vocabulary says which rows come from the checkpoint.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
import textwrap
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sd_widgets as sdw
from sd_widgets.compare._adapters import ADAPTERS, adapter_hint, applicable, get_adapter

transformers = pytest.importorskip("transformers")


# ------------------------------------------------------------------ upstream formulas, transcribed


def timm_resample_abs_pos_embed(
    posemb, new_size, old_size=None, num_prefix_tokens=1, interpolation="bicubic", antialias=True
):
    """timm/layers/pos_embed.py ``resample_abs_pos_embed`` (huggingface/pytorch-image-models),
    transcribed without its logging: prefix tokens kept, the square grid resampled in float32."""
    num_pos_tokens = posemb.shape[1]
    num_new_tokens = new_size[0] * new_size[1] + num_prefix_tokens
    if num_new_tokens == num_pos_tokens and new_size[0] == new_size[1]:
        return posemb
    if old_size is None:
        hw = int(math.sqrt(num_pos_tokens - num_prefix_tokens))
        old_size = hw, hw
    if num_prefix_tokens:
        posemb_prefix, posemb = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    else:
        posemb_prefix, posemb = None, posemb
    embed_dim = posemb.shape[-1]
    orig_dtype = posemb.dtype
    posemb = posemb.float()
    posemb = posemb.reshape(1, old_size[0], old_size[1], -1).permute(0, 3, 1, 2)
    posemb = F.interpolate(posemb, size=new_size, mode=interpolation, antialias=antialias)
    posemb = posemb.permute(0, 2, 3, 1).reshape(1, -1, embed_dim)
    posemb = posemb.to(orig_dtype)
    if posemb_prefix is not None:
        posemb = torch.cat([posemb_prefix, posemb], dim=1)
    return posemb


def timm_adapt_input_conv(in_chans, conv_weight):
    """timm/models/_manipulate.py ``adapt_input_conv``, transcribed (the in_chans == 1 branch
    sums each group of 3 channels of a space-to-depth stem: 12 channels give 4)."""
    conv_type = conv_weight.dtype
    conv_weight = conv_weight.float()
    O, I, J, K = conv_weight.shape  # noqa: E741 (as upstream)
    if in_chans == 1:
        if I > 3:
            assert conv_weight.shape[1] % 3 == 0
            conv_weight = conv_weight.reshape(O, I // 3, 3, J, K)
            conv_weight = conv_weight.sum(dim=2, keepdim=False)
        else:
            conv_weight = conv_weight.sum(dim=1, keepdim=True)
    elif in_chans != 3:
        if I != 3:
            raise NotImplementedError("Weight format not supported by conversion.")
        repeat = int(math.ceil(in_chans / 3))  # noqa: RUF046 (as upstream)
        conv_weight = conv_weight.repeat(1, repeat, 1, 1)[:, :in_chans, :, :]
        conv_weight *= 3 / float(in_chans)
    return conv_weight.to(conv_type)


def timm_resample_patch_embed(patch_embed, new_size, interpolation="bicubic", antialias=True):
    """timm/layers/patch_embed.py ``resample_patch_embed`` with its helpers
    ``_compute_resize_matrix`` and ``_apply_resampling`` (huggingface/pytorch-image-models),
    transcribed: the pseudo-inverse of the resize of each basis kernel, in float32."""
    old_size, new_size = tuple(patch_embed.shape[-2:]), tuple(new_size)
    if old_size == new_size:
        return patch_embed
    orig_dtype = patch_embed.dtype
    old_h, old_w = old_size
    new_h, new_w = new_size
    old_total, new_total = old_h * old_w, new_h * new_w
    eye_matrix = torch.eye(old_total, dtype=torch.float32)
    basis_vectors_batch = eye_matrix.reshape(old_total, 1, old_h, old_w)
    resized = F.interpolate(
        basis_vectors_batch,
        size=new_size,
        mode=interpolation,
        antialias=antialias,
        align_corners=False,
    )
    resize_matrix = resized.squeeze(1).permute(1, 2, 0).reshape(new_total, old_total)
    pinv_matrix = torch.linalg.pinv(resize_matrix)
    c_out, c_in, *_ = patch_embed.shape
    patch_embed = patch_embed.reshape(c_out, c_in, -1).to(dtype=torch.float32)
    resampled = patch_embed @ pinv_matrix.to(dtype=torch.float32)
    return resampled.reshape(c_out, c_in, *new_size).to(dtype=orig_dtype)


# ------------------------------------------------------------------------------ models in code


class TinyViT(nn.Module):
    """A timm-layout ViT: ``cls_token`` (+ ``dist_token``), ``pos_embed`` [1, P + g², D]."""

    def __init__(self, img_size: int, patch: int = 4, dim: int = 32, distilled: bool = False):
        super().__init__()
        grid = img_size // patch
        self.prefix = 2 if distilled else 1
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        if distilled:
            self.dist_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, self.prefix + grid * grid, dim))
        self.block = nn.TransformerEncoderLayer(dim, 4, 64, batch_first=True, dropout=0.0)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = [self.cls_token.expand(len(x), -1, -1)]
        if self.prefix == 2:
            tokens.append(self.dist_token.expand(len(x), -1, -1))
        x = torch.cat([*tokens, x], dim=1) + self.pos_embed
        return self.head(self.block(x)[:, 0])


def hf_vit(image_size: int):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(image_size)
    config = ViTConfig(
        image_size=image_size,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    return ViTModel(config, add_pooling_layer=False).eval()


# ----------------------------------------------------------------------------------- the tests


def test_interpolate_is_timms_resample_abs_pos_embed_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    for prefix, old, new, dtype in [
        (1, 7, 12, torch.float32),
        (1, 32, 48, torch.float32),
        (2, 14, 10, torch.float32),
        (0, 8, 16, torch.float16),
    ]:
        src = torch.randn(1, prefix + old * old, 16, generator=g).to(dtype)
        target = torch.empty(1, prefix + new * new, 16, device="meta")
        name = "interpolate" if prefix == 1 else f"interpolate:{prefix}"
        got = get_adapter(name)(src, target)
        expected = timm_resample_abs_pos_embed(src, (new, new), num_prefix_tokens=prefix)
        assert got.shape == (1, prefix + new * new, 16) and got.dtype == dtype
        assert torch.equal(got, expected)
        assert torch.equal(got[:, :prefix], src[:, :prefix])  # class/distillation tokens kept
    # CLIP's [tokens, dim] table: the same resampling, without the batch dimension
    table = torch.randn(1 + 7 * 7, 16, generator=g)
    got = ADAPTERS["interpolate"](table, torch.empty(1 + 14 * 14, 16))
    assert torch.equal(got, timm_resample_abs_pos_embed(table[None], (14, 14))[0])


def test_vit_position_embedding_offers_interpolate_never_overlap():
    src, dst = TinyViT(128), TinyViT(192)  # 32x32 -> 48x48 patches: [1, 1+32², D] -> [1, 1+48², D]
    cmp = sdw.compare(dst, src.state_dict())
    row = cmp["pos_embed"]
    assert row.status == "shape_mismatch"
    assert row.adapters == ("interpolate",) and "overlap" not in row.adapters
    assert "resamples the 32x32 position grid to 48x48" in row.reason
    assert "keeps the class token" in row.reason
    # asked for anyway, overlap is refused with the reason; nothing of the grid is copied
    plan = cmp.plan(adapt={"pos_embed": "overlap"})
    assert "pos_embed" in plan.skipped and "position embedding" in plan.skipped["pos_embed"]
    assert "pos_embed" not in plan.entries
    # a glob asking overlap everywhere skips it too
    assert "pos_embed" in cmp.plan(adapt="overlap").skipped


def test_interpolate_loads_a_vit_trained_at_another_size_and_undo_restores():
    torch.manual_seed(0)
    src, dst = TinyViT(28), TinyViT(48)  # 7x7 -> 12x12 grid
    before = dst.pos_embed.detach().clone()
    plan = sdw.compare(dst, src.state_dict()).plan(adapt={"pos_embed": "interpolate"})
    assert plan.adapted == {"pos_embed": "interpolate"}
    report = sdw.partial_load(dst, plan)
    expected = timm_resample_abs_pos_embed(src.pos_embed.detach(), (12, 12))
    assert torch.equal(dst.pos_embed.detach(), expected)
    assert torch.equal(dst.block.linear1.weight, src.block.linear1.weight)
    assert dst(torch.randn(2, 3, 48, 48)).shape == (2, 10)  # runs at the new size
    report.undo()
    assert torch.equal(dst.pos_embed.detach(), before)


def test_distilled_vit_keeps_both_prefix_tokens():
    src, dst = TinyViT(56, distilled=True), TinyViT(40, distilled=True)  # 14x14 -> 10x10
    cmp = sdw.compare(dst, src.state_dict())
    assert cmp["pos_embed"].adapters == ("interpolate:2",)
    assert "adapt={'pos_embed': 'interpolate:2'}" in cmp["pos_embed"].reason
    # the default (one prefix token) does not fit this grid and says why
    one = cmp.plan(adapt={"pos_embed": "interpolate"})
    assert "not a square grid" in one.skipped["pos_embed"]
    sdw.partial_load(dst, cmp.plan(adapt={"pos_embed": "interpolate:2"}))
    expected = timm_resample_abs_pos_embed(src.pos_embed.detach(), (10, 10), num_prefix_tokens=2)
    assert torch.equal(dst.pos_embed.detach(), expected)


def test_hugging_face_vit_at_two_image_sizes():
    small, large = hf_vit(32), hf_vit(48)  # 8x8 -> 12x12 patches
    cmp = sdw.compare(large, small.state_dict())
    problems = [r.key for r in cmp if r.status != "match"]
    assert problems == ["embeddings.position_embeddings"]
    row = cmp["embeddings.position_embeddings"]
    assert row.adapters == ("interpolate",)
    plan = cmp.plan(adapt={"embeddings.position_embeddings": "interpolate"})
    report = sdw.partial_load(large, plan)
    expected = timm_resample_abs_pos_embed(small.embeddings.position_embeddings.detach(), (12, 12))
    assert torch.equal(large.embeddings.position_embeddings.detach(), expected)
    with torch.no_grad():
        out = large(pixel_values=torch.randn(1, 3, 48, 48)).last_hidden_state
    assert out.shape == (1, 1 + 144, 32) and torch.isfinite(out).all()
    assert report.notes()["embeddings.position_embeddings"] == ["adapter: interpolate"]


def test_vit_save_pretrained_legacy_names_and_the_rule_offered_for_them(tmp_path):
    """Issue 19: transformers' ViTModel.save_pretrained still writes the legacy layer names
    (encoder.layer.N.attention.attention.query, ...) while its modules are layers.N.attention
    .q_proj, ...: 32 missing + 32 unexpected at 2 layers (transformers renames them on its own
    load). The prefix rule offered for them pairs only the layer norms, and accepting it loads
    exactly those tensors, each into its own place."""
    pytest.importorskip("transformers")
    saved, fresh = hf_vit(32), hf_vit(32)
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)  # every tensor differs from the saved model's
    saved.save_pretrained(tmp_path)
    cmp = sdw.compare(fresh, tmp_path / "model.safetensors")
    summary = cmp.summary()
    assert (summary["missing"], summary["unexpected"]) == (32, 32)
    assert "encoder.layer.0.attention.attention.query.weight" in cmp.checkpoint
    assert "layers.0.attention.q_proj.weight" in fresh.state_dict()
    rule = cmp.prefix_suggestions()[0].rule
    assert (rule.kind, rule.old, rule.new) == ("prefix", "encoder.layer.", "layers.")
    renamed = cmp.with_renames([rule])
    plan = renamed.plan(include=[r.key for r in renamed if r.loadable])
    report = sdw.partial_load(fresh, plan)
    assert len(report.loaded) == 14  # 6 embedding/final-norm keys + 8 layer-norm keys
    mine, theirs = fresh.state_dict(), saved.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in report.loaded)
    assert any(k.startswith("layers.0.layernorm_before") for k in report.loaded)


def test_exported_interpolation_runs_without_sd_widgets(tmp_path):
    src, dst = TinyViT(28), TinyViT(48)
    path = tmp_path / "vit-28.pt"
    torch.save(src.state_dict(), path)
    plan = sdw.compare(dst, path).plan(adapt={"pos_embed": "interpolate"})
    code = plan.to_code()
    assert "def adapt_interpolate(" in code
    assert "# adapter 'interpolate': keeps the prefix (class) tokens" in code
    assert "resamples the 7x7 position grid to 12x12" in code  # the key's own comment
    run_export_without_sd_widgets(code, tmp_path, TinyViT, "TinyViT(48)", dst.state_dict())
    sdw.partial_load(dst, plan)
    exported = torch.load(tmp_path / "out.pt")
    for k, v in dst.state_dict().items():
        assert torch.equal(exported[k], v), k


def run_export_without_sd_widgets(code, tmp_path, cls, build, state):
    """Run an export in a fresh interpreter where importing sd_widgets fails: the model class
    from its own file, its weights from ``state``; the result lands in ``out.pt``."""
    (tmp_path / "model_def.py").write_text(
        "import torch\nfrom torch import nn\n\n\n" + inspect.getsource(cls)
    )
    torch.save(state, tmp_path / "model_state.pt")
    export = tmp_path / "export.py"
    export.write_text(code, encoding="ascii")
    script = textwrap.dedent(
        f"""
        import runpy, sys, torch
        sys.modules["sd_widgets"] = None  # any import of sd_widgets fails
        sys.path.insert(0, {str(tmp_path)!r})
        from model_def import {cls.__name__}
        ns = runpy.run_path({str(export)!r})
        model = {build}
        model.load_state_dict(torch.load({str(tmp_path / "model_state.pt")!r}))
        ns["load_partial"](model, ns["read_checkpoint"]())
        torch.save(model.state_dict(), {str(tmp_path / "out.pt")!r})
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_parametrised_interpolate_exports_its_prefix_count(tmp_path):
    src, dst = TinyViT(56, distilled=True), TinyViT(40, distilled=True)
    plan = sdw.compare(dst, src.state_dict()).plan(adapt={"pos_embed": "interpolate:2"})
    code = plan.to_code()
    assert "functools.partial(adapt_interpolate, num_prefix_tokens=2)" in code
    ns = {"__name__": "exported"}
    exec(compile(code, "<export>", "exec"), ns)
    sdw.partial_load(dst, plan)
    fresh = TinyViT(40, distilled=True)
    ns["load_partial"](fresh, src.state_dict())
    assert torch.equal(fresh.pos_embed, dst.pos_embed)


def test_clip_style_tables_and_non_grids():
    # OpenAI CLIP's visual.positional_embedding is [1 + g², D]
    assert applicable((50, 64), (197, 64), key="visual.positional_embedding") == ("interpolate",)
    assert applicable(
        (50, 64), (197, 64), key="vision_model.embeddings.position_embedding.weight"
    ) == ("interpolate",)
    # a text position table that is not a square grid: no adapter at all (overlap never)
    assert applicable((1024, 64), (2048, 64), key="transformer.wpe.weight") == ()
    assert applicable((2050, 64), (4098, 64), key="model.decoder.embed_positions.weight") == ()
    hint = adapter_hint((1024, 64), (2048, 64), key="transformer.wpe.weight")
    assert "a learned position table of another length: no adapter is offered" in hint
    assert "linear along positions" in hint and "another place of the model's grid" not in hint
    # relative position tables are position embeddings too: neither adapter
    assert applicable((169, 4), (529, 4), key="blocks.0.attn.relative_position_bias_table") == ()
    # a square-grid shape under a name that is no position embedding: never interpolated
    assert applicable((1, 50, 64), (1, 197, 64), key="encoder.tokens") == ("overlap",)


def test_text_position_tables_get_no_adapter_and_say_why():
    """Issue 19: 1-D interpolation of a text position table is deliberately not offered (it
    would change every learned position's vector; RoBERTa's table reserves its first rows);
    the reason says so instead of talking about a grid. Real BERT and GPT-2 models."""
    transformers = pytest.importorskip("transformers")

    def bert(n):
        config = transformers.BertConfig(
            vocab_size=64,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=48,
            max_position_embeddings=n,
        )
        return transformers.BertModel(config, add_pooling_layer=False)

    def gpt2(n):
        config = transformers.GPT2Config(
            vocab_size=64,
            n_positions=n,
            n_embd=32,
            n_layer=1,
            n_head=4,
            bos_token_id=0,
            eos_token_id=0,
        )
        return transformers.GPT2Model(config)

    for small, big, key in (
        (bert(32), bert(64), "embeddings.position_embeddings.weight"),
        (gpt2(32), gpt2(64), "wpe.weight"),
    ):
        for ckpt, model in ((small, big), (big, small)):  # longer and shorter
            row = sdw.compare(model, ckpt.state_dict())[key]
            assert row.status == "shape_mismatch" and row.adapters == ()
            assert "a learned position table of another length" in row.reason, row.reason
            assert "another place of the model's grid" not in row.reason
            plan = sdw.compare(model, ckpt.state_dict()).plan(adapt={key: "overlap"})
            assert key in plan.skipped and key not in plan.entries


def test_input_conv_is_offered_only_where_timm_produces_the_model_shape():
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(16, 12, 3, 3, generator=g)  # a space-to-depth stem (block 2 x RGB)
    # 12 -> 1 cannot be made (timm gives 4 channels for a 1-channel input): not offered
    assert "input_conv" not in applicable((16, 12, 3, 3), (16, 1, 3, 3), key="stem.conv.weight")
    why = ADAPTERS["input_conv"].why_not((16, 12, 3, 3), (16, 1, 3, 3))
    assert why is not None and "becomes 4 channels" in why
    # 12 -> 4 is timm's in_chans=1 result, offered and exact
    assert "input_conv" in applicable((16, 12, 3, 3), (16, 4, 3, 3), key="stem.conv.weight")
    got = ADAPTERS["input_conv"](weight, torch.empty(16, 4, 3, 3))
    assert torch.equal(got, timm_adapt_input_conv(1, weight))
    # 6 -> 3 channels is no RGB stem: refused
    assert "input_conv" not in applicable((16, 6, 3, 3), (16, 3, 3, 3))


def test_a_12_channel_stem_into_a_1_channel_model_is_not_planned_then_refused():
    src = nn.Sequential(nn.Conv2d(12, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    dst = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    cmp = sdw.compare(dst, src.state_dict())
    assert "input_conv" not in cmp["0.weight"].adapters
    plan = cmp.plan(adapt={"0.weight": "input_conv"})
    assert "0.weight" in plan.skipped and "becomes 4 channels" in plan.skipped["0.weight"]
    report = sdw.partial_load(dst, plan)  # loads what fits, no refusal at load time
    assert "0.weight" not in report.loaded and "2.weight" in report.loaded
    # and a model whose stem really has 4 channels takes it
    four = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    sdw.partial_load(four, sdw.compare(four, src.state_dict()).plan(adapt="input_conv"))
    assert torch.equal(four[0].weight, timm_adapt_input_conv(1, src[0].weight))


def test_overlap_on_a_grown_vocabulary_says_which_rows_are_kept():
    from transformers import GPT2Config, GPT2LMHeadModel

    def gpt2(vocab):
        torch.manual_seed(vocab)
        cfg = GPT2Config(vocab_size=vocab, n_positions=32, n_embd=32, n_layer=1, n_head=4)
        return GPT2LMHeadModel(cfg)

    old, new = gpt2(100), gpt2(103)  # three tokens added
    cmp = sdw.compare(new, old.state_dict())
    row = cmp["transformer.wte.weight"]
    assert row.adapters == ("overlap",)
    assert "copies the checkpoint's rows (tokens) 0..99" in row.reason
    assert "rows (tokens) 100..102 (new tokens) keep the model's current values" in row.reason
    fresh = new.transformer.wte.weight.detach()[100:].clone()
    sdw.partial_load(new, cmp.plan(adapt={"transformer.wte.weight": "overlap"}))
    assert torch.equal(new.transformer.wte.weight[:100], old.transformer.wte.weight)
    assert torch.equal(new.transformer.wte.weight[100:], fresh)
    # a shrunk classifier says which rows are dropped
    assert "the checkpoint's rows 3..9 are dropped" in adapter_hint((10, 32), (3, 32))


def test_unknown_and_malformed_adapter_names_are_refused():
    model = TinyViT(28)
    cmp = sdw.compare(model, TinyViT(48).state_dict())
    for bad in ("bogus", "interpolate:", "interpolate:x", "interpolate:10", "overlap:1"):
        with pytest.raises(ValueError, match="unknown adapter"):
            cmp.plan(adapt={"pos_embed": bad})


def test_explorer_offers_only_what_fits():
    pytest.importorskip("anywidget")
    src, dst = TinyViT(28), TinyViT(48)
    w = sdw.Explorer(dst, src.state_dict())
    w.handle_action({"action": "adapt", "key": "pos_embed", "adapter": "overlap"})
    assert w.adapters == {} and "does not apply" in str(w.message)
    w.handle_action({"action": "adapt", "key": "pos_embed", "adapter": "auto"})
    assert w.adapters == {"pos_embed": "interpolate"}
    w.adapters = {"pos_embed": "overlap"}  # set from Python: dropped, it does not apply
    assert w.adapters == {}


def test_state_dict_of_a_plan_with_interpolate_needs_no_model_values():
    with torch.device("meta"):
        dst = TinyViT(48)
    src = TinyViT(28)
    plan = sdw.compare(dst, src.state_dict()).plan(adapt={"pos_embed": "interpolate"})
    sd = plan.state_dict(dst)
    assert isinstance(sd, OrderedDict) and sd["pos_embed"].shape == (1, 145, 32)


def test_resample_patch_is_timms_resample_patch_embed_bit_for_bit():
    g = torch.Generator().manual_seed(5)
    for old, new, dtype in [(16, 8, torch.float32), (8, 16, torch.float32), (4, 6, torch.float16)]:
        kernel = torch.randn(24, 3, old, old, generator=g).to(dtype)
        got = ADAPTERS["resample_patch"](kernel, torch.empty(24, 3, new, new, device="meta"))
        assert got.dtype == dtype and torch.equal(
            got, timm_resample_patch_embed(kernel, (new, new))
        )


def test_a_vit_with_another_patch_size_takes_both_position_and_patch_adapters():
    src, dst = TinyViT(32, patch=8), TinyViT(32, patch=4)  # 4x4 grid of 8-px patches -> 8x8 of 4
    cmp = sdw.compare(dst, src.state_dict())
    assert cmp["patch_embed.weight"].adapters == ("resample_patch",)  # never a cropped kernel
    assert "resamples the 8x8 patch kernel to 4x4" in cmp["patch_embed.weight"].reason
    assert cmp["pos_embed"].adapters == ("interpolate",)
    plan = cmp.plan(adapt={"patch_embed.weight": "resample_patch", "pos_embed": "interpolate"})
    sdw.partial_load(dst, plan)
    expected = timm_resample_patch_embed(src.patch_embed.weight.detach(), (4, 4))
    assert torch.equal(dst.patch_embed.weight.detach(), expected)
    assert dst(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    code = plan.to_code()
    assert "# adapter 'resample_patch': resamples a ViT patch-embedding kernel" in code
    namespace = {"__name__": "exported"}
    exec(compile(code, "<export>", "exec"), namespace)
    fresh = TinyViT(32, patch=4)
    namespace["load_partial"](fresh, src.state_dict())
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in fresh.state_dict().items())
    # a kernel of another size is no patch embedding elsewhere: nothing is offered
    assert applicable((64, 3, 7, 7), (64, 3, 3, 3), key="conv1.weight") == ()
    # the HF and timm spellings
    for key in ("embeddings.patch_embeddings.projection.weight", "patch_embed.proj.weight"):
        assert applicable((32, 3, 16, 16), (32, 3, 8, 8), key=key) == ("resample_patch",)
    assert applicable((32, 3, 16, 16), (32, 3, 8, 8), key="patch_embed.proj.bias") == ()


def test_a_model_built_with_another_config_is_offered_no_slices():
    """Every width of a BERT halved (hidden 64 -> 32, intermediate 128 -> 64): ``overlap`` would
    copy the top-left slice of every tensor, which makes no working model. It is not offered
    for those rows (their reason says why and what to do); ``adapt=`` still copies the slice
    when asked. A classifier head of another size alone is still offered ``overlap``."""
    transformers = pytest.importorskip("transformers")

    def bert(hidden: int) -> nn.Module:
        config = transformers.BertConfig(
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            vocab_size=100,
        )
        return transformers.BertModel(config)

    torch.manual_seed(0)
    big, small = bert(64), bert(32)
    cmp = sdw.compare(small, big.state_dict())
    assert cmp.config_mismatch() is not None
    mismatched = [r for r in cmp if r.status == "shape_mismatch"]
    assert len(mismatched) > 30
    assert all(r.config_mismatch and r.adapters == () and not r.adaptable for r in mismatched)
    assert all("built with another config" in r.reason for r in mismatched)
    assert cmp.plan().entries.keys().isdisjoint(r.key for r in mismatched)
    # asked for explicitly, the slice is copied
    key = "embeddings.word_embeddings.weight"
    plan = cmp.plan(include=[key], adapt={key: "overlap"})
    sdw.partial_load(small, plan)
    assert torch.equal(small.state_dict()[key], big.state_dict()[key][:, :32])
    # a head of another size is not a config mismatch: overlap is still offered
    head10, head3 = (
        nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 10)),
        nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 3)),
    )
    head = sdw.compare(head3, head10.state_dict())
    assert head.config_mismatch() is None
    assert [r.adapters for r in head if r.status == "shape_mismatch"] == [("overlap",)] * 2
