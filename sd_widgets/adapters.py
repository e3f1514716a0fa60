"""Shape adapters: pure ``(checkpoint tensor, model tensor) -> tensor`` functions, in a registry.

Each adapter has a name (what ``plan(adapt=...)`` takes), a one-line description, and an
applicability check on the two shapes, so the plan, the comparison's row text, the widget and the
exported code all ask the same table instead of comparing strings. The functions use torch only
and are copied verbatim into exported code (``plan.to_code()``), so the library and the export
run one implementation.

* ``overlap``: copy the overlapping leading slice into a copy of the model's tensor (a classifier
  going from 10 to 3 classes keeps the first 3 rows; a grown embedding keeps its new rows).
* ``input_conv``: turn an RGB first convolution into one for 1 or N input channels the way timm's
  ``adapt_input_conv`` does: sum over the input channels for 1 channel, otherwise repeat the RGB
  filters ``ceil(N/3)`` times, take ``N`` and scale by ``3/N``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import torch

__all__ = [
    "ADAPTERS",
    "Adapter",
    "AdapterName",
    "adapt_input_conv",
    "adapt_overlap",
    "adapter_hint",
    "applicable",
    "get_adapter",
]

AdapterName = Literal["overlap", "input_conv"]
Shape = Sequence[int]


def adapt_overlap(src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Copy the overlapping leading slice of ``src`` into a copy of ``target`` (never reshapes)."""
    if src.dim() != target.dim():
        raise ValueError(
            "the 'overlap' adapter needs tensors with the same number of dimensions, got "
            f"{tuple(src.shape)} and {tuple(target.shape)}"
        )
    out = target.detach().clone()
    index = tuple(slice(0, min(a, b)) for a, b in zip(src.shape, target.shape, strict=True))
    with torch.no_grad():
        out[index] = src[index].to(out.dtype)
    return out


