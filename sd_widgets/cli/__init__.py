"""The ``sd-widgets`` command: ``inspect``, ``diff``, ``plan`` and ``load`` on files.

Everything a file holds is escaped before it reaches the terminal (:func:`escape_text`).
"""

from ._main import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK, escape_text, main

__all__ = ["EXIT_DIFFERENT", "EXIT_ERROR", "EXIT_OK", "escape_text", "main"]
