"""The ``sd-widgets`` command: inspect a checkpoint, or diff it against a model or a checkpoint.

``sd-widgets inspect CHECKPOINT`` lists every tensor (key, shape, dtype, numel, size) and a
footer describing the file; ``sd-widgets diff CHECKPOINT --model MODULE:CALLABLE`` (or
``--against OTHER``) prints one row per key with its status and exits 0 when the checkpoint
loads cleanly, 1 when it does not and 2 on errors. Run ``sd-widgets -h`` for examples.

Core only: this module never imports ipywidgets or anywidget. Output is streamed row by row
(JSON too), and a reader closing the pipe early (``| head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..checkpoint import Checkpoint, listing_order, open_checkpoint
from ..checkpoint._core import tied_preview
from ..checkpoint._unpickle import global_name
from ..compare._compare import JSON_FIELDS, Comparison, Row, compare
from ..compare._diagnosis import collapse_groups, collapse_keys
from ..compare._renames import Rename, parse_renames
from ..compare._values import VALUE_FIELDS, ValueComparison, ValueRow
from ..errors import CheckpointError, UnsafeCheckpointError
from ..statuses import LOADABLE_STATUSES, PROBLEM_STATUSES, STATUS_INFO, Status
from ..units import human_bytes
from ._model import _import_global, load_model
from ._output import (
    _WRITERS,
    FORMATS,
    PROG,
    CLIError,
    _Column,
    _counts_text,
    _error,
    _Interrupted,
    _note,
    _one_line,
    _Report,
    _shape_text,
    _source_dict,
    escape_text,
)

#: ``diff``: every row is ``match`` (or ``match``/``dtype_mismatch`` with ``--allow-dtype``);
#: ``inspect``: the checkpoint was read.
EXIT_OK = 0
#: ``diff``: at least one row is not clean.
EXIT_DIFFERENT = 1
#: unreadable / unsafe / not-a-state-dict input, bad ``--model`` spec, bad arguments.
EXIT_ERROR = 2
#: Ctrl-C.
EXIT_INTERRUPTED = 130
#: stdout was closed by the reader (``| head``): 128 + SIGPIPE, as Unix tools killed by it.
EXIT_BROKEN_PIPE = 141

#: ``diff`` also writes the Explorer's standalone, offline HTML report
DIFF_FORMATS = (*FORMATS, "html")


# ============================================================================================
# argument parsing
# ============================================================================================

_MAIN_EPILOG = f"""\
examples:
  {PROG} inspect model.safetensors
  {PROG} inspect last.ckpt --key state_dict --format json
  {PROG} diff ckpt.pt --model sd_widgets.demo:SmallCNN
  {PROG} diff ckpt.pt --model 'sd_widgets.demo:make_model("cnn", num_classes=3)' --only-problems
  {PROG} diff ckpt.pt --model my_models.py:build --rename module.= --format csv > diff.csv
  {PROG} diff new.safetensors --against old.safetensors --format json | jq .summary
  {PROG} inspect huge.pt | head

exit codes: 0 clean / read, 1 diff found differences, 2 error (unreadable, unsafe or
not-a-state-dict input, bad --model spec, bad arguments), 130 interrupted (Ctrl-C),
141 stdout closed early. Errors are one line on stderr; --debug adds the traceback.
Text from files (keys, entry names, paths) is printed with control characters escaped
(\\x1b, \\n, \\x00); json/jsonl keep every key exactly (JSON string escapes).
Run '{PROG} diff -h' or '{PROG} inspect -h' for details.
"""

_STATUS_HELP = "\n".join(
    textwrap.fill(
        i.description, width=92, initial_indent=f"  {i.status:<15} ", subsequent_indent=" " * 18
    )
    for i in STATUS_INFO.values()
)

_DIFF_HELP = "compare a checkpoint with a model or another checkpoint"
_DIFF_DESCRIPTION = f"""\
Compare CHECKPOINT with a model (--model) or with another checkpoint (--against), one row
per key: key, status, kind, shapes and dtypes on both sides. Statuses:
{_STATUS_HELP}

Only shapes and dtypes are read: no tensor data is loaded, and the model is built on the
meta device (no memory for its weights) unless construction there fails, in which case it
is built on the CPU."""

_PROBLEMS_BUT_DTYPE = ", ".join(s for s in PROBLEM_STATUSES if s != Status.DTYPE_MISMATCH)
_DIFF_EPILOG = f"""\
--model MODULE:CALLABLE
  MODULE is an importable module (the current directory is searched first) or a path to a
  .py file; CALLABLE is an attribute of it (dotted paths allowed). A class or function is
  called with no arguments, or with literal arguments written in the spec:
    --model sd_widgets.demo:SmallCNN
    --model 'sd_widgets.demo:make_model("mlp", num_classes=3)'
    --model ./nets.py:build          (an nn.Module instance attribute is used as it is)
  The result must be a torch.nn.Module.
