"""Bit-level comparisons of state dicts, shared by the test modules (``from bitwise import ...``;
pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

import collections
from collections.abc import Mapping

import torch
from torch import nn


def state(model: nn.Module) -> collections.OrderedDict[str, torch.Tensor]:
    """Detached copies of the whole state dict."""
    return collections.OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes: equal bits means equal values, NaN payloads and -0.0 included."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def assert_bit_identical(
    a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], *, ordered: bool = True
) -> None:
    """Same keys (in the same order unless ``ordered=False``), dtype, shape and bytes."""
    assert list(a) == list(b) if ordered else sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert torch.equal(bits(a[k]), bits(b[k])), k


def changed(before: Mapping[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Keys of ``before`` whose value in ``model`` is now different, in order."""
    now = model.state_dict()
    return [k for k in before if not torch.equal(before[k], now[k])]
