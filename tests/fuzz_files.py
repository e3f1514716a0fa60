"""Hostile-file generators for ``tests/test_security.py`` (pytest puts ``tests/`` on sys.path).

Nothing here runs a payload: pickles are written as raw opcodes, zip bombs as raw deflate
streams. Each payload only ever creates a marker file, so a test proves that nothing ran by
asserting that the marker does not exist (and, as a control, that a plain ``pickle.loads``
does create it).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

MiB = 1 << 20


# ------------------------------------------------------------------------------------ pickles


def _unicode(text: str, proto: int) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    if proto >= 4 and len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def call_pickle(module: str, name: str, args: tuple[str, ...], form: str = "STACK_GLOBAL") -> bytes:
    """A pickle that calls ``module.name(*args)`` when loaded by a plain unpickler.

    ``form`` is ``"STACK_GLOBAL"`` (protocol 4: the name may be dotted and is then resolved
    through attributes, ``("pathlib", "os.system")``), ``"GLOBAL"`` (protocol 2) or ``"INST"``
    (protocol 0).
    """
    if form == "STACK_GLOBAL":
        body = _unicode(module, 4) + _unicode(name, 4) + b"\x93"
        body += b"(" + b"".join(_unicode(a, 4) for a in args) + b"tR."
        return b"\x80\x04" + body
    if form == "GLOBAL":
        body = b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        body += b"(" + b"".join(_unicode(a, 2) for a in args) + b"tR."
        return b"\x80\x02" + body
    if form == "INST":
        return (
            b"("
            + b"".join(b"V" + a.encode("raw_unicode_escape") + b"\n" for a in args)
            + (b"i" + module.encode() + b"\n" + name.encode() + b"\n.")
        )
    raise ValueError(form)


def marker_payloads(marker: Path) -> dict[str, bytes]:
    """Pickles reaching functions that create ``marker``, in every way a pickle names a global.

    Each would create ``marker`` under ``pickle.loads``; under an allow-list, none may.
    """
    cmd = f"touch {marker}"
    m = str(marker)
    return {
        "GLOBAL os.system": call_pickle("os", "system", (cmd,), "GLOBAL"),
        "GLOBAL posix.system": call_pickle("posix", "system", (cmd,), "GLOBAL"),
        "GLOBAL builtins.open": call_pickle("builtins", "open", (m, "w"), "GLOBAL"),
        "INST io.open": call_pickle("io", "open", (m, "w"), "INST"),
        "STACK_GLOBAL os.system": call_pickle("os", "system", (cmd,)),
        "STACK_GLOBAL io.open": call_pickle("io", "open", (m, "w")),
        # dotted names reached through attributes of modules the DCP allow-list admits
        "STACK_GLOBAL pathlib.os.system": call_pickle("pathlib", "os.system", (cmd,)),
        "STACK_GLOBAL torch.serialization.os.system": call_pickle(
            "torch", "serialization.os.system", (cmd,)
        ),
        "STACK_GLOBAL dcp.metadata.os.system": call_pickle(
            "torch.distributed.checkpoint.metadata", "os.system", (cmd,)
        ),
        "STACK_GLOBAL torch.serialization/os.system": call_pickle(
            "torch.serialization", "os.system", (cmd,)
        ),
        "STACK_GLOBAL builtins.open via pathlib": call_pickle("pathlib", "io.open", (m, "w")),
    }


class ReduceTo:
    """An object that pickles as ``func(*args)`` (for payloads inside real structures)."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.func, self.args)


# ------------------------------------------------------------------------------------ zips


@functools.lru_cache(maxsize=4)
def deflate_zeros(mib: int) -> tuple[bytes, int, int]:
    """A raw deflate stream of ``mib`` MiB of zero bytes, built without inflating anything:
    ~1 KB per MiB (full-flush blocks repeat once the window is all zeros).

    Returns (stream, crc32 of the inflated data, inflated size).
    """
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MiB)
    first = co.compress(chunk) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(chunk) + co.flush(zlib.Z_FULL_FLUSH)
    end = co.flush()
    crc = 0
    for _ in range(mib):  # crc32 of the zeros, one MiB at a time
        crc = zlib.crc32(chunk, crc)
    return first + block * (mib - 1) + end, crc, mib * MiB


