"""Builders for the real-world corpus (tests/test_real_world.py): transformers models from small
configs (random init, no hub) and a hand-built ResNet-152-sized CNN, plus the peers' truths —
torch's own ``load_state_dict(strict=False)`` verdict and transformers' ``from_pretrained``
loading info."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

# ------------------------------------------------------------------------------------ transformers


#: One small size for every transformers model here (random init in milliseconds, no hub):
#: 3 layers of width 32, 4 heads, a 120-token vocabulary, 64 positions.
TINY: dict[str, int] = {
    "vocab_size": 120,
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "max_position_embeddings": 64,
}
#: The decoder-only models' special tokens (token 0 of the small vocabulary).
TOKENS: dict[str, int] = {"bos_token_id": 0, "eos_token_id": 0}


def bert_config() -> Any:
    from transformers import BertConfig

    return BertConfig(**TINY, num_labels=3)


def gpt2_config() -> Any:
    from transformers import GPT2Config

    # GPT-2 spells the sizes its own way (n_embd, n_layer, ...; its attribute_map says which)
    # and sizes its MLP itself (4 x n_embd)
    sizes = {GPT2Config.attribute_map.get(k, k): v for k, v in TINY.items()}
    del sizes["intermediate_size"]
    return GPT2Config(**sizes, **TOKENS)


def llama_config() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**TINY, **TOKENS, num_key_value_heads=2, pad_token_id=0)


def build(cls: Any, config: Any, seed: int) -> Any:
    """``cls(config)`` with random weights from ``seed`` (no hub, no download)."""
    torch.manual_seed(seed)
    return cls(config).eval()


def from_pretrained(cls: Any, path: Path, **kwargs: Any) -> tuple[Any, dict[str, set[str]]]:
    """transformers' own loader and its verdict: missing / unexpected / mismatched key sets."""
    model, info = cls.from_pretrained(path, output_loading_info=True, **kwargs)
    mismatched = {m[0] if isinstance(m, tuple) else m for m in info.get("mismatched_keys", ())}
    return model.eval(), {
        "missing": set(info["missing_keys"]),
        "unexpected": set(info["unexpected_keys"]),
        "mismatched": mismatched,
    }


# ------------------------------------------------------------------------------------ ResNet-152


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision's ResNet layout (same state-dict keys as ``resnet152`` for [3, 8, 36, 3]),
    with a narrower ``width`` so that 930-odd keys stay a few MB."""

    def __init__(
        self, layers: tuple[int, ...] = (3, 8, 36, 3), width: int = 8, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._layer(width, layers[0], 1)
        self.layer2 = self._layer(width * 2, layers[1], 2)
        self.layer3 = self._layer(width * 4, layers[2], 2)
        self.layer4 = self._layer(width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 8 * 4, num_classes)

    def _layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        out = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        out += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet152(seed: int, *, trained: bool = True) -> ResNet:
    """A ResNet-152-sized CNN; ``trained`` gives BatchNorm non-trivial running statistics."""
    torch.manual_seed(seed)
    model = ResNet()
    if trained:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
                    m.num_batches_tracked.fill_(seed + 7)
    return model.eval()


# ------------------------------------------------------------------------------------ torch truth


def torch_verdict(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> tuple[set[str], set[str]]:
    """(missing, unexpected) as torch's own ``load_state_dict(strict=False)`` reports them."""
    result = copy.deepcopy(model).load_state_dict(sd, strict=False)
    return set(result.missing_keys), set(result.unexpected_keys)


def silently_filled(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> set[str]:
    """``num_batches_tracked`` keys torch fills in instead of reporting them missing: BatchNorm
    modules without a ``_metadata`` entry count as legacy checkpoints (PyTorch fact 6)."""
    meta = getattr(sd, "_metadata", None) or {}
    return {
        f"{name}.num_batches_tracked"
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and name not in meta
        and f"{name}.num_batches_tracked" not in sd
    }


# ------------------------------------------------------------------------------------ real weights


#: a registry package that ships real pretrained weight files inside its wheel (6-11 KB each):
#: LPIPS's linear calibration layers, saved on CUDA in torch's legacy format
LPIPS_WHEEL = "lpips==0.1.4"


def lpips_weights(dest: Path) -> Path | None:
    """Download the ``lpips`` wheel (``pip download --no-deps``, never installed), unpack only
    its ``weights/`` folder into ``dest`` and return it; None when the registry is unreachable."""
    import subprocess
    import sys
    import zipfile

    done = dest / "lpips_weights"
    if done.is_dir():
        return done
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                LPIPS_WHEEL,
                "-d",
                str(dest),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    wheels = sorted(dest.glob("lpips-*.whl"))
    if not wheels:
        return None
    with zipfile.ZipFile(wheels[0]) as z:
        for name in z.namelist():
            if name.startswith("lpips/weights/") and name.endswith(".pth"):
                target = done / name.removeprefix("lpips/weights/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
    return done if done.is_dir() else None


class NetLinLayer(nn.Module):
    """LPIPS's 1x1-conv calibration layer (``lpips/lpips.py``), rebuilt here."""

    def __init__(self, chn_in: int, use_dropout: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout()] if use_dropout else []
        layers.append(nn.Conv2d(chn_in, 1, 1, stride=1, padding=0, bias=False))
        self.model = nn.Sequential(*layers)


class ScalingLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])


class LPIPSHead(nn.Module):
    """The part of ``lpips.LPIPS`` its weight files fill: ``lin0..linN`` — registered twice, as
    attributes and again in the ``lins`` ModuleList, so ``lins.K.*`` are the same Parameters —
    and the input scaling buffers (the trunk comes from torchvision and is left out)."""

    CHANNELS: ClassVar[dict[str, tuple[int, ...]]] = {
        "alex": (64, 192, 384, 256, 256),
        "vgg": (64, 128, 256, 512, 512),
        "squeeze": (64, 128, 256, 384, 384, 512, 512),
    }

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        self.scaling_layer = ScalingLayer()
        lins = []
        for i, c in enumerate(self.CHANNELS[net]):
            setattr(self, f"lin{i}", NetLinLayer(c))
            lins.append(getattr(self, f"lin{i}"))
        self.lins = nn.ModuleList(lins)
