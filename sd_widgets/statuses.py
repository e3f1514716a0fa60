"""The one vocabulary: comparison statuses, how each is shown, and whether it can load.

Every other module (compare, plan, payload and the browser legend, plots, CLI) reads this table;
nothing restates a status string, label, icon or colour. Colours are Okabe–Ito (colour-blind
safe), and every status also has an icon and a label so colour is never the only signal.
"""

from __future__ import annotations

import enum
from typing import Literal, NamedTuple

__all__ = [
    "BN_BUFFERS",
    "BN_COUNTER",
    "BN_STATISTICS",
    "LOADABLE_STATUSES",
    "PROBLEM_STATUSES",
    "STATUSES",
    "STATUS_COLOURS",
    "STATUS_INFO",
    "STATUS_LABELS",
    "SourceKind",
    "Status",
    "StatusInfo",
    "legend",
]


class Status(str, enum.Enum):
    """Comparison status of one key (the exact strings are part of the public API)."""

    MATCH = "match"
    SHAPE_MISMATCH = "shape_mismatch"
    DTYPE_MISMATCH = "dtype_mismatch"
    MISSING = "missing"
    MISSING_BUFFER = "missing_buffer"
    UNEXPECTED = "unexpected"

    def __str__(self) -> str:
        return self.value


class StatusInfo(NamedTuple):
    """How one status is shown and treated."""

    status: str
    icon: str
    label: str
    plural: str
    colour: str
    #: the checkpoint tensor can be loaded as it is (a dtype difference is cast)
    loadable: bool
    #: which columns of the side-by-side tree show a row of this status
    on_checkpoint_side: bool
    on_model_side: bool
    description: str


STATUS_INFO: dict[str, StatusInfo] = {
    i.status: i
    for i in (
        StatusInfo(
            Status.MATCH.value,
            "✓",
            "match",
            "matches",
            "#009E73",
            True,
            True,
            True,
            "same name, shape and dtype on both sides: loads as is",
        ),
        StatusInfo(
            Status.SHAPE_MISMATCH.value,
            "≠",
            "shape mismatch",
            "shape mismatches",
            "#D55E00",
            False,
            True,
            True,
            "same name, different shape: load_state_dict raises even with strict=False",
        ),
        StatusInfo(
            Status.DTYPE_MISMATCH.value,
            "≈",
            "dtype mismatch",
            "dtype mismatches",
            "#E69F00",
            True,
            True,
            True,
            "same name and shape, different dtype: loads, silently cast to the model's dtype",
        ),
        StatusInfo(
            Status.MISSING.value,
            "−",
            "missing parameter",
            "missing parameters",
            "#0072B2",
            False,
            False,
            True,
            "model parameter absent from the checkpoint: keeps its current value",
        ),
        StatusInfo(
            Status.MISSING_BUFFER.value,
            "◌",
            "missing buffer",
            "missing buffers",
            "#56B4E9",
            False,
            False,
            True,
            "model buffer (e.g. BatchNorm running stats, num_batches_tracked) absent from the "
            "checkpoint: keeps its current value",
        ),
        StatusInfo(
            Status.UNEXPECTED.value,
            "+",
            "unexpected key",
            "unexpected keys",
            "#CC79A7",
            False,
            True,
            False,
            "checkpoint key the model does not have: ignored unless renamed",
        ),
    )
}

STATUSES: tuple[str, ...] = tuple(STATUS_INFO)
PROBLEM_STATUSES: tuple[str, ...] = tuple(s for s in STATUSES if s != Status.MATCH.value)
#: statuses whose tensors can be loaded as they are (a dtype difference is cast)
LOADABLE_STATUSES: tuple[str, ...] = tuple(s for s, i in STATUS_INFO.items() if i.loadable)
STATUS_LABELS: dict[str, str] = {s: i.label for s, i in STATUS_INFO.items()}
STATUS_COLOURS: dict[str, str] = {s: i.colour for s, i in STATUS_INFO.items()}

#: BatchNorm's running statistics and its step counter (buffer names)
BN_STATISTICS: tuple[str, str] = ("running_mean", "running_var")
BN_COUNTER = "num_batches_tracked"
#: BatchNorm buffer names (running statistics and the step counter)
BN_BUFFERS: tuple[str, ...] = (*BN_STATISTICS, BN_COUNTER)

#: where a checkpoint came from
SourceKind = Literal[
    "torch",
    "torch-legacy",
    "safetensors",
    "safetensors-index",
    "torch-index",
    "dcp",
    "mapping",
    "module",
]


def legend() -> list[dict[str, str]]:
    """The legend as the widget ships it to the browser (CSS variables come from ``colour``)."""
    return [
        {
            "status": i.status,
            "icon": i.icon,
            "label": i.label,
            "plural": i.plural,
            "colour": i.colour,
            "description": i.description,
        }
        for i in STATUS_INFO.values()
    ]
