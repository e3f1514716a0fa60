"""torch files: ``torch.save`` zip archives (memory-mapped) and legacy pickles.

Read with ``torch.load(weights_only=True)``; ``trust=[classes]`` keeps weights-only loading and
adds exactly those globals (``torch.serialization.safe_globals``); only ``trust=True`` turns it
off. Before torch sees a zip archive its directory is checked: ``torch.save`` writes every
member uncompressed, so a compressed member is inflated here first, in a stream with a cap
(declared and actual sizes), and a zip bomb is refused as unreadable before torch allocates.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch

from ..errors import CheckpointError, UnreadableCheckpointError, UnsafeCheckpointError
from ._core import Checkpoint, CheckpointSource
from ._memory import from_object
from ._paths import FileStamp, check_path
from ._trust import code_globals
from ._unpickle import allowed_globals, global_name, trust_fields, unsafe_globals

#: a compressed member may inflate to at most this many times its compressed size ...
MAX_INFLATE_RATIO = 20
#: ... and to at most this many bytes in all
MAX_INFLATED_BYTES = 256 * 1024 * 1024
#: more members than this is not a torch.save archive
MAX_MEMBERS = 1_000_000


def check_zip(path: Path | IO[bytes], size: int, label: str | None = None) -> bool:
    """Refuse a zip archive whose members would inflate beyond the caps, before torch reads it.

    Stored (uncompressed) members — all that ``torch.save`` writes — must declare the same
    size compressed and uncompressed and lie inside the file. Compressed members must declare
    at most :data:`MAX_INFLATE_RATIO` times their compressed size and at most
    :data:`MAX_INFLATED_BYTES` in all, and are then inflated in a stream (never held in
    memory) to check the actual size against the same caps.

    Parameters
    ----------
    path
        The archive, or a seekable binary stream holding it (a slice of a DCP data file).
    size
        Its size in bytes.
    label
        How to name the archive in messages (default: ``path``).

    Returns
    -------
    bool
        True when some member is compressed (the archive cannot be memory-mapped).
    """
    name = label or str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise UnreadableCheckpointError(
                    f"{name} is a zip archive with {len(infos):,} members; a torch.save file has "
                    "a handful per tensor. It is not a checkpoint (or is hostile); not read."
                )
            inflated_total = 0
            compressed: list[zipfile.ZipInfo] = []
            for zi in infos:
                if zi.compress_type == zipfile.ZIP_STORED:
                    if (
                        zi.file_size != zi.compress_size
                        or zi.header_offset + zi.compress_size > size
                    ):
                        raise UnreadableCheckpointError(
                            f"{name}: zip member {zi.filename!r} declares {zi.file_size:,} bytes "
                            f"stored in {zi.compress_size:,} at offset {zi.header_offset:,} of a "
                            f"{size:,}-byte file. The archive is corrupt or hostile; not read."
                        )
                    continue
                compressed.append(zi)
                inflated_total += zi.file_size
                cap = min(MAX_INFLATED_BYTES, MAX_INFLATE_RATIO * max(zi.compress_size, 1))
                if zi.file_size > cap or inflated_total > MAX_INFLATED_BYTES:
                    raise _bomb(name, zi.filename, zi.file_size, zi.compress_size, "declares")
            for zi in compressed:  # actual sizes: inflate in a stream, never more than the cap
                cap = min(MAX_INFLATED_BYTES, MAX_INFLATE_RATIO * max(zi.compress_size, 1))
                seen = 0
                with zf.open(zi) as member:
                    while True:
                        chunk = member.read(1 << 20)
                        if not chunk:
                            break
                        seen += len(chunk)
                        if seen > cap:
                            raise _bomb(name, zi.filename, seen, zi.compress_size, "inflates to")
            return bool(compressed)
    except UnreadableCheckpointError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        # zipfile's own errors for corrupt archives, unsupported compression methods, CRC
        raise _unreadable(name, exc) from None


def _bomb(
    path: Path | str, member: str, inflated: int, compressed: int, verb: str
) -> UnreadableCheckpointError:
    return UnreadableCheckpointError(
        f"{path}: zip member {member!r} {verb} at least {inflated:,} bytes from {compressed:,} "
        f"compressed (limits: {MAX_INFLATE_RATIO}x and {MAX_INFLATED_BYTES:,} bytes). torch.save "
        "writes archives uncompressed, so this is not a torch.save file: it is corrupt or a zip "
        "bomb. Nothing was unpickled; do not open it (trust=True would not make it safe)."
    )


def torch_load(path: Path, fmt: str, map_location: Any, trust: Any) -> Any:
    """``torch.load`` a checked file weights-only (unless ``trust=True``); typed errors."""
    size = check_path(path).st_size
    # torch.save archives are memory-mapped; a compressed one (within the caps) cannot be
    mmap = fmt == "torch" and not check_zip(path, size)
    allowed = allowed_globals(trust)
    try:
        if allowed is not None:  # weights-only, plus exactly the globals the caller allowed
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        return torch.load(
            path, map_location=map_location, weights_only=trust is not True, mmap=mmap
        )
    except pickle.UnpicklingError as exc:
        if trust is not True and "Weights only load failed" in str(exc):
            raise _refused(path, exc, allowed or []) from None
        raise _unreadable(path, exc) from None
    except RuntimeError as exc:
        msg = str(exc)
        if "CUDA" in msg or "cuda" in msg:
            if _requests_cuda(map_location) and not torch.cuda.is_available():
                raise UnreadableCheckpointError(_no_cuda_message(map_location)) from None
            raise UnreadableCheckpointError(
                f"{path} was saved from a GPU and cannot be mapped to {map_location!r} here: "
                f"{msg.splitlines()[0].rstrip('.')[:300]}. Pass map_location='cpu'."
            ) from None
        raise _unreadable(path, exc) from None
    except RecursionError:
        raise UnreadableCheckpointError(
            f"{path}: its pickle is nested too deeply to be a state dict (or is hostile)."
        ) from None
    except MemoryError:
        raise UnreadableCheckpointError(
            f"{path}: reading it needed more memory than is available; it declares sizes it "
            "cannot hold (corrupt or hostile)."
        ) from None
    except Exception as exc:  # EOFError, BadZipFile, OSError, ValueError, KeyError, ...
        raise _unreadable(path, exc) from None


def _refused(path: Path, exc: BaseException, allowed: list[Any]) -> CheckpointError:
    """Why torch's weights-only unpickler refused ``path``, and what (if anything) to do."""
    allowed_names = {global_name(g) for g in allowed}
    text = str(exc)
    named = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
    # torch names a builtin without its module ("GLOBAL eval")
    first = [(n if "." in n else f"builtins.{n}") for n in ([named.group(1)] if named else [])]
    names = [n for n in dict.fromkeys([*first, *unsafe_globals(path)]) if n not in allowed_names]
    code = code_globals(names)
    if code:
        return UnsafeCheckpointError(
            f"{path} would run code when loaded: its pickle calls "
            f"{', '.join(repr(n) for n in code)}, which can run code (commands, Python, file "
            "writes) with arguments the file chooses. Nothing from the file was executed. No "
            "trust=[...] allows this; only trust=True would load it, and that runs the code. "
            "Do not open it unless you trust its source as much as code you would run; ask for "
            "a weights-only export (safetensors, or torch.save(model.state_dict(), ...)).",
            globals=names,
            runs_code=code,
        )
    operand = re.search(r"Unsupported operand (\d+)", text)
    if operand is not None:  # allowing globals would not help: torch cannot parse the pickle
        op = _OPCODES.get(int(operand.group(1)))
        if op is not None:
            return UnreadableCheckpointError(
                f"{path} holds a pickle written with a protocol torch's weights-only "
                f"unpickler cannot parse (it uses opcode {op.name}, from pickle protocol "
                f"{op.proto}; torch.save writes protocol 2 unless pickle_protocol= says "
                "otherwise). The file is not necessarily corrupt. Nothing from the file was "
                "executed. Re-save it with torch.save(obj, path) and the default protocol where "
                "it was made, or open it with trust=True only if you trust its source (that "
                "runs any code it holds)."
            )
    if not names:  # refused, but not for a global anyone could allow: corrupt
        return _unreadable(path, _weights_only_reason(exc))
    already = f" (beyond the {len(allowed_names)} allowed in trust=[...])" if allowed_names else ""
    shown = ", ".join(names)
    one = len(names) == 1
    return UnsafeCheckpointError(
        f"{path} contains pickled Python objects that weights-only loading refuses"
        f"{already}: {shown}. {'It is not' if one else 'None of them is'} known to run code, "
        "but the file calls " + ("it" if one else "each") + " with arguments it chooses. "
        "Nothing from the file was executed. If you trust where the file came from and "
        + ("it is a data class" if one else "they are data classes")
        + ", allow just "
        + ("it" if one else "them")
        + f" with trust=[{shown}] (still weights-only for everything else), or anything with "
        "trust=True; otherwise ask for a weights-only export (torch.save(model.state_dict(), "
        "...) or safetensors).",
        globals=names,
    )


