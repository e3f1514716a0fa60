r"""Code export: a frozen description of one partial load, written out as plain torch.

:class:`LoadSpec` says what the load is (where the checkpoint is and how it is read, the trust it
was opened with, renames, keys, adapters, BatchNorm resets, what is skipped and why);
:func:`to_code` turns it into a self-contained Python file. ``LoadPlan.to_code()`` builds the
spec; this module never sees a plan.

Every string that came from a file or a user (keys, reasons, entry names, paths, rename
patterns, trusted names) leaves this module only as a Python literal made by :func:`ascii`:
never inside a comment, a docstring or an f-string of the generated code. ``ascii()`` escapes
newlines, quotes, backslashes, NUL and every non-ASCII character (a lone surrogate becomes
``\udc80``), so the output always compiles, is pure ASCII and runs nothing it was not written
to run. The generated file runs in three ways: pasted into a notebook cell where the model
variable exists, it performs the load; run as a script it says how to call it; imported as a
module it has no side effects.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import keyword
import math
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..checkpoint._memory import split_entry
from ..compare._adapters import ADAPTERS, get_adapter
from ..compare._lora import merge_lora, merge_lora_bias
from ..compare._metadata import ASSIGN_FLAG
from ..statuses import SourceKind

#: how many skipped keys (with their reasons) the exported file lists
SHOWN_SKIPPED = 20

IN_MEMORY_KINDS = ("mapping", "module")


@dataclass(frozen=True)
class LoadSpec:
    """A partial load, described with plain data (what :func:`to_code` writes out)."""

    #: source format (``SourceKind``)
    kind: SourceKind
    #: the file or directory read; None for in-memory sources
    path: str | None
    #: the nested entry holding the weights ("state_dict", "a/b"; for DCP the key prefix)
    entry: str | None = None
    #: False: weights only; True: any pickled object; pairs: weights only plus these
    #: (module, qualified name) globals
    trust: bool | tuple[tuple[str, str], ...] = False
    #: rename rules in order: ("prefix" | "regex" | "exact", old, new) or ("leaf", "", pairs)
    renames: tuple[tuple[str, str, Any], ...] = ()
    #: (model key, checkpoint key) of every loaded tensor, in model order
    keys: tuple[tuple[str, str], ...] = ()
    #: (model key, adapter name)
    adapters: tuple[tuple[str, str], ...] = ()
    #: (model key, what its adapter does to it): our own words and numbers, never file text
    adapter_notes: tuple[tuple[str, str], ...] = ()
    #: LoRA merges: (model key, lora_A key, lora_B key, scale, layer kind, DoRA magnitude key
    #: or None), model order
    lora: tuple[tuple[str, str, str, float, str, str | None], ...] = ()
    #: lora_bias: (model key of a layer's bias, lora_B.bias key, scale), model order
    lora_bias: tuple[tuple[str, str, float], ...] = ()
    #: BatchNorm modules whose running statistics are reset after loading
    bn_reset: tuple[str, ...] = ()
    #: (key, reason) of every selected key that is not loaded
    skipped: tuple[tuple[str, str], ...] = ()
    bn: str = "load"
    #: SHA-256 of a DCP directory's pickled ``.metadata`` as vetted when exporting
    metadata_sha256: str | None = None
    #: some loaded tensors are on the meta device: they are assigned, not copied into
    assign_meta: bool = False


def trusted_names(allowed: Iterable[Any]) -> tuple[tuple[str, str], ...]:
    """``trust=[...]`` as (module, qualified name) pairs the exported code imports again.

    Parameters
    ----------
    allowed : iterable
        Classes or functions (``argparse.Namespace``), or ``"module.name"`` strings.

    Returns
    -------
    tuple of (str, str)
    """
    out: dict[tuple[str, str], None] = {}
    for obj in allowed:
        if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], str):
            obj = obj[0]  # torch's (object, "module.name") form: the object decides
        module: Any
        name: Any
        if isinstance(obj, str):
            module, _, name = obj.rpartition(".")
        else:
            module = getattr(obj, "__module__", None)
            name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if not isinstance(module, str) or not isinstance(name, str) or not module or not name:
            raise ValueError(
                f"cannot name {obj!r} for the exported code: give a class or "
                "function importable as module.name"
            )
        out[(module, name)] = None
    return tuple(out)


# --------------------------------------------------------------------------------------------
# literals: the only way data reaches the generated code
# --------------------------------------------------------------------------------------------


def _lit(value: Any) -> str:
    """A Python literal for plain data, pure ASCII (strings through :func:`ascii`)."""
    if isinstance(value, str):
        return ascii(value)
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)  # the shortest text that reads back as exactly this float
    if isinstance(value, tuple):
        inner = ", ".join(_lit(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_lit(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no literal for {type(value).__name__}")  # pragma: no cover


def _block(name: str, items: list[str], opener: str = "[", closer: str = "]") -> str:
    """``NAME = [`` one item per line ``]`` (items already rendered)."""
    if not items:
        return f"{name} = {opener}{closer}\n"
    return f"{name} = {opener}\n" + "".join(f"    {i},\n" for i in items) + f"{closer}\n"


def _source_without_docstring(fn: Any) -> str:
    """The source of one of our adapter functions, docstring and annotations dropped."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef)
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        node.body = body[1:]
    node.returns = None
    for arg in node.args.args:
        arg.annotation = None
    return ast.unparse(tree) + "\n"


