"""The Explorer in a marimo app, as a workshop would use it (run by ``test_marimo.py``).

``marimo run tests/browser/marimo_app.py``: a checkpoint saved from a DataParallel model (every
key under ``module.``) opened against the demo CNN, the Explorer wrapped in
``mo.ui.anywidget``, and a cell that reads what Python holds when the button asks it to
(selection gestures are handled in Python: they change ``selected_keys`` without a browser
write, so marimo re-runs nothing by itself). The checkpoint is a dropdown's choice, so choosing
another runs the Explorer's cell again, as an instructor's app does; that cell keeps a weak
reference to every Explorer it built, and the Python cell says how many are still alive.
"""

import marimo

app = marimo.App()


@app.cell
def _():
    import gc
    import html
    import json
    import weakref

    import marimo as mo

    import sd_widgets as sdw
    from sd_widgets import demo

    built = []  # a weak reference to every Explorer built
    asked = []  # one item per answer of the Python cell (so each answer differs)
    return asked, built, demo, gc, html, json, mo, sdw, weakref


@app.cell
def _(mo):
    variant = mo.ui.dropdown(
        ["dataparallel", "identical"], value="dataparallel", label="checkpoint"
    )
    variant  # noqa: B018 - marimo shows a cell's last expression
    return (variant,)


@app.cell
def _(built, demo, mo, sdw, variant, weakref):
    _w = sdw.Explorer(demo.target_model(variant.value), demo.variant(variant.value))
    built.append(weakref.ref(_w))
    explorer = mo.ui.anywidget(_w)
    explorer  # noqa: B018 - marimo shows a cell's last expression
    return (explorer,)


@app.cell
def _(mo):
    ask = mo.ui.run_button(label="What does Python see?")
    ask  # noqa: B018 - marimo shows a cell's last expression
    return (ask,)


@app.cell
def _(ask, asked, built, explorer, gc, html, json, mo):
    _ = ask.value  # marimo re-runs this cell when the button is pressed
    asked.append(1)
    gc.collect()
    seen = {
        "answer": len(asked),
        "selected_keys": list(explorer.widget.selected_keys),
        "can_undo": explorer.widget.can_undo,
        "loads": len(explorer.widget.reports),
        "built": len(built),
        "alive": sum(ref() is not None for ref in built),
    }
    mo.Html(
        '<pre data-role="python-sees" style="white-space: pre-wrap">'
        f"{html.escape(json.dumps(seen))}</pre>"
    )
    return


if __name__ == "__main__":
    app.run()
