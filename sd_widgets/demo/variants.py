"""The checkpoint variants people actually meet, and the model each is meant to be loaded into.

New head, renamed layer, DataParallel, ``torch.compile``, Lightning, fp16, no BatchNorm
statistics, training and EMA checkpoints, built from the pretrained demo models.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..statuses import BN_BUFFERS
from .models import MODELS, make_model
from .training import _clone_sd, _copy_metadata, _optimizer_state, _trained, pretrained

__all__ = [
    "LIGHTNING_VERSION",
    "NESTED_VARIANTS",
    "VARIANTS",
    "target_model",
    "variant",
    "variant_doc",
    "variants_for",
]

#: Version string written into Lightning-style checkpoints.
LIGHTNING_VERSION = "2.4.0"

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
        compiled: nn.Module = torch.compile(model)  # type: ignore[assignment]
        sd = compiled.state_dict()
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


def _v_no_bn_stats(base: str, seed: int) -> collections.OrderedDict[str, torch.Tensor]:
    """The pretrained CNN checkpoint without BatchNorm buffers (CNN only).

    Every ``running_mean``, ``running_var`` and ``num_batches_tracked`` is removed; ``_metadata``
    is kept, so ``strict=False`` reports all three kinds as missing (with the metadata gone,
    BatchNorm would treat the dict as legacy and fill ``num_batches_tracked`` in silently).
    Target: ``make_model("cnn")``.
    """
    if base != "cnn":
        raise ValueError("variant 'no_bn_stats' needs BatchNorm: use base='cnn'")
    return _filter_sd(_base_sd(base, seed), lambda k: k.rsplit(".", 1)[-1] not in BN_BUFFERS)


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
