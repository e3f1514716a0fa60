"""A user's pass, keyboard only, in JupyterLab: a BERT checkpoint written by ``save_pretrained``
opened against the task model (``bert.`` prefix), the banner's rule applied, Load, the model
checked against the file bit for bit, Undo, and the same at a phone's width. Screenshots:
``tests/artifacts/user-pass-*.png``."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from .harness import SETUP, py, run_explorer

pytestmark = pytest.mark.browser

BERT = """\
import tempfile, pathlib
from transformers import BertConfig, BertModel, BertForSequenceClassification
from safetensors.torch import load_file
transformers_cfg = BertConfig(vocab_size=512, hidden_size=32, num_hidden_layers=6,
                              num_attention_heads=4, intermediate_size=64, num_labels=3)
torch.manual_seed(0)
folder = pathlib.Path(tempfile.mkdtemp()) / "bert-base"
BertModel(transformers_cfg).save_pretrained(folder)
torch.manual_seed(1)
model = BertForSequenceClassification(transformers_cfg).eval()
original = {k: v.clone() for k, v in model.state_dict().items()}
file = load_file(folder / "model.safetensors")
w = sdw.Explorer(model, folder / "model.safetensors")
w
"""


def focused(lab) -> dict:
    return (
        lab.page.evaluate(
            """() => { const e = document.activeElement; if (!e) return {};
            return {action: e.dataset.action || null, role: e.getAttribute('role'),
                    key: e.dataset.key || null, text: (e.textContent || '').trim().slice(0, 60)}; }"""
        )
        or {}
    )


def tab_to(lab, action: str, limit: int = 80, key: str = "Tab") -> None:
    """Press Tab until the focused element is the control ``data-action=action``."""
    for _ in range(limit):
        if focused(lab).get("action") == action:
            return
        lab.page.keyboard.press(key)
    raise AssertionError(f"Tab never reached [data-action={action}]; focus on {focused(lab)}")


def test_bert_save_pretrained_by_keyboard(lab):
    root = run_explorer(lab, [SETUP, BERT], timeout=120)
    page = lab.page
    page.set_viewport_size({"width": 1280, "height": 720})
    banner = root.locator("[data-role=banner]")
    expect(banner).to_contain_text("bert.")
    lab.screenshot("user-pass-1-bert-banner", root)

    root.locator("[data-role=search]").focus()
    tab_to(lab, "apply-banner", key="Shift+Tab")
    page.keyboard.press("Enter")
    lab.wait_for_stdout("print(len(w.rename_rules))", "1")
    n_file = int(py(lab, "len(file)"))
    expect(root.locator("[data-action=load]")).to_be_enabled()
    assert json.loads(py(lab, "json.dumps(len(w.selected_keys))")) == n_file

    root.locator("[data-role=search]").focus()
    tab_to(lab, "load")
    page.keyboard.press("Enter")
    lab.wait_for_stdout("print(w.can_undo)", "True")
    # Undo is usable as soon as the load itself is done, while the statistics and plots are
    # drawn (about 4 s here; it was soft-disabled all that time)
    undo = root.locator("[data-action=undo]")
    expect(undo).to_be_enabled()
    expect(undo).not_to_have_attribute("aria-disabled", "true", timeout=1_000)
    lab.wait_for_stdout("print(repr(w.busy_text))", "''", timeout=120)  # the plots are drawn
    n_plots = int(py(lab, "len(w.histograms)"))
    assert n_plots == 9, n_plots  # max_histograms, drawn one per event-loop turn
    expect(root.locator("img[data-role=histogram]")).to_have_count(n_plots)
    lab.screenshot("user-pass-2-bert-loaded", root)
    # every tensor of the file is in the model under 'bert.' + its key, bit for bit;
    # the new classifier head kept its initialisation
    assert (
        py(
            lab,
            "all(torch.equal(model.state_dict()['bert.' + k], v) for k, v in file.items())",
        )
        == "True"
    )
    assert (
        py(
            lab,
            "all(torch.equal(model.state_dict()[k], original[k]) for k in original"
            " if not k.startswith('bert.'))",
        )
        == "True"
    )

    # while an action runs (busy), Enter on Undo is not sent and says so next to the buttons
    root.locator("[data-role=search]").focus()
    tab_to(lab, "undo")
    lab.execute("w.busy_text = 'Loading…'; w.busy = True")
    expect(undo).to_have_attribute("aria-disabled", "true")
    page.keyboard.press("Enter")
    note = root.locator("[data-role=busy]")
    expect(note).to_have_text(
        "“Undo” was not sent: Loading is still running. Press it again when it is done."
    )
    expect(note).to_be_visible()
    assert py(lab, "w.can_undo") == "True", "the refused Undo reached the kernel"
    lab.screenshot("user-pass-2b-undo-refused-while-busy", root)
    lab.execute("w.busy = False; w.busy_text = ''")
    expect(note).to_be_hidden()
    assert focused(lab).get("action") == "undo"
    page.keyboard.press("Enter")
    lab.wait_for_stdout("print(w.can_undo)", "False")
    assert (
        py(lab, "all(torch.equal(v, original[k]) for k, v in model.state_dict().items())") == "True"
    )

    page.set_viewport_size({"width": 420, "height": 800})
    # a phone-width window: JupyterLab's file browser would take most of it
    page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
    page.wait_for_function(
        "() => !document.querySelector('#jp-left-stack') ||"
        " document.querySelector('#jp-left-stack').offsetWidth === 0"
    )
    root.scroll_into_view_if_needed()
    lab.screenshot("user-pass-3-bert-narrow", root)
    lab.screenshot("user-pass-3-page-narrow")
    over = root.evaluate(
        "r => r.getBoundingClientRect().right - document.documentElement.clientWidth"
    )
    assert over <= 1, f"the Explorer reaches {over:.0f} px past a 420 px window"
