"""Typed errors. Every message says what was found, what was expected and what to do next."""

from __future__ import annotations

__all__ = [
    "CheckpointChangedError",
    "CheckpointError",
    "LoadError",
    "NotAStateDictError",
    "UndoError",
    "UnreadableCheckpointError",
    "UnsafeCheckpointError",
]


class CheckpointError(ValueError):
    """A checkpoint could not be opened or does not hold a state dict."""


class UnreadableCheckpointError(CheckpointError):
    """The source is missing, empty, truncated, corrupt or of an unknown format."""


class CheckpointChangedError(UnreadableCheckpointError):
    """A file of an opened checkpoint changed on disk since it was opened.

    Its size, modification time or inode differ between :func:`sd_widgets.open_checkpoint` and
    a read of its tensors.

    Raised before any byte of the changed file is touched, instead of reading data that no
    longer matches what was listed (or a ``SIGBUS`` from a truncated memory-mapped file).
    ``path`` names the file. Re-open the checkpoint.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class UnsafeCheckpointError(CheckpointError):
    """The file needs globals that weights-only loading refuses to unpickle.

    ``globals`` names them. Nothing from the file was executed. Pass ``trust=True`` to
    :func:`sd_widgets.open_checkpoint` only for files from a source you trust.
    """

    def __init__(self, message: str, globals: list[str] | None = None) -> None:
        super().__init__(message)
        self.globals: list[str] = list(globals or [])


class NotAStateDictError(CheckpointError):
    """The source was read, but holds no tensors that could be a state dict."""


class LoadError(RuntimeError):
    """A partial load failed and was rolled back: the model is exactly as before.

    ``cause`` is the original exception; ``key`` the tensor being handled when it failed,
    when known.
    """

    def __init__(
        self, message: str, cause: BaseException | None = None, key: str | None = None
    ) -> None:
        super().__init__(message)
        self.cause = cause
        self.key = key
        if cause is not None:
            self.__cause__ = cause


class UndoError(RuntimeError):
    """``LoadReport.undo()`` cannot restore: already undone, or the model changed shape."""
