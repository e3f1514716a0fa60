"""The screenshot names in tests/browser/ARTIFACTS.md are the ones the browser tests write.

No browser needed: this reads the test sources, so it runs in the unit tier too.
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE / "ARTIFACTS.md"

#: what issue 10's "Done when" asks the browser tests to save
ISSUE_10 = ("first-view", "banner", "keyboard-flow-3-selected", "keyboard-flow-4-loaded")
ISSUE_10_RESULTS = "results-table"


def documented() -> set[str]:
    """Every ``name.png`` in backticks in ARTIFACTS.md (templated names like ``<n>`` left out)."""
    names = re.findall(r"`([A-Za-z0-9_.-]+)\.png`", DOC.read_text())
    return {n for n in names if not n.startswith("FAILED-")}


def written() -> dict[str, str]:
    """``{screenshot name: test file}`` of every literal ``.screenshot("name", ...)`` here."""
    out = {}
    for path in sorted(p for p in HERE.glob("test_*.py") if p.name != "test_artifacts.py"):
        for name in re.findall(r"\.screenshot\(\s*\"([^\"]+)\"", path.read_text()):
            out[name] = path.name
    return out


def test_every_documented_screenshot_is_written_by_a_test():
    stale = documented() - set(written())
    assert not stale, f"ARTIFACTS.md lists screenshots no test writes any more: {sorted(stale)}"


def test_the_issue_10_screenshots_are_documented_and_written():
    need = {*ISSUE_10, ISSUE_10_RESULTS}
    assert need <= documented(), sorted(need - documented())
    assert need <= set(written()), sorted(need - set(written()))


def test_the_browser_modules_screenshots_are_documented():
    """The modules of this directory's own tests; the layout work's modules are listed by
    range (``layout-1-… … layout-4-…``) and may add shots before the list follows."""
    mine = {n for n, f in written().items() if f not in ("test_layout.py", "test_sticky.py")}
    missing = mine - documented()
    assert not missing, f"screenshots missing from ARTIFACTS.md: {sorted(missing)}"
