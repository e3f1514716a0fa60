"""Typed errors. Every message says what was found, what was expected and what to do next."""

from __future__ import annotations

__all__ = [
    "CheckpointChangedError",
    "CheckpointError",
    "LoadError",
    "NotAStateDictError",
    "RenameTimeoutError",
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

    ``globals`` names them. ``runs_code`` names those among them (or among the ``trust=[...]``
    entries refused) that can run code when called: eval, os.system, getattr, subprocess ...
    When it is not empty, no ``trust=[...]`` allows the file; only ``trust=True`` loads it,
    which runs that code. ``opt_in`` is False where no ``trust`` opens the file at all (a DCP
    ``.metadata`` is read against its exact allow-list whatever ``trust`` says), so nothing
    offers one. Nothing from the file was executed. Pass ``trust=True`` to
    :func:`sd_widgets.open_checkpoint` only for files from a source you trust.
    """

    def __init__(
        self,
        message: str,
        globals: list[str] | None = None,
        runs_code: list[str] | None = None,
        *,
        opt_in: bool = True,
    ) -> None:
        super().__init__(message)
        self.globals: list[str] = list(globals or [])
        self.runs_code: list[str] = list(runs_code or [])
        self.opt_in = opt_in


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


class RenameTimeoutError(ValueError):
    """A regex rename rule took too long on a key (catastrophic backtracking).

    ``rule`` is the pattern, ``key`` the key it was matched against. Keys come from files and
    patterns from users: a nested repetition such as ``(a+)+$`` is exponential on a crafted
    key, so every match runs under a time bound. Simplify the pattern.
    """

    def __init__(self, message: str, rule: str = "", key: str = "") -> None:
        super().__init__(message)
        self.rule = rule
        self.key = key


class UndoError(RuntimeError):
    """``LoadReport.undo()`` cannot or will not restore.

    Already undone, released (``report.release()``), the model is gone or changed shape, or
    (``changed`` not empty) tensors the load wrote changed after it: a training step or an
    in-place edit that undo would overwrite. ``report.undo(force=True)`` restores anyway.
    """

    def __init__(self, message: str, changed: list[str] | None = None) -> None:
        super().__init__(message)
        #: keys of the tensors changed since the load (empty when that is not the reason)
        self.changed: list[str] = list(changed or [])
