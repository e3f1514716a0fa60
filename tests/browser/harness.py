"""Real-browser test harness: JupyterLab and Voila driven by headless Chromium.

The pytest fixtures live in ``tests/browser/conftest.py``; this module holds the
machinery they hand out, so a test can also import the helper types for annotations::

    from .harness import Lab, VoilaLauncher

Everything is event driven: servers are "up" when their HTTP endpoint answers, a
notebook is "ready" when JupyterLab's session context, kernel connection and a
kernel_info round trip say so, cells are "done" when every code cell has an execution
count and the kernel reports idle.  No fixed sleeps.  (Polling loops use 50-100 ms
intervals; that is the only waiting.)

Fixtures (all need ``pytestmark = pytest.mark.browser`` in the test module):

``browser``        session  Playwright ``Browser`` (Debian ``/usr/bin/chromium``).
``jupyter_server`` session  :class:`JupyterServer` -- one JupyterLab for the session.
``lab``            function :class:`Lab` -- fresh browser context + helpers.
``voila_server``   function :class:`VoilaLauncher` -- ``voila_server(cells)`` starts Voila.
``sdw_artifacts``  session  ``Path`` where screenshots / logs go (``SDW_ARTIFACTS``
                            or ``tests/artifacts/``).

Example (JupyterLab)::

    import pytest
    from playwright.sync_api import expect

    pytestmark = pytest.mark.browser

    CELLS = [
        "import sd_widgets as sdw\\nfrom sd_widgets import demo",   # str = code cell
        "w = sdw.Explorer(*demo.some_model_and_checkpoint())\\nw",
    ]

    def test_select(lab):
        page = lab.open_notebook(CELLS)   # writes the .ipynb, opens it, waits for the kernel
        lab.run_all()                     # runmenu:run-all (clears old outputs first)
        lab.wait_idle()                   # every cell executed, kernel idle; raises on errors
        out = lab.output_area(1)          # Locator scoped to the visible notebook panel
        with lab.count_messages() as msgs:                  # wire-level kernel messages
            out.get_by_role("checkbox").first.click()
            lab.wait_for_stdout("print(len(w.selected_keys))", "1")   # polls the kernel
        assert msgs.to_browser <= 2, msgs.summary()         # comm_msg kernel -> browser
        assert lab.execute("print(w.selected_keys)") != ""   # same kernel as the notebook
        lab.screenshot("explorer-selected")  # tests/artifacts/explorer-selected.png: LOOK at it

Example (Voila)::

    def test_voila(voila_server):
        app = voila_server(CELLS)         # `voila NB` on a free port, waits for HTTP
        page = app.open(wait_for=".my-widget button")   # fresh page, waits for the selector
        with app.count_messages() as msgs:
            page.locator(".my-widget button").click()
            expect(page.locator(".my-widget .echo")).to_have_text("value=1")
        assert msgs.to_kernel == 1

API at a glance (details in the docstrings below):

``Lab.open_notebook(cells | path, name=None, timeout=60) -> Page``
``Lab.run_all(clear=True)`` / ``Lab.wait_idle(timeout=60, raise_on_error=True)`` /
``Lab.run_all_and_wait()``
``Lab.execute(code, timeout=30) -> str`` (stdout; raises ``NotebookError`` on exceptions)
``Lab.wait_for_stdout(code, expected | predicate, timeout=15) -> str``
``Lab.count_messages(settle=True, quiet=0.25)`` -> context manager -> :class:`MessageWindow`
(``.to_browser``, ``.to_kernel``, ``.count(msg_type, direction)``, ``.summary()``)
``Lab.output_area(i)`` / ``Lab.cell(i)`` / ``Lab.notebook_panel`` -> Locators
``Lab.screenshot(name, locator=None, full_page=False) -> Path``
``Lab.cell_states()``, ``Lab.page``, ``Lab.root_dir``, ``Lab.path``, ``Lab.messages``
(:class:`WireMonitor`), ``Lab.console`` (browser console lines)
``VoilaServer.open(wait_for=None) -> Page``, ``.count_messages()``, ``.screenshot(name)``,
``.url``, ``.root_dir``

Explorer tests share cells and locators from the end of this module: ``SETUP`` / ``NEW_HEAD``
(notebook cells), ``run_explorer(lab, cells, cell=1, timeout=60, ui="lab") -> root``,
``explorer(lab, cell)``, ``leaf(root, key)``, ``module(root, path)``, ``click_module(root, path,
side="ckpt")``, ``expect_selected(root, n)``, ``py(lab, expr) -> str``.

On failure the ``lab`` / ``voila_server`` fixtures save ``FAILED-<test>-*.png`` and the
browser console log into the artifacts directory and print the server log tail. Each test
deletes its own ``FAILED-*`` files from an earlier run when it starts.  The screenshot names
and what each must show are listed in ``tests/browser/ARTIFACTS.md``.

Kernel environment: the kernels started by these servers have the repository root on
``PYTHONPATH`` (so ``import sd_widgets`` works without installing) and a working directory
equal to the server's temporary root (``lab.root_dir`` / ``app.root_dir``); copy data files
there if a notebook needs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

try:  # psutil is in the `test` extra; without it we still kill the process group.
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM_PATH = os.environ.get("SDW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

#: Viewport used for every page (screenshots are comparable across runs).
VIEWPORT = {"width": 1280, "height": 900}

ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class HarnessError(AssertionError):
    """A server, page or kernel did not do what the harness waited for.

    Subclasses ``AssertionError`` so pytest reports it as a test failure, with the
    diagnostics (server log tail, readiness state) in the message.
    """


class NotebookError(HarnessError):
    """A notebook cell (or :meth:`Lab.execute` code) raised in the kernel."""


# --------------------------------------------------------------------------- utilities


def artifacts_dir() -> Path:
    """Directory for screenshots and logs: ``$SDW_ARTIFACTS`` or ``tests/artifacts/``."""
    path = Path(os.environ.get("SDW_ARTIFACTS") or REPO_ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def safe_name(text: str, limit: int = 80) -> str:
    """``text`` reduced to characters that are safe in file names and URLs."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:limit] or "x"


