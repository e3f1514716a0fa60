"""``open_checkpoint``: from a path, mapping or module to a :class:`Checkpoint`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import NotAStateDictError, UnreadableCheckpointError
from ._core import Checkpoint, CheckpointSource, SourceLike
from ._dcp import open_dcp
from ._index import open_index
from ._memory import from_object
from ._paths import TORCH_SUFFIXES, check_inside, check_name, check_path, sniff
from ._safetensors import open_safetensors
from ._torchfile import open_torch
from ._unpickle import allowed_globals


def open_checkpoint(
    src: SourceLike,
    *,
    key: str | Sequence[str] | None = None,
    map_location: Any = "cpu",
    trust: bool | Iterable[Any] = False,
    progress: bool | None = None,
) -> Checkpoint:
    """Open a checkpoint lazily.

    Parameters
    ----------
    src
        A path (``.pt/.pth/.bin/.ckpt``, ``.safetensors``, a ``*.index.json``, a
        ``torch.distributed.checkpoint`` directory, or a directory holding one of these), a
        mapping of names to tensors (possibly nested), or an ``nn.Module``.
    key
        The nested entry holding the weights (``"state_dict"``, ``"ema"``, ...; a ``"a/b"``
        path or a sequence for deeper nesting); found automatically when None. The entry used
        is ``source.key``; the other weight sets are ``source.alternatives``.
    map_location
        Where tensors are read to (``"cpu"``, ``"meta"``, ...).
    trust
        ``False`` (default): weights-only loading, nothing from a pickle is executed.
        A list of classes/functions (``trust=[argparse.Namespace]``) allows just those and
        keeps weights-only loading for everything else (``torch.serialization.safe_globals``).
        ``True`` allows arbitrary pickled objects, i.e. runs code from the file: only for files
        you trust.
    progress
        Show a progress bar while reading shard headers (default: for more than 16 shards).

    Returns
    -------
    Checkpoint
        ``Mapping[str, TensorInfo]``, tensors read on demand.

    Raises
    ------
    CheckpointError
        (its subclasses) for anything unreadable, unsafe or not a state dict.
    """
    allowed_globals(trust)  # a wrong type fails here, before any file is touched
    if isinstance(src, Checkpoint):
        if key is not None:
            raise TypeError("key= cannot be applied to an already opened Checkpoint")
        return src
    if isinstance(src, nn.Module):
        return from_object(src.state_dict(), CheckpointSource(kind="module"), key)
    if isinstance(src, Mapping):
        return from_object(src, CheckpointSource(kind="mapping"), key)
    if isinstance(src, (str, os.PathLike)):
        check_name(src)
        return _open_path(
            Path(src), key=key, map_location=map_location, trust=trust, progress=progress
        )
    raise TypeError(
        f"cannot open a checkpoint from {type(src).__name__}; pass a file or directory path, "
        "a mapping of names to tensors, or an nn.Module"
    )


def _open_path(
    path: Path, *, key: Any, map_location: Any, trust: Any, progress: bool | None
) -> Checkpoint:
    if not os.path.exists(path):
        parent = path.parent if str(path.parent) else Path(".")
        hint = ""
        try:
            if parent.is_dir():
                near = sorted(
                    repr(p.name)[1:-1] for p in parent.iterdir() if _looks_like_checkpoint(p)
                )[:5]
                if near:
                    hint = f" Checkpoints in {parent}: {', '.join(near)}."
        except OSError:
            pass
        raise UnreadableCheckpointError(
            f"no file or directory at {str(path)!r} (resolved to {str(path.resolve())!r}). "
            f"Check the path.{hint}"
        )
    st = check_path(path, "any")
    if os.path.isdir(path):
        return _open_directory(
            path, key=key, map_location=map_location, trust=trust, progress=progress
        )
    if path.name.endswith(".json"):
        return open_index(path, key=key, map_location=map_location, trust=trust, progress=progress)
    fmt = sniff(path, st.st_size)
    if fmt == "safetensors":
        if key is not None:
            raise NotAStateDictError(
                f"{path} is a safetensors file: it holds one flat set of tensors, so key={key!r} "
                "cannot select a nested entry. Leave key=None."
            )
        return open_safetensors(path, map_location)
    return open_torch(path, fmt, key=key, map_location=map_location, trust=trust)


def _looks_like_checkpoint(p: Path) -> bool:
    return (
        p.suffix in (*TORCH_SUFFIXES, ".safetensors")
        or p.name.endswith(".index.json")
        or (p.is_dir() and (p / ".metadata").exists())
    )


def _open_directory(
    path: Path, *, key: Any, map_location: Any, trust: Any, progress: bool | None
) -> Checkpoint:
    # files found by listing the directory must resolve inside it (a symlink out is refused
    # before it is opened, so none of its bytes reach a message)
    if os.path.lexists(path / ".metadata"):
        check_path(check_inside(path, ".metadata", "the DCP metadata file"))  # before importing
        return open_dcp(path, key=key)
    entries = sorted(p.name for p in path.iterdir())
    found: str | None = None
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if name in entries:
            found = name
            break
    indexes = [e for e in entries if e.endswith(".index.json")]
    if found is None and len(indexes) == 1:
        found = indexes[0]
    if found is not None:
        return open_index(
            check_inside(path, found, "the index file"),
            key=key,
            map_location=map_location,
            trust=trust,
            progress=progress,
        )
    singles = [e for e in entries if e.endswith((".safetensors", *TORCH_SUFFIXES))]
    found = next(
        (n for n in ("model.safetensors", "pytorch_model.bin") if n in entries),
        singles[0] if len(singles) == 1 else None,
    )
    if found is not None:
        return open_checkpoint(
            check_inside(path, found, "the checkpoint file"),
            key=key,
            map_location=map_location,
            trust=trust,
        )
    shown = (
        ", ".join(repr(e)[1:-1] for e in entries[:10]) + (" ..." if len(entries) > 10 else "")
        or "nothing"
    )
    raise UnreadableCheckpointError(
        f"directory {path} holds no checkpoint sd_widgets recognises (a torch.distributed."
        "checkpoint '.metadata', a '*.index.json' with shards, or exactly one .safetensors/.pt/"
        f".pth/.bin/.ckpt file). It contains: {shown}. Pass the file's path instead."
    )