def adapt_input_conv(src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """An RGB first-conv weight ``src`` (O, 3, kH, kW) for ``target.shape[1]`` input channels.

    As timm's ``adapt_input_conv``: computed in float32 and returned in ``src``'s dtype. One
    channel: the sum over the input channels (groups of 3 for space-to-depth stems). N channels:
    the RGB filters repeated ``ceil(N/3)`` times, the first N kept, scaled by ``3/N``.
    """
    in_chans = target.shape[1]
    dtype = src.dtype
    weight = src.detach().float()
    if weight.dim() != 4:
        raise ValueError(
            f"the 'input_conv' adapter needs a 4-D conv weight, got {tuple(src.shape)}"
        )
    out_chans, rgb, kh, kw = weight.shape
    if in_chans == 1 and rgb > 3 and rgb % 3 == 0:
        weight = weight.reshape(out_chans, rgb // 3, 3, kh, kw).sum(dim=2)
    elif in_chans == 1:
        weight = weight.sum(dim=1, keepdim=True)
    elif rgb == 3:
        repeat = (in_chans + 2) // 3
        weight = weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (3 / float(in_chans))
    else:
        raise ValueError(
            f"the 'input_conv' adapter turns 3 input channels into {in_chans}, not {rgb}"
        )
    return weight.to(dtype)


def _overlap_why_not(ckpt: Shape, model: Shape, model_on_meta: bool) -> str | None:
    if len(ckpt) != len(model) or not model:
        return "different number of dimensions"
    if model_on_meta:
        return (
            "the model is on the meta device: 'overlap' keeps the model's own values outside "
            "the overlap, and a meta tensor has none (materialise the model first)"
        )
    return None


def _input_conv_why_not(ckpt: Shape, model: Shape, model_on_meta: bool) -> str | None:
    if len(ckpt) != 4 or len(model) != 4:
        return "not a 2-D convolution weight (out, in, kH, kW)"
    if ckpt[0] != model[0] or tuple(ckpt[2:]) != tuple(model[2:]):
        return "only the number of input channels may differ"
    rgb, wanted = ckpt[1], model[1]
    if wanted == rgb:
        return "same number of input channels"
    if rgb == 3 or (wanted == 1 and rgb % 3 == 0):
        return None
    return f"it adapts 3 input channels (RGB), the checkpoint has {rgb}"


@dataclass(frozen=True)
class Adapter:
    """One registered adapter: its function, what it does, and when it applies."""

    name: AdapterName
    #: one line for people (row reasons, the widget, exported code)
    description: str
    #: pure function ``(checkpoint tensor, model tensor) -> tensor of the model's shape``
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    check: Callable[[Shape, Shape, bool], str | None]
    #: reads the model tensor's values (so it cannot run on a meta-device model)
    needs_model_values: bool

    def why_not(
        self, ckpt_shape: Shape | None, model_shape: Shape | None, *, model_on_meta: bool = False
    ) -> str | None:
        """Why this adapter cannot map ``ckpt_shape`` onto ``model_shape`` (None: it can)."""
        if ckpt_shape is None or model_shape is None:
            return "the key is not on both sides"
        if tuple(ckpt_shape) == tuple(model_shape):
            return "the shapes already agree"
        return self.check(tuple(ckpt_shape), tuple(model_shape), model_on_meta)

    def applies(
        self, ckpt_shape: Shape | None, model_shape: Shape | None, *, model_on_meta: bool = False
    ) -> bool:
        """True when this adapter maps ``ckpt_shape`` onto ``model_shape``."""
        return self.why_not(ckpt_shape, model_shape, model_on_meta=model_on_meta) is None

    def __call__(self, src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The checkpoint tensor ``src`` adapted to ``target``'s shape (a new tensor)."""
        return self.fn(src, target)


ADAPTERS: MappingProxyType[str, Adapter] = MappingProxyType(
    {
        a.name: a
        for a in (
            Adapter(
                "overlap",
                "copies the overlapping slice; the rest keeps the model's values",
                adapt_overlap,
                _overlap_why_not,
                needs_model_values=True,
            ),
            Adapter(
                "input_conv",
                "sums (1 channel) or repeats and rescales (N channels) the RGB "
                "filters of a first convolution, as timm's adapt_input_conv",
                adapt_input_conv,
                _input_conv_why_not,
                needs_model_values=False,
            ),
        )
    }
)


def get_adapter(name: str) -> Adapter:
    """The registered adapter called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return ADAPTERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown adapter {name!r}; available: {', '.join(map(repr, ADAPTERS))}"
        ) from None


def applicable(
    ckpt_shape: Shape | None, model_shape: Shape | None, *, model_on_meta: bool = False
) -> tuple[str, ...]:
    """Names of the adapters that map ``ckpt_shape`` onto ``model_shape``, registry order.

    Parameters
    ----------
    ckpt_shape, model_shape : sequence of int or None
        The two sides of a shape mismatch.
    model_on_meta : bool
        The model tensor is on the meta device (adapters that need its values do not apply).

    Returns
    -------
    tuple of str
        Possibly empty.
    """
    return tuple(
        n
        for n, a in ADAPTERS.items()
        if a.applies(ckpt_shape, model_shape, model_on_meta=model_on_meta)
    )


def adapter_hint(
    ckpt_shape: Shape | None,
    model_shape: Shape | None,
    *,
    model_on_meta: bool = False,
    key: str | None = None,
) -> str:
    """What the registry offers for a shape mismatch, as one clause for a reason text.

    ``"to use it pass adapt={'fc.weight': 'overlap'} (copies ...)"`` when adapters apply
    (``adapt='overlap'`` without ``key``), else ``"no adapter applies (why, per adapter)"``.
    The plan's skip reasons and a comparison row's reason can both end with it.

    Parameters
    ----------
    ckpt_shape, model_shape : sequence of int or None
        The two sides of the mismatch.
    model_on_meta : bool
        The model tensor is on the meta device.
    key : str, optional
        The model key, to spell the ``adapt=`` argument exactly.

    Returns
    -------
    str
    """
    names = applicable(ckpt_shape, model_shape, model_on_meta=model_on_meta)
    if names:
        spell = (
            (lambda n: f"adapt={{{key!r}: {n!r}}}")
            if key is not None
            else (lambda n: f"adapt={n!r}")
        )
        return "to use it pass " + " or ".join(
            f"{spell(n)} ({ADAPTERS[n].description})" for n in names
        )
    reasons = dict.fromkeys(
        a.why_not(ckpt_shape, model_shape, model_on_meta=model_on_meta) or ""
        for a in ADAPTERS.values()
    )
    return f"no adapter applies ({'; '.join(reasons)})"