--model hf:FOLDER_OR_CONFIG_JSON
  A Hugging Face transformers model built from its config.json alone (a folder holding one,
  or the file), on the meta device: no weights are read. The class is the config's first
  'architectures' entry when transformers has it, else AutoModel. Needs transformers; code
  from the config is never run (no trust_remote_code).
    --model hf:./bert-base-uncased/       --model hf:downloads/config.json

--against OTHER
  OTHER plays the model's part: '{Status.MISSING}' = in OTHER but not in CHECKPOINT, '{Status.UNEXPECTED}' =
  in CHECKPOINT but not in OTHER; kinds are guessed from the names. --key selects the nested
  entry of CHECKPOINT, --against-key the one of OTHER.

--rename OLD=NEW (repeatable, applied in order to checkpoint keys)
  'fc.=classifier.' replaces a prefix (both sides end with '.'), 'module.=' strips a prefix,
  '=model.' adds one, 're:^enc\\.(\\d+)=encoder.layers.\\1' is a regular expression, anything
  else renames exactly one key.

output
  table (default): aligned columns, then a summary and verdict on stdout.
  json: one object {{"rows": [...], "summary": {{status: count}}, "clean": ..., ...}} on
  stdout, streamed row by row (stderr carries only warnings).
  jsonl: one JSON object per row on stdout; summary on stderr.
  csv: header + one line per row on stdout (shapes as JSON lists); summary on stderr.
  A 'tied' column/field lists keys sharing storage with the row's key (e.g. an output
  projection tied to the embedding).
  Control characters in keys are escaped in table and csv (\\x1b, \\n); json/jsonl
  keep the exact key.
  html: one self-contained, offline HTML page on stdout (> report.html): the Explorer's
  side-by-side tree, legend, search, filters and problems strip, read-only, naming the
  files and the sd_widgets version (every row; "only problems" is a filter in the page);
  with --values, every row's change of values too (the tree filters and sorts by it).

exit status
  0  the checkpoint loads cleanly: every row is '{Status.MATCH}' or '{Status.TIED}' (absent
     from the file, the same tensor as a key it holds). A {Status.DTYPE_MISMATCH} is a difference
     (exit 1) although load_state_dict would cast it silently; pass --allow-dtype to count
     it as clean (then exit 0 means: model.load_state_dict(checkpoint) succeeds, strict, tied keys aside).
  1  at least one row is {_PROBLEMS_BUT_DTYPE} (or
     {Status.DTYPE_MISMATCH} without --allow-dtype).
  2  CHECKPOINT/OTHER is missing, unreadable, unsafe, changed while read or holds no
     state dict; bad --model spec (including one whose code calls sys.exit); bad
     arguments. The message says why, on one line; --debug adds the traceback.
  130 interrupted (Ctrl-C, also while the --model code runs).
  141 stdout was closed early (e.g. '| head'); the command stops quietly.

examples:
  {PROG} diff resnet.pt --model torchvision.models:resnet18
  {PROG} diff ddp.pt --model nets:Net --rename module.= --only-problems
  {PROG} diff last.ckpt --model nets:Net --key state_dict --rename model.=
  {PROG} diff b.safetensors --against a.safetensors --format json
  {PROG} diff ddp.pt --model nets:Net --format html > report.html
"""

_INSPECT_HELP = "list the tensors of a checkpoint"
_INSPECT_DESCRIPTION = """\
List every tensor of CHECKPOINT: key, shape, dtype, number of elements and size (human
readable in the table, exact bytes in json/jsonl/csv), then a footer: number of tensors,
parameters and bytes (tied tensors counted once), dtypes, the format and file(s), the nested
entry the weights were taken from (and the others --key can choose), tied groups, entries
that are not tensors, and other entries of the checkpoint (epoch, optimizer, ...).

Supported: torch files (.pt/.pth/.bin/.ckpt, zip or legacy), .safetensors, sharded
checkpoints (*.index.json or their directory) and torch.distributed.checkpoint directories.
Only metadata is read wherever the format allows it."""

_INSPECT_EPILOG = f"""\
output
  table (default): aligned columns, then the footer on stdout.
  json: one object {{"source": {{...}}, "tensors": [...], "summary": {{...}}}}, streamed.
  jsonl: one JSON object per tensor on stdout; footer on stderr.
  csv: header + one line per tensor (shape as a JSON list); footer on stderr.

exit status: 0 read; 2 missing, unreadable, unsafe or not a state dict (one line on stderr;
--debug adds the traceback); 130 interrupted; 141 stdout closed.

examples:
  {PROG} inspect pytorch_model.bin.index.json
  {PROG} inspect checkpoints/step-1000/          (a DCP directory)
  {PROG} inspect train.pt --key ema --format csv > ema.csv
