"""Deterministic data and a cached, deterministic "pretraining" run for the demo models."""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .models import MODELS, make_model

__all__ = ["fine_tune", "pretrained", "synthetic_data"]

_IMAGE_SIZE = 16
_TRAIN_STEPS = 30
_BATCH = 64
_EMA_DECAY = 0.9


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

    Returns
    -------
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


def fine_tune(
    model: nn.Module,
    *,
    freeze: str | None = "backbone",
    steps: int = 10,
    seed: int = 1,
    shift: float = 0.5,
    train_mode: bool = True,
) -> nn.Module:
    """Fine-tune a demo CNN in place: plain SGD on the head, the ``freeze`` submodule "frozen".

    "Frozen" the usual way: ``requires_grad_(False)`` on the ``freeze`` submodule's parameters.
    With ``train_mode=True`` (what a training loop does) the model runs in ``train()`` mode,
    so every BatchNorm inside the frozen part still updates its running statistics on the new
    data (``shift`` moves its mean and spread); ``train_mode=False`` keeps the frozen part in
    ``eval()`` mode, which truly freezes it. Deterministic for a given ``seed``; the model is
    returned in ``eval()`` mode.

    Args:
        model: a demo CNN (``sd_widgets.demo.pretrained("cnn")``) or any model whose input is
            a batch of 3x16x16 images and whose output has one logit per class.
        freeze: the submodule to freeze (None: train everything).
        steps: SGD steps (batch 64, lr 0.05).
        seed: seed of the fine-tuning data.
        shift: distribution shift of the fine-tuning data (see :func:`synthetic_data`).
        train_mode: run the frozen part in ``train()`` mode, as a plain training loop does.
    """
    frozen = model.get_submodule(freeze) if freeze else None
    if frozen is not None:
        frozen.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    x, y = synthetic_data(n=4 * _BATCH, seed=seed, shift=shift)
    with torch.no_grad():
        n_out = model(x[:1]).shape[-1]
    y = y % n_out
    gen = torch.Generator().manual_seed(seed + 104729)
    model.train()
    if frozen is not None and not train_mode:
        frozen.eval()
    with _one_thread(), torch.inference_mode(False), torch.enable_grad():
        for _ in range(steps):
            idx = torch.randperm(x.shape[0], generator=gen)[:_BATCH]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                for p in params:
                    assert p.grad is not None
                    p.add_(p.grad, alpha=-_LR)
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
