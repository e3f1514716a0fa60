"""Allow-lists and trust: what may be unpickled from a file, and naming what may not.

Two unpicklers are used:

- torch files go through ``torch.load(weights_only=True)`` (torch's own weights-only
  unpickler), optionally inside ``torch.serialization.safe_globals(trust)`` when the caller
  allowed a list of classes; only ``trust=True`` turns weights-only loading off.
- the ``.metadata`` pickle of a ``torch.distributed.checkpoint`` directory is written with
  pickle protocol 4 (FRAME, STACK_GLOBAL, MEMOIZE opcodes), which torch's weights-only
  unpickler does not parse. It is read by :class:`AllowListUnpickler`: ``find_class`` returns
  only objects from an explicit table of exact ``(module, name)`` pairs — never an import,
  never a dotted name resolved through attributes — and every other global raises
  :class:`~sd_widgets.errors.UnsafeCheckpointError` naming it. State (``BUILD``) is set only
  on instances the unpickling itself created, never on a class, function or shared object;
  extension-registry opcodes and persistent ids are refused.
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import pickletools
import types
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import IO, Any, ClassVar

import torch

from ..errors import UnreadableCheckpointError, UnsafeCheckpointError
from ._trust import listed_as_code, runs_code


def allowed_globals(trust: Any) -> list[Any] | None:
    """``trust`` as an allow-list for weights-only loading, or None for True/False.

    Parameters
    ----------
    trust
        ``True``, ``False`` (or None), or an iterable of classes/functions (or
        ``(obj, "module.name")`` pairs, as ``torch.serialization.safe_globals`` accepts).

    Returns
    -------
    list or None
        The allowed globals, or None when ``trust`` is a bool.

    Raises
    ------
    UnsafeCheckpointError
        An entry can run code (:func:`~sd_widgets.checkpoint._trust.runs_code`): ``eval``,
        ``os.system``, ``getattr``, ``subprocess.Popen``... Only ``trust=True`` admits them.
    """
    if isinstance(trust, bool) or trust is None:
        return None
    if isinstance(trust, (str, bytes)) or not isinstance(trust, Iterable):
        raise TypeError(
            f"trust={trust!r}: pass True (allow any pickled object), False (weights only), or a "
            "list of the classes/functions to allow, e.g. trust=[argparse.Namespace]"
        )
    allowed = list(trust)
    code = [name for name in map(runs_code, allowed) if name is not None]
    if code:
        raise UnsafeCheckpointError(
            f"trust=[...] names {', '.join(code)}, which can run code: a file that needs "
            f"{'it' if len(code) == 1 else 'them'} would run code when loaded (the pickle calls "
            "it with arguments the file chooses). sd_widgets does not allow such a global one "
            "at a time; nothing was read. Open the file with trust=True only if you trust its "
            "source as much as code you would run; otherwise ask for a weights-only export "
            "(safetensors, or torch.save(model.state_dict(), ...)).",
            globals=code,
            runs_code=code,
        )
    return allowed


def trust_fields(trust: Any) -> dict[str, Any]:
    """What a :class:`CheckpointSource` records of ``trust``: ``trusted`` and ``allowed_globals``.

    Parameters
    ----------
    trust
        As :func:`allowed_globals` takes it.

    Returns
    -------
    dict
        ``{"trusted": bool, "allowed_globals": tuple}``.
    """
    allowed = allowed_globals(trust)
    if allowed is None:
        return {"trusted": bool(trust), "allowed_globals": ()}
    return {"trusted": True, "allowed_globals": tuple(allowed)}


def global_name(obj: Any) -> str:
    """``argparse.Namespace`` → ``"argparse.Namespace"`` (``(obj, "m.n")`` → ``"m.n"``)."""
    if isinstance(obj, tuple) and len(obj) == 2:  # (obj, "module.name") as torch accepts
        return str(obj[1])
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


#: opcodes scanned (in Python, ~1 µs each) when listing globals for a message
SCAN_BUDGET = 300_000


def pickle_globals(
    data: bytes | IO[bytes], max_pickles: int = 1, budget: int = SCAN_BUDGET
) -> list[str]:
    """Every global a pickle names (``GLOBAL``, ``INST`` and ``STACK_GLOBAL`` forms), in order.

    Parses opcodes only (``pickletools.genops``); executes and imports nothing. The
    ``STACK_GLOBAL`` operands are followed through the memo, as the unpickler would.

    Parameters
    ----------
    data
        The pickle bytes or a binary file positioned at its start.
    max_pickles
        How many consecutive pickles to scan (legacy torch files hold several).
    budget
        Stop after this many opcodes (the scan is for messages; a hostile pickle of millions of
        opcodes must not make a refusal slow).

    Returns
    -------
    list of str
        ``"module.name"`` for each global, first occurrence order, without duplicates.
    """
    f: Any = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else _Bounded(data)
    found: dict[str, None] = {}
    for _ in range(max_pickles):
        stack: list[Any] = []  # only strings matter; anything else is a placeholder
        memo: dict[int, Any] = {}
        try:
            for op, arg, _pos in pickletools.genops(f):
                budget -= 1
                if budget < 0:
                    return list(found)
                name = op.name
                if name in ("GLOBAL", "INST") and isinstance(arg, str):
                    found[arg.replace(" ", ".", 1)] = None
                elif name in (
                    "SHORT_BINUNICODE",
                    "BINUNICODE",
                    "UNICODE",
                    "BINUNICODE8",
                    "SHORT_BINSTRING",
                    "BINSTRING",
                    "STRING",
                ):
                    stack.append(arg)
                elif name == "STACK_GLOBAL":
                    if len(stack) >= 2 and all(isinstance(x, str) for x in stack[-2:]):
                        found[f"{stack[-2]}.{stack[-1]}"] = None
                    else:
                        found["<unresolved STACK_GLOBAL>"] = None
                    del stack[-2:]
                    stack.append(None)
                elif name == "MEMOIZE":
                    memo[len(memo)] = stack[-1] if stack else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg or 0)] = stack[-1] if stack else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    stack.append(memo.get(int(arg or 0)))
                elif name == "STOP":
                    break
                elif name not in ("PROTO", "FRAME"):
                    stack.append(None)
        except (ValueError, TypeError, EOFError, OverflowError, MemoryError):
            break
    return list(found)


class _Bounded(io.RawIOBase):
    """A binary file whose reads never ask for more than the bytes left in it.

    ``pickletools.genops`` reads an opcode's declared length in one ``read(n)``; on a real
    file a corrupt length (say 2**62) makes Python allocate ``n`` bytes first and raise
    ``MemoryError``. ``io.BytesIO`` needs no such guard.
    """

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        here = f.tell()
        self._end = f.seek(0, os.SEEK_END)
        f.seek(here)

    def read(self, n: int = -1) -> bytes:
        left = max(0, self._end - self._f.tell())
        return self._f.read(left if n is None or n < 0 else min(n, left))

    def readline(self, size: int | None = -1) -> bytes:
        left = max(0, self._end - self._f.tell())
        return self._f.readline(left if size is None or size < 0 else min(size, left))

    def tell(self) -> int:
        return self._f.tell()


class _Refused(pickle.UnpicklingError):
    def __init__(self, name: str) -> None:
        super().__init__(f"global {name!r} is not allowed")
        self.name = name


#: CPython's pure-Python unpickler, whose opcodes can be replaced one by one (the C one's cannot)
_PyUnpickler: Any = getattr(pickle, "_Unpickler")  # noqa: B009
#: its opcode table: byte -> function(unpickler)
_PY_DISPATCH: dict[int, Any] = _PyUnpickler.dispatch


class AllowListUnpickler(_PyUnpickler):
    """An unpickler whose ``find_class`` admits only exact ``(module, name)`` pairs.

    Admitted objects are returned from the table itself: nothing is imported and no dotted
    name is resolved through module attributes. Anything else raises ``pickle.UnpicklingError``
    naming the global.

    ``BUILD`` (state set on an object) is admitted only on instances this unpickling created
    with ``NEWOBJ``: never on an admitted class, function or other shared object (a few bytes
    could otherwise set ``pathlib.PosixPath.__fspath__ = None`` for the whole process).
    Extension-registry opcodes and persistent ids are refused. This is CPython's own
    pure-Python unpickler (``pickle._Unpickler``) with those opcodes replaced; about 2.5x
    slower than the C one on DCP metadata.
    """

    dispatch: ClassVar[dict[int, Any]] = dict(_PY_DISPATCH)

    def __init__(self, file: Any, allowed: Mapping[tuple[str, str], Any]) -> None:
        super().__init__(file)
        self._allowed = allowed
        self._fresh: dict[int, Any] = {}  # id -> instance made by NEWOBJ here (kept alive)

    def find_class(self, module: str, name: str) -> Any:
        """The admitted object for exactly ``(module, name)``; refuse anything else."""
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (metadata never has them)."""
        raise pickle.UnpicklingError("persistent ids are not allowed")

    def _load_newobj(self) -> None:
        _PY_DISPATCH[pickle.NEWOBJ[0]](self)
        self._fresh[id(self.stack[-1])] = self.stack[-1]

    def _load_newobj_ex(self) -> None:
        _PY_DISPATCH[pickle.NEWOBJ_EX[0]](self)
        self._fresh[id(self.stack[-1])] = self.stack[-1]

    def _load_build(self) -> None:
        target = self.stack[-2] if len(self.stack) >= 2 else None
        if self._fresh.get(id(target)) is not target:
            raise _StateRefused(target)
        _PY_DISPATCH[pickle.BUILD[0]](self)

    def _load_ext(self) -> None:
        raise pickle.UnpicklingError("extension-registry opcodes (EXT1/EXT2/EXT4) are not allowed")

    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.BUILD[0]] = _load_build
    for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = _load_ext
    del _op


