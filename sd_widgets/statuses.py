"""The one vocabulary: comparison statuses, how each is shown, and whether it can load.

Every other module (compare, plan, payload and the browser legend, plots, CLI) reads this table;
nothing restates a status string, label, icon or colour. Colours are Okabe–Ito (colour-blind
safe), and every status also has an icon and a label so colour is never the only signal.

The browser reads only the legend (:func:`legend`): besides how a status is shown, each entry
says what the front end decides by it — its ``tone`` (``ok | warn | error | info``, whose
colour ``tone_colour`` also colours messages, banners and warnings: ``--sdw-tone-<tone>``),
whether it is a ``problem``, whether it ``loadable`` as is, whether it loads with a ``cast``, and
which column ``differs`` (``shape``, ``dtype`` or ``""``). No status string appears in the
front end's code.
"""

from __future__ import annotations

import enum
from typing import Any, Literal, NamedTuple

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
    "TONES",
    "SourceKind",
    "Status",
    "StatusInfo",
    "Tone",
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
    TIED = "tied"

    def __str__(self) -> str:
        return self.value


#: how serious a status (or a message) is; the front end colours by tone, never by status name
Tone = Literal["ok", "warn", "error", "info"]
#: the colour of each tone: the colour of the status that leads it (Okabe–Ito)
TONES: dict[Tone, str] = {
    "ok": "#009E73",
    "warn": "#E69F00",
    "error": "#D55E00",
    "info": "#0072B2",
}


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
    #: how serious it is (colours of messages and warnings follow the tone)
    tone: Tone = "info"
    #: it loads, but cast to the model's dtype
    cast: bool = False
    #: the column whose value differs between the two sides
    differs: Literal["", "shape", "dtype"] = ""

    @property
    def problem(self) -> bool:
        """Whether the status is a problem: anything but a match or a tied key.

        A tied key is complete after the load (it is the same tensor as a key the checkpoint
        holds), so it is neither counted nor flagged as a problem.
        """
        return self.status not in (Status.MATCH.value, Status.TIED.value)


STATUS_INFO: dict[str, StatusInfo] = {
    i.status: i
    for i in (
        StatusInfo(
            Status.MATCH.value,
            "✓",
            "match",
            "matches",
            TONES["ok"],
            True,
            True,
            True,
            "same name, shape and dtype on both sides: loads as is",
            tone="ok",
        ),
        StatusInfo(
            Status.SHAPE_MISMATCH.value,
            "≠",
            "shape mismatch",
            "shape mismatches",
            TONES["error"],
            False,
            True,
            True,
            "same name, different shape: load_state_dict raises even with strict=False",
            tone="error",
            differs="shape",
        ),
        StatusInfo(
            Status.DTYPE_MISMATCH.value,
            "≈",
            "dtype mismatch",
            "dtype mismatches",
            TONES["warn"],
            True,
            True,
            True,
            "same name and shape, different dtype: loads, silently cast to the model's dtype",
            tone="warn",
            cast=True,
            differs="dtype",
        ),
        StatusInfo(
            Status.MISSING.value,
            "−",
            "missing parameter",
            "missing parameters",
            TONES["info"],
            False,
            False,
            True,
            "model parameter absent from the checkpoint: keeps its current value",
            tone="info",
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
            tone="info",
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
            tone="info",
        ),
        StatusInfo(
            Status.TIED.value,
            "⇔",
            "tied",
            "tied",
            # its own colour (a dark grey: it follows another key), as a tied load outcome is
            # drawn in the plots; its tone is ok: nothing is wrong
            "#555555",
            False,
            False,
            True,
            "absent from the checkpoint but the same tensor as a key it holds (a tied "
            "embedding): loading that key sets it too; a strict plain load_state_dict still "
            "lists it as missing",
            tone="ok",
        ),
    )
}

STATUSES: tuple[str, ...] = tuple(STATUS_INFO)
PROBLEM_STATUSES: tuple[str, ...] = tuple(s for s, i in STATUS_INFO.items() if i.problem)
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


def legend() -> list[dict[str, Any]]:
    """The legend as the widget ships it to the browser: one entry per status.

    Returns
    -------
    list of dict
        ``status``, ``icon``, ``label``, ``plural``, ``colour`` (CSS variables
        ``--sdw-c-<status>`` come from it), ``description``, and what the front end decides by:
        ``tone`` with its ``tone_colour`` (``--sdw-tone-<tone>``), ``problem``, ``loadable``,
        ``cast`` and ``differs`` (see the module docstring).
    """
    return [
        {
            "status": i.status,
            "icon": i.icon,
            "label": i.label,
            "plural": i.plural,
            "colour": i.colour,
            "description": i.description,
            "tone": i.tone,
            "tone_colour": TONES[i.tone],
            "problem": i.problem,
            "loadable": i.loadable,
            "cast": i.cast,
            "differs": i.differs,
        }
        for i in STATUS_INFO.values()
    ]
