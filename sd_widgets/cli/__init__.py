"""The ``sd-widgets`` command: ``inspect`` a checkpoint, ``diff`` it against a model or another.

Everything a file holds is escaped before it reaches the terminal (:func:`escape_text`).
:func:`load_model` builds the model a ``--model`` spec names (``MODULE:CALLABLE`` or
``hf:CONFIG``), on the meta device by default; a bad spec raises :class:`CLIError`.

Private modules: ``_main`` (arguments, the commands), ``_model`` (``--model``), ``_output``
(escaping, one streamed writer per format).
"""

from ._main import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK, main
from ._model import load_model
from ._output import CLIError, escape_text

__all__ = [
    "EXIT_DIFFERENT",
    "EXIT_ERROR",
    "EXIT_OK",
    "CLIError",
    "escape_text",
    "load_model",
    "main",
]
