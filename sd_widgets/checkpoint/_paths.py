"""Checks made before any path is opened, and the format sniffed from a file's first bytes.

Every path the readers open goes through :func:`check_path` first: it must be a regular file
(or a directory where one is expected). FIFOs, sockets and devices are refused without being
opened, so a FIFO named ``model.safetensors.index.json`` cannot block the process. Small files
the library reads itself (index JSON, the first bytes of a file) are opened non-blocking and
checked again on the open descriptor (:func:`read_regular`), which closes the race between the
check and the open for them. :class:`FileStamp` records size, modification time and inode at
open time so a later read can tell that the file changed (see ``SECURITY.md`` for the race that
remains between that check and the read itself).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import CheckpointChangedError, UnreadableCheckpointError

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar", ".pkl")
#: longest path accepted (bytes, as the OS sees it); PATH_MAX on Linux is 4096
MAX_PATH_BYTES = 4096
#: longest single path component (NAME_MAX)
MAX_NAME_BYTES = 255
#: JSON index files larger than this are refused (a real 1,000-shard index is ~10 MB)
MAX_INDEX_BYTES = 64 * 1024 * 1024

_KIND_NAMES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _shown(path: str | os.PathLike[str]) -> str:
    """A path as text for messages: repr() keeps control characters and NULs visible."""
    text = os.fspath(path)
    return repr(text if len(text) <= 300 else text[:300] + "...")


def _kind_of(mode: int) -> str:
    for test, name in _KIND_NAMES:
        if test(mode):
            return name
    return "not a regular file"


def check_name(path: str | os.PathLike[str]) -> str:
    """The path as text, refused when it holds a NUL byte, cannot be encoded, or is too long.

    Parameters
    ----------
    path
        The path to check.

    Returns
    -------
    str
        ``os.fspath(path)`` as text.
    """
    text = os.fspath(path)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if "\0" in text:
        raise UnreadableCheckpointError(
            f"the path {_shown(text)} contains a NUL byte, which no file name can hold. "
            "Check where the path came from."
        )
    try:
        raw = os.fsencode(text)
    except UnicodeError:
        raise UnreadableCheckpointError(
            f"the path {_shown(text)} cannot be encoded for the file system (it holds "
            "characters such as lone surrogates). Check where the path came from."
        ) from None
    if len(raw) > MAX_PATH_BYTES or any(len(p) > MAX_NAME_BYTES for p in raw.split(b"/")):
        raise UnreadableCheckpointError(
            f"the path {_shown(text)} is too long ({len(raw)} bytes; the limits are "
            f"{MAX_PATH_BYTES} bytes and {MAX_NAME_BYTES} per name). Check the path."
        )
    return text


def check_path(
    path: str | os.PathLike[str], expect: Literal["file", "dir", "any"] = "file"
) -> os.stat_result:
    """Validate a path before anything opens it; return its ``os.stat`` result.

    Parameters
    ----------
    path
        The path to check (symlinks are followed).
    expect
        ``"file"``: a regular file; ``"dir"``: a directory; ``"any"``: either.

    Returns
    -------
    os.stat_result
        The status of the file the path resolves to.

    Raises
    ------
    UnreadableCheckpointError
        The path holds a NUL byte, is too long, does not exist, cannot be examined, or is a
        FIFO, socket, device or other non-regular file (never opened).
    """
    text = check_name(path)
    try:
        st = os.stat(text)
    except FileNotFoundError:
        raise UnreadableCheckpointError(
            f"no file or directory at {_shown(text)}. Check the path."
        ) from None
    except OSError as exc:
        raise UnreadableCheckpointError(
            f"cannot examine {_shown(text)} ({type(exc).__name__}: {exc.strerror or exc}). "
            "Check the path and its permissions."
        ) from None
    if stat.S_ISDIR(st.st_mode):
        if expect == "file":
            raise UnreadableCheckpointError(
                f"{_shown(text)} is a directory where a file was expected. Pass the file inside it."
            )
        return st
    if stat.S_ISREG(st.st_mode):
        if expect == "dir":
            raise UnreadableCheckpointError(
                f"{_shown(text)} is a file where a directory was expected."
            )
        return st
    raise UnreadableCheckpointError(
        f"{_shown(text)} is {_kind_of(st.st_mode)}, not a regular file; sd_widgets reads only "
        "regular files and directories and did not open it. Pass the path of the checkpoint file."
    )


def check_inside(directory: str | os.PathLike[str], entry: str, what: str) -> Path:
    """``directory / entry``, refused when it resolves (through symlinks) outside ``directory``.

    For files that a checkpoint names or that are found by listing its directory (shards, DCP
    data files, ``.metadata``, the one checkpoint file of a directory): the file is not opened,
    so none of its bytes can reach a message.

    Parameters
    ----------
    directory
        The directory the entry must stay inside.
    entry
        A relative name inside it.
    what
        What the entry is, for messages (``"the shard 'x'"``).

    Returns
    -------
    Path
        ``Path(directory) / entry``.
    """
    real_dir = os.path.realpath(directory)
    target = os.path.realpath(os.path.join(directory, entry))
    if os.path.isabs(entry) or os.path.commonpath([real_dir, target]) != real_dir:
        raise UnreadableCheckpointError(
            f"{what} ({_shown(entry)} in {_shown(directory)}) resolves outside that directory "
            "(an absolute path, '..' or a symlink out); it was not opened. A checkpoint's files "
            "must sit inside its directory."
        )
    return Path(directory) / entry


@contextlib.contextmanager
def _regular_fd(path: str | os.PathLike[str], label: str) -> Iterator[tuple[int, os.stat_result]]:
    """``(descriptor, stat)`` of a regular file opened non-blocking, closed on exit.

    The path is checked first and the descriptor again (a FIFO swapped in after the check cannot
    block); an ``OSError`` while opening or inside the block becomes an
    :class:`UnreadableCheckpointError` naming ``label``.
    """
    check_path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UnreadableCheckpointError(
            f"cannot open {label} ({type(exc).__name__}: {exc.strerror or exc})."
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableCheckpointError(
                f"{_shown(path)} is {_kind_of(st.st_mode)}, not a regular file; not read."
            )
        yield fd, st
    except OSError as exc:
        raise UnreadableCheckpointError(
            f"reading {label} failed ({type(exc).__name__}: {exc.strerror or exc})."
        ) from None
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike[str], limit: int, what: str = "file") -> bytes:
    """Read a whole small regular file, refusing anything else and anything over ``limit``.

    The file is opened non-blocking and re-checked on the descriptor, so a FIFO swapped in
    after :func:`check_path` still cannot block the read.

    Parameters
    ----------
    path
        The file.
    limit
        Largest size accepted, in bytes.
    what
        What the file is, for messages (``"index file"``).

    Returns
    -------
    bytes
        The file's content.
    """
    with _regular_fd(path, f"{what} {_shown(path)}") as (fd, st):
        if st.st_size > limit:
            raise UnreadableCheckpointError(
                f"{what} {_shown(path)} is {st.st_size:,} bytes, over the {limit:,}-byte limit "
                "sd_widgets sets for it; no real one is that large, so it is corrupt or hostile. "
                "Check the file."
            )
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise UnreadableCheckpointError(
                f"{what} {_shown(path)} grew past the {limit:,}-byte limit while being read."
            )
        return data


def read_head(path: str | os.PathLike[str], n: int) -> bytes:
    """The first ``n`` bytes of a regular file (checked as :func:`read_regular` does)."""
    with _regular_fd(path, _shown(path)) as (fd, _):
        return os.read(fd, n)


@dataclass(frozen=True)
class FileStamp:
    """Identity and state of a file when it was opened: device, inode, size, mtime."""

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileStamp:
        """Stamp a file now (it must exist)."""
        st = os.stat(path)
        return cls(os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> str | None:
        """What changed since the stamp was taken, or None when nothing did."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "FileNotFoundError: the file no longer exists"
        except OSError as exc:
            return f"{type(exc).__name__}: {exc.strerror or exc}"
        if (st.st_dev, st.st_ino) != (self.device, self.inode):
            return "it was replaced by another file"
        if st.st_size != self.size:
            return f"its size changed from {self.size:,} to {st.st_size:,} bytes"
        if st.st_mtime_ns != self.mtime_ns:
            return "it was modified (its modification time changed)"
        return None


