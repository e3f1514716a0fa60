"""A standalone, offline HTML report of what an :class:`~sd_widgets.Explorer` shows.

One file, nothing to fetch: the Explorer's own front end (the same bundle the widget ships,
``static/bundle/explorer.js`` and ``explorer.css``) is inlined with a snapshot of the widget's
synced traits, among them the tree payload of :func:`._tree_payload.payload_from_comparison` — the one
serialiser. On this page the bundle's ``static/report.js`` hands that snapshot (the element
``#sdw-state``) to the front end's ``render`` through a model with no kernel behind it (it does
nothing on any other page): search, filters, the
legend, expand/collapse, the problems strip and the details work as in the notebook, and the
value comparison (its badges in the tree and its list) when the Explorer compared values; nothing
selects or loads (``read_only`` hides the action bar, the tabs and every button that would ask
Python for something).

Everything from a file stays text: the snapshot travels as JSON inside a
``<script type="application/json">`` with ``<``, ``>``, ``&`` and the JavaScript line
separators escaped (a key containing ``</script>`` cannot end the element), the front end
inserts strings with ``textContent`` only, and the header's strings are HTML-escaped inside
``<bdi>`` with control characters and bidi overrides written as escapes (as the CLI writes
them). A Content-Security-Policy
allows only the page's own script (by its hash), so an injected handler could not run and
nothing can be fetched.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import json
import os
import pathlib
from typing import TYPE_CHECKING, Any, TextIO

import anywidget

from .. import __version__
from ..units import escape_text
from . import _panels, _results, _summary

if TYPE_CHECKING:
    from ._explorer import Explorer


#: what the report shows instead of the widget's session state: the comparison, no selection,
#: no load results, no messages; ``read_only`` tells the front end there is no kernel
_READ_ONLY_STATE: dict[str, Any] = {
    "selected_keys": [],
    "message": {},
    "busy": False,
    "busy_text": "",
    "can_undo": False,
    "tab": "preview",
    "show_code": False,
    "code": "",
    "stale": {},
    "last_load": {},
    "histograms": [],
    "histogram": {},
    "histogram_keys": [],
    "histogram_key": "",
    "bn_plot": {},
    "bn_modules": [],
    "bn_module": "",
    "meta_leftovers": {},
    "value_plot": {},
    "read_only": True,
}

#: the page around the widget: its header and width (the widget's own CSS does the rest)
_PAGE_CSS = """
body { margin: 0; padding: 16px; font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
  font-size: 13px; color: #1f1f1f; background: #fff; }
.sdw-report-head { margin: 0 0 12px; }
.sdw-report-head h1 { font-size: 18px; margin: 0 0 6px; }
.sdw-report-head dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 2px 12px;
  margin: 0 0 6px; }
