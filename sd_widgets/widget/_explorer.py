"""``Explorer``: the checkpoint and the model side by side, choose what to load, load, undo.

A thin view over the core objects: the :class:`~sd_widgets.Comparison` is serialised once per
change into ONE compact tree payload (:func:`._tree_payload.payload_from_comparison`); every question
("can this key be selected?", "does an adapter apply?") is asked of the comparison's rows, not
of that serialised copy. Synced traits carry the state (``docs/widget-protocol.md`` lists each
trait and action); traits the browser may set are cleaned by ``@traitlets.validate``. User
gestures arrive as custom messages ``{"action": ...}`` handled by :meth:`Explorer.handle_action`,
which a test (or a script) can call directly; every action is registered once, with its label.

Errors never escape into the kernel log: every handler catches its exception and puts a
readable message into :attr:`Explorer.message` (traceback in ``message["detail"]`` and
:attr:`Explorer.last_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import threading
import traceback
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

import anywidget
import torch
import traitlets as t
from torch import nn

from .. import errors
from ..checkpoint import Checkpoint, open_checkpoint
from ..compare._compare import Comparison
from ..compare._renames import parse_renames
from ..compare._values import ValueComparison
from ..load._load import LoadReport
from ..plan._codegen import name_problem
from ..plan._plan import BN_POLICIES, LoadPlan
from ..units import escape_text, gc_paused, human_bytes
from . import (
    _cells,
    _panels,
    _results,
    _selection,
    _summary,
    _texts,
    _tree_payload,
)
from ._actions import ACTIONS
from ._stale import ModelWatch

#: The front end as it ships: ``static/*.js`` are ES modules that import what they use, bundled
#: from the entry ``static/explorer.js`` (its default export is anywidget's ``render``) into one
#: ES module, and ``static/explorer.css`` with the stylesheets it imports into one stylesheet, by
#: ``npm run build`` (build.mjs, a pinned esbuild). The offline report inlines the same two files.
BUNDLE = pathlib.Path(__file__).parent / "static" / "bundle"
ESM = (BUNDLE / "explorer.js").read_text(encoding="utf-8")
CSS = (BUNDLE / "explorer.css").read_text(encoding="utf-8")
TABS = ("preview", "renames", "code", "results")
#: default RAM for the undo snapshots of loads before the latest one (1 GiB)
UNDO_BUDGET = 2**30


class Explorer(anywidget.AnyWidget):
    """Explore a checkpoint against a live model; select, load, inspect and undo.

    ``Explorer(model, source)`` opens ``source`` (anything :func:`sd_widgets.open_checkpoint`
    accepts) and compares it with ``model``; ``Explorer(comparison)`` reuses a
    :class:`~sd_widgets.Comparison`. ``Explorer(sdw.compare_values(before, after))`` shows a
    value comparison at once: every row and module with its change, and with two checkpoints
    (no model) only what there is to see (nothing is offered for selecting or loading).
    ``renames`` are initial rename rules (shown, removable),
    ``bn`` the initial BatchNorm policy, ``select`` the initial selection (``"loadable"``:
    everything that can be loaded as is; ``"none"``), ``model_name`` the variable the Code tab
    loads into. ``undo_budget`` (bytes, default 1 GiB) is the RAM the undo snapshots of loads
    before the latest may keep: past it the oldest are released (``report.release()``) with a
    message; the latest load's undo is always kept. ``source_name`` is what the title calls the
    checkpoint (default: its description, path included), e.g. an uploaded file's own name.

    The model is the caller's own object: "Load selected" changes it in place. A change made to
    it outside the widget (a plain ``load_state_dict``, an optimizer step, an edit in a cell) is
    detected with public torch hooks and value fingerprints (:mod:`._stale`) and shown as a stale
    view with a Refresh action.
    """

    _esm = ESM
    _css = CSS
    #: a selection gesture's result while it is assigned (the validator need not clean it)
    _clean_selection: list[str] | None = None
    #: True inside :meth:`send_state` (``selected_keys`` may then go out as a ``_JSONList``)
    _sending_state: bool = False
    #: how many times the preview was computed (a rule change sets the selection, whose observer
    #: computes the preview; the comparison computes it only when that did not happen)
    _n_previews: int = 0

    tree = t.Dict().tag(sync=True, to_json=lambda value, widget: widget._tree_json(value))
    """The comparison as one compact columnar payload (see :mod:`sd_widgets.widget._tree_payload`).
    Python → browser; replaced when rename rules re-align the tree or Refresh re-compares.
    Sent as one binary buffer of UTF-8 JSON (``lib.js`` ``decodeTree`` parses it), so
    ipywidgets does not walk tens of thousands of list items looking for buffers."""

    selected_keys = t.List[str]().tag(
        sync=True, to_json=lambda value, widget: widget._selection_json(value)
    )
    """Row keys chosen for loading, in tree order (two-way). Keys that cannot be loaded (and
    anything that is not a key of the tree) are dropped by the validator whoever sets them.
    On the wire a plain JSON list of strings; in an update message it skips ipywidgets' walk
    for binary buffers (``_selection_json``), which cost a 30,000-key click ~5-18 ms."""

    preview = t.Dict().tag(sync=True)
    """What the selection's OrderedDict holds: ``n_tensors``, ``n_params``, ``nbytes``, the first
    500 ``keys`` (``n_keys_total``), ``skipped`` [key, reason] pairs and the BN policy."""

    suggestions = t.List(t.Dict()).tag(sync=True)
    """Rename suggestions (prefix rules first, then key pairs), each with the rule accepting it
    adds; accepted with ``{"action": "accept_suggestion", "id": ...}``."""

    banner = t.Dict().tag(sync=True)
    """The one rename rule that pairs up most missing and unexpected keys (``{id, head, label,
    what, fixes, text, n_missing, n_unexpected}``), shown above the tree with an Apply button;
    ``{}`` when none."""

    lora = t.Dict().tag(sync=True)
    """The PEFT LoRA adapter the checkpoint is (``_panels.lora_payload``: ``{text, describe,
    can_merge, why_not, merge_label, merge_title, merged, pairs, n_pairs, pairs_label}``), shown
    above the tree with a "Merge into the model's weights" button (``merge_lora``); ``{}`` for
    any other checkpoint."""

    rename_rules = t.List(t.Dict()).tag(sync=True)
    """Rename rules in force, ``{"kind", "old", "new", "label"}`` each, applied in order to
    checkpoint keys (two-way). Setting it re-aligns the tree; invalid rules are refused."""

    bn_policy = t.Unicode("load").tag(sync=True)
    """BatchNorm running statistics: ``"load"`` from the checkpoint, ``"keep"`` the model's, or
    ``"reset"`` them after loading (two-way; always one of the three)."""

    adapters = t.Dict().tag(sync=True)
    """Row key → adapter (``"overlap"``) for shape mismatches to load anyway (two-way)."""

    tab = t.Unicode("preview").tag(sync=True)
    """The visible tab: ``preview``, ``renames``, ``code`` or ``results`` (two-way; the code
    listing is built only while it is ``code``)."""

    model_name = t.Unicode("model").tag(sync=True)
    """The variable name the exported code loads into: a Python identifier (setting anything
    else raises ``TraitError``; the browser sends ``set_model_name``, refused names land in
    ``code_error``)."""

    code_error = t.Unicode("").tag(sync=True)
    """Why the last ``model_name`` was refused ("" when it was fine)."""

    code = t.Unicode("").tag(sync=True)
    """``plan.to_code(model_name=...)`` for the current selection: the same partial load in
    plain torch. Kept up to date while the Code tab is shown (a 30,000-key listing is
    megabytes)."""

    message = t.Dict().tag(sync=True)
    """The last notice: ``{"level": "info"|"success"|"warning"|"error", "text", "detail"}``;
    empty when dismissed."""

    error = t.Dict().tag(sync=True)
    """The error state when no comparison could be made: ``{title, text, fix, kind}``."""

    busy = t.Bool(False).tag(sync=True)
    """True while anything long runs (rule change, load, statistics, plots, undo, refresh)."""

    busy_text = t.Unicode("").tag(sync=True)
    """What is running ("Re-aligning the tree…", "Computing statistics…")."""

    stale = t.Dict().tag(sync=True)
    """``{text, n_changed, keys}`` when the model changed outside the widget since it compared
    or loaded; ``{}`` otherwise. The ``refresh`` action re-compares."""

    can_undo = t.Bool(False).tag(sync=True)
    """True when a load can be undone."""

    last_load = t.Dict().tag(sync=True)
    """Summary of the last load or undo: ``{"text", "loaded", "skipped", "undone"}``."""

    results = t.Dict().tag(sync=True)
    """Per-tensor results of the last load (see :func:`._results.results_payload`):
    ``{state, columns, data, n}``; ``state`` is ``none``, ``computing``, ``ready`` or
    ``stale``."""

    meta_leftovers = t.Dict().tag(sync=True)
    """After a load into a meta-device model: ``{n, keys, text}`` of tensors still on meta."""

    weight_sets = t.List(t.Dict()).tag(sync=True)
    """Weight sets of a training checkpoint, ``{key, n_tensors, current}`` each (two or more),
    switched with ``{"action": "switch_weights", "key": ...}``."""

    histogram_keys = t.List(t.Unicode()).tag(sync=True)
    """Every tensor of the last load that can be plotted, most changed first."""

    histograms = t.List(t.Dict()).tag(sync=True)
    """Before/after histogram grid of the most-changed tensors: ``{"key", "src"}`` (PNG)."""

    histogram_key = t.Unicode("").tag(sync=True)
    """The tensor picked in the browser (two-way); its histogram lands in ``histogram``."""

    histogram = t.Dict().tag(sync=True)
    """Histogram of ``histogram_key``: ``{"key", "src"}``."""

    bn_modules = t.List(t.Unicode()).tag(sync=True)
    """Every BatchNorm module whose running statistics the last load changed."""

    bn_module = t.Unicode("").tag(sync=True)
    """The BatchNorm module plotted in ``bn_plot`` (two-way; one of ``bn_modules``)."""

    bn_plot = t.Dict().tag(sync=True)
    """BatchNorm running mean/variance of ``bn_module`` before vs after: ``{"src", "module",
    "modules"}`` or ``{"text"}``."""

    values = t.Dict().tag(sync=True)
    """The value view (``{"action": "compare_values"}``, or at once for
    ``Explorer(sdw.compare_values(a, b))``): the model's (or checkpoint ``a``'s) values against
    the checkpoint's, per key and module (``_values_view.values_payload``); ``{"state": "none"}``
    before, ``"stale"`` once a load, undo, refresh or rename changed the model or the rows."""

    value_plot = t.Dict().tag(sync=True)
    """Before/after and difference histograms of one compared key
    (``{"action": "value_plot", "key": ...}``): ``{"key", "src"}``."""

    def __init__(
        self,
        model: nn.Module | Comparison | ValueComparison,
        source: Any = None,
        *,
        renames: Any = None,
        key: str | None = None,
        trust: bool | Iterable[Any] = False,
        bn: str = "load",
        select: str = "loadable",
        map_location: Any = "cpu",
        max_histograms: int = 9,
        model_name: str = "model",
        undo_budget: int = UNDO_BUDGET,
        source_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        _texts.check_arguments(model, source, key)
        if not isinstance(undo_budget, int) or isinstance(undo_budget, bool) or undo_budget < 0:
            raise ValueError(
                f"undo_budget={undo_budget!r}: give the bytes of RAM older loads' undo "
                "snapshots may keep, e.g. 2**30 (1 GiB; 0 keeps only the latest load's undo)"
            )
        if select not in ("loadable", "none"):
            raise ValueError(f"select={select!r}: use 'loadable' or 'none'")
        if bn not in BN_POLICIES:
            raise ValueError(f"bn={bn!r} is not a BatchNorm policy; use one of {BN_POLICIES}")
        problem = name_problem(model_name)
        if problem:
            raise ValueError(f"model_name={model_name!r}: {problem}")
        # plain attributes first: the validators read them
        self.max_histograms = int(max_histograms)
        #: bytes of undo snapshots kept for loads before the latest (see :meth:`_keep_undo_budget`)
        self.undo_budget = undo_budget
        #: one action at a time, whatever thread sends it (two undos must not undo one load twice)
        self._lock = threading.RLock()
        #: the exception behind the last error message, and its formatted traceback
        self.last_error: BaseException | None = None
        self.last_traceback: str = ""
        self._reports: list[LoadReport] = []
        self._cmp: Comparison | None = None
        #: the plan is the LoRA adapter's merge (the ``merge_lora`` action chose it) until the
        #: selection or the comparison changes
        self._lora_merge = False
        #: the last value comparison shown in ``values`` (None before one)
        self._values: ValueComparison | None = None
        #: what values are read from on the model's side: the model, or a value comparison's
        #: reference checkpoint (None: a comparison of two checkpoints' keys only)
        self._value_a: nn.Module | Checkpoint | None = None
        self._given_values: ValueComparison | None = None
        self._index = _tree_payload.TreeIndex(_tree_payload.empty_payload())
        self._selectable_cache: tuple[Any, Comparison, frozenset[str]] | None = None
        self._sizes_cache: tuple[Comparison | None, _panels.RowSizes] | None = None
        self._select_loadable = select == "loadable"
        if source_name is not None and not isinstance(source_name, str):
            raise TypeError(f"source_name={source_name!r}: give a string or None")
        self._source_name = source_name
        self._open = {"source": source, "trust": trust, "map_location": map_location}
        #: what the model is compared with to tell it changed outside (None: no model)
        self._watch: ModelWatch | None = None
        #: actions (and deferred work) running in this thread's lock; a check after a cell
        #: that finds one running waits for its end (``_check_pending``)
        self._depth = 0
        self._check_pending = False
        self._jobs = 0  # busy-sign jobs running or deferred (busy_text stays while any is)
        self._acting = 0  # of those, gestures' own work (busy: Load and Undo wait)
        self._generation = 0
        self._cell_hook: Callable[[], None] | None = None
        #: set by :meth:`close`: every action then says so and does nothing
        self._closed = False
        # this cell's earlier run built Explorers whose output the run cleared: closed first,
        # so their undo snapshots are given back before this one builds or loads anything
        replaced = _cells.replace_earlier_runs(self, _cells.this_run())
        super().__init__(**kwargs)
        cmp: Comparison | None = None
        source_label = ""
        given_values = model if isinstance(model, ValueComparison) else None
        if given_values is not None:
            model = given_values.comparison
            self._value_a = given_values.a
            #: shown by the first compare_values (its rows may be read already)
            self._given_values = given_values
        if isinstance(model, Comparison):
            cmp = model
            self._model = model.model
            if self._model is not None:
                self._value_a = self._model
            if renames is not None:
                cmp = model.with_renames(renames)
        else:
            assert isinstance(model, nn.Module)  # check_arguments said so
            self._model = self._value_a = model
            try:
                with gc_paused():
                    ckpt = open_checkpoint(source, key=key, trust=trust, map_location=map_location)
                    cmp = Comparison(model, ckpt, parse_renames(renames))
            except (errors.CheckpointError, OSError, ValueError) as exc:
                source_label = source_name or _texts.describe_source(source)
                self._report_error(exc, "Opening the checkpoint")
                self.error = _texts.error_state(exc, source)
        with self.hold_sync():
            self.bn_policy = bn
            self.model_name = model_name
            if cmp is not None:
                self._set_comparison(cmp, initial_select=select)
            else:
                self.tree = _tree_payload.empty_payload(
                    source=source_label, model=_texts.model_label(self._model)
                )
                self.preview = _panels.empty_preview()
            self.results = _results.results_none()
            if replaced and not self.error:
                self._set_message("info", replaced)
            if given_values is not None:
                self.handle_action({"action": "compare_values"})
        self._rebaseline()
        self.observe(self._on_selection_inputs, names=["selected_keys"])
        self.observe(self._on_adapters, names=["adapters"])
        self.observe(self._on_plan_inputs, names=["bn_policy", "model_name"])
        self.observe(self._on_tab, names=["tab"])
        self.observe(self._on_rename_rules, names=["rename_rules"])
        self.observe(self._on_histogram_key, names=["histogram_key"])
        self.observe(self._on_bn_module, names=["bn_module"])
        self.on_msg(self._on_custom_msg)
        # a host that closes the comm (marimo, when this cell runs again) closes the Explorer
        self.observe(self._on_comm, names=["comm"])
        _cells.close_with_comm(self, self.comm)
        #: the after-cell check IPython runs (None outside IPython)
        self._cell_hook = _cells.watch_cells(self)

    # ----------------------------------------------------------------------------------------
    # public read-only views
    # ----------------------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module | None:
        """The live model (the caller's object)."""
        return self._model

    @property
    def comparison(self) -> Comparison | None:
        """The comparison the tree currently shows (after rename rules)."""
        return self._cmp

    @property
    def reports(self) -> list[LoadReport]:
        """Load reports of the loads that can still be undone, oldest first."""
        return list(self._reports)

    def plan(self) -> LoadPlan:
        """The :class:`~sd_widgets.LoadPlan` the current selection, BN policy and adapters make.

        After "Merge into the model's weights" (a LoRA adapter), the adapter's merge,
        ``comparison.plan(lora="merge")``, until the selection or the comparison changes.
        """
        if self._cmp is None:
            raise ValueError("no checkpoint is open: " + (self.message.get("text") or ""))
        if self._lora_merge:
            return self._cmp.plan(lora="merge")
        return self._cmp.plan(
            include=list(self.selected_keys), bn=self.bn_policy, adapt=dict(self.adapters) or None
        )

    def to_html(self, path: str | os.PathLike[str] | Any) -> pathlib.Path | None:
        """Write a standalone, offline HTML report of this comparison to ``path``.

        One self-contained file (the widget's own front end and the tree payload inlined,
        nothing fetched): the side-by-side tree, legend, search, filters and problems strip,
        read-only (no kernel; nothing selects or loads), naming the checkpoint, the model (of
        two checkpoints: "b (after)" and "a (before)") and the sd_widgets version that wrote it. ``path`` may also be a text stream. Returns the
        path written (None for a stream). See :mod:`sd_widgets.widget._html`.
        """
        from ._html import write_report

        return write_report(self, path)

    def check_stale(self) -> bool:
        """Compare the model with what the widget last saw (see :mod:`._stale`).

        Tensors replaced, optimizer steps, and the values of the tensors one check can read
        within 20 ms (those of the latest load first). Set :attr:`stale` and return True when
        something changed.
        """
        if self._watch is None:
            return False
        changed = self._watch.changed()
        if not changed:
            return bool(self.stale)
        n = len(changed)
        text = (
            f"The model changed outside this explorer after it compared/loaded: {n} "
            f"tensor{'s' if n != 1 else ''} ({', '.join(changed[:3])}"
            f"{', …' if n > 3 else ''}) {'was' if n == 1 else 'were'} modified "
            "(load_state_dict, an optimizer step, "
            "…). The statistics and plots below describe the old values. Refresh to "
            "compare the model as it is now."
        )
        with self.hold_sync():
            self.stale = {"text": text, "n_changed": n, "keys": changed[:10]}
            if self.results.get("state") in ("ready", "computing"):
                self.results = {**self.results, "state": "stale"}
            self._values_stale()  # its rows describe the model's old values too
        return True

    def _on_comm(self, change: Mapping[str, Any]) -> None:
        _cells.close_with_comm(self, change["new"])

    def close(self) -> None:
        """Close the widget and let go of everything it held: a closed Explorer acts on nothing.

        The after-cell check and the global torch hooks go; every load's undo snapshot is
        released (``report.release()``: a report kept elsewhere says why it cannot undo), and
        the model, the comparison, the tree and the reports are let go (``model`` and
        ``comparison`` are None, ``reports`` is empty). Running the Explorer's cell again closes
        the one it built before: IPython's ``Out`` keeps that object, but nothing it held, so
        the model a re-run replaced can be freed.
        """
        # (also called by ipywidgets' __del__, on an object __init__ may not have finished)
        lock = getattr(self, "_lock", None)
        # an action running in another thread (a comm handler's load) ends first
        with lock if lock is not None else contextlib.nullcontext():
            self._let_go()

    def _let_go(self) -> None:
        """:meth:`close`'s work, with the widget held (once: closing the comm calls it again)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        remove, self._cell_hook = getattr(self, "_cell_hook", None), None
        if remove is not None:
            remove()
        watch = getattr(self, "_watch", None)
        if watch is not None:
            watch.close()
        for report in getattr(self, "_reports", ()):
            report.release(why="its Explorer was closed")
        self._generation = getattr(self, "_generation", 0) + 1  # deferred plot work stops
        super().close()
        opened = getattr(self, "_cmp", None) is not None
        # a report's plan holds the comparison, and the comparison the model
        self._reports = []
        self._model = self._value_a = self._watch = None
        self._cmp = self._values = self._given_values = None
        self._selectable_cache = self._sizes_cache = None
        self.__dict__.pop("_tree_json_cache", None)
        if not opened:
            return  # nothing shown (or __init__ did not finish)
        empty = _tree_payload.empty_payload()
        self._index = _tree_payload.TreeIndex(empty)
        with self.hold_trait_notifications():  # the view is gone: nothing is sent
            self.tree = empty
            self.selected_keys = []
            self.can_undo = False
            self.message = {"level": "info", "text": "This Explorer was closed."}

    def __repr__(self) -> str:

        p = self.tree or _tree_payload.empty_payload()
        counts = ", ".join(_summary.count_phrases(p)) or "no keys"
        # a file's name reaches a terminal here: its control characters are written as escapes
        sides = escape_text(f"{p.get('model') or 'model'} ← {p.get('source') or 'checkpoint'}")
        return (
            f"Explorer({sides}: "
            f"{p.get('n_keys', 0)} keys, {counts}; {len(self.selected_keys)} selected)"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        p = self.tree or _tree_payload.empty_payload()
        n = len(self.selected_keys)
        data["text/plain"] = _summary.summary_text(p, n_selected=n)
        data["text/html"] = _summary.summary_html(p, n_selected=n)
        return data, metadata

    # ----------------------------------------------------------------------------------------
    # the one entry point for gestures
    # ----------------------------------------------------------------------------------------
    def handle_action(self, content: Mapping[str, Any]) -> None:
        """Handle one gesture from the front end, e.g. ``{"action": "load"}``.

        The actions and their fields are listed in :data:`ACTIONS` and
        ``docs/widget-protocol.md``. Never raises: failures become :attr:`message`.
        """
        name = content.get("action") if isinstance(content, Mapping) else None
        action = ACTIONS.get(name) if isinstance(name, str) else None
        if action is None:
            self._set_message("error", f"Unknown widget action {name!r}; nothing was done.")
            return
        # one action at a time: two threads (or a thread and the kernel) sending "undo" at once
        # must see each other's result, not both undo the same load
        with self._exclusive(), self._guard(action.label):
            if self._closed:  # (checked holding the widget: close() waits for a running action)
                self._set_message(
                    "warning",
                    f"{action.label}: this Explorer was closed (its cell ran again, or close() "
                    "was called), which let go of its model and released the undo of its "
                    "loads. Build a new one: sdw.Explorer(model, checkpoint).",
                )
                return
            # outside changes happen in notebook cells, which are checked after each run: a
            # click then costs nothing extra; long actions (and scripts) check first
            if action.busy_text is not None or not self._cell_hook:
                self.check_stale()
            if action.busy_text is None:  # quick: one update message back
                with self.hold_sync():
                    action.handler(self, content)
                return
            with self._busy(action.busy_text):
                action.handler(self, content)

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        self.handle_action(content if isinstance(content, Mapping) else {})

    def _values_stale(self) -> None:
        """The model or the rows changed after the value comparison: say so.

        Compare again refreshes.
        """
        if (self.values or {}).get("state") == "ready":
            self.values = {**self.values, "state": "stale"}

    # ----------------------------------------------------------------------------------------
    # validators (whoever sets the trait: browser or Python)
    # ----------------------------------------------------------------------------------------
    @t.validate("selected_keys")
    def _valid_selection(self, proposal: Any) -> list[str]:
        value = proposal["value"]
        clean = self._clean_selection
        if clean is not None and value is clean:
            return clean  # a gesture's result, cleaned against the same selectable set
        return _selection.clean_selection(
            self._index, value or (), selectable=self._selectable_set()
        )

    @t.validate("adapters")
    def _valid_adapters(self, proposal: Any) -> dict[str, str]:
        cmp = self._cmp
        return {
            k: v
            for k, v in dict(proposal["value"] or {}).items()
            if cmp is not None and k in cmp and v in cmp[k].adapters
        }

    @t.validate("bn_policy")
    def _valid_bn(self, proposal: Any) -> str:
        value = proposal["value"]
        if value not in BN_POLICIES:
            raise t.TraitError(f"bn_policy={value!r}: use one of {BN_POLICIES}")
        return value

    def send_state(self, key: Any = None) -> None:
        """Send state as ipywidgets does; :attr:`selected_keys` goes out as a :class:`_JSONList`."""
        self._sending_state = True
        try:
            super().send_state(key=key)
        finally:
            self._sending_state = False

    def _selection_json(self, value: list[str]) -> list[str] | _JSONList:
        """Encode :attr:`selected_keys` (its ``to_json``): the same JSON list of strings.

        In an update message (:meth:`send_state`) it is wrapped in a :class:`_JSONList`, which
        ipywidgets' buffer walk passes over (it descends into lists and tuples only) and the
        kernel's JSON encoder writes as the list it holds. Elsewhere — the comm's open, the
        comparison with what the browser just sent (the property lock), embedding — it is the
        plain list those code paths compare or encode with the standard ``json`` module.
        """
        if (
            self._sending_state
            and "selected_keys" not in self._property_lock
            and _encodes_iterables(self.comm)
        ):
            return _JSONList(value)
        return list(value)

    def _tree_json(self, value: dict) -> memoryview:
        """Encode :attr:`tree` for the browser (its ``to_json``), once per payload.

        The comm's open and a later update send the same payload; it is encoded once.
        """
        cached = self.__dict__.get("_tree_json_cache")
        if cached is None or cached[0] is not value:
            cached = self._tree_json_cache = (value, _tree_payload.tree_to_json(value))
        return cached[1]

    @t.validate("tab")
    def _valid_tab(self, proposal: Any) -> str:
        return proposal["value"] if proposal["value"] in TABS else self.tab

    @t.validate("model_name")
    def _valid_model_name(self, proposal: Any) -> str:
        value = str(proposal["value"]).strip()
        problem = name_problem(value)
        if problem is not None:
            raise t.TraitError(f"model_name={value!r}: {problem}")
        return value

    @t.validate("histogram_key")
    def _valid_histogram_key(self, proposal: Any) -> str:
        value = str(proposal["value"] or "")
        return value if value == "" or value in self.histogram_keys else self.histogram_key

    @t.validate("bn_module")
    def _valid_bn_module(self, proposal: Any) -> str:
        value = str(proposal["value"] or "")
        if value in self.bn_modules:
            return value
        return self.bn_modules[0] if self.bn_modules else ""

    # ----------------------------------------------------------------------------------------
    # observers
    # ----------------------------------------------------------------------------------------
    def _on_selection_inputs(self, change: dict) -> None:
        with self._guard("Updating the selection"):
            if list(change["new"]) != list(change["old"]):
                self._lora_merge = False  # a chosen selection is the plan again
            self._update_preview()

    def _on_adapters(self, change: dict) -> None:
        """Re-validate the selection with the new adapters; a key given an adapter is selected.

        One preview: the selection's observer plans it when the selection changes, else here.
        """
        with self._guard("Setting adapters"), self.hold_sync():
            previews = self._n_previews
            selected = list(self.selected_keys)
            had = set(selected)
            old = change.get("old") or {}
            selected += [k for k in change["new"] if k not in old and k not in had]
            self.selected_keys = selected  # re-validated with the new adapters
            if self._n_previews == previews:  # the selection's observer did not plan it
                self._update_preview()

    def _on_plan_inputs(self, _change: dict) -> None:
        with self._guard("Updating the plan"):
            self._update_preview()

    def _on_tab(self, change: dict) -> None:
        with self._guard("Writing the code"):
            if change["new"] == "code":
                self._update_code()
            else:
                self.code = ""

    def _on_rename_rules(self, change: dict) -> None:
        """Rules set from Python: re-align the tree; rules that fail are put back as they were."""
        current = _panels.rules_payload(self._cmp.renames) if self._cmp is not None else []
        if change["new"] == current:
            return  # what the comparison shows (set by _show_comparison, or put back below)
        try:
            with self._busy("Re-aligning the tree…"):
                self._apply_rules(list(change["new"] or ()), done="Rename rules changed")
        except Exception as exc:
            self._report_error(exc, "Applying rename rules")
            self.rename_rules = current

    def _on_histogram_key(self, change: dict) -> None:
        key = change["new"]
        if not key:
            self.histogram = {}
            return
        with self._guard(f"Plotting {key}"), self._busy("Drawing the histogram…", action=False):
            report = self._current_report()
            before, after = report.before(), report.after()
            if key not in before:
                raise KeyError(f"{key!r} was not changed by the last load")
            src = _histogram_src(key, before[key], after[key], report.notes().get(key))
            self.histogram = {"key": key, "src": src}

    def _on_bn_module(self, change: dict) -> None:
        if not change["new"]:
            return
        with (
            self._guard(f"Plotting {change['new']}"),
            self._busy("Drawing BatchNorm plot…", action=False),
        ):
            self._draw_bn(self._current_report())

    # ----------------------------------------------------------------------------------------
    # internals
    # ----------------------------------------------------------------------------------------
    def _selectable_set(self) -> frozenset[str]:
        """Keys that can be selected now.

        Asked of the comparison's rows (cached per comparison and adapters: every click validates
        the selection against it).
        """
        if self._cmp is None or self._cmp.model is None:
            return frozenset()  # no model (two checkpoints): nothing to load into
        adapters = dict(self.adapters)
        token = (id(self._cmp), tuple(sorted(adapters.items())))
        cached = self._selectable_cache
        if cached is not None and cached[0] == token and cached[1] is self._cmp:
            return cached[2]
        keys = _tree_payload.selectable_keys(self._cmp, adapters)
        self._selectable_cache = (token, self._cmp, keys)
        return keys

    def _row_sizes(self) -> _panels.RowSizes:
        """Elements and bytes per row of the current comparison.

        Computed once per comparison; the preview of every click sums them.
        """
        cached = self._sizes_cache
        if cached is None or cached[0] is not self._cmp:
            cached = self._sizes_cache = (self._cmp, _panels.row_sizes(self._cmp))
        return cached[1]

    def _selectable_keys(self) -> list[str]:
        return list(self._index.ordered(self._selectable_set()))

    def _set_comparison(
        self, cmp: Comparison, *, initial_select: str | None = None, keep_selection: bool = False
    ) -> None:
        """Show ``cmp``: new payload, suggestions, rules; selection carried over or initial."""
        with gc_paused():
            self._show_comparison(cmp, initial_select=initial_select, keep_selection=keep_selection)

    def _show_comparison(
        self, cmp: Comparison, *, initial_select: str | None, keep_selection: bool
    ) -> None:
        # "everything loadable" stays everything loadable when a rename makes more keys match
        previous_all = set(self.selected_keys) == set(self._selectable_keys()) and (
            bool(self.selected_keys) or self._select_loadable
        )
        old_selection = list(self.selected_keys)
        payload = _tree_payload.payload_from_comparison(
            cmp,
            source=self._source_name or _texts.describe_source(cmp.checkpoint),
            model=_texts.model_label(cmp.model, self._value_a),
        )
        self._cmp = cmp
        self._index = _tree_payload.TreeIndex(payload)
        if self._values is not None and self._values.comparison is not cmp:
            self._values_stale()  # the rows were re-aligned: compare again
        with self.hold_sync():
            self.tree = payload
            self.error = {}
            self.adapters = dict(self.adapters)  # re-validated against the new rows
            self.rename_rules = _panels.rules_payload(cmp.renames)
            prefix_rules = cmp.prefix_suggestions()
            self.suggestions = _panels.suggestions_payload(cmp.suggest_renames(), prefix_rules)
            self.banner = _panels.banner_payload(cmp, self.suggestions)
            self._lora_merge = False
            self._draw_lora()
            self.weight_sets = _panels.weight_sets_payload(cmp.checkpoint.source)
            previews = self._n_previews
            if initial_select == "loadable" or (previous_all and not keep_selection):
                self.selected_keys = self._selectable_keys()
            elif initial_select == "none":
                self.selected_keys = []
            else:
                self.selected_keys = old_selection
            if self._n_previews == previews:  # the selection's observer did not plan it
                self._update_preview()

    def _apply_rules(self, specs: list, *, done: str = "") -> None:
        """Re-align the tree with rename rules ``specs``; on failure nothing changes."""
        if self._cmp is None:
            raise ValueError("no checkpoint is open, so there is nothing to rename")
        rules = tuple(_panels.rule_from_spec(s) for s in specs)
        before = self._cmp
        with gc_paused():
            cmp = before.with_renames(rules, replace=True)
        self._set_comparison(cmp)
        if done:
            self._set_message("info", f"{done}. {_panels.pairing_change(before, cmp)}")

    def _update_preview(self) -> None:
        self._n_previews += 1
        if self._cmp is None:
            self.preview = _panels.empty_preview()
            self.code = ""
            return
        if not self.selected_keys and not self._lora_merge:
            self.preview = {**_panels.empty_preview(), "bn": self.bn_policy}
            self.code = "# Nothing selected: select keys in the explorer to export their load.\n"
            return
        plan = self.plan()
        self.preview = {
            **_panels.preview_from_plan(plan, sizes=self._row_sizes()),
            "bn": self.bn_policy,
        }
        if self.tab == "code":
            self.code = plan.to_code(model_name=self.model_name)

    def _update_code(self) -> None:
        if self._cmp is None or not (self.selected_keys or self._lora_merge):
            self._update_preview()
            return
        self.code = self.plan().to_code(model_name=self.model_name)

    def _draw_lora(self) -> None:
        """Set ``lora`` from the comparison; ``merged`` when the latest load is its merge."""
        merged = bool(self._reports) and bool(self._reports[-1].plan.lora)
        self.lora = _panels.lora_payload(self._cmp, merged=merged) if self._cmp is not None else {}

    def _clear_results(self) -> None:
        self._values_stale()
        self.results = _results.results_none()
        self.histograms = []
        self.histogram = {}
        self.histogram_key = ""
        self.histogram_keys = []
        self.bn_modules = []
        self.bn_plot = {}
        self.meta_leftovers = {}

    def _current_report(self) -> LoadReport:
        if not self._reports:
            raise ValueError("no load to plot: load something first")
        return self._reports[-1]

    def _stream_results(self, report: LoadReport, generation: int) -> None:
        """After the load message: statistics → results table, then the plots."""
        if generation != self._generation or report.undone:
            return
        with self._guard("Computing the statistics"):
            frame = report.to_frame()
            table = _results.results_payload(
                frame, adapted=dict(report.adapted), tied=dict(report.tied)
            )
            order = _results.most_changed(table)
            with self.hold_sync():
                self.results = table
                self.histogram_keys = order
                self.bn_modules = list(report.bn_modules())
                self.busy_text = "Drawing plots…"
            grid = _histogram_grid(order, table, report.after()) or order
            tensors = (report.before(), report.after(), report.notes())
            self._later(
                self._stream_plots, report, generation, grid[: self.max_histograms], tensors
            )

    def _stream_plots(
        self,
        report: LoadReport,
        generation: int,
        keys: list[str],
        tensors: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, list[str]]],
    ) -> None:
        """One histogram per event-loop turn, then the BatchNorm plot.

        A gesture (Undo right after the load) is served between two plots, not after all of them;
        an undo or another load ends the stream.
        """
        if generation != self._generation or report.undone:
            return
        with self._guard("Drawing the before/after plots"):
            if keys:
                key, (before, after, notes) = keys[0], tensors
                total = len(self.histograms) + len(keys)
                self.busy_text = f"Drawing plots ({len(self.histograms) + 1} of {total})…"
                src = _histogram_src(key, before[key], after[key], notes.get(key))
                self.histograms = [*self.histograms, {"key": key, "src": src}]
                self._later(self._stream_plots, report, generation, keys[1:], tensors)
                return
            if self.bn_modules:
                target = self.bn_module if self.bn_module in self.bn_modules else self.bn_modules[0]
                if target != self.bn_module:
                    self.bn_module = target  # its observer draws the plot
                else:
                    self._draw_bn(report)
            else:
                self.bn_plot = {"text": _no_bn_change_text(self._cmp, report.plan.bn)}

    def _draw_bn(self, report: LoadReport) -> None:
        from ..load._plots import bn_running_stats, figure_to_png

        stats = report.bn_stats()
        module = self.bn_module if self.bn_module in stats else next(iter(stats), "")
        if not module:
            self.bn_plot = {"text": "No BatchNorm statistics changed by the last load."}
            return
        fig = bn_running_stats({module: stats[module]}, max_modules=1)
        self.bn_plot = {
            "src": _summary.png_data_url(figure_to_png(fig, dpi=80)),
            "module": module,
            "modules": list(stats),
        }

    def _later(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` once the kernel has sent what is pending (next event-loop turn).

        So the load message reaches the browser first and clicks are served in between.
        Without a running event loop (scripts, tests) it runs now. The busy sign (``busy_text``)
        stays up until the last job; ``busy`` does not: deferred work never holds up Load or Undo.
        """
        self._jobs += 1

        def run() -> None:
            try:
                with self._exclusive():
                    fn(*args)
            finally:
                self._job_done()

        loop = _kernel_loop()
        if loop is None or os.environ.get("SDW_WIDGET_SYNC"):
            run()
        else:
            loop.call_soon(run)

    @contextlib.contextmanager
    def _busy(self, text: str, *, action: bool = True) -> Iterator[None]:
        """A job the busy sign shows as ``text``.

        ``action``: a gesture's own work (a load, an undo): ``busy`` while it runs, and the front
        end refuses Load and Undo, saying so. Drawing a plot (``action=False``) only shows the
        sign: a gesture sent meanwhile runs as soon as the plot is drawn.
        """
        with self.hold_sync():
            if action:
                self._acting += 1
                self.busy = True
            self.busy_text = text
        self._jobs += 1
        try:
            yield
        finally:
            if action:
                self._acting -= 1
            self._job_done()

    def _job_done(self) -> None:
        """One busy job (an action, a plot or deferred work) ended.

        ``busy`` goes with the last action, the busy sign with the last job.
        """
        self._jobs -= 1
        with self.hold_sync():
            if self._acting == 0:
                self.busy = False
            if self._jobs == 0:
                self.busy_text = ""

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the widget: one action (or deferred job) at a time, whatever thread runs it.

        When the outermost one ends, the after-cell check it held up runs (``_after_cell``).
        """
        with self._lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._run_pending_check()

    def _after_cell(self) -> None:
        """The check a notebook runs after each cell; deferred, never skipped, while work runs.

        A load served by a comm handler in another thread may still be writing the model when a
        cell ends: its writes are not an outside change. The check is noted first and then
        run by whoever holds the widget last: this thread now if nothing runs, else the
        action when it ends (it has taken its new baseline by then).
        """
        self._check_pending = True
        if not self._lock.acquire(blocking=False):
            return  # the holder runs it when it ends
        try:
            if self._depth == 0:  # not inside an action of this thread
                self._run_pending_check()
        finally:
            self._lock.release()

    def _run_pending_check(self) -> None:
        if self._check_pending:
            self._check_pending = False
            with self._guard("Checking the model"):
                self.check_stale()

    def _rebaseline(self, keys: Collection[str] | None = None) -> None:
        """Take the model's tensors as they are now as the baseline of :meth:`check_stale`.

        ``keys``: only those (and any tensor object they share, a tied weight); every other
        tensor keeps its baseline, so a change made outside the widget stays a change.
        """
        if self._model is None:
            return
        if self._watch is None:
            self._watch = ModelWatch(self._model)
        self._watch.rebaseline(keys, first=self._reports[-1].loaded if self._reports else ())

    def _keep_undo_budget(self) -> str:
        """Release the oldest loads' undo snapshots past :attr:`undo_budget`; say what went.

        The latest load's undo is always kept; the budget counts every kept snapshot's bytes.
        """
        sizes = [int(r.snapshot_nbytes) for r in self._reports]
        total = sum(sizes)
        released: list[LoadReport] = []
        freed = 0
        while len(self._reports) > 1 and total > self.undo_budget:
            report = self._reports.pop(0)
            size = sizes.pop(0)
            report.release(why=f"by its Explorer, past undo_budget={human_bytes(self.undo_budget)}")
            released.append(report)
            total -= size
            freed += size
        if not released:
            return ""
        n = len(released)
        kept = len(self._reports)
        return (
            f" Released the undo of the {'oldest load' if n == 1 else f'{n} oldest loads'} "
            f"({human_bytes(freed)}) to keep undo snapshots within undo_budget="
            f"{human_bytes(self.undo_budget)}; Undo now goes back "
            f"{'1 load' if kept == 1 else f'{kept} loads'}."
        )

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn any exception into a readable error message (and keep the traceback)."""
        try:
            yield
        except Exception as exc:
            self._report_error(exc, what)

    def _report_error(self, exc: BaseException, what: str) -> None:
        self.last_error = exc
        self.last_traceback = "".join(traceback.format_exception(exc))
        if isinstance(exc, (errors.CheckpointError, errors.LoadError, errors.UndoError)):
            text = f"{what} failed: {exc}"
        elif isinstance(exc, (ValueError, KeyError, TypeError)):
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            text = f"{what} failed: {msg}"
        else:
            text = f"{what} failed with {type(exc).__name__}: {exc}"
        self._set_message("error", text, detail=self.last_traceback)

    def _set_message(
        self, level: str, text: str, detail: str = "", offer: Mapping[str, Any] | None = None
    ) -> None:
        """Show a notice in :attr:`message`.

        ``offer``: one button beside it, ``{label, title, content}``, that sends ``content``
        (an action message) when pressed ("Undo anyway").
        """
        message: dict[str, Any] = {"level": level, "text": text, "detail": detail}
        if offer:
            message["offer"] = dict(offer)
        self.message = message


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _kernel_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop of an IPython kernel, or None outside one.

    Only a kernel sends comm messages between event-loop turns, so only there is deferring
    work worth it. Another library's loop running in this thread (Playwright's sync API keeps
    one "running" in the main thread) must not swallow the work: it may never turn again.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets depends on IPython
        return None
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _histogram_src(key: str, before: Any, after: Any, notes: Iterable[str] | None = None) -> str:
    """One before/after panel sized for the widget grid (about 300 px wide).

    Its text is scaled up so the annotations stay readable at that size. ``notes``: what only
    the load knows (cast, adapter, tie: :meth:`LoadReport.notes`), under the panel.
    """
    from matplotlib.text import Text

    from ..load._plots import figure_to_png, histogram_overlay

    fig = histogram_overlay(
        before, after, keys=[key], title="", notes={key: list(notes)} if notes else None
    )
    fig.set_size_inches(3.6, 2.7)
    for ax in fig.axes:
        ax.tick_params(labelsize=8)
    for text in fig.findobj(Text):
        text.set_fontsize(max(float(text.get_fontsize()) * 1.3, 8.0))
    return _summary.png_data_url(figure_to_png(fig, dpi=90))


