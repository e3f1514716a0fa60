"""A PEFT LoRA adapter in a real JupyterLab (headless Chromium), operated by keyboard only.

The adapter files are written by PEFT's own ``save_pretrained`` (``adapter_model.safetensors``
and ``adapter_config.json``) for a small GPT-2 built from its config, with random factors (PEFT
starts B at zero). The Explorer says what the checkpoint is, lists each factor pair beside the
model weight it modifies (a button shows that weight's row in the tree), and its "Merge into
the model's weights" button merges them through the transactional load: every merged weight is
W + (lora_alpha / r) · (B @ A)ᵀ (GPT-2's Conv1D stores in × out), computed in the notebook from
the file, and PEFT's own ``merge_and_unload`` gives the same tensors; the Code tab exports the
merge; Undo restores W exactly. Screenshots: ``tests/artifacts/lora-view.png`` (the adapter
and its pairs) and ``tests/artifacts/lora-merged.png`` (after the merge).

The other families of issue 19 in the same JupyterLab: a wrapper segment inside keys (a
compiled submodule's ``_orig_mod.``) named by the banner and applied by keyboard, and a model
built with another config told in one sentence in the summary strip
(``tests/artifacts/families-config-mismatch.png``).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .harness import SETUP, leaf, py, run_explorer

pytestmark = pytest.mark.browser

ADAPTER = """\
import copy, tempfile
from pathlib import Path
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2,
                                   n_head=4, bos_token_id=0, eos_token_id=0)).eval()
W0 = {k: v.clone() for k, v in model.state_dict().items()}
peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(
    r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True))
generator = torch.Generator().manual_seed(7)
with torch.no_grad():
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
folder = Path(tempfile.mkdtemp())
peft_model.save_pretrained(folder)
by_peft = peft_model.merge_and_unload().state_dict()
w = sdw.Explorer(model, folder / "adapter_model.safetensors")
w
"""

#: W + (lora_alpha / r) (B @ A)^T for every target weight, from the file; every other tensor W
EXPECTED = """\
factors = load_file(folder / "adapter_model.safetensors")
expected = dict(W0)
for k in W0:
    a = "base_model.model." + k[: -len(".weight")] + ".lora_A.weight"
    if a in factors:
        expected[k] = W0[k] + (8 / 4) * (factors[a.replace("lora_A", "lora_B")] @ factors[a]).T
merged_keys = sorted(k for k in W0 if not torch.equal(expected[k], W0[k]))
"""


def press(locator, key: str = "Enter") -> None:
    """Focus ``locator`` and press ``key`` on it: what a keyboard user does after Tab."""
    locator.focus()
    expect(locator).to_be_focused()
    locator.press(key)


def test_lora_adapter_is_named_paired_merged_and_undone_by_keyboard(lab):
    root = run_explorer(lab, [SETUP, ADAPTER], timeout=120)
    panel = root.locator("[data-role=lora]")
    expect(panel).to_be_visible()
    expect(panel.locator("[data-role=lora-text]")).to_have_text(
        "LoRA adapter, rank 4, alpha 8, targets c_attn, c_proj; holds no base weights"
    )
    # each factor pair beside the weight it modifies; its button shows that row in the tree
    press(panel.locator("[data-role=lora-pairs] > summary"))
    pairs = panel.locator("[data-role=lora-pair]")
    expect(pairs).to_have_count(6)
    key = "transformer.h.1.attn.c_attn.weight"
    pair = panel.locator(f'[data-role=lora-pair][data-key="{key}"]')
    expect(pair).to_contain_text("A (4, 32) · B (96, 4), × 2, transposed (Conv1D)")
    press(pair.locator("[data-action=goto-problem]"))
    expect(leaf(root, key)).to_be_focused()
    expect(leaf(root, key)).to_have_attribute("data-status", "missing")
    # in the tree, the weight's row and its factors' rows say what they pair with
    a_key = "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight"
    note = leaf(root, key).locator("[data-role=lora-note]")
    expect(note).to_have_text("LoRA")
    expect(note).to_have_attribute("title", re.compile(re.escape(f"factors: {a_key}, ")))
    press(root.locator("[data-action=expand-all]"))
    expect(leaf(root, a_key).locator("[data-role=lora-note]")).to_have_attribute(
        "title", f"LoRA factor A of {key}"
    )
    lab.screenshot("lora-view", root)

    merge = panel.locator("[data-action=merge-lora]")
    expect(merge).to_have_text("Merge 6 factor pairs into the model's weights")
    press(merge)
    message = root.locator("[data-role=message]")
    expect(message).to_have_attribute("data-level", "success", timeout=60_000)
    expect(message).to_contain_text("Merged 6 LoRA factor pairs into the model's weights")
    expect(merge).to_be_disabled()
    actions = root.locator("[data-role=result-row] td[data-col=action]")
    expect(actions).to_have_count(6, timeout=60_000)
    expect(actions).to_have_text(["merge"] * 6)
    lab.execute(EXPECTED)
    assert py(lab, "len(merged_keys)") == "6"
    state = "model.state_dict()"
    assert py(lab, f"all(torch.equal(v, expected[k]) for k, v in {state}.items())") == "True"
    assert py(lab, f"all(torch.equal(v, by_peft[k]) for k, v in {state}.items())") == "True"
    lab.screenshot("lora-merged", root)

    # the Code tab exports the merge as plain torch
    press(root.locator("[data-role=tab][data-tab=code]"))
    code = root.locator("pre[data-role=code]")
    expect(code).to_contain_text("def merge_lora(")
    expect(code).to_contain_text("LORA = [")
    expect(code).to_contain_text("'base_model.model.transformer.h.1.attn.c_attn.lora_A.weight'")

    press(root.locator("[data-action=undo]"))
    expect(message).to_contain_text("Undone", timeout=60_000)
    expect(merge).to_be_enabled()
    assert py(lab, f"all(torch.equal(v, W0[k]) for k, v in {state}.items())") == "True"


# ------------------------------------------------- the other families of issue 19, in JupyterLab
# (the ViT position embedding is tests/browser/test_adapters_browser.py; the Voilà app shows an
# activation-checkpointing segment and a config mismatch too, tests/browser/test_app.py)

FAMILIES = """\
from transformers import BertConfig, BertModel

