"""Shape adapters: pure ``(checkpoint tensor, model tensor) -> tensor`` functions, in a registry.

Each adapter has a name (what ``plan(adapt=...)`` takes), a one-line description, and an
applicability check on the key and the two shapes, so the plan, the comparison's row text, the
widget and the exported code all ask the same table instead of comparing strings. An adapter is
offered only where its meaning fits the tensor. The functions use torch only and are copied
verbatim into exported code (``plan.to_code()``), so the library and the export run one
implementation.

* ``overlap``: copy the overlapping leading slice into a copy of the model's tensor (a classifier
  going from 10 to 3 classes keeps the first 3 rows; a grown vocabulary embedding keeps the
  checkpoint's rows for the old tokens and the model's fresh rows for the new ones). Never for
  position embeddings: copying tokens in row order would scramble a 2-D grid.
* ``input_conv``: turn an RGB first convolution into one for 1 or N input channels the way timm's
  ``adapt_input_conv`` does: sum over the input channels for 1 channel (over each group of 3 for
  a space-to-depth stem: 12 channels become 4), otherwise repeat the RGB filters ``ceil(N/3)``
  times, take ``N`` and scale by ``3/N``.
* ``interpolate``: resample the grid of an absolute position embedding (ViT ``pos_embed``,
  Hugging Face ``embeddings.position_embeddings``, CLIP ``positional_embedding``) to the model's
  grid in 2-D, bicubic with antialiasing, keeping the prefix (class/distillation) tokens as they
  are, as timm's ``resample_abs_pos_embed`` does. ``"interpolate"`` keeps 1 prefix token;
  ``"interpolate:N"`` keeps N (``"interpolate:2"`` for DeiT's class + distillation tokens,
  ``"interpolate:0"`` for SigLIP-style grids without one).
* ``resample_patch``: resample a ViT patch-embedding kernel to another patch size (16x16 to
  8x8) as timm's ``resample_patch_embed`` does (FlexiViT's pseudo-inverse resize).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

#: an adapter's name as ``plan(adapt=...)`` takes it: a registered name, or ``"interpolate:N"``
AdapterName = str
Shape = Sequence[int]

#: prefix-token counts tried, in order, when offering ``interpolate`` for a row (1: timm's default)
PREFIX_TOKENS_TRIED = (1, 0, 2, 3, 4, 5, 6, 7, 8)


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
    channel: the sum over the input channels (a space-to-depth stem of 3·k channels becomes k:
    the sum over each group of 3). N channels: the RGB filters repeated ``ceil(N/3)`` times, the
    first N kept, scaled by ``3/N``.
    """
    in_chans = target.shape[1]
    dtype = src.dtype
    weight = src.detach().float()
    if weight.dim() != 4:
        raise ValueError(
            f"the 'input_conv' adapter needs a 4-D conv weight, got {tuple(src.shape)}"
        )
    out_chans, rgb, kh, kw = weight.shape
    if rgb > 3 and rgb % 3 == 0 and in_chans == rgb // 3:
        weight = weight.reshape(out_chans, rgb // 3, 3, kh, kw).sum(dim=2)
    elif in_chans == 1 and rgb == 3:
        weight = weight.sum(dim=1, keepdim=True)
    elif rgb == 3:
        repeat = (in_chans + 2) // 3
        weight = weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (3 / float(in_chans))
    else:
        raise ValueError(
            f"the 'input_conv' adapter cannot turn {rgb} input channels into {in_chans}"
        )
    return weight.to(dtype)


def adapt_interpolate(
    src: torch.Tensor, target: torch.Tensor, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """A position embedding ``src`` ([1, P+g1², D] or [P+g1², D]) resampled to ``target``'s grid.

    As timm's ``resample_abs_pos_embed``: the first ``num_prefix_tokens`` tokens are kept as
    they are, the square grid is resampled in 2-D (float32, bicubic, antialias) and cast back.
    """
    batched = src.dim() == 3
    posemb = src.detach() if batched else src.detach().unsqueeze(0)
    old = int((posemb.shape[1] - num_prefix_tokens) ** 0.5 + 0.5)
    new = int((target.shape[-2] - num_prefix_tokens) ** 0.5 + 0.5)
    if old * old + num_prefix_tokens != posemb.shape[1]:
        raise ValueError(
            f"the 'interpolate' adapter needs {num_prefix_tokens} prefix tokens and a square "
            f"grid, got {tuple(src.shape)}"
        )
    if new * new + num_prefix_tokens != target.shape[-2]:
        raise ValueError(
            f"the 'interpolate' adapter needs {num_prefix_tokens} prefix tokens and a square "
            f"grid in the model, got {tuple(target.shape)}"
        )
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    dim = grid.shape[-1]
    dtype = grid.dtype
    grid = grid.float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(new, new), mode="bicubic", antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(dtype)
    out = torch.cat([prefix, grid], dim=1)
    return out if batched else out[0]


def adapt_resample_patch(src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A patch-embedding kernel ``src`` (D, C, p1, p1') resampled to ``target``'s patch size.

    As timm's ``resample_patch_embed`` (FlexiViT): the pseudo-inverse of the bicubic, antialiased
    resize of each kernel position, applied to every (out, in) kernel in float32, cast back; a
    patch of the new size then gives about the response the old kernel gave the old patch.
    """
    old, new = tuple(src.shape[-2:]), tuple(target.shape[-2:])
    basis = torch.eye(old[0] * old[1], dtype=torch.float32).reshape(-1, 1, old[0], old[1])
    resized = torch.nn.functional.interpolate(
        basis, size=new, mode="bicubic", antialias=True, align_corners=False
    )
    resize = resized.squeeze(1).permute(1, 2, 0).reshape(new[0] * new[1], old[0] * old[1])
    pinv = torch.linalg.pinv(resize)
    out_chans, in_chans = src.shape[0], src.shape[1]
    kernels = src.detach().reshape(out_chans, in_chans, -1).to(torch.float32)
    return (kernels @ pinv).reshape(out_chans, in_chans, new[0], new[1]).to(src.dtype)


# ------------------------------------------------------------------------------------------------
# what a key's name says about its tensor
# ------------------------------------------------------------------------------------------------

#: a dotted part of a key naming an absolute position embedding (ViT/DeiT/DINOv2 ``pos_embed``,
#: Hugging Face ``position_embeddings``/``position_embedding``, CLIP ``positional_embedding``,
#: GPT-2 ``wpe``, BART/OPT ``embed_positions``); relative position tables match too (``overlap``
#: never fits them either)
_POSITIONAL = re.compile(
    r"(?:^|_)(?:pos(?:ition(?:al)?)?_?emb(?:ed(?:ding)?s?)?|wpe|rel(?:ative)?_pos(?:ition)?\w*)$"
    r"|^embed_pos(?:itions?)?$",
    re.IGNORECASE,
)
_RELATIVE = re.compile(r"rel(?:ative)?_pos", re.IGNORECASE)
#: dotted parts naming a token (vocabulary) embedding
_VOCABULARY = re.compile(
    r"^(?:wte|word_embeddings|embed_tokens|tok_embeddings|token_embedding|shared|"
    r"lm_head|embed_in|embed_out|tok_emb|embeddings?)$",
    re.IGNORECASE,
)


#: a dotted part naming a ViT patch embedding (timm ``patch_embed``, Hugging Face
#: ``patch_embeddings``, CLIP ``patch_embedding``)
_PATCH = re.compile(r"^patch_embed(?:dings?)?$", re.IGNORECASE)


def _parts(key: str | None) -> list[str]:
    return key.split(".") if key else []


def is_position_embedding(key: str | None) -> bool:
    """True when a dotted part of ``key`` names a position embedding (absolute or relative).

    Parameters
    ----------
    key : str or None
        A model key (``"pos_embed"``, ``"vit.embeddings.position_embeddings"``,
        ``"visual.positional_embedding"``, ``"transformer.wpe.weight"``).

    Returns
    -------
    bool
    """
    return any(_POSITIONAL.search(p) for p in _parts(key))


def _is_vocabulary(key: str | None) -> bool:
    return any(_VOCABULARY.match(p) for p in _parts(key)) and not is_position_embedding(key)


def _grid_side(tokens: int, prefix: int) -> int | None:
    """The side of the square grid of ``tokens - prefix`` tokens; None when not a square."""
    n = tokens - prefix
    if n < 1:
        return None
    side = int(n**0.5 + 0.5)
    return side if side * side == n else None


def _token_axes(ckpt: Shape, model: Shape) -> tuple[int, int] | None:
    """(checkpoint tokens, model tokens) of a [1, N, D] or [N, D] pair with one D; else None."""
    if len(ckpt) != len(model) or len(ckpt) not in (2, 3) or ckpt[-1] != model[-1]:
        return None
    if len(ckpt) == 3 and (ckpt[0] != 1 or model[0] != 1):
        return None
    return ckpt[-2], model[-2]


def _grids(ckpt: Shape, model: Shape, prefix: int) -> tuple[int, int] | None:
    axes = _token_axes(ckpt, model)
    if axes is None:
        return None
    old, new = _grid_side(axes[0], prefix), _grid_side(axes[1], prefix)
    return (old, new) if old is not None and new is not None else None


# ------------------------------------------------------------------------------------------------
# applicability and descriptions, per adapter
# ------------------------------------------------------------------------------------------------


def _overlap_why_not(
    ckpt: Shape, model: Shape, model_on_meta: bool, key: str | None, _options: dict[str, Any]
) -> str | None:
    if len(ckpt) != len(model) or not model:
        return "different number of dimensions"
    if is_position_embedding(key):
        if any(_grids(ckpt, model, prefix) for prefix in (0, 1, 2)):
            return (
                "a position embedding: copying tokens in row order would put each checkpoint "
                "position at another place of the model's grid"
            )
        return (
            "a learned position table of another length: no adapter is offered, since "
            "resampling it (linear along positions) would change every position's learned "
            "vector, and some tables (RoBERTa's) reserve their first rows; copy the positions "
            "you want yourself (model_table[:n] = checkpoint_table[:n]) or keep the model's"
        )
    if len(model) == 4 and tuple(ckpt[2:]) != tuple(model[2:]):
        return (
            "a convolution kernel of another size: its top-left corner is not the same filter "
            "(its centre moves)"
        )
    if model_on_meta:
        return (
            "the model is on the meta device: 'overlap' keeps the model's own values outside "
            "the overlap, and a meta tensor has none (materialise the model first)"
        )
    return None


def _span(start: int, stop: int) -> str:
    return f"{start}" if stop - start == 1 else f"{start}..{stop - 1}"


_CONV_AXES = ("output channels", "input channels", "kernel rows", "kernel columns")


def _overlap_describe(ckpt: Shape, model: Shape, key: str | None, _options: dict[str, Any]) -> str:
    """Which part of the checkpoint is kept and which part of the model stays, per dimension."""
    vocabulary = _is_vocabulary(key) and len(ckpt) == 2 and ckpt[1] == model[1]
    what = "rows (tokens)" if vocabulary else None
    clauses = []
    for dim, (c, m) in enumerate(zip(ckpt, model, strict=True)):
        if c == m:
            continue
        axes = _CONV_AXES if len(ckpt) == 4 else ("rows", "columns")
        axis = what or (axes[dim] if dim < len(axes) else f"indices of dim {dim}")
        keep = min(c, m)
        text = f"copies the checkpoint's {axis} {_span(0, keep)}"
        if m > c:
            fresh = "new tokens" if vocabulary else "the rest"
            text += f"; {axis} {_span(c, m)} ({fresh}) keep the model's current values"
        else:
            text += f"; the checkpoint's {axis} {_span(m, c)} are dropped"
        clauses.append(text)
    return "; ".join(clauses) or ADAPTERS["overlap"].description


def _input_conv_why_not(
    ckpt: Shape, model: Shape, _on_meta: bool, _key: str | None, _options: dict[str, Any]
) -> str | None:
    if len(ckpt) != 4 or len(model) != 4:
        return "not a 2-D convolution weight (out, in, kH, kW)"
    if ckpt[0] != model[0] or tuple(ckpt[2:]) != tuple(model[2:]):
        return "only the number of input channels may differ"
    rgb, wanted = ckpt[1], model[1]
    if wanted == rgb:
        return "same number of input channels"
    if rgb == 3 or (rgb % 3 == 0 and wanted == rgb // 3):
        return None
    if rgb % 3 == 0:
        return (
            f"a {rgb}-channel (space-to-depth) stem becomes {rgb // 3} channels for a 1-channel "
            f"input, as timm's adapt_input_conv makes it, not {wanted}"
        )
    return f"it adapts 3 input channels (RGB), the checkpoint has {rgb}"


def _input_conv_describe(
    ckpt: Shape, model: Shape, _key: str | None, _options: dict[str, Any]
) -> str:
    rgb, wanted = ckpt[1], model[1]
    if rgb > 3:
        return (
            f"sums each group of 3 (RGB) of the {rgb} input channels of a space-to-depth stem "
            f"into {wanted}, as timm's adapt_input_conv"
        )
    if wanted == 1:
        return "sums the RGB filters into 1 input channel, as timm's adapt_input_conv"
    return (
        f"repeats the RGB filters into {wanted} input channels and scales them by 3/{wanted}, "
        "as timm's adapt_input_conv"
    )


def _interpolate_why_not(
    ckpt: Shape, model: Shape, _on_meta: bool, key: str | None, options: dict[str, Any]
) -> str | None:
    if not is_position_embedding(key) or any(_RELATIVE.search(p) for p in _parts(key)):
        return "not an absolute position embedding (pos_embed, position_embeddings, ...)"
    prefix = options["num_prefix_tokens"]
    if _token_axes(ckpt, model) is None:
        return "not a [1, tokens, dim] or [tokens, dim] position table with one embedding size"
    if _grids(ckpt, model, prefix) is None:
        return f"the tokens after {prefix} prefix token(s) are not a square grid on both sides"
    return None


def _interpolate_describe(
    ckpt: Shape, model: Shape, _key: str | None, options: dict[str, Any]
) -> str:
    prefix = options["num_prefix_tokens"]
    grids = _grids(ckpt, model, prefix)
    assert grids is not None
    old, new = grids
    keep = (
        "keeps the class token"
        if prefix == 1
        else f"keeps the {prefix} prefix tokens (class, distillation, ...)"
        if prefix
        else "no prefix token"
    )
    return (
        f"{keep} and resamples the {old}x{old} position grid to {new}x{new} in 2-D (bicubic, "
        "antialias), as timm's resample_abs_pos_embed"
    )


def _resample_patch_why_not(
    ckpt: Shape, model: Shape, _on_meta: bool, key: str | None, _options: dict[str, Any]
) -> str | None:
    parts = _parts(key)
    if not any(_PATCH.match(p) for p in parts) or (parts and parts[-1] != "weight"):
        return "not a patch-embedding kernel (patch_embed.proj.weight, ...)"
    if len(ckpt) != 4 or len(model) != 4 or tuple(ckpt[:2]) != tuple(model[:2]):
        return "only the patch size of a (dim, channels, p, p) kernel may differ"
    return None


def _resample_patch_describe(
    ckpt: Shape, model: Shape, _key: str | None, _options: dict[str, Any]
) -> str:
    return (
        f"resamples the {ckpt[2]}x{ckpt[3]} patch kernel to {model[2]}x{model[3]} (pseudo-inverse "
        "of a bicubic resize), as timm's resample_patch_embed; the position grid changes with it"
    )


Check = Callable[[Shape, Shape, bool, "str | None", dict[str, Any]], "str | None"]
Describe = Callable[[Shape, Shape, "str | None", dict[str, Any]], str]


@dataclass(frozen=True)
class Adapter:
    """One registered adapter: its function, what it does, and when it applies."""

    name: str
    #: one line for people (row reasons, the widget, exported code)
    description: str
    #: pure function ``(checkpoint tensor, model tensor, **options) -> tensor of the model's
    #: shape``
    fn: Callable[..., torch.Tensor]
    check: Check
    #: reads the model tensor's values (so it cannot run on a meta-device model)
    needs_model_values: bool
    #: what it does to one row's tensor, from the key and the two shapes
    describe_row: Describe | None = None
    #: keyword arguments of ``fn`` this use of the adapter passes (``num_prefix_tokens``)
    options: tuple[tuple[str, int], ...] = ()

    def why_not(
        self,
        ckpt_shape: Shape | None,
        model_shape: Shape | None,
        *,
        model_on_meta: bool = False,
        key: str | None = None,
        config_mismatch: bool = False,
    ) -> str | None:
        """Why this adapter cannot map ``ckpt_shape`` onto ``model_shape`` (None: it can).

        ``key`` (the model key) lets an adapter judge what the tensor is: ``overlap`` is never
        right for a position embedding, ``interpolate`` only for one. ``config_mismatch``: the
        row is one of a model built with another config (every shape mismatch shares one size
        ratio), where copying a slice of each tensor would not make a working model.
        """
        if ckpt_shape is None or model_shape is None:
            return "the key is not on both sides"
        if tuple(ckpt_shape) == tuple(model_shape):
            return "the shapes already agree"
        if config_mismatch and self.name == "overlap":
            return CONFIG_MISMATCH_REASON
        return self.check(
            tuple(ckpt_shape), tuple(model_shape), model_on_meta, key, dict(self.options)
        )

    def applies(
        self,
        ckpt_shape: Shape | None,
        model_shape: Shape | None,
        *,
        model_on_meta: bool = False,
        key: str | None = None,
        config_mismatch: bool = False,
    ) -> bool:
        """True when this adapter maps ``ckpt_shape`` onto ``model_shape``."""
        why = self.why_not(
            ckpt_shape,
            model_shape,
            model_on_meta=model_on_meta,
            key=key,
            config_mismatch=config_mismatch,
        )
        return why is None

    def describe(self, ckpt_shape: Shape, model_shape: Shape, key: str | None = None) -> str:
        """What this adapter does to one row's tensor (falls back to :attr:`description`)."""
        if self.describe_row is None or self.why_not(ckpt_shape, model_shape, key=key):
            return self.description
        return self.describe_row(tuple(ckpt_shape), tuple(model_shape), key, dict(self.options))

    def __call__(self, src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The checkpoint tensor ``src`` adapted to ``target``'s shape (a new tensor)."""
        return self.fn(src, target, **dict(self.options))


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
                describe_row=_overlap_describe,
            ),
            Adapter(
                "input_conv",
                "sums (1 channel) or repeats and rescales (N channels) the RGB "
                "filters of a first convolution, as timm's adapt_input_conv",
                adapt_input_conv,
                _input_conv_why_not,
                needs_model_values=False,
                describe_row=_input_conv_describe,
            ),
            Adapter(
                "interpolate",
                "keeps the prefix (class) tokens and resamples the position grid in 2-D "
                "(bicubic, antialias), as timm's resample_abs_pos_embed",
                adapt_interpolate,
                _interpolate_why_not,
                needs_model_values=False,
                describe_row=_interpolate_describe,
                options=(("num_prefix_tokens", 1),),
            ),
            Adapter(
                "resample_patch",
                "resamples a ViT patch-embedding kernel to another patch size (pseudo-inverse "
                "of a bicubic resize), as timm's resample_patch_embed",
                adapt_resample_patch,
                _resample_patch_why_not,
                needs_model_values=False,
                describe_row=_resample_patch_describe,
            ),
        )
    }
)

_PARAMETRISED = re.compile(r"^(interpolate):(\d)$")


def get_adapter(name: str) -> Adapter:
    """The adapter ``name`` names: a registered name, or ``"interpolate:N"`` (N prefix tokens).

    ``ValueError`` naming the choices otherwise.
    """
    if isinstance(name, str) and name in ADAPTERS:
        return ADAPTERS[name]
    match = _PARAMETRISED.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"unknown adapter {name!r}; available: {', '.join(map(repr, ADAPTERS))} "
            "('interpolate:N' keeps N prefix tokens, 0 to 9)"
        )
    base = ADAPTERS[match.group(1)]
    return dataclasses.replace(
        base, name=name, options=(("num_prefix_tokens", int(match.group(2))),)
    )