def isolated_env(base: Path) -> dict[str, str]:
    """Environment for a Jupyter/Voila server that leaves nothing behind in ``$HOME``.

    HOME and every Jupyter/IPython/matplotlib directory point into ``base``.  The venv's
    own ``share/jupyter`` (kernelspec, anywidget and ipywidgets lab extensions) and
    ``etc/jupyter`` stay visible because Jupyter always searches ``sys.prefix``.  The
    repository root is prepended to ``PYTHONPATH`` so kernels can ``import sd_widgets``.
    """
    env = dict(os.environ)
    dirs = {
        "HOME": base / "home",
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "IPYTHONDIR": base / "ipython",
        "MPLCONFIGDIR": base / "mpl",
    }
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[key] = str(path)
    for key in ("JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTER_TOKEN"):
        env.pop(key, None)
    env["JUPYTER_PLATFORM_DIRS"] = "1"  # silence the platformdirs deprecation warning
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


def make_notebook(cells: Sequence[str | dict[str, Any]]) -> dict[str, Any]:
    """An nbformat-4 notebook dict; ``str`` items become code cells, dicts are used as is.

    A string starting with ``"%%markdown\\n"`` becomes a markdown cell.
    """
    nb_cells = []
    for i, cell in enumerate(cells):
        if isinstance(cell, dict):
            nb_cells.append({"id": f"cell-{i}", "metadata": {}, **cell})
        elif cell.startswith("%%markdown\n"):
            nb_cells.append(
                {
                    "id": f"cell-{i}",
                    "cell_type": "markdown",
                    "metadata": {},
                    "source": cell[len("%%markdown\n") :],
                }
            )
        else:
            nb_cells.append(
                {
                    "id": f"cell-{i}",
                    "cell_type": "code",
                    "metadata": {},
                    "execution_count": None,
                    "outputs": [],
                    "source": cell,
                }
            )
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            },
            "language_info": {"name": "python"},
        },
        "cells": nb_cells,
    }


def write_notebook(
    root: Path, notebook: Sequence[str | dict[str, Any]] | str | os.PathLike[str], name: str
) -> Path:
    """Write ``notebook`` (cells, or a path to copy) into ``root`` as ``name``; return the path."""
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(notebook, (str, os.PathLike)):
        shutil.copyfile(notebook, target)
    else:
        target.write_text(json.dumps(make_notebook(notebook), indent=1))
    return target


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET on ``url``, or ``None`` when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


# --------------------------------------------------------------------------- processes