def _encodes_iterables(comm: Any) -> bool:
    """Whether ``comm``'s messages are encoded with ``jupyter_client``'s ``json_default``.

    ipykernel's comms are (every packer of ``jupyter_client.session`` — json, orjson, msgpack —
    writes an unknown iterable as a JSON array through it); so is any comm that says so with a
    true ``encodes_iterables`` attribute. Other comms get plain lists.
    """
    if comm is None:
        return False
    if getattr(comm, "encodes_iterables", False) is True:
        return True
    return type(comm).__module__.startswith("ipykernel.")


class _JSONList:
    """A list of JSON values that ipywidgets' search for binary buffers does not walk.

    ipywidgets checks every item of every list and tuple of a state update for binary buffers
    before sending it (two ``isinstance`` tests per item: 30,000 selected keys cost a click
    5 ms, 18 ms under load). This wrapper is neither: ipywidgets passes it by, and the kernel's
    message encoder (``jupyter_client.session.json_packer``, whose ``json_default`` writes any
    iterable as a JSON array) writes exactly the JSON of the list. Only :meth:`Explorer.send_state`
    hands it out, and only for a list of strings.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[str]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[str]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _JSONList):
            other = other.items
        return self.items == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"_JSONList({len(self.items)} items)"


def _no_bn_change_text(cmp: Comparison | None, bn: str) -> str:
    """Why a load changed no BatchNorm running statistics: the model has none, or the policy."""
    has_stats = cmp is not None and any(
        r.model_key is not None and r.model_key.endswith((".running_mean", ".running_var"))
        for r in cmp.rows
    )
    if not has_stats:
        return "The model has no BatchNorm running statistics: nothing to plot here."
    if bn == "keep":
        return "bn='keep': this load kept the model's BatchNorm running statistics."
    return "This load changed no BatchNorm running statistics (none were selected)."


def _histogram_grid(
    order: list[str], table: Mapping[str, Any], after: Mapping[str, torch.Tensor]
) -> list[str]:
    """The tensors the results grid plots: the truly most changed first.

    ``order`` is most changed first (a change from zero ranks first); only floating tensors
    of more than one value (a histogram of ``num_batches_tracked`` says nothing) that changed,
    or, when nothing changed, the floating ones.
    """
    data = table.get("data") or {}
    rel = dict(zip(data.get("key") or [], data.get("rel_change") or [], strict=False))
    plottable = [
        k for k in order if k in after and after[k].is_floating_point() and after[k].numel() > 1
    ]
    return [k for k in plottable if rel.get(k) not in (None, 0.0)] or plottable
