"""Demo checkpoints written to disk in every common format.

``torch.save`` (zip and legacy), safetensors, sharded safetensors / ``.bin`` with their
``*.index.json``, ``torch.distributed.checkpoint`` directories and Lightning ``.ckpt``; and a
realistic training checkpoint that weights-only loading refuses (a pickled ``argparse.Namespace``).

Nothing here writes code-running payloads: the wheel ships no exploit generator (the
malicious pickle used by the security tests lives in ``tests/hostile.py``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from .training import _BATCH, _LR, _MOMENTUM
from .variants import _base_sd, _lightning_dict, _prefix_sd, variant

__all__ = [
    "FORMATS",
    "UNSAFE_KINDS",
    "save",
    "write_all_formats",
    "write_checkpoint",
    "write_unsafe_checkpoint",
]

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
UNSAFE_KINDS: tuple[str, ...] = ("namespace",)

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

    Returns
    -------
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

    Returns
    -------
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


def write_unsafe_checkpoint(
    path: str | os.PathLike[str],
    kind: str = "namespace",
    *,
    base: str = "cnn",
    seed: int = 0,
) -> pathlib.Path:
    """Write a realistic ``torch.save`` checkpoint that weights-only loading refuses.

    Parameters
    ----------
    path
        The file to write.
    kind
        ``"namespace"`` (the only kind): a training checkpoint ``{"model_state_dict", "epoch",
        "args": argparse.Namespace(...)}`` whose blocking global is ``argparse.Namespace``.
        Harmless when loaded with ``weights_only=False`` or under
        ``torch.serialization.safe_globals([argparse.Namespace])``, which is what
        ``open_checkpoint(path, trust=[argparse.Namespace])`` does.
    base, seed
        Which pretrained demo model's weights to store.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if kind not in UNSAFE_KINDS:
        raise ValueError(
            f"unknown unsafe kind {kind!r}; expected one of {UNSAFE_KINDS} (sd_widgets ships "
            "no code-running payloads; the security tests build theirs in tests/hostile.py)"
        )
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = argparse.Namespace(
        arch=base, lr=_LR, momentum=_MOMENTUM, epochs=3, batch_size=_BATCH, seed=seed
    )
    obj: dict[str, Any] = {"model_state_dict": _base_sd(base, seed), "epoch": 3, "args": args}
    torch.save(obj, path)
    return path
