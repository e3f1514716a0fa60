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
import ast
import contextlib
import csv
import difflib
import importlib
import importlib.util
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from . import __version__
from .checkpoint import Checkpoint, CheckpointSource, _human_bytes, open_checkpoint
from .compare import Comparison, Row, compare
from .errors import CheckpointError, UnsafeCheckpointError
from .renames import Rename, parse_renames

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_DIFFERENT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "CLIError",
    "build_parser",
    "load_model",
    "main",
]

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

FORMATS = ("table", "json", "jsonl", "csv")
PROG = "sd-widgets"


class CLIError(Exception):
    """A usage problem (bad ``--model`` spec, bad ``--rename``): message to stderr, exit 2."""


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
not-a-state-dict input, bad --model spec, bad arguments), 141 stdout closed early.
Run '{PROG} diff -h' or '{PROG} inspect -h' for details.
"""

_DIFF_DESCRIPTION = """\
Compare CHECKPOINT with a model (--model) or with another checkpoint (--against), one row
per key: key, status, kind, shapes and dtypes on both sides. Statuses: match, shape_mismatch,
dtype_mismatch, missing (model parameter absent from the checkpoint), missing_buffer (model
buffer absent), unexpected (checkpoint key the model does not have).

Only shapes and dtypes are read: no tensor data is loaded, and the model is built on the
meta device (no memory for its weights) unless construction there fails, in which case it
is built on the CPU."""

_DIFF_EPILOG = f"""\
--model MODULE:CALLABLE
  MODULE is an importable module (the current directory is searched first) or a path to a
  .py file; CALLABLE is an attribute of it (dotted paths allowed). A class or function is
  called with no arguments, or with literal arguments written in the spec:
    --model sd_widgets.demo:SmallCNN
    --model 'sd_widgets.demo:make_model("mlp", num_classes=3)'
    --model ./nets.py:build          (an nn.Module instance attribute is used as it is)
  The result must be a torch.nn.Module.

--against OTHER
  OTHER plays the model's part: 'missing' = in OTHER but not in CHECKPOINT, 'unexpected' =
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

exit status
  0  the checkpoint loads cleanly: every row is 'match'. A dtype_mismatch is a difference
     (exit 1) although load_state_dict would cast it silently; pass --allow-dtype to count
     it as clean (then exit 0 means: model.load_state_dict(checkpoint) succeeds, strict).
  1  at least one row is shape_mismatch, missing, missing_buffer, unexpected (or
     dtype_mismatch without --allow-dtype).
  2  CHECKPOINT/OTHER is missing, unreadable, unsafe or holds no state dict; bad --model
     spec; bad arguments. The message says why; no traceback.
  141 stdout was closed early (e.g. '| head'); the command stops quietly.

examples:
  {PROG} diff resnet.pt --model torchvision.models:resnet18
  {PROG} diff ddp.pt --model nets:Net --rename module.= --only-problems
  {PROG} diff last.ckpt --model nets:Net --key state_dict --rename model.=
  {PROG} diff b.safetensors --against a.safetensors --format json