class _StateRefused(pickle.UnpicklingError):
    def __init__(self, target: Any) -> None:
        what = (
            "a class"
            if isinstance(target, type)
            else "a module"
            if isinstance(target, types.ModuleType)
            else "a function"
            if callable(target)
            else f"a {type(target).__name__} it did not create"
        )
        name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
        super().__init__(f"it sets state (BUILD) on {what}" + (f" ({name!r})" if name else ""))


def restricted_load(data: bytes, allowed: Mapping[tuple[str, str], Any], what: str) -> Any:
    """Unpickle ``data`` admitting only the globals in ``allowed``.

    Parameters
    ----------
    data
        The pickle.
    allowed
        ``(module, name)`` → object.
    what
        What the pickle is, for messages (a path).

    Returns
    -------
    Any
        The unpickled object.

    Raises
    ------
    UnsafeCheckpointError
        The pickle names globals outside ``allowed`` (all of them are listed); nothing ran.
    UnreadableCheckpointError
        The pickle is corrupt or uses refused opcodes.
    """
    try:
        return AllowListUnpickler(io.BytesIO(data), allowed).load()
    except _Refused as exc:
        # the refused global, and any others the pickle names (a bounded opcode scan)
        names = list(
            dict.fromkeys(
                [
                    exc.name,
                    *(g for g in pickle_globals(data) if tuple(g.rsplit(".", 1)) not in allowed),
                ]
            )
        )
        raise UnsafeCheckpointError(
            f"{what} contains objects that are not checkpoint metadata: it names "
            f"{', '.join(repr(n) for n in names)}, not one of the {len(allowed)} exact metadata "
            "classes and functions allowed. Nothing was executed. This is not a plain "
            "torch.distributed.checkpoint directory, and no trust option opens it.",
            globals=names,
            opt_in=False,
        ) from None
    except _StateRefused as exc:
        raise UnreadableCheckpointError(
            f"{what} is not checkpoint metadata: {exc} — a pickle that would change a class or "
            "function for the whole process. It was refused before the change; nothing was "
            "executed. Do not load this directory unless you trust its source."
        ) from None
    except RecursionError:
        raise UnreadableCheckpointError(f"{what} is nested too deeply to be metadata.") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise UnreadableCheckpointError(
            f"{what} could not be read ({type(exc).__name__}: {str(exc)[:200]}); the checkpoint "
            "is incomplete or corrupt."
        ) from None


