"""``LoadPlan.to_code()``: the same partial load written out with plain torch."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import LoadPlan

__all__ = ["plan_to_code"]


def _reader(plan: LoadPlan, path: str | None) -> tuple[list[str], str]:
    """(imports, body of ``read_checkpoint``) for the plan's source format."""
    src = plan.comparison.checkpoint.source
    kind = src.kind
    if path is None:
        path = src.path
    if path is None:
        return [], (
            "    raise NotImplementedError(\n"
            "        'the plan was built from an in-memory state dict: pass it to load_partial'\n"
            "    )\n"
        )
    if kind in ("torch", "torch-legacy"):
        weights_only = not src.trusted
        mmap = ", mmap=True" if kind == "torch" else ""
        lines = [
            f"    state = torch.load(path, map_location='cpu', weights_only={weights_only}{mmap})\n"
        ]
        if not weights_only:
            lines.insert(0, "    # weights_only=False runs pickled code: only for files you trust\n")
        if src.key is not None:
            for part in src.key.split("/"):
                lines.append(f"    state = state[{part!r}]\n")
        return [], "".join(lines) + "    return state\n"
    if kind in ("safetensors", "safetensors-index"):
        imports = ["from safetensors import safe_open"]
        if kind == "safetensors":
            files = "    files = {key: path for key in NEEDED}\n"
        else:
            imports.append("import json")
            imports.append("import os")
            files = (
                "    with open(path) as f:\n"
                "        weight_map = json.load(f)['weight_map']\n"
                "    files = {key: os.path.join(os.path.dirname(path), weight_map[key]) "
                "for key in NEEDED}\n"
            )
        body = files + (
            "    state = {}\n"
            "    for file in dict.fromkeys(files.values()):\n"
            "        with safe_open(file, framework='pt', device='cpu') as f:\n"
            "            for key in NEEDED:\n"
            "                if files[key] == file:\n"
            "                    state[key] = f.get_tensor(key)\n"
            "    return state\n"
        )
        return imports, body
    if kind == "torch-index":
        return ["import json", "import os"], (
            "    with open(path) as f:\n"
            "        weight_map = json.load(f)['weight_map']\n"
            "    state = {}\n"
            "    for shard in dict.fromkeys(weight_map[key] for key in NEEDED):\n"
            "        shard_state = torch.load(os.path.join(os.path.dirname(path), shard),\n"
            "                                 map_location='cpu', weights_only=True, mmap=True)\n"
            "        state.update({k: v for k, v in shard_state.items() if k in NEEDED})\n"
            "    return state\n"
        )
    if kind == "dcp":
        prefix = (src.key + ".") if src.key else ""
        return ["import torch.distributed.checkpoint as dcp"], (
            "    # the .metadata file is a pickle: read DCP directories you trust\n"
            "    metadata = dcp.FileSystemReader(path).read_metadata().state_dict_metadata\n"
            f"    prefix = {prefix!r}\n"
            "    state = {prefix + key: torch.empty(metadata[prefix + key].size,\n"
            "                                       dtype=metadata[prefix + key].properties.dtype)\n"
            "             for key in NEEDED}\n"
            "    dcp.load(state, checkpoint_id=path, no_dist=True)\n"
            "    return {key[len(prefix):]: value for key, value in state.items()}\n"
        )
    raise ValueError(f"no code export for checkpoint kind {kind!r}")  # pragma: no cover


def _pylist(items: list[str], indent: str = "    ") -> str:
    if not items:
        return "[]"
    return "[\n" + "".join(f"{indent}{json.dumps(i)},\n" for i in items) + "]"