"""


def _add_common(p: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS) -> None:
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="file, *.index.json, or directory (sharded / DCP checkpoint)",
    )
    p.add_argument(
        "--format", "-f", choices=formats, default="table", help="output format (default: table)"
    )
    p.add_argument(
        "--key",
        "-k",
        metavar="KEY",
        default=None,
        help="nested entry holding the weights, e.g. state_dict, ema, model/net "
        "(default: found automatically)",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="allow arbitrary pickled Python objects (runs code from the file!); "
        "only for files from a source you trust. Default: weights-only loading",
    )
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="MODULE.NAME",
        help="allow just this pickled class/function (e.g. argparse.Namespace) and "
        "keep weights-only loading for everything else; repeatable",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="on errors, also print the Python traceback",
    )


def _add_command(
    sub: Any,
    name: str,
    func: Callable[[argparse.Namespace], int],
    summary: str,
    description: str,
    epilog: str,
    formats: tuple[str, ...] = FORMATS,
) -> argparse.ArgumentParser:
    """A subcommand with the options every command shares; ``func`` runs it."""
    p = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p, formats)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sd-widgets``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Explore PyTorch state_dicts: list a checkpoint's tensors, or see what "
        "load_state_dict would do with it before it does it.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        "-V",
        action="version",
        version=f"{PROG} {__version__} (torch {torch.__version__})",
    )
    parser.add_argument(
        "--debug", action="store_true", help="on errors, also print the Python traceback"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_command(sub, "inspect", _cmd_inspect, _INSPECT_HELP, _INSPECT_DESCRIPTION, _INSPECT_EPILOG)
    p_diff = _add_command(
        sub, "diff", _cmd_diff, _DIFF_HELP, _DIFF_DESCRIPTION, _DIFF_EPILOG, DIFF_FORMATS
    )
    side = p_diff.add_mutually_exclusive_group()
    side.add_argument(
        "--model",
        "-m",
        metavar="MODULE:CALLABLE",
        help="the model to load into, or hf:CONFIG for a transformers model (see below)",
    )
    side.add_argument(
        "--against",
        "-a",
        metavar="OTHER",
        help="another checkpoint to compare with (it plays the model's part)",
    )
    p_diff.add_argument(
        "--against-key",
        metavar="KEY",
        default=None,
        help="nested entry of OTHER holding the weights",
    )
    p_diff.add_argument(
        "--rename",
        "-r",
        metavar="OLD=NEW",
        action="append",
        default=[],
        help="rename checkpoint keys before comparing (repeatable)",
    )
    p_diff.add_argument(
        "--only-problems",
        "-p",
        action="store_true",
        help=f"print only rows whose status is not '{Status.MATCH}' (the summary and "
        "exit status still cover every row)",
    )
    p_diff.add_argument(
        "--allow-dtype",
        action="store_true",
        help=f"count {Status.DTYPE_MISMATCH} as clean (load_state_dict casts it)",
    )
    p_diff.add_argument(
        "--collapse",
        "-c",
        action="store_true",
        help="table: rows that differ only in a layer number are printed once, as "
        "encoder.layer.{0..11}.attention.self.query.weight (json/jsonl/csv keep every row)",
    )
    p_diff.add_argument(
        "--values",
        action="store_true",
        help="compare tensor values too (with --against): streamed, in float64; exit 0 only "
        "when every key matches and every tensor is bit-identical (see 'values' below)",
    )
    p_diff.add_argument(
        "--top",
        metavar="N",
        type=_positive_int,
        default=None,
        help="with --values (implied): print only the N most changed tensors, most changed first",
    )
    p_diff.set_defaults(func=_cmd_diff)
    return parser


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return n


# ============================================================================================
# entry point
# ============================================================================================


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sd-widgets`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Every failure is one line on stderr and exit 2 (130 for Ctrl-C, 141 when stdout was
    closed early); ``--debug`` adds the traceback. Text from files is escaped everywhere.
    """
    _escape_unencodable_output()
    debug = False
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # -h, --version, usage errors
            return _code(exc.code)
        debug = bool(args.debug)
        if args.command is None:
            parser.print_usage(sys.stderr)
            _error("choose a command: 'inspect' or 'diff' (see sd-widgets -h)")
            return EXIT_ERROR
        if args.command == "diff" and args.against_key is not None and args.against is None:
            _error("--against-key needs --against")
            return EXIT_ERROR
        try:
            code: int = args.func(args)
        except (BrokenPipeError, KeyboardInterrupt):
            raise
        except Exception as exc:
            return _fail(exc, debug)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as exc:
        if debug:
            _traceback(exc)
        _error(str(exc) if isinstance(exc, _Interrupted) else "interrupted")
        return EXIT_INTERRUPTED


