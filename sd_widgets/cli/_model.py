"""``--model``: the model a ``diff`` compares against, built without running its weights.

``MODULE:CALLABLE`` (a module path or a ``.py`` file, imported with its own directory first on
``sys.path``) or ``hf:CONFIG`` (a transformers model from its ``config.json`` on the meta device,
no remote code); ``--allow`` names resolved to the classes weights-only loading may rebuild.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._output import CLIError, _Interrupted, _note, _one_line


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
    module, expr = spec[:colon].strip(), spec[colon + 1 :].strip()
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
    """Like ``python -m``.

    Modules in ``directory`` can be imported (also lazily, while the model is built); ``sys.path``
    is restored afterwards.
    """
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

    ``hf:FOLDER_OR_CONFIG_JSON`` builds a transformers model from its config.json alone, on the
    meta device (see :func:`_build_hf`).

    The callable runs under ``torch.device("meta")`` first (no memory for the weights) and,
    if that raises, again on the CPU. Raises :class:`CLIError` with a clear message for any
    bad spec: module not importable, attribute missing, call failing, result not a Module,
    and code that calls ``sys.exit`` while it is imported or called. A KeyboardInterrupt
    raised there stays an interrupt (exit 130), saying what was running. Anything the model's
    code prints goes to stderr, so stdout stays machine-readable.
    """
    if spec.startswith(HF_SPEC):
        return _build_hf(spec[len(HF_SPEC) :]), "meta"
    parsed = _parse_model_spec(spec)
    is_file, directory = _module_dir(parsed.module)
    with _first_on_sys_path(directory), contextlib.redirect_stdout(sys.stderr):
        with _model_code(f"importing {parsed.module!r}"):
            mod = _import(parsed.module, is_file)
        with _model_code(f"looking up {'.'.join(parsed.attrs)!r} in {parsed.module!r}"):
            target = _resolve(mod, parsed)
        return _build(target, parsed, meta)


@contextlib.contextmanager
def _model_code(doing: str) -> Iterator[None]:
    """Run the ``--model`` code.

    ``sys.exit`` in it is a bad ``--model`` (CLIError), not a clean exit; Ctrl-C says what it
    interrupted.
    """
    try:
        yield
    except SystemExit as exc:
        raise CLIError(
            f"--model: {doing} called sys.exit({exc.code!r}); a --model must import without "
            "exiting and return a torch.nn.Module"
        ) from None
    except _Interrupted:
        raise
    except KeyboardInterrupt:
        raise _Interrupted(f"interrupted while {doing} (--model)") from None


def _build(target: Any, parsed: _Spec, meta: bool) -> tuple[nn.Module, str]:
    label = f"{parsed.module}:{'.'.join(parsed.attrs)}"
    if isinstance(target, nn.Module) and not parsed.call:
        return target, _device_of(target)
    if not callable(target):
        raise CLIError(
            f"--model: {label} is a {type(target).__name__}, not a callable or an nn.Module"
        )

    def call(device: str | None) -> Any:
        where = torch.device(device) if device else contextlib.nullcontext()
        with _model_code(f"calling {label}"), where:
            return target(*parsed.args, **parsed.kwargs)

    result: Any = None
    meta_error: BaseException | None = None
    if meta:
        try:
            result = call("meta")
        except CLIError:
            raise
        except Exception as exc:
            meta_error = exc
    if not meta or meta_error is not None:
        try:
            result = call(None)
        except CLIError:
            raise
        except Exception as exc:
            hint = ""
            if isinstance(exc, TypeError) and not parsed.call:
                hint = f". Literal arguments can be written in the spec: '{label}(arg, name=value)'"
            raise CLIError(
                f"--model: calling {label} failed ({type(exc).__name__}: {_one_line(exc)}){hint}"
            ) from None
        if meta_error is not None:
            _note(
                f"note: {label} could not be built on the meta device "
                f"({type(meta_error).__name__}: {_one_line(meta_error)[:200]}); "
                "built it on the CPU instead"
            )
    if not isinstance(result, nn.Module):
        raise CLIError(
            f"--model: {label} returned a {type(result).__name__}, not a torch.nn.Module"
        )
    return result, _device_of(result)


