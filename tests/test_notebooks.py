"""The teaching notebooks are stored executed: nbval (``make test``) re-runs them and compares
outputs, which only means something when every code cell was saved with its outputs and none
of them is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = [
    "01_quickstart.ipynb",
    "02_transfer_learning.ipynb",
    "03_batchnorm_statistics.ipynb",
    "04_renamed_and_prefixed_keys.ipynb",
    "05_dtypes_devices_and_safety.ipynb",
    "06_big_and_sharded_checkpoints.ipynb",
]


def test_all_six_notebooks_exist():
    present = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert [n for n in EXPECTED if n not in present] == []


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_is_saved_executed_in_order_without_errors(name):
    nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code, f"{name} has no code"
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{name}: code cell {counts.index(None) + 1} was saved unexecuted"
    assert counts == list(range(1, len(code) + 1)), f"{name} was not run top to bottom: {counts}"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == [], f"{name} was saved with an error: {errors[0].get('ename')}"
    assert any(c.get("outputs") for c in code), f"{name} was saved without outputs"
    markdown = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    assert len(markdown) >= 4, f"{name} should read as a lesson, not a script"
