"""The Explorer and the notebook's cells: the check after each cell, and a cell run again.

:func:`watch_cells` runs the staleness check after every cell (:mod:`._stale`).

:func:`replace_earlier_runs` closes the Explorers an earlier run of the same cell created. A
cell run again clears its output, so their views are gone; yet each would stay alive: ipywidgets
keeps every widget until ``close()``, IPython's output history (``Out``) keeps a cell's result,
and with it its undo snapshots (as large as the tensors its last load wrote: 6 GB for a
GPT-2-XL), its after-cell check, its global torch hooks and the model the run replaced: three
runs of a cell whose Explorer loaded 6 GB would hold 18 GB of snapshots. ``Explorer.close()``
releases the snapshots and lets go of the model, the comparison and the tree.

The cell is the one the front end names in the request that runs it (``metadata.cellId``;
JupyterLab and Notebook 7 send it, and the browser tests run both); a run is the request's
message id. Explorers one run creates are kept together (a cell may build several), and code
run outside a cell the front end names (a script, a button's handler, a thread, a front end that
sends no cell id) closes nothing.

:func:`close_with_comm` closes an Explorer whose host closed its comm: marimo does so when the
cell that built it runs again or is deleted (and sends no cell id).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..units import human_bytes

if TYPE_CHECKING:
    from ._explorer import Explorer

#: cell id → (message id of its latest run that created an Explorer, those Explorers)
_RUNS: dict[str, tuple[str, list[weakref.ref[Explorer]]]] = {}


def this_run() -> tuple[str, str] | None:
    """``(cell id, message id)`` of the notebook cell running now, or None.

    None outside IPython's kernel, and where the request has no cell id: a script, a console,
    a comm message (a button's handler), or a front end that does not send one.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets depends on IPython
        return None
    get_parent = getattr(get_ipython(), "get_parent", None)  # ipykernel's shell
    if get_parent is None:
        return None
    parent = get_parent() or {}
    header = parent.get("header") or {}
    cell, msg = (parent.get("metadata") or {}).get("cellId"), header.get("msg_id")
    if header.get("msg_type") != "execute_request" or not cell or not msg:
        return None
    return str(cell), str(msg)


def replace_earlier_runs(widget: Explorer, run: tuple[str, str] | None) -> str:
    """Close the Explorers an earlier run of ``run``'s cell created; note ``widget`` as this run's.

    ``run`` is :func:`this_run`'s answer (None: nothing is closed or noted). Returns what the
    new Explorer says about undo snapshots that went with them ("" when none did).
    """
    if run is None:
        return ""
    cell, msg = run
    known = _RUNS.get(cell)
    loads = nbytes = 0
    if known is None or known[0] != msg:
        earlier = [] if known is None else known[1]
        known = _RUNS[cell] = (msg, [])
        for ref in earlier:
            old = ref()
            if old is not None and old is not widget:
                kept = [r for r in old.reports if r.snapshot_nbytes]
                loads, nbytes = loads + len(kept), nbytes + sum(r.snapshot_nbytes for r in kept)
                old.close()
    known[1].append(weakref.ref(widget))
    if not loads:
        return ""
    return (
        "This cell ran again: the Explorer it built before was closed and the undo of its "
        f"{'load' if loads == 1 else f'{loads} loads'} ({human_bytes(nbytes)}) released; what "
        f"{'that load' if loads == 1 else 'those loads'} wrote stays in its model."
    )


def close_with_comm(widget: Explorer, comm: Any) -> None:
    """Close ``widget`` when its host closes ``comm``, its comm.

    marimo closes a widget's comm when the cell that built it runs again or is deleted, but
    never the widget: ipywidgets would keep it, with its model, its undo snapshots and its
    global torch hooks, for the rest of the session (checked in a real marimo app:
    ``tests/browser/test_marimo.py``). No public API says that a comm was closed, so the comm's
    own ``close`` is wrapped, on this comm object only. The close ``Explorer.close`` makes
    itself passes through it and changes nothing.
    """
    close = getattr(comm, "close", None)
    if close is None or getattr(close, "closes_explorer", False):
        return
    ref = weakref.ref(widget)

    def closed(*args: Any, **kwargs: Any) -> Any:
        try:
            return close(*args, **kwargs)
        finally:
            w = ref()  # None when the widget is gone (the comm is being collected with it)
            if w is not None and w.comm is comm:
                w.close()

    closed.closes_explorer = True  # type: ignore[attr-defined]
    with contextlib.suppress(AttributeError, TypeError):  # a comm that takes no attributes
        comm.close = closed


def watch_cells(widget: Explorer) -> Callable[[], None] | None:
    """Check for staleness after every notebook cell (at most about 20 ms: see :mod:`._stale`).

    Returns what removes the check (``Explorer.close``), or None outside IPython.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    ip = get_ipython()
    if ip is None or not hasattr(ip, "events"):
        return None
    ref = weakref.ref(widget)

    def after_cell(*_args: Any) -> None:
        w = ref()
        if w is None:
            remove()
            return
        w._after_cell()

    def remove() -> None:
        with contextlib.suppress(ValueError):
            ip.events.unregister("post_run_cell", after_cell)

    ip.events.register("post_run_cell", after_cell)
    return remove
