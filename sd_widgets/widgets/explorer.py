"""``Explorer``: the checkpoint and the model side by side, choose what to load, load, undo.

A thin view over the core objects: the comparison (:func:`sd_widgets.compare`) becomes ONE
compact tree payload (:mod:`.payload`), the selection is a synced list of row keys, and every
user gesture arrives as a custom message handled by :meth:`Explorer.handle_action`, which a
test (or a script) can call directly. The front end (``static/tree.js``) only draws traits
and sends gestures.

Errors never escape into the kernel log: every handler catches its exception and puts a
readable message into :attr:`Explorer.message` (traceback in ``message["detail"]`` and
:attr:`Explorer.last_error`).
"""

from __future__ import annotations

import contextlib
import pathlib
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import anywidget
import traitlets as t
from torch import nn

from ..checkpoint import Checkpoint, open_checkpoint
from ..compare import Comparison
from ..errors import CheckpointError, LoadError, UndoError
from ..load import LoadReport, partial_load
from ..plan import ADAPTERS, BN_POLICIES
from ..renames import parse_renames
from . import payload as pl

__all__ = ["Explorer"]

_STATIC = pathlib.Path(__file__).parent / "static"
#: The front end is plain ES modules with no bundler: pure, unit-tested functions (``lib.js``,
#: tested by ``node --test``), the panels around the tree (``panels.js``) and the tree view with
#: ``render`` (``tree.js``), concatenated in this order into the one ESM anywidget loads. Only
#: ``tree.js`` has an ``export default``; files never ``import`` each other.
_JS_FILES = ("lib.js", "panels.js", "tree.js")
_CSS_FILES = ("tree.css", "panels.css")


def _bundle(names: tuple[str, ...]) -> str:
    return "\n".join(
        f"// ---- {n}\n" + (_STATIC / n).read_text(encoding="utf-8") for n in names
    )


