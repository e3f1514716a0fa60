"""Hostile checkpoints for the security tests (``from hostile import ...``; pytest puts
``tests/`` on ``sys.path``).

These writers live with the tests, not in the package: the wheel must not ship an exploit
generator. Every payload here is *inert unless unpickled without an allow-list*: it only creates
a marker file, so a test can prove that nothing ran by asserting the marker does not exist.
"""

from __future__ import annotations

import os
import pathlib
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

from sd_widgets import demo

__all__ = [
    "CreateMarker",
    "hostile_keys_state_dict",
    "write_hostile_global",
    "write_hostile_keys",
    "write_malicious_checkpoint",
]


class CreateMarker:
    """Pickles to ``io.open(marker, "w")``: unpickling it with ``weights_only=False`` creates the
    marker file. Creating or pickling this object runs nothing."""

    def __init__(self, marker: str | os.PathLike[str]) -> None:
        self.marker = pathlib.Path(marker)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def write_malicious_checkpoint(
    path: str | os.PathLike[str],
    marker: str | os.PathLike[str],
    *,
    base: str = "cnn",
    seed: int = 0,
    legacy: bool = False,
) -> pathlib.Path:
    """Write ``{"state_dict": sd, "callback": CreateMarker(marker)}`` with ``torch.save``.

    The payload unpickles as ``open(marker, "w")`` and so creates ``marker`` when, and only
    when, someone loads the file with ``weights_only=False``. Its blocking global is
    ``io.open``. Writing the file executes nothing. ``legacy=True`` writes the pre-1.6
    (non-zip) format.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {
        "state_dict": demo.variant("identical", base=base, seed=seed),
        "callback": CreateMarker(marker),
    }
    if legacy:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, path)
    return path


def hostile_keys_state_dict(*, surrogate: bool = True) -> dict[str, torch.Tensor]:
    """A small state dict whose keys carry a terminal escape (red text), a newline, NUL, a
    right-to-left override and (``surrogate=True``; pickle can store it, safetensors cannot, its
    header being UTF-8 JSON) a lone surrogate."""
    sd = {
        "ok.weight": torch.ones(2, 2),
        "evil\x1b[31m.red": torch.zeros(3),
        "line\nbreak.weight": torch.zeros(1),
        "nul\x00byte.bias": torch.zeros(2),
        "\u202eright_to_left.bias": torch.zeros(2),
    }
    if surrogate:
        sd["lone\udc80surrogate.weight"] = torch.zeros(1)
    return sd


def write_hostile_keys(path: str | os.PathLike[str], fmt: str = "torch") -> dict[str, torch.Tensor]:
    """Write :func:`hostile_keys_state_dict` with ``torch.save`` (``fmt="torch"``) or
    ``safetensors.torch.save_file`` (``"safetensors"``); return the state dict written."""
    from safetensors.torch import save_file

    if fmt == "torch":
        sd = hostile_keys_state_dict()
        torch.save(sd, path)
    elif fmt == "safetensors":
        sd = hostile_keys_state_dict(surrogate=False)
        save_file(sd, str(path))
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return sd


def write_hostile_global(path: str | os.PathLike[str], module: str = "evil\x1b[31m") -> str:
    """A ``torch.save`` checkpoint that pickles an instance of a class whose module name
    carries a terminal escape; returns the refused global's name (``module.Thing``). The
    module exists only while the file is written, so nothing can ever import it."""
    fake = types.ModuleType(module)

    class Thing:
        pass

    Thing.__module__ = module
    Thing.__qualname__ = "Thing"
    fake.Thing = Thing  # type: ignore[attr-defined]
    sys.modules[module] = fake
    try:
        torch.save({"state_dict": hostile_keys_state_dict(), "config": Thing()}, path)
    finally:
        del sys.modules[module]
    return f"{module}.Thing"