def _fail(exc: Exception, debug: bool) -> int:
    """One line on stderr for ``exc`` (the traceback before it with ``--debug``); exit 2."""
    if debug:
        _traceback(exc)
    if isinstance(exc, UnsafeCheckpointError) and not exc.opt_in:
        message = f"{exc} No --allow or --trust applies to it."
    elif isinstance(exc, UnsafeCheckpointError) and exc.runs_code:
        message = (
            f"{exc} On the command line: no --allow admits code; --trust would load the file "
            "and run it."
        )
    elif isinstance(exc, UnsafeCheckpointError):
        names = " ".join(f"--allow {g}" for g in exc.globals) or "--allow MODULE.NAME"
        message = (
            f"{exc} On the command line: {names} allows just these (weights-only for "
            "the rest); --trust allows anything, but only if you trust where the file "
            "came from (it can run arbitrary code)."
        )
    elif isinstance(exc, (CLIError, CheckpointError)):
        message = str(exc)
    elif isinstance(exc, OSError):  # e.g. permission denied while reading the checkpoint
        message = _one_line(exc)
    else:
        message = (
            f"unexpected {type(exc).__name__}: {_one_line(exc)} (a bug in {PROG}; "
            "rerun with --debug for the traceback and report it)"
        )
    _error(message)
    return EXIT_ERROR


def _traceback(exc: BaseException) -> None:
    """The traceback of ``exc`` on stderr, each line escaped (messages may quote a file)."""
    for text in "".join(traceback.format_exception(exc)).splitlines():
        sys.stderr.write(escape_text(text) + "\n")
    sys.stderr.flush()


def _escape_unencodable_output() -> None:
    """Print what the terminal's encoding cannot show as backslash escapes.

    Never a UnicodeEncodeError (e.g. a non-ASCII key under LANG=C).
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors="backslashreplace")


def _code(code: Any) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    return EXIT_ERROR


def _silence_stdout() -> None:
    """After EPIPE: point fd 1 at /dev/null so the interpreter's final flush cannot fail."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (e.g. captured in tests): nothing will be flushed to a pipe
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def _trust_label(src: Any) -> str:
    """``" [allow-list: argparse.Namespace]"``, ``" [trusted: full unpickling]"`` or ``""``."""
    if src.allowed_globals:
        return f" [allow-list: {', '.join(global_name(g) for g in src.allowed_globals)}]"
    return " [trusted: full unpickling]" if src.trusted else ""


def _open(path: str, key: str | None, trust: bool, allow: Sequence[str] = ()) -> Checkpoint:
    if trust:
        _note(
            f"warning: --trust: {path} may run arbitrary Python code while it is unpickled; "
            "use it only for files from a source you trust"
        )
        return open_checkpoint(path, key=key, trust=True)
    if allow:
        return open_checkpoint(path, key=key, trust=[_import_global(name) for name in allow])
    return open_checkpoint(path, key=key)


# ============================================================================================
# inspect
# ============================================================================================


def _unique_totals(ckpt: Checkpoint) -> tuple[int, int]:
    """(elements, bytes) with tied tensors counted once."""
    seen: set[str] = set()
    numel = nbytes = 0
    for k, info in ckpt.items():
        if k in seen:
            continue
        seen.update(info.tied)
        numel += info.numel
        nbytes += info.nbytes
    return numel, nbytes


def _inspect_summary(ckpt: Checkpoint) -> dict[str, Any]:
    numel, nbytes = _unique_totals(ckpt)
    dtypes: dict[str, int] = {}
    for info in ckpt.values():
        dtypes[info.dtype_name] = dtypes.get(info.dtype_name, 0) + 1
    return {
        "tensors": len(ckpt),
        "parameters": numel,
        "bytes": nbytes,
        "dtypes": dtypes,
        "tied_groups": [list(g) for g in ckpt.tied_groups()],
    }


def _inspect_footer(ckpt: Checkpoint, summary: dict[str, Any]) -> Iterator[str]:
    """Footer lines (raw text: the writers escape them)."""
    src = ckpt.source
    tied_note = " (tied tensors counted once)" if summary["tied_groups"] else ""
    yield (
        f"{summary['tensors']:,} tensors, {summary['parameters']:,} parameters "
        "(elements, buffers included), "
        f"{human_bytes(summary['bytes'])} ({summary['bytes']:,} bytes){tied_note}"
    )
    yield "dtypes: " + ", ".join(f"{d} ({n:,})" for d, n in summary["dtypes"].items())
    files = f" ({len(src.files)} files)" if len(src.files) > 1 else ""
    yield f"format: {src.kind}{files}" + _trust_label(src)
    if src.path:
        yield f"path: {src.path}"
    yield ("weights from entry: " + (repr(src.key) if src.key is not None else "(top level)"))
    others = {k: n for k, n in src.candidates.items() if k != src.key}
    if others:
        yield "other entries holding tensors (choose with --key): " + ", ".join(
            f"{k!r} ({n} tensors)" for k, n in others.items()
        )
    for group in summary["tied_groups"]:
        yield "tied: " + " = ".join(group)
    if not summary["tied_groups"]:
        yield "tied: none"
    if src.non_tensor:
        yield "non-tensor entries in the state dict: " + ", ".join(
            f"{k} ({v})" for k, v in src.non_tensor.items()
        )
    else:
        yield "non-tensor entries in the state dict: none"
    if src.other_entries:
        yield "other entries: " + ", ".join(f"{k} ({v})" for k, v in src.other_entries.items())