class ManagedProcess:
    """A server subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path):
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        """Last ``lines`` lines of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self, lines: int = 60) -> str:
        state = "running" if self.alive() else f"exited with {self.proc.returncode}"
        return (
            f"{self.name} (pid {self.pid}, {state})\n  cmd: {' '.join(self.cmd)}\n"
            f"  log: {self.log_path}\n---- last {lines} log lines ----\n{self.log_tail(lines)}"
        )

    def wait_http(self, url: str, ready: Callable[[int], bool], timeout: float) -> float:
        """Poll ``url`` until ``ready(status)``; return seconds waited. Raise with the log."""
        start = time.monotonic()
        deadline = start + timeout
        last: int | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"{self.name} exited before it was ready.\n{self.describe()}")
            last = http_status(url)
            if last is not None and ready(last):
                return time.monotonic() - start
            time.sleep(0.1)
        raise HarnessError(
            f"{self.name} not ready after {timeout:.0f}s (GET {url} -> {last}).\n{self.describe()}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, wait, SIGKILL if needed, then reap leftover children.

        Kernels run in their own sessions (jupyter_client starts them with
        ``start_new_session``), so they are collected by pid via psutil before the
        server goes away and killed if the server's own shutdown did not end them.
        """
        children = []
        if psutil is not None and self.alive():
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(self.pid).children(recursive=True)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        if psutil is not None and children:
            alive = [c for c in children if c.is_running()]
            for child in alive:
                with contextlib.suppress(psutil.Error):
                    child.terminate()
            _gone, alive = psutil.wait_procs(alive, timeout=5)
            for child in alive:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            psutil.wait_procs(alive, timeout=5)
        self._log.close()


def _start_with_port_retry(
    start: Callable[[int], ManagedProcess],
    url_for: Callable[[int], str],
    ready: Callable[[int], bool],
    timeout: float,
    attempts: int = 3,
) -> tuple[ManagedProcess, int, float]:
    """Start a server on a free port; retry on a port race (``port_retries=0`` makes it exit)."""
    for attempt in range(attempts):
        port = free_port()
        proc = start(port)
        try:
            waited = proc.wait_http(url_for(port), ready, timeout)
            return proc, port, waited
        except HarnessError:
            log = proc.log_tail(200)
            proc.stop()
            in_use = "already in use" in log or "is not available" in log
            if not in_use or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- JupyterLab server

#: user settings written into the isolated config dir (JupyterLab reads
#: ``$JUPYTER_CONFIG_DIR/lab/user-settings``).
LAB_USER_SETTINGS: dict[str, dict[str, Any]] = {
    # autosave would write outputs back into the notebook under test
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # keep every cell in the DOM so `output_area(i)` / nth-cell locators are stable
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # no news / update checks (also disabled as a plugin in page_config.json)
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    # the extension manager would query PyPI
    "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
}

#: ``$JUPYTER_CONFIG_DIR/labconfig/page_config.json``: plugins that must not load.
LAB_PAGE_CONFIG = {
    "disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True},
}


def write_lab_config(config_dir: Path) -> None:
    """Write page_config.json and user settings that make JupyterLab quiet and deterministic."""
    labconfig = config_dir / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "page_config.json").write_text(json.dumps(LAB_PAGE_CONFIG, indent=1))
    for plugin, settings in LAB_USER_SETTINGS.items():
        path = config_dir / "lab" / "user-settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1))


@dataclass
class JupyterServer:
    """A running JupyterLab server (session fixture ``jupyter_server``)."""

    url: str  #: ``http://127.0.0.1:<port>`` (no trailing slash)
    port: int
    root_dir: Path  #: notebooks are written here; kernels start here
    base_dir: Path  #: temp dir holding root, HOME, config, data, runtime and the log
    process: ManagedProcess
    startup_seconds: float

    @classmethod
    def start(cls, base_dir: Path, timeout: float = 90.0) -> JupyterServer:
        """Start ``python -m jupyterlab`` isolated in ``base_dir``; wait for ``/api/status``."""
        base_dir.mkdir(parents=True, exist_ok=True)
        root = base_dir / "root"
        root.mkdir(exist_ok=True)
        env = isolated_env(base_dir)
        write_lab_config(Path(env["JUPYTER_CONFIG_DIR"]))

        def start(port: int) -> ManagedProcess:
            cmd = [
                sys.executable,
                "-m",
                "jupyterlab",
                "--allow-root",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                "--IdentityProvider.token=",
                "--ServerApp.password=",
                "--ServerApp.disable_check_xsrf=True",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.terminals_enabled=False",
                "--LabApp.expose_app_in_browser=True",
                "--JupyterNotebookApp.expose_app_in_browser=True",  # Notebook 7, same server
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",
            ]
            return ManagedProcess("JupyterLab", cmd, env, root, base_dir / f"jupyterlab-{port}.log")

        started = time.monotonic()
        proc, port, _ = _start_with_port_retry(
            start,
            lambda port: f"http://127.0.0.1:{port}/api/status",
            lambda status: status == 200,
            timeout,
        )
        # /api/status answers before the lab page handler is guaranteed to: check it too.
        url = f"http://127.0.0.1:{port}"
        proc.wait_http(f"{url}/lab/api/settings", lambda s: s == 200, timeout)
        return cls(url, port, root, base_dir, proc, time.monotonic() - started)

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """Call the Jupyter REST API (e.g. ``api("GET", "/api/sessions")``); JSON in/out."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def shutdown_sessions(self, paths: set[str] | None = None) -> None:
        """Delete sessions (and so their kernels) for notebook ``paths`` (all when None)."""
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            for session in self.api("GET", "/api/sessions"):
                if paths is None or session.get("path") in paths:
                    with contextlib.suppress(OSError, urllib.error.URLError):
                        self.api("DELETE", f"/api/sessions/{session['id']}")

    def ensure_alive(self) -> None:
        if not self.process.alive():
            raise HarnessError(f"JupyterLab server died.\n{self.process.describe()}")

    def stop(self) -> None:
        if self.process.alive():
            self.shutdown_sessions()
        self.process.stop()


# --------------------------------------------------------------------------- wire monitor


@dataclass
class WireMessage:
    """One Jupyter message seen on a kernel websocket."""

    direction: str  #: ``"to_browser"`` (kernel -> page) or ``"to_kernel"`` (page -> kernel)
    channel: str  #: shell / iopub / control / stdin
    msg_type: str
    msg_id: str
    parent_id: str | None
    content: dict[str, Any]
    nbytes: int  #: size of the websocket frame
    time: float  #: ``time.monotonic()`` when Playwright delivered the frame

    @property
    def comm_method(self) -> str | None:
        """``content.data.method`` of comm messages (``update``, ``echo_update``, ``custom``)."""
        data = self.content.get("data")
        return data.get("method") if isinstance(data, dict) else None


_CHANNELS = {"shell", "iopub", "stdin", "control"}


def _json_frame(msg: dict[str, Any]) -> tuple[str, dict, dict, dict]:
    """``(channel, header, parent_header, content)`` of a message in the JSON formats."""
    return (
        msg.get("channel", ""),
        msg["header"],
        msg.get("parent_header") or {},
        msg.get("content") or {},
    )


def parse_ws_frame(payload: str | bytes) -> tuple[str, dict, dict, dict] | None:
    """Decode a kernel websocket frame -> ``(channel, header, parent_header, content)``.

    Handles the ``v1.kernel.websocket.jupyter.org`` binary protocol (what JupyterLab 4
    and Voila 0.5 negotiate with jupyter_server 2) and the legacy JSON / binary format.
    """
    if isinstance(payload, str):
        return _json_frame(json.loads(payload))
    data = bytes(payload)
    # v1: uint64 LE count n, n uint64 LE offsets; parts: channel, header, parent, metadata,
    # content, buffers...
    if len(data) >= 16:
        n = int.from_bytes(data[:8], "little")
        if 6 <= n <= 10_000 and len(data) >= 8 * (n + 1):
            offs = [int.from_bytes(data[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(n)]
            if offs[0] == 8 * (n + 1) and offs == sorted(offs) and offs[-1] <= len(data):
                parts = [data[offs[i] : offs[i + 1]] for i in range(n - 1)]
                channel = parts[0].decode("utf-8", "replace")
                if channel in _CHANNELS:
                    return (
                        channel,
                        json.loads(parts[1]),
                        json.loads(parts[2] or b"{}"),
                        json.loads(parts[4] or b"{}"),
                    )
    # legacy binary: uint32 BE nbufs, offsets; first part is the JSON message
    if len(data) >= 8:
        nbufs = int.from_bytes(data[:4], "big")
        if 1 <= nbufs <= 10_000 and len(data) >= 4 * (nbufs + 1):
            offs = [int.from_bytes(data[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(nbufs)]
            end = offs[1] if nbufs > 1 else len(data)
            with contextlib.suppress(ValueError):
                return _json_frame(json.loads(data[offs[0] : end]))
    return None


@dataclass
class MessageWindow:
    """Messages seen while a ``with monitor.window():`` / ``lab.count_messages()`` block ran."""

    messages: list[WireMessage] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, msg_type: str = "comm_msg", direction: str | None = None) -> int:
        """Number of ``msg_type`` messages, optionally only in one ``direction``."""
        return sum(
            1
            for m in self.messages
            if m.msg_type == msg_type and (direction is None or m.direction == direction)
        )

    @property
    def to_browser(self) -> int:
        """``comm_msg`` messages kernel -> browser (the "messages to browser" benchmark figure)."""
        return self.count("comm_msg", "to_browser")

    @property
    def to_kernel(self) -> int:
        """``comm_msg`` messages browser -> kernel."""
        return self.count("comm_msg", "to_kernel")

    @property
    def bytes_to_browser(self) -> int:
        """Websocket bytes of all comm messages (open/msg/close) kernel -> browser."""
        return sum(
            m.nbytes
            for m in self.messages
            if m.direction == "to_browser" and m.msg_type.startswith("comm_")
        )

    def summary(self) -> dict[str, int]:
        """``{"to_browser comm_msg/echo_update": 1, ...}`` -- every message type and direction."""
        c: Counter[str] = Counter()
        for m in self.messages:
            key = f"{m.direction} {m.msg_type}"
            if m.comm_method:
                key += f"/{m.comm_method}"
            c[key] += 1
        return dict(sorted(c.items()))


class WireMonitor:
    """Records every Jupyter message on a page's kernel websockets (``/api/kernels/*/channels``).

    Attach it before the page opens its kernel connection (``Lab`` and
    ``VoilaServer.open`` do so).  Works the same for JupyterLab and Voila because it
    reads the wire, not a front-end's internals.
    """

    def __init__(self, page: Any):
        self.page = page
        self.messages: list[WireMessage] = []
        self.undecoded = 0
        page.on("websocket", self._on_websocket)

    def _on_websocket(self, ws: Any) -> None:
        if "/channels" not in ws.url:
            return
        ws.on("framereceived", lambda payload: self._record("to_browser", payload))
        ws.on("framesent", lambda payload: self._record("to_kernel", payload))

    def _record(self, direction: str, payload: str | bytes) -> None:
        try:
            parsed = parse_ws_frame(payload)
        except (ValueError, KeyError):
            parsed = None
        if parsed is None:
            self.undecoded += 1
            return
        channel, header, parent, content = parsed
        self.messages.append(
            WireMessage(
                direction,
                channel,
                header.get("msg_type", ""),
                header.get("msg_id", ""),
                parent.get("msg_id"),
                content,
                len(payload),
                time.monotonic(),
            )
        )

    def pump(self, ms: float = 50) -> None:
        """Let Playwright deliver pending events (the sync API only dispatches while waiting)."""
        self.page.wait_for_timeout(ms)

    def _unanswered(self, start: int) -> list[WireMessage]:
        """Requests sent since ``start`` whose ``status: idle`` has not come back yet."""
        sent = {
            m.msg_id: m
            for m in self.messages[start:]
            if m.direction == "to_kernel" and m.channel in ("shell", "control")
        }
        for m in self.messages[start:]:
            if (
                m.direction == "to_browser"
                and m.msg_type == "status"
                and m.content.get("execution_state") == "idle"
            ):
                sent.pop(m.parent_id, None)
        return list(sent.values())

    def settle(self, start: int = 0, quiet: float = 0.25, timeout: float = 15.0) -> None:
        """Wait until every request sent since message ``start`` got its idle status back
        from the kernel (so all its replies and comm echoes have arrived) and no frame
        arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump(50)
            pending = self._unanswered(start)
            last = self.messages[-1].time if self.messages else 0.0
            if not pending and time.monotonic() - last >= quiet:
                return
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"kernel messages did not settle in {timeout:.0f}s; waiting for idle after "
                    f"{[(m.msg_type, m.msg_id) for m in pending]}"
                )

    @contextlib.contextmanager
    def window(self, settle: bool = True, quiet: float = 0.25) -> Iterator[MessageWindow]:
        """Collect messages during the block; on exit (with ``settle``) wait for the kernel
        to finish reacting, then fill the yielded :class:`MessageWindow`."""
        self.pump(0)
        start = len(self.messages)
        t0 = time.monotonic()
        result = MessageWindow()
        yield result
        if settle:
            self.settle(start, quiet=quiet)
        else:
            self.pump(0)
        result.messages = self.messages[start:]
        result.seconds = time.monotonic() - t0


# --------------------------------------------------------------------------- page helpers

#: Injected into every page; small helpers over ``window.jupyterapp``.
_INIT_SCRIPT = r"""
window.__sdw = {
  panel(path) {
    const app = window.jupyterapp;
    if (!app || !app.shell) return null;
    for (const w of app.shell.widgets('main')) {
      if (w && w.context && w.context.path === path && w.sessionContext && w.content) return w;
    }
    return null;
  },
  kernel(path) {
    const p = this.panel(path);
    return p && p.sessionContext.session ? p.sessionContext.session.kernel : null;
  },
  readiness(path) {
    const app = window.jupyterapp;
    const p = this.panel(path);
    const k = this.kernel(path);
    return {
      app: !!app,
      panel: !!p,
      panelId: p ? p.id : null,
      contextReady: !!(p && p.context.isReady),
      sessionReady: !!(p && p.sessionContext.isReady),
      connection: k ? k.connectionStatus : null,
      status: k ? k.status : null,
      kernelName: k ? k.name : null,
    };
  },
  cells(path) {
    const p = this.panel(path);
    if (!p) return null;
    return p.content.widgets.map((c, i) => {
      const m = c.model;
      const code = m.type === 'code';
      const outputs = code ? m.outputs.toJSON() : [];
      return {
        index: i,
        type: m.type,
        blank: m.sharedModel.getSource().trim() === '',
        count: code ? m.executionCount : null,
        state: code ? (m.executionState || null) : null,
        errors: outputs.filter(o => o.output_type === 'error')
                       .map(o => ({ename: o.ename, evalue: o.evalue, traceback: o.traceback})),
      };
    });
  },
  errors: [],
};
"""

_JS_WAIT_KERNEL = """
async (path) => {
  const app = window.jupyterapp;
  await app.started;
  await app.restored;
  const p = window.__sdw.panel(path);
  await p.context.ready;
  await p.sessionContext.ready;
  app.shell.activateById(p.id);
  const k = p.sessionContext.session.kernel;
  await k.info;
  const reply = await k.requestKernelInfo();
  return reply ? reply.content.status : 'no reply';
}
"""

_JS_RUN = """
async ([path, command, clear]) => {
  const app = window.jupyterapp;
  const p = window.__sdw.panel(path);
  app.shell.activateById(p.id);
  if (clear) await app.commands.execute('notebook:clear-all-cell-outputs');
  app.commands.execute(command).catch(e => window.__sdw.errors.push(String(e)));
  return true;
}
"""

_JS_EXECUTE = """
async ([path, code, timeoutMs]) => {
  const k = window.__sdw.kernel(path);
  if (!k) throw new Error('no kernel for ' + path);
  const out = {stdout: '', stderr: '', result: null, error: null, status: null};
  const future = k.requestExecute(
    {code, silent: false, store_history: false, allow_stdin: false, stop_on_error: false},
    true);
  future.onIOPub = (msg) => {
    const t = msg.header.msg_type, c = msg.content;
    if (t === 'stream') { if (c.name === 'stdout') out.stdout += c.text; else out.stderr += c.text; }
    else if (t === 'execute_result') out.result = (c.data || {})['text/plain'] || null;
    else if (t === 'error') out.error = {ename: c.ename, evalue: c.evalue, traceback: c.traceback};
  };
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('execute timed out after ' + timeoutMs + ' ms')),
                       timeoutMs);
  });
  try {
    const reply = await Promise.race([future.done, timeout]);
    out.status = reply.content.status;
  } finally { clearTimeout(timer); }
  return out;
}
"""


def _format_traceback(error: dict[str, Any]) -> str:
    tb = "\n".join(error.get("traceback") or [])
    return ANSI_RE.sub("", tb) or f"{error.get('ename')}: {error.get('evalue')}"


class _PageOwner:
    """Shared bits: browser context/page creation with console capture and wire monitor."""

    def __init__(self, browser: Any, artifacts: Path, test_name: str):
        self.browser = browser
        self.artifacts = artifacts
        self.test_name = safe_name(test_name)
        self.contexts: list[Any] = []
        self.console: list[str] = []  #: browser console lines and page errors, in order

    def _new_page(self) -> tuple[Any, WireMonitor]:
        context = self.browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        self.contexts.append(context)
        context.add_init_script(_INIT_SCRIPT)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        return page, WireMonitor(page)

    def _screenshot(
        self, page: Any, name: str, locator: Any = None, full_page: bool = False
    ) -> Path:
        path = self.artifacts / f"{safe_name(name)}.png"
        if locator is not None:
            # an element taller than the viewport would be cut off: grow the viewport for the
            # shot (the notebook panel grows with it), then put it back
            box = locator.bounding_box()
            size = page.viewport_size or VIEWPORT
            grow = box is not None and box["height"] + 240 > size["height"]
            if grow:
                page.set_viewport_size({"width": size["width"], "height": int(box["height"]) + 240})
                locator.scroll_into_view_if_needed()
            try:
                locator.screenshot(path=str(path))
            finally:
                if grow:
                    page.set_viewport_size(size)
        else:
            page.screenshot(path=str(path), full_page=full_page)
        print(f"[sdw] screenshot: {path}")
        return path

    def save_failure_artifacts(self, pages: Sequence[Any]) -> list[Path]:
        """Screenshot each open page and dump the console log (called on test failure)."""
        saved = []
        for i, page in enumerate(pages):
            with contextlib.suppress(Exception):
                if not page.is_closed():
                    saved.append(self._screenshot(page, f"FAILED-{self.test_name}-{i}"))
        log = self.artifacts / f"FAILED-{self.test_name}-console.log"
        log.write_text("\n".join(self.console))
        saved.append(log)
        print(f"[sdw] browser console log: {log}")
        return saved

    def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Exception):
                context.close()
        self.contexts.clear()


# --------------------------------------------------------------------------- Lab helper


class Lab(_PageOwner):
    """One test's view of JupyterLab (function fixture ``lab``).

    The page and browser context are fresh per test; the server is shared.  Kernels the
    test started are shut down at teardown.
    """

    def __init__(self, browser: Any, server: JupyterServer, artifacts: Path, test_name: str):
        super().__init__(browser, artifacts, test_name)
        self.server = server
        self.root_dir = server.root_dir
        self.page, self.messages = self._new_page()
        #: path (relative to the server root) of the notebook the helpers act on
        self.path: str | None = None
        self.opened: set[str] = set()
        self._counter = 0

    # -- opening -------------------------------------------------------------------------

    def open_notebook(
        self,
        notebook: Sequence[str | dict[str, Any]] | str | os.PathLike[str],
        name: str | None = None,
        timeout: float = 60.0,
        ui: str = "lab",
    ) -> Any:
        """Write ``notebook`` into the server root and open it; return the Playwright ``Page``.

        ``notebook`` is a list of cells (``str`` = code cell, see :func:`make_notebook`) or
        the path of an ``.ipynb`` to copy (the original is never touched); ``ui="notebook"``
        opens it in Notebook 7 (served by the same server) instead of JupyterLab.  Returns once the
        session context is ready, the kernel is ``connected`` and idle, and a kernel_info
        request round-tripped -- so ``run_all()`` right after cannot run nothing.
        """
        self.server.ensure_alive()
        if name is None:
            self._counter += 1
            stem = Path(notebook).stem if isinstance(notebook, (str, os.PathLike)) else "nb"
            name = f"{self.test_name}-{stem}-{self._counter}.ipynb"
        write_notebook(self.root_dir, notebook, name)
        self.path = name
        self.opened.add(name)
        page = self.page
        if ui not in ("lab", "notebook"):
            raise ValueError(f"ui={ui!r}: 'lab' (JupyterLab) or 'notebook' (Notebook 7)")
        url = (
            f"{self.server.url}/lab/tree/{quote(name)}?reset"
            if ui == "lab"
            else f"{self.server.url}/notebooks/{quote(name)}"
        )
        page.goto(url, wait_until="domcontentloaded")
        try:
            page.wait_for_function(
                """(path) => {
                    const r = window.__sdw && window.__sdw.readiness(path);
                    return r && r.panel && r.contextReady && r.sessionReady
                        && r.connection === 'connected' && r.status === 'idle';
                }""",
                arg=name,
                polling=100,
                timeout=timeout * 1000,
            )
            status = page.evaluate(_JS_WAIT_KERNEL, name)
        except Exception as exc:
            raise HarnessError(
                self._diagnose(f"notebook {name} did not become ready: {exc}")
            ) from exc
        if status != "ok":
            raise HarnessError(self._diagnose(f"kernel_info_request returned {status!r}"))
        return page

    # -- running -------------------------------------------------------------------------

    def run_all(self, clear: bool = True) -> None:
        """Run every cell (``runmenu:run-all``); returns immediately, use :meth:`wait_idle`.

        With ``clear`` (default) outputs and execution counts are cleared first, so
        :meth:`wait_idle` also works when the notebook was run before.
        """
        self._require_path()
        self.page.evaluate(_JS_RUN, [self.path, "runmenu:run-all", clear])

    def wait_idle(self, timeout: float = 60.0, raise_on_error: bool = True) -> list[dict[str, Any]]:
        """Wait until every non-blank code cell has an execution count, none is running and
        the kernel is idle.  Raises :class:`NotebookError` (with the traceback) as soon as a
        cell shows an error output, unless ``raise_on_error=False``.  Returns the cell states.
        """
        self._require_path()
        deadline = time.monotonic() + timeout
        cells: list[dict[str, Any]] = []
        while True:
            cells = self.page.evaluate("(p) => window.__sdw.cells(p)", self.path) or []
            if raise_on_error:
                for cell in cells:
                    if cell["errors"]:
                        raise NotebookError(
                            f"cell {cell['index']} of {self.path} raised:\n"
                            + _format_traceback(cell["errors"][0])
                        )
            state = self.page.evaluate("(p) => window.__sdw.readiness(p)", self.path)
            code = [c for c in cells if c["type"] == "code" and not c["blank"]]
            done = all(c["count"] is not None and c["state"] != "running" for c in code)
            if done and state["status"] == "idle":
                return cells
            if time.monotonic() > deadline:
                pending = [
                    c["index"] for c in code if c["count"] is None or c["state"] == "running"
                ]
                raise HarnessError(
                    self._diagnose(
                        f"cells {pending} of {self.path} not executed after {timeout:.0f}s "
                        f"(kernel {state['status']})"
                    )
                )
            self.page.wait_for_timeout(100)

    def run_all_and_wait(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """:meth:`run_all` then :meth:`wait_idle`."""
        self.run_all()
        return self.wait_idle(timeout)

    def execute(self, code: str, timeout: float = 30.0, raise_on_error: bool = True) -> str:
        """Run ``code`` in the notebook's own kernel (not a new one); return its stdout.

        Does not touch the notebook's cells or execution counter (``store_history=False``).
        Raises :class:`NotebookError` if the code raises (unless ``raise_on_error=False``).
        """
        self._require_path()
        out = self.page.evaluate(_JS_EXECUTE, [self.path, code, int(timeout * 1000)])
        if out["error"] and raise_on_error:
            raise NotebookError(
                f"lab.execute({code!r}) raised:\n{_format_traceback(out['error'])}"
                + (f"\nstderr:\n{out['stderr']}" if out["stderr"] else "")
            )
        return out["stdout"]

    def wait_for_stdout(
        self,
        code: str,
        expected: str | Callable[[str], bool],
        timeout: float = 15.0,
    ) -> str:
        """Re-run ``code`` (via :meth:`execute`) until its stripped stdout equals ``expected``
        (or ``expected(stdout)`` is true); return that stdout.  For asserting that Python saw
        a browser gesture without sleeping."""
        check = expected if callable(expected) else (lambda s: s.strip() == expected)
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            last = self.execute(code)
            if check(last):
                return last
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{code!r} printed {last.strip()!r}, expected {expected!r} "
                    f"(waited {timeout:.0f}s)"
                )
            self.page.wait_for_timeout(50)

    # -- messages ------------------------------------------------------------------------

    def count_messages(self, settle: bool = True, quiet: float = 0.25):
        """Context manager yielding a :class:`MessageWindow` of the kernel messages exchanged
        during the block (``.to_browser`` / ``.to_kernel`` count ``comm_msg``).  On exit it
        waits until the kernel has answered everything sent during the block (its ``idle``
        status came back) and the wire was quiet for ``quiet`` seconds."""
        return self.messages.window(settle=settle, quiet=quiet)

    # -- locators & artifacts --------------------------------------------------------------

    @property
    def notebook_panel(self) -> Any:
        """Locator of the visible panel of the current notebook (ignores other open tabs)."""
        self._require_path()
        panel_id = self.page.evaluate("(p) => window.__sdw.readiness(p).panelId", self.path)
        return self.page.locator(f'.jp-NotebookPanel[id="{panel_id}"]:visible')

    def cell(self, index: int) -> Any:
        """Locator of cell ``index`` (0-based, markdown cells count) in the visible notebook."""
        return self.notebook_panel.locator(".jp-Notebook .jp-Cell").nth(index)

    def output_area(self, index: int) -> Any:
        """Locator of the output area of cell ``index`` in the visible notebook."""
        return self.cell(index).locator(".jp-OutputArea").first

    def screenshot(self, name: str, locator: Any = None, full_page: bool = False) -> Path:
        """Save ``<artifacts>/<name>.png`` (the page, or just ``locator``); print and return the path."""
        return self._screenshot(self.page, name, locator, full_page)

    def cell_states(self) -> list[dict[str, Any]]:
        """Per-cell ``{index, type, count, state, errors}`` as JupyterLab's model sees it."""
        self._require_path()
        return self.page.evaluate("(p) => window.__sdw.cells(p)", self.path)

    # -- internals -----------------------------------------------------------------------

    def _require_path(self) -> None:
        if self.path is None:
            raise HarnessError("call lab.open_notebook(...) first")

    def _diagnose(self, message: str) -> str:
        parts = [message]
        with contextlib.suppress(Exception):
            parts.append(
                f"readiness: {self.page.evaluate('(p) => window.__sdw.readiness(p)', self.path)}"
            )
        with contextlib.suppress(Exception):
            shot = self._screenshot(self.page, f"FAILED-{self.test_name}-diagnose")
            parts.append(f"screenshot: {shot}")
        if self.console:
            parts.append("browser console (last 20):\n  " + "\n  ".join(self.console[-20:]))
        parts.append(self.server.process.describe(40))
        return "\n".join(parts)

    def close(self) -> None:
        super().close()
        if self.opened:
            self.server.shutdown_sessions(self.opened)


