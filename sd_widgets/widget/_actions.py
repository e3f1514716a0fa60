"""The Explorer's gestures: each action the front end can send, registered once with its label.

``Explorer.handle_action`` dispatches ``{"action": name}`` to the function registered here as
``name`` (selection gestures live in :mod:`._selection`); each takes the widget and the message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import errors
from ..checkpoint import open_checkpoint
from ..compare._compare import Comparison
from ..load._distributed import is_sharded
from ..load._load import partial_load
from ..load._report import LoadReport
from ..plan._codegen import name_problem
from ..plan._plan import ADAPTERS, BN_POLICIES
from . import _panels, _results, _texts

if TYPE_CHECKING:
    from torch import nn

    from ..load._load import LoadReport
    from ..plan._plan import LoadPlan
    from ._explorer import Explorer


class Action(NamedTuple):
    """One gesture the front end can send: its name, label (for messages) and handler."""

    name: str
    label: str
    handler: Callable[[Explorer, Mapping[str, Any]], None]
    #: shown next to the busy sign while it runs; None: quick, no busy sign
    busy_text: str | None = None


#: every action, registered once (name → Action); the browser sends exactly these names
ACTIONS: dict[str, Action] = {}


_Handler = Callable[["Explorer", Mapping[str, Any]], None]


def action(name: str, label: str, busy_text: str | None = None) -> Callable[[_Handler], _Handler]:
    """Decorator: register the method as the handler of action ``name`` (shown as ``label``)."""

    def register(fn: _Handler) -> _Handler:
        ACTIONS[name] = Action(name, label, fn, busy_text)
        return fn

    return register


@action("adapt", "Setting an adapter")
def adapt(w: Explorer, c: Mapping[str, Any]) -> None:
    key, adapter = str(c.get("key", "")), c.get("adapter")
    if w._cmp is None or key not in w._cmp:
        raise ValueError(f"{key!r} is not a key of this comparison")
    _loadable(w)  # an adapter says how to load: without a model there is nothing to load into
    new = dict(w.adapters)
    if adapter:
        row = w._cmp[key]
        if not row.adaptable:
            raise ValueError(f"no adapter applies to {key!r}: {row.reason or row.status}")
        if adapter == "auto":  # the tree's toggle: the first adapter the registry offers
            adapter = row.adapters[0]
        if adapter.partition(":")[0] not in ADAPTERS:
            raise ValueError(f"unknown adapter {adapter!r}; available: {', '.join(ADAPTERS)}")
        if adapter not in row.adapters:
            raise ValueError(
                f"the {adapter!r} adapter does not apply to {key!r}; "
                f"{', '.join(map(repr, row.adapters))} does"
            )
        new[key] = adapter
    else:
        new.pop(key, None)
    w.adapters = new  # the observer selects the key it adapts and re-validates the selection
    w._set_message("info", _texts.adapter_set(w._cmp, key, new))


@action("set_model_name", "Naming the model variable")
def set_model_name(w: Explorer, c: Mapping[str, Any]) -> None:
    """The Code tab's name field: a refused name leaves the code as it is and says why."""
    value = str(c.get("name", "")).strip()
    problem = name_problem(value)
    if problem is not None:
        w.code_error = f"{problem}; the code still uses {w.model_name!r}."
        return
    w.code_error = ""
    w.model_name = value


@action("set_bn", "Setting the BatchNorm policy")
def set_bn(w: Explorer, c: Mapping[str, Any]) -> None:
    policy = c.get("policy")
    if policy not in BN_POLICIES:
        raise ValueError(f"BatchNorm policy must be one of {BN_POLICIES}, not {policy!r}")
    w.bn_policy = policy


# renames ----------------------------------------------------------------------------------
@action("accept_suggestion", "Accepting the rename", busy_text="Re-aligning the tree…")
def accept_suggestion(w: Explorer, c: Mapping[str, Any]) -> None:
    sid = c.get("id")
    found = next((s for s in w.suggestions if s.get("id") == sid), None)
    if found is None:
        raise ValueError(
            f"suggestion {sid!r} is no longer offered (the tree changed); "
            "pick one from the current list"
        )
    w._apply_rules([*w.rename_rules, found["rule"]], done=f"Accepted rename: {found['label']}")


