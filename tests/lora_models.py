"""Small transformers models and PEFT's own LoRA adapter files for them (test_lora.py and the
browser's test_lora_browser.py), and a run of exported code in a process without sd_widgets.

transformers and peft are imported inside the functions: a test module that uses them skips
itself first (``pytest.importorskip``) when they are not installed.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

#: the configuration of the GPT-2 ``gpt2()`` builds (a script rebuilds it from this too)
GPT2_CONFIG = {
    "vocab_size": 64,
    "n_positions": 32,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 4,
    "bos_token_id": 0,
    "eos_token_id": 0,
}


def gpt2():
    """A two-layer GPT-2 (Conv1D layers: PEFT's ``fan_in_fan_out``), seeded."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**GPT2_CONFIG)).eval()


def bert():
    """A two-layer BERT without its pooler, seeded."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=32,
    )
    return BertModel(config, add_pooling_layer=False).eval()


def write_adapter(base, folder: Path, **config):
    """PEFT's own adapter files for ``base`` (factors randomised: PEFT starts B at zero), and
    PEFT's own merge of them into a copy of ``base``."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(base), LoraConfig(**config))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    model.save_pretrained(folder)
    return model.merge_and_unload()


def run_exported_load(
    code: str, base: torch.nn.Module, build: str, folder: Path
) -> dict[str, torch.Tensor]:
    """The state dict ``code`` (``plan.to_code()``) loads into a model built by ``build`` (source
    that sets ``model``, its class importable from ``folder``) holding ``base``'s weights, run
    as a script in a fresh process where any import of sd_widgets fails."""
    torch.save(base.state_dict(), folder / "base.pt")
    (folder / "export.py").write_text(code, encoding="ascii")
    script = (
        "import runpy, sys, torch\n"
        'sys.modules["sd_widgets"] = None  # any import of sd_widgets fails\n'
        f"sys.path.insert(0, {str(folder)!r})\n"
        + textwrap.dedent(build)
        + f"model.load_state_dict(torch.load({str(folder / 'base.pt')!r}))\n"
        f"ns = runpy.run_path({str(folder / 'export.py')!r})\n"
        'ns["load_partial"](model, ns["read_checkpoint"]())\n'
        f"torch.save(model.state_dict(), {str(folder / 'out.pt')!r})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return torch.load(folder / "out.pt")
