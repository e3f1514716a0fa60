"""A marimo app whose Explorer cell runs again on every choice (run by ``test_marimo.py``).

``marimo run tests/browser/marimo_rerun_app.py``: a dropdown chooses a demo checkpoint, and the
cell that builds the Explorer depends on it, so each choice runs that cell again, as an
instructor's app does. marimo closes the old widget's comm then (and never the widget); a cell
that keeps weak references to every Explorer built says how many are still alive.
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
    asked = []  # one item per answer of the Python cell (each answer differs)
    return asked, built, demo, gc, html, json, mo, sdw, weakref


@app.cell
def _(mo):
    variant = mo.ui.dropdown(["new_head", "identical"], value="new_head", label="checkpoint")
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
        "built": len(built),
        "alive": sum(ref() is not None for ref in built),
        "loads": len(explorer.widget.reports),
    }
    mo.Html(
        '<pre data-role="python-sees" style="white-space: pre-wrap">'
        f"{html.escape(json.dumps(seen))}</pre>"
    )
    return


if __name__ == "__main__":
    app.run()