#: pickle opcodes by their byte, to name one torch's unpickler does not parse
_OPCODES = {ord(op.code): op for op in pickletools.opcodes if len(op.code) == 1}


def _weights_only_reason(exc: BaseException) -> Exception:
    """The line of torch's weights-only message that says what failed."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith(
            ("Weights only load failed", "(1)", "(2)", "Please", "In PyTorch", "Check the")
        ):
            return pickle.UnpicklingError(line)
    return pickle.UnpicklingError("the weights-only unpickler refused the data")


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


def _unreadable(path: Path | str, exc: BaseException) -> UnreadableCheckpointError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return UnreadableCheckpointError(
        f"{path} could not be read as a torch checkpoint ({type(exc).__name__}: {first}). "
        "The file is probably truncated or corrupt (an interrupted save or download); "
        "re-save or re-download it."
    )


def open_torch(path: Path, fmt: str, *, key: Any, map_location: Any, trust: Any) -> Checkpoint:
    """Open a torch file (``fmt`` "torch" or "torch-legacy") and find the weights in it."""
    stamp = FileStamp.of(path)
    obj = torch_load(path, fmt, map_location, trust)
    source = CheckpointSource(kind=fmt, path=str(path), files=[str(path)], **trust_fields(trust))
    return from_object(obj, source, key, stamps=(stamp,))