"""

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

exit status: 0 read; 2 missing, unreadable, unsafe or not a state dict; 141 stdout closed.

examples:
  {PROG} inspect pytorch_model.bin.index.json
  {PROG} inspect checkpoints/step-1000/          (a DCP directory)
  {PROG} inspect train.pt --key ema --format csv > ema.csv
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="file, *.index.json, or directory (sharded / DCP checkpoint)")
    p.add_argument("--format", "-f", choices=FORMATS, default="table",
                   help="output format (default: table)")
    p.add_argument("--key", "-k", metavar="KEY", default=None,
                   help="nested entry holding the weights, e.g. state_dict, ema, model/net "
                        "(default: found automatically)")
    p.add_argument("--trust", action="store_true",
                   help="allow arbitrary pickled Python objects (runs code from the file!); "
                        "only for files from a source you trust. Default: weights-only loading")
    p.add_argument("--allow", action="append", default=[], metavar="MODULE.NAME",
                   help="allow just this pickled class/function (e.g. argparse.Namespace) and "
                        "keep weights-only loading for everything else; repeatable")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sd-widgets``."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Explore PyTorch state_dicts: list a checkpoint's tensors, or see what "
                    "load_state_dict would do with it before it does it.",
        epilog=_MAIN_EPILOG,
        formatter_class=fmt,
    )
    parser.add_argument("--version", "-V", action="version",
                        version=f"{PROG} {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_inspect = sub.add_parser(
        "inspect", help="list the tensors of a checkpoint",
        description=_INSPECT_DESCRIPTION, epilog=_INSPECT_EPILOG, formatter_class=fmt,
    )
    _add_common(p_inspect)
    p_inspect.set_defaults(func=_cmd_inspect)

    p_diff = sub.add_parser(
        "diff", help="compare a checkpoint with a model or another checkpoint",
        description=_DIFF_DESCRIPTION, epilog=_DIFF_EPILOG, formatter_class=fmt,
    )
    _add_common(p_diff)
    side = p_diff.add_mutually_exclusive_group()
    side.add_argument("--model", "-m", metavar="MODULE:CALLABLE",
                      help="the model to load into (see below)")
    side.add_argument("--against", "-a", metavar="OTHER",
                      help="another checkpoint to compare with (it plays the model's part)")
    p_diff.add_argument("--against-key", metavar="KEY", default=None,
                        help="nested entry of OTHER holding the weights")
    p_diff.add_argument("--rename", "-r", metavar="OLD=NEW", action="append", default=[],
                        help="rename checkpoint keys before comparing (repeatable)")
    p_diff.add_argument("--only-problems", "-p", action="store_true",
                        help="print only rows whose status is not 'match' (the summary and "
                             "exit status still cover every row)")
    p_diff.add_argument("--allow-dtype", action="store_true",
                        help="count dtype_mismatch as clean (load_state_dict casts it)")
    p_diff.set_defaults(func=_cmd_diff)
    return parser


# ============================================================================================
# entry point
# ============================================================================================


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sd-widgets`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # -h, --version, usage errors
            return _code(exc.code)
        if args.command is None:
            parser.print_usage(sys.stderr)
            _error("choose a command: 'inspect' or 'diff' (see sd-widgets -h)")
            return EXIT_ERROR
        if args.command == "diff" and args.against_key is not None and args.against is None:
            _error("--against-key needs --against")
            return EXIT_ERROR
        try:
            code: int = args.func(args)
        except CLIError as exc:
            _error(str(exc))
            return EXIT_ERROR
        except UnsafeCheckpointError as exc:
            names = " ".join(f"--allow {g}" for g in exc.globals) or "--allow MODULE.NAME"
            _error(f"{exc}\nOn the command line: {names} allows just these (weights-only for the "
                   "rest); --trust allows anything, but only if you trust where the file came "
                   "from (it can run arbitrary code).")
            return EXIT_ERROR
        except CheckpointError as exc:
            _error(str(exc))
            return EXIT_ERROR
        except BrokenPipeError:
            raise
        except OSError as exc:  # e.g. permission denied while reading the checkpoint
            _error(_one_line(exc))
            return EXIT_ERROR
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


def _code(code: Any) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}"
    return text or type(exc).__name__


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()


def _note(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


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


def _open(path: str, key: str | None, trust: bool, allow: Sequence[str] = ()) -> Checkpoint:
    if trust:
        _note(f"warning: --trust: {path} may run arbitrary Python code while it is unpickled; "
              "use it only for files from a source you trust")
        return open_checkpoint(path, key=key, trust=True)
    if allow:
        return open_checkpoint(path, key=key, trust=[_import_global(name) for name in allow])
    return open_checkpoint(path, key=key)


def _import_global(name: str) -> Any:
    """``argparse.Namespace`` -> the class (what weights-only loading may then rebuild)."""
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        raise CLIError(f"--allow {name!r}: give MODULE.NAME, e.g. --allow argparse.Namespace")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError:
        # a nested name such as "pkg.module.Class.Inner": import the longest module prefix
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            rest = parts[cut:]
            break
        else:
            raise CLIError(f"--allow {name!r}: module {module_name!r} cannot be imported") from None
    else:
        rest = [attr]
    for part in rest:
        if not hasattr(obj, part):
            raise CLIError(f"--allow {name!r}: {getattr(obj, '__name__', obj)!r} has no {part!r}")
        obj = getattr(obj, part)
    return obj


# ============================================================================================
# --model MODULE:CALLABLE
# ============================================================================================


@dataclass
class _Spec:
    module: str
    attrs: list[str]
    call: bool
    args: list[Any]
    kwargs: dict[str, Any]


def _parse_model_spec(spec: str) -> _Spec:
    example = "e.g. sd_widgets.demo:SmallCNN or 'my_models.py:build(num_classes=3)'"
    start = 2 if re.match(r"^[A-Za-z]:[\\/]", spec) else 0  # a Windows drive letter
    colon = spec.find(":", start)
    if colon < 0:
        raise CLIError(f"--model {spec!r}: expected MODULE:CALLABLE, {example}")
    module, expr = spec[:colon].strip(), spec[colon + 1:].strip()
    if not module or not expr:
        raise CLIError(f"--model {spec!r}: both MODULE and CALLABLE are needed, {example}")
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise CLIError(f"--model {spec!r}: {expr!r} is not a name or a call, {example}") from None
    call = isinstance(node, ast.Call)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if isinstance(node, ast.Call):
        try:
            for a in node.args:
                if isinstance(a, ast.Starred):
                    raise ValueError("*args")
                args.append(ast.literal_eval(a))
            for kw in node.keywords:
                if kw.arg is None:
                    raise ValueError("**kwargs")
                kwargs[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise CLIError(
                f"--model {spec!r}: only literal arguments (numbers, strings, lists, dicts, "
                "True/False/None) can be written in the spec"
            ) from None
        node = node.func
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise CLIError(f"--model {spec!r}: {expr!r} is not a (dotted) name or a call, {example}")
    attrs.append(node.id)
    attrs.reverse()
    return _Spec(module, attrs, call, args, kwargs)


def _module_dir(module: str) -> tuple[bool, str]:
    """(is a file path, directory to put first on ``sys.path`` while importing/building)."""
    if module.endswith(".py") or os.sep in module or "/" in module:
        return True, str(Path(module).resolve().parent)
    return False, os.getcwd()


@contextlib.contextmanager
def _first_on_sys_path(directory: str) -> Iterator[None]:
    """Like ``python -m``: modules in ``directory`` can be imported (also lazily, while the
    model is built); ``sys.path`` is restored afterwards."""
    inserted = directory not in sys.path
    if inserted:
        sys.path.insert(0, directory)
    try:
        yield
    finally:
        if inserted:
            with contextlib.suppress(ValueError):
                sys.path.remove(directory)


def _import(module: str, is_file: bool) -> Any:
    try:
        if not is_file:
            return importlib.import_module(module)
        path = Path(module)
        if not path.is_file():
            raise CLIError(f"--model: no Python file at {module!r}")
        name = "_sd_widgets_model_" + re.sub(r"\W", "_", path.stem)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CLIError(f"--model: cannot import {module!r} as a Python file")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return mod
    except CLIError:
        raise
    except ImportError as exc:
        raise CLIError(
            f"--model: cannot import module {module!r} ({type(exc).__name__}: {exc}). Check the "
            "spelling, install the package, or run from the directory that holds it."
        ) from None
    except Exception as exc:
        raise CLIError(
            f"--model: importing {module!r} failed ({type(exc).__name__}: {_one_line(exc)})"
        ) from None


def _resolve(mod: Any, spec: _Spec) -> Any:
    obj = mod
    for i, attr in enumerate(spec.attrs):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            where = ".".join([spec.module, *spec.attrs[:i]]) if i else spec.module
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(attr, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise CLIError(f"--model: {where!r} has no attribute {attr!r}{hint}") from None
    return obj


def load_model(spec: str, *, meta: bool = True) -> tuple[nn.Module, str]:
    """Build the model named by ``spec`` (``MODULE:CALLABLE``); return it and where it lives.

    The callable runs under ``torch.device("meta")`` first (no memory for the weights) and,
    if that raises, again on the CPU. Raises :class:`CLIError` with a clear message for any
    bad spec: module not importable, attribute missing, call failing, result not a Module.
    """
    parsed = _parse_model_spec(spec)
    is_file, directory = _module_dir(parsed.module)
    with _first_on_sys_path(directory):
        mod = _import(parsed.module, is_file)
        target = _resolve(mod, parsed)
        return _build(target, parsed, meta)


def _build(target: Any, parsed: _Spec, meta: bool) -> tuple[nn.Module, str]:
    label = f"{parsed.module}:{'.'.join(parsed.attrs)}"
    if isinstance(target, nn.Module) and not parsed.call:
        return target, _device_of(target)
    if not callable(target):
        raise CLIError(
            f"--model: {label} is a {type(target).__name__}, not a callable or an nn.Module"
        )
    result: Any = None
    meta_error: BaseException | None = None
    if meta:
        try:
            with torch.device("meta"):
                result = target(*parsed.args, **parsed.kwargs)
        except Exception as exc:
            meta_error = exc
    if not meta or meta_error is not None:
        try:
            result = target(*parsed.args, **parsed.kwargs)
        except Exception as exc:
            hint = ""
            if isinstance(exc, TypeError) and not parsed.call:
                hint = (". Literal arguments can be written in the spec: "
                        f"'{label}(arg, name=value)'")
            raise CLIError(
                f"--model: calling {label} failed ({type(exc).__name__}: {_one_line(exc)}){hint}"
            ) from None
        if meta_error is not None:
            _note(f"note: {label} could not be built on the meta device "
                  f"({type(meta_error).__name__}: {_one_line(meta_error)[:200]}); "
                  "built it on the CPU instead")
    if not isinstance(result, nn.Module):
        raise CLIError(
            f"--model: {label} returned a {type(result).__name__}, not a torch.nn.Module"
        )
    return result, _device_of(result)


def _device_of(model: nn.Module) -> str:
    for t in (*model.parameters(), *model.buffers()):
        return t.device.type
    return "cpu"


# ============================================================================================
# output helpers
# ============================================================================================


def _shape_text(shape: Sequence[int] | None) -> str:
    return "-" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def _shape_json(shape: Sequence[int] | None) -> list[int] | None:
    return None if shape is None else list(shape)


def _printable(key: str) -> str:
    """Keys with control characters (newlines, terminal escapes) are shown escaped."""
    return key if key.isprintable() else key.encode("unicode_escape").decode("ascii")


def _write_table(
    out: TextIO,
    header: Sequence[str],
    cells: Callable[[], Iterator[Sequence[str]]],
    right: Iterable[int] = (),
) -> None:
    """Aligned columns; ``cells()`` is iterated twice (widths, then lines) so nothing big is
    ever held in memory as one string."""
    widths = [len(h) for h in header]
    for row in cells():
        for i, c in enumerate(row):
            if len(c) > widths[i]:
                widths[i] = len(c)
    right_set = set(right)
    last = len(header) - 1

    def line(row: Sequence[str]) -> str:
        parts = []
        for i, c in enumerate(row):
            if i in right_set:
                parts.append(c.rjust(widths[i]))
            elif i == last:
                parts.append(c)
            else:
                parts.append(c.ljust(widths[i]))
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(header))
    out.write(line(["-" * w for w in widths]))
    for row in cells():
        out.write(line(row))


class _JsonArrayWriter:
    """Writes ``"name": [`` then one element per line, then ``]``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.first = True

    def item(self, obj: Any) -> None:
        self.out.write(("\n    " if self.first else ",\n    ") + json.dumps(obj))
        self.first = False

    def close(self) -> None:
        self.out.write("\n  ]" if not self.first else "]")


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