def _comment_text(text: str) -> str:
    """Our own prose (adapter descriptions: fixed words and numbers) as one comment line.

    Never called with a string from a file: keys and reasons go through :func:`_lit`. Anything
    outside printable ASCII is replaced all the same, so a comment can never end early.
    """
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


def _note(text: str | None) -> str:
    return f"  # {_comment_text(text)}" if text else ""


def _adapter_functions(names: Iterable[str]) -> list[str]:
    """The source of each adapter function ``names`` use, once, under a comment on what it does."""
    out: dict[str, str] = {}
    for name in names:
        adapter = ADAPTERS[get_adapter(name).name.partition(":")[0]]
        fn_name = adapter.fn.__name__
        if fn_name not in out:
            out[fn_name] = (
                f"# adapter {adapter.name!r}: {_comment_text(adapter.description)}\n"
                + _source_without_docstring(adapter.fn)
            )
    return list(out.values())


def _adapter_call(name: str) -> str:
    """The exported expression for adapter ``name``: its function, with its options bound."""
    adapter = get_adapter(name)
    fn_name = adapter.fn.__name__
    if adapter.options == ADAPTERS[name.partition(":")[0]].options:
        return fn_name
    bound = ", ".join(f"{k}={int(v)!r}" for k, v in adapter.options)
    return f"functools.partial({fn_name}, {bound})"


# --------------------------------------------------------------------------------------------
# the generated file, piece by piece
# --------------------------------------------------------------------------------------------

_TORCH_LOAD = {
    False: (
        "def torch_load(file):\n"
        "    return torch.load(file, map_location='cpu', weights_only=True{mmap})\n"
    ),
    True: (
        "def torch_load(file):\n"
        "    # trust=True: weights_only=False unpickles without any restriction, so the file can\n"
        "    # run any code on this machine. Keep it only for files whose origin you trust.\n"
        "    return torch.load(file, map_location='cpu', weights_only=False{mmap})\n"
    ),
    "list": (
        "def torch_load(file):\n"
        "    # trust=[...]: weights-only loading that also admits exactly the TRUSTED globals\n"
        "    allowed = []\n"
        "    for module, name in TRUSTED:\n"
        "        obj = importlib.import_module(module)\n"
        "        for part in name.split('.'):\n"
        "            obj = getattr(obj, part)\n"
        "        allowed.append(obj)\n"
        "    with torch.serialization.safe_globals(allowed):\n"
        "        return torch.load(file, map_location='cpu', weights_only=True{mmap})\n"
    ),
}


