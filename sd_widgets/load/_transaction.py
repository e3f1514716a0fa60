"""The transaction behind :func:`sd_widgets.partial_load`: snapshot, load once, verify, restore.

Built from public torch functions (the private names it reads, a module's tensor dicts and load
hooks, are listed with their reasons in ``docs/internals.md``):

1. **Snapshot** exactly the state the load can touch: every parameter and buffer of the modules
   the plan's keys reach (the whole subtree of a module whose own loading code, a
   ``_load_from_state_dict`` override or load hooks, may write more than its keys, e.g. the
   ``parametrizations`` of ``weight_norm``), and the extra state (``get_extra_state()``) of
   modules whose ``_extra_state`` is loaded. Tied tensors are copied once. A module whose own
   loading code takes entries no parameter or buffer holds (a quantized layer's packed weights,
   scale and zero point) is saved as its state dict and restored by that code
   (:class:`SavedCustom`).
2. **Load** through the model's own ``load_state_dict(sd, strict=False)``, once, with a private
   copy of ``_metadata`` (``assign`` only for the modules whose tensors are on the meta device,
   and the flag never left in a dict someone else holds). Hooks and overrides run exactly as
   often as in a plain torch load. A planned key torch reports unexpected or missing is an error.
3. **Verify** every loaded tensor bit for bit against its source where torch's plain loading
   did the work (no loading code of a module's own on the key's path). Where a module's own
   code loaded a key, what it produced *is* the result: verification is torch's own (no second
   run of user code), and :attr:`~sd_widgets.LoadReport.transformed` says so per key.
4. **Restore** the snapshot on any failure, ``KeyboardInterrupt`` included.

The snapshot and verification walk each tensor in chunks of :data:`CHUNK_BYTES`. The undo guard
is a 64-bit fingerprint per tensor taken in the verification pass, so ``undo()`` can tell that a
tensor changed since the load without keeping a second copy; the load's statistics are taken in
that pass too, each chunk right after it is verified (while it is in the CPU cache) against the
same chunk of its snapshot copy, on two threads (:data:`~sd_widgets.load._stats.SPLIT_ELEMENTS`).

What earns its place (measured in ``benchmarks/bench_load.py``): the chunked walk, which takes
the statistics on data in cache (a GPT-2-XL-sized load with them: 0.85-1.16x one without in
that benchmark, 1.4-1.7x timed phase by phase; the README says where the time goes);
:func:`fingerprints` runs undo's change check on every core torch may use (GPT-2-XL size: undo
2.16 s -> 1.50 s); the disk spill (``snapshot="auto"``/``"disk"``) keeps a rollback for a model
close to the machine's memory.

Statistics are not taken while the snapshot copies: torch's copy runs on OpenMP threads, which
spin for a while after each copy, so a second thread of ours measuring beside them shares a core
with a spinning one (1 GB: 0.49 s there, 0.27 s without the spin).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import math
import mmap
import signal
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .. import _kernels
from ..compare._metadata import ASSIGN_FLAG, copy_metadata
from ..statuses import BN_BUFFERS
from ._stats import Change, Moments, TensorStats, dtype_name

SnapshotKind = Literal["memory", "disk", "auto"]
SNAPSHOT_KINDS: tuple[str, ...] = ("memory", "disk", "auto")

CHUNK_BYTES = 16 * 2**20
"""Bytes of one tensor handled at a time: the snapshot's copy of a chunk; in the verification
pass the chunk's comparison with its source, its fingerprint and its statistics follow each
other while it is in the CPU cache, and a large tensor costs a few calls per 16 MB (half a
GPT-2-XL-sized layout loaded with statistics, one thread, CPU time: 4 MB chunks 3.70 s, 16 MB
3.47 s, 64 MB 3.94 s; without them 2.3 s)."""

AUTO_MEMORY_FRACTION = 0.5
"""``snapshot="auto"`` keeps the snapshot in memory up to this share of the available memory
and spills the rest to one temporary file."""

EXTRA_STATE = "_extra_state"
_CHUNK_GRAIN = 512  # elements: every chunk but the last is a multiple of 8 bytes
_ALIGN = 64

#: torch's own ``_load_from_state_dict`` implementations that only copy (and handle versions):
#: ``nn.Module``'s, and those every BatchNorm and every InstanceNorm class inherits (named
#: through public classes)
_PLAIN_LOADERS = frozenset(
    {
        nn.Module._load_from_state_dict,
        nn.BatchNorm1d._load_from_state_dict,
        nn.InstanceNorm1d._load_from_state_dict,
    }
)


# --------------------------------------------------------------------------------------------
# bits: equality and fingerprints


def _words(t: torch.Tensor) -> torch.Tensor | None:
    """The bytes of a dense contiguous CPU tensor as a flat integer tensor (no copy), or None."""
    if (
        t.device.type != "cpu"
        or t.layout != torch.strided
        or t.is_quantized
        or t.is_conj()
        or t.is_neg()
        or not t.is_contiguous()
        or type(t) not in (torch.Tensor, nn.Parameter)
    ):
        return None
    flat = t.detach().reshape(-1)
    size = flat.element_size()
    nbytes = flat.numel() * size
    offset = flat.storage_offset() * size
    try:
        u8 = flat.view(torch.uint8)
        for dtype, width in ((torch.int64, 8), (torch.int32, 4), (torch.int16, 2)):
            if nbytes % width == 0 and offset % width == 0 and width >= size:
                return u8.view(dtype)
        return u8
    except RuntimeError:  # a dtype torch cannot view as bytes
        return None


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (NaN payloads included) of two tensors of one dtype and shape."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_meta or b.is_meta:  # no values: same when both are meta (a meta one left = not loaded)
        return a.is_meta and b.is_meta
    wa, wb = _words(a), _words(b)
    if wa is not None and wb is not None and wa.dtype == wb.dtype:
        return torch.equal(wa, wb)  # integers: exact, and about 3x faster than float equal
    a, b = a.detach(), b.detach()
    if torch.equal(a, b):
        return True
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
    return False


class Fingerprint:
    """A 64-bit fingerprint of a tensor's bytes, fed chunk by chunk (:func:`chunks_of`).

    Each 8-byte word is weighted by an odd number depending on its position
    (:func:`sd_widgets._kernels.fingerprint`), so any change of value (or a permutation)
    changes the sum unless the changes cancel exactly modulo 2**64: a training step or an edit
    cannot go unnoticed by accident. One pass at about the speed of reading the tensor, no
    memory kept: what lets ``undo()`` refuse to overwrite later work. The load's verification
    rides along: :meth:`add` compares the chunk with what it should be in the same pass.
    """

    def __init__(self, start: int = 0, *, halves: bool = False) -> None:
        self.value = 0
        #: 8-byte words fed so far, counted from ``start`` (where a part of the tensor begins)
        self.words = start
        #: each large chunk in two halves on two threads (:func:`_fingerprint`); callers that
        #: already run parts on threads (:func:`fingerprints`) leave it off
        self.halves = halves

    def add(self, words: torch.Tensor, expected: torch.Tensor | None = None) -> bool:
        """Add the next chunk; whether its bytes equal ``expected``'s (True without one).

        A chunk is a flat integer tensor (:func:`_as_words`); every chunk but a tensor's last
        is a multiple of 8 bytes.
        """
        parts = _u64(words)
        compared = parts if expected is None else _u64(expected)
        if [p.shape for p in parts] != [p.shape for p in compared]:
            raise ValueError("a chunk and its expected bytes differ in length")
        equal = True
        for w, e in zip(parts, compared, strict=True):
            value, same_words = _fingerprint(w, e, self.words, halves=self.halves)
            self.value = (self.value + value) % 2**64
            self.words += w.shape[0]
            equal = equal and same_words
        return equal


def _fingerprint(
    words: np.ndarray, expected: np.ndarray, start: int, *, halves: bool
) -> tuple[int, bool]:
    """:func:`sd_widgets._kernels.fingerprint` of ``words``, words ``start ...`` of a tensor.

    With ``halves``, in two halves on two threads from :data:`FINGERPRINT_SPLIT_BYTES` when
    torch may use two (the fingerprint is a sum over words, so the halves add up to it). In the
    load's verification pass of a GPT-2-XL-sized layout: 0.9-1.5 s on one thread, 0.7-1.15 s on
    two.
    """

    def part(lo: int, hi: int) -> tuple[int, bool]:
        value, same = _kernels.fingerprint(
            words[lo:hi], expected[lo:hi], _kernels.FP_WEIGHTS, start + lo
        )
        return int(value), bool(same)

    n = words.shape[0]
    if not halves or n * 8 < FINGERPRINT_SPLIT_BYTES or torch.get_num_threads() < 2:
        return part(0, n)
    h = n // 2
    (v1, s1), (v2, s2) = _kernels.both(lambda: part(0, h), lambda: part(h, n))
    return (v1 + v2) % 2**64, s1 and s2


def _u64(words: torch.Tensor) -> list[np.ndarray]:
    """A flat integer CPU tensor's bytes as uint64 words (no copy).

    Its last 1-7 bytes, if any, zero-padded to one more word, as a second array.
    """
    raw = words.numpy().view(np.uint8)
    full = raw.shape[0] // 8 * 8
    parts = [raw[:full].view(np.uint64)]
    if full < raw.shape[0]:
        padded = np.zeros(8, np.uint8)
        padded[: raw.shape[0] - full] = raw[full:]
        parts.append(padded.view(np.uint64))
    return parts


FINGERPRINT_PART_BYTES = 16 * 2**20
"""Bytes of one part of a large tensor's fingerprint: :func:`fingerprints` runs the parts on
``torch.get_num_threads()`` threads (the fingerprint is a sum over words, so parts fingerprinted
apart add up to the whole; the kernel releases the GIL)."""

FINGERPRINT_SPLIT_BYTES = 2 * 2**20
"""Tensors of at least this size are fingerprinted in parts on threads; smaller ones (per call
costs, not per byte) in the calling thread."""


def fingerprint(t: torch.Tensor) -> int | None:
    """:class:`Fingerprint` of ``t`` in one pass (None for meta tensors)."""
    return fingerprints([t])[0]


def fingerprints(tensors: Sequence[torch.Tensor]) -> list[int | None]:
    """:func:`fingerprint` of each tensor.

    Tensors of at least :data:`FINGERPRINT_SPLIT_BYTES` are cut into parts of up to
    :data:`FINGERPRINT_PART_BYTES`, fingerprinted by up to ``torch.get_num_threads()`` threads
    of this call (no pool outlives it) while this thread fingerprints the small ones (their
    cost is per call, not per byte: threads would only contend for the GIL).
    """
    big: list[tuple[int, torch.Tensor, int]] = []  # (tensor, words of the part, first word)
    small: list[tuple[int, torch.Tensor, int]] = []
    for i, t in enumerate(tensors):
        if t.is_meta:
            continue
        words = _as_words(t)
        if words.numel() * words.element_size() < FINGERPRINT_SPLIT_BYTES:
            small.append((i, words, 0))
            continue
        size = words.element_size()
        step = FINGERPRINT_PART_BYTES // size  # elements; a multiple of 8 bytes
        big += [(i, words[j : j + step], j * size // 8) for j in range(0, words.numel(), step)]
    workers = min(torch.get_num_threads(), len(big))
    if workers > 1:
        pool = ThreadPoolExecutor(workers, thread_name_prefix="sdw-fingerprint")
        try:
            running = pool.map(_fingerprint_part, big)
            values = [_fingerprint_part(part) for part in small]
            values = list(running) + values
        finally:  # Ctrl-C or an error: the parts not started are dropped, not waited for
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        values = [_fingerprint_part(part) for part in big + small]
    out: list[int | None] = [None if t.is_meta else 0 for t in tensors]
    for (i, _, _), value in zip(big + small, values, strict=True):
        out[i] = (out[i] + value) % 2**64  # type: ignore[operator]
    return out


def _fingerprint_part(part: tuple[int, torch.Tensor, int]) -> int:
    """The fingerprint of one part (its first 8-byte word is word ``start`` of the tensor)."""
    _, words, start = part
    fp = Fingerprint(start)
    for chunk in chunks_of(words):
        fp.add(chunk)
    return fp.value


def _as_words(t: torch.Tensor) -> torch.Tensor:
    w = _words(t)
    if w is not None:
        return w
    dense = t.detach()
    if dense.is_quantized:
        dense = dense.dequantize()
    if dense.layout != torch.strided:
        dense = dense.to_dense()
    w = _words(dense.resolve_conj().resolve_neg().contiguous().clone())
    assert w is not None
    return w


def chunks_of(flat: torch.Tensor, chunk_bytes: int = CHUNK_BYTES) -> Iterator[torch.Tensor]:
    """Consecutive slices of a flat tensor, each a multiple of 512 elements (the last aside)."""
    step = max(
        _CHUNK_GRAIN, chunk_bytes // max(flat.element_size(), 1) // _CHUNK_GRAIN * _CHUNK_GRAIN
    )
    n = flat.numel()
    if n == 0:
        return
    if n <= step:
        yield flat
        return
    for i in range(0, n, step):
        yield flat[i : i + step]


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
    """Run ``fn`` to the end even if ``KeyboardInterrupt`` cuts it short (``fn`` idempotent)."""
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
    """A uint8 buffer over an unlinked temporary file (gone with the last view of it)."""
    with tempfile.TemporaryFile(prefix="sdw-snapshot-", dir=directory) as f:
        f.truncate(nbytes)
        mm = mmap.mmap(f.fileno(), nbytes)
    return torch.frombuffer(mm, dtype=torch.uint8)


@dataclass
class Saved:
    """One touched tensor slot, the copy of its value before the load and its fingerprint after."""

    key: str
    module: nn.Module
    attr: str
    is_param: bool
    obj: torch.Tensor
    data: torch.Tensor | None  # None for meta tensors (nothing to copy back)
    after: int | None = None  # fingerprint of what the load left (None: not taken)
    left: torch.Tensor | None = None  # the tensor object the load left in the slot

    def current(self) -> torch.Tensor | None:
        """The tensor in the slot now."""
        return (self.module._parameters if self.is_param else self.module._buffers).get(self.attr)

    def moved_out(self, root: nn.Module | None) -> bool:
        """Whether ``root`` no longer holds this slot's module at the key's place.

        True when the user replaced or removed the module after the load.
        """
        return root is not None and _module_at(root, self.key) is not self.module


def _module_at(root: nn.Module, key: str) -> nn.Module | None:
    """The module holding ``key``'s tensor in ``root`` now (None when there is none)."""
    path = key.rpartition(".")[0]
    try:
        return root.get_submodule(path) if path else root
    except AttributeError:
        return None


