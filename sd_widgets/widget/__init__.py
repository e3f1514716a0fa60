"""The widget layer: :class:`Explorer`, one anywidget over the core objects.

Only this package imports anywidget/ipywidgets; the logic it needs lives in the core and in
the plain-Python helpers of :mod:`sd_widgets.widget._payload`.
"""

from __future__ import annotations

from ._explorer import Explorer

__all__ = ["Explorer"]