_DCP_GLOBALS: dict[tuple[str, str], Any] | None = None


def dcp_metadata_globals() -> dict[tuple[str, str], Any]:
    """The exact globals a ``torch.distributed.checkpoint`` ``.metadata`` pickle needs.

    Found by writing real DCP checkpoints (flat, nested, optimizer state, every dtype) and
    recording each ``find_class`` call; see ``tests/test_security.py``.
    """
    global _DCP_GLOBALS
    if _DCP_GLOBALS is None:
        from torch.distributed.checkpoint import filesystem, metadata

        table: dict[tuple[str, str], Any] = {}
        for name in (
            "Metadata",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "TensorProperties",
            "MetadataIndex",
            "StorageMeta",
            "_MEM_FORMAT_ENCODING",
        ):
            if hasattr(metadata, name):
                table[(metadata.__name__, name)] = getattr(metadata, name)
        table[(filesystem.__name__, "_StorageInfo")] = filesystem._StorageInfo
        table[("torch", "Size")] = torch.Size
        for name in dir(torch):
            value = getattr(torch, name, None)
            if isinstance(value, torch.dtype):
                table[("torch", name)] = value
        table[("torch.serialization", "_get_layout")] = torch.serialization._get_layout
        for name in ("PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"):
            table[("pathlib", name)] = getattr(pathlib, name)
        table[("collections", "OrderedDict")] = OrderedDict
        table[("builtins", "set")] = set
        table[("builtins", "frozenset")] = frozenset
        _DCP_GLOBALS = table
    return _DCP_GLOBALS