@dataclass
class SavedExtra:
    """A module's extra state before the load (``get_extra_state()``, copied)."""

    key: str
    module: nn.Module
    value: Any


def _copy_value(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    try:
        return copy.deepcopy(value)
    except Exception:  # not copyable: keep the object itself (restored as it is)
        return value


def _put_back(container: Mapping[str, Any], s: Saved, t: torch.Tensor, data: torch.Tensor) -> bool:
    """Whether the slot's dict holds ``t`` and ``t`` equals its saved copy.

    False when even reading it fails (an inference tensor outside inference mode).
    """
    try:
        return container.get(s.attr) is t and same(t.detach(), data)
    except Exception:
        return False


@dataclass
class SavedCustom:
    """A module whose own loading code takes entries no parameter or buffer holds.

    A quantized module's packed weights, scale and zero point live in a script object and
    plain attributes, written by its ``_save_to_state_dict``: no tensor slot to copy back.
    ``before`` is its state dict (``_metadata`` included) before the load, restored by running
    that same loading code again (``module.load_state_dict``); ``after`` is the state dict the
    load left, to tell a later change (undo does not overwrite it).
    """

    keys: list[str]  # the planned keys it holds
    path: str
    module: nn.Module
    before: Any
    after: Any = None


def _same_state(a: Any, b: Any) -> bool:
    """Whether two state-dict values are the same.

    Tensors bit for bit (a quantized tensor by its integers and values), containers item by
    item, anything else by ``==``.
    """
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.is_quantized or b.is_quantized:
            return (
                a.is_quantized
                and b.is_quantized
                and a.shape == b.shape
                and a.dtype == b.dtype
                and torch.equal(a.int_repr(), b.int_repr())
                and torch.equal(a.dequantize(), b.dequantize())
            )
        return same(a, b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except Exception:
        return False


class Snapshot:
    """Copies of exactly the state a load touches; :meth:`restore` puts all of it back.

    ``kind``: ``"memory"`` keeps the copies in RAM; ``"disk"`` in one temporary file mapped into
    memory; ``"auto"`` in RAM up to ``budget`` bytes (default: half the available memory) and
    the rest in the file. One file for all spilled copies, planned from ``sizes``, because
    Linux caps a process at 65,530 mappings and a model may have 100,000 tensors.
    :attr:`used` says where the copies went, :attr:`nbytes` how much they hold.
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
        self.extras: list[SavedExtra] = []
        self.customs: list[SavedCustom] = []
        self._copies: dict[int, torch.Tensor | None] = {}
        if kind == "memory":
            budget = None
        elif kind == "disk":
            budget = 0
        elif budget is None:
            avail = available_memory()
            budget = None if avail is None else int(avail * AUTO_MEMORY_FRACTION)
        self._memory_left: float = math.inf if budget is None else budget
        left, disk = self._memory_left, 0
        for n in sizes:
            if n <= left:
                left -= n
            else:
                disk += -(-n // _ALIGN) * _ALIGN
        self._directory = directory
        self._file_size = disk
        self._file: torch.Tensor | None = None
        self._file_used = 0
        self.memory_bytes = 0
        self.disk_bytes = 0

    @property
    def used(self) -> str:
        """Where the copies are: ``"memory"``, ``"disk"``, or ``"memory+disk"``."""
        if self.disk_bytes and self.memory_bytes:
            return "memory+disk"
        return "disk" if self.disk_bytes else "memory"

    @property
    def nbytes(self) -> int:
        """Bytes the copies hold (memory and disk)."""
        return self.memory_bytes + self.disk_bytes

    def _empty(self, src: torch.Tensor) -> torch.Tensor:
        """Uninitialised contiguous room for a copy of ``src``: RAM, or the spill file."""
        n = src.numel() * src.element_size()
        if n <= self._memory_left:
            self._memory_left -= n
            self.memory_bytes += n
            return torch.empty(src.shape, dtype=src.dtype, device=src.device)
        start = -(-self._file_used // _ALIGN) * _ALIGN
        if start + n > self._file_size:  # more than planned: a file of its own
            buf = _file_backed(max(n, 1), self._directory)[:n]
        else:
            if self._file is None:
                self._file = _file_backed(self._file_size, self._directory)
            buf = self._file[start : start + n]
            self._file_used = start + n
        self.disk_bytes += n
        return buf.view(src.dtype).view(src.shape)

    def save(
        self, key: str, module: nn.Module, attr: str, is_param: bool, obj: torch.Tensor
    ) -> Saved:
        """Copy one slot's tensor (once per tensor object), chunk by chunk."""
        if id(obj) not in self._copies:
            self._copies[id(obj)] = None if obj.is_meta else self._copy(obj)
        saved = Saved(key, module, attr, is_param, obj, self._copies[id(obj)])
        self.items.append(saved)
        return saved

    def _copy(self, obj: torch.Tensor) -> torch.Tensor:
        src = obj.detach()
        if _words(src) is None:  # exotic tensors: torch's own clone
            return src.clone()
        out = self._empty(src)
        for s, d in zip(chunks_of(src.reshape(-1)), chunks_of(out.reshape(-1)), strict=True):
            d.copy_(s)
        return out

    def save_extra(self, key: str, module: nn.Module, value: Any) -> None:
        """Keep a copy of a module's extra state (the value ``get_extra_state()`` returned)."""
        self.extras.append(SavedExtra(key, module, _copy_value(value)))

    def save_custom(self, keys: list[str], path: str, module: nn.Module) -> None:
        """Keep a copy of the state dict of a module whose own loading takes ``keys``."""
        self.customs.append(SavedCustom(keys, path, module, _copy_value(module.state_dict())))

    def inference_keys(self) -> list[str]:
        """Keys of the saved tensors that are inference tensors (made under inference mode)."""
        return [s.key for s in self.items if s.obj.is_inference()]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Key → the saved copy (the live tensor itself where no copy was needed)."""
        return {s.key: (s.data if s.data is not None else s.obj.detach()) for s in self.items}

    def forget(self, keys: set[str]) -> None:
        """Drop the copies of ``keys`` (slots the load left exactly as they were)."""
        self.items = [s for s in self.items if s.key not in keys]
        live = {id(s.obj) for s in self.items}
        for k in [k for k in self._copies if k not in live]:
            self._copies.pop(k)

    def changed_since(self, root: nn.Module | None = None) -> list[str]:
        """Keys whose tensor is not what the load left (another object, or another value).

        With ``root`` (the model), also the keys whose module the model no longer holds at
        that place (replaced after the load: restoring into the old module would change
        nothing the model uses).
        """
        taken = [s for s in self.items if s.left is not None]  # else the load failed before
        moved = {id(s) for s in taken if s.current() is not s.left or s.moved_out(root)}
        check = [s for s in taken if id(s) not in moved and s.after is not None]
        now = fingerprints([s.left for s in check])  # type: ignore[misc]  # left: not None
        moved |= {id(s) for s, value in zip(check, now, strict=True) if value != s.after}
        out = [s.key for s in taken if id(s) in moved]
        for c in self.customs:
            if c.after is None:
                continue
            try:  # the model may hold another module there now
                here = c.module if root is None else root.get_submodule(c.path)
            except AttributeError:
                here = None
            if here is not c.module or not _same_state(c.module.state_dict(), c.after):
                out.extend(c.keys)
        return out

    def restore(self, root: nn.Module | None = None) -> list[str]:
        """Put every saved tensor and extra state back; the keys that could not be restored.

        Never stops at the first failure: a tensor whose ``copy_`` is broken (patched, or a
        subclass) gets its saved copy through ``.data`` instead, and the others are restored.
        Idempotent, so an interrupted restore can simply run again.

        Where the user replaced a tensor or its module after the load (a forced undo over a
        change; ``root`` is the model), the saved values go into the tensor the model holds now
        when its shape and dtype match: the user's object stays, and so does an optimizer's
        reference to it. Only the load's own replacement (``assign=True``) is swapped back.
        """
        bad: list[str] = []
        # restored some other way than a plain tensor's own copy_: the slot's dict, the tensor
        # written and its copy, to verify
        check: list[tuple[Saved, dict[str, Any], torch.Tensor, torch.Tensor]] = []
        with torch.no_grad():
            for s in self.items:
                here = None if root is None else _module_at(root, s.key)
                module = s.module if here is None else here
                container = module._parameters if s.is_param else module._buffers
                cur = container.get(s.attr)
                t = s.obj
                if (
                    cur is not s.obj
                    and cur is not s.left
                    and isinstance(cur, torch.Tensor)
                    and s.data is not None
                    and (cur.shape, cur.dtype, cur.device)
                    == (s.data.shape, s.data.dtype, s.obj.device)
                ):
                    t = cur  # the user's own object: its values are restored in place
                elif cur is not s.obj:
                    container[s.attr] = s.obj  # type: ignore[assignment]  # undo assign=True
                if s.data is None:
                    continue
                plain = type(t) in (torch.Tensor, nn.Parameter) and t is s.obj
                try:
                    if t.shape == s.data.shape and t.dtype == s.data.dtype:
                        # the class's copy_, not an attribute patched onto this tensor: exact
                        torch.Tensor.copy_(t, s.data)
                    else:
                        t.data = s.data.clone()
                        plain = False
                except Exception:
                    plain = False
                    with contextlib.suppress(Exception):  # else reported below
                        t.data = s.data.clone()
                if not plain:
                    check.append((s, container, t, s.data))
            for e in self.extras:
                try:
                    e.module.set_extra_state(_copy_value(e.value))
                except Exception:
                    bad.append(e.key)
            for c in self.customs:  # the module's own loading code, given what it held before
                try:
                    c.module.load_state_dict(_copy_value(c.before), strict=False)
                    restored = _same_state(c.module.state_dict(), c.before)
                except Exception:
                    restored = False
                if not restored:
                    bad.extend(c.keys)
        # restored: the slot's dict holds the tensor written, and it equals the copy
        return bad + [
            s.key for s, container, t, data in check if not _put_back(container, s, t, data)
        ]

    def release(self) -> None:
        """Drop the copies; their memory goes back to the system at once.

        Nothing else refers to them, so they are freed here; :func:`give_back_memory` then
        returns the freed pages (glibc keeps blocks below its mmap threshold in its heap).
        """
        self.items = []
        self.extras = []
        self.customs = []
        self._copies = {}
        self._file = None
        give_back_memory()


def give_back_memory() -> None:
    """Return the C heap's free pages to the system (``malloc_trim(0)``, where libc has it).

    torch allocates a tensor below glibc's mmap threshold (which rises up to 32 MB as large
    blocks are freed) from the heap, and a freed heap block stays in the process: after an undo
    of a GPT-2-XL-sized load 1.9 GB of the 6.2 GB snapshot stayed resident, in every run
    (``benchmarks/bench_load.py``; 16-248 MB for a 384 MB model). The pages stay reusable by
    the process either way; this gives them back. Elsewhere (macOS, musl) it does nothing.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


# --------------------------------------------------------------------------------------------
# what a load touches


def own_loading(module: nn.Module) -> bool:
    """Whether the module has loading code of its own.

    An override of ``_load_from_state_dict`` (other than torch's BatchNorm/InstanceNorm version
    handling), load pre-/post-hooks, or extra state.
    """
    return (
        type(module)._load_from_state_dict not in _PLAIN_LOADERS
        or bool(module._load_state_dict_pre_hooks)
        or bool(module._load_state_dict_post_hooks)
        or type(module).set_extra_state is not nn.Module.set_extra_state
    )


def _owner(modules: Mapping[str, nn.Module], key: str) -> str:
    """The name of the deepest module whose prefix ``key`` has ("" for the root)."""
    name = key.rpartition(".")[0]
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def _path(name: str) -> list[str]:
    """``"a.b.c"`` → ``["", "a", "a.b", "a.b.c"]``."""
    parts = name.split(".") if name else []
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass
class Slot:
    """Where one model tensor lives: the module, the attribute, and whether it is a parameter."""

    key: str
    module: nn.Module
    attr: str
    is_param: bool

    def get(self) -> torch.Tensor | None:
        return (self.module._parameters if self.is_param else self.module._buffers).get(self.attr)


def tensor_slots(
    modules: Mapping[str, nn.Module], names: Sequence[str], *, recurse: bool
) -> dict[str, Slot]:
    """Every parameter and buffer of the named modules (and their subtrees), by key."""
    out: dict[str, Slot] = {}
    for name in names:
        subs = (
            modules[name].named_modules(prefix=name, remove_duplicate=False)
            if recurse
            else [(name, modules[name])]
        )
        for sub_name, sub in subs:
            prefix = f"{sub_name}." if sub_name else ""
            for attr, p in sub._parameters.items():
                if p is not None:
                    out.setdefault(prefix + attr, Slot(prefix + attr, sub, attr, True))
            for attr, b in sub._buffers.items():
                if b is not None:
                    out.setdefault(prefix + attr, Slot(prefix + attr, sub, attr, False))
    return out


@dataclass
class Job:
    """Everything one partial load touches, worked out before anything is changed."""

    model: nn.Module
    sd: OrderedDict[str, Any]  # what to load, in model order (tensors, or extra state values)
    live: Mapping[str, Any]  # model.state_dict(keep_vars=True) before the load
    modules: dict[str, nn.Module]
    bn_reset: list[str]
    slots: dict[str, Slot]  # every slot to snapshot: planned keys first, then the rest
    planned: list[str]  # planned keys that are model tensors (loaded in place or assigned)
    own: dict[str, str]  # planned key -> the module whose own loading code handles it
    extra: list[str]  # planned _extra_state keys
    #: module path -> the planned keys its own loading code takes that no tensor slot holds
    #: (a quantized module's packed weights, scale and zero point)
    custom: dict[str, list[str]]
    tied: dict[str, str]  # model key not planned -> the planned key sharing its tensor
    meta_modules: set[str]  # modules that get assign=True (their planned tensors are on meta)

    @classmethod
    def build(
        cls,
        model: nn.Module,
        sd: OrderedDict[str, Any],
        live: Mapping[str, Any],
        bn_reset: Sequence[str],
    ) -> Job:
        modules = dict(model.named_modules(remove_duplicate=False))
        hooked_model = type(model).load_state_dict is not nn.Module.load_state_dict
        own_code = {name for name, m in modules.items() if own_loading(m)}
        owners: dict[str, str] = {}
        own: dict[str, str] = {}
        for key in sd:
            owner = _owner(modules, key)
            owners[key] = owner
            hooked = [p for p in _path(owner) if p in own_code]
            if hooked or hooked_model:
                own[key] = hooked[0] if hooked else ""
        # what to snapshot: the planned tensors' modules, whole subtrees under own loading code
        reach = sorted({owners[k] for k in sd} | set(bn_reset), key=len)
        trees = sorted({own[k] for k in own}, key=len)
        tops: list[str] = []
        for t in trees:
            if not any(t == u or t.startswith(u + ".") or u == "" for u in tops):
                tops.append(t)
        slots: dict[str, Slot] = {}
        for key in sd:  # planned model tensors first (report order)
            if key in live and isinstance(live[key], torch.Tensor):
                mod_name, _, attr = key.rpartition(".")
                module = modules.get(mod_name)  # None: a name a state-dict hook made up
                if module is None:
                    continue
                if module._parameters.get(attr) is live[key]:
                    slots[key] = Slot(key, module, attr, True)
                elif module._buffers.get(attr) is live[key]:
                    slots[key] = Slot(key, module, attr, False)
        for key, slot in tensor_slots(modules, reach, recurse=False).items():
            slots.setdefault(key, slot)
        for key, slot in tensor_slots(modules, tops, recurse=True).items():
            slots.setdefault(key, slot)
        planned = [k for k in sd if k in slots]
        loaded_ids = {id(live[k]): k for k in planned}
        tied = {}
        for k, v in live.items():
            if k not in sd and isinstance(v, torch.Tensor) and id(v) in loaded_ids:
                tied[k] = loaded_ids[id(v)]
                if k not in slots:
                    owned_by = [_owner(modules, k)]
                    slots.update(tensor_slots(modules, owned_by, recurse=False))
        extra = [k for k in sd if k.rpartition(".")[2] == EXTRA_STATE and k not in slots]
        custom: dict[str, list[str]] = {}
        # a live tensor object a slot holds under another name (a state-dict hook renamed its
        # key) is restored through that slot
        held = {id(t) for t in (slot.get() for slot in slots.values()) if t is not None}
        for k in sd:
            if (
                k in live
                and k not in slots
                and k not in extra
                and k in own
                and not (isinstance(live[k], torch.Tensor) and id(live[k]) in held)
            ):
                # the innermost module with loading code of its own: it restores in its own
                # format, without a copy of what lies outside it
                inner = [p for p in _path(owners[k]) if p in own_code] or [own[k]]
                custom.setdefault(inner[-1], []).append(k)
        meta_modules = {owners[k] for k in planned if live[k].is_meta}
        return cls(
            model,
            sd,
            live,
            modules,
            list(bn_reset),
            slots,
            planned,
            own,
            extra,
            custom,
            tied,
            meta_modules,
        )

    def sizes(self) -> list[int]:
        """Bytes of each tensor the snapshot will copy, in the order it copies them."""
        seen: set[int] = set()
        out = []
        for slot in self.slots.values():
            t = slot.get()
            if t is not None and id(t) not in seen:
                seen.add(id(t))
                out.append(0 if t.is_meta else t.numel() * t.element_size())
        return out

    def expected(self, key: str, current: torch.Tensor) -> torch.Tensor:
        """What a plain torch load leaves in ``key``: the source in the model's dtype."""
        src = self.sd[key]
        return src.to(current.dtype) if src.dtype != current.dtype else src

    def load_dict(self) -> OrderedDict[str, Any]:
        """The dict handed to torch: meta keys cast to the model's dtype, private ``_metadata``.

        ``assign`` is set in the metadata of exactly the modules whose planned tensors are on
        the meta device (torch reads it per module); the copy is ours, so no flag survives.
        """
        out: OrderedDict[str, Any] = OrderedDict()
        for k, v in self.sd.items():
            cur = self.live.get(k)
            if (
                isinstance(cur, torch.Tensor)
                and cur.is_meta
                and isinstance(v, torch.Tensor)
                and v.dtype != cur.dtype
            ):
                v = v.to(cur.dtype)
            out[k] = v
        metadata = copy_metadata(getattr(self.sd, "_metadata", None))
        for name in self.meta_modules:
            metadata.setdefault(name, {})[ASSIGN_FLAG] = True
        out._metadata = metadata  # type: ignore[attr-defined]
        return out


def retie(job: Job) -> None:
    """Point every tied key at the (possibly new) object of the key it was loaded through."""
    for key, through in job.tied.items():
        src = job.slots[through].get()
        slot = job.slots[key]
        container = slot.module._parameters if slot.is_param else slot.module._buffers
        if src is not None and container.get(slot.attr) is not src:
            container[slot.attr] = src  # type: ignore[assignment]


# --------------------------------------------------------------------------------------------
# statistics of a touched tensor


class Measures:
    """Before, after and change statistics of ``size`` touched tensors, fed matching chunks.

    The transaction feeds each after chunk with the same chunk of its snapshot copy as it
    verifies them; :func:`measure_many` feeds the same pairs later (``stats=False``). A pair is
    measured in one pass (:class:`~sd_widgets.stats.Change`: the change and both sides'
    moments); a tensor whose change is not measured (another shape, meta on one side) has its
    sides measured alone (:class:`~sd_widgets.stats.Moments`). Same chunks, same kernels either
    way: the same numbers, bit for bit.
    """

    def __init__(self, size: int) -> None:
        self.before = Moments(size)
        self.after = Moments(size)
        self.change = Change(size, before=self.before, after=self.after)
        self._wholes: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def add_before(self, i: int, chunk: torch.Tensor) -> None:
        """The next chunk of tensor ``i`` before the load, when its change is not measured."""
        self.before.add(chunk, i)

    def add_after(self, i: int, before: torch.Tensor | None, after: torch.Tensor) -> None:
        """The next chunk of tensor ``i`` after the load.

        ``before``: the same chunk before it, measured with it in one pass (None: not
        comparable; its before chunks go to :meth:`add_before`).
        """
        if before is None:
            self.after.add(after, i)
        else:
            self.change.add_all([(before, after)], [i], with_before=True)

    def add_all(
        self,
        before: Sequence[torch.Tensor],
        before_ids: Sequence[int],
        after: Sequence[torch.Tensor],
        after_ids: Sequence[int],
        pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
        pair_ids: Sequence[int],
    ) -> None:
        """Many chunks at once.

        Before chunks and after chunks of tensors whose change is not measured, and the
        (before, after) pairs of those whose change is, each with the index of its tensor.
        """
        self.before.add_all(before, before_ids)
        self.after.add_all(after, after_ids)
        self.change.add_all(pairs, pair_ids, with_before=True)

    def done(self, i: int, before: torch.Tensor, after: torch.Tensor) -> None:
        """Tensor ``i`` was fed whole; ``before``/``after`` are the whole tensors."""
        self._wholes[i] = (before, after)

    def finish(self) -> dict[int, tuple[TensorStats, TensorStats, dict[str, Any] | None]]:
        """(before, after, change) statistics of every tensor marked :meth:`done`."""
        size = self.before.size
        wb: list[torch.Tensor | None] = [None] * size
        wa: list[torch.Tensor | None] = [None] * size
        db, da = [""] * size, [""] * size
        for i, (b, a) in self._wholes.items():
            wb[i] = None if b.is_meta else b
            wa[i] = None if a.is_meta else a
            db[i], da[i] = dtype_name(b.dtype), dtype_name(a.dtype)
        sb, sa, ch = self.before.finish(wb, db), self.after.finish(wa, da), self.change.finish()
        out = {}
        for i, (b, a) in self._wholes.items():
            comparable = not b.is_meta and not a.is_meta and b.shape == a.shape
            out[i] = (sb[i], sa[i], ch[i] if comparable else None)
        return out


def _exotic(t: torch.Tensor) -> bool:
    """Not a dense strided CPU tensor (quantized, sparse, nested ...): measured whole."""
    return not t.is_meta and (t.layout != torch.strided or t.is_quantized or t.is_nested)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1)


