"""What the panels around the tree show.

The preview of a plan, rename suggestions and rules, the banner, what a rule change did, the
LoRA strip and the weight sets.

Plain functions from core objects to trait payloads; nothing here imports the widget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast, get_args

from ..statuses import STATUS_INFO, Status
from ..units import human_bytes as format_bytes
from ..units import numel as _numel
from ..units import shape_text
from ._summary import format_count

if TYPE_CHECKING:
    from ..compare._compare import Comparison


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


def pairing_change(before: Any, after: Any) -> str:
    """What a rename-rule change did, computed from the two comparisons (their rows, counts).

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
    m_before, m_after = before.summary()[Status.MATCH], after.summary()[Status.MATCH]
    delta = m_after - m_before
    if m_before or lost or not new:
        sign = f" (+{delta:,})" if delta > 0 else ""
        parts.append(f"Matches: {m_before:,} → {m_after:,}{sign}.")
    return " ".join(parts)


def banner_payload(cmp: Any, suggestions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The one rule that pairs up most missing and unexpected keys, for the banner; ``{}`` if none.

    Shown when the best rule suggestion pairs up at least half of the keys that are missing
    or unexpected (and at least one pair). ``id`` is the suggestion to accept; ``head`` says
    whether it pairs up every such key or most of them, ``text`` how many and which rule.
    """
    rules = [s for s in suggestions if s.get("type") == "rule" and s.get("fixes")]
    if not rules:
        return {}
    best = max(rules, key=lambda s: s["fixes"])
    counts = cmp.summary()
    n_missing = counts[Status.MISSING] + counts[Status.MISSING_BUFFER]
    n_unexpected = counts[Status.UNEXPECTED]
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
        text += f" ({rest:,} other missing/unexpected " + (
            "key stays)" if rest == 1 else "keys stay)"
        )
    # what the rule does, no more: it pairs keys up; whether each pair matches (or is a shape
    # mismatch) shows once it is applied
    head = (
        "One rule pairs up every missing and unexpected key"
        if rest <= 0
        else "One rule pairs up most missing and unexpected keys"
    )
    return {
        "id": best["id"],
        "head": head,
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
