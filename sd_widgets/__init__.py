"""sd_widgets: see what ``load_state_dict`` would do before it does it.

Then choose what to load, load it safely, and see what changed.

Public API (see README): ``open_checkpoint``, ``compare``, ``Comparison.plan``,
``partial_load``, ``LoadReport``, ``Explorer``, the errors, and ``Rename`` rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .checkpoint import Checkpoint, CheckpointSource, TensorInfo, open_checkpoint
from .compare import (
    STATUSES,
    Comparison,
    Rename,
    Row,
    Suggestion,
    ValueComparison,
    compare,
    compare_values,
)
from .errors import (
    CheckpointChangedError,
    CheckpointError,
    LoadError,
    NotAStateDictError,
    UndoError,
    UnreadableCheckpointError,
    UnsafeCheckpointError,
)
from .load import LoadReport, partial_load
from .plan import LoadPlan

if TYPE_CHECKING:
    from .widget import Explorer

__all__ = [
    "STATUSES",
    "Checkpoint",
    "CheckpointChangedError",
    "CheckpointError",
    "CheckpointSource",
    "Comparison",
    "Explorer",
    "LoadError",
    "LoadPlan",
    "LoadReport",
    "NotAStateDictError",
    "Rename",
    "Row",
    "Suggestion",
    "TensorInfo",
    "UndoError",
    "UnreadableCheckpointError",
    "UnsafeCheckpointError",
    "ValueComparison",
    "__version__",
    "compare",
    "compare_values",
    "open_checkpoint",
    "partial_load",
]


def __getattr__(name: str) -> Any:
    # the widget layer is imported on first use, so the core never imports ipywidgets
    if name == "Explorer":
        from .widget import Explorer

        return Explorer
    raise AttributeError(f"module 'sd_widgets' has no attribute {name!r}")