class Explorer(anywidget.AnyWidget):
    """Explore a checkpoint against a live model; select, load, inspect and undo.

    ``Explorer(model, source)`` opens ``source`` (anything :func:`sd_widgets.open_checkpoint`
    accepts) and compares it with ``model``; ``Explorer(comparison)`` reuses a
    :class:`~sd_widgets.Comparison`. ``renames`` are initial rename rules (shown, removable),
    ``bn`` the initial BatchNorm policy, ``select`` the initial selection (``"loadable"``:
    everything that can be loaded as is; ``"none"``).

    The model is the caller's own object: "Load selected" changes it in place.
    """

    _esm = _bundle(_JS_FILES)
    _css = _bundle(_CSS_FILES)

    tree = t.Dict().tag(sync=True)
    """The comparison as one compact columnar payload (see :mod:`sd_widgets.widgets.payload`).
    Python → browser; replaced when rename rules re-align the tree."""

    selected_keys = t.List().tag(sync=True)
    """Row keys chosen for loading, in tree order (two-way). Keys that cannot be loaded (and
    anything that is not a key of the tree) are dropped by Python whoever sets them. No
    per-element trait: validating 30,000 strings on every click cost more than the click."""

    preview = t.Dict().tag(sync=True)
    """What the selection's OrderedDict holds: ``n_tensors``, ``n_params``, ``nbytes``, the first
    500 ``keys`` (``n_keys_total``), ``skipped`` [key, reason] pairs and the BN policy."""

    suggestions = t.List(t.Dict()).tag(sync=True)
    """Rename suggestions (prefix rules first, then key pairs), each with the rule accepting it
    adds; accepted with ``{"action": "accept_suggestion", "id": ...}``."""

    rename_rules = t.List(t.Dict()).tag(sync=True)
    """Rename rules in force, ``{"kind", "old", "new", "label"}`` each, applied in order to
    checkpoint keys. Setting it from Python re-aligns the tree."""

    bn_policy = t.Enum(BN_POLICIES, default_value="load").tag(sync=True)
    """BatchNorm running statistics: ``"load"`` from the checkpoint, ``"keep"`` the model's, or
    ``"reset"`` them after loading (two-way)."""

    adapters = t.Dict().tag(sync=True)
    """Row key → adapter (``"overlap"``) for shape mismatches to load anyway (two-way)."""

    code = t.Unicode("").tag(sync=True)
    """``plan.to_code()`` for the current selection: the same partial load in plain torch.
    Kept up to date while ``show_code`` is True (a 30,000-key listing is megabytes)."""

    show_code = t.Bool(False).tag(sync=True)
    """True while the Code view is open in a browser (two-way); set it from Python to fill
    ``code``."""

    message = t.Dict().tag(sync=True)
    """The last notice: ``{"level": "info"|"success"|"warning"|"error", "text", "detail"}``;
    empty when dismissed."""

    busy = t.Bool(False).tag(sync=True)
    """True while a load, undo or plot is running (buttons disabled, "working…" shown)."""

    can_undo = t.Bool(False).tag(sync=True)
    """True when a load can be undone."""

    last_load = t.Dict().tag(sync=True)
    """Summary of the last load or undo: ``{"text", "loaded", "skipped", "undone"}``."""

    histogram_keys = t.List(t.Unicode()).tag(sync=True)
    """Tensors of the last load that can be plotted (the picker's options, first 2,000)."""

    histograms = t.List(t.Dict()).tag(sync=True)
    """Before/after histogram grid of the last load: ``{"key", "src"}`` with a PNG data URL."""

    histogram_key = t.Unicode("").tag(sync=True)
    """The tensor picked in the browser (two-way); its histogram lands in ``histogram``."""

    histogram = t.Dict().tag(sync=True)
    """Histogram of ``histogram_key``: ``{"key", "src"}``."""

    bn_plot = t.Dict().tag(sync=True)
    """BatchNorm running mean/variance before vs after: ``{"src"}`` or ``{"text"}``."""

    def __init__(
        self,
        model: nn.Module | Comparison,
        source: Any = None,
        *,
        renames: Any = None,
        key: str | None = None,
        trust: bool | Iterable[Any] = False,
        bn: str = "load",
        select: str = "loadable",
        map_location: Any = "cpu",
        max_histograms: int = 9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if select not in ("loadable", "none"):
            raise ValueError(f"select={select!r}: use 'loadable' or 'none'")
        if bn not in BN_POLICIES:
            raise ValueError(f"bn={bn!r} is not a BatchNorm policy; use one of {BN_POLICIES}")
        self.max_histograms = int(max_histograms)
        #: the exception behind the last error message, and its formatted traceback
        self.last_error: BaseException | None = None
        self.last_traceback: str = ""
        self._reports: list[LoadReport] = []
        self._syncing = False
        self._cmp: Comparison | None = None
        self._index = pl.TreeIndex(pl.empty_payload())
        self._source_label = ""
        self._select_loadable = select == "loadable"
        if isinstance(model, Comparison):
            if source is not None or key is not None:
                raise TypeError("Explorer(comparison) takes no source/key: the comparison has one")
            cmp: Comparison | None = model
            self._model = model.model
            if renames is not None:
                cmp = model.with_renames(renames)
        else:
            if source is None:
                raise TypeError("Explorer(model, source): give the checkpoint to explore")
            self._model = model
            cmp = None
            try:
                ckpt = open_checkpoint(source, key=key, trust=trust, map_location=map_location)
                cmp = Comparison(model, ckpt, parse_renames(renames))
            except (CheckpointError, OSError, ValueError) as exc:
                self._source_label = _describe_source(source)
                self._report_error(exc, "Opening the checkpoint")
        with self.hold_sync():
            self.bn_policy = bn
            if cmp is not None:
                self._set_comparison(cmp, initial_select=select)
            else:
                self.tree = pl.empty_payload(source=self._source_label,
                                             model=_model_label(self._model))
                self.preview = pl.empty_preview()
        self.observe(self._on_selected_keys, names=["selected_keys"])
        self.observe(self._on_plan_inputs, names=["bn_policy", "show_code"])
        self.observe(self._on_adapters, names=["adapters"])
        self.observe(self._on_rename_rules, names=["rename_rules"])
        self.observe(self._on_histogram_key, names=["histogram_key"])
        self.on_msg(self._on_custom_msg)

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

    def plan(self):
        """The :class:`~sd_widgets.LoadPlan` the current selection, BN policy and adapters make."""
        if self._cmp is None:
            raise CheckpointError("no checkpoint is open: " + self.message.get("text", ""))
        return self._cmp.plan(include=list(self.selected_keys), bn=self.bn_policy,
                              adapt=dict(self.adapters) or None)

    def __repr__(self) -> str:
        p = self.tree or pl.empty_payload()
        counts = ", ".join(pl._count_phrases(p)) or "no keys"
        return (f"Explorer({p.get('model') or 'model'} ← {p.get('source') or 'checkpoint'}: "
                f"{p.get('n_keys', 0)} keys, {counts}; {len(self.selected_keys)} selected)")

    def _repr_mimebundle_(self, **kwargs: Any):
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        p = self.tree or pl.empty_payload()
        n = len(self.selected_keys)
        data["text/plain"] = pl.summary_text(p, n_selected=n)
        data["text/html"] = pl.summary_html(p, n_selected=n)
        return data, metadata

    # ----------------------------------------------------------------------------------------
    # the one entry point for gestures
    # ----------------------------------------------------------------------------------------
    def handle_action(self, content: Mapping[str, Any]) -> None:
        """Handle one gesture from the front end, e.g. ``{"action": "load"}``.

        Actions: ``toggle`` (``keys``/``modules``), ``select_range`` (``keys``, ``modules``,
        ``select``), ``select_all_loadable``, ``select_none``, ``adapt`` (``key``, ``adapter``
        or None), ``set_bn`` (``policy``), ``accept_suggestion`` (``id``), ``add_rule`` (``kind``,
        ``old``, ``new``), ``remove_rule`` (``index``), ``load``, ``undo``, ``histogram``
        (``key``), ``dismiss_message``. Never raises: failures become :attr:`message`.
        """
        action = content.get("action") if isinstance(content, Mapping) else None
        handler = self._ACTIONS.get(action) if isinstance(action, str) else None
        if handler is None:
            self._set_message("error", f"Unknown widget action {action!r}; nothing was done.")
            return
        with self._guard(_ACTION_LABELS.get(action, action)):
            handler(self, content)

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        self.handle_action(content if isinstance(content, Mapping) else {})

    # selection ------------------------------------------------------------------------------
    def _act_toggle(self, c: Mapping[str, Any]) -> None:
        self._set_selection(pl.toggle(self._index, self.selected_keys, keys=_strs(c, "keys"),
                                      modules=_strs(c, "modules"), adapters=self.adapters))

    def _act_select_range(self, c: Mapping[str, Any]) -> None:
        self._set_selection(pl.apply_range(self._index, self.selected_keys,
                                           keys=_strs(c, "keys"), modules=_strs(c, "modules"),
                                           select=bool(c.get("select", True)),
                                           adapters=self.adapters))

    def _act_select_all_loadable(self, _c: Mapping[str, Any]) -> None:
        self._set_selection(self._index.selectable_keys(self.adapters))

    def _act_select_none(self, _c: Mapping[str, Any]) -> None:
        self._set_selection([])

    def _act_adapt(self, c: Mapping[str, Any]) -> None:
        key, adapter = str(c.get("key", "")), c.get("adapter")
        if key not in self._index:
            raise ValueError(f"{key!r} is not a key of this comparison")
        new = dict(self.adapters)
        if adapter:
            if adapter not in ADAPTERS:
                raise ValueError(f"unknown adapter {adapter!r}; available: {', '.join(ADAPTERS)}")
            row = self._index.row(key)
            if not row["adaptable"]:
                raise ValueError(f"no adapter applies to {key!r}: {row['reason'] or row['status']}")
            new[key] = adapter
        else:
            new.pop(key, None)
        with self.hold_sync():
            self.adapters = new  # observer cleans the selection and updates the preview
            if adapter and key not in self.selected_keys:
                self._set_selection([*self.selected_keys, key])

    def _act_set_bn(self, c: Mapping[str, Any]) -> None:
        policy = c.get("policy")
        if policy not in BN_POLICIES:
            raise ValueError(f"BatchNorm policy must be one of {BN_POLICIES}, not {policy!r}")
        self.bn_policy = policy

    # renames ----------------------------------------------------------------------------------
    def _act_accept_suggestion(self, c: Mapping[str, Any]) -> None:
        sid = c.get("id")
        found = next((s for s in self.suggestions if s.get("id") == sid), None)
        if found is None:
            raise ValueError(f"suggestion {sid!r} is no longer offered (the tree changed); "
                             "pick one from the current list")
        self._apply_rules([*self.rename_rules, found["rule"]],
                          done=f"Accepted rename: {found['label']}")

    def _act_add_rule(self, c: Mapping[str, Any]) -> None:
        spec = {"kind": c.get("kind", "prefix"), "old": c.get("old", ""), "new": c.get("new", "")}
        rule = pl.rule_from_spec(spec)
        self._apply_rules([*self.rename_rules, pl.rule_to_spec(rule)],
                          done=f"Added rule: {rule.describe()}")

    def _act_remove_rule(self, c: Mapping[str, Any]) -> None:
        index = c.get("index")
        rules = list(self.rename_rules)
        if not isinstance(index, int) or not 0 <= index < len(rules):
            raise ValueError(f"there is no rename rule number {index!r}")
        removed = rules.pop(index)
        self._apply_rules(rules, done=f"Removed rule: {removed.get('label', '')}")

    # load / undo --------------------------------------------------------------------------------
    def _act_load(self, _c: Mapping[str, Any]) -> None:
        if self._cmp is None:
            raise CheckpointError("there is no checkpoint to load from: "
                                  + (self.message.get("text") or "it could not be opened"))
        if self._model is None:
            raise LoadError("this comparison has no model (two checkpoints were compared): "
                            "there is nothing to load into")
        if not self.selected_keys:
            self._set_message("warning", "Nothing is selected: click rows or module nodes, or "
                                         "“Select all loadable”, then “Load selected”.")
            return
        plan = self.plan()
        if not plan.keys:
            self._set_message("warning", "The selection loads nothing (every selected key is "
                                         "skipped; see the Selection tab for why).")
            return
        self.busy = True
        try:
            report = partial_load(self._model, plan)
            self._reports.append(report)
            n_skip = len(report.skipped)
            text = (f"Loaded {len(report.loaded)} tensors into the model"
                    + (f"; skipped {n_skip} selected keys (see the Selection tab)" if n_skip else "")
                    + (f"; reset BatchNorm statistics of {len(report.bn_reset)} modules"
                       if report.bn_reset else "")
                    + f" in {report.seconds:.2f} s. “Undo” restores the previous tensors.")
            with self.hold_sync():
                self.can_undo = True
                self.last_load = {"text": text, "loaded": len(report.loaded),
                                  "skipped": n_skip, "undone": False}
                self.histogram_keys = list(report.after())[:2000]
                self.histograms = []
                self.histogram = {}
                self.bn_plot = {"text": "drawing…"}
                self._set_message("success", text)
            self.send({"type": "show_tab", "tab": "results"})
            if report.assigned:  # meta tensors were replaced: entries changed, compare again
                self._set_comparison(Comparison(self._model, self._cmp.checkpoint,
                                                self._cmp.renames), keep_selection=True)
            self._draw_plots(report)
        finally:
            self.busy = False

    def _act_undo(self, _c: Mapping[str, Any]) -> None:
        if not self._reports:
            self._set_message("warning", "Nothing to undo: no load from this explorer is pending.")
            return
        self.busy = True
        try:
            report = self._reports[-1]
            report.undo()  # raises UndoError with a readable message when it cannot
            self._reports.pop()
            text = (f"Undone: restored the {len(report.loaded)} tensors the last load replaced; "
                    "the model is exactly as before it.")
            with self.hold_sync():
                self.can_undo = bool(self._reports)
                self.last_load = {"text": text, "loaded": 0, "skipped": 0, "undone": True}
                self.histograms = []
                self.histogram = {}
                self.histogram_keys = []
                self.bn_plot = {}
                self._set_message("success", text)
        finally:
            self.busy = False

    def _act_histogram(self, c: Mapping[str, Any]) -> None:
        self.histogram_key = str(c.get("key", ""))

    def _act_dismiss_message(self, _c: Mapping[str, Any]) -> None:
        self.message = {}

    _ACTIONS: ClassVar[dict[str, Callable[[Explorer, Mapping[str, Any]], None]]] = {
        "toggle": _act_toggle,
        "select_range": _act_select_range,
        "select_all_loadable": _act_select_all_loadable,
        "select_none": _act_select_none,
        "adapt": _act_adapt,
        "set_bn": _act_set_bn,
        "accept_suggestion": _act_accept_suggestion,
        "add_rule": _act_add_rule,
        "remove_rule": _act_remove_rule,
        "load": _act_load,
        "undo": _act_undo,
        "histogram": _act_histogram,
        "dismiss_message": _act_dismiss_message,
    }

    # ----------------------------------------------------------------------------------------
    # observers (front-end or Python changes of synced traits)
    # ----------------------------------------------------------------------------------------
    def _on_selected_keys(self, change: dict) -> None:
        if self._syncing:
            return
        with self._guard("Updating the selection"):
            self._set_selection(change["new"])

    def _on_plan_inputs(self, _change: dict) -> None:
        with self._guard("Updating the plan"):
            self._update_preview()

    def _on_adapters(self, change: dict) -> None:
        if self._syncing:
            return
        with self._guard("Setting adapters"):
            clean = {k: v for k, v in dict(change["new"]).items()
                     if k in self._index and v in ADAPTERS and self._index.row(k)["adaptable"]}
            with self._syncing_traits(), self.hold_sync():
                if clean != change["new"]:
                    self.adapters = clean
                self._set_selection(self.selected_keys, force=True)

    def _on_rename_rules(self, change: dict) -> None:
        if self._syncing:
            return
        with self._guard("Applying rename rules"):
            self._apply_rules(change["new"], previous=change["old"])

    def _on_histogram_key(self, change: dict) -> None:
        key = change["new"]
        if not key:
            self.histogram = {}
            return
        with self._guard(f"Plotting {key}"):
            if not self._reports:
                raise ValueError("no load to plot: load something first")
            report = self._reports[-1]
            before, after = report.before(), report.after()
            if key not in before:
                raise KeyError(f"{key!r} was not changed by the last load")
            self.histogram = {"key": key, "src": _histogram_src(key, before[key], after[key])}

    # ----------------------------------------------------------------------------------------
    # internals
    # ----------------------------------------------------------------------------------------
    def _set_comparison(self, cmp: Comparison, *, initial_select: str | None = None,
                        keep_selection: bool = False) -> None:
        """Show ``cmp``: new payload, suggestions, rules; selection carried over or initial."""
        # "everything loadable" stays everything loadable when a rename makes more keys match
        previous_all = (set(self.selected_keys) == set(self._index.selectable_keys(self.adapters))
                        and (bool(self.selected_keys) or self._select_loadable))
        old_selection = list(self.selected_keys)
        self._source_label = _describe_source(cmp.checkpoint)
        payload = pl.build_tree_payload(cmp.tree(), source=self._source_label,
                                        model=_model_label(cmp.model))
        index = pl.TreeIndex(payload)
        adapters = {k: v for k, v in self.adapters.items()
                    if k in index and index.row(k)["adaptable"]}
        if initial_select == "loadable" or (previous_all and not keep_selection):
            selection = index.selectable_keys(adapters)
        elif initial_select == "none":
            selection = []
        else:
            selection = pl.clean_selection(index, old_selection, adapters)
        self._cmp = cmp
        self._index = index
        with self._syncing_traits(), self.hold_sync():
            self.tree = payload
            self.adapters = adapters
            self.rename_rules = pl.rules_payload(cmp.renames)
            self.suggestions = pl.suggestions_payload(
                cmp.suggest_renames(), cmp.prefix_suggestions()
            )
            self.selected_keys = selection
            self._update_preview()

    def _apply_rules(self, specs: list, *, previous: list | None = None, done: str = "") -> None:
        """Re-align the tree with rename rules ``specs``; on failure keep the previous rules."""
        if self._cmp is None:
            raise CheckpointError("no checkpoint is open, so there is nothing to rename")
        try:
            rules = tuple(pl.rule_from_spec(s) for s in specs)
            cmp = self._cmp.with_renames(rules, replace=True)
            before = self._cmp.summary()
            self._set_comparison(cmp)
        except Exception:
            if previous is not None:  # a direct trait assignment: put the old rules back
                with self._syncing_traits():
                    self.rename_rules = previous
            raise
        if done:
            after = cmp.summary()
            delta = after["match"] - before["match"]
            self._set_message("info", f"{done}. Matches: {before['match']} → {after['match']}"
                              + (f" (+{delta})" if delta > 0 else "") + ".")

    def _set_selection(self, keys: Any, *, force: bool = False) -> None:
        clean = pl.clean_selection(self._index, list(keys or ()), self.adapters)
        with self._syncing_traits(), self.hold_sync():
            if force or clean != list(self.selected_keys):
                self.selected_keys = clean
            self._update_preview()

    def _update_preview(self) -> None:
        if self._cmp is None:
            self.preview = pl.empty_preview()
            self.code = ""
            return
        if not self.selected_keys:
            self.preview = {**pl.empty_preview(), "bn": self.bn_policy}
            self.code = "# Nothing selected: select keys in the explorer to export their load.\n"
            return
        plan = self.plan()
        self.preview = {**pl.preview_from_plan(plan), "bn": self.bn_policy}
        self.code = plan.to_code() if self.show_code else ""

    def _draw_plots(self, report: LoadReport) -> None:
        """Before/after histograms of the loaded parameters and the BN running statistics."""
        from ..plots import bn_running_stats, figure_to_png

        with self._guard("Drawing the before/after plots"):
            before, after = report.before(), report.after()
            rows = self._cmp
            params = [k for k in report.loaded
                      if rows is not None and k in rows and rows[k].kind == "param"]
            keys = (params or list(report.loaded))[: self.max_histograms]
            self.histograms = [{"key": k, "src": _histogram_src(k, before[k], after[k])}
                               for k in keys]
            stats = report.bn_stats()
            if stats:
                fig = bn_running_stats(stats, max_modules=3)
                self.bn_plot = {"src": pl.png_data_url(figure_to_png(fig, dpi=80)),
                                "modules": list(stats)}
            else:
                self.bn_plot = {"text": "This load did not change any BatchNorm running "
                                        "statistics (bn='keep', or no BatchNorm selected)."}

    @contextlib.contextmanager
    def _syncing_traits(self) -> Iterator[None]:
        old, self._syncing = self._syncing, True
        try:
            yield
        finally:
            self._syncing = old

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
        if isinstance(exc, (CheckpointError, LoadError, UndoError)):
            text = f"{what} failed: {exc}"
        elif isinstance(exc, (ValueError, KeyError, TypeError)):
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            text = f"{what} failed: {msg}"
        else:
            text = f"{what} failed with {type(exc).__name__}: {exc}"
        self._set_message("error", text, detail=self.last_traceback)

    def _set_message(self, level: str, text: str, detail: str = "") -> None:
        self.message = {"level": level, "text": text, "detail": detail}


_ACTION_LABELS = {
    "toggle": "Selecting",
    "select_range": "Selecting a range",
    "select_all_loadable": "Selecting all loadable keys",
    "select_none": "Clearing the selection",
    "adapt": "Setting an adapter",
    "set_bn": "Setting the BatchNorm policy",
    "accept_suggestion": "Accepting the rename",
    "add_rule": "Adding the rename rule",
    "remove_rule": "Removing the rename rule",
    "load": "Load",
    "undo": "Undo",
    "histogram": "Plotting",
    "dismiss_message": "Dismissing the message",
}


def _strs(content: Mapping[str, Any], name: str) -> list[str]:
    value = content.get(name) or []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _histogram_src(key: str, before: Any, after: Any) -> str:
    from ..plots import figure_to_png, histogram_overlay

    fig = histogram_overlay(before, after, keys=[key], title="")
    return pl.png_data_url(figure_to_png(fig, dpi=72))


def _model_label(model: nn.Module | None) -> str:
    return type(model).__name__ if model is not None else "checkpoint"


def _describe_source(source: Any) -> str:
    if isinstance(source, Checkpoint):
        return source.source.describe()
    if isinstance(source, (str, pathlib.Path)):
        return str(source)
    if isinstance(source, nn.Module):
        return f"module {type(source).__name__}"
    if isinstance(source, Mapping):
        return f"mapping of {len(source)} entries"
    return type(source).__name__