def _cmd_inspect(args: argparse.Namespace) -> int:
    ckpt = _open(args.checkpoint, args.key, args.trust, args.allow)
    summary = _inspect_summary(ckpt)
    columns = [
        _Column("key", lambda k: k, lambda k: k),
        _Column(
            "shape", lambda k: _shape_text(ckpt[k].shape), lambda k: json.dumps(list(ckpt[k].shape))
        ),
        _Column("dtype", lambda k: ckpt[k].dtype_name, lambda k: ckpt[k].dtype_name),
        _Column("numel", lambda k: f"{ckpt[k].numel:,}", lambda k: ckpt[k].numel, right=True),
        _Column("size", lambda k: human_bytes(ckpt[k].nbytes), None, right=True),
        _Column("nbytes", lambda k: str(ckpt[k].nbytes), lambda k: ckpt[k].nbytes),
        _Column(
            "tied",
            lambda k: ", ".join(tied_preview(ckpt[k].tied)),
            lambda k: " ".join(tied_preview(ckpt[k].tied)),
        ),
    ]
    if args.format == "table":
        # human-readable size only; "tied to" only when something is tied
        columns = [c for c in columns if c.header != "nbytes"]
        if summary["tied_groups"]:
            columns[-1] = _Column("tied to", columns[-1].text)
        else:
            columns.pop()

    def record(k: str) -> dict[str, Any]:
        info = ckpt[k]
        return {
            "key": k,
            "shape": list(info.shape),
            "dtype": info.dtype_name,
            "numel": info.numel,
            "nbytes": info.nbytes,
            "tied": tied_preview(info.tied),
        }

    report = _Report(
        items_name="tensors",
        items=lambda: iter(listing_order(ckpt)),
        record=record,
        columns=columns,
        head={"command": "inspect", "source": _source_dict(ckpt.source)},
        tail={"summary": summary},
        footer=lambda: _inspect_footer(ckpt, summary),
    )
    _WRITERS[args.format](sys.stdout, report)
    return EXIT_OK


# ============================================================================================
# diff
# ============================================================================================


def _parse_rename_args(items: Sequence[str]) -> tuple[Rename, ...]:
    pairs: list[tuple[str, str]] = []
    for item in items:
        if "=" not in item:
            raise CLIError(
                f"--rename {item!r}: expected OLD=NEW, e.g. 'module.=' to strip a prefix or "
                "'fc.=classifier.' to rename a module"
            )
        old, new = item.split("=", 1)
        if old == "" and new == "":
            raise CLIError(f"--rename {item!r}: OLD and NEW are both empty")
        pairs.append((old, new))
    try:
        return parse_renames(pairs)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"--rename: {exc}") from None


def _rename_arg(rule: Rename) -> str:
    """The ``OLD=NEW`` text that ``--rename`` reads back into ``rule``."""
    old, new = rule.to_spec()
    return f"{old}={new}"


def _clean_statuses(allow_dtype: bool) -> frozenset[str]:
    """Statuses a clean diff may contain.

    Those that are no problem (``match``, and ``tied``: the key loads through the one it is
    tied to), plus every loadable status (a dtype mismatch, which load_state_dict casts) with
    ``--allow-dtype``.
    """
    fine = {s for s in STATUS_INFO if s not in PROBLEM_STATUSES}
    return frozenset(fine.union(LOADABLE_STATUSES) if allow_dtype else fine)


def _shape_json(shape: Sequence[int] | None) -> str:
    """A shape as a CSV cell: a JSON list, empty when that side is absent."""
    return "" if shape is None else json.dumps(list(shape))


def _tie_text(r: Row) -> str:
    """How a row's tensor is tied, as the tables print it.

    ``follows KEY`` for a row that takes its value from the key it is tied to (when the
    comparison says so), else the keys sharing its storage.
    """
    tied_to = getattr(r, "tied_to", None)
    if tied_to:
        return f"follows {tied_to}"
    return ", ".join(getattr(r, "tied", ()) or ())


#: the fields of a row in ``diff --format json``: :meth:`Row.to_json` less what only matters to
#: a load (the CLI loads nothing and applies no adapters), in the one field order
_DIFF_FIELDS = tuple(
    f for f in JSON_FIELDS if f not in ("loadable", "adaptable", "model_on_meta", "config_mismatch")
)


def _diff_row_dict(r: Row) -> dict[str, Any]:
    """A row as ``diff --format json`` writes it: :meth:`Row.to_json`, fewer fields."""
    full = r.to_json()
    d = {f: full[f] for f in _DIFF_FIELDS}
    if d["reason"] and r.status == Status.SHAPE_MISMATCH:
        # the CLI applies no adapters: keep "shape mismatch: checkpoint (a) vs model (b)" only
        d["reason"] = d["reason"].split(";")[0]
    return d


