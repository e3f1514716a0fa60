"""Text for people and for hosts without the front end.

Counts, the plain-text and the static HTML summary (every string from a file escaped), data
URLs of plots.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

from ..statuses import Status
from ..units import escape_text, shape_text
from ._tree_payload import _LEGEND_BY_STATUS

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
