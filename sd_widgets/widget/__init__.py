"""The widget layer: :class:`Explorer`, one anywidget over the core objects.

Only this package imports anywidget/ipywidgets; the logic it needs lives in the core and in
the plain-Python modules beside it (``_tree_payload``, ``_selection``, ``_panels``,
``_results``, ``_summary``, ``_values_view``).
"""

from __future__ import annotations

from ._explorer import Explorer

__all__ = ["Explorer"]
