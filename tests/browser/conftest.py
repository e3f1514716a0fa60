"""Fixtures for real-browser tests (JupyterLab / Voila in headless Chromium).

See ``tests/browser/harness.py`` for the API and an example.  Every test module here
should set ``pytestmark = pytest.mark.browser`` (run them with ``pytest -m browser``,
skip them with ``-m "not browser"``).

Without ``/usr/bin/chromium`` (or ``$SDW_CHROMIUM``) the tests are skipped locally, but
FAIL when ``$CI`` is set: a CI run must never go green by silently skipping the browser.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    JupyterServer,
    Lab,
    VoilaLauncher,
    artifacts_dir,
    safe_name,
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report as ``item.rep_setup`` / ``rep_call`` (for failure artifacts)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture(scope="session")
def sdw_artifacts() -> Path:
    """Where screenshots and failure logs go (``$SDW_ARTIFACTS`` or ``tests/artifacts/``)."""
    path = artifacts_dir()
    print(f"\n[sdw] browser test artifacts: {path}")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Playwright Chromium (Debian's /usr/bin/chromium), shared by the session."""
    if not os.path.exists(CHROMIUM_PATH):
        reason = (
            f"Chromium not found at {CHROMIUM_PATH} (install with `apt-get install -y chromium` "
            "or set SDW_CHROMIUM)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}: browser tests must not be skipped in CI.")
        pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover
        if os.environ.get("CI"):
            pytest.fail(f"playwright is not installed: {exc}")
        pytest.skip(f"playwright is not installed: {exc}")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """One isolated JupyterLab server for the whole session (see JupyterServer)."""
    server = JupyterServer.start(tmp_path_factory.mktemp("jupyterlab"))
    print(
        f"\n[sdw] JupyterLab {server.url} up in {server.startup_seconds:.1f}s; "
        f"root {server.root_dir}; log {server.process.log_path}"
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_artifacts(request: pytest.FixtureRequest) -> None:
    """Before a test that drives a browser: delete its ``FAILED-*`` artifacts from an earlier
    run (the names ``save_failure_artifacts`` and ``_diagnose`` write), so what is left after
    this run is about this run.  Other tests' files stay: tests may run side by side."""
    if not {"lab", "voila_server"} & set(request.fixturenames):
        return
    artifacts = request.getfixturevalue("sdw_artifacts")
    name = safe_name(request.node.name)
    suffixes = [*map(str, range(10)), "diagnose", "voila"]
    stale = {f"{safe_name(f'FAILED-{name}-{s}')}.png" for s in suffixes}
    stale.add(f"FAILED-{name}-console.log")
    for file in stale:
        (artifacts / file).unlink(missing_ok=True)


def _on_failure(request: pytest.FixtureRequest, owner: Any, pages: list[Any], process: Any) -> None:
    """If the test failed: screenshots of ``pages``, the console log, the server log tail."""
    if _failed(request):
        owner.save_failure_artifacts(pages)
        print(process.describe(40))


@pytest.fixture
def lab(browser, jupyter_server: JupyterServer, sdw_artifacts: Path, request) -> Iterator[Lab]:
    """A fresh browser context on the shared JupyterLab, with notebook helpers (see Lab)."""
    helper = Lab(browser, jupyter_server, sdw_artifacts, request.node.name)
    try:
        yield helper
    finally:
        _on_failure(request, helper, [helper.page], jupyter_server.process)
        helper.close()


@pytest.fixture
def voila_server(browser, tmp_path: Path, sdw_artifacts: Path, request) -> Iterator[VoilaLauncher]:
    """Factory: ``app = voila_server(cells_or_path)`` serves that notebook under Voila."""
    launcher = VoilaLauncher(browser, tmp_path, sdw_artifacts, request.node.name)
    try:
        yield launcher
    finally:
        for server in launcher.servers:
            _on_failure(request, server, server.pages, server.process)
        t0 = time.monotonic()
        launcher.stop_all()
        if launcher.servers:
            print(f"[sdw] Voila stopped in {time.monotonic() - t0:.1f}s")
