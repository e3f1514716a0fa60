"""Reading checkpoints lazily: :func:`open_checkpoint` and one private reader module per format.

- ``_core`` — :class:`TensorInfo`, :class:`CheckpointSource`, :class:`Checkpoint`
- ``_paths`` — checks made before any path is opened; format sniffing; file stamps
- ``_unpickle`` — allow-lists and trust; naming unsafe globals
- ``_trust`` — which pickled globals can run code (never allowed one at a time)
- ``_torchfile`` — ``torch.save`` zip archives (zip-bomb checks) and legacy pickles
- ``_safetensors`` — headers validated by the safetensors library
- ``_index`` — ``*.index.json`` sharded checkpoints, shards confined to their directory
- ``_dcp`` — ``torch.distributed.checkpoint`` directories
- ``_memory`` — mappings and modules; finding the weights in nested checkpoints
- ``_opener`` — :func:`open_checkpoint`

Safety: nothing from a file is executed unless the caller passes ``trust=True``; see
``SECURITY.md`` for the threat model. :func:`runs_code` says whether an entry of
``trust=[...]`` could let a file run code (``open_checkpoint`` refuses such entries), so an app
can offer only data classes.
"""

from ._core import Checkpoint, CheckpointSource, SourceLike, TensorInfo, listing_order
from ._opener import open_checkpoint
from ._trust import runs_code

__all__ = [
    "Checkpoint",
    "CheckpointSource",
    "SourceLike",
    "TensorInfo",
    "listing_order",
    "open_checkpoint",
    "runs_code",
]
