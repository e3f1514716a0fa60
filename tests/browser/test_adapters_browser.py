"""Adapters in a real JupyterLab (headless Chromium): a ViT trained at another image size.

The position embedding's row says on hover what ``interpolate`` would do to it (never
``overlap``), its adapt button switches ``interpolate`` on and names it, and Load selected
resamples exactly as the library's timm-exact adapter (``tests/test_adapters.py`` checks that
adapter against timm's ``resample_abs_pos_embed``). Screenshot:
``tests/artifacts/adapter-interpolate.png``.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .harness import SETUP, leaf, py, run_explorer

pytestmark = pytest.mark.browser

VIT = """\
from torch import nn


class TinyViT(nn.Module):
    def __init__(self, img_size, patch=4, dim=32):
        super().__init__()
        grid = img_size // patch
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, dim))
        self.head = nn.Linear(dim, 10)


torch.manual_seed(0)
src, model = TinyViT(28), TinyViT(48)   # a 7x7 grid of patches, used at 12x12
sd = src.state_dict()
w = sdw.Explorer(model, sd, select="none")
w
"""


def test_position_embedding_offers_interpolate_and_loads_it(lab, sdw_artifacts):
    root = run_explorer(lab, [SETUP, VIT])
    row = leaf(root, "pos_embed")
    expect(row).to_have_attribute("data-status", "shape_mismatch")
    hover = row.get_attribute("title") or ""
    assert "resamples the 7x7 position grid to 12x12" in hover, hover
    assert "'overlap'" not in hover
    button = row.locator("[data-action=adapt]")
    assert "interpolate" in (button.get_attribute("title") or "")
    button.click()
    lab.wait_for_stdout("print(w.adapters)", "{'pos_embed': 'interpolate'}")
    expect(row.locator("[data-action=adapt]")).to_have_text("interpolate ✓")
    lab.screenshot("adapter-interpolate", root)

    root.locator("[data-action=load]").click()
    expect(root.locator("[data-role=message]")).to_have_attribute("data-level", "success")
    lab.execute("from sd_widgets.compare._adapters import adapt_interpolate")
    expected = "adapt_interpolate(sd['pos_embed'], model.pos_embed)"
    assert py(lab, f"torch.equal(model.pos_embed.detach(), {expected})") == "True"
    assert py(lab, "torch.equal(model.cls_token, src.cls_token)") == "False"  # not selected
