"""The results of a load as the widget's table: one row per loaded tensor, most changed first."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

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
