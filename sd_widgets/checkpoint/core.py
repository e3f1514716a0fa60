"""Reading checkpoints lazily: ``open_checkpoint`` and the format readers.

A :class:`Checkpoint` is a ``Mapping[str, TensorInfo]``: key → shape, dtype, size and
storage identity, known without reading tensor data wherever the format allows it
(safetensors headers, DCP ``.metadata``, mmap-ed torch zip files). ``.tensor(key)`` reads
one tensor; ``.state_dict()`` reads them all.

Safety: torch files are read with ``weights_only=True``; nothing from a pickle is executed
unless the caller passes ``trust=True``. The DCP ``.metadata`` pickle is read with an
unpickler that only admits the checkpoint-metadata classes.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from ..errors import NotAStateDictError, UnreadableCheckpointError, UnsafeCheckpointError

__all__ = [
    "Checkpoint",
    "CheckpointSource",
    "SourceLike",
    "TensorInfo",
    "dtype_name",
    "open_checkpoint",
]

SourceLike = Union[str, os.PathLike, Mapping, nn.Module, "Checkpoint"]

#: nested entries that hold the weights, most likely first
PREFERRED_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "module",
    "net",
    "network",
    "weights",
    "params",
    "model_ema",
    "ema",
    "state_dict_ema",
)
#: nested entries that hold tensors but are never the weights
NOT_WEIGHTS = (
    "optimizer",
    "optimizer_state_dict",
    "optimizer_states",
    "optim",
    "opt",
    "scheduler",
    "lr_scheduler",
    "lr_schedulers",
    "scaler",
    "grad_scaler",
    "loops",
    "callbacks",
    "rng_state",
    "rng_states",
)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar", ".pkl")

_SAFETENSORS_DTYPES = {
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


def dtype_name(dtype: torch.dtype | None) -> str | None:
    """``torch.float32`` → ``"float32"``."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class TensorInfo:
    """What is known about one checkpoint tensor without reading its data."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    #: identity of the underlying storage (tied-weight detection); None when unknown
    storage: Any = None
    #: other keys of this checkpoint that are the same tensor (same storage, offset, shape)
    tied: tuple[str, ...] = ()
    #: where the tensor lives: a file path (shards), or "memory"
    location: str | None = None

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype) or ""


@dataclass
class CheckpointSource:
    """Where a checkpoint came from and how its weights were found."""

    #: "torch", "torch-legacy", "safetensors", "safetensors-index", "torch-index", "dcp",
    #: "mapping" or "module"
    kind: str
    path: str | None = None
    #: the nested entry the weights were taken from (e.g. "state_dict"); None: top level
    key: str | None = None
    #: nested entries that hold tensors → how many (what ``key=`` can choose from)
    candidates: dict[str, int] = field(default_factory=dict)
    #: other entries next to the weights, e.g. {"epoch": "int", "optimizer": "dict (2 entries)"}
    other_entries: dict[str, str] = field(default_factory=dict)
    #: entries of the state dict itself that are not tensors → their type
    non_tensor: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    trusted: bool = False

    def describe(self) -> str:
        where = f" {self.path}" if self.path else ""
        text = f"{self.kind}{where}"
        if self.key is not None:
            text += f", weights from entry {self.key!r}"
        if len(self.files) > 1:
            text += f", {len(self.files)} files"
        return text


class Checkpoint(Mapping[str, TensorInfo]):
    """A lazily read state dict: key → :class:`TensorInfo`, tensors on demand."""

    def __init__(
        self,
        infos: Mapping[str, TensorInfo],
        loader: Callable[[Sequence[str]], dict[str, torch.Tensor]],
        source: CheckpointSource,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self._infos = _mark_tied(dict(infos))
        self._loader = loader
        self.source = source
        #: the ``_metadata`` (module versions) the checkpoint carried, or None
        self.metadata = OrderedDict(metadata) if metadata is not None else None

    # Mapping protocol -----------------------------------------------------------------------
    def __getitem__(self, key: str) -> TensorInfo:
        return self._infos[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __repr__(self) -> str:
        return (
            f"<Checkpoint {self.source.describe()}: {len(self)} tensors, "
            f"{_human_bytes(self.nbytes)}>"
        )

    # data ------------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return sum(i.nbytes for i in self._infos.values())

    @property
    def numel(self) -> int:
        return sum(i.numel for i in self._infos.values())

    def tensor(self, key: str) -> torch.Tensor:
        """Read one tensor."""
        if key not in self._infos:
            raise KeyError(_unknown_key_message(key, self._infos))
        return self._read([key])[key]

    def tensors(self, keys: Iterable[str]) -> dict[str, torch.Tensor]:
        """Read several tensors (one pass per file for sharded formats)."""
        keys = list(keys)
        for k in keys:
            if k not in self._infos:
                raise KeyError(_unknown_key_message(k, self._infos))
        return self._read(keys) if keys else {}

    def _read(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """Call the loader; a failure (file changed, truncated or removed since it was opened)
        becomes an :class:`UnreadableCheckpointError` naming the key."""
        try:
            return self._loader(keys)
        except (UnreadableCheckpointError, MemoryError):
            raise
        except BaseException as exc:
            # torch.distributed.checkpoint's CheckpointException derives from BaseException
            if not isinstance(exc, Exception) and type(exc).__name__ != "CheckpointException":
                raise
            cause: BaseException = exc
            failures = getattr(exc, "failures", None)
            if isinstance(failures, Mapping) and failures:
                first_failure = next(iter(failures.values()))
                if isinstance(first_failure, tuple) and first_failure:
                    cause = first_failure[0]
            detail = (str(cause).strip().splitlines() or [""])[0]
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise UnreadableCheckpointError(
                f"reading {keys[0]!r}{more} from {self.source.describe()} failed "
                f"({type(cause).__name__}: {detail}). The files changed, were removed or are "
                "incomplete since the checkpoint was opened; re-open it, or re-download/re-save it."
            ) from exc

    def state_dict(self) -> OrderedDict[str, torch.Tensor]:
        """Every tensor, in checkpoint order, with ``_metadata`` when the file had it."""
        tensors = self.tensors(list(self._infos))
        out: OrderedDict[str, torch.Tensor] = OrderedDict((k, tensors[k]) for k in self._infos)
        if self.metadata is not None:
            out._metadata = OrderedDict(  # type: ignore[attr-defined]
                (prefix, dict(value)) for prefix, value in self.metadata.items()
            )
        return out

    def tied_groups(self) -> list[tuple[str, ...]]:
        """Groups of keys that are one tensor (tied weights)."""
        seen: set[str] = set()
        groups = []
        for k, info in self._infos.items():
            if info.tied and k not in seen:
                group = (k, *info.tied)
                seen.update(group)
                groups.append(group)
        return groups

    def to_frame(self):
        """One row per tensor: key, shape, dtype, numel, nbytes, tied."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "key": k,
                    "shape": i.shape,
                    "dtype": i.dtype_name,
                    "numel": i.numel,
                    "nbytes": i.nbytes,
                    "tied": ", ".join(i.tied),
                }
                for k, i in self._infos.items()
            ],
            columns=["key", "shape", "dtype", "numel", "nbytes", "tied"],
        )


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def open_checkpoint(
    src: SourceLike,
    *,
    key: str | Sequence[str] | None = None,
    map_location: Any = "cpu",
    trust: bool | Iterable[Any] = False,
    progress: bool | None = None,
) -> Checkpoint:
    """Open a checkpoint lazily.

    ``src`` is a path (``.pt/.pth/.bin/.ckpt``, ``.safetensors``, a ``*.index.json``, a
    ``torch.distributed.checkpoint`` directory, or a directory holding one of these), a
    mapping of names to tensors (possibly nested), or an ``nn.Module``.
    ``key`` picks the nested entry holding the weights (``"state_dict"``, ``"ema"``, ...;
    a ``"a/b"`` path or a sequence for deeper nesting); found automatically when None.
    ``trust=True`` allows arbitrary pickled objects — only for files you trust; a list of
    classes/functions (``trust=[argparse.Namespace]``) allows just those and keeps weights-only
    loading for everything else (``torch.serialization.safe_globals``).
    """
    _allowed_globals(trust)  # a wrong type fails here, before any file is touched
    if isinstance(src, Checkpoint):
        if key is not None:
            raise TypeError("key= cannot be applied to an already opened Checkpoint")
        return src
    if isinstance(src, nn.Module):
        sd = src.state_dict()
        return _from_object(sd, CheckpointSource(kind="module"), key)
    if isinstance(src, Mapping):
        return _from_object(src, CheckpointSource(kind="mapping"), key)
    if isinstance(src, (str, os.PathLike)):
        return _open_path(Path(src), key=key, map_location=map_location, trust=trust,
                          progress=progress)
    raise TypeError(
        f"cannot open a checkpoint from {type(src).__name__}; pass a file or directory path, "
        "a mapping of names to tensors, or an nn.Module"
    )


