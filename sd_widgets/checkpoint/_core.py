"""The core types: :class:`TensorInfo`, :class:`CheckpointSource` and :class:`Checkpoint`.

A :class:`Checkpoint` is a ``Mapping[str, TensorInfo]``: key → shape, dtype, size and
storage identity, known without reading tensor data wherever the format allows it
(safetensors headers, DCP ``.metadata``, mmap-ed torch zip files). ``.tensor(key)`` reads
one tensor; ``.state_dict()`` reads them all. The format readers live in the sibling modules.
"""

from __future__ import annotations

import os
import re
from collections import Counter, OrderedDict
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn

from ..errors import CheckpointError, UnreadableCheckpointError
from ..units import dtype_name, human_bytes, numel
from ._paths import FileStamp, verify_stamps

SourceLike = Union[str, os.PathLike, Mapping, nn.Module, "Checkpoint"]


@dataclass(frozen=True)
class TensorInfo:
    """What is known about one checkpoint tensor without reading its data."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    #: identity of the underlying storage (tied-weight detection); None when unknown
    storage: Any = None
    #: other keys of this checkpoint that are the same tensor (same storage, offset, shape); a
    #: :class:`TiedKeys` (one shared group per tensor) when there are any
    tied: Sequence[str] = ()
    #: where the tensor lives: a file path (shards), or "memory"
    location: str | None = None

    @property
    def numel(self) -> int:
        """Number of elements (1 for a scalar)."""
        return numel(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes."""
        return self.numel * self.dtype.itemsize

    @property
    def dtype_name(self) -> str:
        """The dtype without ``torch.``: ``"float32"``."""
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
    #: the other weight sets next to the one used (e.g. {"ema": 38} when ``key`` is "model"):
    #: entries holding tensors that are neither the chosen entry nor inside or around it;
    #: ``open_checkpoint(src, key=name)`` opens one of them
    alternatives: dict[str, int] = field(default_factory=dict)
    #: other entries next to the weights, e.g. {"epoch": "int", "optimizer": "dict (2 entries)"}
    other_entries: dict[str, str] = field(default_factory=dict)
    #: entries of the state dict itself that are not tensors → their type
    non_tensor: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    #: the file was read with more than weights-only unpickling allowed (``trust`` not False)
    trusted: bool = False
    #: ``trust=[...]``: exactly the globals that were allowed (weights-only for the rest); the
    #: exported code admits the same ones and no more. Empty for ``trust=True``/``False``.
    allowed_globals: tuple[Any, ...] = ()

    def describe(self) -> str:
        """One line for people: kind, path, the entry the weights came from, alternatives."""
        where = f" {self.path}" if self.path else ""
        text = f"{self.kind}{where}"
        if self.key is not None:
            text += f", weights from entry {self.key!r}"
            if self.alternatives:
                text += f" (also holds {', '.join(map(repr, self.alternatives))})"
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
        stamps: Sequence[FileStamp] = (),
        row_reader: Callable[[str, int, int], torch.Tensor] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        self._infos = _mark_tied(_check_depth(dict(infos), source))
        self._loader = loader
        #: (key, start, stop) → rows ``start:stop`` of the key's first dimension, reading only
        #: those bytes (safetensors); None where a tensor costs nothing to read whole (memory,
        #: memory-mapped torch files)
        self._row_reader = row_reader
        #: the state dict's entries that are not tensors (a module's extra state, quantized
        #: packed parameters) → their values, as unpickled; named in ``source.non_tensor``
        self._values: dict[str, Any] = dict(values or {})
        self.source = source
        #: the files read, as they were when opened; checked before every read of tensors
        self.stamps: tuple[FileStamp, ...] = tuple(stamps)
        #: the ``_metadata`` (module versions) the checkpoint carried, or None
        self.metadata = OrderedDict(metadata) if metadata is not None else None

    # Mapping protocol -----------------------------------------------------------------------
    def __getitem__(self, key: str) -> TensorInfo:
        return self._infos[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    # the dict's own views and lookups, in C (Mapping's mixins call __getitem__ once per key)
    def __contains__(self, key: object) -> bool:
        return key in self._infos

    def get(self, key: str, default: Any = None) -> Any:
        """The :class:`TensorInfo` of ``key``, or ``default`` when the checkpoint has no such key."""
        return self._infos.get(key, default)

    def keys(self) -> KeysView[str]:
        """The keys, in the checkpoint's order."""
        return self._infos.keys()

    def values(self) -> ValuesView[TensorInfo]:
        """The :class:`TensorInfo` of every key, in the checkpoint's order."""
        return self._infos.values()

    def items(self) -> ItemsView[str, TensorInfo]:
        """``(key, TensorInfo)`` pairs, in the checkpoint's order."""
        return self._infos.items()

    def __repr__(self) -> str:
        return (
            f"<Checkpoint {self.source.describe()}: {len(self)} tensors, "
            f"{human_bytes(self.nbytes)}>"
        )

    # data ------------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes of all tensors, counted per key (a tied tensor once for each of its keys)."""
        return sum(i.nbytes for i in self._infos.values())

    @property
    def numel(self) -> int:
        """Elements of all tensors, counted per key."""
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

    def value(self, key: str) -> Any:
        """An entry of the state dict that is not a tensor (``source.non_tensor`` names them).

        A module's ``get_extra_state()`` value or a quantized module's packed parameters, as
        they were unpickled (weights-only unless the checkpoint was opened with ``trust``);
        ``load_state_dict`` hands it to the module's own loading (``set_extra_state``).
        """
        if key not in self._values:
            raise KeyError(
                f"{key!r} is not an entry of {self.source.describe()} that is not a tensor; "
                f"those are: {sorted(self._values)[:20]}"
            )
        return self._values[key]

    def read_rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of the first dimension of one tensor (a 0-d tensor: all of it).

        Reads only those bytes where the format allows it (safetensors: a view of the mapped
        file, valid while the file is unchanged); elsewhere the tensor is in memory or
        memory-mapped already and this is a view of it. What streamed readers
        (:func:`sd_widgets.compare_values`) use, at once, to keep memory bounded.
        """
        if key not in self._infos:
            raise KeyError(_unknown_key_message(key, self._infos))
        if self._row_reader is None or not self._infos[key].shape:
            t = self._read([key])[key]
            return t if t.dim() == 0 else t[start:stop]
        reader = self._row_reader
        return self._read([key], lambda _keys: {key: reader(key, start, stop)})[key]

    def _read(
        self,
        keys: Sequence[str],
        load: Callable[[Sequence[str]], dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Call the loader, with failures as typed errors naming the key.

        A file changed, truncated or removed since it was opened gives an
        :class:`UnreadableCheckpointError`.

        Every file is first checked against its stamp from opening time, so a truncated or
        replaced file gives :class:`~sd_widgets.errors.CheckpointChangedError` before any of its
        bytes are touched (a truncated memory-mapped file would otherwise raise SIGBUS).
        """
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        verify_stamps(self.stamps, f"reading {keys[0]!r}{more} from {self.source.describe()}")
        try:
            return (load or self._loader)(keys)
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
            if isinstance(cause, CheckpointError):  # already typed and says what to do
                raise cause from None
            detail = (str(cause).strip().splitlines() or [""])[0][:300]
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

    def to_frame(self) -> Any:
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


class TiedKeys(Sequence[str]):
    """The other keys of a group of tied keys, as a read-only sequence (compares like a tuple).

    Every key of a group shares the group's one tuple and one set, so a tensor saved under N
    names costs O(N) memory, not N lists of N - 1 names (a 341 KB file of one tensor under
    10,000 names used to take 3 GB). Iterating is O(N); ``in`` and ``len`` are O(1).
    """

    __slots__ = ("_group", "_key", "_members")

    def __init__(self, group: tuple[str, ...], members: frozenset[str], key: str) -> None:
        self._group, self._members, self._key = group, members, key

    def __len__(self) -> int:
        return len(self._group) - 1

    def __iter__(self) -> Iterator[str]:
        key = self._key
        return (k for k in self._group if k != key)

    def __contains__(self, other: object) -> bool:
        return other != self._key and other in self._members

    def __getitem__(self, index: Any) -> Any:
        return tuple(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TiedKeys):
            return self._group == other._group and self._key == other._key
        return isinstance(other, tuple) and tuple(self) == other

    def __hash__(self) -> int:
        return hash((self._group, self._key))

    def __repr__(self) -> str:
        return repr(tuple(self)) if len(self) <= 8 else f"<{len(self):,} tied keys>"


#: a key with more dot-separated names than this is refused: real models nest a few dozen
#: modules deep, and every view (tree, table, widget) costs memory per level of every key
MAX_KEY_DEPTH = 1_000


def _check_depth(infos: dict[str, TensorInfo], source: CheckpointSource) -> dict[str, TensorInfo]:
    """Refuse keys nested deeper than :data:`MAX_KEY_DEPTH` (one ``str.count`` per key)."""
    for k in infos:
        if isinstance(k, str) and k.count(".") >= MAX_KEY_DEPTH:
            raise UnreadableCheckpointError(
                f"{source.describe()}: the key {k[:80]!r}... is {k.count('.') + 1:,} names deep; "
                f"state dict keys of real models are a few dozen at most (limit "
                f"{MAX_KEY_DEPTH:,}). The file is hostile or not a state dict; nothing more was "
                "read."
            )
    return infos


#: how many tied keys a row shows (tables, JSON, the Explorer); the rest are counted
TIED_SHOWN = 16


def tied_preview(tied: Sequence[str] | None) -> list[str]:
    """The tied keys a row shows: all of them, or the first :data:`TIED_SHOWN` and a count.

    ``["b", "c"]``; for a tensor saved under 10,000 names, 16 names and ``"(+9,983 more)"``,
    so listing every row's ties stays linear in the number of keys.
    """
    if not tied:
        return []
    n = len(tied)
    if n <= TIED_SHOWN:
        return list(tied)
    shown = []
    for k in tied:
        shown.append(k)
        if len(shown) == TIED_SHOWN:
            break
    return [*shown, f"(+{n - TIED_SHOWN:,} more)"]


#: checkpoint kinds whose key order says nothing about the model: a safetensors file stores its
#: tensors by dtype, then by name as a string (``layers.10`` before ``layers.2``)
_UNORDERED_KINDS = frozenset({"safetensors", "safetensors-index"})
_DIGITS = re.compile(r"[0-9]+")


def _number_aware(key: str) -> str:
    """``key`` with each run of digits led by a character for its length.

    String order of the results puts ``layers.2`` before ``layers.10`` (numbers by value,
    leading zeros aside).
    """
    return _DIGITS.sub(lambda m: chr(0x20 + len(m[0])) + m[0], key)


def listing_order(ckpt: Checkpoint) -> list[str]:
    """The keys of ``ckpt`` in the order a listing shows them.

    Used by ``sd-widgets inspect`` and by both sides of a comparison of two checkpoints. The
    file's order where it has one (``torch.save`` keeps the state dict's, which is the model's);
    for safetensors files, whose order is by dtype and then by name as a string, the names with
    numbers compared as numbers: a module's keys together, ``layers.2`` before ``layers.10``.
    """
    if ckpt.source.kind not in _UNORDERED_KINDS:
        return list(ckpt)
    return sorted(ckpt, key=_number_aware)


def _mark_tied(infos: dict[str, TensorInfo]) -> dict[str, TensorInfo]:
    # storages held more than once are counted in C; only their keys are grouped (a tie is the
    # same storage, shape and dtype)
    held = Counter(info.storage for info in infos.values())
    unknown = held.pop(None, 0)
    groups: dict[Any, list[str]] = {}
    if len(held) < len(infos) - unknown:  # some storage is held by more than one key
        for k, info in infos.items():
            if info.storage is not None and held[info.storage] > 1:
                groups.setdefault((info.storage, info.shape, info.dtype), []).append(k)
    for keys in groups.values():
        if len(keys) > 1:
            group, members = tuple(keys), frozenset(keys)
            for k in keys:  # the constructor: dataclasses.replace costs 20 µs a key
                i = infos[k]
                infos[k] = TensorInfo(
                    i.shape, i.dtype, i.storage, TiedKeys(group, members, k), i.location
                )
    return infos


def _unknown_key_message(key: str, keys: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(keys), n=3)
    return f"{key!r} is not in this checkpoint" + (f"; did you mean {close}?" if close else "")


def _type_summary(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"Tensor{tuple(v.shape)} {dtype_name(v.dtype)}"
    if isinstance(v, Mapping):
        return f"{type(v).__name__} ({len(v)} entr{'y' if len(v) == 1 else 'ies'})"
    if isinstance(v, (list, tuple)):
        return f"{type(v).__name__} ({len(v)} item{'' if len(v) == 1 else 's'})"
    if isinstance(v, str):  # cut before repr(): a string from a file may be huge
        text = repr(v[:40])
        return f"str: {text if len(v) <= 40 else text[:37] + '...'}"
    if isinstance(v, (int, float, bool)) or v is None:
        text = repr(v) if not isinstance(v, int) or abs(v) < 10**40 else "<huge int>"
        return f"{type(v).__name__}: {text if len(text) <= 40 else text[:37] + '...'}"
    return type(v).__name__