def _diff_footer(
    cmp: Comparison,
    counts: dict[str, int],
    clean: bool,
    model_label: str,
    suggestions: list[tuple[str, int, str]],
) -> Iterator[str]:
    """Footer lines (raw text: the writers escape them)."""
    total = len(cmp.rows)
    dtype = Status.DTYPE_MISMATCH.value
    yield f"{total:,} keys: {_counts_text(counts)}"
    yield f"checkpoint: {cmp.checkpoint.source.describe()}"
    # --against: the other side is a checkpoint, not a model
    yield f"{'model' if cmp.model is not None else 'against'}: {model_label}"
    if cmp.renames:
        yield "renames: " + "; ".join(r.describe() for r in cmp.renames)
    tied = [r for r in cmp.rows if getattr(r, "tied_to", None)]
    if tied:
        yield (
            f"tied: {len(tied):,} key(s) share storage with a key they follow, e.g. "
            f"{tied[0].key} follows {tied[0].tied_to}"
        )
    if clean:
        if counts[dtype]:
            yield (
                f"OK: loads cleanly ({counts[dtype]:,} {dtype} will be cast by "
                "load_state_dict; --allow-dtype)"
            )
        elif counts.get(Status.TIED.value):
            yield (
                f"OK: loads cleanly, {counts[Status.MATCH.value]:,} keys match and "
                f"{counts[Status.TIED.value]:,} are tied to one of them (a strict plain "
                "load_state_dict lists those as missing)"
            )
        else:
            yield f"OK: loads cleanly, all {total:,} keys match"
        return
    problems = {s: n for s, n in counts.items() if n and s in PROBLEM_STATUSES}
    if set(problems) == {dtype}:
        yield (
            f"DIFFERENT: {problems[dtype]:,} {dtype} (load_state_dict would cast them "
            "silently; pass --allow-dtype to accept that)"
        )
    else:
        yield f"DIFFERENT: {_counts_text(problems)} (a strict load_state_dict would fail)"
    if cmp.lora is not None:  # a PEFT adapter: its "missing" base weights are by design
        yield f"lora: {cmp.lora.describe()}"
    yield from _problem_patterns(cmp, problems)
    if problems.get(Status.SHAPE_MISMATCH.value):
        mismatch = cmp.config_mismatch()
        if mismatch is not None:
            yield f"config: {mismatch.sentence}"
    for spec, _fixes, reason in suggestions:
        yield f"hint: --rename {shlex.quote(spec)}  ({reason})"


#: how many collapsed key patterns a footer line names per status
_PATTERNS_SHOWN = 6


def _problem_patterns(cmp: Comparison, problems: dict[str, int]) -> Iterator[str]:
    """Per problem status, its keys with repeated layers collapsed (``layer.{0..11}.w``).

    Only when something collapses: otherwise the table's rows already say it.
    """
    for status, n in problems.items():
        patterns = collapse_keys(cmp.keys(status))
        if len(patterns) >= n:
            continue
        more = len(patterns) - _PATTERNS_SHOWN
        shown = ", ".join(patterns[:_PATTERNS_SHOWN]) + (f", and {more:,} more" if more > 0 else "")
        yield f"{status} ({n:,} keys as {len(patterns):,} pattern(s)): {shown}"


def _suggest(cmp: Comparison, limit: int = 3) -> list[tuple[str, int, str]]:
    absent = [s for s, i in STATUS_INFO.items() if i.on_model_side and not i.on_checkpoint_side]
    if not (cmp.keys(Status.UNEXPECTED.value) and cmp.keys(absent)):
        return []
    try:
        rules = cmp.prefix_suggestions()[:limit]
    except Exception:  # suggestions are a courtesy; never fail the diff over them
        return []
    return [(_rename_arg(s.rule), s.fixes, s.reason) for s in rules]


def _compare(
    target: nn.Module | Checkpoint, ckpt: Checkpoint, renames: tuple[Rename, ...]
) -> Comparison:
    """``compare``, with ``--rename`` usage errors reported as such.

    Two keys renamed to one name is a usage error of ``--rename``; a CheckpointError keeps its
    own meaning.
    """
    try:
        return compare(target, ckpt, renames=renames)
    except CheckpointError:
        raise
    except ValueError as exc:
        if not renames:
            raise
        raise CLIError(f"--rename: {exc}") from None


def _write_html(cmp: Comparison | ValueComparison, model_label: str) -> None:
    """``diff --format html``: the Explorer's standalone, offline report of ``cmp`` on stdout.

    With ``--values`` (a :class:`ValueComparison`), the report shows every row's change.

    The one place the command line reaches the widget layer (lazily): the report is the
    Explorer's own front end over the Explorer's payload, never a second renderer.
    """
    from ..widget import Explorer
    from ..widget._html import write_report

    write_report(Explorer(cmp, select="none"), sys.stdout, model_label=model_label)


