"""``marimo run`` on 127.0.0.1 for the browser tests (test_marimo.py, test_narrow.py).

The server is a :class:`~.harness.ManagedProcess` in the isolated environment the Jupyter
servers get (HOME and every config directory in a temporary directory, the repository on
``PYTHONPATH``); it is up when ``GET /`` answers 200. marimo renders the widget in a shadow
root: Playwright's CSS locators pierce it, ``document.querySelector`` does not.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .harness import (
    VIEWPORT,
    HarnessError,
    ManagedProcess,
    _ServedPages,
    _start_with_port_retry,
    isolated_env,
)

APP = Path(__file__).with_name("marimo_app.py")


class MarimoApp(_ServedPages):
    """``marimo run APP`` on a free port of 127.0.0.1; :meth:`open` a page on it."""

    kind = "marimo"

    def __init__(
        self,
        browser: Any,
        base_dir: Path,
        artifacts: Path,
        test_name: str,
        app_text: str | None = None,
        timeout: float = 90.0,
    ):
        super().__init__(browser, artifacts, test_name)
        base_dir.mkdir(parents=True, exist_ok=True)
        self.app_path = base_dir / "app.py"
        self.app_path.write_text(app_text if app_text is not None else APP.read_text())
        env = isolated_env(base_dir)
        env["XDG_CONFIG_HOME"] = str(base_dir / "config")
        env["XDG_CACHE_HOME"] = str(base_dir / "cache")
        env["XDG_STATE_HOME"] = str(base_dir / "state")
        env.pop("MPLBACKEND", None)  # marimo sets its own
        self.pages: list[Any] = []

        def start(port: int) -> ManagedProcess:
            cmd = [
                sys.executable,
                "-m",
                "marimo",
                "run",
                str(self.app_path),
                "--headless",
                "--host=127.0.0.1",
                f"--port={port}",
                "--no-token",
            ]
            return ManagedProcess("marimo", cmd, env, base_dir, base_dir / f"marimo-{port}.log")

        self.process, self.port, self.startup_seconds = _start_with_port_retry(
            start, lambda port: f"http://127.0.0.1:{port}/", lambda status: status == 200, timeout
        )
        self.url = f"http://127.0.0.1:{self.port}/"

    def open(self, viewport: dict[str, int] | None = None, timeout: float = 90.0) -> Any:
        """A fresh page on the app; returns the Explorer's root once it says data-ready."""
        page, _monitor = self._new_page()
        page.set_viewport_size(viewport or VIEWPORT)
        self.pages.append(page)
        try:
            page.goto(self.url, wait_until="domcontentloaded", timeout=timeout * 1000)
            root = page.locator(".sdw-explorer")
            root.and_(page.locator("[data-ready=true]")).wait_for(timeout=timeout * 1000)
        except Exception as exc:
            raise HarnessError(self._diagnose(f"the marimo app did not render: {exc}")) from exc
        return root

    @property
    def page(self) -> Any:
        return self.pages[-1]