def unsafe_globals(path: str | os.PathLike[str]) -> list[str]:
    """Name the globals a torch file needs that weights-only loading refuses.

    Reads the pickle opcodes only; executes nothing. For archives whose ``data.pkl`` is over
    1 MB, and for legacy files, at most :data:`SCAN_BUDGET` opcodes are scanned.

    Parameters
    ----------
    path
        A torch file (zip or legacy).

    Returns
    -------
    list of str
        ``"module.name"`` of each refused global, sorted.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            pkl = next((zi for zi in zf.infolist() if zi.filename.endswith("data.pkl")), None)
            if pkl is not None and pkl.file_size > 1_000_000:
                found = pickle_globals(zf.read(pkl))
                return sorted({g for g in found if not _torch_safe(g)})
            try:
                return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
            except Exception:  # e.g. a protocol torch's scanner does not parse
                if pkl is None:
                    raise
                found = pickle_globals(zf.read(pkl))
                return sorted({g for g in found if not _torch_safe(g)})
    except Exception:
        pass
    # legacy (non-zip) files: scan the opcodes of the pickles at the start of the file
    try:
        with open(path, "rb") as f:
            found = pickle_globals(f, max_pickles=4)
    except OSError:
        found = []
    return sorted({g for g in found if not _torch_safe(g)})


#: what torch's weights-only unpickler admits by default outside ``torch.*`` (checked on 2.13)
_TORCH_DEFAULTS = frozenset(
    {
        "_codecs.encode",  # bytes in protocol 2
        "collections.OrderedDict",
        "collections.Counter",
        "builtins.bytearray",
        "builtins.complex",
        "builtins.set",
    }
)


def _torch_safe(name: str) -> bool:
    """A global torch's weights-only unpickler admits by default (approximately: for lists).

    Only used to leave torch's own rebuild functions, storages and containers out of the names
    a message lists; any other name that can run code is always listed (it decides the advice).
    """
    if name in _TORCH_DEFAULTS:
        return True
    return name.startswith("torch.") and not listed_as_code(name)
