"""Hostile checkpoints for the security tests (``from hostile import ...``; pytest puts
``tests/`` on ``sys.path``).

These writers live with the tests, not in the package: the wheel must not ship an exploit
generator. Every payload here is *inert unless unpickled without an allow-list*: it only creates
a marker file, so a test can prove that nothing ran by asserting the marker does not exist.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any

import torch

from sd_widgets import demo

__all__ = ["CreateMarker", "hostile_keys_state_dict", "write_malicious_checkpoint"]


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
    obj = {"state_dict": demo.variant("identical", base=base, seed=seed),
           "callback": CreateMarker(marker)}
    if legacy:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, path)
    return path


def hostile_keys_state_dict() -> dict[str, torch.Tensor]:
    """A small state dict whose keys carry terminal escapes, newlines, NUL and a tab."""
    return {
        "ok.weight": torch.ones(2, 2),
        "evil\x1b[31m.red": torch.zeros(3),
        "line\nbreak.weight": torch.zeros(1),
        "nul\x00byte.bias": torch.zeros(2),
        "tab\there.bias": torch.zeros(2),
    }