@action("add_rule", "Adding the rename rule", busy_text="Re-aligning the tree…")
def add_rule(w: Explorer, c: Mapping[str, Any]) -> None:
    spec = {"kind": c.get("kind", "prefix"), "old": c.get("old", ""), "new": c.get("new", "")}
    rule = _panels.rule_from_spec(spec)
    w._apply_rules(
        [*w.rename_rules, _panels.rule_to_spec(rule)], done=f"Added rule: {rule.describe()}"
    )


@action("remove_rule", "Removing the rename rule", busy_text="Re-aligning the tree…")
def remove_rule(w: Explorer, c: Mapping[str, Any]) -> None:
    index = c.get("index")
    rules = list(w.rename_rules)
    if not isinstance(index, int) or not 0 <= index < len(rules):
        raise ValueError(f"there is no rename rule number {index!r}")
    removed = rules.pop(index)
    w._apply_rules(rules, done=f"Removed rule: {removed.get('label', '')}")


@action("dismiss_banner", "Dismissing the suggestion")
def dismiss_banner(w: Explorer, _c: Mapping[str, Any]) -> None:
    w.banner = {}


# load / undo --------------------------------------------------------------------------------
def _loadable(w: Explorer) -> tuple[Comparison, nn.Module]:
    """The comparison and the model to load into; a usage error without them (nothing tried)."""
    if w._cmp is None:
        raise ValueError(
            "there is no checkpoint to load from: "
            + (w.error.get("text") or w.message.get("text") or "it could not be opened")
        )
    if w._model is None:
        raise ValueError(
            "this comparison has no model (two checkpoints were compared): "
            "there is nothing to load into"
        )
    if is_sharded(w._model):
        raise ValueError(
            "this model holds DTensors (FSDP2, tensor parallel): its load is collective, on "
            "every rank of its job, and returns a ShardedLoadReport, which the Explorer does not "
            "show; run sdw.partial_load(model, w.plan()) on every rank instead"
        )
    return w._cmp, w._model


@action("load", "Load", busy_text="Loading…")
def load(w: Explorer, _c: Mapping[str, Any]) -> None:
    cmp, model = _loadable(w)
    if not w.selected_keys:
        w._set_message(
            "warning",
            "Nothing is selected: click rows or module nodes, or "
            "“Select all loadable”, then “Load selected”.",
        )
        return
    plan = w.plan()
    if not plan.keys:
        w._set_message(
            "warning",
            "The selection loads nothing (every selected key is "
            "skipped; see the Selection tab for why).",
        )
        return
    _run_load(w, cmp, model, plan, "Loaded {n} tensors into the model")


@action("merge_lora", "Merging the LoRA adapter", busy_text="Merging…")
def merge_lora(w: Explorer, _c: Mapping[str, Any]) -> None:
    """Merge the LoRA adapter the checkpoint is into the model's weights.

    ``comparison.plan(lora="merge")`` (W + lora_alpha/r · B @ A per pair, as PEFT's
    ``merge_and_unload``) through the same transactional load as Load selected: all or
    nothing, Undo restores W. The plan stays the merge (the Code tab exports it) until the
    selection or the comparison changes.
    """
    cmp, model = _loadable(w)
    plan = cmp.plan(lora="merge")  # a ValueError says why the adapter cannot be merged
    if not plan.lora:
        first = next(iter(plan.skipped.items()), None)
        raise ValueError(
            "no LoRA factor pair of this adapter can be merged into the model"
            + (f" ({first[0]}: {first[1]})" if first else "")
        )
    w._lora_merge = True
    n_pairs = sum(1 for k, p in plan.lora.items() if k == p.base_key)
    head = f"Merged {n_pairs:,} LoRA factor pairs into the model's weights (W + scale · B @ A)"
    if n_pairs < len(plan.lora):  # lora_bias: the layers' biases too
        head += " and their biases ({n} tensors)"
    _run_load(w, cmp, model, plan, head)
    w._update_preview()  # the plan is the merge now: the preview and the Code tab say so


