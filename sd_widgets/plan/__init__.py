"""Stage 3: choose what to load.

:class:`LoadPlan` (from :meth:`Comparison.plan`) says which checkpoint tensor goes into which
model tensor, with which cast or adapter, and exports itself as code.

Private modules: ``_plan`` (the one planning path, selection), ``_codegen`` (``to_code``).
"""

from ._plan import LoadPlan

__all__ = ["LoadPlan"]