def _torch_loader(spec: LoadSpec, imports: set[str], consts: list[str]) -> str:
    if isinstance(spec.trust, tuple) and spec.trust:
        imports.add("import importlib")
        consts.append(_block("TRUSTED", [_lit(pair) for pair in spec.trust]))
        template = _TORCH_LOAD["list"]
    else:
        template = _TORCH_LOAD[bool(spec.trust)]
    if spec.kind == "torch":
        mmap = ", mmap=True"
    elif spec.kind == "torch-index":
        imports.add("import zipfile")
        mmap = ", mmap=zipfile.is_zipfile(file)"
    else:  # legacy (pre-zip) files cannot be memory-mapped
        mmap = ""
    return template.replace("{mmap}", mmap)


def _reader(spec: LoadSpec, imports: set[str], consts: list[str]) -> str:
    """``read_checkpoint`` (and helpers) for the source format; '' for in-memory sources."""
    kind = spec.kind
    if kind in IN_MEMORY_KINDS and spec.path is not None:
        raise ValueError(
            f"this load was planned from an in-memory {kind}, so there is no file format to read "
            "a path with; save the state dict (torch.save or safetensors), compare with that "
            "file, and export again"
        )
    if kind in IN_MEMORY_KINDS or spec.path is None:
        return ""
    consts.insert(0, f"CHECKPOINT = {_lit(spec.path)}\n")
    head = 'def read_checkpoint(path=CHECKPOINT):\n    """The checkpoint\'s tensors, read as sd_widgets read them."""\n'
    if kind in ("torch", "torch-legacy"):
        entry = split_entry(spec.entry) if spec.entry else ()
        if entry:
            consts.append(f"ENTRY = {_lit(entry)}  # the nested entry holding the weights\n")
        body = "    state = torch_load(path)\n"
        if entry:
            body += "    for name in ENTRY:\n        state = state[name]\n"
            if spec.trust is True:
                body += (
                    "    if isinstance(state, torch.nn.Module):\n"
                    "        state = state.state_dict()\n"
                )
        return _torch_loader(spec, imports, consts) + "\n\n" + head + body + "    return state\n"
    if kind == "safetensors":
        imports.add("from safetensors import safe_open")
        return head + (
            "    with safe_open(path, framework='pt', device='cpu') as f:\n"
            "        return {key: f.get_tensor(key) for key in {NEEDED}}\n"
        )
    if kind in ("safetensors-index", "torch-index"):
        imports.update(("import json", "import os"))
        if kind == "safetensors-index":
            imports.add("from safetensors import safe_open")
            read = (
                "        with safe_open(file, framework='pt', device='cpu') as f:\n"
                "            state.update((key, f.get_tensor(key)) for key in names)\n"
            )
            helper = ""
        else:
            read = (
                "        shard_state = torch_load(file)\n"
                "        state.update((key, shard_state[key]) for key in names)\n"
            )
            helper = _torch_loader(spec, imports, consts) + "\n\n"
        return (
            helper
            + head
            + (
                "    folder = os.path.realpath(os.path.dirname(path))\n"
                "    with open(path, encoding='utf-8') as f:\n"
                "        weight_map = json.load(f)['weight_map']\n"
                "    needed = {NEEDED}\n"
                "    state = {}\n"
                "    for shard in dict.fromkeys(weight_map[key] for key in needed):\n"
                "        file = os.path.realpath(os.path.join(folder, shard))\n"
                "        if os.path.commonpath([folder, file]) != folder:\n"
                "            raise ValueError(f'shard {shard!r} lies outside {folder!r}')\n"
                "        names = [key for key in needed if weight_map[key] == shard]\n"
                + read
                + "    return state\n"
            )
        )
    if kind == "dcp":
        imports.update(
            ("import hashlib", "import os", "import torch.distributed.checkpoint as dcp")
        )
        consts.append(f"PREFIX = {_lit(spec.entry + '.' if spec.entry else '')}\n")
        consts.append(f"METADATA_SHA256 = {_lit(spec.metadata_sha256)}\n")
        return head + (
            "    # .metadata is a pickle that torch.distributed.checkpoint reads without restriction:\n"
            "    # go on only if it is byte for byte the file sd_widgets checked when exporting\n"
            "    with open(os.path.join(path, '.metadata'), 'rb') as f:\n"
            "        if hashlib.sha256(f.read()).hexdigest() != METADATA_SHA256:\n"
            "            raise ValueError(f'{path!r}: .metadata changed since the export')\n"
            "    metadata = dcp.FileSystemReader(path).read_metadata().state_dict_metadata\n"
            "    state = {}\n"
            "    for key in {NEEDED}:\n"
            "        info = metadata[PREFIX + key]\n"
            "        state[PREFIX + key] = torch.empty(info.size, dtype=info.properties.dtype)\n"
            "    dcp.load(state, checkpoint_id=path, no_dist=True)\n"
            "    return {key[len(PREFIX):]: value for key, value in state.items()}\n"
        )
    raise ValueError(f"no code export for checkpoint kind {kind!r}")


