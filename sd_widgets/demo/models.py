"""The demo models.

:class:`MLP`, :class:`SmallCNN` (BatchNorm), :class:`TiedLM` (tied weights), :class:`BufferModel`
(a non-persistent buffer), and seeded constructors for them.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = [
    "MLP",
    "MODELS",
    "BasicBlock",
    "BufferModel",
    "SmallCNN",
    "TiedLM",
    "make_model",
    "non_persistent_buffer_model",
    "tied_model",
]

#: Model names accepted by :func:`make_model` and :func:`pretrained`.
MODELS: tuple[str, ...] = ("cnn", "mlp")


class MLP(nn.Module):
    """A multi-layer perceptron: ``fc1 -> relu -> fc2 -> relu -> ... -> head``.

    Args:
        in_features: input vector size.
        hidden: width of every hidden layer (an ``int``), or one width per hidden layer (a
            sequence; its length then sets the depth).
        num_classes: output size of ``head``.
        depth: number of hidden ``Linear`` layers (``fc1`` ... ``fc<depth>``) when ``hidden`` is
            an ``int``.

    State-dict keys (defaults): ``fc1.weight [64, 20]``, ``fc1.bias``, ``fc2.weight [64, 64]``,
    ``fc2.bias``, ``head.weight [10, 64]``, ``head.bias``. No buffers.
    """

    def __init__(
        self,
        in_features: int = 20,
        hidden: int | Sequence[int] = 64,
        num_classes: int = 10,
        *,
        depth: int = 2,
    ) -> None:
        super().__init__()
        widths = [hidden] * depth if isinstance(hidden, int) else [int(h) for h in hidden]
        if not widths:
            raise ValueError("MLP needs at least one hidden layer")
        self.in_features = in_features
        self.num_classes = num_classes
        prev = in_features
        for i, width in enumerate(widths, start=1):
            self.add_module(f"fc{i}", nn.Linear(prev, width))
            self.add_module(f"act{i}", nn.ReLU())
            prev = width
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[n, in_features]`` to logits ``[n, num_classes]``."""
        x = x.flatten(1)
        for name, module in self.named_children():
            if name != "head":
                x = module(x)
        return self.head(x)