#: why ``overlap`` is not offered for a row of a config mismatch (still usable by asking for it)
CONFIG_MISMATCH_REASON = (
    "overlap is not offered for a model built with another config (every shape mismatch "
    "shares one size ratio): a slice of each tensor would not make a working model; build the "
    "model with the checkpoint's config, or pass adapt= to copy the slice anyway"
)


def _offered(name: str, adapter: Adapter, ckpt: Shape, model: Shape, key: str | None) -> str | None:
    """The spelling of ``adapter`` that fits this row (``interpolate:N``), or None."""
    if name != "interpolate":
        return name
    for prefix in PREFIX_TOKENS_TRIED:
        if _grids(ckpt, model, prefix) is not None:
            return name if prefix == 1 else f"{name}:{prefix}"
    return None


def applicable(
    ckpt_shape: Shape | None,
    model_shape: Shape | None,
    *,
    model_on_meta: bool = False,
    key: str | None = None,
    config_mismatch: bool = False,
) -> tuple[str, ...]:
    """Names of the adapters that map ``ckpt_shape`` onto ``model_shape``, registry order.

    Parameters
    ----------
    ckpt_shape, model_shape : sequence of int or None
        The two sides of a shape mismatch.
    model_on_meta : bool
        The model tensor is on the meta device (adapters that need its values do not apply).
    key : str, optional
        The model key: what the tensor is decides too (``overlap`` is never offered for a
        position embedding, ``interpolate`` only for one).
    config_mismatch : bool
        The row is part of a config mismatch (``Comparison.config_mismatch()``): ``overlap``
        is not offered (it would copy a slice of every tensor of a differently sized model).

    Returns
    -------
    tuple of str
        Possibly empty. ``interpolate`` is spelled with the prefix-token count that fits the
        two grids when it is not 1 (``"interpolate:2"`` for DeiT's class + distillation tokens).
    """
    if ckpt_shape is None or model_shape is None:
        return ()
    out = []
    for name, adapter in ADAPTERS.items():
        spelled = _offered(name, adapter, ckpt_shape, model_shape, key)
        if spelled is None:
            continue
        if get_adapter(spelled).applies(
            ckpt_shape,
            model_shape,
            model_on_meta=model_on_meta,
            key=key,
            config_mismatch=config_mismatch,
        ):
            out.append(spelled)
    return tuple(out)


