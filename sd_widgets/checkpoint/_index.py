"""Sharded checkpoints with an index (``*.index.json``, the Hugging Face layout).

The index is untrusted like everything else: it must be a regular file under
:data:`~sd_widgets.checkpoint._paths.MAX_INDEX_BYTES`, valid JSON of the expected shape, and
every shard it names must resolve (after symlinks) to a regular file inside the index's own
directory. A name that points elsewhere (``../x``, an absolute path, a symlink out) is refused
naming the entry; the file it points at is never opened, so no byte of it reaches a message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import NotAStateDictError, UnreadableCheckpointError
from ._core import Checkpoint, CheckpointSource, TensorInfo, _type_summary
from ._memory import info_from_tensor
from ._paths import (
    MAX_INDEX_BYTES,
    FileStamp,
    check_inside,
    check_name,
    check_path,
    read_regular,
    sniff,
)
from ._safetensors import (
    device_str,
    read_safetensors_header,
    safetensors_loader,
    safetensors_row_reader,
)
from ._torchfile import torch_load
from ._unpickle import trust_fields


def _entry(name: Any) -> str:
    text = repr(name)
    return text if len(text) <= 200 else text[:200] + "..."


def shard_path(index: Path, tensor: str, shard: Any) -> Path:
    """The checked path of one shard named by an index.

    Parameters
    ----------
    index
        The index file.
    tensor
        The weight_map entry (for messages).
    shard
        The shard name the entry maps to.

    Returns
    -------
    Path
        The shard, confined to the index's directory (symlinks resolved).
    """
    if not isinstance(shard, str):
        raise UnreadableCheckpointError(
            f"{index}: weight_map entry {_entry(tensor)} maps to a {type(shard).__name__} "
            f"({_entry(shard)}), not a shard file name. The index is corrupt."
        )
    try:
        check_name(shard)
    except UnreadableCheckpointError as exc:
        raise UnreadableCheckpointError(
            f"{index}: weight_map entry {_entry(tensor)} names an impossible shard: {exc}"
        ) from None
    if os.path.isabs(shard) or shard in ("", ".", "..") or ".." in Path(shard).parts:
        raise UnreadableCheckpointError(
            f"{index}: weight_map entry {_entry(tensor)} names the shard {_entry(shard)}, which "
            "is not a file name inside the index's directory. Shards must sit next to their "
            "index; the path was not opened."
        )
    try:
        return check_inside(index.parent, shard, f"weight_map entry {_entry(tensor)}'s shard")
    except UnreadableCheckpointError:
        raise UnreadableCheckpointError(
            f"{index}: weight_map entry {_entry(tensor)} names the shard {_entry(shard)}, which "
            "resolves (through a symlink) outside the index's directory. Shards must sit next "
            "to their index; the file was not opened."
        ) from None


def _json_type(value: Any) -> str:
    """What JSON calls the type of a parsed value (``null``, ``array``, …)."""
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string")):
        if isinstance(value, kind):
            return name
    return "number"


def open_index(
    path: Path, *, key: Any, map_location: Any, trust: Any, progress: bool | None
) -> Checkpoint:
    """Open a ``*.index.json`` and the shards it names (headers only for safetensors)."""
    stamps = [FileStamp.of(path)] if os.path.exists(path) else []
    data = read_regular(path, MAX_INDEX_BYTES, "index file")
    try:
        index = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnreadableCheckpointError(f"{path} is not valid JSON ({str(exc)[:200]}).") from None
    except RecursionError:
        raise UnreadableCheckpointError(
            f"{path} is not a sharded-checkpoint index: its JSON is nested too deeply (hostile "
            "or corrupt)."
        ) from None
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        if not isinstance(index, dict):
            found = f"a JSON {_json_type(index)}"
        elif "weight_map" not in index:
            names = ", ".join(repr(k[:60]) for k in list(index)[:5]) or "none"
            found = f"an object without 'weight_map' (its keys: {names}"
            found += ", …)" if len(index) > 5 else ")"
        else:
            found = f"a 'weight_map' that is a JSON {_json_type(index['weight_map'])}"
        raise UnreadableCheckpointError(
            f"{path} is not a sharded-checkpoint index: expected a JSON object with a "
            f"'weight_map' of tensor name → shard file (as written by save_pretrained); "
            f"found {found}."
        )
    if key is not None:
        raise NotAStateDictError(
            f"{path} is a sharded index of flat shards; key={key!r} cannot select a nested entry."
        )
    weight_map: dict[str, str] = index["weight_map"]
    paths: dict[str, Path] = {}
    for k, s in weight_map.items():
        if not isinstance(s, str) or s not in paths:  # a non-str raises in shard_path
            paths[s] = shard_path(path, k, s)
    shards = list(paths)
    missing = [s for s in shards if not os.path.lexists(paths[s])]
    if missing:
        raise UnreadableCheckpointError(
            f"{path} names {len(shards)} shard files but {len(missing)} are missing next to it "
            f"(first: {missing[0]!r}). Download all shards into {path.parent}."
        )
    from tqdm.auto import tqdm

    show = progress if progress is not None else len(shards) > 16
    infos_by_shard: dict[str, dict[str, TensorInfo]] = {}
    shard_tensors: dict[str, Mapping[str, torch.Tensor]] = {}
    is_safetensors = all(s.endswith(".safetensors") for s in shards)
    for s in tqdm(shards, desc="reading shard headers", disable=not show, leave=False):
        spath = paths[s]
        size = check_path(spath).st_size
        stamps.append(FileStamp.of(spath))
        if is_safetensors or sniff(spath, size) == "safetensors":
            infos_by_shard[s] = read_safetensors_header(spath)[0]
            continue
        obj = torch_load(spath, sniff(spath, size), map_location, trust)
        if not isinstance(obj, Mapping):
            raise NotAStateDictError(f"shard {spath} holds a {type(obj).__name__}.")
        shard_tensors[s] = obj
        infos_by_shard[s] = {
            k: info_from_tensor(v, str(spath))
            for k, v in obj.items()
            if isinstance(k, str) and isinstance(v, torch.Tensor)
        }
    infos: dict[str, TensorInfo] = {}
    files: dict[str, str] = {}
    shard_file = {s: str(p) for s, p in paths.items()}
    for k, s in weight_map.items():
        info = infos_by_shard[s].get(k)
        if info is None:
            raise UnreadableCheckpointError(
                f"{path} maps {_entry(k)} to {s!r}, but that shard has no such tensor. The index "
                "and shards do not belong together; re-download them."
            )
        infos[k] = info
        files[k] = shard_file[s]
    kind = "safetensors-index" if is_safetensors else "torch-index"
    source = CheckpointSource(
        kind=kind, path=str(path), files=[str(paths[s]) for s in shards], **trust_fields(trust)
    )
    if isinstance(index.get("metadata"), dict):
        source.other_entries = {
            f"metadata.{k}": _type_summary(v) for k, v in index["metadata"].items()
        }
    if not infos:
        raise NotAStateDictError(f"{path} has an empty weight_map: no tensors.")
    row_reader = None
    if is_safetensors:
        loader = safetensors_loader(files, infos, device_str(map_location))
        row_reader = safetensors_row_reader(files, infos, device_str(map_location))
    else:
        st_files = {k: f for k, f in files.items() if weight_map[k] not in shard_tensors}
        st_loader = safetensors_loader(st_files, infos, device_str(map_location))

        def loader(keys: Sequence[str]) -> dict[str, torch.Tensor]:
            out = st_loader([k for k in keys if k in st_files])
            for k in keys:
                if k not in out:
                    out[k] = shard_tensors[weight_map[k]][k]
            return out

    return Checkpoint(infos, loader, source, stamps=stamps, row_reader=row_reader)