def _run_load(w: Explorer, cmp: Comparison, model: nn.Module, plan: LoadPlan, head: str) -> None:
    """Load ``plan`` into ``model``: the message (``head`` with ``{n}`` tensors), undo, results."""
    report = partial_load(model, plan, stats=False)  # statistics stream in after
    assert isinstance(report, LoadReport)  # a sharded model was refused by _loadable
    w._reports.append(report)
    released = w._keep_undo_budget()
    w._generation += 1
    w._values_stale()
    n_skip = len(report.skipped)
    text = (
        head.format(n=f"{len(report.loaded):,}")
        + (f"; skipped {n_skip:,} selected keys (see the Selection tab)" if n_skip else "")
        + (
            f"; reset BatchNorm statistics of {len(report.bn_reset):,} modules"
            if report.bn_reset
            else ""
        )
        + f" in {report.seconds:.2f} s. “Undo” restores the previous tensors."
    )
    leftovers = meta_leftovers(report)
    with w.hold_sync():
        w.can_undo = True
        w.last_load = {
            "text": text,
            "loaded": len(report.loaded),
            "skipped": n_skip,
            "undone": False,
        }
        w.results = _results.results_computing(len(report.loaded))
        w.histogram_keys = []
        w.histograms = []
        w.histogram = {}
        w.histogram_key = ""
        w.bn_modules = []
        w.bn_plot = {"text": "computing statistics…"}
        w.meta_leftovers = leftovers
        w.stale = {}
        w.busy_text = "Computing statistics…"
        w._set_message("success", text + (f" {leftovers['text']}" if leftovers else "") + released)
        w._draw_lora()
        w.tab = "results"
    if report.assigned:  # meta tensors were replaced: entries changed, compare again
        w._set_comparison(
            Comparison(model, cmp.checkpoint, cmp.renames),
            keep_selection=True,
        )
    w._rebaseline()
    w._later(w._stream_results, report, w._generation)


@action("undo", "Undo", busy_text="Undoing…")
def undo(w: Explorer, c: Mapping[str, Any]) -> None:
    """Undo the last load; ``force: true`` ("Undo anyway") also over later changes.

    Without ``force`` the report refuses (:class:`~sd_widgets.UndoError`) when a tensor it
    would restore changed after the load (a training step, an edit in a cell): the message
    says which and offers "Undo anyway"; the stale banner stays, the model is untouched.
    """
    if not w._reports:
        w._set_message("warning", "Nothing to undo: no load from this explorer is pending.")
        return
    force = c.get("force") is True
    report = w._reports[-1]
    restored = set(report.after())  # what the undo writes back (before it drops the snapshot)
    try:
        report.undo(force=force)
    except errors.UndoError as exc:
        changed = exc.changed  # the tensors changed since the load (empty: another reason)
        if force or not changed:
            raise
        if w._watch is not None:  # a tensor too large for the after-cell check: now it is known
            w._watch.mark(changed)
            w.check_stale()
        n = len(changed)
        w._set_message(
            "warning",
            f"Undo refused: {n:,} tensor{'s' if n != 1 else ''} the last load wrote "
            f"changed after it ({_texts.first(changed)}), e.g. by a training step or an edit in a "
            "cell. Undo would overwrite that work, so nothing was restored. “Undo anyway” "
            "restores the tensors from before the load and discards those changes.",
            detail=str(exc),
            offer={
                "label": "Undo anyway",
                "title": "Restore the tensors from before the last load, overwriting the "
                "changes made to them since",
                "content": {"action": "undo", "force": True},
            },
        )
        return
    w._reports.pop()
    w._generation += 1
    n = len(report.loaded)
    text = (
        f"Undone{' anyway' if force else ''}: restored the {n:,} tensors the last load "
        "replaced to their values from before it"
        + (" (changes made to them after the load were discarded)." if force else ".")
    )
    with w.hold_sync():
        w.can_undo = bool(w._reports)
        w.last_load = {"text": text, "loaded": 0, "skipped": 0, "undone": True}
        w._clear_results()
        w._set_message("success", text)
        # what changed outside the widget and was not restored is still a change
        w._rebaseline(restored)
        w.stale = {}
        w.check_stale()
        w._draw_lora()


@action("refresh", "Refreshing", busy_text="Comparing the model as it is now…")
def refresh(w: Explorer, _c: Mapping[str, Any]) -> None:
    if w._cmp is None or w._model is None:
        raise ValueError("there is no comparison to refresh")
    n = w.stale.get("n_changed", 0)
    w._generation += 1
    with w.hold_sync():
        w._set_comparison(
            Comparison(w._model, w._cmp.checkpoint, w._cmp.renames),
            keep_selection=True,
        )
        w._clear_results()
        w.stale = {}
        w._set_message(
            "info",
            "Refreshed: compared the model as it is now"
            + (
                f" ({n} tensor{'s' if n != 1 else ''} had changed outside the explorer)"
                if n
                else ""
            )
            + ". Statistics and plots of the earlier load were cleared; "
            + (
                "“Undo” still restores what that load replaced."
                if w._reports
                else "load again to see new ones."
            ),
        )
    w._rebaseline()


