"""Plain-Python logic behind the Explorer widget: payloads out, gestures in.

Nothing here imports anywidget or ipywidgets, so every rule the widget follows (what a
payload holds, which keys can be selected and why not, what a click on a module node or a
shift-click selects, what the preview shows) is tested without a browser.

The tree payload
----------------
:func:`payload_from_comparison` is the comparison as the one serialiser of the tree writes it
(:func:`sd_widgets.compare._tree.serialise`, whose docstring lists the columns; :meth:`Comparison.tree`
is the same payload nested), plus the widget's own ``diagnosis``. The browser takes the column
names from the payload (it keeps no list of its own).

Strings from checkpoints and models go into the payload unchanged; the front end inserts them
with ``textContent`` only.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import TYPE_CHECKING, Any, NamedTuple, cast, get_args

from ..compare._tree import COLUMNS as _COLUMNS
from ..compare._tree import serialise
from ..statuses import STATUS_INFO, Status, legend
from ..statuses import STATUSES as _STATUSES
from ..units import escape_text, shape_text
from ..units import human_bytes as format_bytes
from ..units import numel as _numel

if TYPE_CHECKING:
    from ..compare._compare import Comparison


#: the statuses and how each is shown come from the one vocabulary (:mod:`sd_widgets.statuses`)
STATUSES: tuple[str, ...] = _STATUSES
#: how each status is shown: colour (CSS, Okabe–Ito) AND an icon AND a label
LEGEND: list[dict[str, str]] = legend()
_LEGEND_BY_STATUS = {item["status"]: item for item in LEGEND}


# --------------------------------------------------------------------------------------------
# the tree payload
# --------------------------------------------------------------------------------------------


def row_selectable(row: Any, adapters: Mapping[str, Any] | None = None) -> bool:
    """THE rule: a row can be selected when it loads as is, or is adaptable and has an adapter.

    Asked of a :class:`~sd_widgets.compare._compare.Row`. Decided here only: the widget asks it of the rows (:func:`selectable_keys`), and the
    browser reads the outcome (the payload's ``loadable`` and the validated ``adapters``).
    """
    return bool(row.loadable or (row.adaptable and adapters is not None and row.key in adapters))


def selectable_keys(rows: Iterable[Any], adapters: Mapping[str, Any] | None = None) -> frozenset:
    """The keys of ``rows`` (a comparison) that :func:`row_selectable` allows."""
    return frozenset(r.key for r in rows if row_selectable(r, adapters))


def payload_from_comparison(cmp: Comparison, *, source: str = "", model: str = "") -> dict:
    """The widget's tree payload: :func:`sd_widgets.compare._tree.serialise` of ``cmp``.

    Module entries and their order are :meth:`Comparison.module_children`, tensor entries the
    comparison's rows (the same payload :meth:`Comparison.tree` nests).
    """
    payload = serialise(cmp.module_children(), cmp.module_types, source=source, model=model)
    mismatch = cmp.config_mismatch()
    if mismatch is not None:  # one sentence for the summary strip instead of many rows
        payload["diagnosis"] = mismatch.sentence
    return payload


def empty_payload(*, source: str = "", model: str = "") -> dict:
    """A payload with no rows (shown when the checkpoint could not be read)."""
    return serialise({"": []}, {}, source=source, model=model)


@dataclass
class TreeIndex:
    """Lookups over one payload, built once per payload (all O(1) or O(subtree))."""

    payload: Mapping[str, Any]
    _entry_of_key: dict[str, int] = field(init=False, repr=False)
    _entry_of_module: dict[str, int] = field(init=False, repr=False)
    _keys: list[str] = field(init=False, repr=False)
    #: the last ``selectable`` frozenset seen and its keys in tree order (see :meth:`ordered`)
    _ordered: tuple[frozenset[str], tuple[str, ...]] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        cols = self.payload["columns"]
        is_row, paths = cols["t"], cols["path"]
        if len(is_row) != len(paths):
            raise ValueError(f"a tree payload of {len(is_row)} entries has {len(paths)} paths")
        is_module = [1 - t for t in is_row]
        entries = range(len(paths))
        self._keys = list(compress(paths, is_row))

        def first_entry(names: list[str], at: list[int]) -> dict[str, int]:
            """Name → its first entry (built in C: reversed, so the first one stays)."""
            return dict(zip(reversed(names), reversed(at), strict=True))

        self._entry_of_key = first_entry(self._keys, list(compress(entries, is_row)))
        self._entry_of_module = first_entry(
            list(compress(paths, is_module)), list(compress(entries, is_module))
        )

    @property
    def columns(self) -> Mapping[str, list]:
        """The payload's columns (one list per field, one entry per node)."""
        return self.payload["columns"]

    @property
    def keys(self) -> list[str]:
        """Row keys in tree order (computed once per payload; do not mutate)."""
        return self._keys

    def __contains__(self, key: object) -> bool:
        return key in self._entry_of_key

    def status(self, key: str) -> str:
        """The status string of tensor ``key``."""
        return self.payload["statuses"][self.columns["status"][self._entry_of_key[key]]]

    def row(self, key: str) -> dict[str, Any]:
        """One tensor row as a dict (dtype indices resolved to names)."""
        i = self._entry_of_key[key]
        out = {c: self.columns[c][i] for c in _COLUMNS}
        out["status"] = self.payload["statuses"][out["status"]]
        for side in ("ckpt", "model"):
            d = out[f"{side}_dtype"]
            out[f"{side}_dtype"] = None if d is None else self.payload["dtypes"][d]
            present = out["sides"] & (1 if side == "ckpt" else 2)
            if out[f"{side}_key"] is None and present:
                out[f"{side}_key"] = key
        return out

    def subtree_keys(self, path: str) -> list[str]:
        """Row keys under module ``path`` ("" is the whole tree), or ``[path]`` for a row key."""
        if path == "":
            return list(self.keys)
        i = self._entry_of_module.get(path)
        if i is None:
            if path in self._entry_of_key:
                return [path]
            raise KeyError(f"{path!r} is neither a module path nor a row key of this tree")
        cols = self.columns
        return [cols["path"][j] for j in range(i + 1, cols["end"][i]) if cols["t"][j] == 1]

    def resolve(self, keys: Iterable[str] = (), modules: Iterable[str] = ()) -> list[str]:
        """Row keys named directly or through a module path, in tree order, without repeats.

        Works on entry indices (a subtree is a contiguous range), so a click on a module costs
        its subtree, not the whole tree.
        """
        keys, modules = list(keys), list(modules)
        if not keys and len(modules) == 1:  # the common click: one module node
            return self.subtree_keys(modules[0])
        entries: set[int] = set()
        for k in keys:
            i = self._entry_of_key.get(k)
            if i is None:
                raise KeyError(f"{k!r} is not a row key of this tree")
            entries.add(i)
        cols = self.columns
        t, end = cols["t"], cols["end"]
        everything = False
        for m in modules:
            if m == "":
                everything = True
                continue
            i = self._entry_of_module.get(m)
            if i is None:
                if m not in self._entry_of_key:
                    raise KeyError(f"{m!r} is neither a module path nor a row key of this tree")
                entries.add(self._entry_of_key[m])
                continue
            entries.update(j for j in range(i + 1, end[i]) if t[j] == 1)
        if everything:
            return list(self.keys)
        path = cols["path"]
        return [path[j] for j in sorted(entries)]

    def ordered(self, allowed: Collection[str]) -> tuple[str, ...]:
        """The row keys in ``allowed``, in tree order.

        Remembered for the last frozenset passed (the widget passes the same one on every click
        until the comparison or the adapters change), so a click's selection is cleaned with
        one C-level filter over these keys instead of a Python test per row.
        """
        if isinstance(allowed, frozenset):
            cached = self._ordered
            if cached is not None and cached[0] is allowed:
                return cached[1]
            out = tuple(filter(allowed.__contains__, self._keys))
            self._ordered = (allowed, out)
            return out
        return tuple(k for k in self._keys if k in allowed)


# --------------------------------------------------------------------------------------------
# selection: pure functions from (selection, gesture) to the new selection
# --------------------------------------------------------------------------------------------


def _targets(
    index: TreeIndex, keys: Iterable[str], modules: Iterable[str], selectable: Collection[str]
) -> list[str]:
    """The selectable keys a gesture covers (named, or under the named modules), in tree order."""
    return [k for k in index.resolve(keys, modules) if k in selectable]


def clean_selection(
    index: TreeIndex, selection: Iterable[str], *, selectable: Collection[str]
) -> list[str]:
    """Keep the selectable keys of ``selection``, in tree order, without repeats.

    ``selectable``: the keys that can be selected (:func:`selectable_keys` of the comparison).
    """
    wanted = selection if isinstance(selection, (set, frozenset)) else set(selection)
    if not wanted:
        return []
    return list(filter(wanted.__contains__, index.ordered(selectable)))


def toggle(
    index: TreeIndex,
    selection: Iterable[str],
    *,
    keys: Iterable[str] = (),
    modules: Iterable[str] = (),
    selectable: Collection[str],
) -> list[str]:
    """A click on rows/module nodes.

    When every selectable key they cover is selected, deselect them all; otherwise select them all.
    Keys that cannot be selected are left out.
    """
    current = set(selection)
    target = _targets(index, keys, modules, selectable)
    if target and current.issuperset(target):
        current.difference_update(target)
    else:
        current.update(target)
    return clean_selection(index, current, selectable=selectable)


def apply_range(
    index: TreeIndex,
    selection: Iterable[str],
    *,
    keys: Iterable[str] = (),
    modules: Iterable[str] = (),
    select: bool = True,
    selectable: Collection[str],
) -> list[str]:
    """A shift-click: give every selectable key in the range the state ``select``.

    The range is the visible rows between the anchor and the clicked row, collapsed module nodes
    standing for their subtree.
    """
    current = set(selection)
    target = _targets(index, keys, modules, selectable)
    if select:
        current.update(target)
    else:
        current.difference_update(target)
    return clean_selection(index, current, selectable=selectable)


# --------------------------------------------------------------------------------------------
# preview, suggestions, rules
# --------------------------------------------------------------------------------------------


def row_sizes(cmp: Any) -> RowSizes:
    """Per row key of ``cmp``: elements in the model's shape and checkpoint bytes.

    These are the two numbers :attr:`LoadPlan.numel` and :attr:`LoadPlan.nbytes` add up per
    loaded key.

    Computed once per comparison, so a click's preview sums two dict lookups per selected key
    instead of asking every row again (10 ms of a 30,000-key click).

    Parameters
    ----------
    cmp : Comparison
        The comparison whose rows are measured.

    Returns
    -------
    RowSizes
        ``numel`` and ``nbytes``, each a dict from row key to an int.
    """
    return RowSizes(
        {r.key: _numel(r.model_shape or ()) for r in cmp}, {r.key: r.nbytes for r in cmp}
    )


class RowSizes(NamedTuple):
    """Elements (model shape) and checkpoint bytes per row key (see :func:`row_sizes`)."""

    numel: dict[str, int]
    nbytes: dict[str, int]


def preview_from_plan(
    plan: Any, *, max_keys: int = 500, sizes: RowSizes | None = None
) -> dict[str, Any]:
    """What the selection's OrderedDict holds: tensors, parameters (elements), bytes, keys.

    Reads only the plan's metadata (``keys``, ``numel``, ``nbytes``, ``skipped``); no tensor is
    materialised. Key lists are capped at ``max_keys`` with the totals alongside. ``sizes``
    (:func:`row_sizes` of the plan's comparison) gives the same totals faster.
    """
    keys = list(getattr(plan, "keys", ()) or ())
    skipped = dict(getattr(plan, "skipped", {}) or {})
    skipped_items = list(skipped.items())[:max_keys]
    if sizes is not None:
        n_params = sum(map(sizes.numel.__getitem__, keys))
        n_bytes = sum(map(sizes.nbytes.__getitem__, keys))
    else:
        n_params = int(getattr(plan, "numel", 0) or 0)
        n_bytes = int(getattr(plan, "nbytes", 0) or 0)
    return {
        "n_tensors": len(keys),
        "n_params": n_params,
        "nbytes": n_bytes,
        "keys": keys[:max_keys],
        "n_keys_total": len(keys),
        "skipped": [[str(k), str(v)] for k, v in skipped_items],
        "skipped_keys": [str(k) for k in skipped],
        "n_skipped_total": len(skipped),
        "text": (
            f"{format_count(len(keys))} tensors · {format_count(n_params)} "
            f"parameters · {format_bytes(n_bytes)}"
        ),
    }


def empty_preview() -> dict[str, Any]:
    return {
        "n_tensors": 0,
        "n_params": 0,
        "nbytes": 0,
        "keys": [],
        "n_keys_total": 0,
        "skipped": [],
        "skipped_keys": [],
        "n_skipped_total": 0,
        "text": "nothing selected",
    }


def rule_to_spec(rule: Any) -> dict[str, str]:
    """A :class:`~sd_widgets.compare._renames.Rename` as the dict the widget shows and sends back.

    Keys ``kind``, ``old``, ``new`` and ``label``.
    """
    return {"kind": rule.kind, "old": rule.old, "new": rule.new, "label": rule.describe()}


def rule_from_spec(spec: Mapping[str, Any]) -> Any:
    """The inverse of :func:`rule_to_spec`; raises ``ValueError`` with a readable message."""
    from ..compare._renames import Rename, RuleKind

    kind = spec.get("kind")
    old, new = spec.get("old"), spec.get("new", "")
    if kind not in get_args(RuleKind):
        raise ValueError(
            "rename rule kind must be one of "
            + ", ".join(map(repr, get_args(RuleKind)))
            + f", not {kind!r}"
        )
    if not isinstance(old, str) or not isinstance(new, str):
        raise ValueError("a rename rule needs text in both 'from' and 'to'")
    if kind in ("regex", "exact", "leaf") and not old:
        raise ValueError(f"a {kind} rename rule needs a non-empty 'from'")
    if kind == "prefix" and not old and not new:
        raise ValueError("a prefix rule needs a prefix to strip, replace or add")
    return Rename(cast("RuleKind", kind), old, new)  # a RuleKind: checked above


def rules_payload(rules: Iterable[Any]) -> list[dict[str, str]]:
    """The rename rules as the widget lists them (see :func:`rule_to_spec`)."""
    return [rule_to_spec(r) for r in rules]


def suggestions_payload(
    pairs: Iterable[Sequence[Any]], prefix_rules: Iterable[Any] = (), *, limit: int = 50
) -> list[dict[str, Any]]:
    """Rename suggestions as rows the widget lists with an "accept" button each.

    ``pairs`` are ``(ckpt_key, model_key, score, reason)`` from ``suggest_renames()``;
    ``prefix_rules`` are ``RuleSuggestion`` items (``.rule``, ``.fixes``, ``.reason``) from
    ``prefix_suggestions()`` or bare :class:`Rename` rules, listed first: one rule can fix many
    keys. Each suggestion carries the rule accepting it adds.
    """
    out: list[dict[str, Any]] = []
    for item in prefix_rules:
        rule = getattr(item, "rule", item)
        spec = rule_to_spec(rule)
        out.append(
            {
                "id": f"rule:{len(out)}",
                "type": "rule",
                "rule": spec,
                "label": spec["label"],
                "score": None,
                "reason": str(getattr(item, "reason", "") or "rename rule"),
                "fixes": getattr(item, "fixes", None),
                "ckpt_key": None,
                "model_key": None,
            }
        )
    for item in pairs:
        ckpt_key, model_key, score, reason = [*list(item), None, None][:4]
        spec = {
            "kind": "exact",
            "old": str(ckpt_key),
            "new": str(model_key),
            "label": f"{ckpt_key!r} → {model_key!r}",
        }
        out.append(
            {
                "id": f"pair:{len(out)}",
                "type": "pair",
                "rule": spec,
                "label": f"{ckpt_key} → {model_key}",
                "score": None if score is None else round(float(score), 3),
                "reason": None if reason is None else str(reason),
                "ckpt_key": str(ckpt_key),
                "model_key": str(model_key),
            }
        )
        if len(out) >= limit:
            break
    return out[:limit]


# --------------------------------------------------------------------------------------------
# what a rule fixes, what a rule change did
# --------------------------------------------------------------------------------------------


def _paired(cmp: Iterable[Any]) -> dict[str, Any]:
    """Rows with a key on both sides (whatever their status), by row key."""
    return {r.key: r for r in cmp if r.ckpt_key is not None and r.model_key is not None}


def _plural(n: int, status: str) -> str:
    info = STATUS_INFO[status]
    return f"{n:,} {info.label if n == 1 else info.plural}"


def pairing_change(before: Iterable[Any], after: Iterable[Any]) -> str:
    """What a rename-rule change did, computed from the two comparisons' rows.

    E.g. "152 keys now pair up: 150 dtype mismatches, 2 shape mismatches." A key "pairs up"
    when a checkpoint key and a model key meet in one row. The total of matches follows
    ("Matches: 36 → 37 (+1).") unless it only repeats the pairs: nothing matched before and
    no pair was lost.
    """
    b, a = _paired(before), _paired(after)
    new = [r for k, r in a.items() if k not in b or b[k].ckpt_key != r.ckpt_key]
    lost = [k for k, r in b.items() if k not in a or a[k].ckpt_key != r.ckpt_key]
    parts = []
    if new:
        by_status: dict[str, int] = {}
        for r in new:
            by_status[r.status] = by_status.get(r.status, 0) + 1
        detail = ", ".join(_plural(by_status[s], s) for s in STATUS_INFO if s in by_status)
        parts.append(
            f"{len(new):,} key{'s' if len(new) != 1 else ''} now pair"
            f"{'' if len(new) != 1 else 's'} up: {detail}."
        )
    if lost:
        parts.append(
            f"{len(lost):,} key{'s' if len(lost) != 1 else ''} no longer pair"
            f"{'' if len(lost) != 1 else 's'} up (they show as missing/unexpected "
            "again)."
        )
    if not parts:
        parts.append("No key changed its pairing.")
    m_before = sum(1 for r in before if r.status == Status.MATCH)
    m_after = sum(1 for r in after if r.status == Status.MATCH)
    delta = m_after - m_before
    if m_before or lost or not new:
        sign = f" (+{delta:,})" if delta > 0 else ""
        parts.append(f"Matches: {m_before:,} → {m_after:,}{sign}.")
    return " ".join(parts)


def banner_payload(cmp: Any, suggestions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The one rule that explains most problems, for the banner above the tree; ``{}`` if none.

    Shown when the best rule suggestion pairs up at least half of the keys that are missing
    or unexpected (and at least one pair). ``id`` is the suggestion to accept.
    """
    rules = [s for s in suggestions if s.get("type") == "rule" and s.get("fixes")]
    if not rules:
        return {}
    best = max(rules, key=lambda s: s["fixes"])
    n_missing = sum(1 for r in cmp if r.status in (Status.MISSING, Status.MISSING_BUFFER))
    n_unexpected = sum(1 for r in cmp if r.status == Status.UNEXPECTED)
    fixes = int(best["fixes"])
    if 2 * fixes * 2 < n_missing + n_unexpected:
        return {}
    reason = str(best.get("reason") or "")
    what = reason.split(":", 1)[0].strip() if ":" in reason else best["label"]
    text = (
        f"{what}: {fixes:,} missing + {fixes:,} unexpected key{'s' if fixes != 1 else ''} pair up"
    )
    rest = n_missing + n_unexpected - 2 * fixes
    if rest > 0:
        text += f" ({rest:,} other missing/unexpected keys stay)"
    return {
        "id": best["id"],
        "label": best["label"],
        "what": what,
        "fixes": fixes,
        "text": text,
        "n_missing": n_missing,
        "n_unexpected": n_unexpected,
        "rule": best["rule"],
    }


#: how many LoRA factor pairs the ``lora`` trait lists (the count says how many more)
LORA_PAIRS_SHOWN = 500


def lora_payload(cmp: Comparison, *, merged: bool = False) -> dict[str, Any]:
    """The ``lora`` trait: the PEFT LoRA adapter the checkpoint is; ``{}`` when it is none.

    ``text`` says what it is in one line ("LoRA adapter, rank 4, alpha 8, targets c_attn,
    c_proj; holds no base weights"), ``describe`` is :meth:`LoraAdapter.describe`. The merge is
    offered (``can_merge``) when ``cmp.plan(lora="merge")`` merges at least one pair (the plan
    decides, as the action will); ``why_not`` says why not otherwise. ``pairs`` lists the first
    :data:`LORA_PAIRS_SHOWN` factor pairs, each with the model weight it modifies (``base``),
    its factors' shapes and scale, and why it is not merged (``problem``, "" when it is).
    ``merged``: the latest load of the widget is this merge (not undone).
    """
    adapter = cmp.lora
    if adapter is None:
        return {}
    shown = adapter.target_modules[:8]
    more = len(adapter.target_modules) - len(shown)
    targets = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    rank = f"rank {adapter.rank}" if adapter.rank is not None else "rank unknown"
    alpha = f"alpha {adapter.alpha:g}" if adapter.alpha is not None else "alpha unknown"
    why_not = ""
    n_merge = 0
    try:
        plan = cmp.plan(lora="merge")
    except ValueError as exc:
        why_not = f"It cannot be merged: {exc}".replace("lora='merge': ", "")
    else:
        n_merge = sum(1 for k, p in plan.lora.items() if k == p.base_key)
        if not n_merge:
            first = next(iter(plan.skipped.values()), "no factor pair fits the model")
            why_not = f"No factor pair can be merged into this model ({first})."
        elif plan.skipped:
            why_not = f"{len(plan.skipped):,} of {len(adapter.pairs):,} pairs cannot be merged."
    ckpt = cmp.checkpoint
    pairs = []
    for p in adapter.pairs[:LORA_PAIRS_SHOWN]:
        a, b = shape_text(ckpt[p.a_key].shape), shape_text(ckpt[p.b_key].shape)
        how = {"Conv1D": ", transposed (Conv1D)", "Embedding": ", transposed (Embedding)"}
        pairs.append(
            {
                "base": p.base_key,
                "a_key": p.a_key,
                "b_key": p.b_key,
                "factors": f"A {a} · B {b}, × {p.scale:g}{how.get(p.layer, '')}"
                + (", DoRA magnitude" if p.magnitude_key else "")
                + (", + lora_B.bias" if p.bias_key else ""),
                "problem": p.problem or "",
            }
        )
    scale = "√r" if adapter.use_rslora else "r"
    return {
        "text": f"LoRA adapter, {rank}, {alpha}, targets {targets or 'unnamed'}; "
        "holds no base weights",
        "describe": adapter.describe(),
        "can_merge": n_merge > 0,
        "why_not": why_not,
        "merge_label": f"Merge {n_merge:,} factor pair{'s' if n_merge != 1 else ''} into the "
        "model's weights",
        "merge_title": f"W + lora_alpha/{scale} · B @ A into each weight, as PEFT's "
        "merge_and_unload; all or nothing, and Undo restores the weights",
        "merged": bool(merged),
        "pairs": pairs,
        "n_pairs": len(adapter.pairs),
        "pairs_label": f"{len(adapter.pairs):,} factor pair{'s' if len(adapter.pairs) != 1 else ''}, "
        "each beside the model weight it modifies",
    }


def weight_sets_payload(source: Any) -> list[dict[str, Any]]:
    """The weight sets of a training checkpoint (``state_dict`` / ``ema`` ...), when several.

    Reads ``source.candidates`` (nested entry → number of tensors) and
    ``source.alternatives`` (the entries not chosen), whichever the checkpoint layer provides.
    """
    current = getattr(source, "key", None)
    options: dict[str, Any] = {}
    if current is not None:
        options[str(current)] = None
    for name in ("candidates", "alternatives"):
        found = getattr(source, name, None) or {}
        if not isinstance(found, Mapping):
            found = dict.fromkeys(found)
        for k, n in found.items():
            if options.get(str(k)) is None:
                options[str(k)] = n
    if len(options) < 2:
        return []
    return [
        {"key": k, "n_tensors": n if isinstance(n, int) else None, "current": k == current}
        for k, n in options.items()
    ]


# --------------------------------------------------------------------------------------------
# the results table
# --------------------------------------------------------------------------------------------

RESULT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("key", "tensor", "str"),
    ("action", "action", "str"),
    ("rel_change", "rel. change", "num"),
    ("max_abs_change", "max |Δ|", "num"),
    ("before_mean", "mean before", "num"),
    ("after_mean", "mean after", "num"),
    ("before_std", "std before", "num"),
    ("after_std", "std after", "num"),
    ("cast", "cast", "str"),
    ("adapter", "adapter", "str"),
    ("nonfinite", "NaN/inf", "int"),
    ("tied", "tied to", "str"),
)


def _columns_spec() -> list[dict[str, str]]:
    return [{"name": n, "label": label, "type": typ} for n, label, typ in RESULT_COLUMNS]


def results_none() -> dict[str, Any]:
    """The results table before any load."""
    return {"state": "none", "columns": _columns_spec(), "data": {}, "n": 0}


def results_computing(n: int) -> dict[str, Any]:
    """The results table while the statistics of ``n`` tensors are computed."""
    return {"state": "computing", "columns": _columns_spec(), "data": {}, "n": int(n)}


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _change_value(v: Any) -> float | str | None:
    """A relative change for JSON: the number, ``"inf"`` for a change from zero, or None.

    JSON has no infinity; the browser ranks ``"inf"`` largest and shows "∞ (from 0)". None:
    not measured.
    """
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return "inf" if f == math.inf else f if math.isfinite(f) else None


def _int_or_none(v: Any) -> int | None:
    f = _num(v)
    return None if f is None else int(f)


def results_payload(
    frame: Any, *, adapted: Mapping[str, str] | None = None, tied: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``LoadReport.to_frame()`` as the columnar results table the browser sorts and pages.

    NaN/inf become ``None`` (JSON). ``nonfinite`` counts NaN + inf after the load.
    """
    adapted = adapted or {}
    tied = tied or {}
    records = frame.to_dict("records") if len(frame) else []
    data: dict[str, list[Any]] = {n: [] for n, _, _ in RESULT_COLUMNS}
    for r in records:
        key = str(r.get("key"))
        nan, inf = _int_or_none(r.get("after_nan_count")), _int_or_none(r.get("after_inf_count"))
        rel = r.get("rel_l2_change", r.get("relative_l2_change"))
        cast = r.get("cast")
        data["key"].append(key)
        data["action"].append(None if r.get("action") is None else str(r.get("action")))
        data["rel_change"].append(_change_value(rel))
        data["max_abs_change"].append(_num(r.get("max_abs_change")))
        for col in ("before_mean", "after_mean", "before_std", "after_std"):
            data[col].append(_num(r.get(col)))
        data["cast"].append(cast if isinstance(cast, str) and cast else None)
        data["adapter"].append(adapted.get(key))
        data["nonfinite"].append(None if nan is None and inf is None else (nan or 0) + (inf or 0))
        data["tied"].append(tied.get(key))
    return {"state": "ready", "columns": _columns_spec(), "data": data, "n": len(records)}


def most_changed(table: Mapping[str, Any]) -> list[str]:
    """Keys of a results table, most changed first (relative change, then max |change|).

    A change from zero (relative change ``"inf"``) ranks first; unmeasured rows last.
    """
    d = table.get("data") or {}
    keys = d.get("key") or []
    rel = d.get("rel_change") or [None] * len(keys)
    mx = d.get("max_abs_change") or [None] * len(keys)

    def score(i: int) -> tuple[float, float]:
        r = math.inf if rel[i] == "inf" else rel[i]  # from zero ranks first
        return (r if r is not None else -1.0, mx[i] if mx[i] is not None else -1.0)

    return [keys[i] for i in sorted(range(len(keys)), key=score, reverse=True)]


# --------------------------------------------------------------------------------------------
# text helpers and the static (no widget front end) summary
# --------------------------------------------------------------------------------------------


def format_count(n: int) -> str:
    """A count with thousands separators: ``12,345``."""
    return f"{n:,}"


def png_data_url(png: bytes) -> str:
    """PNG bytes as a ``data:`` URL for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def count_phrases(payload: Mapping[str, Any]) -> list[str]:
    """Per status present, ``"N label"`` (the plural label above one), in the payload's order."""
    out = []
    for status, n in zip(payload["statuses"], payload["counts"], strict=True):
        if n:
            item = _LEGEND_BY_STATUS.get(status, {"label": status, "plural": status + "s"})
            out.append(f"{n} {item['label'] if n == 1 else item['plural']}")
    return out


def summary_text(payload: Mapping[str, Any], *, n_selected: int = 0, max_rows: int = 20) -> str:
    """Plain-text summary: counts per status and the first problem rows (stable, no ids)."""
    lines = [
        "Explorer: "
        + escape_text(
            f"{payload.get('model') or 'model'} ← {payload.get('source') or 'checkpoint'}"
        ),
        f"{payload['n_keys']} keys: "
        + (", ".join(count_phrases(payload)) or "none")
        + f"; {n_selected} selected",
    ]
    if payload.get("diagnosis"):
        lines.append(str(payload["diagnosis"]))
    cols = payload["columns"]
    problems = _problem_entries(payload)
    for i in problems[:max_rows]:
        status = payload["statuses"][cols["status"][i]]
        lines.append(
            f"  {_LEGEND_BY_STATUS[status]['icon']} {escape_text(cols['path'][i])}: "
            f"{_LEGEND_BY_STATUS[status]['label']}" + _shapes_text(payload, i)
        )
    if len(problems) > max_rows:
        lines.append(f"  … and {len(problems) - max_rows} more")
    return "\n".join(lines)


def _problem_entries(payload: Mapping[str, Any]) -> list[int]:
    """Indices of the tensor entries whose status is not ``match``, in tree order."""
    cols, statuses = payload["columns"], payload["statuses"]
    return [
        i
        for i, (t, s) in enumerate(zip(cols["t"], cols["status"], strict=True))
        if t == 1 and statuses[s] != Status.MATCH
    ]


def _shapes_text(payload: Mapping[str, Any], i: int) -> str:
    """`` (detail)`` after a problem row's label, or "" (see :func:`_detail_text`)."""
    detail = _detail_text(payload, i)
    return f" ({detail})" if detail else ""


def _detail_text(payload: Mapping[str, Any], i: int) -> str:
    """What differs for entry ``i``: both shapes, both dtypes or the checkpoint key; or ""."""
    cols = payload["columns"]
    status = payload["statuses"][cols["status"][i]]
    if status == Status.SHAPE_MISMATCH:
        ckpt, model = shape_text(cols["ckpt_shape"][i]), shape_text(cols["model_shape"][i])
        return f"checkpoint {ckpt} vs model {model}"
    if status == Status.DTYPE_MISMATCH:
        d = payload["dtypes"]
        return f"checkpoint {d[cols['ckpt_dtype'][i]]} vs model {d[cols['model_dtype'][i]]}"
    if cols["ckpt_key"][i]:
        return f"checkpoint key {escape_text(cols['ckpt_key'][i])}"
    return ""


def summary_html(payload: Mapping[str, Any], *, n_selected: int = 0, max_rows: int = 50) -> str:
    r"""The readable static fallback: a small HTML table, every string escaped.

    Control characters in names from a file are written as Python escapes (``\x1b``) before
    HTML escaping: the report may be printed to a terminal (``diff --format html``).
    """

    def e(text: str) -> str:
        return html.escape(escape_text(text))

    cols = payload["columns"]
    head = (
        f"<p><b>sd_widgets Explorer</b>: {e(payload.get('model') or 'model')} ← "
        f"{e(payload.get('source') or 'checkpoint')}<br>{payload['n_keys']} keys: "
        f"{e(', '.join(count_phrases(payload)) or 'none')}; {n_selected} selected. "
        + (f"{e(str(payload['diagnosis']))} " if payload.get("diagnosis") else "")
        + "<i>(Static summary: run the notebook with a live kernel for the interactive "
        "explorer.)</i></p>"
    )
    rows = []
    problems = _problem_entries(payload)
    for i in problems[:max_rows]:
        status = payload["statuses"][cols["status"][i]]
        item = _LEGEND_BY_STATUS[status]
        rows.append(
            f"<tr><td>{e(item['icon'])} {e(item['label'])}</td>"
            f"<td><code>{e(cols['path'][i])}</code></td>"
            f"<td>{e(_detail_text(payload, i))}</td></tr>"
        )
    more = (
        f"<tr><td colspan='3'>… and {len(problems) - max_rows} more</td></tr>"
        if len(problems) > max_rows
        else ""
    )
    table = (
        (
            "<table><thead><tr><th>status</th><th>key</th><th>detail</th></tr></thead>"
            f"<tbody>{''.join(rows)}{more}</tbody></table>"
        )
        if rows
        else ""
    )
    return f"<div class='sdw-static'>{head}{table}</div>"


def tree_to_json(value: Mapping[str, Any]) -> memoryview:
    r"""The tree payload as one binary buffer of UTF-8 JSON (the ``to_json`` of the trait).

    ipywidgets walks every list and dict of a trait's value looking for binary buffers before it
    sends it; for a 10,000-key tree that walk alone cost more than building the payload. One
    buffer is sent as it is. ``ensure_ascii`` keeps lone surrogates from hostile keys encodable
    (``"\udc80"`` in the JSON text, the same character again after ``JSON.parse``), and NaN is
    refused as the kernel's own JSON encoder refuses it.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return memoryview(text.encode("ascii"))
