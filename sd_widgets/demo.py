"""Small real models and checkpoint variants for notebooks, tests and workshops.

Everything here is created at run time on the CPU, deterministically from a seed, with no
download: two tiny models (:class:`MLP`, :class:`SmallCNN` with BatchNorm), a deterministic
"pretraining" (:func:`pretrained`), the checkpoint *variants* people actually meet
(:func:`variant`, :data:`VARIANTS`), files in every common format (:func:`write_checkpoint`,
:func:`write_all_formats`) and deliberately unsafe pickles for security tests
(:func:`write_unsafe_checkpoint`).

This module imports only torch, safetensors and the standard library (no other ``sd_widgets``
module), so it can be copied into a workshop on its own::

    from sd_widgets import demo

    ckpt = demo.variant("new_head")            # 10-class pretrained checkpoint
    model = demo.target_model("new_head")      # the 3-class model it is loaded into
    model.load_state_dict(ckpt, strict=False)  # RuntimeError: size mismatch (strict or not)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import functools
import json
import math
import os
import pathlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = [
    "FORMATS",
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

#: Model names accepted by :func:`make_model` and :func:`pretrained`.
MODELS: tuple[str, ...] = ("cnn", "mlp")

#: File formats accepted by :func:`save` and :func:`write_checkpoint`.
FORMATS: tuple[str, ...] = (
    "torch",
    "torch_legacy",
    "safetensors",
    "safetensors_sharded",
    "bin_sharded",
    "dcp",
    "lightning",
)

#: Kinds accepted by :func:`write_unsafe_checkpoint`.
UNSAFE_KINDS: tuple[str, ...] = ("namespace", "malicious")

#: Version string written into Lightning-style checkpoints.
LIGHTNING_VERSION = "2.4.0"

_IMAGE_SIZE = 16
_TRAIN_STEPS = 30
_BATCH = 64
_EMA_DECAY = 0.9


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


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
        return self.fc(x @ self.mask) * self.scale


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


# --------------------------------------------------------------------------------------------
# Data and "pretraining"
# --------------------------------------------------------------------------------------------


def synthetic_data(
    n: int = 256,
    num_classes: int = 10,
    seed: int = 0,
    shift: float = 0.0,
    image: bool = True,
    *,
    in_channels: int = 3,
    in_features: int = 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic, learnable classification data.

    Each class has a fixed random prototype (the same for every ``seed``, so different seeds
    are different samples of *one* task); a sample is its class prototype plus Gaussian noise.

    Args:
        n: number of samples.
        num_classes: number of classes; labels are balanced-ish and shuffled.
        seed: seed for labels and noise.
        shift: distribution shift for teaching BatchNorm "reset or keep": inputs become
            ``x * (1 + |shift|) + shift``, moving both the mean and the spread that BN tracks.
        image: ``True`` gives images ``[n, in_channels, 16, 16]`` (for :class:`SmallCNN`),
            ``False`` vectors ``[n, in_features]`` (for :class:`MLP`).

    Returns:
        ``(x, y)``: float32 inputs and int64 labels ``[n]``.
    """
    shape = (in_channels, _IMAGE_SIZE, _IMAGE_SIZE) if image else (in_features,)
    proto_gen = torch.Generator().manual_seed(1_000_003 * num_classes + (17 if image else 29))
    prototypes = torch.randn((num_classes, *shape), generator=proto_gen)
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    noise = torch.randn((n, *shape), generator=gen)
    x = prototypes[y] + 0.8 * noise
    if shift:
        x = x * (1.0 + abs(shift)) + shift
    return x, y


class _Trained:
    """Result of the cached deterministic training run (never handed out without cloning)."""

    def __init__(
        self,
        state_dict: collections.OrderedDict[str, torch.Tensor],
        ema_state_dict: collections.OrderedDict[str, torch.Tensor],
        optimizer_state_dict: dict[str, Any] | None,
        loss: float,
        hparams: dict[str, Any],
    ) -> None:
        self.state_dict = state_dict
        self.ema_state_dict = ema_state_dict
        self.optimizer_state_dict = optimizer_state_dict
        self.loss = loss
        self.hparams = hparams


_LR = 0.05
_MOMENTUM = 0.9


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run tiny tensor ops on one intra-op thread (restored afterwards).

    For models this small, threading buys nothing and, on a busy shared CPU, oversubscribed
    OpenMP threads can make a 0.3 s training run take tens of seconds.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@functools.lru_cache(maxsize=64)
