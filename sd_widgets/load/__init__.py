"""Stage 4: load a plan transactionally and see what changed.

:func:`partial_load` runs the model's own loading once inside a transaction (snapshot the
touched tensors, load, verify, restore on failure) and returns a :class:`LoadReport` with
before/after statistics and ``undo()``.

Private modules: ``_load`` (:func:`partial_load`), ``_transaction`` (snapshot, verify, undo),
``_report`` (:class:`LoadReport`), ``_stats`` (the one statistics path), ``_plots``
(histograms as images), ``_distributed`` (sharded models under ``torch.distributed``).
"""

from ._load import partial_load
from ._report import LoadReport

__all__ = ["LoadReport", "partial_load"]
