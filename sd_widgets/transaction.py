"""The transaction behind :func:`sd_widgets.partial_load`: snapshot, load, verify, restore.

A load that can be rolled back must first copy what it overwrites, so the least it can cost is a
copy plus the load itself. To stay close to that floor the transaction walks the touched tensors
in chunks of a few megabytes: it copies a chunk's tensors into the snapshot, loads them through
torch's own per-module loading (``Module._load_from_state_dict``: size checks, casts, BatchNorm
version handling), verifies them bit for bit against their source and, when asked, measures
them, all while the chunk is still in the CPU cache. Models with load hooks or their own loading
code are loaded in one ``load_state_dict(strict=False)`` call instead, exactly as torch would,
and modules that declare they transform what they load are verified against a throwaway copy
that loaded the same entries the same way (:class:`Transformed`).

Every failure, ``KeyboardInterrupt`` included, restores the snapshot before it propagates. While
the transaction runs, Ctrl-C is noted rather than raised at an arbitrary line (when the process
uses Python's default SIGINT handler, in the main thread) and acted on between chunks, so that
the restore itself cannot be cut short.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import math
import mmap
import signal
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.modules.module import _IncompatibleKeys

from .metadata import copy_metadata
from .statuses import BN_BUFFERS

__all__ = [
    "CHUNK_BYTES",
    "SNAPSHOT_KINDS",
    "Interrupts",
    "Snapshot",
    "Transformed",
    "same",
]

SnapshotKind = Literal["memory", "disk", "auto"]
SNAPSHOT_KINDS: tuple[str, ...] = ("memory", "disk", "auto")

CHUNK_BYTES = 4 * 2**20
"""Bytes of model tensors per chunk: snapshot, load, verify and statistics of a chunk stay in
the CPU cache (the copy, the source and the loaded tensor together fit a typical L3)."""

AUTO_MEMORY_FRACTION = 0.5
"""``snapshot="auto"`` keeps the snapshot in memory up to this share of the available memory
and spills the rest to a temporary file."""

_ALIGN = 64
TWIN_MEMORY_FRACTION = 0.25  # a transforming module is copied to verify it only below this

#: torch's own ``_load_from_state_dict`` overrides that only handle module versions
_PLAIN_LOADERS = frozenset(
    {
        nn.Module._load_from_state_dict,
        _NormBase._load_from_state_dict,
        _InstanceNorm._load_from_state_dict,
    }
)


# --------------------------------------------------------------------------------------------
# comparing bytes


def _load_memcmp() -> Any:
    try:
        name = ctypes.util.find_library("c") if sys.platform != "win32" else "msvcrt"
        fn = ctypes.CDLL(name).memcmp if name else None
    except (OSError, AttributeError):  # pragma: no cover - no C library to call
        return None
    if fn is not None:
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        fn.restype = ctypes.c_int
    return fn


_MEMCMP = _load_memcmp()


def _plain_dense(t: torch.Tensor) -> bool:
    return (
        t.device.type == "cpu"
        and t.layout == torch.strided
        and not t.is_quantized
        and not t.is_nested
        and not t.is_conj()
        and not t.is_neg()
    )  # lazy views: the
    # bytes are not the values


def bytes_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` are dense CPU tensors of one dtype and shape with equal bytes.

    ``False`` means "different, or not decidable this way" (callers then compare values).

    ``memcmp`` reads each byte once at memory speed (``torch.equal`` on float32 is ~3x slower).
    Identical bytes are identical values, NaN payloads included.
    """
    try:
        if (
            not _plain_dense(a)
            or not _plain_dense(b)
            or a.dtype != b.dtype
            or a.shape != b.shape
            or not a.is_contiguous()
            or not b.is_contiguous()
        ):
            return False
        n = a.numel() * a.element_size()
        if n == 0:
            return True
        pa, pb = a.data_ptr(), b.data_ptr()
        if not pa or not pb:
            return False
        if pa == pb:
            return True
        if _MEMCMP is None:  # pragma: no cover - no C library
            return False
        return _MEMCMP(pa, pb, n) == 0
    except (RuntimeError, TypeError, ctypes.ArgumentError):  # no storage (e.g. a subclass)
        return False


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (NaN equals NaN), same dtype and shape."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_meta or b.is_meta:  # no values: same when both are meta (a meta one left = not loaded)
        return a.is_meta and b.is_meta
    if bytes_equal(a, b) or torch.equal(a, b):
        return True
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
    return False