def _train(
    name: str, seed: int, frozen_kw: tuple[tuple[str, Any], ...], torch_optim: bool
) -> _Trained:
    """30 SGD-with-momentum steps on :func:`synthetic_data`, tracking a weight EMA.

    With ``torch_optim=False`` the update is written out by hand: it is exactly
    ``torch.optim.SGD(lr=0.05, momentum=0.9)``'s single-tensor CPU update (``buf = grad`` on the
    first step, then ``buf = momentum * buf + grad``; ``p -= lr * buf``), which gives the same
    bits, but avoids the ~1 s one-off cost of ``torch.optim.Optimizer.__init__`` importing
    TorchDynamo. ``torch_optim=True`` uses the real optimizer and returns its ``state_dict()``.
    """
    kw = dict(frozen_kw)
    model = make_model(name, seed=seed, **kw)
    num_classes = int(kw.get("num_classes", 10))
    if name == "cnn":
        x, y = synthetic_data(
            n=4 * _BATCH,
            num_classes=num_classes,
            seed=seed,
            in_channels=int(kw.get("in_channels", 3)),
        )
    else:
        x, y = synthetic_data(
            n=4 * _BATCH,
            num_classes=num_classes,
            seed=seed,
            image=False,
            in_features=int(kw.get("in_features", 20)),
        )
    ema = copy.deepcopy(model)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=_LR, momentum=_MOMENTUM) if torch_optim else None
    bufs: list[torch.Tensor | None] = [None] * len(params)
    gen = torch.Generator().manual_seed(seed + 7919)
    model.train()
    loss_value = math.nan
    with _one_thread(), torch.inference_mode(False), torch.enable_grad():
        for _ in range(_TRAIN_STEPS):
            idx = torch.randperm(x.shape[0], generator=gen)[:_BATCH]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            for p in params:
                p.grad = None
            loss.backward()
            loss_value = float(loss.detach())
            with torch.no_grad():
                if opt is not None:
                    opt.step()
                else:
                    for i, p in enumerate(params):
                        assert p.grad is not None
                        buf = bufs[i]
                        if buf is None:
                            buf = bufs[i] = torch.clone(p.grad).detach()
                        else:
                            buf.mul_(_MOMENTUM).add_(p.grad, alpha=1)
                        p.add_(buf, alpha=-_LR)
                for e, m in zip(
                    ema.state_dict().values(), model.state_dict().values(), strict=True
                ):
                    if e.is_floating_point():
                        e.mul_(_EMA_DECAY).add_(m, alpha=1.0 - _EMA_DECAY)
                    else:
                        e.copy_(m)
    hparams = {"model": name, "seed": seed, "lr": _LR, "momentum": _MOMENTUM, **kw}
    return _Trained(
        state_dict=_clone_sd(model.state_dict()),
        ema_state_dict=_clone_sd(ema.state_dict()),
        optimizer_state_dict=copy.deepcopy(opt.state_dict()) if opt is not None else None,
        loss=round(loss_value, 6),
        hparams=hparams,
    )


def _trained(name: str, seed: int, *, torch_optim: bool = False, **kw: Any) -> _Trained:
    if name not in MODELS:
        raise ValueError(f"unknown demo model {name!r}; expected one of {MODELS}")
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items()))
    return _train(name, seed, frozen, torch_optim)


def _optimizer_state(trained: _Trained) -> dict[str, Any]:
    """A copy of the real ``torch.optim.SGD(momentum=0.9).state_dict()`` after training."""
    state = trained.optimizer_state_dict
    assert state is not None
    return copy.deepcopy(state)


def pretrained(name: str = "cnn", seed: int = 0, **kw: Any) -> nn.Module:
    """A demo model with deterministically "trained" weights, returned in ``eval()`` mode.

    The weights come from 30 SGD-with-momentum steps (batch 64) on
    ``synthetic_data(seed=seed)`` starting from ``make_model(name, seed=seed)``, so they differ
    from any fresh initialisation and the CNN's BatchNorm running statistics are non-trivial
    (not 0 / 1; ``num_batches_tracked == 30``). Results are cached per ``(name, seed, kw)``;
    every call returns a new, independent module.

    Args:
        name: ``"cnn"`` or ``"mlp"``.
        seed: initialisation, data and shuffling seed.
        **kw: passed to :func:`make_model` (e.g. ``num_classes=3``, ``width=8``).
    """
    trained = _trained(name, seed, **kw)
    model = make_model(name, seed=seed, **kw)
    model.load_state_dict(trained.state_dict)
    return model.eval()


