"""Small real models and checkpoint variants for notebooks, tests and workshops.

Everything here is created at run time on the CPU, deterministically from a seed, with no
download, split by role:

- :mod:`.models` — two tiny models (:class:`MLP`, :class:`SmallCNN` with BatchNorm), plus
  :class:`TiedLM` (tied weights) and :class:`BufferModel` (a non-persistent buffer);
- :mod:`.training` — deterministic data and "pretraining" (:func:`synthetic_data`,
  :func:`pretrained`);
- :mod:`.variants` — the checkpoint *variants* people actually meet (:func:`variant`,
  :data:`VARIANTS`) and the model each is meant for (:func:`target_model`);
- :mod:`.files` — files in every common format (:func:`save`, :func:`write_checkpoint`,
  :func:`write_all_formats`) and a harmless checkpoint that weights-only loading refuses
  (:func:`write_unsafe_checkpoint`, an ``argparse.Namespace``). No code-running payloads are
  shipped: the security tests build theirs in ``tests/hostile.py``.

The package imports only torch, safetensors, the standard library and
:mod:`sd_widgets.statuses` (no other ``sd_widgets`` module)::

    from sd_widgets import demo

    ckpt = demo.variant("new_head")            # 10-class pretrained checkpoint
    model = demo.target_model("new_head")      # the 3-class model it is loaded into
    model.load_state_dict(ckpt, strict=False)  # RuntimeError: size mismatch (strict or not)
"""

from __future__ import annotations

from torch import nn

from .files import (
    FORMATS,
    UNSAFE_KINDS,
    save,
    write_all_formats,
    write_checkpoint,
    write_unsafe_checkpoint,
)
from .models import (
    MLP,
    MODELS,
    BasicBlock,
    BufferModel,
    SmallCNN,
    TiedLM,
    make_model,
    non_persistent_buffer_model,
    tied_model,
)
from .training import fine_tune, pretrained, synthetic_data
from .variants import (
    LIGHTNING_VERSION,
    NESTED_VARIANTS,
    VARIANTS,
    target_model,
    variant,
    variant_doc,
    variants_for,
)

__all__ = [
    "FORMATS",
    "LIGHTNING_VERSION",
    "MLP",
    "MODELS",
    "NESTED_VARIANTS",
    "UNSAFE_KINDS",
    "VARIANTS",
    "BasicBlock",
    "BufferModel",
    "SmallCNN",
    "TiedLM",
    "describe",
    "fine_tune",
    "make_model",
    "non_persistent_buffer_model",
    "pretrained",
    "save",
    "synthetic_data",
    "target_model",
    "tied_model",
    "variant",
    "variant_doc",
    "variants_for",
    "write_all_formats",
    "write_checkpoint",
    "write_unsafe_checkpoint",
]


def _count(model: nn.Module) -> tuple[int, int]:
    sd = model.state_dict()
    return len(sd), sum(p.numel() for p in model.parameters())


def describe() -> str:
    """A short text overview of the demo models, variants and formats (for notebooks)."""
    lines = ["sd_widgets.demo — small real models and checkpoint variants", "", "Models:"]
    for name in MODELS:
        model = make_model(name)
        keys, params = _count(model)
        lines.append(
            f"  {name:<5} {type(model).__name__}: {keys} state_dict keys, {params:,} parameters"
        )
    lines.append("  tied  TiedLM (tied_model): lm_head.weight is embed.weight")
    lines.append("  buf   BufferModel (non_persistent_buffer_model): non-persistent buffer 'mask'")
    lines += ["", "Variants (variant(name, base='cnn'); target_model(name) is what to load into):"]
    for name in VARIANTS:
        first = variant_doc(name).split("\n", 1)[0]
        lines.append(f"  {name:<14} {first}")
    lines += [
        "",
        "Formats (write_checkpoint(dir, variant, format)): " + ", ".join(FORMATS),
        "Unsafe (write_unsafe_checkpoint(path, kind)): " + ", ".join(UNSAFE_KINDS),
    ]
    return "\n".join(lines)