torch.manual_seed(0)
model = demo.make_model("cnn")
compiled = demo.make_model("cnn")
compiled.backbone = torch.compile(compiled.backbone)  # keys: backbone._orig_mod.stem.conv.weight
w = sdw.Explorer(model, compiled.state_dict(), select="none")
w
"""

CONFIG = """\
def bert(hidden, intermediate):
    return BertModel(BertConfig(vocab_size=120, hidden_size=hidden, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=intermediate,
                                max_position_embeddings=64))

narrow = sdw.Explorer(bert(32, 48), bert(64, 96).state_dict())
narrow
"""


def test_wrapper_segment_rule_and_config_sentence_in_jupyterlab(lab):
    root = run_explorer(lab, [SETUP, FAMILIES, CONFIG], timeout=120)
    banner = root.locator("[data-role=banner]")
    expect(banner.locator("[data-role=banner-text]")).to_have_text(
        "remove wrapper segment(s) '_orig_mod.' inside keys (torch.compile on a submodule): "
        "36 missing + 36 unexpected keys pair up"
    )
    press(banner.locator("[data-action=apply-banner]"))
    expect(root.locator("[data-role=summary]")).to_have_text("38 keys: 38 matches", timeout=60_000)
    assert py(lab, "[r['old'] for r in w.rename_rules]") == r"['(?<![^.])(?:_orig_mod)\\.']"
    expect(leaf(root, "backbone.stem.conv.weight")).to_have_attribute("data-status", "match")

    wide = lab.output_area(2).locator(".sdw-explorer")
    expect(wide).to_have_attribute("data-ready", "true")
    summary = wide.locator("[data-role=summary]")
    expect(summary).to_contain_text(
        "All 39 shape mismatches differ by one factor (checkpoint = 2 × model: 64 vs 32, 96 vs 48): "
        "built with a different config? The model's config has hidden_size=32 (checkpoint: 64), "
        "intermediate_size=48 (checkpoint: 96)."
    )
    lab.screenshot("families-config-mismatch", wide)


def test_offline_report_of_an_adapter_shows_the_strip_without_merge(browser, tmp_path):
    """``Explorer.to_html`` of the same kind of adapter: the LoRA strip and its pairs are in the
    read-only report; the Merge button (it would ask a kernel) is not."""
    from lora_models import gpt2, write_adapter  # tests/ is on sys.path (rootdir-relative)

    import sd_widgets as sdw

    model = gpt2()
    write_adapter(
        model, tmp_path, r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True
    )
    page_path = tmp_path / "lora-report.html"
    sdw.Explorer(model, tmp_path / "adapter_model.safetensors").to_html(page_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    try:
        page = context.new_page()
        page.goto(page_path.resolve().as_uri())
        root = page.locator(".sdw-explorer")
        expect(root).to_have_attribute("data-readonly", "true")
        panel = root.locator("[data-role=lora]")
        expect(panel.locator("[data-role=lora-text]")).to_have_text(
            "LoRA adapter, rank 4, alpha 8, targets c_attn; holds no base weights"
        )
        expect(panel.locator("[data-role=lora-pair]")).to_have_count(2)
        expect(panel.locator("[data-action=merge-lora]")).to_be_hidden()
    finally:
        context.close()
