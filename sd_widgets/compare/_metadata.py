"""``_metadata``: the module versions a state dict carries, copied and renamed faithfully.

PyTorch fact 6: an ``OrderedDict`` built by filtering a state dict loses ``_metadata``, and
BatchNorm then takes its legacy path. Fact 13: ``load_state_dict(assign=True)`` writes
``assign_to_params_buffers`` into the per-module dicts it is handed, so a shared dict makes every
later load assign. Every filtered dict sd_widgets builds or exports goes through these helpers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from ._renames import Rename, apply_renames

#: what ``load_state_dict(assign=True)`` writes into the ``_metadata`` of the dict it is given
#: (torch >= 2.1): a checkpoint once loaded that way makes every later plain load from it assign
ASSIGN_FLAG = "assign_to_params_buffers"


def module_metadata(value: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of one module's ``_metadata`` entry without :data:`ASSIGN_FLAG`.

    Whether to assign is decided per load (meta-device tensors only), never inherited from the
    dict the tensors came from.

    Parameters
    ----------
    value : Mapping
        One module's entry, e.g. ``{"version": 2}``.

    Returns
    -------
    dict
        A new dict with every entry but the assign flag.
    """
    return {k: v for k, v in value.items() if k != ASSIGN_FLAG}


def copy_metadata(meta: Mapping[str, Mapping[str, Any]] | None) -> OrderedDict[str, dict[str, Any]]:
    """A private copy of a whole ``_metadata`` (each module's dict copied, assign flag dropped).

    Parameters
    ----------
    meta : Mapping or None
        ``state_dict._metadata`` (module prefix → entry), or None.

    Returns
    -------
    OrderedDict
        The copy, safe to hand to one ``load_state_dict`` call.
    """
    return OrderedDict((prefix, module_metadata(value)) for prefix, value in (meta or {}).items())


def rename_prefix(prefix: str, rules: Iterable[Rename]) -> str:
    """Apply key rename rules to a module prefix of ``_metadata`` (``"layer1.0.bn1"``).

    Parameters
    ----------
    prefix : str
        A module path as ``_metadata`` stores it (``""`` for the root module).
    rules : iterable of Rename
        The rules the checkpoint's keys are renamed with.

    Returns
    -------
    str
        The module path after renaming, without a trailing dot.
    """
    rules = tuple(rules)
    if not rules:
        return prefix
    new = apply_renames(prefix + "." if prefix else "", rules)
    return new[:-1] if new.endswith(".") else new


def merged_metadata(
    model_meta: Mapping[str, Mapping[str, Any]] | None,
    ckpt_meta: Mapping[str, Mapping[str, Any]] | None,
    rules: Iterable[Rename] = (),
) -> OrderedDict[str, dict[str, Any]]:
    """Module versions for a filtered dict: the model's, overridden by the (renamed) checkpoint's.

    Versioned modules such as BatchNorm then behave as with the full checkpoint, and a
    checkpoint without ``_metadata`` (safetensors) still keeps BatchNorm out of its legacy path.

    Parameters
    ----------
    model_meta : Mapping or None
        ``model.state_dict()._metadata``.
    ckpt_meta : Mapping or None
        The checkpoint's ``_metadata`` under its own (not yet renamed) module paths.
    rules : iterable of Rename
        The rename rules of the comparison.

    Returns
    -------
    OrderedDict
        Fresh per-module dicts without the assign flag.
    """
    rules = tuple(rules)
    meta = copy_metadata(model_meta)
    for prefix, value in (ckpt_meta or {}).items():
        meta[rename_prefix(prefix, rules)] = module_metadata(value)
    return meta