def _cmd_diff(args: argparse.Namespace) -> int:
    if args.model is None and args.against is None:
        raise CLIError(
            "diff needs something to compare with: --model MODULE:CALLABLE (e.g. "
            "sd_widgets.demo:SmallCNN) or --against OTHER_CHECKPOINT. To just list the "
            f"checkpoint's tensors, run '{PROG} inspect {shlex.quote(args.checkpoint)}'."
        )
    renames = _parse_rename_args(args.rename)
    values = bool(args.values or args.top is not None)
    if values and args.against is None:
        raise CLIError(
            "--values compares two checkpoints: pass --against OTHER. (A model built from "
            "--model holds no trained values; in Python, sdw.compare_values(model, "
            "checkpoint) compares a live model with a checkpoint.)"
        )
    if args.top is not None and args.format == "html":
        raise CLIError(
            "--top N lists the most changed rows; the html report holds every row (its toolbar "
            "sorts the tree by change): drop --top, or use --format table, json, jsonl or csv"
        )
    ckpt = _open(args.checkpoint, args.key, args.trust, args.allow)
    model_info: dict[str, Any]
    if args.model is not None:
        model, device = load_model(args.model)
        model_label = f"{args.model} -> {type(model).__name__}" + (
            " (built on the meta device)" if device == "meta" else f" (on {device})"
        )
        model_info = {"spec": args.model, "class": type(model).__name__, "device": device}
        target: nn.Module | Checkpoint = model
    else:
        other = _open(args.against, args.against_key, args.trust, args.allow)
        model_label = other.source.describe()
        model_info = {"against": _source_dict(other.source)}
        target = other
    cmp = _compare(target, ckpt, renames)
    if values:
        assert isinstance(target, Checkpoint)
        vc = ValueComparison(cmp, target, ckpt)
        if args.format == "html":
            _write_html(vc, model_label)
            return EXIT_OK if vc.identical else EXIT_DIFFERENT
        return _diff_values(args, vc, ckpt, model_label, model_info)

    counts = cmp.summary()
    clean_statuses = _clean_statuses(args.allow_dtype)
    clean = all(r.status in clean_statuses for r in cmp.rows)
    code = EXIT_OK if clean else EXIT_DIFFERENT
    if args.format == "html":
        _write_html(cmp, model_label)
        return code
    suggestions = [] if clean else _suggest(cmp)
    problem = set(PROBLEM_STATUSES)

    def shown() -> Iterator[Row]:
        if args.only_problems:
            return (r for r in cmp.rows if r.status in problem)
        return iter(cmp.rows)

    def ckpt_key_text(r: Row) -> str:
        return r.ckpt_key if r.ckpt_key is not None and r.ckpt_key != r.key else ""

    # table text and CSV value per field; the columns stand in the one field order
    cells: dict[str, tuple[Callable[[Row], str], Callable[[Row], Any]]] = {
        "key": (lambda r: r.key, lambda r: r.key),
        "status": (lambda r: r.status, lambda r: r.status),
        "kind": (lambda r: r.kind or "-", lambda r: r.kind or ""),
        "ckpt_key": (ckpt_key_text, lambda r: r.ckpt_key or ""),
        "model_key": (lambda r: "", lambda r: r.model_key or ""),
        "ckpt_shape": (lambda r: _shape_text(r.ckpt_shape), lambda r: _shape_json(r.ckpt_shape)),
        "model_shape": (
            lambda r: _shape_text(r.model_shape),
            lambda r: _shape_json(r.model_shape),
        ),
        "ckpt_dtype": (lambda r: r.ckpt_dtype or "-", lambda r: r.ckpt_dtype or ""),
        "model_dtype": (lambda r: r.model_dtype or "-", lambda r: r.model_dtype or ""),
        "nbytes": (lambda r: str(r.nbytes), lambda r: r.nbytes),
        "tied": (_tie_text, _tie_text),
    }
    columns = [_Column(f, *cells[f]) for f in _DIFF_FIELDS if f in cells]
    if args.format == "table":
        # the table shows what reads at a glance: ckpt_key only when renames changed a key,
        # tied only when something is tied
        renamed = any(ckpt_key_text(r) for r in cmp.rows)
        any_tied = any(_tie_text(r) for r in cmp.rows)
        keep = (
            ["key", "status", "kind", "ckpt_shape", "model_shape", "ckpt_dtype", "model_dtype"]
            + (["ckpt_key"] if renamed else [])
            + (["tied"] if any_tied else [])
        )
        by_name = {c.header: c for c in columns}
        columns = [by_name[h] for h in keep]

    rows: Callable[[], Iterator[Row]] = shown
    if args.collapse and args.format == "table":
        # one line per repeated layer: the same cells in every layer, the key collapsed
        others = [c for c in columns if c.header != "key"]

        def rows() -> Iterator[Row]:
            groups = collapse_groups(
                shown(), lambda r: r.key, lambda r: tuple(c.text(r) for c in others)
            )
            for pattern, members in groups:
                yield members[0] if len(members) == 1 else replace(members[0], key=pattern)

    report = _Report(
        items_name="rows",
        items=rows,
        record=_diff_row_dict,
        columns=columns,
        head={
            "command": "diff",
            "checkpoint": _source_dict(ckpt.source),
            "model": model_info,
            "renames": [_rename_arg(r) for r in cmp.renames],
            "only_problems": bool(args.only_problems),
        },
        tail={
            "summary": counts,
            "total": len(cmp.rows),
            "clean": clean,
            "allow_dtype": bool(args.allow_dtype),
            "exit_code": code,
            "suggested_renames": [
                {"rename": s, "fixes": n, "reason": why} for s, n, why in suggestions
            ],
        },
        footer=lambda: _diff_footer(cmp, counts, clean, model_label, suggestions),
        empty_table="(no problems: every key matches)" if args.only_problems else None,
    )
    _WRITERS[args.format](sys.stdout, report)
    return code