def _clone_sd(
    sd: Mapping[str, torch.Tensor],
) -> collections.OrderedDict[str, torch.Tensor]:
    """Detached CPU clones of every tensor, keeping ``_metadata`` (copied)."""
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict(
        (k, v.detach().to("cpu").clone()) for k, v in sd.items()
    )
    _copy_metadata(sd, out)
    return out


def _copy_metadata(
    src: Mapping[str, Any],
    dst: collections.OrderedDict[str, Any],
    rename: Callable[[str], str] | None = None,
) -> None:
    """Copy ``src._metadata`` onto ``dst`` (module prefixes mapped through ``rename``)."""
    meta = getattr(src, "_metadata", None)
    if meta is None:
        return
    mapped: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
    for prefix, value in meta.items():
        mapped[rename(prefix) if rename else prefix] = dict(value)
    dst._metadata = mapped  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Checkpoint variants
# --------------------------------------------------------------------------------------------

_NEW_HEAD_CLASSES = 3
_HEAD = {"cnn": "classifier", "mlp": "head"}
_RENAMED_HEAD = {"cnn": "fc", "mlp": "output"}


def _rename_prefix(
    sd: Mapping[str, torch.Tensor], old: str, new: str
) -> collections.OrderedDict[str, torch.Tensor]:
    """Rename module ``old`` to ``new`` in keys and in ``_metadata``, keeping the order."""

    def mapper(key: str) -> str:
        if key == old:
            return new
        if key.startswith(old + "."):
            return new + key[len(old) :]
        return key

    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict(
        (mapper(k), v) for k, v in sd.items()
    )
    _copy_metadata(sd, out, mapper)
    return out


def _filter_sd(
    sd: Mapping[str, torch.Tensor], keep: Callable[[str], bool]
) -> collections.OrderedDict[str, torch.Tensor]:
    """Keep only some keys; ``_metadata`` is carried over unchanged (PyTorch fact #6)."""
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict(
        (k, v) for k, v in sd.items() if keep(k)
    )
    _copy_metadata(sd, out)
    return out


def _base_sd(base: str, seed: int, **kw: Any) -> collections.OrderedDict[str, torch.Tensor]:
    return _clone_sd(_trained(base, seed, **kw).state_dict)