def plan_to_code(plan: LoadPlan, *, path: str | None = None,
                 function_name: str = "load_partial") -> str:
    from . import __version__

    src = plan.comparison.checkpoint.source
    rules = plan.comparison.renames
    imports, reader = _reader(plan, path)
    if any(r.kind == "regex" for r in rules):
        imports.append("import re")
    rename_lines = "".join(f"    key = {r.to_code('key')}  # {r.describe()}\n" for r in rules)
    adapt = {k: e.adapter for k, e in plan.entries.items() if e.adapter}
    needed = [e.ckpt_key for e in plan.entries.values()]
    header_path = path if path is not None else src.path
    skipped_note = ""
    if plan.skipped:
        shown = list(plan.skipped.items())[:20]
        skipped_note = "# Not loaded (from the plan):\n" + "".join(
            f"#   {k}: {why}\n" for k, why in shown
        )
        if len(plan.skipped) > len(shown):
            skipped_note += f"#   ... and {len(plan.skipped) - len(shown)} more\n"
    std_imports = sorted({"from collections import OrderedDict", *imports} - {"import torch"})
    code = f'''"""Partial load exported by sd_widgets {__version__}.

Same result as ``sd_widgets.partial_load(model, plan)`` (without the rollback and report):
{len(plan.entries)} tensors loaded, {len(plan.skipped)} skipped, BatchNorm policy {plan.bn!r}.
Source: {src.describe()}
"""
{chr(10).join(i for i in std_imports if i.startswith("import "))}
{chr(10).join(i for i in std_imports if i.startswith("from "))}

import torch

CHECKPOINT = {header_path!r}

# checkpoint keys to read (before renaming)
NEEDED = {_pylist(needed)}

# model keys to load, in model order
KEYS = {_pylist(plan.keys)}

# shape adapters: copy the overlapping slice into the model's tensor, never reshape
ADAPT = {json.dumps(adapt, indent=4) if adapt else "{}"}

# BatchNorm modules whose running statistics are reset after loading (bn='reset')
BN_RESET = {_pylist(list(plan.bn_reset_modules))}

{skipped_note}

def read_checkpoint(path=CHECKPOINT):
    """The checkpoint's state dict (weights-only)."""
{reader}

def rename(key):
    """Checkpoint key -> model key."""
{rename_lines}    return key


def rename_prefix(prefix):
    """Rename a module prefix of the checkpoint's ``_metadata``."""
    new = rename(prefix + "." if prefix else "")
    return new[:-1] if new.endswith(".") else new


def {function_name}(model, state):
    """Load the chosen tensors of ``state`` into ``model`` in place; return load_state_dict's result."""
    renamed = {{rename(key): value for key, value in state.items()}}
    current = model.state_dict()
    filtered = OrderedDict()
    for key in KEYS:
        tensor = renamed[key]
        if ADAPT.get(key) == "overlap":
            target = current[key].detach().clone()
            index = tuple(slice(0, min(a, b)) for a, b in zip(tensor.shape, target.shape))
            with torch.no_grad():
                target[index] = tensor[index].to(target.dtype)
            tensor = target
        filtered[key] = tensor
    # keep module versions (_metadata): a hand-built OrderedDict would lose them. The dicts
    # are copies without "assign_to_params_buffers", which load_state_dict(assign=True) writes
    # into them and which would make this load replace the parameters instead of copying
    def module_meta(value):
        return {{k: v for k, v in value.items() if k != "assign_to_params_buffers"}}

    metadata = OrderedDict(
        (prefix, module_meta(value))
        for prefix, value in getattr(current, "_metadata", {{}}).items())
    for prefix, value in (getattr(state, "_metadata", None) or {{}}).items():
        metadata[rename_prefix(prefix)] = module_meta(value)
    filtered._metadata = metadata
    result = model.load_state_dict(filtered, strict=False)
    for name in BN_RESET:
        model.get_submodule(name).reset_running_stats()
    return result


if __name__ == "__main__":
    raise SystemExit(
        "build your model, then call {function_name}(model, read_checkpoint())"
    )
'''
    return code.replace("\n\n\n\n\ndef read", "\n\n\ndef read")