def _counts_text(counts: dict[str, int]) -> str:
    shown = [f"{n:,} {s}" for s, n in counts.items() if n]
    return ", ".join(shown) if shown else "nothing"


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
    src = ckpt.source
    tied_note = " (tied tensors counted once)" if summary["tied_groups"] else ""
    yield (f"{summary['tensors']:,} tensors, {summary['parameters']:,} parameters "
           "(elements, buffers included), "
           f"{_human_bytes(summary['bytes'])} ({summary['bytes']:,} bytes){tied_note}")
    yield "dtypes: " + ", ".join(f"{d} ({n:,})" for d, n in summary["dtypes"].items())
    files = f" ({len(src.files)} files)" if len(src.files) > 1 else ""
    yield f"format: {src.kind}{files}" + (" [trusted: full unpickling]" if src.trusted else "")
    if src.path:
        yield f"path: {src.path}"
    yield ("weights from entry: " + (repr(src.key) if src.key is not None else "(top level)"))
    others = {k: n for k, n in src.candidates.items() if k != src.key}
    if others:
        yield "other entries holding tensors (choose with --key): " + ", ".join(
            f"{k!r} ({n} tensors)" for k, n in others.items())
    for group in summary["tied_groups"]:
        yield "tied: " + " = ".join(_printable(k) for k in group)
    if not summary["tied_groups"]:
        yield "tied: none"
    if src.non_tensor:
        yield "non-tensor entries in the state dict: " + ", ".join(
            f"{_printable(k)} ({v})" for k, v in src.non_tensor.items())
    else:
        yield "non-tensor entries in the state dict: none"
    if src.other_entries:
        yield "other entries: " + ", ".join(
            f"{_printable(k)} ({v})" for k, v in src.other_entries.items())