def _v_identical(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """The pretrained state_dict, exactly as ``pretrained(base, seed).state_dict()`` gives it.

    Target: ``make_model(base)``. Loads strictly; every key matches.
    """
    return _base_sd(base, seed)


def _v_new_head(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """The 10-class pretrained checkpoint, meant for a model with a 3-class head.

    ``variant("new_head")`` is the same 10-class checkpoint as ``"identical"``; the *target* is
    ``make_model(base, num_classes=3)`` (see :func:`target_model`). The head
    (``classifier.*`` for the CNN, ``head.*`` for the MLP) has a size mismatch, and
    ``load_state_dict`` raises ``RuntimeError`` even with ``strict=False`` — after copying
    every matching tensor (the load is not atomic).
    """
    return _base_sd(base, seed)


def _v_resized_layer(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """Checkpoint of a model with one hidden layer resized.

    CNN: the first ``layer2`` block is 48 channels wide inside (``layer2_mid=48`` instead of
    32), so ``backbone.layer2.0.conv1.weight``, ``bn1.{weight,bias,running_mean,running_var}``
    and ``conv2.weight`` mismatch (``bn1.num_batches_tracked`` is a scalar and still matches).
    MLP: ``fc2`` is 128 wide instead of 64, so ``fc2.weight``, ``fc2.bias`` and
    ``head.weight`` mismatch. Target: ``make_model(base)``.
    """
    if base == "cnn":
        return _base_sd(base, seed, layer2_mid=48)
    return _base_sd(base, seed, hidden=(64, 128))


def _v_added_layer(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """Checkpoint of a deeper model: it has a layer the target lacks (unexpected keys).

    CNN: a second ``layer2`` block, ``backbone.layer2.1.*`` (10 keys incl. BN buffers).
    MLP: a third hidden layer, ``fc3.weight`` / ``fc3.bias``. Target: ``make_model(base)``.
    """
    if base == "cnn":
        return _base_sd(base, seed, blocks=(1, 2))
    return _base_sd(base, seed, depth=3)


def _v_removed_layer(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """Checkpoint of a shallower model: it lacks a layer the target has (missing keys).

    CNN: ``layer1`` is empty, so all ``backbone.layer1.0.*`` keys (params and BN buffers) are
    absent. MLP: only one hidden layer, so ``fc2.weight`` / ``fc2.bias`` are missing.
    Target: ``make_model(base)``.

    Subtle, and real: the shallower model's ``_metadata`` has no entry for
    ``backbone.layer1.0.bn1`` / ``bn2``, so those BatchNorms take the legacy path and fill
    ``num_batches_tracked`` in from themselves: ``strict=False`` reports the other 14 keys
    missing but not the two ``num_batches_tracked``.
    """
    if base == "cnn":
        return _base_sd(base, seed, blocks=(0, 1))
    return _base_sd(base, seed, depth=1)


def _v_renamed_layer(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """The pretrained checkpoint with the head saved under another name.

    CNN: ``classifier.*`` saved as ``fc.*``; MLP: ``head.*`` saved as ``output.*`` (also in
    ``_metadata``). Under ``strict=False`` nothing is copied for the head: keys are matched by
    name, never by order, giving missing + unexpected. Target: ``make_model(base)``.
    """
    return _rename_prefix(_base_sd(base, seed), _HEAD[base], _RENAMED_HEAD[base])


def _v_dataparallel(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """``nn.DataParallel(model).state_dict()``: every key starts with ``module.``.

    Produced by a real ``DataParallel`` wrapper (which works on CPU), so ``_metadata`` is
    prefixed too. Target: ``make_model(base)``; strip the prefix with
    ``torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(sd, "module.")``.
    Loaded unstripped with ``strict=False``, nothing is copied and every key is unexpected,
    but ``missing_keys`` omits each ``num_batches_tracked`` (no BatchNorm finds its
    ``_metadata`` entry, so each takes the legacy path).
    """
    return _clone_sd(nn.DataParallel(pretrained(base, seed)).state_dict())


def _v_compiled(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """``torch.compile(model).state_dict()``: every key starts with ``_orig_mod.``.

    ``torch.compile`` only wraps the module (compilation happens at the first forward), so no
    C compiler is needed; the first call in a process pays ~1-2 s for importing TorchDynamo.
    Target: ``make_model(base)``.
    """
    model = pretrained(base, seed)
    try:
        sd = torch.compile(model).state_dict()
    except Exception:  # pragma: no cover - torch.compile unsupported on this platform/Python
        # Same keys and _metadata as the real OptimizedModule wrapper produces.
        return _prefix_sd(model.state_dict(), "_orig_mod")
    return _clone_sd(sd)


def _prefix_sd(
    sd: Mapping[str, torch.Tensor], prefix: str
) -> collections.OrderedDict[str, torch.Tensor]:
    """Prefix every key (and every ``_metadata`` module path) with ``prefix + "."``.

    Mirrors what wrapping the model in a module attribute called ``prefix`` does: the root
    metadata entry ``""`` stays and a copy appears under ``prefix``.
    """
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict(
        (f"{prefix}.{k}", v.detach().clone()) for k, v in sd.items()
    )
    meta = getattr(sd, "_metadata", None)
    if meta is not None:
        mapped: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        mapped[""] = {"version": 1}
        for path, value in meta.items():
            mapped[f"{prefix}.{path}" if path else prefix] = dict(value)
        out._metadata = mapped  # type: ignore[attr-defined]
    return out


class _LightningModuleLike(nn.Module):
    """Stands in for a ``LightningModule`` holding the network as ``self.model``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


def _lightning_dict(
    state_dict: collections.OrderedDict[str, torch.Tensor],
    optimizer_state: dict[str, Any] | None = None,
    hparams: dict[str, Any] | None = None,
    epoch: int = 3,
    global_step: int = 120,
) -> dict[str, Any]:
    """The top-level structure of a Lightning 2.x ``.ckpt`` around an already-prefixed dict."""
    return {
        "epoch": epoch,
        "global_step": global_step,
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "state_dict": state_dict,
        "loops": {
            "fit_loop": {
                "state_dict": {},
                "epoch_progress": {
                    "total": {
                        "ready": epoch + 1,
                        "started": epoch + 1,
                        "processed": epoch,
                        "completed": epoch,
                    },
                },
            }
        },
        "callbacks": {},
        "optimizer_states": [optimizer_state] if optimizer_state is not None else [],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": dict(hparams or {}),
    }


def _v_lightning(base: str, seed: int) -> dict[str, Any]:
    """A PyTorch Lightning ``.ckpt`` dict (nested).

    ``{"state_dict": {"model.<key>": ...}, "epoch": 3, "global_step": 120,
    "pytorch-lightning_version": "2.4.0", "optimizer_states": [...], "lr_schedulers": [],
    "loops": {...}, "callbacks": {}, "hparams_name": "kwargs", "hyper_parameters": {...}}``.
    The inner state_dict comes from a real wrapper module holding the net as ``self.model``,
    so its ``_metadata`` is prefixed like Lightning's. Weights key: ``"state_dict"``, prefix
    ``model.``. Loadable with ``torch.load`` (weights-only). Target: ``make_model(base)``.
    """
    trained = _trained(base, seed, torch_optim=True)
    net = make_model(base, seed=seed)
    net.load_state_dict(trained.state_dict)
    sd = _clone_sd(_LightningModuleLike(net).state_dict())
    return _lightning_dict(sd, _optimizer_state(trained), trained.hparams)


def _v_fp16(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """The pretrained checkpoint with every floating tensor in ``torch.float16``.

    Integer tensors (``num_batches_tracked``, int64) are unchanged. Loading into the float32
    target ``make_model(base)`` casts silently.
    """
    sd = _base_sd(base, seed)
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict(
        (k, v.half() if v.is_floating_point() else v) for k, v in sd.items()
    )
    _copy_metadata(sd, out)
    return out


_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _v_no_bn_stats(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """The pretrained CNN checkpoint without BatchNorm buffers (CNN only).

    Every ``running_mean``, ``running_var`` and ``num_batches_tracked`` is removed; ``_metadata``
    is kept, so ``strict=False`` reports all three kinds as missing (with the metadata gone,
    BatchNorm would treat the dict as legacy and fill ``num_batches_tracked`` in silently).
    Target: ``make_model("cnn")``.
    """
    if base != "cnn":
        raise ValueError("variant 'no_bn_stats' needs BatchNorm: use base='cnn'")
    return _filter_sd(_base_sd(base, seed), lambda k: k.rsplit(".", 1)[-1] not in _BN_BUFFERS)


def _v_training(base: str, seed: int) -> dict[str, Any]:
    """A resumable training checkpoint (nested).

    ``{"model_state_dict": sd, "optimizer_state_dict": <SGD(momentum=0.9).state_dict() after
    30 steps: a momentum_buffer per parameter>, "epoch": 3, "loss": 0.42}``. Weights key:
    ``"model_state_dict"``. Target: ``make_model(base)``.
    """
    trained = _trained(base, seed, torch_optim=True)
    return {
        "model_state_dict": _clone_sd(trained.state_dict),
        "optimizer_state_dict": _optimizer_state(trained),
        "epoch": 3,
        "loss": 0.42,
    }


def _v_ema(base: str, seed: int) -> dict[str, Any]:
    """Raw weights plus an exponential moving average of them (nested).

    ``{"model": sd, "ema": ema_sd}``; the EMA (decay 0.9, timm ``ModelEmaV2`` style: floating
    entries averaged, integer buffers copied) was tracked during the same 30 steps, so the two
    have identical keys and shapes but different values. Target: ``make_model(base)``.
    """
    trained = _trained(base, seed)
    return {"model": _clone_sd(trained.state_dict), "ema": _clone_sd(trained.ema_state_dict)}


_VARIANT_FUNCS: dict[str, Callable[[str, int], Any]] = {
    "identical": _v_identical,
    "new_head": _v_new_head,
    "resized_layer": _v_resized_layer,
    "added_layer": _v_added_layer,
    "removed_layer": _v_removed_layer,
    "renamed_layer": _v_renamed_layer,
    "dataparallel": _v_dataparallel,
    "compiled": _v_compiled,
    "lightning": _v_lightning,
    "fp16": _v_fp16,
    "no_bn_stats": _v_no_bn_stats,
    "training": _v_training,
    "ema": _v_ema,
}

#: Names accepted by :func:`variant`, in teaching order.
VARIANTS: tuple[str, ...] = tuple(_VARIANT_FUNCS)

#: Variants whose result is a nested dict, and the key holding the weights.
NESTED_VARIANTS: dict[str, str] = {
    "lightning": "state_dict",
    "training": "model_state_dict",
    "ema": "model",
}


def variants_for(base: str = "cnn") -> tuple[str, ...]:
    """The variant names that apply to ``base`` (``no_bn_stats`` needs the CNN)."""
    if base not in MODELS:
        raise ValueError(f"unknown demo model {base!r}; expected one of {MODELS}")
    return tuple(v for v in VARIANTS if base == "cnn" or v != "no_bn_stats")


def variant_doc(name: str) -> str:
    """The docstring of variant ``name`` (what it contains and what loading it does)."""
    _check_variant(name)
    doc = _VARIANT_FUNCS[name].__doc__ or ""
    lines = doc.strip().splitlines()
    return "\n".join(line.strip() for line in lines)


def _check_variant(name: str) -> None:
    if name not in _VARIANT_FUNCS:
        raise ValueError(f"unknown variant {name!r}; expected one of {VARIANTS}")


def variant(name: str, base: str = "cnn", seed: int = 0) -> Any:
    """Build checkpoint variant ``name`` of the pretrained ``base`` model.

    Flat variants return a ``collections.OrderedDict[str, Tensor]`` with ``_metadata`` exactly as
    ``model.state_dict()`` produces it (transformed along with the keys for renamed/prefixed
    variants); nested ones (``lightning``, ``training``, ``ema``, see
    :data:`NESTED_VARIANTS`) return a ``dict``. Every call returns fresh tensors.

    The model each variant is meant to be loaded into is :func:`target_model` (``new_head``:
    a 3-class model; all others: the default ``make_model(base)``). See :func:`variant_doc`.
    """
    _check_variant(name)
    if base not in MODELS:
        raise ValueError(f"unknown demo model {base!r}; expected one of {MODELS}")
    return _VARIANT_FUNCS[name](base, seed)


def target_model(variant_name: str = "identical", base: str = "cnn", seed: int = 1) -> nn.Module:
    """The freshly initialised model a variant is meant to be loaded into.

    ``new_head`` -> ``make_model(base, num_classes=3, seed=seed)``; every other variant ->
    ``make_model(base, seed=seed)``. The default ``seed=1`` differs from the checkpoints'
    ``seed=0``, so a successful load visibly changes the weights.
    """
    _check_variant(variant_name)
    num_classes = _NEW_HEAD_CLASSES if variant_name == "new_head" else 10
    return make_model(base, num_classes=num_classes, seed=seed)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

_SUFFIX = {
    "torch": ".pt",
    "torch_legacy": ".pth",
    "safetensors": ".safetensors",
    "lightning": ".ckpt",
}


def _is_flat(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _require_flat(obj: Any, fmt: str) -> Mapping[str, torch.Tensor]:
    if not _is_flat(obj):
        hint = ""
        if isinstance(obj, Mapping):
            nested = [k for k, v in obj.items() if isinstance(v, Mapping)]
            if nested:
                hint = f"; pass the nested weights instead, e.g. obj[{nested[0]!r}]"
        raise ValueError(
            f"format {fmt!r} stores only a flat mapping of str -> Tensor, got "
            f"{type(obj).__name__} with non-tensor entries{hint}"
        )
    return obj


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    return (str(t.device), t.untyped_storage().data_ptr())


def _unshare(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors, with storage-sharing (tied) tensors cloned so each is standalone."""
    counts: collections.Counter[tuple[str, int]] = collections.Counter(
        _storage_key(v) for v in sd.values() if v.numel() > 0
    )
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        t = v.detach()
        if v.numel() > 0 and counts[_storage_key(v)] > 1:
            t = t.clone()
        out[k] = t.contiguous()
    return out


def _shard(sd: Mapping[str, torch.Tensor], num_shards: int) -> list[list[str]]:
    """Split keys, in order, into at most ``num_shards`` contiguous groups of similar bytes."""
    keys = list(sd)
    total = sum(v.numel() * v.element_size() for v in sd.values())
    groups: list[list[str]] = [[] for _ in range(max(1, num_shards))]
    acc = 0
    for k in keys:
        nbytes = sd[k].numel() * sd[k].element_size()
        idx = min(len(groups) - 1, int(acc * len(groups) / total)) if total else 0
        groups[idx].append(k)
        acc += nbytes
    return [g for g in groups if g]


def _lightning_wrap(obj: Any) -> dict[str, Any]:
    """Lightning ``.ckpt`` structure around ``obj`` (already-Lightning dicts pass through)."""
    if isinstance(obj, Mapping) and "pytorch-lightning_version" in obj and "state_dict" in obj:
        return dict(obj)
    sd = _require_flat(obj, "lightning")
    return _lightning_dict(_prefix_sd(sd, "model"))


def save(
    sd_or_obj: Any, path: str | os.PathLike[str], format: str = "torch", *, num_shards: int = 3
) -> pathlib.Path:
    """Write a state_dict (or a checkpoint object) in one of :data:`FORMATS`.

    Args:
        sd_or_obj: a flat ``str -> Tensor`` mapping, or (``torch``, ``torch_legacy``,
            ``lightning``, ``dcp``) any weights-only-picklable object such as a nested variant.
        path: the file to write (``torch``, ``torch_legacy``, ``safetensors``, ``lightning``)
            or the directory to create (``safetensors_sharded``, ``bin_sharded``, ``dcp``).
        format:
            ``"torch"`` — ``torch.save`` zip file;
            ``"torch_legacy"`` — ``torch.save(..., _use_new_zipfile_serialization=False)``;
            ``"safetensors"`` — ``safetensors.torch.save_file`` (flat tensors only, tied tensors
            cloned, header metadata ``{"format": "pt"}`` like Hugging Face, no ``_metadata``);
            ``"safetensors_sharded"`` — ``model-0000i-of-0000n.safetensors`` plus
            ``model.safetensors.index.json`` (``{"metadata": {"total_size": ...},
            "weight_map": {key: file}}``);
            ``"bin_sharded"`` — ``pytorch_model-0000i-of-0000n.bin`` (torch files) plus
            ``pytorch_model.bin.index.json``;
            ``"dcp"`` — a ``torch.distributed.checkpoint`` directory (single process, no
            process group);
            ``"lightning"`` — a ``.ckpt`` (flat state_dicts are wrapped as ``model.<key>`` in
            the Lightning structure; Lightning dicts are saved as they are).
        num_shards: number of shards for the sharded formats (fewer if there are fewer keys).

    Returns:
        What to open: the file, the ``*.index.json`` of a sharded checkpoint, or the DCP
        directory.
    """
    path = pathlib.Path(path)
    if format in ("torch", "torch_legacy", "lightning"):
        path.parent.mkdir(parents=True, exist_ok=True)
        obj = _lightning_wrap(sd_or_obj) if format == "lightning" else sd_or_obj
        if format == "torch_legacy":
            torch.save(obj, path, _use_new_zipfile_serialization=False)
        else:
            torch.save(obj, path)
        return path
    if format == "safetensors":
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(_unshare(_require_flat(sd_or_obj, format)), str(path), metadata={"format": "pt"})
        return path
    if format in ("safetensors_sharded", "bin_sharded"):
        return _save_sharded(_require_flat(sd_or_obj, format), path, format, num_shards)
    if format == "dcp":
        return _save_dcp(sd_or_obj, path)
    raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")


def _save_sharded(
    sd: Mapping[str, torch.Tensor], directory: pathlib.Path, fmt: str, num_shards: int
) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = _unshare(sd)
    groups = _shard(tensors, num_shards)
    n = len(groups)
    if fmt == "safetensors_sharded":
        from safetensors.torch import save_file

        stem, ext, index_name = "model", "safetensors", "model.safetensors.index.json"
    else:
        stem, ext, index_name = "pytorch_model", "bin", "pytorch_model.bin.index.json"
    weight_map: dict[str, str] = {}
    for i, group in enumerate(groups, start=1):
        fname = f"{stem}-{i:05d}-of-{n:05d}.{ext}"
        part = collections.OrderedDict((k, tensors[k]) for k in group)
        if fmt == "safetensors_sharded":
            save_file(part, str(directory / fname), metadata={"format": "pt"})
        else:
            torch.save(part, directory / fname)
        weight_map.update(dict.fromkeys(group, fname))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    index_path = directory / index_name
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return index_path


def _save_dcp(obj: Any, directory: pathlib.Path) -> pathlib.Path:
    if not isinstance(obj, Mapping):
        raise ValueError(f"format 'dcp' stores a mapping, got {type(obj).__name__}")
    import torch.distributed.checkpoint as dcp

    directory.mkdir(parents=True, exist_ok=True)
    state = dict(_unshare(obj)) if _is_flat(obj) else dict(obj)
    with warnings.catch_warnings():
        # Single process, no process group: DCP says so with a UserWarning; that is intended.
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save(state, checkpoint_id=str(directory), no_dist=True)
    return directory


def write_checkpoint(
    dirpath: str | os.PathLike[str],
    variant_name: str = "identical",
    format: str = "torch",
    base: str = "cnn",
    seed: int = 0,
) -> pathlib.Path:
    """Write :func:`variant` ``variant_name`` of ``base`` into ``dirpath`` in ``format``.

    Files are named ``<base>-<variant><suffix>`` (``.pt``, ``.pth``, ``.safetensors``,
    ``.ckpt``); directory formats go to ``<base>-<variant>-<format>/``. Nested variants
    (``lightning``, ``training``, ``ema``) can only be written in the pickle-based formats
    (``torch``, ``torch_legacy``, ``lightning``, ``dcp``); the others raise ``ValueError``.

    Returns:
        The path to open (see :func:`save`).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
    obj = variant(variant_name, base=base, seed=seed)
    directory = pathlib.Path(dirpath)
    if format in _SUFFIX:
        target = directory / f"{base}-{variant_name}{_SUFFIX[format]}"
    else:
        target = directory / f"{base}-{variant_name}-{format}"
    return save(obj, target, format)


def write_all_formats(
    dirpath: str | os.PathLike[str],
    variant_name: str = "identical",
    base: str = "cnn",
    seed: int = 0,
) -> dict[str, pathlib.Path]:
    """Write one (flat) variant in every format of :data:`FORMATS`; ``{format: path}``."""
    return {
        fmt: write_checkpoint(dirpath, variant_name, fmt, base=base, seed=seed) for fmt in FORMATS
    }


# --------------------------------------------------------------------------------------------
# Unsafe checkpoints (security tests)
# --------------------------------------------------------------------------------------------


class _CreateMarker:
    """Pickles to ``io.open(marker, "w")``: unpickling with ``weights_only=False`` creates the
    marker file. Creating or pickling this object runs nothing."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def write_unsafe_checkpoint(
    path: str | os.PathLike[str],
    kind: str = "namespace",
    *,
    marker: str | os.PathLike[str] | None = None,
    base: str = "cnn",
    seed: int = 0,
) -> pathlib.Path:
    """Write a ``torch.save`` checkpoint that weights-only loading refuses.

    Kinds:
        ``"namespace"`` — a realistic training checkpoint ``{"model_state_dict", ...,
        "args": argparse.Namespace(...)}``; blocking global ``argparse.Namespace``. Harmless
        when loaded with ``weights_only=False`` or under
        ``torch.serialization.safe_globals([argparse.Namespace])``.
        ``"malicious"`` — ``{"state_dict": sd, "callback": <payload>}`` whose payload
        unpickles as ``open(marker, "w")`` and so *creates the file* ``marker`` (required)
        when, and only when, someone loads it with ``weights_only=False``. Blocking global:
        ``io.open``. Writing the file executes nothing.

    Returns:
        ``path``.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = _base_sd(base, seed)
    if kind == "namespace":
        args = argparse.Namespace(
            arch=base,
            lr=_LR,
            momentum=_MOMENTUM,
            epochs=3,
            batch_size=_BATCH,
            seed=seed,
        )
        obj: dict[str, Any] = {"model_state_dict": sd, "epoch": 3, "args": args}
    elif kind == "malicious":
        if marker is None:
            raise ValueError("kind='malicious' needs marker=<path the payload would create>")
        obj = {"state_dict": sd, "callback": _CreateMarker(pathlib.Path(marker))}
    else:
        raise ValueError(f"unknown unsafe kind {kind!r}; expected one of {UNSAFE_KINDS}")
    torch.save(obj, path)
    return path


# --------------------------------------------------------------------------------------------
# Overview
# --------------------------------------------------------------------------------------------


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