def verify_stamps(stamps: tuple[FileStamp, ...], what: str) -> None:
    """Raise :class:`CheckpointChangedError` when any stamped file changed since opening."""
    for s in stamps:
        change = s.changed()
        if change is not None:
            raise CheckpointChangedError(
                f"{what}: {_shown(s.path)} changed since the checkpoint was opened ({change}); "
                "no data was read from it; re-open the checkpoint (sdw.open_checkpoint) and "
                "compare again.",
                path=s.path,
            )


def sniff(path: Path, size: int) -> str:
    """The format of a regular file from its first bytes.

    "torch", "torch-legacy" or "safetensors"; a typed error for anything else.
    """
    if size == 0:
        raise UnreadableCheckpointError(
            f"{path} is an empty file (0 bytes): the save was probably interrupted. "
            "Re-save the checkpoint."
        )
    head = read_head(path, 16)
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
            f"(first bytes {head[:8]!r}). The file is corrupt or truncated; re-download or "
            "re-save it."
        )
    raise UnreadableCheckpointError(
        f"{path} is not a checkpoint sd_widgets can read: it starts with {head[:8]!r}, not a torch "
        "zip archive (torch.save), a legacy torch pickle or a safetensors header. Check that the "
        "file is complete and is a PyTorch or safetensors checkpoint."
    )