def write_zip(
    path: Path,
    members: list[tuple[str, bytes, tuple[bytes, int, int] | None]],
    declare: dict[str, int] | None = None,
) -> Path:
    """Write a zip archive by hand: ``(name, stored bytes, None)`` or
    ``(name, b"", (raw deflate, crc, inflated size))``; ``declare`` overrides the declared
    uncompressed size of named members (a lying header)."""
    declare = declare or {}
    out = bytearray()
    central = bytearray()
    for name, data, deflated in members:
        fname = name.encode()
        if deflated is None:
            method, payload, crc, size = 0, data, zlib.crc32(data), len(data)
        else:
            method, (payload, crc, size) = 8, deflated
        size = declare.get(name, size)
        offset = len(out)
        # the fields both headers share, from "flags" to "extra field length" (APPNOTE 4.3.7
        # and 4.3.12): no flags, the method, a fixed DOS time/date, CRC and the two sizes
        shared = struct.pack(
            "<HHHHIIIHH", 0, method, 0, 0x21, crc, len(payload), size, len(fname), 0
        )
        out += struct.pack("<IH", 0x04034B50, 20) + shared + fname + payload
        # central directory: "version made by" first; comment, disk, attributes, offset after
        central += (
            struct.pack("<IHH", 0x02014B50, 20, 20)
            + shared
            + struct.pack("<HHHII", 0, 0, 0, 0, offset)
            + fname
        )
    cd_offset = len(out)
    out += central
    out += struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), cd_offset, 0
    )
    path.write_bytes(bytes(out))
    return path


def torch_zip_members(obj: Any) -> list[tuple[str, bytes]]:
    """The members of a real ``torch.save`` archive of ``obj``."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(buf) as zf:
        return [(zi.filename, zf.read(zi)) for zi in zf.infolist()]


def zip_bomb_checkpoint(
    path: Path, mib: int = 2048, member: str = "data.pkl", lie: bool = False
) -> Path:
    """A real ``torch.save`` archive whose ``member`` (``data.pkl``, or ``data/0``) is replaced
    by a deflated stream inflating to ``mib`` MiB; the file stays ~1 KB per inflated MiB.
    ``lie=True`` declares the member at 100 bytes (so only the actual size gives it away)."""
    members = []
    declare = {}
    for name, data in torch_zip_members({"w": torch.ones(4)}):
        if name.endswith("/" + member):
            members.append((name, b"", deflate_zeros(mib)))
            if lie:
                declare[name] = 100
        else:
            members.append((name, data, None))
    return write_zip(path, members, declare)


# ------------------------------------------------------------------------------------ files


def safetensors_bytes(header: dict[str, Any], data: int | bytes = 0) -> bytes:
    """A safetensors file from a header dict (any JSON) and a data region."""
    raw = json.dumps(header).encode()
    body = bytes(data) if isinstance(data, int) else data
    return struct.pack("<Q", len(raw)) + raw + body


def write_dcp(directory: Path, state: dict[str, Any]) -> Path:
    """A real ``torch.distributed.checkpoint`` directory of ``state``."""
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save(state, checkpoint_id=str(directory), no_dist=True)
    return directory


def real_dcp_metadata(directory: Path) -> Any:
    """The metadata object of a real DCP directory, read with the allow-list (for mutation)."""
    from sd_widgets.checkpoint._dcp import read_dcp_metadata

    return read_dcp_metadata(directory)


def dump_metadata(directory: Path, metadata: Any, protocol: int = 4) -> None:
    """Replace a DCP directory's ``.metadata`` with ``metadata`` pickled."""
    (directory / ".metadata").write_bytes(pickle.dumps(metadata, protocol=protocol))


def index_file(
    directory: Path,
    weight_map: Any,
    name: str = "model.safetensors.index.json",
    extra: dict[str, Any] | None = None,
) -> Path:
    """An ``*.index.json`` with the given ``weight_map`` (any JSON value)."""
    directory.mkdir(parents=True, exist_ok=True)
    body = {"metadata": {"total_size": 0}, **(extra or {}), "weight_map": weight_map}
    path = directory / name
    path.write_text(json.dumps(body))
    return path


def make_fifo(path: Path) -> Path:
    """A FIFO at ``path`` (reading it would block until a writer appears)."""
    if path.exists():
        os.unlink(path)
    os.mkfifo(path)
    return path


# ------------------------------------------------------------------ fail closed (issue 16)