# ============================================================================================
# diff --values
# ============================================================================================


def _number_text(x: float) -> str:
    """A float for the table: 4 significant digits, ``inf``, ``-`` for NaN (not measured)."""
    if x != x:
        return "-"
    return "inf" if x == float("inf") else f"{x:.4g}"


def _values_footer(
    vc: ValueComparison, summary: dict[str, int], a_label: str, b_label: str
) -> Iterator[str]:
    details = ", ".join(
        f"{n:,} {name}"
        for name, n in summary.items()
        if n and name not in ("identical", "changed", "not_compared")
    )
    yield (
        f"{len(vc):,} keys: {summary['identical']:,} identical, {summary['changed']:,} changed"
        + (f" ({details})" if details else "")
        + (f", {summary['not_compared']:,} not compared" if summary["not_compared"] else "")
    )
    yield f"a (--against): {a_label}"
    yield f"b (CHECKPOINT): {b_label}"
    for text in vc.frozen_bn_changes().values():
        yield f"note: {text}"
    if vc.identical:
        yield "IDENTICAL: the same keys, every tensor bit-identical"
    else:
        problems = [
            f"{n:,} {s}" for s, n in vc.comparison.summary().items() if n and s != Status.MATCH
        ]
        yield "DIFFERENT: " + "; ".join(
            (
                [f"{summary['changed']:,} tensor{'' if summary['changed'] == 1 else 's'} changed"]
                if summary["changed"]
                else []
            )
            + (["key sets differ: " + ", ".join(problems)] if problems else [])
        )


def _diff_values(
    args: argparse.Namespace,
    vc: ValueComparison,
    ckpt: Checkpoint,
    model_label: str,
    model_info: dict[str, Any],
) -> int:
    """``diff --values [--top N]``: one row per key with its value comparison."""
    code = EXIT_OK if vc.identical else EXIT_DIFFERENT
    summary = vc.summary()

    def shown() -> Iterator[ValueRow]:
        if args.top is not None:
            return iter(vc.most_changed(args.top))
        if args.only_problems:
            return (r for r in vc if not (r.equal and r.status == Status.MATCH))
        return iter(vc)

    texts: dict[str, Callable[[ValueRow], str]] = {
        "max_abs_diff": lambda r: _number_text(r.max_abs_diff),
        "rel_l2_change": lambda r: _number_text(r.rel_l2_change),
        "cosine": lambda r: _number_text(r.cosine),
        "equal": lambda r: "yes" if r.equal else "no",
    }

    def csv_value(name: str) -> Callable[[ValueRow], Any]:
        def value(r: ValueRow) -> Any:
            v = getattr(r, name)
            if isinstance(v, float):
                return "" if v != v else repr(v)  # inf stays "inf"
            return "" if v is None else v

        return value

    def text(name: str) -> Callable[[ValueRow], str]:
        return texts.get(name, lambda r: "-" if getattr(r, name) is None else str(getattr(r, name)))

    columns = [_Column(f, text(f), csv_value(f), right=f in texts) for f in VALUE_FIELDS]
    if args.format == "table":
        keep = ["key", "status", "change", "max_abs_diff", "rel_l2_change", "cosine"]
        by_name = {c.header: c for c in columns}
        columns = [by_name[h] for h in keep]
    report = _Report(
        items_name="rows",
        items=shown,
        record=lambda r: r.to_json(),
        columns=columns,
        head={
            "command": "diff",
            "values": True,
            "checkpoint": _source_dict(ckpt.source),
            "model": model_info,
            "renames": [_rename_arg(r) for r in vc.comparison.renames],
            "top": args.top,
            "only_problems": bool(args.only_problems),
        },
        tail={
            "summary": summary,
            "statuses": vc.comparison.summary(),
            "total": len(vc),
            "identical": vc.identical,
            "frozen_bn_changes": vc.frozen_bn_changes(),
            "exit_code": code,
        },
        footer=lambda: _values_footer(vc, summary, model_label, ckpt.source.describe()),
        empty_table="(every tensor is identical)" if args.only_problems else None,
    )
    _WRITERS[args.format](sys.stdout, report)
    return code
