"""Stage 2: line a checkpoint up with a model, or two checkpoints' values, without loading.

:func:`compare` returns a :class:`Comparison` of :class:`Row` s (one per key, with the status
torch's own loading would give it); :class:`Rename` rules pair keys that differ by a prefix or
a pattern; :func:`compare_values` streams two sources' tensors and says what changed.

Private modules: ``_compare`` (rows, suggestions, the dry run on a meta twin), ``_renames``
(rules and key pairing), ``_metadata`` (``_metadata`` versions torch passes to hooks),
``_diagnosis`` (config mismatch, collapsed layer keys), ``_tree`` (the one tree serialiser),
``_adapters`` (shape adapters), ``_lora`` (PEFT LoRA adapters), ``_values`` (value comparison).
"""

from ._compare import STATUSES, Comparison, Row, Suggestion, compare
from ._renames import Rename
from ._values import ValueComparison, compare_values

__all__ = [
    "STATUSES",
    "Comparison",
    "Rename",
    "Row",
    "Suggestion",
    "ValueComparison",
    "compare",
    "compare_values",
]