def _sharded_loader(renamed_keys: bool) -> str:
    """``load_sharded``: the same load on every rank of a job, into DTensor (FSDP2) shards."""
    names = (
        "{key: PREFIX + name for key, name in KEYS}"
        if renamed_keys
        else "{key: PREFIX + key for key in KEYS}"
    )
    return (
        "def load_sharded(model, path=CHECKPOINT):\n"
        '    """The same load on every rank of a torch.distributed job (torchrun), for a model\n'
        "    sharded with FSDP2 / DTensor: dcp.load reads each rank's own chunks straight into\n"
        "    the model's local shards (the model's tensors, in place). Call it on every rank.\n"
        "    Keys not listed are untouched. No rollback: sd_widgets.partial_load has one.\n"
        '    Returns the model keys it loaded."""\n'
        "    with open(os.path.join(path, '.metadata'), 'rb') as f:\n"
        "        if hashlib.sha256(f.read()).hexdigest() != METADATA_SHA256:\n"
        "            raise ValueError(f'{path!r}: .metadata changed since the export')\n"
        "    current = model.state_dict()\n"
        f"    names = {names}  # model key -> its name in the checkpoint\n"
        "    dcp.load({name: current[key] for key, name in names.items()}, checkpoint_id=path)\n"
        "    return list(names)\n"
    )


_RENAME_BRANCHES = {
    "prefix": (
        "        if kind == 'prefix' and key.startswith(old):\n"
        "            key = new + key[len(old):]\n"
    ),
    "exact": ("        if kind == 'exact' and key == old:\n            key = new\n"),
    "regex": ("        if kind == 'regex':\n            key = re.sub(old, new, key)\n"),
    "leaf": (
        "        if kind == 'leaf':\n"
        "            head, dot, leaf = key.rpartition('.')\n"
        "            key = head + dot + new.get(leaf, leaf)\n"
    ),
}


def _renames(spec: LoadSpec, imports: set[str], consts: list[str]) -> str:
    """``rename`` and ``rename_prefix`` for the rules ('' when there are none)."""
    if not spec.renames:
        return ""
    rules = []
    for kind, old, new in spec.renames:
        if kind not in _RENAME_BRANCHES:
            raise ValueError(f"no code export for rename rules of kind {kind!r}")
        rules.append(_lit((kind, old, dict(new) if kind == "leaf" else new)))
    consts.append(_block("RENAMES", rules))
    kinds = dict.fromkeys(r[0] for r in spec.renames)
    if "regex" in kinds:
        imports.add("import re")
    return (
        "def rename(key):\n"
        '    """Checkpoint key -> model key: each rule applies to the previous one\'s result."""\n'
        "    for kind, old, new in RENAMES:\n"
        + "".join(_RENAME_BRANCHES[k] for k in kinds)
        + "    return key\n"
        "\n\n"
        "def rename_prefix(prefix):\n"
        '    """Rename a module path of the checkpoint\'s ``_metadata``."""\n'
        "    new = rename(prefix + '.' if prefix else '')\n"
        "    return new[:-1] if new.endswith('.') else new\n"
    )