class BasicBlock(nn.Module):
    """A ResNet basic block: ``conv1 -> bn1 -> relu -> conv2 -> bn2`` plus a shortcut.

    ``downsample`` (``Sequential(conv 1x1, bn)``) exists only when the stride or the channel
    count changes. ``mid_channels`` is the width between ``conv1`` and ``conv2``
    (default: ``out_channels``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        mid_channels: int | None = None,
    ) -> None:
        super().__init__()
        mid = out_channels if mid_channels is None else mid_channels
        self.conv1 = nn.Conv2d(in_channels, mid, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(mid, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward pass."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallCNN(nn.Module):
    """A tiny ResNet-like CNN with BatchNorm, for ``[n, in_channels, 16, 16]`` images.

    Module tree (defaults)::

        backbone (Sequential)
          stem (Sequential): conv [16, 3, 3, 3], bn, relu
          layer1 (Sequential): 0 = BasicBlock(16 -> 16)
          layer2 (Sequential): 0 = BasicBlock(16 -> 32, stride 2, with downsample)
        pool (AdaptiveAvgPool2d(1))
        classifier (Linear 32 -> num_classes)

    giving keys such as ``backbone.stem.conv.weight``, ``backbone.layer1.0.bn1.running_mean``,
    ``backbone.layer2.0.downsample.1.num_batches_tracked`` and ``classifier.weight``.

    Args:
        num_classes: output size of ``classifier``.
        in_channels: image channels.
        width: channels of ``stem`` and ``layer1``; ``layer2`` has ``2 * width``.
        blocks: number of ``BasicBlock`` in ``layer1`` and ``layer2`` (0 leaves it empty).
        layer2_mid: width inside the *first* ``layer2`` block (between its ``conv1`` and
            ``conv2``; default ``2 * width``). Changing it resizes exactly one hidden layer.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 16,
        *,
        blocks: tuple[int, int] = (1, 1),
        layer2_mid: int | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        w2 = 2 * width
        layer1 = [BasicBlock(width, width) for _ in range(blocks[0])]
        layer2: list[nn.Module] = []
        for i in range(blocks[1]):
            if i == 0:
                layer2.append(BasicBlock(width, w2, stride=2, mid_channels=layer2_mid))
            else:
                layer2.append(BasicBlock(w2, w2))
        stem = nn.Sequential(
            collections.OrderedDict(
                conv=nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(width),
                relu=nn.ReLU(),
            )
        )
        if blocks[1] == 0:
            raise ValueError("SmallCNN needs at least one layer2 block (it sets the feature width)")
        self.backbone = nn.Sequential(
            collections.OrderedDict(
                stem=stem, layer1=nn.Sequential(*layer1), layer2=nn.Sequential(*layer2)
            )
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(w2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``[n, c, h, w]`` to logits ``[n, num_classes]``."""
        return self.classifier(self.pool(self.backbone(x)).flatten(1))


class TiedLM(nn.Module):
    """A tiny language-model-like module whose output projection is tied to its embedding.

    ``lm_head.weight is embed.weight`` (one ``Parameter``), so ``state_dict()`` has both keys
    pointing at the same storage while ``parameters()`` yields it once.
    """

    def __init__(self, vocab_size: int = 50, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.proj = nn.Linear(dim, dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map token ids ``[n, t]`` to logits ``[n, t, vocab_size]``."""
        return self.lm_head(torch.relu(self.proj(self.embed(tokens))))


class BufferModel(nn.Module):
    """A ``Linear`` with one persistent and one non-persistent buffer.

    ``scale`` (persistent) is in ``state_dict()``; ``mask`` (registered with
    ``persistent=False``) is not, never appears in ``missing_keys``, and a checkpoint entry
    ``"mask"`` is reported as *unexpected*.
    """

    def __init__(self, features: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(features, features)
        self.register_buffer("scale", torch.ones(features))
        self.register_buffer("mask", torch.tril(torch.ones(features, features)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(x @ mask) * scale`` through ``fc``."""
        mask: torch.Tensor = self.get_buffer("mask")
        return self.fc(x @ mask) * self.get_buffer("scale")


_M = TypeVar("_M", bound=nn.Module)


def _seeded(seed: int, build: Callable[[], _M]) -> _M:
    """Build a module with the global RNG seeded, without disturbing the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def make_model(name: str = "cnn", num_classes: int = 10, seed: int = 0, **kw: Any) -> nn.Module:
    """Build a freshly initialised demo model (CPU, float32, train mode).

    Args:
        name: ``"cnn"`` (:class:`SmallCNN`) or ``"mlp"`` (:class:`MLP`).
        num_classes: classifier output size.
        seed: initialisation seed; the same seed gives bit-identical weights. The global RNG
            of the caller is left untouched.
        **kw: further constructor arguments (``width``, ``blocks``, ``layer2_mid`` for the CNN;
            ``in_features``, ``hidden``, ``depth`` for the MLP).
    """
    if name == "cnn":
        return _seeded(seed, lambda: SmallCNN(num_classes=num_classes, **kw))
    if name == "mlp":
        return _seeded(seed, lambda: MLP(num_classes=num_classes, **kw))
    raise ValueError(f"unknown demo model {name!r}; expected one of {MODELS}")


def tied_model(seed: int = 0, vocab_size: int = 50, dim: int = 16) -> TiedLM:
    """A :class:`TiedLM` whose ``lm_head.weight is embed.weight`` (tied weights)."""
    return _seeded(seed, lambda: TiedLM(vocab_size, dim))


def non_persistent_buffer_model(seed: int = 0, features: int = 4) -> BufferModel:
    """A :class:`BufferModel`: persistent buffer ``scale``, non-persistent buffer ``mask``."""
    return _seeded(seed, lambda: BufferModel(features))
