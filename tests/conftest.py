"""Fixtures shared by the unit tests (browser fixtures live in tests/browser/conftest.py)."""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

from sd_widgets import demo


@pytest.fixture(scope="module")
def ckpt() -> collections.OrderedDict[str, torch.Tensor]:
    """The 10-class pretrained CNN checkpoint (non-trivial BN running statistics)."""
    return demo.variant("identical")


@pytest.fixture
def model() -> nn.Module:
    """A freshly initialised CNN of the same architecture (a different seed)."""
    return demo.make_model("cnn", seed=1)
