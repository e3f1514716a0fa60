"""What the command prints: text from files escaped for a terminal, one streamed writer per format."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..checkpoint import CheckpointSource
from ..units import escape_text

PROG = "sd-widgets"
FORMATS = ("table", "json", "jsonl", "csv")


class CLIError(Exception):
    """A usage problem (bad ``--model`` spec, bad ``--rename``): message to stderr, exit 2."""


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C (or a KeyboardInterrupt raised by the ``--model`` code), with what was running."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}"
    return text or type(exc).__name__


def _error(message: str) -> None:
    """``sd-widgets: error: MESSAGE`` on one line, control characters escaped."""
    sys.stderr.write(f"{PROG}: error: {escape_text(message)}\n")
    sys.stderr.flush()


def _note(message: str) -> None:
    sys.stderr.write(f"{PROG}: {escape_text(message)}\n")
    sys.stderr.flush()


# ============================================================================================
# text that came from a file
# ============================================================================================


def _shape_text(shape: Sequence[int] | None) -> str:
    return "-" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def _counts_text(counts: dict[str, int]) -> str:
    shown = [f"{n:,} {s}" for s, n in counts.items() if n]
    return ", ".join(shown) if shown else "nothing"


def _source_dict(source: CheckpointSource) -> dict[str, Any]:
    return {
        "format": source.kind,
        "path": source.path,
        "key": source.key,
        "candidates": dict(source.candidates),
        "other_entries": dict(source.other_entries),
        "non_tensor": dict(source.non_tensor),
        "files": list(source.files),
        "trusted": source.trusted,
    }


# ============================================================================================
# one writer per output format, for both commands
# ============================================================================================


@dataclass(frozen=True)
class _Column:
    """One output column: its header, its table text and its CSV value."""

    header: str
    text: Callable[[Any], str]
    value: Callable[[Any], Any] | None = None  # None: the column is not in the CSV
    right: bool = False


@dataclass
class _Report:
    """What a command prints, independent of the format.

    ``items()`` can be iterated more than once (the table measures widths first); nothing big
    is ever built as one string. Every writer escapes text from files on its way out.
    """

    items_name: str  # "tensors" / "rows": the JSON array
    items: Callable[[], Iterator[Any]]
    record: Callable[[Any], dict[str, Any]]  # json / jsonl object of one item
    columns: list[_Column]  # table and CSV columns
    head: dict[str, Any] = field(default_factory=dict)  # JSON fields before the array
    tail: dict[str, Any] = field(default_factory=dict)  # JSON fields after the array
    footer: Callable[[], Iterator[str]] = lambda: iter(())
    empty_table: str | None = None  # printed instead of an empty table


def _write_table(out: TextIO, rep: _Report) -> None:
    """Aligned columns (widths from a first pass over the items), a blank line, the footer."""
    cols = rep.columns
    if rep.empty_table is not None and not any(True for _ in rep.items()):
        out.write(rep.empty_table + "\n")
    else:
        widths = [len(c.header) for c in cols]
        for item in rep.items():
            for i, c in enumerate(cols):
                n = len(escape_text(c.text(item)))
                if n > widths[i]:
                    widths[i] = n
        last = len(cols) - 1

        def line(cells: Sequence[str]) -> str:
            parts = []
            for i, text in enumerate(cells):
                if cols[i].right:
                    parts.append(text.rjust(widths[i]))
                elif i == last:
                    parts.append(text)
                else:
                    parts.append(text.ljust(widths[i]))
            return "  ".join(parts).rstrip() + "\n"

        out.write(line([c.header for c in cols]))
        out.write(line(["-" * w for w in widths]))
        for item in rep.items():
            out.write(line([escape_text(c.text(item)) for c in cols]))
    out.write("\n")
    for text in rep.footer():
        out.write(escape_text(text) + "\n")


def _write_json(out: TextIO, rep: _Report) -> None:
    """One JSON object, streamed: the head fields, the array one item per line, the tail.

    ``json.dumps`` (ASCII output) escapes control characters and lone surrogates, so the
    document stays valid JSON and every key is recoverable exactly.
    """
    sep = "{\n  "
    for name, value in rep.head.items():
        out.write(f"{sep}{json.dumps(name)}: {json.dumps(value)}")
        sep = ",\n  "
    out.write(f"{sep}{json.dumps(rep.items_name)}: [")
    first = True
    for item in rep.items():
        out.write(("\n    " if first else ",\n    ") + json.dumps(rep.record(item)))
        first = False
    out.write("]" if first else "\n  ]")
    for name, value in rep.tail.items():
        out.write(f",\n  {json.dumps(name)}: {json.dumps(value)}")
    out.write("\n}\n")


def _write_jsonl(out: TextIO, rep: _Report) -> None:
    """One JSON object per item on stdout; the footer on stderr."""
    for item in rep.items():
        out.write(json.dumps(rep.record(item)) + "\n")
    _footer_to_stderr(rep.footer())


def _write_csv(out: TextIO, rep: _Report) -> None:
    """Header and one line per item (text escaped as in the table); the footer on stderr."""
    cols = [c for c in rep.columns if c.value is not None]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.header for c in cols])
    for item in rep.items():
        cells = []
        for c in cols:
            v = c.value(item)  # type: ignore[misc]
            cells.append(escape_text(v) if isinstance(v, str) else v)
        writer.writerow(cells)
    _footer_to_stderr(rep.footer())


_WRITERS: dict[str, Callable[[TextIO, _Report], None]] = {
    "table": _write_table,
    "json": _write_json,
    "jsonl": _write_jsonl,
    "csv": _write_csv,
}
assert tuple(_WRITERS) == FORMATS


def _footer_to_stderr(lines: Iterable[str]) -> None:
    sys.stdout.flush()
    for text in lines:
        sys.stderr.write(escape_text(text) + "\n")
    sys.stderr.flush()