# --------------------------------------------------------------------------- Voila


class _ServedPages(_PageOwner):
    """A server process the harness started (Voila, ``marimo run``) and the pages opened on it.

    Subclasses set ``process`` and ``pages``, and name the failure screenshot with ``kind``.
    """

    kind = "page"
    process: ManagedProcess
    pages: list[Any]

    def screenshot(self, name: str, locator: Any = None, full_page: bool = False) -> Path:
        """Save ``<artifacts>/<name>.png`` of the most recent page (or ``locator``)."""
        return self._screenshot(self.pages[-1], name, locator, full_page)

    def _diagnose(self, message: str) -> str:
        parts = [message]
        if self.pages:
            try:
                shot = self._screenshot(self.pages[-1], f"FAILED-{self.test_name}-{self.kind}")
                parts.append(f"screenshot: {shot}")
            except Exception as exc:  # the page may be gone
                parts.append(f"no screenshot: {exc}")
        if self.console:
            parts.append("browser console (last 20):\n  " + "\n  ".join(self.console[-20:]))
        parts.append(self.process.describe(40))
        return "\n".join(parts)

    def stop(self) -> None:
        self.close()
        self.process.stop()


class VoilaServer(_ServedPages):
    """``voila NB`` serving one notebook; created by the ``voila_server`` factory fixture."""

    kind = "voila"

    def __init__(
        self,
        browser: Any,
        notebook: Sequence[str | dict[str, Any]] | str | os.PathLike[str],
        base_dir: Path,
        artifacts: Path,
        test_name: str,
        timeout: float = 60.0,
    ):
        super().__init__(browser, artifacts, test_name)
        base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir = base_dir
        self.root_dir = base_dir / "root"
        self.root_dir.mkdir(exist_ok=True)
        self.notebook_path = write_notebook(self.root_dir, notebook, "voila.ipynb")
        env = isolated_env(base_dir)
        self.pages: list[Any] = []
        self.monitors: list[WireMonitor] = []

        def start(port: int) -> ManagedProcess:
            cmd = [
                sys.executable,
                "-m",
                "voila",
                str(self.notebook_path),
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                "--Voila.port_retries=0",
            ]
            return ManagedProcess("Voila", cmd, env, self.root_dir, base_dir / f"voila-{port}.log")

        started = time.monotonic()
        # Any HTTP answer from a path that does not execute the notebook means tornado is
        # serving (GET / would start a kernel and run the notebook).
        self.process, self.port, _ = _start_with_port_retry(
            start,
            lambda port: f"http://127.0.0.1:{port}/voila/static/__sdw_probe__",
            lambda status: status < 500,
            timeout,
        )
        self.url = f"http://127.0.0.1:{self.port}/"
        self.startup_seconds = time.monotonic() - started

    def open(self, wait_for: str | None = None, timeout: float = 60.0) -> Any:
        """Open the dashboard in a fresh page; return it.  Its messages are recorded in
        ``self.monitors[-1]`` (see :meth:`count_messages`).  If ``wait_for`` (a CSS
        selector) is given, wait until it is visible."""
        page, monitor = self._new_page()
        self.pages.append(page)
        self.monitors.append(monitor)
        try:
            page.goto(self.url, wait_until="domcontentloaded", timeout=timeout * 1000)
            if wait_for:
                page.locator(wait_for).first.wait_for(state="visible", timeout=timeout * 1000)
        except Exception as exc:
            raise HarnessError(self._diagnose(f"Voila page did not render: {exc}")) from exc
        return page

    def count_messages(self, settle: bool = True, quiet: float = 0.25):
        """Like :meth:`Lab.count_messages`, for the most recently opened page."""
        if not self.monitors:
            raise HarnessError("call open() first")
        return self.monitors[-1].window(settle=settle, quiet=quiet)