.sdw-report-head dt { color: #616161; }
.sdw-report-head dd { margin: 0; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px;
  word-break: break-all; }
.sdw-report-note { margin: 0; color: #616161; }
"""

#: without a value comparison the Values panel is hidden (its Compare button needs a kernel)
_NO_VALUES_CSS = ".sdw-explorer [data-role=values] { display: none; }\n"

_JSON_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def script_json(value: Any) -> str:
    r"""``value`` as JSON that is safe between ``<script type="application/json">`` tags.

    ``<``, ``>`` and ``&`` are written as ``\u`` escapes (inside JSON strings, the only place
    they can occur, that is the same string), so no text of a file can close the element or
    open a comment; NaN is refused (``JSON.parse`` would reject it).
    """
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).translate(
        _JSON_ESCAPES
    )


def report_state(widget: Explorer) -> dict[str, Any]:
    """The widget's synced traits as the report shows them (see :data:`_READ_ONLY_STATE`).

    Every trait the Explorer itself declares is taken (so a trait the front end learns to draw
    is in the report too), then the session state is replaced by its read-only value.
    """
    own = set(type(widget).class_trait_names(sync=True)) - set(
        anywidget.AnyWidget.class_trait_names(sync=True)
    )
    state = {name: getattr(widget, name) for name in sorted(own) if not name.startswith("_")}
    state.update(_READ_ONLY_STATE)
    state["preview"] = {**_panels.empty_preview(), "bn": widget.bn_policy}
    state["results"] = _results.results_none()
    return state


def _files(widget: Explorer) -> list[str]:
    cmp = widget.comparison
    if cmp is None:
        return []
    return [str(f) for f in (cmp.checkpoint.source.files or ())]


def _note(two: bool) -> str:
    """The line under the header: what the page is, and the notebook call that shows it live."""
    if two:
        return (
            "A read-only report of two checkpoints: search, filter and expand the tree; "
            "nothing here loads. In a notebook the same view is "
            "<code>sdw.Explorer(sdw.compare_values(a, b))</code>."
        )
    return (
        "A read-only report: search, filter and expand the tree; nothing here loads. To "
        "select and load, open the same comparison with "
        "<code>sdw.Explorer(model, checkpoint)</code> in a notebook."
    )


def report_html(
    widget: Explorer,
    *,
    model_label: str | None = None,
    now: datetime.datetime | None = None,
) -> str:
    """The report page of ``widget`` (see the module docstring) as one string.

    ``model_label`` replaces the model's class name in the header (the CLI passes its
    ``--model`` spec); ``now`` is the time the header says it was written (UTC by default).
    """
    from ._explorer import CSS, ESM

    state = report_state(widget)
    tree = state.get("tree") or {}
    # the value comparison's badges and list when the Explorer compared values before
    # (Compare needs a kernel: without a comparison the panel has nothing to show)
    has_values = (state.get("values") or {}).get("state") in ("ready", "stale")
    script = ESM
    if "</script" in script.lower() or "<!--" in script:
        raise ValueError("the front end's code contains '</script' or '<!--': it cannot be inlined")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; "
        f"script-src 'sha256-{digest}'; "
        "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
    )
    written = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    source = str(tree.get("source") or "")
    model = model_label or str(tree.get("model") or "")
    n_keys = int(tree.get("n_keys") or 0)
    counts = ", ".join(_summary.count_phrases(tree)) if n_keys else "no keys"

    def bdi(text: str) -> str:
        # control characters and bidi overrides written as escapes, as the CLI prints them
        return f"<bdi>{html.escape(escape_text(text))}</bdi>"

    # two checkpoints (no model): the sides are named as the tree's columns name them
    two = widget.comparison is not None and widget.comparison.model is None
    b_name, a_name = ("b (after)", "a (before)") if has_values else ("checkpoint", "against")
    rows = [(b_name if two else "checkpoint", bdi(source))]
    files = _files(widget)
    if files and (len(files) > 1 or files[0] not in source):
        rows.append(("files", "<br>".join(bdi(f) for f in files)))
    rows += [
        (a_name if two else "model", bdi(model)),
        ("keys", html.escape(f"{n_keys:,}: {counts}")),
        ("written by", html.escape(f"sd_widgets {__version__} on {written}")),
    ]
    head = "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in rows)
    if two and has_values:
        sides = f"a: {model} → b: {source}"
    else:
        sides = f"{source} against {model}" if two else f"{model} ← {source}"
    title = html.escape(f"sd_widgets report: {escape_text(sides)}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{html.escape(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="sd_widgets {html.escape(__version__)}">
<title>{title}</title>
<style>{_PAGE_CSS}{"" if has_values else _NO_VALUES_CSS}</style>
<style>{CSS}</style>
</head>
<body>
<header class="sdw-report-head" data-role="report-head">
<h1>State dict comparison</h1>
<dl>{head}</dl>
<p class="sdw-report-note" data-role="report-note">{_note(two)}</p>
</header>
<main id="sdw-report" data-role="report"></main>
<noscript>{_summary.summary_html(tree) if tree else ""}</noscript>
<script type="application/json" id="sdw-state">{script_json(state)}</script>
<script type="module">{script}</script>
</body>
</html>
"""


def write_report(
    widget: Explorer,
    dest: str | os.PathLike[str] | TextIO,
    **options: Any,
) -> pathlib.Path | None:
    """Write :func:`report_html` to the file ``dest`` (a path: returned) or a text stream."""
    text = report_html(widget, **options)
    if isinstance(dest, (str, os.PathLike)):
        path = pathlib.Path(dest)
        path.write_text(text, encoding="utf-8")
        return path
    dest.write(text)
    return None
