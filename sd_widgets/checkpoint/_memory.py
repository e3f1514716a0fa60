"""In-memory objects: mappings and modules, and finding the weights inside nested checkpoints.

Also used for what a torch file unpickles to: ``{"state_dict": ..., "optimizer": ...}``,
``{"model": ..., "ema": ...}`` and the like. The entry holding the weights is chosen by name
(:data:`PREFERRED_KEYS`) or by tensor count; the others are listed in
``CheckpointSource.alternatives`` and can be opened with ``key=``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..errors import NotAStateDictError
from ._core import Checkpoint, CheckpointSource, TensorInfo, _type_summary
from ._paths import FileStamp

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

Path_ = tuple[str, ...]


def _count_tensors(m: Mapping) -> int:
    return sum(1 for v in m.values() if isinstance(v, torch.Tensor))


def _candidates(obj: Mapping, depth: int = 2, prefix: Path_ = ()) -> dict[Path_, int]:
    """Nested entries (as key paths) whose values include tensors, skipping optimizer state."""
    found: dict[Path_, int] = {}
    for k, v in obj.items():
        if not isinstance(k, str) or k in NOT_WEIGHTS:
            continue
        if isinstance(v, nn.Module):
            v = v.state_dict()
        if isinstance(v, Mapping):
            path = (*prefix, k)
            n = _count_tensors(v)
            if n:
                found[path] = n
            if depth > 1:
                found.update(_candidates(v, depth - 1, path))
    return found


def entry_text(path: Sequence[str]) -> str:
    r"""A nested entry's path as one string: names joined by ``/``.

    A ``/`` or ``\`` inside a name is escaped with a backslash, so the text names exactly one
    path: ``("run", "ema")`` is ``run/ema``, the single entry ``"run/ema"`` is ``run\/ema``.
    :func:`split_entry` reads it back.
    """
    return "/".join(p.replace("\\", "\\\\").replace("/", "\\/") for p in path)


def split_entry(text: str) -> Path_:
    r"""The path :func:`entry_text` wrote: split on unescaped ``/``, escapes removed.

    A backslash escapes a following ``/`` or ``\``; any other backslash is kept as it is.
    """
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "/\\":
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == "/":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return tuple(parts)


_as_text = entry_text


def _resolve(obj: Any, key: str | Sequence[str]) -> Path_ | None:
    r"""The key path ``key`` names in ``obj``, or None.

    A string is read by :func:`split_entry`: ``run/ema`` is the entry ``ema`` inside ``run``,
    ``run\/ema`` the single entry named ``run/ema``, so the text :attr:`source.key` reports
    names exactly the entry that was read. Only when the string names no entry that way is it
    matched loosely (a name containing ``/`` given without escapes, ``{"x/y": ...}`` with
    ``key="x/y"``): whole names first, then split at ``/``.
    """
    if not isinstance(key, str):
        parts = tuple(key)
        if not all(isinstance(p, str) for p in parts):
            return None
        return parts if _walk(obj, parts) is not _MISSING else None
    exact = split_entry(key)
    if _walk(obj, exact) is not _MISSING:
        return exact

    def search(cur: Any, rest: str, depth: int) -> Path_ | None:
        if isinstance(cur, nn.Module):
            cur = cur.state_dict()
        if not isinstance(cur, Mapping) or depth > 8:
            return None
        if rest in cur:
            return (rest,)
        pieces = rest.split("/")
        for i in range(len(pieces) - 1, 0, -1):
            head = "/".join(pieces[:i])
            if head in cur:
                tail = search(cur[head], "/".join(pieces[i:]), depth + 1)
                if tail is not None:
                    return (head, *tail)
        return None

    return search(obj, key, 0)


_MISSING = object()


def _walk(obj: Any, parts: Path_) -> Any:
    cur: Any = obj
    for p in parts:
        if isinstance(cur, nn.Module):
            cur = cur.state_dict()
        if not isinstance(cur, Mapping) or p not in cur:
            return _MISSING
        cur = cur[p]
    return cur


def _key_text(k: Any) -> str:
    """A key for a message: control characters escaped, no quotes, at most 80 characters."""
    text = repr(str(k)[:80])[1:-1]
    return text + ("..." if len(str(k)) > 80 else "")


def _related(a: Path_, b: Path_) -> bool:
    """One path is inside (or is) the other."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _fmt_candidates(c: Mapping[Path_, int]) -> str:
    return ", ".join(f"{_as_text(k)!r} ({n} tensors)" for k, n in c.items())