#: ``--model hf:PATH``: a transformers model from its config.json
HF_SPEC = "hf:"
#: a config.json larger than this is not a config
_MAX_CONFIG_BYTES = 4 * 2**20


def _read_hf_config(where: str) -> tuple[dict[str, Any], Path]:
    """The JSON object of ``where`` (a folder holding config.json, or the file) and its path."""
    path = Path(where)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise CLIError(
            f"--model hf:{where!r}: no config.json there (give a folder holding config.json, "
            "or the path of the file)"
        )
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise CLIError(f"--model hf:{where!r}: {str(path)!r} is too large to be a config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CLIError(f"--model hf:{where!r}: {str(path)!r} is not JSON ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise CLIError(
            f"--model hf:{where!r}: {str(path)!r} is not a transformers config (a JSON object "
            "with a 'model_type' string)"
        )
    return config, path


#: config fields that would make transformers fetch or run code (remote model code, Hub
#: kernels named as an attention implementation, quantizer backends): never passed on
_CODE_FIELDS = frozenset(
    {
        "auto_map",
        "trust_remote_code",
        "attn_implementation",
        "experts_implementation",
        "use_kernels",
        "kernel_config",
        "quantization_config",
    }
)


def _config_data(value: Any) -> Any:
    """A config.json's values without the fields that name code, at every depth.

    :data:`_CODE_FIELDS` and every private ``_name`` (``_attn_implementation`` may name a Hub
    kernel) are left out.
    """
    if isinstance(value, dict):
        return {
            k: _config_data(v)
            for k, v in value.items()
            if not (isinstance(k, str) and (k.startswith("_") or k in _CODE_FIELDS))
        }
    if isinstance(value, list):
        return [_config_data(v) for v in value]
    return value


def _build_hf(where: str) -> nn.Module:
    """A transformers model from a config.json, built on the meta device (no weights read).

    The config is read as data (``AutoConfig.for_model``, never ``trust_remote_code``); the
    class is the config's first ``architectures`` entry when transformers exports a model class
    of that name, else ``AutoModel``.
    """
    config_dict, path = _read_hf_config(where)
    try:
        import transformers
    except ImportError:
        raise CLIError(
            f"--model hf:{where!r} needs the transformers package, which is not installed "
            "(pip install transformers), or give the model as MODULE:CALLABLE"
        ) from None
    model_type = config_dict["model_type"]
    fields = _config_data(config_dict)
    fields.pop("model_type", None)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            config = transformers.AutoConfig.for_model(model_type, **fields)
        except Exception as exc:
            raise CLIError(
                f"--model hf:{where!r}: transformers cannot read {str(path)!r} as a "
                f"{model_type!r} config ({type(exc).__name__}: {_one_line(exc)[:200]})"
            ) from None
        cls: Any = None
        archs = config_dict.get("architectures")
        name = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else ""
        if name.isidentifier():
            found = getattr(transformers, name, None)
            if isinstance(found, type) and issubclass(found, transformers.PreTrainedModel):
                cls = found
        try:
            with torch.device("meta"):
                if cls is not None:
                    return cls(config)
                return transformers.AutoModel.from_config(config, trust_remote_code=False)
        except KeyboardInterrupt:
            raise _Interrupted(f"interrupted while building the model of hf:{where!r}") from None
        except Exception as exc:
            what = name or f"AutoModel for {model_type!r}"
            raise CLIError(
                f"--model hf:{where!r}: building {what} from {str(path)!r} failed "
                f"({type(exc).__name__}: {_one_line(exc)[:200]})"
            ) from None


def _device_of(model: nn.Module) -> str:
    for t in (*model.parameters(), *model.buffers()):
        return t.device.type
    return "cpu"
