"""safetensors files: the header only, until a tensor is asked for.

A header is accepted exactly when the safetensors library accepts it: after sd_widgets' own
checks (which give the clearer messages for the common cases: truncated, not JSON, unknown
dtype), the file is opened once with ``safetensors.safe_open``, which maps the file and parses
and validates only the header (offsets contiguous and inside the file, ``end - start`` equal to
``numel * itemsize``, non-negative integer dims, known dtypes, ``__metadata__`` str → str).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open as _validating_open

from ..errors import NotAStateDictError, UnreadableCheckpointError
from ._core import Checkpoint, CheckpointSource, TensorInfo, _type_summary
from ._paths import FileStamp, check_path, read_head

SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "U16": torch.uint16,
    "U32": torch.uint32,
    "U64": torch.uint64,
    "C64": torch.complex64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
if hasattr(torch, "float8_e8m0fnu"):
    SAFETENSORS_DTYPES["F8_E8M0"] = torch.float8_e8m0fnu
#: the safetensors library's own limit on the header length (``MAX_HEADER_SIZE``)
MAX_HEADER = 100_000_000


def _library_check(path: Path) -> None:
    """Let safetensors validate the header (reads the header only: the file is mapped).

    ``safe_open`` is bound at import for this: tests replace ``safetensors.safe_open`` to
    prove that no tensor data is read, and this call reads none (it never asks for a tensor).
    """
    try:
        with _validating_open(str(path), framework="pt"):
            pass  # constructing it parses and validates the whole header
    except Exception as exc:  # SafetensorError, or OSError from the mapping
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UnreadableCheckpointError(
            f"{path}: the safetensors library rejects its header ({detail}). The file is "
            "corrupt, truncated or was not written by safetensors; re-download or re-save it."
        ) from None


def read_safetensors_header(
    path: Path, validate: bool = True
) -> tuple[dict[str, TensorInfo], dict[str, str] | None]:
    """Parse a safetensors header (8-byte length + JSON) without touching tensor data.

    Parameters
    ----------
    path
        The file.
    validate
        Also have the safetensors library validate the header (the default).

    Returns
    -------
    tuple
        key → :class:`TensorInfo` in header order, and the ``__metadata__`` dict (or None).
    """
    size = check_path(path).st_size
    if size < 8:
        raise UnreadableCheckpointError(
            f"{path} is {size} bytes long: too short to be a safetensors file. It is truncated."
        )
    n = int.from_bytes(read_head(path, 8), "little")
    if n <= 0 or n > min(MAX_HEADER, size - 8):
        raise UnreadableCheckpointError(
            f"{path}: the safetensors header claims {n} bytes but the file has {size - 8}; "
            "the file is truncated or not a safetensors file. Re-download or re-save it."
        )
    raw = read_head(path, 8 + n)[8:]
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnreadableCheckpointError(
            f"{path}: the safetensors header is not valid JSON ({str(exc)[:200]}). The file is "
            "corrupt."
        ) from None
    except RecursionError:
        raise UnreadableCheckpointError(
            f"{path}: the safetensors header is JSON nested too deeply to be a header (hostile "
            "or corrupt)."
        ) from None
    if not isinstance(header, dict):
        raise UnreadableCheckpointError(f"{path}: the safetensors header is not a JSON object.")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise UnreadableCheckpointError(
            f"{path}: the header's __metadata__ is a {type(metadata).__name__}, not an object "
            "of strings to strings as safetensors requires. The file is corrupt."
        )
    infos: dict[str, TensorInfo] = {}
    end_max = 0
    loc = str(path)
    # equal shapes as ONE tuple: a header holds few distinct shapes (every expert of a Mixture
    # of Experts has the same), and each tuple is one more object until the collector's first
    # pass over it
    shapes: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for k, v in header.items():
        try:
            dtype = SAFETENSORS_DTYPES[v["dtype"]]
            shape = tuple(v["shape"])
            shape = shapes.setdefault(shape, shape)
            start, end = v["data_offsets"]
            end_max = max(end_max, end)
            storage = (loc, start) if end > start else None
        except (KeyError, TypeError, ValueError):
            raise UnreadableCheckpointError(
                f"{path}: header entry {k!r} is malformed or has an unsupported dtype "
                f"({str(v)[:200]})."
            ) from None
        infos[k] = TensorInfo(shape, dtype, storage, (), loc)
    if 8 + n + end_max > size:
        raise UnreadableCheckpointError(
            f"{path} is truncated: its header describes {8 + n + end_max} bytes but the file has "
            f"{size}. Re-download or re-save it."
        )
    if validate:
        _library_check(path)
    return infos, metadata


def _mapped(fname: str) -> torch.Tensor:
    """The data section of a safetensors file mapped copy-on-write, as bytes.

    ``torch.from_file(..., shared=False)`` maps the file privately: a view of it reads the
    page cache directly, and writing to one copies that page, never touching the file. The
    mapping lives as long as a tensor viewing it.
    """
    size = check_path(fname).st_size
    start = 8 + int.from_bytes(read_head(fname, 8), "little")
    return torch.from_file(fname, shared=False, size=size, dtype=torch.uint8)[start:]


def _view(
    raw: torch.Tensor, info: TensorInfo, first: int = 0, last: int | None = None
) -> torch.Tensor:
    """Rows ``first:last`` (first dimension; all of a 0-d tensor) of one tensor of a mapping.

    ``raw`` is the file's data section as bytes. A tensor whose offset is not a multiple of
    its item size (allowed by the format, never written by safetensors) is copied to align it.
    """
    shape = info.shape
    if info.storage is None:  # no bytes in the file: an empty tensor
        return torch.empty(shape, dtype=info.dtype)
    start = info.storage[1]
    if shape:
        last = shape[0] if last is None else max(first, min(last, shape[0]))
        first = min(first, last)
        row = info.nbytes // shape[0] if shape[0] else 0
        shape = (last - first, *shape[1:])
        start, stop = start + first * row, start + last * row
    else:
        stop = start + info.nbytes
    data = raw[start:stop]
    if data.storage_offset() % info.dtype.itemsize:
        data = data.clone()
    return data.view(info.dtype).view(shape)


def safetensors_loader(
    files: Mapping[str, str], infos: Mapping[str, TensorInfo], device: str
) -> Callable[[Sequence[str]], dict[str, torch.Tensor]]:
    """Loader of keys from their files: each file mapped once per call, each tensor copied out.

    The headers were checked when the files were opened (by sd_widgets and by the safetensors
    library: offsets inside the file, sizes matching shapes), and each file's stamp is checked
    before its bytes are touched, so every view lies inside its file. The tensors returned own
    their memory: a file rewritten later (a training job saving to the same path) cannot change
    them or make touching them fault, and no mapping outlives the call.
    """
    on_meta = torch.device(device).type == "meta"  # no data is read for the meta device

    def load(keys: Sequence[str]) -> dict[str, torch.Tensor]:
        if on_meta:
            return {
                k: torch.empty(infos[k].shape, dtype=infos[k].dtype, device="meta") for k in keys
            }
        by_file: dict[str, list[str]] = {}
        for k in keys:
            by_file.setdefault(files[k], []).append(k)
        out: dict[str, torch.Tensor] = {}
        for fname, ks in by_file.items():
            raw = _mapped(fname)
            for k in ks:
                t = _view(raw, infos[k])
                out[k] = t.clone() if device == "cpu" else t.to(device)
        return out

    return load


def safetensors_row_reader(
    files: Mapping[str, str], infos: Mapping[str, TensorInfo], device: str
) -> Callable[[str, int, int], torch.Tensor] | None:
    """Reader of rows ``start:stop`` (first dimension) of one key: a view of those bytes.

    For streamed readers that use the rows at once (:func:`sd_widgets.compare_values`): the
    view reads the page cache with no copy and is valid while the file is unchanged. None on
    the meta device (there is nothing to read there).
    """
    if torch.device(device).type == "meta":
        return None

    def read_rows(key: str, start: int, stop: int) -> torch.Tensor:
        t = _view(_mapped(files[key]), infos[key], start, stop)
        return t if device == "cpu" else t.to(device)

    return read_rows


def device_str(map_location: Any) -> str:
    """The device safetensors reads to; an unusable one is refused when the file is opened."""
    from ._torchfile import _no_cuda_message

    if not isinstance(map_location, (str, torch.device)):
        return "cpu"
    try:
        kind = torch.device(map_location).type
    except (RuntimeError, ValueError) as exc:
        raise UnreadableCheckpointError(
            f"map_location={map_location!r} is not a device ({exc}). Pass map_location='cpu'."
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UnreadableCheckpointError(_no_cuda_message(map_location))
    return str(map_location)


def open_safetensors(path: Path, map_location: Any) -> Checkpoint:
    """Open one safetensors file lazily."""
    stamp = FileStamp.of(path)
    infos, meta = read_safetensors_header(path)
    if not infos:
        raise NotAStateDictError(f"{path} is a valid safetensors file with no tensors in it.")
    source = CheckpointSource(kind="safetensors", path=str(path), files=[str(path)])
    if meta:
        source.other_entries = {f"__metadata__.{k}": _type_summary(v) for k, v in meta.items()}
    files = dict.fromkeys(infos, str(path))
    device = device_str(map_location)
    return Checkpoint(
        infos,
        safetensors_loader(files, infos, device),
        source,
        stamps=(stamp,),
        row_reader=safetensors_row_reader(files, infos, device),
    )
