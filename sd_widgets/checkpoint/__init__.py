"""Reading checkpoints lazily (package; see :mod:`sd_widgets.checkpoint.core`)."""

from .core import (  # noqa: F401
    NOT_WEIGHTS,
    PREFERRED_KEYS,
    Checkpoint,
    CheckpointSource,
    SourceLike,
    TensorInfo,
    _human_bytes,
    dtype_name,
    open_checkpoint,
    read_dcp_metadata,
    read_safetensors_header,
    unsafe_globals,
)

__all__ = [
    "Checkpoint",
    "CheckpointSource",
    "SourceLike",
    "TensorInfo",
    "dtype_name",
    "open_checkpoint",
]