def _cmd_inspect(args: argparse.Namespace) -> int:
    ckpt = _open(args.checkpoint, args.key, args.trust, args.allow)
    out = sys.stdout
    fmt = args.format
    summary = _inspect_summary(ckpt)

    def tensor_dict(k: str) -> dict[str, Any]:
        info = ckpt[k]
        return {"key": k, "shape": list(info.shape), "dtype": info.dtype_name,
                "numel": info.numel, "nbytes": info.nbytes, "tied": list(info.tied)}

    if fmt == "table":
        any_tied = bool(summary["tied_groups"])
        header = ["key", "shape", "dtype", "numel", "size"] + (["tied to"] if any_tied else [])

        def cells() -> Iterator[list[str]]:
            for k, info in ckpt.items():
                row = [_printable(k), _shape_text(info.shape), info.dtype_name,
                       f"{info.numel:,}", _human_bytes(info.nbytes)]
                if any_tied:
                    row.append(", ".join(_printable(t) for t in info.tied))
                yield row

        _write_table(out, header, cells, right=(3, 4))
        out.write("\n")
        for line in _inspect_footer(ckpt, summary):
            out.write(line + "\n")
    elif fmt == "json":
        out.write('{\n  "command": "inspect",\n  "source": ' + json.dumps(_source_dict(ckpt.source))
                  + ',\n  "tensors": [')
        arr = _JsonArrayWriter(out)
        for k in ckpt:
            arr.item(tensor_dict(k))
        arr.close()
        out.write(',\n  "summary": ' + json.dumps(summary) + "\n}\n")
    elif fmt == "jsonl":
        for k in ckpt:
            out.write(json.dumps(tensor_dict(k)) + "\n")
        _footer_to_stderr(_inspect_footer(ckpt, summary))
    else:  # csv
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["key", "shape", "dtype", "numel", "nbytes", "tied"])
        for k, info in ckpt.items():
            writer.writerow([k, json.dumps(list(info.shape)), info.dtype_name, info.numel,
                             info.nbytes, " ".join(info.tied)])
        _footer_to_stderr(_inspect_footer(ckpt, summary))
    return EXIT_OK