def _open_path(path: Path, *, key, map_location, trust, progress) -> Checkpoint:
    if not path.exists():
        parent = path.parent if str(path.parent) else Path(".")
        hint = ""
        if parent.is_dir():
            near = sorted(p.name for p in parent.iterdir() if _looks_like_checkpoint(p))[:5]
            if near:
                hint = f" Checkpoints in {parent}: {', '.join(near)}."
        raise UnreadableCheckpointError(
            f"no file or directory at {str(path)!r} (resolved to {path.resolve()}). "
            f"Check the path.{hint}"
        )
    if path.is_dir():
        return _open_directory(path, key=key, map_location=map_location, trust=trust,
                               progress=progress)
    if path.name.endswith(".json"):
        return _open_index(path, key=key, map_location=map_location, trust=trust,
                           progress=progress)
    fmt = _sniff(path)
    if fmt == "safetensors":
        if key is not None:
            raise NotAStateDictError(
                f"{path} is a safetensors file: it holds one flat set of tensors, so key={key!r} "
                "cannot select a nested entry. Leave key=None."
            )
        return _open_safetensors(path, map_location)
    return _open_torch(path, fmt, key=key, map_location=map_location, trust=trust)


def _looks_like_checkpoint(p: Path) -> bool:
    return p.suffix in (*TORCH_SUFFIXES, ".safetensors") or p.name.endswith(".index.json") or (
        p.is_dir() and (p / ".metadata").exists()
    )