class VoilaLauncher:
    """The ``voila_server`` fixture: call it to serve a notebook under Voila.

    ``voila_server(cells_or_path, timeout=60) -> VoilaServer``; every server started in a
    test is stopped at its teardown.
    """

    def __init__(self, browser: Any, tmp_dir: Path, artifacts: Path, test_name: str):
        self.browser = browser
        self.tmp_dir = tmp_dir
        self.artifacts = artifacts
        self.test_name = test_name
        self.servers: list[VoilaServer] = []

    def __call__(
        self,
        notebook: Sequence[str | dict[str, Any]] | str | os.PathLike[str],
        timeout: float = 60.0,
    ) -> VoilaServer:
        server = VoilaServer(
            self.browser,
            notebook,
            self.tmp_dir / f"voila-{len(self.servers)}",
            self.artifacts,
            self.test_name,
            timeout,
        )
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


# --------------------------------------------------------------------------- Explorer helpers
#
# Notebook cells and locators shared by the Explorer's browser tests (test_explorer,
# test_keyboard, test_panels, ...).  The DOM contract they rely on is documented at the top of
# ``sd_widgets/widget/static/tree.js`` and in ``docs/widget-protocol.md``.

#: First cell of an Explorer notebook: the imports every Explorer test's cells use.
SETUP = """\
import json
import torch
import sd_widgets as sdw
from sd_widgets import demo
"""