# --------------------------------------------------------------------------------------------
# Ctrl-C


class Interrupts:
    """Within this context Ctrl-C is noted instead of raised mid-line; :meth:`check` raises it.

    Only when SIGINT has Python's default handler and this is the main thread; otherwise
    ``KeyboardInterrupt`` may still arrive anywhere, and the transaction's ``except`` restores.
    """

    def __init__(self) -> None:
        self.pending = False
        self._previous: Any = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError, TypeError):
                if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    signal.signal(signal.SIGINT, self._note)
                    self._previous = signal.default_int_handler
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.pending = True

    def check(self) -> None:
        """Raise the ``KeyboardInterrupt`` noted since the last check, if any."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def __exit__(self, exc_type: object, *exc: object) -> None:
        previous, self._previous = self._previous, None
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if self.pending and exc_type is None:  # noted after the last check: act on it now
            self.pending = False
            raise KeyboardInterrupt


def keep_trying(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` to the end even if ``KeyboardInterrupt`` cuts it short.

    ``fn`` must be idempotent, as a restore is. A second Ctrl-C during a rollback restarts the
    rollback.
    """
    while True:
        try:
            return fn()
        except KeyboardInterrupt:
            continue


# --------------------------------------------------------------------------------------------
# snapshot storage


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _file_backed(nbytes: int, directory: str | None) -> torch.Tensor:
    """A uint8 buffer over an unlinked temporary file.

    The kernel writes it back and evicts it under memory pressure; the file disappears with the
    last view of the buffer.
    """
    with tempfile.TemporaryFile(prefix="sdw-snapshot-", dir=directory) as f:
        f.truncate(nbytes)
        mm = mmap.mmap(f.fileno(), nbytes)
    return torch.frombuffer(mm, dtype=torch.uint8)  # the mapping outlives the closed file