def _sniff(path: Path) -> str:
    size = path.stat().st_size
    if size == 0:
        raise UnreadableCheckpointError(
            f"{path} is an empty file (0 bytes): the save was probably interrupted. "
            "Re-save the checkpoint."
        )
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 0 < n <= size - 8:
            return "safetensors"
    if head[:1] == b"\x80" or head[:2] == b"PK":
        return "torch-legacy"
    if path.suffix == ".safetensors":
        raise UnreadableCheckpointError(
            f"{path} is named .safetensors but its header is not a valid safetensors header "
            f"(first bytes {head[:8]!r}). The file is corrupt or truncated; re-download or re-save it."
        )
    raise UnreadableCheckpointError(
        f"{path} is not a checkpoint sd_widgets can read: it starts with {head[:8]!r}, not a torch "
        "zip archive (torch.save), a legacy torch pickle or a safetensors header. Check that the "
        "file is complete and is a PyTorch or safetensors checkpoint."
    )


# --------------------------------------------------------------------------------------------
# torch files (zip and legacy)
# --------------------------------------------------------------------------------------------


def _allowed_globals(trust: Any) -> list[Any] | None:
    """``trust`` as an allow-list for weights-only loading, or None for True/False."""
    if isinstance(trust, bool) or trust is None:
        return None
    if isinstance(trust, (str, bytes)) or not isinstance(trust, Iterable):
        raise TypeError(
            f"trust={trust!r}: pass True (allow any pickled object), False (weights only), or a "
            "list of the classes/functions to allow, e.g. trust=[argparse.Namespace]"
        )
    return list(trust)


def _global_name(obj: Any) -> str:
    if isinstance(obj, tuple) and len(obj) == 2:  # (obj, "module.name") as torch accepts
        return str(obj[1])
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


