"""What the Explorer says: argument checks, error states and labels, as plain functions."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

from torch import nn

from .. import errors
from ..checkpoint import Checkpoint
from ..compare._adapters import get_adapter
from ..compare._compare import Comparison
from ..compare._values import ValueComparison

#: what to call when both arguments are checkpoints
TWO_CHECKPOINTS = (
    "To see what changed between two checkpoints, give the Explorer their value comparison: "
    "sdw.Explorer(sdw.compare_values(before, after))."
)


def check_arguments(model: Any, source: Any, key: Any) -> None:
    """Explorer(model, source): say which argument is which when they are wrong."""
    if isinstance(model, (Comparison, ValueComparison)):
        if source is not None or key is not None:
            what = type(model).__name__.lower().replace("valuecomparison", "value comparison")
            raise TypeError(f"Explorer({what}) takes no source/key: the comparison has them")
        return
    if isinstance(model, nn.Module):
        if source is None:
            raise TypeError(
                "Explorer(model, source): give the checkpoint to explore as the "
                "second argument (a path, a state dict or a module)"
            )
        return
    swapped = isinstance(source, nn.Module)
    what = describe_argument(model)
    # both look like checkpoints: the user may want to compare them
    two = f" {TWO_CHECKPOINTS}" if source is not None and not swapped else ""
    if swapped:
        raise TypeError(
            f"Explorer(model, source): the arguments are swapped — the first is "
            f"{what} and the second is the model {type(source).__name__}. "
            "Call sdw.Explorer(model, checkpoint)."
        )
    if isinstance(model, (str, os.PathLike)):
        hint = (
            f"it looks like a checkpoint path; pass the model first: "
            f"sdw.Explorer(model, {str(model)!r})"
            if pathlib.Path(model).exists()
            else "Explorer needs the model object, not its name: build it first (e.g. "
            "torchvision.models.resnet50()) and call sdw.Explorer(model, checkpoint)"
        )
        raise TypeError(
            f"Explorer(model, source): the first argument must be the nn.Module to "
            f"load into (or a Comparison), got {what}; {hint}.{two}"
        )
    if isinstance(model, Mapping):
        raise TypeError(
            f"Explorer(model, source): the first argument must be the nn.Module to "
            f"load into (or a Comparison), got {what}. A state dict is the "
            "checkpoint side: call sdw.Explorer(model, state_dict) with the module "
            f"whose weights it holds.{two}"
        )
    raise TypeError(
        f"Explorer(model, source): the first argument must be an nn.Module (or a "
        f"Comparison), got {what}.{two}"
    )


def describe_argument(value: Any) -> str:
    if isinstance(value, Checkpoint):
        return f"a Checkpoint ({len(value)} tensors)"
    if isinstance(value, Mapping):
        return f"a state dict ({type(value).__name__} of {len(value)} entries)"
    if isinstance(value, (str, os.PathLike)):
        return f"the string {str(value)!r}"
    return f"a {type(value).__name__}"


def error_state(exc: BaseException, source: Any) -> dict[str, str]:
    """What went wrong opening the checkpoint, and what to do about it."""
    text = str(exc)
    if isinstance(exc, FileNotFoundError) or (
        isinstance(source, (str, os.PathLike)) and not pathlib.Path(source).exists()
    ):
        kind = "not_found"
        title = "The checkpoint file does not exist"
        fix = (
            f"Check the path {str(source)!r} (relative paths start from "
            f"{os.getcwd()!r}), then run the cell again."
        )
    elif isinstance(exc, errors.UnsafeCheckpointError) and not exc.opt_in:
        kind = "unsafe"
        title = "This checkpoint's metadata is not plain checkpoint metadata"
        fix = (
            "Nothing from the file was run, and no trust option opens it: it names objects a "
            "torch.distributed.checkpoint directory never holds. Ask for the checkpoint again, "
            "or a safetensors export of it."
        )
    elif isinstance(exc, errors.UnsafeCheckpointError) and exc.runs_code:
        kind = "unsafe"
        title = "Loading this checkpoint would run code from the file"
        fix = (
            f"Nothing from the file was run. It calls {', '.join(map(repr, exc.runs_code))}, "
            "which can run code (commands, Python, file writes); no trust=[...] admits that. "
            "Ask for a weights-only "
            "export (safetensors, or torch.save(model.state_dict(), ...)); trust=True would run "
            "the code."
        )
    elif isinstance(exc, errors.UnsafeCheckpointError):
        kind = "unsafe"
        # data classes (argparse.Namespace): not known to run code, so the title says no more
        title = "The checkpoint pickles objects that weights-only loading refuses"
        names = ", ".join(exc.globals) or "the globals named above"
        fix = (
            "Nothing from the file was run. If you trust where the file comes from, open it "
            f"with trust=[...] naming just {names} (or trust=True), e.g. "
            "sdw.Explorer(model, path, trust=[...])."
        )
    elif isinstance(exc, errors.NotAStateDictError):
        kind = "not_a_state_dict"
        title = "The file was read, but holds no state dict"
        fix = (
            "Pick the entry holding the weights with key=..., e.g. "
            "sdw.Explorer(model, path, key='state_dict'); the message lists what it holds."
        )
    elif isinstance(exc, errors.UnreadableCheckpointError):
        kind = "unreadable"
        title = "The checkpoint could not be read"
        fix = (
            "The file is truncated, corrupt or not a format sd_widgets reads (.pt/.pth/.bin/"
            ".ckpt from torch.save, .safetensors, *.index.json, a DCP directory). Save it "
            "again with torch.save(model.state_dict(), path) or safetensors.torch.save_file."
        )
    else:
        kind = "error"
        title = "The checkpoint could not be opened"
        fix = "Read the message, fix the source, then run the cell again."
    return {"kind": kind, "title": title, "text": text, "fix": fix}


def first(keys: list[str], n: int = 3) -> str:
    """The first ``n`` keys, comma-separated, with "…" when there are more."""
    return ", ".join(keys[:n]) + (", …" if len(keys) > n else "")


def model_label(model: nn.Module | None, reference: Any = None) -> str:
    """The model side's name in the title.

    The model's class, or the reference checkpoint's description when two checkpoints are
    compared (``reference``: a value comparison's ``a``).
    """
    if model is not None:
        return type(model).__name__
    return side_label(reference) if isinstance(reference, Checkpoint) else "checkpoint"


def side_label(ckpt: Checkpoint) -> str:
    """A checkpoint side, for people: its source, or what an in-memory one holds.

    A file is named by its description (kind and path); a state dict given in memory has no
    path (two of them would both read "mapping"), so it says what it is and how many tensors
    it holds.
    """
    source = ckpt.source
    text = source.describe()
    if source.path is not None:
        return text
    what = "a module's state dict" if source.kind == "module" else "in-memory state dict"
    return f"{what} ({len(ckpt):,} tensors)" + text[len(source.kind) :]


def describe_source(source: Any) -> str:
    """What the title calls a checkpoint side (see :func:`side_label`) or a source argument."""
    if isinstance(source, Checkpoint):
        return side_label(source)
    if isinstance(source, (str, pathlib.Path)):
        return str(source)
    if isinstance(source, nn.Module):
        return f"module {type(source).__name__}"
    if isinstance(source, Mapping):
        return f"mapping of {len(source)} entries"
    return type(source).__name__


def adapter_set(cmp: Comparison, key: str, adapters: Mapping[str, str]) -> str:
    """What setting (or dropping) ``key``'s adapter did, and what it left alone.

    An adapter applies to its one row: a layer's other mismatched rows (a head's bias beside its
    weight) keep the model's values unless they are adapted too, and the message names them.
    """
    row = cmp[key]
    adapter = adapters.get(key)
    if adapter is None:
        return f"{key}: no adapter. A shape mismatch is not loaded without one."
    assert row.ckpt_shape is not None and row.model_shape is not None  # an adaptable row
    what = get_adapter(adapter).describe(row.ckpt_shape, row.model_shape, key)
    left = [
        r.key
        for r in cmp
        if r.module == row.module and r.key != key and r.adaptable and r.key not in adapters
    ]
    text = f"{key}: the {adapter} adapter {what}."  # what: a verb phrase with its own brackets
    if left:
        one = len(left) == 1
        text += (
            f" Not adapted in the same module: {first(left)}. {'It keeps' if one else 'Each keeps'}"
            f" the model's values unless {'it gets an adapter' if one else 'they get adapters'}"
            " too."
        )
    return text
