"""Small helpers every stage shares.

Counting and formatting (element counts, bytes, shapes, dtypes), one implementation each, and
:func:`gc_paused` for building many small objects.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    import torch

__all__ = ["dtype_name", "gc_paused", "human_bytes", "numel", "shape_text"]


def numel(shape: Iterable[int]) -> int:
    """Number of elements of a tensor of ``shape`` (1 for a scalar's empty shape).

    Parameters
    ----------
    shape : iterable of int
        The tensor's sizes, e.g. ``(64, 3, 7, 7)`` or ``torch.Size([10])``.

    Returns
    -------
    int
        The product of the sizes.
    """
    return math.prod(shape)


def human_bytes(n: float) -> str:
    """A byte count for people: ``"512 B"``, ``"1.5 KB"``, ``"2.3 GB"`` (powers of 1000).

    Parameters
    ----------
    n : float
        A number of bytes (negative for a decrease).

    Returns
    -------
    str
        Whole bytes below 1 KB, one decimal above, up to TB; a value that rounds to 1000 moves
        to the next unit (``999_999`` is ``"1.0 MB"``, not ``"1000.0 KB"``). The browser's
        ``fmtBytes`` (``widget/static/lib.js``) is checked against this function.
    """
    for unit in ("B", "KB", "MB", "GB", "TB"):
        text = f"{n:.0f}" if unit == "B" else f"{n:.1f}"
        if abs(float(text)) < 1000 or unit == "TB":
            return f"{text} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def shape_text(shape: Iterable[int] | None) -> str:
    """A shape as people read it: ``(10, 32)``, ``(10,)`` like ``torch.Size``, ``?`` unknown.

    Parameters
    ----------
    shape : iterable of int or None
        The sizes, or None when unknown (a key on one side only).

    Returns
    -------
    str
    """
    return "?" if shape is None else str(tuple(shape))


_DTYPE_NAMES: dict[torch.dtype, str] = {}


@overload
def dtype_name(dtype: torch.dtype) -> str: ...
@overload
def dtype_name(dtype: None) -> None: ...
@overload
def dtype_name(dtype: torch.dtype | None) -> str | None: ...


def dtype_name(dtype: torch.dtype | None) -> str | None:
    """A dtype as sd_widgets spells it everywhere: ``torch.float32`` → ``"float32"``.

    Parameters
    ----------
    dtype : torch.dtype or None
        The dtype, or None when unknown (a key on one side only).

    Returns
    -------
    str or None
        The name without the ``torch.`` prefix; None for None. Cached per dtype: a comparison
        asks once per key.
    """
    if dtype is None:
        return None
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic objects.

    Pairs, rows, tree dicts: the collector's full passes scan the whole heap — the model and
    the checkpoint included — and were measured at 2-3x the cost of the building itself at 10k
    keys.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_text(text: str) -> str:
    r"""``text`` with every non-printable character escaped, for a terminal or a CSV cell.

    Keys, entry names, paths and global names come from files: a terminal escape
    (``"\x1b[2J"``), a newline, NUL, a bidi override or a lone surrogate must never reach the
    terminal raw. They are written as ``\x1b``, ``\n``, ``\x00``, ``\u202e``, ``\udc80``
    (Python's escapes); printable text, non-ASCII letters included, is unchanged. JSON output
    does not need this: ``json.dumps`` escapes them and keeps the key recoverable.

    Parameters
    ----------
    text
        Any string.

    Returns
    -------
    str
        Printable text (``str.isprintable()`` is true), encodable as UTF-8.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        else:
            o = ord(ch)
            out.append(
                f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
            )
    return "".join(out)