class _Arena:
    """One buffer of a planned size handed out in aligned pieces (the copies are views)."""

    def __init__(self, nbytes: int, make: Callable[[int], torch.Tensor]) -> None:
        self.size = max(nbytes, _ALIGN)
        self._make = make
        self._buffer: torch.Tensor | None = None
        self.used = 0

    def take(self, nbytes: int) -> torch.Tensor | None:
        """``nbytes`` of the buffer, or None when they do not fit."""
        start = -(-self.used // _ALIGN) * _ALIGN
        if start + nbytes > self.size:
            return None
        if self._buffer is None:
            self._buffer = self._make(self.size)
        self.used = start + nbytes
        return self._buffer[start : start + nbytes]


SNAPSHOT_POOL_BYTES = 512 * 2**20
"""Memory of released snapshots (after ``undo()``, a rollback, or a report that was dropped)
kept for the next snapshot to copy into, up to this many bytes: fresh memory costs a page fault
per 4 KB, often more than the copy itself, so load → undo → load again does not pay it twice.
A copy is only reused when nothing else refers to it (no tensor from ``before()`` or a view)."""

_POOL: dict[int, list[torch.UntypedStorage]] = {}  # nbytes -> free storages
_POOL_STATE = {"bytes": 0}
_POOL_LOCK = threading.Lock()


def _pooled(like: torch.Tensor, nbytes: int) -> torch.Tensor | None:
    """A contiguous tensor shaped like ``like`` over pooled memory, or None.

    Not a view: it has no base.
    """
    with _POOL_LOCK:
        free = _POOL.get(nbytes)
        if not free:
            return None
        _POOL_STATE["bytes"] -= nbytes
        storage = free.pop()
    return torch.empty(0, dtype=like.dtype).set_(storage, 0, like.shape, _strides(like.shape))


def _strides(shape: Sequence[int]) -> list[int]:
    """Row-major (contiguous) strides of ``shape``."""
    out, step = [], 1
    for size in reversed(shape):
        out.append(step)
        step *= max(size, 1)
    return out[::-1]


def _recycle(copies: list[torch.Tensor]) -> None:
    """Keep the memory of ``copies`` that nothing outside the snapshot refers to.

    The caller holds exactly one reference to each (in ``copies``).
    """
    while copies:
        t = copies.pop()
        # references: the loop variable and getrefcount's argument; storage users: this
        # tensor and the wrapper untyped_storage() returns. More means someone else holds it.
        if (
            sys.getrefcount(t) != 2
            or not t.is_contiguous()
            or type(t) is not torch.Tensor
            or t.device.type != "cpu"
            or t.layout != torch.strided
        ):
            continue
        try:
            if torch._C._storage_Use_Count(t.untyped_storage()._cdata) != 2:
                continue
            n = t.numel() * t.element_size()
            storage = t.untyped_storage()
            if storage.nbytes() != n or t.storage_offset() != 0 or t._base is not None:
                continue
        except (AttributeError, RuntimeError, TypeError):  # private API gone: no pooling
            return
        with _POOL_LOCK:
            if _POOL_STATE["bytes"] + n > SNAPSHOT_POOL_BYTES:
                continue
            _POOL.setdefault(n, []).append(storage)
            _POOL_STATE["bytes"] += n


def clear_snapshot_pool() -> int:
    """Free the memory kept for reuse (:data:`SNAPSHOT_POOL_BYTES`); returns the bytes freed."""
    with _POOL_LOCK:
        freed = _POOL_STATE["bytes"]
        _POOL.clear()
        _POOL_STATE["bytes"] = 0
    return freed


def _copyable(t: torch.Tensor) -> bool:
    return type(t) in (torch.Tensor, nn.Parameter) and _plain_dense(t)


@dataclass
class Saved:
    """One touched tensor slot and the copy of its value before the load."""

    key: str
    module: nn.Module
    attr: str
    is_param: bool
    obj: torch.Tensor
    data: torch.Tensor | None  # None for meta tensors (nothing to copy back)


class Snapshot:
    """Copies of exactly the tensors a load touches (tied tensors copied once).

    Taken chunk by chunk with :meth:`save`; :meth:`restore` puts every saved one back.

    ``kind``: ``"memory"`` keeps the copies in RAM, ``"disk"`` in one temporary file mapped into
    memory, ``"auto"`` in RAM up to ``budget`` bytes (default: half the available memory) and
    the rest on disk. :attr:`used` says where the copies ended up.
    """

    def __init__(
        self,
        sizes: Sequence[int] = (),
        kind: str = "auto",
        *,
        budget: int | None = None,
        directory: str | None = None,
    ) -> None:
        if kind not in SNAPSHOT_KINDS:
            raise ValueError(
                f"snapshot={kind!r} is not a snapshot kind; use one of {SNAPSHOT_KINDS}"
            )
        self.items: list[Saved] = []
        self._copies: dict[int, torch.Tensor | None] = {}
        if kind == "memory":
            budget = None
        elif kind == "disk":
            budget = 0
        elif budget is None:
            avail = available_memory()
            budget = None if avail is None else int(avail * AUTO_MEMORY_FRACTION)
        self._memory_left: float = math.inf if budget is None else budget
        # plan the file: the copies past the budget, in the order save() meets them
        left, disk = self._memory_left, 0
        for n in sizes:
            if n <= left:
                left -= n
            else:
                disk += -(-n // _ALIGN) * _ALIGN
        self._disk = _Arena(disk, lambda n: _file_backed(n, directory))
        self._directory = directory
        self.memory_bytes = 0
        self.disk_bytes = 0

    @property
    def used(self) -> str:
        """Where the copies are: ``"memory"``, ``"disk"``, or ``"memory+disk"``."""
        if self.disk_bytes and self.memory_bytes:
            return "memory+disk"
        return "disk" if self.disk_bytes else "memory"

    def _copy(self, t: torch.Tensor) -> torch.Tensor:
        src = t.detach()
        n = src.numel() * src.element_size()
        if not _copyable(t) or n == 0:
            return src.clone()
        if n <= self._memory_left:
            # memory a released snapshot left (no page faults), else torch's allocator (a
            # fresh mapping, even with huge pages asked for, faults in every page)
            self._memory_left -= n
            self.memory_bytes += n
            out = _pooled(src, n)
            if out is None:
                return src.clone()
            out.copy_(src)
            return out
        dst = self._disk.take(n)
        if dst is None:  # more than planned (a tensor grew?): a file of its own
            dst = _file_backed(n, self._directory)
        self.disk_bytes += n
        out = dst.view(src.dtype).view(src.shape)
        out.copy_(src)
        return out

    def save(self, slots: Iterable[tuple[str, nn.Module, str, bool, torch.Tensor]]) -> list[Saved]:
        """Copy these ``(key, module, attr, is_param, tensor)`` slots; returns their records."""
        new = []
        for key, module, attr, is_param, obj in slots:
            if id(obj) not in self._copies:
                self._copies[id(obj)] = None if obj.is_meta else self._copy(obj)
            saved = Saved(key, module, attr, is_param, obj, self._copies[id(obj)])
            self.items.append(saved)
            new.append(saved)
        return new

    def tensors(self) -> dict[str, torch.Tensor]:
        """Key → the saved copy (the live tensor itself where no copy was needed)."""
        return {s.key: (s.data if s.data is not None else s.obj.detach()) for s in self.items}

    def restore(self) -> list[str]:
        """Put every saved tensor back; returns the keys that could not be restored exactly.

        Never stops at the first failure: a tensor whose ``copy_`` is broken (patched, or a
        subclass) gets its saved copy through ``.data`` instead, and the others are restored.
        Idempotent, so an interrupted restore can simply run again.
        """
        with torch.no_grad():
            for s in self.items:
                container = s.module._parameters if s.is_param else s.module._buffers
                if container.get(s.attr) is not s.obj:
                    container[s.attr] = s.obj  # type: ignore[assignment]  # undo assign=True
                if s.data is None:
                    continue
                try:
                    if s.obj.shape == s.data.shape and s.obj.dtype == s.data.dtype:
                        # the class's copy_, not an attribute patched onto this tensor
                        torch.Tensor.copy_(s.obj, s.data)
                    else:
                        s.obj.data = s.data.clone()
                except Exception:
                    with contextlib.suppress(Exception):  # else reported by matches_model()
                        s.obj.data = s.data.clone()
        return self.matches_model()

    def matches_model(self) -> list[str]:
        """Keys whose current value differs from the snapshot (empty after a clean restore)."""
        bad = []
        for s in self.items:
            container = s.module._parameters if s.is_param else s.module._buffers
            cur = container.get(s.attr)
            if cur is not s.obj or (s.data is not None and not same(cur.detach(), s.data)):
                bad.append(s.key)
        return bad

    def release(self) -> None:
        """Drop the copies; their memory goes to the pool (:data:`SNAPSHOT_POOL_BYTES`)."""
        copies = [c for c in self._copies.values() if c is not None]  # (file views: skipped)
        self.items = []
        self._copies = {}
        self._disk = None  # type: ignore[assignment]
        _recycle(copies)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown, half-built snapshot
            self.release()


# --------------------------------------------------------------------------------------------
# what a load touches


@dataclass
class Slot:
    """Where one model key lives: the module, the attribute, and whether it is a parameter."""

    key: str
    module: nn.Module
    prefix: str  # the module's key prefix, "layer1.0.bn1." ("" for the root)
    attr: str
    is_param: bool

    def get(self) -> torch.Tensor:
        t = (self.module._parameters if self.is_param else self.module._buffers)[self.attr]
        assert t is not None  # slots_of() only makes slots for tensors that exist
        return t

    def as_tuple(self) -> tuple[str, nn.Module, str, bool, torch.Tensor]:
        return self.key, self.module, self.attr, self.is_param, self.get()


def slots_of(model: nn.Module, keys: Iterable[str]) -> dict[str, Slot]:
    """The slot of each key (keys that are not a parameter or buffer are left out)."""
    modules: dict[str, nn.Module] = {}
    out = {}
    for key in keys:
        mod_name, _, attr = key.rpartition(".")
        module = modules.get(mod_name)
        if module is None:
            module = modules[mod_name] = model.get_submodule(mod_name)
        if module._parameters.get(attr) is not None:
            is_param = True
        elif module._buffers.get(attr) is not None:
            is_param = False
        else:
            continue
        out[key] = Slot(key, module, f"{mod_name}." if mod_name else "", attr, is_param)
    return out


def chunks(
    keys: Sequence[str], sizes: Mapping[str, int], limit: int = CHUNK_BYTES
) -> Iterator[list[str]]:
    """Consecutive runs of ``keys`` of at most ``limit`` bytes (a bigger tensor on its own)."""
    run: list[str] = []
    total = 0
    for k in keys:
        n = sizes[k]
        if run and total + n > limit:
            yield run
            run, total = [], 0
        run.append(k)
        total += n
    if run:
        yield run


# --------------------------------------------------------------------------------------------
# modules that transform what they load


def _own_hook(module: nn.Module, hook: Any) -> bool:
    """Whether the module registered this hook itself (one of its own methods or functions)."""
    fn = getattr(hook, "hook", hook)  # torch wraps hooks in _WrappedHook
    if getattr(fn, "__self__", None) is module:
        return True
    owner = getattr(fn, "__qualname__", "").split(".")[0]
    return owner in {cls.__name__ for cls in type(module).__mro__ if cls is not nn.Module}


def loading_code(module: nn.Module) -> tuple[bool, bool]:
    """(has loading code of its own, all of it declared by the module itself).

    Loading code: an override of ``_load_from_state_dict`` (other than torch's BatchNorm and
    InstanceNorm version handling) or load pre-/post-hooks. Declared: the override, and every
    hook a method or function of the module's own class, e.g. ``self._convert``.
    """
    override = type(module)._load_from_state_dict not in _PLAIN_LOADERS
    hooks = [
        *module._load_state_dict_pre_hooks.values(),
        *module._load_state_dict_post_hooks.values(),
    ]
    if not override and not hooks:
        return False, True
    return True, all(_own_hook(module, h) for h in hooks)


def plain_loading(model: nn.Module) -> bool:
    """True when loading module by module is exactly what ``model.load_state_dict`` does.

    That is, no module has loading code of its own and ``load_state_dict`` is torch's.
    """
    if type(model).load_state_dict is not nn.Module.load_state_dict:
        return False
    return not any(loading_code(m)[0] for m in model.modules())


@dataclass
class Transformed:
    """Keys under modules that transform what they load, each with a copy taken before the load.

    The copies are throwaway. Loading the same entries into the copy gives what the module's own
    loading produces, and the live result must equal that.
    """

    how: dict[str, str] = field(default_factory=dict)  # key -> how it was verified
    _twins: list[tuple[str, nn.Module | None, str, list[str]]] = field(default_factory=list)

    @classmethod
    def find(cls, model: nn.Module, keys: Sequence[str], *, any_hook: bool) -> Transformed:
        """Top-most modules with declared loading code that own some of ``keys``.

        Any loading code counts with ``any_hook``. Each is copied now, before the load.
        """
        out = cls()
        tops: dict[str, nn.Module] = {}
        for name, module in model.named_modules():
            has, declared = loading_code(module)
            if not has or not (declared or any_hook):
                continue
            if any(name == t or name.startswith(t + ".") or t == "" for t in tops):
                continue
            tops[name] = module
        for name, module in tops.items():
            prefix = f"{name}." if name else ""
            under = [k for k in keys if k.startswith(prefix)]
            if not under:
                continue
            size = sum(
                nbytes(t)
                for t in module.state_dict(keep_vars=True).values()
                if isinstance(t, torch.Tensor)
            )
            avail = available_memory()
            twin: nn.Module | None = None
            if avail is not None and size > TWIN_MEMORY_FRACTION * avail:
                note = f"a copy would need {size} bytes of the {avail} available"
            else:
                try:
                    twin, note = copy.deepcopy(module), ""
                except Exception as exc:  # not copyable: torch's own checks are all there is
                    note = f"{type(exc).__name__}: {exc}"
            out._twins.append((prefix, twin, note, under))
            for k in under:
                out.how[k] = (
                    f"equal to a copy of {name or 'the model'!r} that loaded the same entries"
                    if twin is not None
                    else f"verified by torch's loader only ({name or 'the model'!r} could not be "
                    f"copied to check it: {note})"
                )
        return out

    def verify(
        self, sd: Mapping[str, torch.Tensor], metadata: Mapping[str, Any], slots: Mapping[str, Slot]
    ) -> None:
        """Load each copy the same way and compare.

        Raises RuntimeError naming the first key whose live value differs from what the module's
        own loading produced.
        """
        for prefix, twin, _, under in self._twins:
            if twin is None:
                continue
            local: OrderedDict[str, torch.Tensor] = OrderedDict(
                (k[len(prefix) :], v) for k, v in sd.items() if k.startswith(prefix)
            )
            local._metadata = OrderedDict(  # type: ignore[attr-defined]
                (p[len(prefix) :] if prefix else p, dict(v))
                for p, v in metadata.items()
                if not prefix or p == prefix[:-1] or p.startswith(prefix)
            )
            if prefix and prefix[:-1] in metadata:
                local._metadata[""] = dict(metadata[prefix[:-1]])  # type: ignore[attr-defined]
            with torch.no_grad():
                twin.load_state_dict(local, strict=False)
            twin_sd = twin.state_dict(keep_vars=True)
            for k in under:
                expected = twin_sd.get(k[len(prefix) :])
                cur = slots[k].get().detach()
                if expected is None or not same(cur, expected.detach()):
                    raise RuntimeError(
                        f"{k!r} differs from what its module's own loading produces (loading "
                        "the same entries into a copy of the module gave another value)"
                    )
            self._twins = [(p, None, n, u) for p, _, n, u in self._twins]  # free the copies


# --------------------------------------------------------------------------------------------
# loading


def torch_error(model: nn.Module, errors: Sequence[str]) -> RuntimeError:
    """The RuntimeError ``load_state_dict`` raises for these error messages."""
    return RuntimeError(
        "Error(s) in loading state_dict for {}:\n\t{}".format(
            model.__class__.__name__, "\n\t".join(errors)
        )
    )


def load_modules(
    model: nn.Module,
    sd: Mapping[str, torch.Tensor],
    keys: Sequence[str],
    slots: Mapping[str, Slot],
    metadata: Mapping[str, Any],
    missing: list[str],
) -> None:
    """Torch's per-module loading step for the modules owning ``keys``.

    That step is ``_load_from_state_dict``, what ``load_state_dict`` runs for every module.
    Raises as ``load_state_dict`` would. Only for models without loading code of their own
    (:func:`plain_loading`).
    """
    by_module: dict[int, tuple[nn.Module, str, dict[str, torch.Tensor]]] = {}
    for k in keys:
        slot = slots[k]
        entry = by_module.get(id(slot.module))
        if entry is None:
            entry = by_module[id(slot.module)] = (slot.module, slot.prefix, {})
        entry[2][k] = sd[k]
    errors: list[str] = []
    unexpected: list[str] = []
    for module, prefix, local in by_module.values():
        local_metadata = dict(metadata.get(prefix[:-1], {}))
        module._load_from_state_dict(
            local, prefix, local_metadata, True, missing, unexpected, errors
        )
    if unexpected:
        errors.insert(
            0,
            "Unexpected key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in unexpected)),
        )
    if errors:
        raise torch_error(model, errors)


def incompatible_keys(
    model_keys: Sequence[str],
    loaded: Iterable[str],
    reported_missing: Iterable[str],
    visited_prefixes: set[str],
) -> _IncompatibleKeys:
    """What ``load_state_dict(strict=False)`` returns for a module-by-module load.

    Keys of the modules it loaded that they reported missing, and every key of the modules it
    skipped.
    """
    loaded_set, reported = set(loaded), set(reported_missing)
    missing = []
    for k in model_keys:
        if k in loaded_set:
            continue
        prefix = k.rpartition(".")[0]
        if k in reported or (prefix + "." if prefix else "") not in visited_prefixes:
            missing.append(k)
    return _IncompatibleKeys(missing, [])


def fresh_metadata(sd: Mapping[str, Any]) -> OrderedDict[str, dict[str, Any]]:
    """A private copy of ``sd._metadata`` for one load.

    See :func:`~sd_widgets.metadata.copy_metadata`: ``assign=True`` writes into the dicts it is
    handed.
    """
    return copy_metadata(getattr(sd, "_metadata", None))


def nbytes(t: torch.Tensor) -> int:
    return 0 if t.is_meta else t.numel() * t.element_size()


# --------------------------------------------------------------------------------------------
# the transaction


Measured = dict[str, tuple[Any, Any, dict[str, Any]]]  # key -> (before, after, change) stats


@dataclass
class Job:
    """Everything one partial load touches, worked out before anything is changed."""

    model: nn.Module
    sd: OrderedDict[str, torch.Tensor]  # what to load, model keys, in model order
    live: Mapping[str, Any]  # model.state_dict(keep_vars=True) before the load
    bn_reset: list[str]  # BatchNorm modules to reset after loading
    tied: dict[str, str]  # key not loaded -> the loaded key it shares its tensor with
    slots: dict[str, Slot]
    meta_keys: list[str]
    real_keys: list[str]
    extra_keys: list[str]  # reset BatchNorm buffers and tied keys: touched, not loaded
    plain: bool  # no loading code of the model's own: load module by module, in chunks

    @classmethod
    def build(
        cls,
        model: nn.Module,
        sd: OrderedDict[str, torch.Tensor],
        live: Mapping[str, Any],
        bn_reset: Sequence[str],
    ) -> Job:
        bn_keys = [f"{m}.{b}" for m in bn_reset for b in BN_BUFFERS if f"{m}.{b}" in live]
        loaded_ids = {id(live[k]): k for k in sd}
        tied = {
            k: loaded_ids[id(v)]
            for k, v in live.items()
            if k not in sd and isinstance(v, torch.Tensor) and id(v) in loaded_ids
        }
        extra = [k for k in bn_keys if k not in sd] + list(tied)
        slots = slots_of(model, [*sd, *extra])
        meta = [k for k in sd if live[k].is_meta]
        meta_set = set(meta)
        real = [k for k in sd if k not in meta_set]
        plain = len(loaded_ids) == len(sd) and plain_loading(model)
        return cls(model, sd, live, list(bn_reset), tied, slots, meta, real, extra, plain)

    def sizes(self) -> list[int]:
        """Bytes of each tensor the snapshot will copy, in the order it copies them."""
        seen: set[int] = set()
        out = []
        for k in [*self.extra_keys, *self.meta_keys, *self.real_keys]:
            t = self.live[k]
            if id(t) not in seen:
                seen.add(id(t))
                out.append(nbytes(t))
        return out

    def expected(self, key: str, current: torch.Tensor) -> torch.Tensor:
        src = self.sd[key]
        return src.to(current.dtype) if src.dtype != current.dtype else src


def retie(model: nn.Module, tied_along: Mapping[str, str]) -> None:
    """Point every tied key at the (possibly new) object of the key it was loaded through."""
    for key, through in tied_along.items():
        src = slots_of(model, [through])[through]
        mod_name, _, attr = key.rpartition(".")
        module = model.get_submodule(mod_name)
        container = module._parameters if attr in module._parameters else module._buffers
        if container.get(attr) is not src.get():
            container[attr] = src.get()  # type: ignore[assignment]


class Transaction:
    """Runs a :class:`Job` against a :class:`Snapshot`.

    On any exception the caller calls :meth:`rollback`. ``stats=True`` measures the large tensors
    while each chunk is in cache (:attr:`measured`); the small ones are left for one batched pass
    afterwards.
    """

    def __init__(
        self,
        job: Job,
        snapshot: Snapshot,
        interrupts: Interrupts,
        *,
        verify: bool,
        stats: bool,
        any_hook: bool,
    ) -> None:
        self.job = job
        self.snapshot = snapshot
        self.interrupts = interrupts
        self.verify = verify
        self.stats = stats
        self.any_hook = any_hook
        self.incompatible: list[Any] = []
        self.measured: Measured = {}
        self.transformed = Transformed()

    def rollback(self) -> list[str]:
        """Restore every saved tensor (to the end, even through Ctrl-C); unrestored keys."""
        return keep_trying(self.snapshot.restore)

    def run(self) -> None:
        job = self.job
        self.snapshot.save(job.slots[k].as_tuple() for k in job.extra_keys)
        if not job.plain:
            self.transformed = Transformed.find(job.model, list(job.sd), any_hook=self.any_hook)
        self.interrupts.check()
        if job.meta_keys:
            self._load_meta()
        if job.plain:
            self._load_in_chunks()
        elif job.real_keys or not job.meta_keys:
            self._load_at_once()
        for name in job.bn_reset:
            job.model.get_submodule(name).reset_running_stats()  # type: ignore[operator]
        if self.verify:
            self._verify_ties()
        self.interrupts.check()

    # the three ways in ---------------------------------------------------------------------
    def _load_meta(self) -> None:
        job = self.job
        self.snapshot.save(job.slots[k].as_tuple() for k in job.meta_keys)
        meta_sd: OrderedDict[str, torch.Tensor] = OrderedDict(
            (
                k,
                job.sd[k].to(job.live[k].dtype)
                if job.sd[k].dtype != job.live[k].dtype
                else job.sd[k],
            )
            for k in job.meta_keys
        )
        meta_sd._metadata = fresh_metadata(job.sd)  # type: ignore[attr-defined]
        result = job.model.load_state_dict(meta_sd, strict=False, assign=True)
        self._no_unexpected(result)
        self.incompatible.append(result)
        retie(job.model, job.tied)  # assign=True replaced the object the tied keys share
        if self.verify:
            self._verify(job.meta_keys)
        self.interrupts.check()

    def _load_at_once(self) -> None:
        job = self.job
        self.snapshot.save(job.slots[k].as_tuple() for k in job.real_keys)
        self.interrupts.check()
        real_sd: OrderedDict[str, torch.Tensor] = OrderedDict((k, job.sd[k]) for k in job.real_keys)
        real_sd._metadata = fresh_metadata(job.sd)  # type: ignore[attr-defined]
        result = job.model.load_state_dict(real_sd, strict=False)
        self._no_unexpected(result)
        self.incompatible.append(result)
        self.interrupts.check()
        if self.verify:
            self.transformed.verify(real_sd, fresh_metadata(job.sd), job.slots)
            self._verify([k for k in job.real_keys if k not in self.transformed.how])

    def _load_in_chunks(self) -> None:
        from .stats import BATCH_MAX_ELEMENTS, change_stats, scratch_space, tensor_stats

        with scratch_space():
            self._chunks(BATCH_MAX_ELEMENTS, change_stats, tensor_stats)

    def _chunks(self, batch_max: int, change_stats: Any, tensor_stats: Any) -> None:
        job = self.job
        metadata = fresh_metadata(job.sd)
        sizes = {k: nbytes(job.live[k]) for k in job.real_keys}
        missing: list[str] = []
        visited: set[str] = set()
        for run in chunks(job.real_keys, sizes):
            saved = {s.key: s for s in self.snapshot.save(job.slots[k].as_tuple() for k in run)}
            big = [
                k
                for k in run
                if self.stats and job.live[k].numel() > batch_max and saved[k].data is not None
            ]
            before = {k: tensor_stats(saved[k].data) for k in big}
            load_modules(job.model, job.sd, run, job.slots, metadata, missing)
            visited.update(job.slots[k].prefix for k in run)
            if self.verify:
                self._verify(run)
            for k in big:
                b, a = saved[k].data, job.slots[k].get().detach()
                after = tensor_stats(a)
                self.measured[k] = (
                    before[k],
                    after,
                    change_stats(b, a, before_l2=before[k].l2 if before[k].numel else None),
                )
            self.interrupts.check()
        self.incompatible.append(
            incompatible_keys(
                [k for k, v in job.live.items() if isinstance(v, torch.Tensor)],
                job.sd,
                missing,
                visited,
            )
        )

    # checks ----------------------------------------------------------------------------------
    @staticmethod
    def _no_unexpected(result: Any) -> None:
        if result.unexpected_keys:
            raise RuntimeError(f"load_state_dict reported unexpected keys {result.unexpected_keys}")

    def _verify(self, keys: Iterable[str]) -> None:
        job = self.job
        for key in keys:
            cur = job.slots[key].get().detach()
            if not same(cur, job.expected(key, cur)):  # memcmp first: ~a third of torch.equal
                raise RuntimeError(
                    f"{key!r} differs from its checkpoint tensor after loading (a load hook "
                    "changed it?)"
                )

    def _verify_ties(self) -> None:
        after = self.job.model.state_dict(keep_vars=True)
        for key, through in self.job.tied.items():
            if after[key] is not after[through]:
                raise RuntimeError(f"{key!r} is no longer tied to {through!r} after loading")