def payload_checkpoints(marker: Path) -> dict[str, tuple[Any, str]]:
    """Payloads that create ``marker`` when unpickled without an allow-list, each with the
    global the file needs that runs code: eval, exec, os.system, subprocess.Popen, a getattr
    chain through ``__import__``, importlib, runpy, pty and pickle-in-pickle.

    Each is an object to save next to a state dict, or (``bytes``) a whole raw pickle. Write
    one with :func:`write_payload_checkpoint`; nothing runs until a loader without an
    allow-list unpickles it.
    """
    import importlib
    import pty
    import runpy
    import subprocess

    m = str(marker)
    touch = f"touch {m}"
    inner = pickle.dumps(ReduceTo(os.system, touch), protocol=2)
    # getattr(__import__("os"), "system")("touch ...") as raw protocol-2 opcodes
    chain = (
        b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n("
        + _unicode("os", 2)
        + b"tR"
        + _unicode("system", 2)
        + b"tR("
        + _unicode(touch, 2)
        + b"tR."
    )
    return {
        "eval": (ReduceTo(eval, f"open({m!r}, 'w')"), "builtins.eval"),
        "exec": (ReduceTo(exec, f"open({m!r}, 'w')"), "builtins.exec"),
        "os.system": (ReduceTo(os.system, touch), f"{os.system.__module__}.system"),
        # protocol 2 writes subprocess.Popen under its Python 2 name, commands.Popen
        "subprocess.Popen": (ReduceTo(subprocess.Popen, ["touch", m]), "commands.Popen"),
        "getattr chain": (chain, "builtins.getattr"),
        "importlib": (ReduceTo(importlib.import_module, "this"), "importlib.import_module"),
        "runpy": (ReduceTo(runpy.run_path, m), "runpy.run_path"),
        "pty": (ReduceTo(pty.spawn, ["touch", m]), "pty.spawn"),
        "pickle in pickle": (ReduceTo(pickle.loads, inner), "pickle.loads"),
    }


def write_payload_checkpoint(path: Path, payload: Any) -> Path:
    """A ``torch.save`` archive holding ``{"state_dict": ..., "cb": payload}`` (or, for raw
    pickle bytes, a real archive whose ``data.pkl`` is that pickle)."""
    sd = {"fc.weight": torch.ones(2, 2), "fc.bias": torch.zeros(2)}
    if isinstance(payload, bytes):
        members = [
            (n, payload if n.endswith("data.pkl") else d, None) for n, d in torch_zip_members(sd)
        ]
        return write_zip(path, members)
    torch.save({"state_dict": sd, "cb": payload}, path)
    return path


def build_on_global_pickle(module: str, name: str, attr: str, value_none: bool = True) -> bytes:
    """A protocol-4 pickle that sets ``module.name.attr = None`` with BUILD (slot state) — the
    class or function itself, not an instance of it — then returns the object."""
    body = _unicode(module, 4) + _unicode(name, 4) + b"\x93"  # STACK_GLOBAL: the object
    body += b"N}" + _unicode(attr, 4) + (b"N" if value_none else b"K\x01") + b"s"  # None, {attr}
    body += b"\x86b."  # TUPLE2 (state, slotstate), BUILD, STOP
    return b"\x80\x04" + body


def set_dcp_chunks(directory: Path, fqn: str, chunks: list[tuple[list[int], list[int]]]) -> None:
    """Rewrite the chunks of ``fqn`` in a real DCP directory's ``.metadata``: ``(offsets,
    sizes)`` pairs (storage entries are left as they were)."""
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata

    md = real_dcp_metadata(directory)
    item = md.state_dict_metadata[fqn]
    item.chunks = [
        ChunkStorageMetadata(offsets=torch.Size(o), sizes=torch.Size(s)) for o, s in chunks
    ]
    dump_metadata(directory, md)


def aliased_checkpoint(path: Path, n: int) -> Path:
    """One small tensor saved under ``n`` names (``layer.<i>.weight``): a file of ~30 bytes a
    name that made every key list every other (quadratic)."""
    t = torch.zeros(4)
    torch.save({f"layer.{i}.weight": t for i in range(n)}, path)
    return path


def deep_key_checkpoint(path: Path, levels: int) -> Path:
    """A checkpoint with one key ``levels`` module names deep (``a.a.a...``) besides a normal
    one."""
    torch.save({".".join(["a"] * levels): torch.zeros(1), "fc.weight": torch.zeros(2)}, path)
    return path