def from_object(
    obj: Any,
    base: CheckpointSource,
    key: str | Sequence[str] | None,
    stamps: Sequence[FileStamp] = (),
) -> Checkpoint:
    """A :class:`Checkpoint` over an in-memory object (a state dict, a module, a nested dict).

    Parameters
    ----------
    obj
        What was unpickled or passed in.
    base
        The source so far (kind, path, files, trust); it is copied, never modified.
    key
        The nested entry to use (``"ema"``, ``"a/b"``, ``["a", "b"]``); chosen when None.
    stamps
        The files ``obj`` was read from, as they were at opening.

    Returns
    -------
    Checkpoint
        Over the chosen entry; ``source.key``, ``candidates`` and ``alternatives`` say which
        entry was used and which others hold weights.
    """
    where = base.path or f"the {base.kind}"
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise NotAStateDictError(
            f"{where} holds a {type(obj).__name__}, not a mapping of parameter names to tensors. "
            "Save model.state_dict() (or a dict containing it) instead."
        )
    candidates = _candidates(obj)
    chosen: Path_ | None
    if key is not None:
        if not isinstance(key, str) and not (
            isinstance(key, Sequence) and all(isinstance(p, str) for p in key)
        ):
            raise TypeError(f"key={key!r}: pass a string ('state_dict', 'a/b') or a list of them")
        chosen = _resolve(obj, key)
        shown = key if isinstance(key, str) else "/".join(key)
        if chosen is None:
            raise NotAStateDictError(
                f"{where} has no entry {shown!r}. Entries holding tensors: "
                f"{_fmt_candidates(candidates) or 'none'}; top-level entries: "
                f"{', '.join(repr(k) for k in list(obj)[:20])}."
            )
        sd = _walk(obj, chosen)
        if isinstance(sd, nn.Module):
            sd = sd.state_dict()
        if not isinstance(sd, Mapping) or not _count_tensors(sd):
            raise NotAStateDictError(
                f"entry {shown!r} of {where} is a {_type_summary(sd)}, not a state dict. "
                f"Entries holding tensors: {_fmt_candidates(candidates) or 'none'}."
            )
        parent = _walk(obj, chosen[:-1])
        if isinstance(parent, nn.Module):
            parent = parent.state_dict()
        other_entries = {str(k): _type_summary(v) for k, v in parent.items() if k != chosen[-1]}
    elif _count_tensors(obj):
        sd, chosen, other_entries = obj, None, {}
    else:
        if not candidates:
            if not obj:
                raise NotAStateDictError(f"{where} is an empty mapping: there are no tensors.")
            shown_entries = ", ".join(
                f"{_key_text(k)} ({_type_summary(v)})" for k, v in list(obj.items())[:8]
            )
            raise NotAStateDictError(
                f"{where} holds no tensors: its entries are {shown_entries}. "
                "Expected a state dict (names → tensors) or a checkpoint containing one."
            )
        auto = next(
            (c for name in PREFERRED_KEYS for c in candidates if c[-1] == name),
            max(candidates, key=lambda c: candidates[c]),
        )
        return from_object(obj, base, list(auto), stamps)
    tensors: OrderedDict[str, torch.Tensor] = OrderedDict()
    non_tensor: dict[str, str] = {}
    values: dict[str, Any] = {}
    for k, v in sd.items():
        if not isinstance(k, str):
            raise NotAStateDictError(
                f"{where}: key {k!r} is a {type(k).__name__}; state dict keys are strings "
                "(this looks like optimizer state, not model weights)."
            )
        if isinstance(v, torch.Tensor):
            tensors[k] = v
        else:
            non_tensor[k] = _type_summary(v)
            values[k] = v
    source = replace(
        base,
        key=_as_text(chosen) if chosen is not None else None,
        candidates={_as_text(c): n for c, n in candidates.items()},
        alternatives=(
            {_as_text(c): n for c, n in candidates.items() if not _related(c, chosen)}
            if chosen is not None
            else {}
        ),
        other_entries=other_entries,
        non_tensor=non_tensor,
    )
    location = "memory" if source.path is None else source.path
    infos = {k: info_from_tensor(t, location) for k, t in tensors.items()}
    metadata = getattr(sd, "_metadata", None)
    if metadata is not None and not _valid_metadata(metadata):
        metadata = None

    def load(keys: Sequence[str]) -> dict[str, torch.Tensor]:
        return {k: tensors[k] for k in keys}

    return Checkpoint(infos, load, source, metadata, stamps=stamps, values=values)


def _valid_metadata(metadata: Any) -> bool:
    """``_metadata`` as torch writes it: module prefix → dict of version info."""
    return isinstance(metadata, Mapping) and all(
        isinstance(k, str) and isinstance(v, Mapping) for k, v in metadata.items()
    )


def storage_identity(t: torch.Tensor) -> Any:
    """What makes two tensors the same tensor: storage, offset, stride (public torch APIs).

    The storage is identified as safetensors' ``_find_shared_tensors`` does, by
    ``untyped_storage().data_ptr()`` and ``nbytes()`` (plus the device). Meta-device and empty
    storages have no address (``data_ptr() == 0``); for them the storage object itself
    identifies it (torch keeps one Python object per live storage), held in the identity so it
    cannot be collected and its ``id`` reused.
    """
    try:
        st = t.untyped_storage()
        ptr = st.data_ptr()
        where: Any = (t.device.type, t.device.index, ptr, st.nbytes()) if ptr else (id(st), st)
        return (where, t.storage_offset(), tuple(t.stride()))
    except Exception:  # e.g. tensor subclasses without storage
        return None


def info_from_tensor(t: torch.Tensor, location: str | None) -> TensorInfo:
    """The :class:`TensorInfo` of an in-memory tensor."""
    return TensorInfo(tuple(t.shape), t.dtype, storage_identity(t), (), location)
