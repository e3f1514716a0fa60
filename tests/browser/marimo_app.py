"""The Explorer in a marimo app, as a workshop would use it (run by ``test_marimo.py``).

``marimo run tests/browser/marimo_app.py``: a checkpoint saved from a DataParallel model (every
key under ``module.``) opened against the demo CNN, the Explorer wrapped in
``mo.ui.anywidget``, and a cell that reads the selection Python holds when the button asks it
to (selection gestures are handled in Python: they change ``selected_keys`` without a browser
write, so marimo re-runs nothing by itself).
"""

import marimo

app = marimo.App()


@app.cell
def _():
    import html
    import json

    import marimo as mo

    import sd_widgets as sdw
    from sd_widgets import demo

    return demo, html, json, mo, sdw


@app.cell
def _(demo, mo, sdw):
    model = demo.target_model("dataparallel")
    explorer = mo.ui.anywidget(sdw.Explorer(model, demo.variant("dataparallel")))
    explorer  # noqa: B018 - marimo shows a cell's last expression
    return (explorer,)


@app.cell
def _(mo):
    ask = mo.ui.run_button(label="What does Python see?")
    ask  # noqa: B018 - marimo shows a cell's last expression
    return (ask,)


@app.cell
def _(ask, explorer, html, json, mo):
    _ = ask.value  # marimo re-runs this cell when the button is pressed
    seen = {
        "selected_keys": list(explorer.widget.selected_keys),
        "can_undo": explorer.widget.can_undo,
        "loads": len(explorer.widget.reports),
    }
    mo.Html(
        '<pre data-role="python-sees" style="white-space: pre-wrap">'
        f"{html.escape(json.dumps(seen))}</pre>"
    )
    return


if __name__ == "__main__":
    app.run()