def adapter_hint(
    ckpt_shape: Shape | None,
    model_shape: Shape | None,
    *,
    model_on_meta: bool = False,
    key: str | None = None,
    config_mismatch: bool = False,
) -> str:
    """What the registry offers for a shape mismatch, as one clause for a reason text.

    ``"to use it pass adapt={'fc.weight': 'overlap'} (copies ...)"`` when adapters apply
    (``adapt='overlap'`` without ``key``), else ``"no adapter applies (why, per adapter)"``.
    The plan's skip reasons and a comparison row's reason can both end with it. Each offered
    adapter says what it would do to this tensor.

    Parameters
    ----------
    ckpt_shape, model_shape : sequence of int or None
        The two sides of the mismatch.
    model_on_meta : bool
        The model tensor is on the meta device.
    key : str, optional
        The model key, to spell the ``adapt=`` argument exactly and to judge what the tensor is.

    Returns
    -------
    str
    """
    names = applicable(
        ckpt_shape,
        model_shape,
        model_on_meta=model_on_meta,
        key=key,
        config_mismatch=config_mismatch,
    )
    if names and ckpt_shape is not None and model_shape is not None:
        spell = (
            (lambda n: f"adapt={{{key!r}: {n!r}}}")
            if key is not None
            else (lambda n: f"adapt={n!r}")
        )
        return "to use it pass " + " or ".join(
            f"{spell(n)} ({get_adapter(n).describe(ckpt_shape, model_shape, key)})" for n in names
        )
    reasons = dict.fromkeys(
        a.why_not(
            ckpt_shape,
            model_shape,
            model_on_meta=model_on_meta,
            key=key,
            config_mismatch=config_mismatch,
        )
        or ""
        for a in ADAPTERS.values()
    )
    return f"no adapter applies ({'; '.join(r for r in reasons if r)})"