@action("switch_weights", "Switching weight sets", busy_text="Opening the weight set…")
def switch_weights(w: Explorer, c: Mapping[str, Any]) -> None:
    key = c.get("key")
    options = {w["key"] for w in w.weight_sets}
    if key not in options:
        raise ValueError(
            f"{key!r} is not a weight set of this checkpoint; choose one of {sorted(options)}"
        )
    if w._cmp is None or w._model is None:
        raise ValueError("there is no checkpoint to switch")
    source = w._open["source"]
    if source is None:
        source = w._cmp.checkpoint.source.path
    if source is None:
        raise ValueError(
            "this explorer was given a comparison of an in-memory checkpoint; "
            f"open it again with sdw.Explorer(model, obj, key={key!r})"
        )
    ckpt = open_checkpoint(
        source, key=key, trust=w._open["trust"], map_location=w._open["map_location"]
    )
    w._generation += 1
    with w.hold_sync():
        w._set_comparison(
            Comparison(w._model, ckpt, w._cmp.renames),
            initial_select="loadable" if w._select_loadable else "none",
        )
        w._clear_results()
        w._set_message("info", f"Now showing the weight set {key!r} of the checkpoint.")


@action("histogram", "Plotting")
def histogram(w: Explorer, c: Mapping[str, Any]) -> None:
    w.histogram_key = str(c.get("key", ""))


@action("bn_module", "Plotting BatchNorm statistics")
def bn_module(w: Explorer, c: Mapping[str, Any]) -> None:
    module = str(c.get("module", ""))
    if module not in w.bn_modules:
        raise ValueError(f"{module!r} is not a BatchNorm module changed by the last load")
    w.bn_module = module


@action("compare_values", "Comparing values", busy_text="Comparing values…")
def compare_values(w: Explorer, _c: Mapping[str, Any]) -> None:
    from ..compare._values import ValueComparison
    from ._values_view import values_payload

    cmp, a = w._cmp, w._value_a
    if cmp is None:
        raise ValueError("nothing to compare: the Explorer has no comparison yet")
    if a is None:
        raise ValueError(
            "this Explorer compares the keys of two checkpoints, not their values. "
            + _texts.TWO_CHECKPOINTS
        )
    given, w._given_values = w._given_values, None
    vc = (
        given
        if given is not None and given.comparison is cmp
        else ValueComparison(cmp, a, cmp.checkpoint)
    )
    is_model = w._model is not None
    payload = values_payload(
        vc,
        a_label="model" if is_model else _texts.model_label(None, a),
        b_label=w._source_name or _texts.describe_source(cmp.checkpoint),
        a_is_model=is_model,
    )
    w._values = vc
    with w.hold_sync():
        w.values = payload
        w.value_plot = {}
    s = payload["summary"]
    w._set_message(
        "info",
        f"Values compared: {s['identical']:,} identical, {s['changed']:,} changed, "
        f"{s['not_compared']:,} not compared." + ("".join(" " + c for c in payload["callouts"])),
    )


@action("value_plot", "Plotting values")
def value_plot(w: Explorer, c: Mapping[str, Any]) -> None:
    from ._values_view import value_figure_src

    vc = w._values
    if vc is None or (w.values or {}).get("state") != "ready":
        raise ValueError("compare the values first (Values: Compare), then pick a tensor")
    key = str(c.get("key", ""))
    a, b = vc.tensors(key)
    w.value_plot = {"key": key, "src": value_figure_src(key, a, b)}


@action("dismiss_message", "Dismissing the message")
def dismiss_message(w: Explorer, _c: Mapping[str, Any]) -> None:
    w.message = {}


def meta_leftovers(report: LoadReport) -> dict[str, Any]:
    """Tensors still on the meta device after a load (the model cannot run until they are)."""
    keys = list(report.still_on_meta)
    if not keys:
        return {}
    n = len(keys)
    return {
        "n": n,
        "keys": keys[:200],
        "text": f"{n} tensor{'s' if n != 1 else ''} stayed on the meta device "
        f"({', '.join(keys[:3])}{', …' if n > 3 else ''}): the model cannot run "
        "until these are initialised (model.to_empty(...) and their init, or load "
        "them).",
    }