def _torch_load(path: Path, fmt: str, map_location, trust: Any):
    mmap = fmt == "torch"
    allowed = _allowed_globals(trust)
    try:
        if allowed is not None:  # weights-only, plus exactly the globals the caller allowed
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        return torch.load(path, map_location=map_location, weights_only=trust is not True,
                          mmap=mmap)
    except pickle.UnpicklingError as exc:
        if trust is not True and "Weights only load failed" in str(exc):
            allowed_names = {_global_name(g) for g in allowed or []}
            names = [n for n in unsafe_globals(path) if n not in allowed_names]
            listed = ", ".join(names) if names else "(could not be listed)"
            already = (f" (beyond the {len(allowed_names)} allowed in trust=[...])"
                       if allowed_names else "")
            raise UnsafeCheckpointError(
                f"{path} contains pickled Python objects that weights-only loading refuses"
                f"{already}: {listed}. Nothing from the file was executed. If you trust where "
                "the file came from, allow just those with trust=[<the classes>] (e.g. "
                "trust=[argparse.Namespace]: still weights-only for everything else), or "
                "anything with trust=True (sdw.open_checkpoint(path, trust=True)); otherwise ask "
                "for a weights-only export (torch.save(model.state_dict(), ...) or safetensors).",
                globals=names,
            ) from None
        raise _unreadable(path, exc) from None
    except RuntimeError as exc:
        msg = str(exc)
        if "CUDA" in msg or "cuda" in msg:
            if _requests_cuda(map_location) and not torch.cuda.is_available():
                raise UnreadableCheckpointError(_no_cuda_message(map_location)) from None
            raise UnreadableCheckpointError(
                f"{path} was saved from a GPU and cannot be mapped to {map_location!r} here: "
                f"{msg.splitlines()[0].rstrip('.')}. Pass map_location='cpu'."
            ) from None
        raise _unreadable(path, exc) from None
    except (EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError,
            IndexError, TypeError) as exc:
        raise _unreadable(path, exc) from None


def _requests_cuda(map_location: Any) -> bool:
    """``map_location`` itself asks for a CUDA device (as opposed to the file being saved there)."""
    if isinstance(map_location, (str, torch.device)):
        return "cuda" in str(map_location)
    if isinstance(map_location, Mapping):
        return any("cuda" in str(v) for v in map_location.values())
    return False


def _no_cuda_message(map_location: Any) -> str:
    return (
        f"map_location={map_location!r} asks for a CUDA device, but this machine has none "
        "(torch.cuda.is_available() is False). Pass map_location='cpu'."
    )


def _unreadable(path: Path, exc: BaseException) -> UnreadableCheckpointError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UnreadableCheckpointError(
        f"{path} could not be read as a torch checkpoint ({type(exc).__name__}: {first}). "
        "The file is probably truncated or corrupt (an interrupted save or download); "
        "re-save or re-download it."
    )


def unsafe_globals(path: str | os.PathLike) -> list[str]:
    """Name the globals a torch file needs that weights-only loading refuses.

    Reads the pickle opcodes only; executes nothing.
    """
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        pass
    # legacy (non-zip) files: scan the opcodes of the pickles at the start of the file
    found: list[str] = []
    try:
        with open(path, "rb") as f:
            for _ in range(4):
                strings: list[str] = []
                for op, arg, _pos in pickletools.genops(f):
                    if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                        found.append(arg.replace(" ", "."))
                    elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                        strings.append(arg)
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    if op.name == "STOP":
                        break
    except Exception:
        pass
    safe_prefixes = ("torch.", "collections.OrderedDict", "builtins.")
    return sorted({g for g in found if not g.startswith(safe_prefixes)})


def _open_torch(path: Path, fmt: str, *, key, map_location, trust) -> Checkpoint:
    obj = _torch_load(path, fmt, map_location, trust)
    source = CheckpointSource(kind=fmt, path=str(path), files=[str(path)],
                              trusted=trust is not False)
    return _from_object(obj, source, key)


# --------------------------------------------------------------------------------------------
# in-memory objects: find the weights inside nested checkpoints
# --------------------------------------------------------------------------------------------