def _footer_to_stderr(lines: Iterable[str]) -> None:
    sys.stdout.flush()
    for line in lines:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


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


def _is_clean(row: Row, allow_dtype: bool) -> bool:
    return row.status == "match" or (allow_dtype and row.status == "dtype_mismatch")


def _diff_row_dict(r: Row) -> dict[str, Any]:
    return {
        "key": r.key,
        "status": r.status,
        "kind": r.kind,
        "ckpt_key": r.ckpt_key,
        "model_key": r.model_key,
        "ckpt_shape": _shape_json(r.ckpt_shape),
        "model_shape": _shape_json(r.model_shape),
        "ckpt_dtype": r.ckpt_dtype,
        "model_dtype": r.model_dtype,
        "nbytes": r.nbytes,
        # the CLI applies no adapters: keep "shape mismatch: checkpoint (a) vs model (b)" only
        "reason": r.reason.split(";")[0] if r.reason and r.status == "shape_mismatch"
        else r.reason,
    }


def _diff_footer(
    cmp: Comparison,
    counts: dict[str, int],
    clean: bool,
    model_label: str,
    allow_dtype: bool,
    suggestions: list[tuple[str, int, str]],
) -> Iterator[str]:
    total = len(cmp.rows)
    yield f"{total:,} keys: {_counts_text(counts)}"
    yield f"checkpoint: {cmp.checkpoint.source.describe()}"
    yield f"model: {model_label}"
    if cmp.renames:
        yield "renames: " + "; ".join(r.describe() for r in cmp.renames)
    if clean:
        if counts["dtype_mismatch"]:
            yield (f"OK: loads cleanly ({counts['dtype_mismatch']:,} dtype_mismatch will be cast "
                   "by load_state_dict; --allow-dtype)")
        else:
            yield f"OK: loads cleanly, all {total:,} keys match"
        return
    problems = {s: n for s, n in counts.items() if n and s != "match"}
    if set(problems) == {"dtype_mismatch"}:
        yield (f"DIFFERENT: {problems['dtype_mismatch']:,} dtype_mismatch (load_state_dict would "
               "cast them silently; pass --allow-dtype to accept that)")
    else:
        yield f"DIFFERENT: {_counts_text(problems)} (a strict load_state_dict would fail)"
    for spec, _fixes, reason in suggestions:
        yield f"hint: --rename {shlex.quote(spec)}  ({reason})"