_RESERVED = frozenset(
    {
        "CHECKPOINT",
        "ENTRY",
        "KEYS",
        "ADAPT",
        "BN_RESET",
        "RENAMES",
        "SKIPPED",
        "TRUSTED",
        "PREFIX",
        "METADATA_SHA256",
        "torch",
        "json",
        "os",
        "re",
        "zipfile",
        "hashlib",
        "dcp",
        "importlib",
        "safe_open",
        "OrderedDict",
        "read_checkpoint",
        "load_sharded",
        "torch_load",
        "rename",
        "rename_prefix",
        "module_versions",
        "adapt_overlap",
        "adapt_input_conv",
        "adapt_interpolate",
        "adapt_resample_patch",
        "functools",
        "merge_lora",
        "LORA",
        "merge_lora_bias",
        "LORA_BIAS",
        "result",
    }
)


def name_problem(name: object, *, function_name: str = "load_partial") -> str | None:
    """Why ``name`` cannot be the exported code's model (or function) variable; None if it can.

    It must be a Python identifier, not a keyword, not a builtin and not a name the exported
    code defines itself (``KEYS``, ``torch``, ``read_checkpoint``, ...). The Explorer's
    ``model_name`` field asks this too, so both accept the same names.

    Parameters
    ----------
    name : object
        The proposed variable name.
    function_name : str
        The exported loading function's name (the model variable must differ from it).

    Returns
    -------
    str or None
        A sentence for people, or None.
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        return f"{name!r} is not a Python variable name (an identifier that is not a keyword)"
    if name in _RESERVED or hasattr(builtins, name) or name == function_name:
        return f"{name!r} is a name the exported code uses itself; choose another"
    return None


def _check_name(what: str, name: str, function_name: str = "") -> None:
    problem = name_problem(name, function_name=function_name)
    if problem is not None:
        raise ValueError(f"{what}: {problem}")


def to_code(
    spec: LoadSpec, *, function_name: str = "load_partial", model_name: str = "model"
) -> str:
    """Self-contained Python that performs the load ``spec`` describes with plain torch.

    Parameters
    ----------
    spec : LoadSpec
        What to load (``LoadPlan.spec()``).
    function_name : str
        Name of the loading function, called as ``function_name(model, state)``.
    model_name : str
        The notebook variable holding the model: pasted into a cell where it exists, the code
        loads into it.

    Returns
    -------
    str
        Pure-ASCII Python source that compiles whatever the keys and paths contain.
    """
    from .. import __version__

    _check_name("function_name", function_name)
    _check_name("model_name", model_name, function_name)
    imports: set[str] = {"from collections import OrderedDict"}
    consts: list[str] = []
    reader = _reader(spec, imports, consts)
    rename = _renames(spec, imports, consts)
    renamed_keys = any(m != c for m, c in spec.keys)
    if renamed_keys:
        consts.append("# (model key, checkpoint key) of every tensor loaded, in model order\n")
        consts.append(_block("KEYS", [_lit(pair) for pair in spec.keys]))
    else:
        consts.append("# the keys of every tensor loaded, in model order\n")
        consts.append(_block("KEYS", [_lit(m) for m, _ in spec.keys]))
    adapters = dict(spec.adapters)
    functions = _adapter_functions(adapters.values())
    if adapters:
        if any(_adapter_call(n).startswith("functools.") for n in adapters.values()):
            imports.add("import functools")
        notes = dict(spec.adapter_notes)
        consts.append(
            "# shape adapters by model key (the functions above), each with what it does\n"
            "ADAPT = {\n"
            + "".join(
                f"    {_lit(k)}: {_adapter_call(n)},{_note(notes.get(k))}\n"
                for k, n in adapters.items()
            )
            + "}\n"
        )
    if spec.lora:
        functions.append(
            "# LoRA merge, as PEFT's merge_and_unload: W + scale * (B @ A), transposed for\n"
            "# GPT-2's Conv1D (fan_in_fan_out) and an Embedding, A's kernel composed with B's 1x1\n"
            "# kernel for a convolution; scale = lora_alpha / r (lora_alpha / sqrt(r) with\n"
            "# use_rslora); DoRA rescales each row to its magnitude; the model's current weight\n"
            "# is the W\n" + _source_without_docstring(merge_lora)
        )
        consts.append(
            "# LoRA factor pairs merged into the model: (model key, lora_A key, lora_B key, scale,\n"
            "# the layer's kind, DoRA magnitude key or None)\n"
        )
        consts.append(_block("LORA", [_lit(row) for row in spec.lora]))
    if spec.lora_bias:
        functions.append(
            "# lora_bias, as PEFT's merge: the layer's bias + scale * lora_B.bias\n"
            + _source_without_docstring(merge_lora_bias)
        )
        consts.append("# layers' biases merged with their lora_B.bias: (model key, key, scale)\n")
        consts.append(_block("LORA_BIAS", [_lit(row) for row in spec.lora_bias]))
    if spec.bn_reset:
        consts.append("# BatchNorm modules whose running statistics are reset after loading\n")
        consts.append(_block("BN_RESET", [_lit(m) for m in spec.bn_reset]))
    if spec.skipped:
        shown = spec.skipped[:SHOWN_SKIPPED]
        more = len(spec.skipped) - len(shown)
        consts.append(
            f"# selected but not loaded, with the plan's reasons"
            f"{f' (first {len(shown)} of {len(spec.skipped)})' if more else ''}\n"
        )
        consts.append(_block("SKIPPED", [f"{_lit(k)}: {_lit(v)}" for k, v in shown], "{", "}"))
    in_memory = not reader
    call = f"{function_name}({model_name}, read_checkpoint())"
    if in_memory:
        how = (
            f"Pass the state dict you gave sd_widgets: {function_name}({model_name}, state_dict)"
            + (" (for a module, its .state_dict())" if spec.kind == "module" else "")
        )
        entry_note = f"; the weights are its entry {spec.entry}" if spec.entry else ""
        tail = f'if __name__ == "__main__":\n    print({_lit(how + entry_note)})\n'
    else:
        tail = (
            f'if __name__ == "__main__":\n'
            f'    if "{model_name}" in globals():  # a notebook cell where the model exists\n'
            f"        result = {call}\n"
            f"        print(f'loaded {{len(KEYS){' + len(LORA)' if spec.lora else ''}{' + len(LORA_BIAS)' if spec.lora_bias else ''}}} tensors into {model_name}')\n"
            f"    else:  # a script: nothing to load into yet\n"
            f"        print({_lit(f'Build your model, then call {call}.')})\n"
        )
    meta = (
        (
            "    meta = OrderedDict((k, v.to(current[k].dtype)) for k, v in filtered.items()\n"
            "                       if current[k].is_meta)\n"
            "    if meta:  # no storage to copy into on the meta device: assign, in the model's dtypes\n"
            "        shared = {}  # a Parameter under several names: assign replaces it under one\n"
            "        for name, param in model.named_parameters(remove_duplicate=False):\n"
            "            shared.setdefault(id(param), []).append(name)\n"
            "        meta._metadata = module_versions(current, state)\n"
            "        result = model.load_state_dict(meta, strict=False, assign=True)\n"
            "        for names in shared.values():\n"
            "            through = next((name for name in names if name in meta), None)\n"
            "            for name in names if through is not None else ():\n"
            "                module, _, attr = name.rpartition('.')\n"
            "                setattr(model.get_submodule(module), attr, model.get_parameter(through))\n"
            "        filtered = OrderedDict((k, v) for k, v in filtered.items() if k not in meta)\n"
            "    if filtered or not meta:\n"
            "        filtered._metadata = module_versions(current, state)\n"
            "        result = model.load_state_dict(filtered, strict=False)\n"
        )
        if spec.assign_meta
        else (
            "    filtered._metadata = module_versions(current, state)\n"
            "    result = model.load_state_dict(filtered, strict=False)\n"
        )
    )
    body_load = (
        f"def {function_name}(model, state):\n"
        '    """Load the chosen tensors of ``state`` into ``model`` in place (strict=False)."""\n'
        "    current = model.state_dict()\n"
        "    filtered = OrderedDict()\n"
        + ("    for key, name in KEYS:\n" if renamed_keys else "    for key in KEYS:\n")
        + (
            f"        filtered[key] = state[{'name' if renamed_keys else 'key'}]\n"
            if not adapters
            else f"        tensor = state[{'name' if renamed_keys else 'key'}]\n"
            "        filtered[key] = ADAPT[key](tensor, current[key]) if key in ADAPT else tensor\n"
        )
        + (
            "    for key, a, b, scale, layer, m in LORA:\n"
            "        magnitude = state[m] if m is not None else None\n"
            "        filtered[key] = merge_lora(current[key], state[a], state[b], scale, layer, magnitude)\n"
            if spec.lora
            else ""
        )
        + (
            "    for key, b, scale in LORA_BIAS:\n"
            "        filtered[key] = merge_lora_bias(current[key], state[b], scale)\n"
            if spec.lora_bias
            else ""
        )
        + meta
        + (
            "    for name in BN_RESET:\n        model.get_submodule(name).reset_running_stats()\n"
            if spec.bn_reset
            else ""
        )
        + "    return result\n"
    )
    renamed = "rename_prefix(prefix) if source is state else prefix" if rename else "prefix"
    versions = (
        "def module_versions(current, state):\n"
        '    """The model\'s ``_metadata`` overridden by the checkpoint\'s: copies without the\n'
        f"    {ASSIGN_FLAG!r} flag that load_state_dict(assign=True) leaves in the dicts\n"
        '    it is given (it would make this load replace the parameters instead of copying)."""\n'
        "    metadata = OrderedDict()\n"
        "    for source in (current, state):\n"
        "        for prefix, value in (getattr(source, '_metadata', None) or {}).items():\n"
        f"            metadata[{renamed}] = {{\n"
        f"                k: v for k, v in value.items() if k != {ASSIGN_FLAG!r}}}\n"
        "    return metadata\n"
    )
    usage = (
        f"Pasted into a notebook cell where ``{model_name}`` is the model, it loads into it. As a\n"
        f"script it says how to call ``{function_name}``; imported as a module it does nothing.\n"
        if not in_memory
        else f"The checkpoint was in memory: call ``{function_name}(model, state_dict)`` with it.\n"
    )
    doc = (
        f'"""Partial load exported by sd_widgets {__version__}: {len(spec.keys)} tensors loaded, '
        + (f"{len(spec.lora)} LoRA merges, " if spec.lora else "")
        + (f"{len(spec.lora_bias)} LoRA biases, " if spec.lora_bias else "")
        + f"{len(spec.skipped)} skipped,\nBatchNorm policy {_lit(spec.bn)}. "
        "Same result as sd_widgets.partial_load (without its rollback).\n" + usage + '"""\n'
    )
    plain = sorted(
        i
        for i in imports
        if i.startswith("import ") and i != "import torch" and "." not in i.split()[1]
    )
    froms = sorted(i for i in imports if i.startswith("from ") and "safetensors" not in i)
    third = [
        "import torch",
        *sorted(i for i in imports if "safetensors" in i or "torch.distributed" in i),
    ]
    header = doc + "\n".join(plain + froms) + "\n\n" + "\n".join(third) + "\n"
    parts = [header, *functions, "".join(consts)]
    if reader:  # our template only (no literal in it): how the reader lists the keys to read
        needed = "dict(KEYS).values()" if renamed_keys else "KEYS"
        if spec.lora:
            needed = f"[*{needed}, *(name for row in LORA for name in row[1:3] + row[5:] if name)]"
        if spec.lora_bias:
            needed = f"[*{needed}, *(row[1] for row in LORA_BIAS)]"
        parts.append(reader.replace("{NEEDED}", needed))
    if rename:
        parts.append(rename)
    parts += [versions, body_load]
    if spec.kind == "dcp" and not (adapters or spec.lora or spec.bn_reset):
        parts.append(_sharded_loader(renamed_keys))
    parts.append(tail)
    code = "\n\n".join(p.rstrip("\n") + "\n" for p in parts)
    code.encode("ascii")  # every literal went through ascii(): this cannot fail
    return code
