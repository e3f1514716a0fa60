"""The teaching notebooks are stored executed: nbval (``make test``) re-runs them and compares
outputs, which only means something when every code cell was saved with its outputs and none
of them is an error. ``app.ipynb`` is the Voilà/Binder app: it shows nothing but the app.

The lessons that teach with the Explorer (02-04) are also run here in a kernel, and every
Explorer they created is asked afterwards whether its view is stale: after "Run all" none may
show the stale banner."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = [
    "01_quickstart.ipynb",
    "02_transfer_learning.ipynb",
    "03_batchnorm_statistics.ipynb",
    "04_renamed_and_prefixed_keys.ipynb",
    "05_dtypes_devices_and_safety.ipynb",
    "06_big_and_sharded_checkpoints.ipynb",
    "07_what_changed.ipynb",
    "08_vit_and_lora.ipynb",
]
APP = "app.ipynb"
#: lessons where the Explorer is part of the lesson
WITH_EXPLORER = [
    "02_transfer_learning.ipynb",
    "03_batchnorm_statistics.ipynb",
    "04_renamed_and_prefixed_keys.ipynb",
    "07_what_changed.ipynb",
]
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def load(name: str) -> dict[str, Any]:
    return json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))


def code_cells(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def output_texts(nb: dict[str, Any], *, measured: bool = True) -> list[str]:
    """Text outputs; ``measured=False`` leaves out the cells that measure time on purpose
    (marked ``# NBVAL_IGNORE_OUTPUT``: nbval does not compare them)."""
    texts = []
    for c in code_cells(nb):
        if not measured and "".join(c["source"]).startswith("# NBVAL_IGNORE_OUTPUT"):
            continue
        for o in c.get("outputs", []):
            if "text" in o:
                texts.append("".join(o["text"]))
            for mime, value in o.get("data", {}).items():
                if mime.startswith("text/"):
                    texts.append("".join(value) if isinstance(value, list) else str(value))
    return texts


def test_all_lessons_and_the_app_exist():
    assert [n for n in [*EXPECTED, APP] if n not in ALL] == []


@pytest.mark.parametrize("name", ALL)
def test_notebook_is_saved_executed_in_order_without_errors(name):
    nb = load(name)
    code = code_cells(nb)
    assert code, f"{name} has no code"
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{name}: code cell {counts.index(None) + 1} was saved unexecuted"
    assert counts == list(range(1, len(code) + 1)), f"{name} was not run top to bottom: {counts}"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == [], f"{name} was saved with an error: {errors[0].get('ename')}"
    assert any(c.get("outputs") for c in code), f"{name} was saved without outputs"
    markdown = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    if name != APP:
        assert len(markdown) >= 4, f"{name} should read as a lesson, not a script"


@pytest.mark.parametrize("name", ALL)
def test_outputs_hold_no_addresses_or_timings(name):
    """Stored outputs are what nbval compares and what a reader sees: no memory addresses,
    no absolute paths, no timings (except in cells that measure on purpose and are excluded
    from nbval's comparison)."""
    nb = load(name)
    timed = [i for i, c in enumerate(nb["cells"]) if "execution" in c.get("metadata", {})]
    assert timed == [], f"{name}: cells {timed} carry execution timestamps (record_timing)"
    for text in output_texts(nb):
        assert not re.search(r"0x[0-9a-fA-F]{6,}", text), f"{name}: a memory address: {text!r}"
        assert "/work/" not in text and "/root/" not in text, f"{name}: an absolute path"
    for text in output_texts(nb, measured=False):
        assert not re.search(r"\bin \d+\.\d+ ?s\b|\d+\.\d+ ?(ms|seconds)\b", text), (
            f"{name}: a timing: {text!r}"
        )


@pytest.mark.parametrize("name", WITH_EXPLORER)
def test_lesson_teaches_with_the_explorer_beside_the_api(name):
    sources = ["".join(c["source"]) for c in code_cells(load(name))]
    assert any("sdw.Explorer(" in s for s in sources), f"{name} does not use the Explorer"
    assert any("handle_action(" in s for s in sources), (
        f"{name} shows the Explorer but never drives it (outputs would not be reproducible)"
    )
    assert any("sdw.compare(" in s or "partial_load(" in s for s in sources), (
        f"{name} lost its API cells"
    )


def test_app_shows_only_the_app():
    """Voilà shows outputs only: the app notebook prints nothing, and its one output is the
    app widget (a model choice, a checkpoint choice or upload, and the Explorer)."""
    nb = load(APP)
    code = code_cells(nb)
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert len(outputs) == 1, [o.get("output_type") for o in outputs]
    (out,) = outputs
    assert out["output_type"] == "display_data"
    assert "application/vnd.jupyter.widget-view+json" in out["data"]
    source = "\n".join("".join(c["source"]) for c in code)
    for needed in ("demo.variants_for", "widgets.FileUpload", "sdw.Explorer(", "tempfile"):
        assert needed in source, needed
    # uploads are opened weights-only; the one widening is the trust step's list of data
    # classes the user allowed (never trust=True, never weights_only=False)
    assert [line.strip() for line in source.splitlines() if "trust=" in line] == [
        "return sdw.open_checkpoint(path, trust=list(allowed) or False)"
    ]
    assert "trust=True" not in source and "weights_only" not in source


@pytest.mark.parametrize("name", ALL)
def test_notebooks_import_only_public_names(name):
    """A lesson or the app is what users copy: it imports no private module or name of
    sd_widgets (the app asks ``sd_widgets.checkpoint.runs_code``, not ``checkpoint._trust``)."""
    import argparse
    import ast
    import os

    from sd_widgets.checkpoint import runs_code

    private = []
    for cell in code_cells(load(name)):
        source = "".join(cell["source"])
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sd_widgets"):
                names = [*node.module.split("."), *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [
                    p
                    for a in node.names
                    if a.name.startswith("sd_widgets")
                    for p in a.name.split(".")
                ]
            else:
                continue
            private += [n for n in names if n.startswith("_")]
    assert private == [], f"{name} imports private names of sd_widgets: {private}"
    assert runs_code(argparse.Namespace) is None and runs_code(os.system) is not None


def test_binder_and_voila_point_at_the_app():
    readme = (NOTEBOOKS.parent / "README.md").read_text(encoding="utf-8")
    assert "urlpath=voila/render/notebooks/app.ipynb" in readme
    assert "voila" in (NOTEBOOKS.parent / "binder" / "requirements.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", WITH_EXPLORER)
def test_no_explorer_is_stale_after_run_all(name, tmp_path):
    """Run the lesson top to bottom in a kernel, then ask every Explorer it made whether the
    model changed outside it (the check behind the stale banner)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import gc as _gc\n"
            "import sd_widgets as _sdw\n"
            "_ws = [o for o in _gc.get_objects() if isinstance(o, _sdw.Explorer)]\n"
            "print('explorers', len(_ws), 'stale', sum(bool(w.check_stale()) for w in _ws))"
        )
    )
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    found = re.search(r"explorers (\d+) stale (\d+)", text)
    assert found, text
    assert int(found.group(1)) >= 1, f"{name}: no Explorer was created"
    assert found.group(2) == "0", f"{name}: an Explorer shows the stale banner after Run all"


def test_the_app_closes_the_explorer_a_new_choice_replaces(monkeypatch):
    """Each choice in the Voilà app builds a new Explorer; the one it replaces leaves the page,
    and must not stay alive (ipywidgets keeps a widget until ``close()``) with its undo
    snapshots and its global torch hooks."""
    import IPython.display

    import sd_widgets as sdw

    monkeypatch.setattr(IPython.display, "display", lambda *_a, **_k: None)
    ns: dict[str, Any] = {}
    for cell in code_cells(load(APP)):
        exec(compile("".join(cell["source"]), APP, "exec"), ns)
    slot = ns["slot"]
    (first,) = slot.children
    assert isinstance(first, sdw.Explorer) and first.comm is not None
    first.handle_action({"action": "load"})
    (report,) = first.reports
    assert report.snapshot_nbytes > 0
    ns["source_choice"].value = "identical"  # another checkpoint: a new Explorer
    (second,) = slot.children
    assert isinstance(second, sdw.Explorer) and second is not first
    assert first.comm is None and report.released and first.model is None
    assert second.comm is not None
    ns["model_choice"].value = "inspect"  # no model: the file's table, no Explorer
    assert second.comm is None and not any(isinstance(c, sdw.Explorer) for c in slot.children)
