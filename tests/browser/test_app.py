"""The Voilà demo app (``notebooks/app.ipynb``) in headless Chromium: it renders with no console
errors and no code printouts, choosing a checkpoint variant shows that variant's tree, and an
uploaded file is opened with the safe defaults (a malicious pickle is refused in the widget and
its payload never runs)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from hostile import write_malicious_checkpoint  # tests/ is on sys.path (rootdir-relative)
from playwright.sync_api import expect

from sd_widgets import demo

from .harness import module

pytestmark = pytest.mark.browser

APP = Path(__file__).resolve().parents[2] / "notebooks" / "app.ipynb"
READY = ".sdw-explorer[data-ready=true]"
FONT = re.compile(r"\.(woff2?|ttf|otf|eot)(\?|$)|/fonts?/|fontawesome", re.I)


def leaves(root: Any) -> Any:
    return root.locator(".sdw-row[data-role=leaf]")


def watch_console(page: Any) -> list[tuple[str, str, str]]:
    """Console messages (type, text, url) and page errors from now on."""
    seen: list[tuple[str, str, str]] = []
    page.on("console", lambda m: seen.append((m.type, m.text, (m.location or {}).get("url", ""))))
    page.on("pageerror", lambda e: seen.append(("pageerror", str(e), "")))
    return seen


def real_errors(seen: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Errors other than the harmless failed font fetches of Voilà's theme."""
    return [m for m in seen if m[0] in ("error", "pageerror") and not FONT.search(m[2])]


#: What binder/postBuild configures for Voila: Voila's bundled JupyterLab (4.2) cannot load the
#: Notebook 7 lab extension (built for JupyterLab 4.6), which would log a module-federation
#: error on every page.
VOILA_CONFIG = {"VoilaConfiguration": {"extension_denylist": ["@jupyter-notebook/lab-extension"]}}


def open_app(voila_server: Any, tmp_path: Path) -> tuple[Any, Any, list[tuple[str, str, str]]]:
    # Voila reads voila.json from its working directory, the server's root (created by the
    # harness as <tmp>/voila-<n>/root, reusing a directory that exists)
    root = tmp_path / f"voila-{len(voila_server.servers)}" / "root"
    root.mkdir(parents=True, exist_ok=True)
    (root / "voila.json").write_text(json.dumps(VOILA_CONFIG))
    app = voila_server(APP)
    assert (app.root_dir / "voila.json").exists()
    first = app.open(wait_for=READY, timeout=120)
    assert not [line for line in app.console if line.startswith("[pageerror]")], app.console
    # A second page in the same browser context, listened to from its very first request (the
    # harness records console text without the URL that tells a font fetch apart); Voila runs
    # the notebook again in a fresh kernel for it.
    page = first.context.new_page()
    app.pages.append(page)
    seen = watch_console(page)
    page.goto(app.url, wait_until="domcontentloaded")
    page.locator(READY).first.wait_for(state="visible", timeout=120_000)
    return app, page, seen


def dropdown(page: Any, label: str) -> Any:
    return page.locator(".widget-dropdown").filter(has_text=label).locator("select")


def test_app_renders_without_errors_and_a_variant_shows_its_tree(voila_server, tmp_path):
    app, page, seen = open_app(voila_server, tmp_path)
    root = page.locator(".sdw-explorer")
    expect(root).to_have_count(1)
    # the default: the 10-class checkpoint against a 3-class model
    expect(leaves(root)).to_have_count(38)
    expect(root.locator("[data-status=shape_mismatch]").first).to_be_visible()
    # only the app: no printed text, no error output, no code
    expect(page.locator("[data-mime-type*='stdout'], [data-mime-type*='stderr']")).to_have_count(0)
    expect(page.locator(".jp-CodeCell .jp-InputArea >> visible=true")).to_have_count(0)
    expect(page.get_by_text("def _open_upload")).to_be_hidden()
    app.screenshot("app-voila-first-view")

    dropdown(page, "Checkpoint").select_option(label="renamed_layer")
    root = page.locator(".sdw-explorer")
    expect(module(root, "fc")).to_have_count(1, timeout=30_000)  # the head saved as fc.*
    expect(leaves(root)).to_have_count(40)  # 36 match + fc.* unexpected + classifier.* missing
    expect(page.locator(".widget-html")).to_contain_text("renamed_layer")

    dropdown(page, "Model").select_option(label="MLP")
    expect(leaves(page.locator(".sdw-explorer"))).to_have_count(8, timeout=30_000)
    expect(module(page.locator(".sdw-explorer"), "output")).to_have_count(1)
    app.screenshot("app-voila-variant")
    # the banner's one rule (module 'output' renamed to 'head') pairs every key up
    root = page.locator(".sdw-explorer")
    root.locator("[data-action=apply-banner]").click()
    expect(leaves(root)).to_have_count(6, timeout=30_000)
    expect(leaves(root).filter(has_text="✓ match")).to_have_count(6)
    assert real_errors(seen) == [], seen


def test_app_upload_is_opened_safely(voila_server, tmp_path):
    app, page, seen = open_app(voila_server, tmp_path)
    dropdown(page, "Checkpoint").select_option(label="upload a file…")
    button = page.locator(".widget-upload")
    expect(button).to_be_visible()

    def upload(path: Path) -> None:  # ipywidgets' FileUpload opens a file chooser on click
        with page.expect_file_chooser() as chooser:
            button.click()
        chooser.value.set_files(str(path))

    expect(page.locator(".sdw-explorer")).to_have_count(0)

    good = demo.write_checkpoint(tmp_path, "identical", "torch")
    upload(good)
    expect(page.locator(READY)).to_be_visible(timeout=60_000)
    expect(leaves(page.locator(".sdw-explorer"))).to_have_count(38, timeout=60_000)
    expect(page.locator(".widget-html")).to_contain_text(good.name)

    marker = tmp_path / "PWNED"
    evil = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    upload(evil)
    error = page.locator("[data-role=error-state]")
    expect(error).to_be_visible(timeout=60_000)
    expect(error).to_contain_text("io.open")
    assert not marker.exists()
    assert torch.serialization.get_unsafe_globals_in_checkpoint(evil) == ["io.open"]
    app.screenshot("app-voila-upload-refused")
    assert real_errors(seen) == [], seen