#: The demo's 10-class checkpoint opened against a model with a new 3-class head (38 keys,
#: 2 shape mismatches), nothing selected; ``original`` keeps the model's tensors before any load.
NEW_HEAD = """\
model = demo.target_model("new_head")
ckpt = demo.variant("new_head")
original = {k: v.clone() for k, v in model.state_dict().items()}
w = sdw.Explorer(model, ckpt, select="none")
w
"""


def explorer(lab: Lab, cell: int = 1) -> Any:
    """Locator of the Explorer in cell ``cell``'s output, once it says ``data-ready=true``."""
    from playwright.sync_api import expect

    root = lab.output_area(cell).locator(".sdw-explorer")
    expect(root).to_have_attribute("data-ready", "true")
    return root


def run_explorer(
    lab: Lab,
    cells: Sequence[str | dict[str, Any]],
    cell: int = 1,
    timeout: float = 60.0,
    ui: str = "lab",
) -> Any:
    """Open a notebook of ``cells``, run all of it, and return the Explorer in cell ``cell``."""
    lab.open_notebook(cells, ui=ui)
    lab.run_all_and_wait(timeout)
    return explorer(lab, cell)


def leaf(root: Any, key: str) -> Any:
    """Locator of the tree row of the state_dict key ``key``."""
    return root.locator(f".sdw-row[data-role=leaf][data-key={json.dumps(key)}]")


