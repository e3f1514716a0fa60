"""``torch.distributed.checkpoint`` (DCP) directories: ``.metadata`` plus ``*.distcp`` data.

``.metadata`` is a pickle. It is read by the exact allow-list unpickler of
:mod:`~sd_widgets.checkpoint._unpickle` (no dotted names, no imports, nothing beyond the DCP
metadata classes) and then validated field by field: every data file it points at must be a
plain name resolving inside the directory, with non-negative integer offsets and lengths and
no stream transforms. Tensor data is then read by DCP's own ``FileSystemReader`` (which
``torch.load``-s each tensor weights-only), handed this validated metadata.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

import torch

from ..errors import NotAStateDictError, UnreadableCheckpointError
from ._core import Checkpoint, CheckpointSource, TensorInfo
from ._memory import NOT_WEIGHTS, PREFERRED_KEYS
from ._paths import FileStamp, check_inside, check_path, read_regular
from ._torchfile import check_zip
from ._unpickle import dcp_metadata_globals, restricted_load

#: ``.metadata`` files larger than this are refused (100k tensors take ~30 MB)
MAX_METADATA_BYTES = 256 * 1024 * 1024


class _Slice(io.RawIOBase):
    """A read-only window ``[offset, offset + length)`` of a binary file.

    Seekable in every direction (DCP's own view does not seek from the end correctly, which
    zipfile needs).
    """

    def __init__(self, base: Any, offset: int, length: int) -> None:
        super().__init__()
        self._base, self._offset, self._length, self._pos = base, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        start = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        self._pos = max(0, min(start + offset, self._length))
        return self._pos

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._length - self._pos)
        if n <= 0:
            return 0
        self._base.seek(self._offset + self._pos)
        data = self._base.read(n)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _bad(mpath: Path, what: str) -> UnreadableCheckpointError:
    return UnreadableCheckpointError(
        f"{mpath} is not valid torch.distributed.checkpoint metadata: {what}. The directory is "
        "corrupt or was not written by torch.distributed.checkpoint."
    )


def _nonneg_ints(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(type(x) is int and x >= 0 for x in value)


#: pairs of chunks compared for overlap per tensor before a file is refused as unverifiable
MAX_CHUNK_COMPARISONS = 4_000_000


def _tiling_problem(size: list[int], chunks: list[tuple[Any, Any]]) -> str | None:
    """Why ``chunks`` (offsets, sizes) do not cover a tensor of ``size`` exactly, or None.

    Each chunk must have the tensor's rank and lie inside it, no two may overlap, and their
    volumes must add up to the tensor's: together that is an exact tiling. Overlaps are found
    by a sweep along the first dimension (chunks of real checkpoints are row or block shards).
    """
    numel = math.prod(size)
    boxes = []
    for offsets, sizes in chunks:
        if len(offsets) != len(size) or len(sizes) != len(size):
            return f"a chunk has {len(offsets)} offsets and {len(sizes)} sizes for {len(size)} dims"
        if any(o + n > d for o, n, d in zip(offsets, sizes, size, strict=True)):
            return f"the chunk at {list(offsets)} of size {list(sizes)} reaches outside it"
        if math.prod(sizes):
            boxes.append((tuple(offsets), tuple(sizes)))
    covered = sum(math.prod(n) for _o, n in boxes)
    if covered != numel:
        return f"they cover {covered:,} of its {numel:,} elements"
    if not size:
        return None if len(boxes) == 1 else f"{len(boxes)} chunks hold its one element"
    boxes.sort()
    active: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    budget = MAX_CHUNK_COMPARISONS
    for box in boxes:
        active = [a for a in active if a[0][0] + a[1][0] > box[0][0]]
        budget -= len(active)
        if budget < 0:
            return f"{len(boxes):,} chunks are too many to check for overlaps"
        for other in active:
            if all(
                o1 < o2 + n2 and o2 < o1 + n1
                for o1, n1, o2, n2 in zip(box[0], box[1], other[0], other[1], strict=True)
            ):
                return f"the chunks at {list(other[0])} and {list(box[0])} overlap"
        active.append(box)
    return None


def _validate(md: Any, directory: Path, mpath: Path) -> Any:
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (
        BytesStorageMetadata,
        ChunkStorageMetadata,
        Metadata,
        MetadataIndex,
        StorageMeta,
        TensorProperties,
        TensorStorageMetadata,
    )

    sdm = getattr(md, "state_dict_metadata", None)
    if not isinstance(md, Metadata) or not isinstance(sdm, Mapping):
        raise UnreadableCheckpointError(f"{mpath} has no state_dict_metadata.")
    for fqn, item in sdm.items():
        if not isinstance(fqn, str):
            raise _bad(mpath, f"a key is a {type(fqn).__name__}, not a string")
        if isinstance(item, TensorStorageMetadata):
            props = getattr(item, "properties", None)
            chunks = getattr(item, "chunks", None)
            if not (
                isinstance(props, TensorProperties)
                and isinstance(getattr(props, "dtype", None), torch.dtype)
                and _nonneg_ints(getattr(item, "size", None))
                and isinstance(chunks, list)
                and all(
                    isinstance(c, ChunkStorageMetadata)
                    and _nonneg_ints(getattr(c, "offsets", None))
                    and _nonneg_ints(getattr(c, "sizes", None))
                    for c in chunks
                )
            ):
                raise _bad(mpath, f"the entry {fqn!r} is malformed")
            problem = _tiling_problem(list(item.size), [(c.offsets, c.sizes) for c in chunks])
            if problem:
                raise _bad(
                    mpath,
                    f"the chunks of {fqn!r} (shape {list(item.size)}) do not tile it: {problem}. "
                    "Reading it would leave uninitialised memory in the tensor",
                )
        elif not isinstance(item, BytesStorageMetadata):
            raise _bad(mpath, f"the entry {fqn!r} is a {type(item).__name__}")
    storage = getattr(md, "storage_data", None)
    if storage is not None:
        if not isinstance(storage, Mapping):
            raise _bad(mpath, "storage_data is not a mapping")
        for index, info in storage.items():
            if not isinstance(index, MetadataIndex) or not isinstance(info, _StorageInfo):
                raise _bad(mpath, "storage_data holds objects of the wrong types")
            rel = getattr(info, "relative_path", None)
            fqn = getattr(index, "fqn", "?")
            if (
                not isinstance(rel, str)
                or "\0" in rel
                or os.path.isabs(rel)
                or (".." in Path(rel).parts)
                or rel in ("", ".")
            ):
                raise _bad(
                    mpath,
                    f"the entry {fqn!r} names the data file {rel!r}, which is not a "
                    "file name inside the checkpoint directory (not opened)",
                )
            try:
                check_inside(directory, rel, "a data file")
            except UnreadableCheckpointError:
                raise _bad(
                    mpath,
                    f"the entry {fqn!r} names the data file {rel!r}, which resolves "
                    "outside the checkpoint directory (not opened)",
                ) from None
            offset, length = getattr(info, "offset", None), getattr(info, "length", None)
            if type(offset) is not int or type(length) is not int or offset < 0 or length < 0:
                raise _bad(mpath, f"the entry {fqn!r} has a negative or non-integer offset")
            if getattr(info, "transform_descriptors", None):
                raise _bad(
                    mpath,
                    f"the entry {fqn!r} asks for stream transforms "
                    f"({info.transform_descriptors!r}), which sd_widgets does not "
                    "apply to untrusted files",
                )
    planner = getattr(md, "planner_data", None)
    if planner is not None and not isinstance(planner, Mapping):
        raise _bad(mpath, "planner_data is not a mapping")
    meta = getattr(md, "storage_meta", None)
    if meta is not None and not isinstance(meta, StorageMeta):
        raise _bad(mpath, "storage_meta is of the wrong type")
    return md


def read_dcp_metadata(directory: Path) -> Any:
    """Read and validate a DCP ``.metadata`` file with the allow-list unpickler.

    Parameters
    ----------
    directory
        The DCP checkpoint directory.

    Returns
    -------
    torch.distributed.checkpoint.metadata.Metadata
        The validated metadata.
    """
    directory = Path(directory)
    mpath = check_inside(directory, ".metadata", "the DCP metadata file")
    data = read_regular(mpath, MAX_METADATA_BYTES, "DCP metadata file")
    if not data:
        raise UnreadableCheckpointError(
            f"{mpath} is empty; the DCP directory is incomplete or corrupt."
        )
    try:
        allowed = dcp_metadata_globals()
    except ImportError as exc:
        raise UnreadableCheckpointError(
            f"{directory} is a torch.distributed.checkpoint directory, but this torch has no "
            f"torch.distributed.checkpoint ({exc})."
        ) from None
    md = restricted_load(data, allowed, str(mpath))
    return _validate(md, directory, mpath)


def open_dcp(directory: Path, *, key: Any) -> Checkpoint:
    """Open a DCP directory lazily: keys, shapes and dtypes come from ``.metadata``."""
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    stamps = [FileStamp.of(directory / ".metadata")]
    meta = read_dcp_metadata(directory)
    sdm = meta.state_dict_metadata
    all_infos: dict[str, TensorInfo] = {}
    non_tensor: dict[str, str] = {}
    loc = str(directory)
    for fqn, md in sdm.items():
        if isinstance(md, TensorStorageMetadata):
            all_infos[fqn] = TensorInfo(tuple(md.size), md.properties.dtype, None, (), loc)
        elif isinstance(md, BytesStorageMetadata):
            non_tensor[fqn] = "bytes (pickled object)"
    # nested state dicts are flattened to "model.fc.weight", "optim.state...": choose the weights
    groups: dict[str, int] = {}
    nested: set[str] = set()
    # DCP records each key's path before flattening: ("model", "fc.weight") was nested,
    # ("model.fc.weight",) was saved flat — a plain state dict whose keys start with "model."
    planner = getattr(meta, "planner_data", None)
    saved_flat = False
    for fqn in all_infos:
        head = fqn.split(".", 1)[0]
        groups[head] = groups.get(head, 0) + 1
        if "." in fqn:
            nested.add(head)
        path = planner.get(fqn) if isinstance(planner, Mapping) else None
        if isinstance(path, (tuple, list)) and len(path) == 1:
            saved_flat = True
    prefix = ""
    if key is not None:
        if not isinstance(key, str) and not (
            isinstance(key, Sequence) and all(isinstance(p, str) for p in key)
        ):
            raise TypeError(f"key={key!r}: pass a string ('model', 'a/b') or a list of them")
        prefix = (key if isinstance(key, str) else ".".join(key)).replace("/", ".") + "."
        if not any(f.startswith(prefix) for f in all_infos):
            raise NotAStateDictError(
                f"{directory} has no entry {key!r}; top-level entries: "
                f"{', '.join(repr(g)[1:-1] for g in groups)}."
            )
    else:
        wrappers = [g for g in groups if g in PREFERRED_KEYS]
        if (
            wrappers
            and not saved_flat
            and all(g in PREFERRED_KEYS or g in NOT_WEIGHTS for g in groups)
        ):
            prefix = next(p for p in PREFERRED_KEYS if p in wrappers) + "."
    infos = {f[len(prefix) :]: i for f, i in all_infos.items() if f.startswith(prefix)}
    if not infos:
        raise NotAStateDictError(f"{directory} is a DCP checkpoint without tensors.")
    # weight sets are nested entries (a top-level tensor is not one)
    candidates = (
        {g: n for g, n in groups.items() if g in nested and g not in NOT_WEIGHTS} if prefix else {}
    )
    chosen = prefix[:-1] or None
    source = CheckpointSource(
        kind="dcp",
        path=str(directory),
        key=chosen,
        candidates=candidates,
        alternatives={g: n for g, n in candidates.items() if g != chosen},
        non_tensor=non_tensor,
        files=sorted(str(p) for p in directory.iterdir()),
    )
    storage = getattr(meta, "storage_data", None) or {}
    data_files = sorted({info.relative_path for info in storage.values()})
    for rel in data_files:
        if os.path.lexists(directory / rel):
            check_path(directory / rel)
            stamps.append(FileStamp.of(directory / rel))

    def load(keys: Sequence[str]) -> dict[str, torch.Tensor]:
        import torch.distributed.checkpoint as dcp

        for rel in data_files:  # regular files only, even if swapped since opening
            if os.path.lexists(directory / rel):
                check_path(directory / rel)
        target = {prefix + k: torch.empty(infos[k].shape, dtype=infos[k].dtype) for k in keys}
        with warnings.catch_warnings():  # "torch.distributed is disabled": expected here
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(target, storage_reader=safe_reader(directory), no_dist=True)
        return {k: target[prefix + k] for k in keys}

    return Checkpoint(infos, load, source, stamps=stamps)


def safe_reader(directory: Path) -> Any:
    """A ``FileSystemReader`` of ``directory`` reading only what passed :func:`read_dcp_metadata`.

    Each tensor's archive is checked for zip bombs before DCP inflates it.

    Both ``open_dcp`` (one process) and :mod:`sd_widgets.load._distributed` (every rank of a job,
    ``dcp.load`` with its collectives) read through it.
    """
    from torch.distributed.checkpoint import FileSystemReader

    class _SafeReader(FileSystemReader):
        def _slice_file(self, file: Any, sinfo: Any) -> Any:
            # each tensor is a torch.save archive inside the data file: check it for zip bombs
            # before DCP's torch.load inflates anything
            part = _Slice(file, sinfo.offset, sinfo.length)
            if part.read(4) == b"PK\x03\x04":
                part.seek(0)
                check_zip(
                    cast(IO[bytes], part),
                    sinfo.length,
                    f"{directory / sinfo.relative_path} at offset {sinfo.offset}",
                )
            return super()._slice_file(file, sinfo)

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            from torch.distributed.checkpoint.metadata import StorageMeta

            md = read_dcp_metadata(directory)
            if getattr(md, "storage_meta", None) is None:
                md.storage_meta = StorageMeta()
            md.storage_meta.load_id = self.load_id
            return md

    return _SafeReader(str(directory))
