"""Reading checkpoints lazily: :func:`open_checkpoint` and one reader module per format.

- :mod:`.core` — :class:`TensorInfo`, :class:`CheckpointSource`, :class:`Checkpoint`
- :mod:`.paths` — checks made before any path is opened; format sniffing; file stamps
- :mod:`.unpickle` — allow-lists and trust; naming unsafe globals
- :mod:`.trust` — which pickled globals can run code (never allowed one at a time)
- :mod:`.torchfile` — ``torch.save`` zip archives (zip-bomb checks) and legacy pickles
- :mod:`.safetensors` — headers validated by the safetensors library
- :mod:`.index` — ``*.index.json`` sharded checkpoints, shards confined to their directory
- :mod:`.dcp` — ``torch.distributed.checkpoint`` directories
- :mod:`.memory` — mappings and modules; finding the weights in nested checkpoints
- :mod:`.opener` — :func:`open_checkpoint`

Safety: nothing from a file is executed unless the caller passes ``trust=True``; see
``SECURITY.md`` for the threat model.
"""

from .core import (
    TIED_SHOWN,
    Checkpoint,
    CheckpointSource,
    SourceLike,
    TensorInfo,
    TiedKeys,
    _type_summary,
    dtype_name,
    tied_preview,
)
from .dcp import read_dcp_metadata
from .memory import NOT_WEIGHTS, PREFERRED_KEYS, entry_text, split_entry
from .opener import open_checkpoint
from .paths import TORCH_SUFFIXES
from .safetensors import read_safetensors_header
from .trust import code_globals, runs_code
from .unpickle import global_name, unsafe_globals

__all__ = [
    "NOT_WEIGHTS",
    "PREFERRED_KEYS",
    "TIED_SHOWN",
    "TORCH_SUFFIXES",
    "Checkpoint",
    "CheckpointSource",
    "SourceLike",
    "TensorInfo",
    "TiedKeys",
    "_type_summary",
    "code_globals",
    "dtype_name",
    "entry_text",
    "global_name",
    "open_checkpoint",
    "read_dcp_metadata",
    "read_safetensors_header",
    "runs_code",
    "split_entry",
    "tied_preview",
    "unsafe_globals",
]
