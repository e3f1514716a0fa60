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
    expect(page.locator(".sdw-app-about")).to_contain_text("renamed_layer")

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
    button = page.locator(".widget-upload >> visible=true")
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
    expect(page.locator(".sdw-app-about")).to_contain_text(good.name)

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


def _upload_to(page: Any, index: int, path: Path) -> None:
    """Put ``path`` into the ``index``-th visible FileUpload (a file chooser opens on click)."""
    with page.expect_file_chooser() as chooser:
        page.locator(".widget-upload >> visible=true").nth(index).click()
    chooser.value.set_files(str(path))


def test_app_inspects_an_upload_without_a_model_under_its_own_name(voila_server, tmp_path):
    app, page, seen = open_app(voila_server, tmp_path)
    dropdown(page, "Model").select_option(label="none: inspect the file")
    inspect = page.locator(".sdw-app-inspect")
    expect(inspect).to_contain_text("38 tensors", timeout=30_000)  # the demo variant first
    dropdown(page, "Checkpoint").select_option(label="upload a file…")
    expect(inspect).to_have_count(0)
    # a file name that is markup: shown as text, never as HTML
    odd = tmp_path / "odd"
    odd.mkdir()
    name = "my <img src=x onerror=alert(1)> net.pt"
    good = demo.write_checkpoint(odd, "identical", "torch").rename(odd / name)
    _upload_to(page, 0, good)
    expect(inspect).to_contain_text(f"{name}: 38 tensors", timeout=60_000)
    expect(inspect.locator("tbody tr")).to_have_count(38)
    expect(inspect.locator("tbody tr").first).to_contain_text("backbone.stem.conv.weight")
    expect(page.locator(".widget-html img")).to_have_count(0)  # no markup from the name
    expect(page.locator(".sdw-explorer")).to_have_count(0)  # no model, no Explorer
    app.screenshot("app-voila-inspect")

    # the same upload against a model: the Explorer's title names the file, not the temp path
    dropdown(page, "Model").select_option(label="SmallCNN (BatchNorm)")
    title = page.locator(".sdw-explorer [data-role=title]")
    expect(title).to_contain_text(name, timeout=60_000)
    expect(title.locator("img")).to_have_count(0)
    assert "sdw-app-" not in title.inner_text() and "upload.pt" not in title.inner_text()
    assert real_errors(seen) == [], seen


def test_app_trust_step_for_data_classes_and_a_model_from_config_json(voila_server, tmp_path):
    import argparse

    pytest.importorskip("transformers")
    from transformers import BertConfig, BertModel

    app, page, seen = open_app(voila_server, tmp_path)
    dropdown(page, "Checkpoint").select_option(label="upload a file…")
    # a Lightning checkpoint: weights plus its hyper-parameters as an argparse.Namespace
    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": dict(demo.variant("identical")),
            "hyper_parameters": argparse.Namespace(lr=0.1, arch="cnn"),
            "epoch": 3,
            "global_step": 90,
            "pytorch-lightning_version": "2.4.0",
        },
        ckpt,
    )
    _upload_to(page, 0, ckpt)
    step = page.locator(".widget-hbox").filter(has_text="Allow them for this file?")
    expect(step).to_be_visible(timeout=60_000)
    expect(step).to_contain_text("argparse.Namespace")
    expect(page.locator(".sdw-explorer")).to_have_count(0)  # nothing opened before the answer
    app.screenshot("app-voila-trust-step")
    step.get_by_role("button", name="Allow and open").click()
    root = page.locator(READY)
    expect(root).to_be_visible(timeout=60_000)
    expect(leaves(root)).to_have_count(38)
    expect(step).to_be_hidden()
    expect(root.locator("[data-role=title]")).to_contain_text("last.ckpt")

    # bring your own model: a BERT from its config.json alone (built on the meta device)
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=120,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=48,
            max_position_embeddings=64,
        )
    )
    bert.save_pretrained(tmp_path / "bert")
    dropdown(page, "Model").select_option(label="my config.json (Hugging Face)")
    expect(page.locator(".sdw-app-about")).to_contain_text("config.json", timeout=30_000)
    # visible uploads now: the checkpoint's (still holding last.ckpt), then config.json's
    _upload_to(page, 1, tmp_path / "bert" / "config.json")
    expect(page.locator(".sdw-app-about")).to_contain_text("against BertModel", timeout=60_000)
    _upload_to(page, 0, tmp_path / "bert" / "model.safetensors")
    root = page.locator(READY)
    expect(root.locator("[data-role=title]")).to_contain_text("model.safetensors", timeout=60_000)
    expect(root.locator("[data-role=title]")).to_contain_text("BertModel")
    expect(leaves(root)).to_have_count(len(bert.state_dict()))
    expect(leaves(root).filter(has_text="✓ match")).to_have_count(len(bert.state_dict()))
    app.screenshot("app-voila-config-json")

    # weights of a model twice as wide: the summary strip says so in one sentence
    wide = BertModel(
        BertConfig(
            vocab_size=120,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=96,
            max_position_embeddings=64,
        )
    )
    wide.save_pretrained(tmp_path / "wide")
    _upload_to(page, 0, tmp_path / "wide" / "model.safetensors")
    summary = page.locator(READY).locator("[data-role=summary]")
    expect(summary).to_contain_text("built with a different config?", timeout=60_000)
    expect(summary).to_contain_text("64 vs 32, 96 vs 48")
    expect(summary).to_contain_text("hidden_size=32 (checkpoint: 64)")
    app.screenshot("app-voila-config-mismatch")
    assert real_errors(seen) == [], seen


def test_app_offers_one_rule_for_wrapper_segments_inside_keys(voila_server, tmp_path):
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    # the demo CNN with its backbone stages under activation checkpointing, saved the way
    # named_parameters() names them: '_checkpoint_wrapped_module.' inside every backbone key
    model = demo.make_model("cnn")
    for name, stage in list(model.backbone.named_children()):
        setattr(model.backbone, name, checkpoint_wrapper(stage))
    sd = {k: v.detach().clone() for k, v in [*model.named_parameters(), *model.named_buffers()]}
    assert "backbone.stem._checkpoint_wrapped_module.conv.weight" in sd
    path = tmp_path / "wrapped.pt"
    torch.save(sd, path)

    app, page, seen = open_app(voila_server, tmp_path)
    dropdown(page, "Checkpoint").select_option(label="upload a file…")
    _upload_to(page, 0, path)
    root = page.locator(READY)
    banner = root.locator("[data-role=banner]")
    expect(banner).to_be_visible(timeout=60_000)
    expect(banner).to_contain_text("_checkpoint_wrapped_module.")
    expect(banner).to_contain_text("activation checkpointing")
    app.screenshot("app-voila-wrapper-segments")
    root.locator("[data-action=apply-banner]").click()
    expect(leaves(root)).to_have_count(38, timeout=30_000)
    expect(leaves(root).filter(has_text="✓ match")).to_have_count(38)
    assert real_errors(seen) == [], seen