def _pieces(flat: torch.Tensor) -> Sequence[torch.Tensor]:
    """:func:`chunks_of` as a sequence (a small tensor is its own one chunk, without a generator)."""
    if flat.numel() * flat.element_size() <= CHUNK_BYTES:
        return (flat,) if flat.numel() else ()
    return list(chunks_of(flat))


@torch.no_grad()
def measure_many(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> list[tuple[TensorStats, TensorStats, dict[str, Any] | None]]:
    """Before, after and change statistics of many tensors (see :class:`Measures`)."""
    m = Measures(len(pairs))
    whole: dict[int, tuple[TensorStats, TensorStats, dict[str, Any] | None]] = {}
    before_chunks: list[torch.Tensor] = []
    before_ids: list[int] = []
    after_chunks: list[torch.Tensor] = []
    after_ids: list[int] = []
    both: list[tuple[torch.Tensor, torch.Tensor]] = []
    both_ids: list[int] = []
    for i, (before, after) in enumerate(pairs):
        if _exotic(before) or _exotic(after):
            whole[i] = measure_whole(before, after)
            continue
        b_meta, a_meta = before.is_meta, after.is_meta
        bs = () if b_meta else _pieces(before.reshape(-1))  # no_grad: a view without autograd
        as_ = () if a_meta else _pieces(after.reshape(-1))
        if not b_meta and not a_meta and before.shape == after.shape:
            both += zip(bs, as_, strict=True)
            both_ids += [i] * len(as_)
        else:
            before_chunks += bs
            before_ids += [i] * len(bs)
            after_chunks += as_
            after_ids += [i] * len(as_)
        m.done(i, before, after)
        # bounded lists: measured as they come
        if len(before_chunks) + len(after_chunks) + len(both) > 4096:
            m.add_all(before_chunks, before_ids, after_chunks, after_ids, both, both_ids)
            for kept in (before_chunks, before_ids, after_chunks, after_ids, both, both_ids):
                kept.clear()
    m.add_all(before_chunks, before_ids, after_chunks, after_ids, both, both_ids)
    measured = m.finish()
    return [whole[i] if i in whole else measured[i] for i in range(len(pairs))]


def measure(
    before: torch.Tensor, after: torch.Tensor
) -> tuple[TensorStats, TensorStats, dict[str, Any] | None]:
    """Before, after and change statistics of one tensor (see :class:`Measures`)."""
    return measure_many([(before, after)])[0]


Measured = dict[str, tuple[TensorStats, TensorStats, "dict[str, Any] | None"]]


# --------------------------------------------------------------------------------------------
# the transaction


class Transaction:
    """Runs a :class:`Job` against a :class:`Snapshot`; on any exception call :meth:`rollback`."""

    def __init__(
        self, job: Job, snapshot: Snapshot, interrupts: Interrupts, *, verify: bool, stats: bool
    ) -> None:
        self.job = job
        self.snapshot = snapshot
        self.interrupts = interrupts
        self.verify = verify
        self.stats = stats
        self.result: Any = None
        #: keys the load changed beyond the plan, ties and resets (a module's own loading code)
        self.converted: list[str] = []
        #: key -> how it was verified, for keys a module's own loading code handled
        self.transformed: dict[str, str] = {}
        self.measured: Measured = {}
        self._index = {key: i for i, key in enumerate(job.slots)}
        self._measures = Measures(len(self._index))

    def rollback(self) -> list[str]:
        """Restore every saved tensor (to the end, even through Ctrl-C); unrestored keys."""
        return keep_trying(self.snapshot.restore)

    def run(self) -> None:
        job = self.job
        self._take_snapshot()
        self.interrupts.check()
        with torch.no_grad():
            self.result = job.model.load_state_dict(job.load_dict(), strict=False)
        self.interrupts.check()
        self._check_result()
        retie(job)
        for name in job.bn_reset:
            job.model.get_submodule(name).reset_running_stats()  # type: ignore[operator]
        self.interrupts.check()
        for c in self.snapshot.customs:  # what the load left, to tell a later change
            c.after = _copy_value(c.module.state_dict())
        self._after_pass()
        self.interrupts.check()

    def _take_snapshot(self) -> None:
        job = self.job
        for slot in job.slots.values():
            t = slot.get()
            if t is None:
                continue
            self.snapshot.save(slot.key, slot.module, slot.attr, slot.is_param, t)
            self.interrupts.check()
        for key in job.extra:
            owner = job.modules[_owner(job.modules, key)]
            self.snapshot.save_extra(key, owner, job.live.get(key))
        for path, keys in job.custom.items():
            self.snapshot.save_custom(keys, path, job.modules[path])

    def _check_result(self) -> None:
        job = self.job
        unexpected = [k for k in self.result.unexpected_keys if k in job.sd]
        if unexpected:
            raise RuntimeError(
                f"load_state_dict reported planned keys as unexpected: {unexpected[:5]} (the "
                "model's own loading did not take them)"
            )
        missing = set(self.result.missing_keys)
        not_loaded = [k for k in job.planned if k in missing]
        if not_loaded:
            raise RuntimeError(
                f"load_state_dict reported planned keys as missing: {not_loaded[:5]} (a load "
                "hook removed them?)"
            )

    def _after_pass(self) -> None:
        """Verify, fingerprint and measure every touched tensor while each chunk is in cache."""
        job = self.job
        planned = set(job.planned)
        reset = {f"{m}.{a}" for m in job.bn_reset for a in BN_BUFFERS}
        for key in job.own:
            self.transformed[key] = (
                f"loaded by the own loading code of {job.own[key] or 'the model'!r} (its "
                "_load_from_state_dict, load hooks or set_extra_state), run once as in a plain "
                "torch load: its result is the value"
            )
        unchanged: set[str] = set()
        for s in self.snapshot.items:
            cur = s.current()
            if cur is None:
                continue
            plain = s.key in planned and s.key not in job.own and s.key not in reset
            expected = job.expected(s.key, cur) if plain and self.verify else None
            incidental = s.key not in planned and s.key not in job.tied and s.key not in reset
            if incidental and cur is s.obj and (s.data is None or same(cur.detach(), s.data)):
                unchanged.add(s.key)  # the load left it alone: nothing to undo
                continue
            if incidental:
                self.converted.append(s.key)
            self._walk(s, cur, expected)
            self.interrupts.check()
        self.snapshot.forget(unchanged)
        if self.stats:
            keys = list(self._index)
            for i, stats in self._measures.finish().items():
                self.measured.setdefault(keys[i], stats)

    def _walk(self, s: Saved, cur: torch.Tensor, expected: torch.Tensor | None) -> None:
        """One chunked pass over a touched tensor: verify, fingerprint, measure."""
        s.left = cur
        i = self._index[s.key] if self.stats else -1
        if cur.is_meta:
            if expected is not None and not expected.is_meta:
                raise RuntimeError(f"{s.key!r} is still on the meta device after loading")
            if self.stats and s.data is not None:
                self._measures.done(i, s.data, cur)
            return
        words = _words(cur)
        if words is None or (expected is not None and _words(expected) is None):
            # exotic tensors: whole-tensor checks
            if expected is not None and not same(cur.detach(), expected):
                raise RuntimeError(self._differs(s.key))
            s.after = fingerprint(cur)
            if self.stats:
                self.measured[s.key] = measure_whole(s.data if s.data is not None else cur, cur)
            return
        fp = Fingerprint(halves=True)
        flat = _flat(cur)
        exp = _flat(expected) if expected is not None else None
        data = s.data if s.data is not None and not s.data.is_meta else None
        before = _flat(data) if data is not None and data.shape == cur.shape else None
        exp_chunks = chunks_of(exp) if exp is not None else None
        before_chunks = chunks_of(before) if before is not None else None
        if self.stats and before is None and data is not None:  # no change to measure
            for c in chunks_of(_flat(data)):
                self._measures.add_before(i, c)
        for c in chunks_of(flat):
            e = next(exp_chunks) if exp_chunks is not None else None
            if not fp.add(_as_words(c), None if e is None else _as_words(e)):
                raise RuntimeError(self._differs(s.key))
            if self.stats:
                b = next(before_chunks) if before_chunks is not None else None
                self._measures.add_after(i, b, c)
        s.after = fp.value
        if self.stats:
            self._measures.done(
                i, s.data if s.data is not None else cur.new_empty(cur.shape, device="meta"), cur
            )

    @staticmethod
    def _differs(key: str) -> str:
        return (
            f"{key!r} differs from its checkpoint tensor after loading (torch's plain loading "
            "should have copied it exactly: a load hook on another module changed it?)"
        )


def measure_whole(
    before: torch.Tensor, after: torch.Tensor
) -> tuple[TensorStats, TensorStats, dict[str, Any] | None]:
    """:func:`measure` for tensors that cannot be walked in chunks (quantized, sparse ...)."""
    from ._stats import change_stats, tensor_stats

    sb, sa = tensor_stats(before), tensor_stats(after)
    comparable = not before.is_meta and not after.is_meta and before.shape == after.shape
    return sb, sa, change_stats(before, after) if comparable else None