def _type_summary(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"Tensor{tuple(v.shape)} {dtype_name(v.dtype)}"
    if isinstance(v, Mapping):
        return f"{type(v).__name__} ({len(v)} entries)"
    if isinstance(v, (list, tuple)):
        return f"{type(v).__name__} ({len(v)} items)"
    if isinstance(v, (int, float, bool, str)) or v is None:
        text = repr(v)
        return f"{type(v).__name__}: {text if len(text) <= 40 else text[:37] + '...'}"
    return type(v).__name__


def _count_tensors(m: Mapping) -> int:
    return sum(1 for v in m.values() if isinstance(v, torch.Tensor))


def _candidates(obj: Mapping, depth: int = 2, prefix: str = "") -> dict[str, int]:
    """Nested entries (``a`` or ``a/b``) whose values include tensors, skipping optimizer state."""
    found: dict[str, int] = {}
    for k, v in obj.items():
        if not isinstance(k, str) or k in NOT_WEIGHTS:
            continue
        if isinstance(v, nn.Module):
            v = v.state_dict()
        if isinstance(v, Mapping):
            path = prefix + k
            n = _count_tensors(v)
            if n:
                found[path] = n
            if depth > 1:
                found.update(_candidates(v, depth - 1, path + "/"))
    return found


def _walk(obj: Mapping, key: str | Sequence[str]) -> Any:
    parts: Sequence[str]
    parts = ([key] if key in obj else key.split("/")) if isinstance(key, str) else list(key)
    cur: Any = obj
    for p in parts:
        if isinstance(cur, nn.Module):
            cur = cur.state_dict()
        if not isinstance(cur, Mapping) or p not in cur:
            raise KeyError(p)
        cur = cur[p]
    return cur


def _from_object(obj: Any, source: CheckpointSource, key) -> Checkpoint:
    where = source.path or f"the {source.kind}"
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise NotAStateDictError(
            f"{where} holds a {type(obj).__name__}, not a mapping of parameter names to tensors. "
            "Save model.state_dict() (or a dict containing it) instead."
        )
    candidates = _candidates(obj)
    source.candidates = candidates
    chosen_key: str | None
    if key is not None:
        chosen_key = key if isinstance(key, str) else "/".join(key)
        try:
            sd = _walk(obj, key)
        except KeyError:
            raise NotAStateDictError(
                f"{where} has no entry {chosen_key!r}. Entries holding tensors: "
                f"{_fmt_candidates(candidates) or 'none'}; top-level entries: "
                f"{', '.join(map(str, list(obj)[:20]))}."
            ) from None
        if isinstance(sd, nn.Module):
            sd = sd.state_dict()
        if not isinstance(sd, Mapping) or not _count_tensors(sd):
            raise NotAStateDictError(
                f"entry {chosen_key!r} of {where} is a {_type_summary(sd)}, not a state dict. "
                f"Entries holding tensors: {_fmt_candidates(candidates) or 'none'}."
            )
        parent_path = chosen_key.rsplit("/", 1)[0] if "/" in chosen_key else None
        parent = _walk(obj, parent_path) if parent_path else obj
        last = chosen_key.rsplit("/", 1)[-1]
        source.other_entries = {
            str(k): _type_summary(v) for k, v in parent.items() if k != last
        }
    elif _count_tensors(obj):
        sd, chosen_key = obj, None
    else:
        if not candidates:
            if not obj:
                raise NotAStateDictError(f"{where} is an empty mapping: there are no tensors.")
            raise NotAStateDictError(
                f"{where} holds no tensors: its entries are "
                f"{', '.join(f'{k} ({_type_summary(v)})' for k, v in list(obj.items())[:8])}. "
                "Expected a state dict (names → tensors) or a checkpoint containing one."
            )
        chosen_key = next(
            (c for name in PREFERRED_KEYS for c in candidates if c == name or c.endswith("/" + name)),
            max(candidates, key=lambda c: candidates[c]),
        )
        return _from_object(obj, source, chosen_key)
    source.key = chosen_key
    tensors: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, v in sd.items():
        if not isinstance(k, str):
            raise NotAStateDictError(
                f"{where}: key {k!r} is a {type(k).__name__}; state dict keys are strings "
                "(this looks like optimizer state, not model weights)."
            )
        if isinstance(v, torch.Tensor):
            tensors[k] = v
        else:
            source.non_tensor[k] = _type_summary(v)
    infos = {k: _info_from_tensor(t, "memory" if source.path is None else source.path)
             for k, t in tensors.items()}
    metadata = getattr(sd, "_metadata", None)

    def load(keys: Sequence[str]) -> dict[str, torch.Tensor]:
        return {k: tensors[k] for k in keys}

    return Checkpoint(infos, load, source, metadata)


def _storage_identity(t: torch.Tensor) -> Any:
    try:
        st = t.untyped_storage()
        return (st._cdata, t.storage_offset(), tuple(t.stride()))
    except Exception:  # e.g. tensor subclasses without storage
        return None


def _info_from_tensor(t: torch.Tensor, location: str | None) -> TensorInfo:
    return TensorInfo(tuple(t.shape), t.dtype, _storage_identity(t), (), location)


def _mark_tied(infos: dict[str, TensorInfo]) -> dict[str, TensorInfo]:
    groups: dict[Any, list[str]] = {}
    for k, info in infos.items():
        if info.storage is not None:
            groups.setdefault((info.storage, info.shape, info.dtype), []).append(k)
    for keys in groups.values():
        if len(keys) > 1:
            for k in keys:
                infos[k] = replace(infos[k], tied=tuple(o for o in keys if o != k))
    return infos


def _fmt_candidates(c: Mapping[str, int]) -> str:
    return ", ".join(f"{k!r} ({n} tensors)" for k, n in c.items())


def _unknown_key_message(key: str, keys: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(keys), n=3)
    return f"{key!r} is not in this checkpoint" + (f"; did you mean {close}?" if close else "")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


# --------------------------------------------------------------------------------------------
# safetensors: header only until a tensor is asked for
# --------------------------------------------------------------------------------------------

_MAX_HEADER = 100 * 1024 * 1024


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str] | None]:
    """Parse a safetensors header (8-byte length + JSON) without touching tensor data."""
    size = path.stat().st_size
    if size < 8:
        raise UnreadableCheckpointError(
            f"{path} is {size} bytes long: too short to be a safetensors file. It is truncated."
        )
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n <= 0 or n > min(_MAX_HEADER, size - 8):
            raise UnreadableCheckpointError(
                f"{path}: the safetensors header claims {n} bytes but the file has {size - 8}; "
                "the file is truncated or not a safetensors file. Re-download or re-save it."
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableCheckpointError(
            f"{path}: the safetensors header is not valid JSON ({exc}). The file is corrupt."
        ) from None
    if not isinstance(header, dict):
        raise UnreadableCheckpointError(f"{path}: the safetensors header is not a JSON object.")
    metadata = header.pop("__metadata__", None)
    infos: dict[str, TensorInfo] = {}
    end_max = 0
    loc = str(path)
    for k, v in header.items():
        try:
            dtype = _SAFETENSORS_DTYPES[v["dtype"]]
            shape = tuple(int(s) for s in v["shape"])
            start, end = (int(x) for x in v["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise UnreadableCheckpointError(
                f"{path}: header entry {k!r} is malformed or has an unsupported dtype ({v!r})."
            ) from None
        end_max = max(end_max, end)
        infos[k] = TensorInfo(shape, dtype, (loc, start) if end > start else None, (), loc)
    if 8 + n + end_max > size:
        raise UnreadableCheckpointError(
            f"{path} is truncated: its header describes {8 + n + end_max} bytes but the file has "
            f"{size}. Re-download or re-save it."
        )
    return infos, metadata


def _safetensors_loader(files: Mapping[str, str], device: str):
    """Loader reading keys from their files, one ``safe_open`` per file."""
    from safetensors import safe_open

    on_meta = torch.device(device).type == "meta"  # safe_open has no meta device

    def load(keys: Sequence[str]) -> dict[str, torch.Tensor]:
        by_file: dict[str, list[str]] = {}
        for k in keys:
            by_file.setdefault(files[k], []).append(k)
        out: dict[str, torch.Tensor] = {}
        for fname, ks in by_file.items():
            with safe_open(fname, framework="pt", device="cpu" if on_meta else device) as f:
                for k in ks:
                    if on_meta:  # shape and dtype from the header; no data is read
                        sl = f.get_slice(k)
                        out[k] = torch.empty(sl.get_shape(), device="meta",
                                             dtype=_SAFETENSORS_DTYPES[sl.get_dtype()])
                    else:
                        out[k] = f.get_tensor(k)
        return out

    return load


def _device_str(map_location: Any) -> str:
    """The device safetensors reads to; an unusable one is refused when the file is opened."""
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


def _open_safetensors(path: Path, map_location: Any) -> Checkpoint:
    infos, meta = read_safetensors_header(path)
    if not infos:
        raise NotAStateDictError(f"{path} is a valid safetensors file with no tensors in it.")
    source = CheckpointSource(kind="safetensors", path=str(path), files=[str(path)])
    if meta:
        source.other_entries = {f"__metadata__.{k}": _type_summary(v) for k, v in meta.items()}
    files = dict.fromkeys(infos, str(path))
    return Checkpoint(infos, _safetensors_loader(files, _device_str(map_location)), source)


# --------------------------------------------------------------------------------------------
# sharded checkpoints with an index (Hugging Face layout)
# --------------------------------------------------------------------------------------------


def _open_index(path: Path, *, key, map_location, trust, progress) -> Checkpoint:
    try:
        index = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableCheckpointError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise UnreadableCheckpointError(
            f"{path} is not a sharded-checkpoint index: expected a JSON object with a "
            "'weight_map' of tensor name → shard file (as written by save_pretrained)."
        )
    if key is not None:
        raise NotAStateDictError(
            f"{path} is a sharded index of flat shards; key={key!r} cannot select a nested entry."
        )
    weight_map: dict[str, str] = index["weight_map"]
    shards = list(dict.fromkeys(weight_map.values()))
    missing = [s for s in shards if not (path.parent / s).is_file()]
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
        spath = path.parent / s
        if is_safetensors:
            infos_by_shard[s] = read_safetensors_header(spath)[0]
        else:
            fmt = _sniff(spath)
            if fmt == "safetensors":
                infos_by_shard[s] = read_safetensors_header(spath)[0]
                continue
            obj = _torch_load(spath, fmt, map_location, trust)
            if not isinstance(obj, Mapping):
                raise NotAStateDictError(f"shard {spath} holds a {type(obj).__name__}.")
            shard_tensors[s] = obj
            infos_by_shard[s] = {
                k: _info_from_tensor(v, str(spath)) for k, v in obj.items()
                if isinstance(v, torch.Tensor)
            }
    infos: dict[str, TensorInfo] = {}
    files: dict[str, str] = {}
    for k, s in weight_map.items():
        shard_infos = infos_by_shard[s]
        if k not in shard_infos:
            raise UnreadableCheckpointError(
                f"{path} maps {k!r} to {s!r}, but that shard has no such tensor. The index and "
                "shards do not belong together; re-download them."
            )
        infos[k] = shard_infos[k]
        files[k] = str(path.parent / s)
    kind = "safetensors-index" if is_safetensors else "torch-index"
    source = CheckpointSource(kind=kind, path=str(path), files=[str(path.parent / s) for s in shards],
                              trusted=trust is not False)
    if isinstance(index.get("metadata"), dict):
        source.other_entries = {f"metadata.{k}": _type_summary(v)
                                for k, v in index["metadata"].items()}
    if not infos:
        raise NotAStateDictError(f"{path} has an empty weight_map: no tensors.")
    if is_safetensors:
        loader = _safetensors_loader(files, _device_str(map_location))
    else:
        st_files = {k: f for k, f in files.items() if Path(f).name not in shard_tensors}
        st_loader = _safetensors_loader(st_files, _device_str(map_location))

        def loader(keys: Sequence[str]) -> dict[str, torch.Tensor]:
            out = st_loader([k for k in keys if k in st_files])
            for k in keys:
                if k not in out:
                    out[k] = shard_tensors[weight_map[k]][k]
            return out

    return Checkpoint(infos, loader, source)


# --------------------------------------------------------------------------------------------
# torch.distributed.checkpoint directories
# --------------------------------------------------------------------------------------------


class _DCPMetadataUnpickler(pickle.Unpickler):
    """Admits only what a DCP ``.metadata`` file legitimately contains."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("torch.distributed.checkpoint.") or (
            module == "torch" and (name == "Size" or isinstance(
                getattr(torch, name, None), (torch.dtype, torch.layout, torch.memory_format)))
        ) or (module, name) in {
            ("collections", "OrderedDict"),
            ("builtins", "set"),
            ("builtins", "frozenset"),
            ("builtins", "object"),
            ("copyreg", "_reconstructor"),
            ("builtins", "slice"),
            ("torch.serialization", "_get_layout"),
            ("pathlib", "PosixPath"),
            ("pathlib", "PurePosixPath"),
            ("pathlib", "WindowsPath"),
            ("pathlib", "PureWindowsPath"),
        }:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in DCP metadata")


def read_dcp_metadata(directory: Path):
    """Read a DCP ``.metadata`` file with a restricted unpickler."""
    mpath = directory / ".metadata"
    try:
        with open(mpath, "rb") as f:
            return _DCPMetadataUnpickler(f).load()
    except pickle.UnpicklingError as exc:
        if "is not allowed" in str(exc):
            raise UnsafeCheckpointError(
                f"{mpath} contains objects that are not checkpoint metadata ({exc}). Nothing was "
                "executed. This is not a plain torch.distributed.checkpoint directory; do not load "
                "it unless you trust its source.",
                globals=[str(exc).split("'")[1]],
            ) from None
        raise UnreadableCheckpointError(f"{mpath} is corrupt ({exc}).") from None
    except (EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as exc:
        raise UnreadableCheckpointError(
            f"{mpath} could not be read ({type(exc).__name__}: {exc}); the DCP directory is "
            "incomplete or corrupt."
        ) from None


def _open_dcp(directory: Path, *, key) -> Checkpoint:
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    meta = read_dcp_metadata(directory)
    sdm = getattr(meta, "state_dict_metadata", None)
    if not isinstance(sdm, Mapping):
        raise UnreadableCheckpointError(f"{directory}/.metadata has no state_dict_metadata.")
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
    # DCP records each key's path before flattening: ("model", "fc.weight") was nested,
    # ("model.fc.weight",) was saved flat — a plain state dict whose keys start with "model."
    planner = getattr(meta, "planner_data", None)
    saved_flat = False
    for fqn in all_infos:
        head = fqn.split(".", 1)[0]
        groups[head] = groups.get(head, 0) + 1
        path = planner.get(fqn) if isinstance(planner, Mapping) else None
        if isinstance(path, (tuple, list)) and len(path) == 1:
            saved_flat = True
    prefix = ""
    if key is not None:
        prefix = (key if isinstance(key, str) else ".".join(key)).replace("/", ".") + "."
        if not any(f.startswith(prefix) for f in all_infos):
            raise NotAStateDictError(
                f"{directory} has no entry {key!r}; top-level entries: {', '.join(groups)}."
            )
    else:
        wrappers = [g for g in groups if g in PREFERRED_KEYS]
        if wrappers and not saved_flat and all(
            g in PREFERRED_KEYS or g in NOT_WEIGHTS for g in groups
        ):
            prefix = next(p for p in PREFERRED_KEYS if p in wrappers) + "."
    infos = {f[len(prefix):]: i for f, i in all_infos.items() if f.startswith(prefix)}
    if not infos:
        raise NotAStateDictError(f"{directory} is a DCP checkpoint without tensors.")
    source = CheckpointSource(
        kind="dcp", path=str(directory), key=prefix[:-1] or None,
        candidates={g: n for g, n in groups.items() if g not in NOT_WEIGHTS} if prefix else {},
        non_tensor=non_tensor,
        files=sorted(str(p) for p in directory.iterdir()),
    )

    class _SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any):
            from torch.distributed.checkpoint.metadata import StorageMeta

            md = read_dcp_metadata(directory)
            if getattr(md, "storage_meta", None) is None:
                md.storage_meta = StorageMeta()
            md.storage_meta.load_id = self.load_id
            return md

    def load(keys: Sequence[str]) -> dict[str, torch.Tensor]:
        import torch.distributed.checkpoint as dcp

        target = {
            prefix + k: torch.empty(infos[k].shape, dtype=infos[k].dtype) for k in keys
        }
        with warnings.catch_warnings():  # "torch.distributed is disabled": expected here
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(target, storage_reader=_SafeReader(str(directory)), no_dist=True)
        return {k: target[prefix + k] for k in keys}

    return Checkpoint(infos, load, source)


# --------------------------------------------------------------------------------------------
# directories
# --------------------------------------------------------------------------------------------


def _open_directory(path: Path, *, key, map_location, trust, progress) -> Checkpoint:
    if (path / ".metadata").is_file():
        return _open_dcp(path, key=key)
    entries = sorted(p.name for p in path.iterdir())
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if name in entries:
            return _open_index(path / name, key=key, map_location=map_location, trust=trust,
                               progress=progress)
    indexes = [e for e in entries if e.endswith(".index.json")]
    if len(indexes) == 1:
        return _open_index(path / indexes[0], key=key, map_location=map_location, trust=trust,
                           progress=progress)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if name in entries:
            return open_checkpoint(path / name, key=key, map_location=map_location, trust=trust)
    singles = [e for e in entries if e.endswith((".safetensors", *TORCH_SUFFIXES))]
    if len(singles) == 1:
        return open_checkpoint(path / singles[0], key=key, map_location=map_location, trust=trust)
    shown = ", ".join(entries[:10]) + (" ..." if len(entries) > 10 else "") or "nothing"
    raise UnreadableCheckpointError(
        f"directory {path} holds no checkpoint sd_widgets recognises (a torch.distributed."
        "checkpoint '.metadata', a '*.index.json' with shards, or exactly one .safetensors/.pt/"
        f".pth/.bin/.ckpt file). It contains: {shown}. Pass the file's path instead."
    )