def _suggest(cmp: Comparison, limit: int = 3) -> list[tuple[str, int, str]]:
    if not (cmp.keys("unexpected") and cmp.keys(("missing", "missing_buffer"))):
        return []
    try:
        rules = cmp.prefix_suggestions()[:limit]
    except Exception:  # suggestions are a courtesy; never fail the diff over them
        return []
    return [(_rename_arg(s.rule), s.fixes, s.reason) for s in rules]


def _cmd_diff(args: argparse.Namespace) -> int:
    if args.model is None and args.against is None:
        raise CLIError(
            "diff needs something to compare with: --model MODULE:CALLABLE (e.g. "
            "sd_widgets.demo:SmallCNN) or --against OTHER_CHECKPOINT. To just list the "
            f"checkpoint's tensors, run '{PROG} inspect {shlex.quote(args.checkpoint)}'."
        )
    renames = _parse_rename_args(args.rename)
    ckpt = _open(args.checkpoint, args.key, args.trust, args.allow)
    model_info: dict[str, Any]
    if args.model is not None:
        model, device = load_model(args.model)
        model_label = f"{args.model} -> {type(model).__name__}" + (
            " (built on the meta device)" if device == "meta" else f" (on {device})")
        model_info = {"spec": args.model, "class": type(model).__name__, "device": device}
        target: nn.Module | Checkpoint = model
    else:
        other = _open(args.against, args.against_key, args.trust, args.allow)
        model_label = f"checkpoint {other.source.describe()}"
        model_info = {"against": _source_dict(other.source)}
        target = other
    try:
        cmp = compare(target, ckpt, renames=renames)
    except ValueError as exc:  # e.g. two keys renamed to the same name
        raise CLIError(f"--rename: {exc}") from None

    counts = cmp.summary()
    clean = all(_is_clean(r, args.allow_dtype) for r in cmp.rows)
    code = EXIT_OK if clean else EXIT_DIFFERENT
    suggestions = [] if clean else _suggest(cmp)
    shown: Callable[[], Iterator[Row]] = (
        (lambda: (r for r in cmp.rows if r.status != "match")) if args.only_problems
        else (lambda: iter(cmp.rows))
    )
    out = sys.stdout
    fmt = args.format

    if fmt == "table":
        renamed = any(r.ckpt_key is not None and r.ckpt_key != r.key for r in cmp.rows)
        header = ["key", "status", "kind", "ckpt_shape", "model_shape", "ckpt_dtype",
                  "model_dtype"] + (["ckpt_key"] if renamed else [])

        def cells() -> Iterator[list[str]]:
            for r in shown():
                row = [_printable(r.key), r.status, r.kind or "-", _shape_text(r.ckpt_shape),
                       _shape_text(r.model_shape), r.ckpt_dtype or "-", r.model_dtype or "-"]
                if renamed:
                    row.append(_printable(r.ckpt_key) if r.ckpt_key not in (None, r.key)
                               else "")
                yield row

        if args.only_problems and not any(True for _ in shown()):
            out.write("(no problems: every key matches)\n")
        else:
            _write_table(out, header, cells)
        out.write("\n")
        for line in _diff_footer(cmp, counts, clean, model_label, args.allow_dtype, suggestions):
            out.write(line + "\n")
    elif fmt == "json":
        out.write('{\n  "command": "diff",\n  "checkpoint": '
                  + json.dumps(_source_dict(ckpt.source))
                  + ',\n  "model": ' + json.dumps(model_info)
                  + ',\n  "renames": ' + json.dumps([_rename_arg(r) for r in cmp.renames])
                  + ',\n  "only_problems": ' + json.dumps(bool(args.only_problems))
                  + ',\n  "rows": [')
        arr = _JsonArrayWriter(out)
        for r in shown():
            arr.item(_diff_row_dict(r))
        arr.close()
        tail = {
            "summary": counts,
            "total": len(cmp.rows),
            "clean": clean,
            "allow_dtype": bool(args.allow_dtype),
            "exit_code": code,
            "suggested_renames": [
                {"rename": s, "fixes": n, "reason": why}
                for s, n, why in suggestions
            ],
        }
        for name, value in tail.items():
            out.write(f',\n  "{name}": ' + json.dumps(value))
        out.write("\n}\n")
    elif fmt == "jsonl":
        for r in shown():
            out.write(json.dumps(_diff_row_dict(r)) + "\n")
        _footer_to_stderr(
            _diff_footer(cmp, counts, clean, model_label, args.allow_dtype, suggestions))
    else:  # csv
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["key", "status", "kind", "ckpt_key", "model_key", "ckpt_shape",
                         "model_shape", "ckpt_dtype", "model_dtype", "nbytes"])
        for r in shown():
            writer.writerow([
                r.key, r.status, r.kind or "", r.ckpt_key or "", r.model_key or "",
                "" if r.ckpt_shape is None else json.dumps(list(r.ckpt_shape)),
                "" if r.model_shape is None else json.dumps(list(r.model_shape)),
                r.ckpt_dtype or "", r.model_dtype or "", r.nbytes,
            ])
        _footer_to_stderr(
            _diff_footer(cmp, counts, clean, model_label, args.allow_dtype, suggestions))
    return code