def module(root: Any, path: str) -> Any:
    """Locator of the tree row of the module ``path``."""
    return root.locator(f".sdw-row[data-role=module][data-path={json.dumps(path)}]")


def click_module(root: Any, path: str, side: str = "ckpt") -> None:
    """Click module ``path``'s name in the ``side`` column (``ckpt`` or ``model``): it toggles
    the selection of the module's whole subtree."""
    module(root, path).locator(f"[data-role={side}] [data-role=name]").click()


def expect_selected(root: Any, n: int) -> None:
    """Wait until the selection preview counts ``n`` tensors."""
    from playwright.sync_api import expect

    expect(root.locator("[data-role=preview]")).to_have_attribute("data-n-tensors", str(n))


def py(lab: Lab, expr: str) -> str:
    """``print(expr)`` in the notebook's kernel; its stripped stdout."""
    return lab.execute(f"print({expr})").strip()


#: how far (px) the Explorer reaches past the right edge of its notebook cell (or the page)
_OVERFLOW_RIGHT = """root => {
    const box = root.closest('.jp-Cell') || document.documentElement;
    return root.getBoundingClientRect().right - box.getBoundingClientRect().right;
}"""


def assert_fits_the_cell(root: Any) -> None:
    """The Explorer is no wider than its notebook cell: nothing of it is cut off on the right
    (a wide table or plot grid must scroll inside the widget, not widen it)."""
    over = root.evaluate(_OVERFLOW_RIGHT)
    assert over <= 1, f"the Explorer reaches {over:.0f} px past the right edge of its cell"
