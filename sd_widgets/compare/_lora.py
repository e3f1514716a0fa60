"""PEFT LoRA adapters: recognise one, pair its factors with the weights they modify, merge.

An ``adapter_model.safetensors`` written by PEFT's ``save_pretrained`` holds, for every target
module, ``base_model.model.<path>.lora_A.weight`` (r × in) and ``...lora_B.weight`` (out × r)
(an ``Embedding``: ``lora_embedding_A`` r × num_embeddings and ``lora_embedding_B`` dim × r; a
convolution: ``lora_A.weight`` r × in × kernel and ``lora_B.weight`` out × r × 1…), and no base
weights; ``adapter_config.json`` beside it holds ``r``, ``lora_alpha``, ``target_modules``,
``use_rslora``, ``rank_pattern`` / ``alpha_pattern``, ``use_dora`` (then each layer also has a
``lora_magnitude_vector``) and ``lora_bias``.
:func:`detect_lora` reads the checkpoint's key names and shapes, that file and the type of each
target layer in the model (never a tensor) and pairs every factor pair with the model key it
modifies; :func:`merge_lora` is the merge PEFT's ``merge_and_unload`` performs for that layer:

    W + scale · ΔW, scale = lora_alpha / r (lora_alpha / √r with use_rslora), where ΔW is
    B @ A for a ``Linear``, (B @ A)ᵀ for GPT-2's ``Conv1D`` (fan_in_fan_out) and an
    ``Embedding``, and A's kernel composed with B's 1×1 kernel for ``Conv1d/2d/3d``; with DoRA,
    W + scale · ΔW rescaled row by row to the magnitude vector, m / ‖W + scale · ΔW‖.

As in PEFT, the layer's type decides the transpose (PEFT overrides the config's
``fan_in_fan_out`` to fit a ``Linear`` or a ``Conv1D``). Everything read from the adapter (key
names, the config's values) is untrusted: the config is size-capped, type-checked, and a problem
becomes a reason on the pair or a :class:`~sd_widgets.errors.UnreadableCheckpointError` that says
what was found.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..errors import UnreadableCheckpointError

CONFIG_NAME = "adapter_config.json"
#: how many target module names :meth:`LoraAdapter.describe` writes out
TARGETS_SHOWN = 8
#: an adapter_config.json is a few kB; anything far larger is not one
MAX_CONFIG_BYTES = 1 << 20

#: ``base_model.model.<path>.lora_A.weight`` / ``lora_embedding_A`` / DoRA's
#: ``lora_magnitude_vector`` (an adapter name segment tolerated before ``weight`` / after the
#: name); ``lora_B.bias`` and other ``lora_*`` entries are recognised as LoRA keys too, so they
#: are named instead of ignored
_PEFT_PREFIX = "base_model.model."
_OTHER_LORA = re.compile(r"\.(lora_[A-Za-z_]+)(?:\.|$)")
#: the layers PEFT merges LoRA into, by the name :func:`layer_kind` gives them
LAYERS = ("Linear", "Conv1D", "Embedding", "Conv1d", "Conv2d", "Conv3d")


def _factor_of(key: str) -> tuple[str, str] | None:
    """(module path, "A", "B", "M" or "bias") of a factor key, or None.

    ``base_model.model.<path>.lora_A[.<adapter>].weight`` (Linear, Conv1D, convolutions),
    ``base_model.model.<path>.lora_embedding_A[.<adapter>]`` (Embedding), DoRA's
    ``base_model.model.<path>.lora_magnitude_vector`` ("M") and ``lora_bias``'s
    ``base_model.model.<path>.lora_B[.<adapter>].bias`` ("bias").
    """
    if not key.startswith(_PEFT_PREFIX):
        return None
    head, _, tail = key.rpartition(".lora_")
    parts = tail.split(".")
    if parts[0] in ("embedding_A", "embedding_B") and len(parts) in (1, 2):
        ab = parts[0][-1]
    elif parts[0] == "magnitude_vector" and len(parts) in (1, 2, 3):  # DoRA
        ab = "M"
    elif parts[0] in ("A", "B") and parts[-1] == "weight" and len(parts) in (2, 3):
        ab = parts[0]
    elif parts[0] == "B" and parts[-1] == "bias" and len(parts) in (2, 3):
        ab = "bias"
    else:
        return None
    path = head[len(_PEFT_PREFIX) :]
    return (path, ab) if path else None


def layer_kind(module: nn.Module) -> str:
    """What PEFT's LoRA dispatch makes of ``module``: a name of :data:`LAYERS`, or its type name.

    In PEFT's order (``peft.tuners.lora.layer.dispatch_default``): ``Embedding``, ``Conv2d``,
    ``Conv3d``, ``Conv1d``, ``MultiheadAttention`` (not merged here), ``Linear``, then
    transformers' ``Conv1D`` (recognised by its class name: transformers is not imported).
    """
    for kind, cls in (
        ("Embedding", nn.Embedding),
        ("Conv2d", nn.Conv2d),
        ("Conv3d", nn.Conv3d),
        ("Conv1d", nn.Conv1d),
        ("MultiheadAttention", nn.MultiheadAttention),
        ("Linear", nn.Linear),
    ):
        if isinstance(module, cls):
            return kind
    if any(c.__name__ == "Conv1D" for c in type(module).__mro__):
        return "Conv1D"
    return type(module).__name__


def merge_lora(
    weight: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: float,
    layer: str,
    magnitude: torch.Tensor | None = None,
) -> torch.Tensor:
    """``weight + scale · ΔW`` for a LoRA factor pair of a ``layer`` (a new tensor).

    As PEFT's ``get_delta_weight`` and ``merge`` for that layer: the factors in the weight's
    dtype (in float32 for a float16/bfloat16 weight, as PEFT keeps the adapter in float32 and
    computes there on the CPU); ΔW = B @ A, transposed for ``Conv1D`` (fan_in_fan_out) and
    ``Embedding``; for a convolution, B @ A of the squeezed factors for a 1×1 kernel, else A's
    kernel convolved with B's 1×1 kernel. ``Embedding`` adds ΔW cast to the weight's dtype;
    the others add it as PEFT's in-place ``+=`` does (in the factors' dtype, then cast).

    DoRA (``magnitude``, the adapter's ``lora_magnitude_vector``): ``m / ‖W + ΔW‖ · (W + ΔW)``,
    the norm taken per output row (per embedding dimension for an ``Embedding``, per output
    channel over the whole kernel for a convolution), as PEFT's DoRA ``merge``.
    """
    dtype = weight.dtype
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    a, b = lora_a.detach().to(compute), lora_b.detach().to(compute)
    if a.dim() == 2:  # Linear, Conv1D, Embedding
        delta = b @ a
        if layer in ("Conv1D", "Embedding"):
            delta = delta.T
        delta = delta * scale
    elif a.dim() == 4 and tuple(weight.shape[2:]) == (1, 1):  # a 1x1 convolution
        delta = (b.squeeze(3).squeeze(2) @ a.squeeze(3).squeeze(2)).unsqueeze(2).unsqueeze(3)
        delta = delta * scale
    else:  # a k x k convolution: A's kernel composed with B's 1 x 1 kernel
        conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)
        delta = conv[a.dim() - 3](a.transpose(0, 1), b).transpose(0, 1) * scale
    if magnitude is not None:  # DoRA: rescale each row of W + ΔW to the learned magnitude
        m, w = magnitude.detach().to(compute), weight.detach()
        if a.dim() == 2:
            rows = w + delta if layer == "Linear" else w.T + delta.T
            factor = (m / torch.linalg.norm(rows, dim=1).to(rows.dtype)).view(-1, 1)
            factor = factor if layer == "Linear" else factor.T
        else:
            full = w + delta
            norm = full.norm(p=2, dim=tuple(range(1, full.dim())), keepdim=True).transpose(1, 0)
            factor = (m / norm).view(-1, *([1] * (full.dim() - 1)))
        return (factor * (w + delta)).to(dtype)
    if layer == "Embedding":
        return weight.detach() + delta.to(dtype)
    return (weight.detach().to(delta.dtype) + delta).to(dtype)


def merge_lora_bias(bias: torch.Tensor, lora_bias: torch.Tensor, scale: float) -> torch.Tensor:
    """``bias + scale · lora_B.bias`` (a new tensor), as PEFT's merge with ``lora_bias``.

    In the factors' dtype (float32 for a float16/bfloat16 bias, as PEFT keeps the adapter in
    float32), then cast, as PEFT's in-place ``+=`` does.
    """
    dtype = bias.dtype
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    return (bias.detach().to(compute) + lora_bias.detach().to(compute) * scale).to(dtype)


@dataclass(frozen=True)
class LoraPair:
    """One factor pair of the adapter and the model weight it modifies."""

    #: model key of the weight the pair modifies (``transformer.h.0.attn.c_attn.weight``)
    base_key: str
    #: checkpoint keys of the factors
    a_key: str
    b_key: str
    rank: int
    alpha: float
    #: lora_alpha / r (lora_alpha / sqrt(r) with use_rslora)
    scale: float
    #: the model layer's kind as PEFT dispatches it (:func:`layer_kind`): ``"Linear"``,
    #: ``"Conv1D"``, ``"Embedding"``, ``"Conv2d"``, ...; it decides ΔW's form
    layer: str
    #: checkpoint key of DoRA's ``lora_magnitude_vector`` for this layer (None: plain LoRA)
    magnitude_key: str | None = None
    #: checkpoint key of ``lora_B.bias`` (``lora_bias``), added to the layer's bias (None: none)
    bias_key: str | None = None
    #: why this pair cannot be merged into the model; None when it can
    problem: str | None = None

    @property
    def bias_target(self) -> str | None:
        """Model key of the bias ``lora_B.bias`` is merged into; None without one."""
        return self.base_key[: -len("weight")] + "bias" if self.bias_key else None

    @property
    def fan_in_fan_out(self) -> bool:
        """ΔW is transposed because the layer stores its weight as in × out (``Conv1D``)."""
        return self.layer == "Conv1D"


@dataclass(frozen=True)
class LoraAdapter:
    """A PEFT LoRA adapter compared with a plain model."""

    #: ``r`` of the config (the factors' own rank per pair is in :attr:`pairs`)
    rank: int | None
    alpha: float | None
    target_modules: tuple[str, ...]
    fan_in_fan_out: bool
    use_rslora: bool
    #: every factor pair, in checkpoint order, with the base weight it modifies
    pairs: tuple[LoraPair, ...]
    #: checkpoint keys that are LoRA entries but no A/B weight pair this package can merge
    other_keys: tuple[str, ...]
    #: where adapter_config.json was read from (None: not found)
    config_path: str | None
    #: why nothing can be merged (no config, another PEFT method, ...); None when pairs can
    problem: str | None = None
    #: DoRA (``use_dora``): each merged row is rescaled to its ``lora_magnitude_vector``
    use_dora: bool = False

    @property
    def mergeable(self) -> tuple[LoraPair, ...]:
        """The pairs that can be merged into the model."""
        return () if self.problem else tuple(p for p in self.pairs if p.problem is None)

    def describe(self) -> str:
        """One paragraph for people: what the adapter is, what it modifies, what to do."""
        rank = f"rank {self.rank}" if self.rank is not None else "unknown rank"
        alpha = f", lora_alpha {self.alpha:g}" if self.alpha is not None else ""
        shown = self.target_modules[:TARGETS_SHOWN]
        more = len(self.target_modules) - len(shown)
        targets = (
            ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        ) or "unnamed modules"
        text = (
            f"a LoRA adapter ({rank}{alpha}) for {targets}: {len(self.pairs)} factor pairs, "
            f"each paired with the model weight it modifies; it holds no base weights, so "
            "the model's own tensors are missing from it by design."
        )
        if self.problem:
            return text + f" It cannot be merged: {self.problem}"
        blocked = len(self.pairs) - len(self.mergeable)
        text += (
            f" plan(lora='merge') merges {len(self.mergeable)} of them into the model's current "
            f"weights (W + lora_alpha/{'√r' if self.use_rslora else 'r'} · B @ A"
            + (", each row then rescaled to its DoRA magnitude" if self.use_dora else "")
            + ")"
        )
        if blocked:
            first = next(p for p in self.pairs if p.problem)
            text += f"; {blocked} cannot be merged (first: {first.base_key!r}: {first.problem})"
        return text + "."


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``adapter_config.json`` as a dict, checked: a JSON object of at most 1 MiB.

    Raises
    ------
    UnreadableCheckpointError
        Saying what was found and what to do.
    """
    where = os.fspath(path)
    try:
        if not os.path.isfile(where):
            raise UnreadableCheckpointError(f"{where!r} is not a regular file", where)
        size = os.path.getsize(where)
        if size > MAX_CONFIG_BYTES:
            raise UnreadableCheckpointError(
                f"{where!r} is {size} bytes; an adapter_config.json is a few kB "
                f"(limit {MAX_CONFIG_BYTES}). Check that it is the adapter's config.",
                where,
            )
        with open(where, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, UnreadableCheckpointError):
            raise
        raise UnreadableCheckpointError(
            f"{where!r} is not readable JSON ({type(exc).__name__}: {exc}); PEFT writes it with "
            "save_pretrained next to adapter_model.safetensors.",
            where,
        ) from None
    if not isinstance(config, dict):
        raise UnreadableCheckpointError(
            f"{where!r} holds a JSON {type(config).__name__}, not an object of LoRA settings",
            where,
        )
    return config


def _number(config: Mapping[str, Any], name: str, *, integer: bool) -> float | None:
    value = config.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} is {value!r}, not a number")
    if integer and not isinstance(value, int):
        raise ValueError(f"{name} is {value!r}, not a whole number")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} is {value!r}, not a positive number")
    return value


def _pattern(patterns: Any, path: str, name: str) -> Any:
    """The value of ``rank_pattern``/``alpha_pattern`` for module ``path`` (None: no entry).

    Entries are matched as the module's path or a dotted suffix of it, the longest first (one
    dict lookup per suffix: a config of any size costs the depth of the path). PEFT also allows
    regular expressions; an entry this does not match leaves the pair to the global value, and
    a rank that then disagrees with the factors' own is reported on the pair.
    """
    if not patterns:
        return None
    if not isinstance(patterns, dict):
        raise ValueError(f"{name} is a {type(patterns).__name__}, not an object")
    suffix = path
    while True:
        if suffix in patterns:
            return patterns[suffix]
        dot = suffix.find(".")
        if dot < 0:
            return None
        suffix = suffix[dot + 1 :]


def _config_problem(config: Mapping[str, Any]) -> str | None:
    peft_type = config.get("peft_type", "LORA")
    if peft_type != "LORA":
        return (
            f"peft_type is {peft_type!r}, not 'LORA': merge it with PEFT "
            "(PeftModel.from_pretrained(model, folder).merge_and_unload()) and compare the merged "
            "model's state_dict"
        )
    return None


def detect_lora(
    shapes: Mapping[str, tuple[int, ...]],
    model_shapes: Mapping[str, tuple[int, ...]],
    source_path: str | os.PathLike[str] | None,
    *,
    module_of: Callable[[str], nn.Module | None],
    base_model_prefix: str = "",
) -> LoraAdapter | None:
    """The LoRA adapter that ``shapes`` (checkpoint key → shape) is, or None when it is not one.

    Parameters
    ----------
    shapes : mapping of str to tuple of int
        The checkpoint's keys and shapes (nothing is read).
    model_shapes : mapping of str to tuple of int
        The model's keys and shapes.
    source_path : path or None
        The adapter file; ``adapter_config.json`` is looked for beside it (in it, for a
        directory).
    module_of : callable
        The model's module at a module path (None when there is none): its type decides the
        form of the merge, as in PEFT.
    base_model_prefix : str
        The model's Hugging Face ``base_model_prefix`` (``"transformer"``, ``"model"``): an
        adapter trained on the task model pairs with the base model's keys and the other way
        round.

    Returns
    -------
    LoraAdapter or None
        None unless at least one ``lora_A``/``lora_B`` weight pair is in the checkpoint.

    Raises
    ------
    UnreadableCheckpointError
        ``adapter_config.json`` exists but is not a JSON object of at most 1 MiB.
    """
    factors: dict[str, dict[str, str]] = {}
    other: list[str] = []
    for key in shapes:
        if ".lora_" not in key:  # one substring test per key for every other checkpoint
            continue
        factor = _factor_of(key)
        if factor is not None:
            factors.setdefault(factor[0], {})[factor[1]] = key
        elif _OTHER_LORA.search(key):
            other.append(key)
    if not factors:
        return None
    config: dict[str, Any] = {}
    config_path: str | None = None
    if source_path is not None:
        where = os.fspath(source_path)
        folder = where if os.path.isdir(where) else os.path.dirname(where)
        candidate = os.path.join(folder, CONFIG_NAME)
        if os.path.lexists(candidate):
            config, config_path = read_config(candidate), candidate
    problem: str | None = None
    try:
        rank = _number(config, "r", integer=True)
        alpha = _number(config, "lora_alpha", integer=False)
    except ValueError as exc:
        rank = alpha = None
        problem = f"{CONFIG_NAME} is not valid: {exc}"
    targets_raw = config.get("target_modules") or ()
    targets = (
        (targets_raw,)
        if isinstance(targets_raw, str)
        else tuple(t for t in targets_raw if isinstance(t, str))
        if isinstance(targets_raw, list)
        else ()
    )
    fan_in_fan_out = config.get("fan_in_fan_out") is True
    use_rslora = config.get("use_rslora") is True
    use_dora = config.get("use_dora") is True
    use_bias = config.get("lora_bias") is True
    if problem is None:
        problem = _config_problem(config)
    if problem is None and source_path is None:
        problem = (
            "the adapter was given in memory, so its adapter_config.json (lora_alpha, the "
            "merge's scale) is unknown; compare with the adapter_model.safetensors path, "
            "adapter_config.json beside it"
        )
    if problem is None and config_path is None:
        problem = (
            f"no {CONFIG_NAME} beside the adapter file, so lora_alpha (the merge's scale) is "
            "unknown; put the adapter_config.json PEFT saved with it in the same folder"
        )
    if problem is None and alpha is None:
        problem = f"{CONFIG_NAME} has no lora_alpha"
    # the other LoRA entries of each layer (none PEFT writes for LoRA), by module path
    extras: dict[str, str] = {}
    for key in other:
        if key.startswith(_PEFT_PREFIX):
            extras.setdefault(key[len(_PEFT_PREFIX) :].partition(".lora_")[0], key)
    pairs = []
    for path, ab in factors.items():
        if "A" not in ab or "B" not in ab:
            other.extend(ab.values())
            continue
        where = _model_path(path, model_shapes, base_model_prefix)
        pair = _pair(
            where, ab["A"], ab["B"], shapes, model_shapes, module_of(where), config, rank, alpha
        )
        if pair.problem is None:
            pair = _with_magnitude(pair, ab.get("M"), shapes, model_shapes, use_dora)
        if pair.problem is None:
            pair = _with_bias(pair, ab.get("bias"), shapes, model_shapes, use_bias)
        extra = extras.get(path)
        if extra and pair.problem is None:  # merging A and B alone would drop part of it
            pair = replace(
                pair,
                problem=f"the adapter also holds {extra!r} for this layer, which this merge "
                "does not apply; merge it with PEFT "
                "(PeftModel.from_pretrained(model, folder).merge_and_unload())",
            )
        pairs.append(pair)
    targets = tuple(sorted(set(targets)))  # PEFT saves a set: its order is not stable
    if not targets:
        targets = tuple(
            dict.fromkeys(p.base_key.rpartition(".")[0].rpartition(".")[2] for p in pairs)
        )
    return LoraAdapter(
        rank=int(rank) if rank is not None else None,
        alpha=float(alpha) if alpha is not None else None,
        target_modules=targets,
        fan_in_fan_out=fan_in_fan_out,
        use_rslora=use_rslora,
        pairs=tuple(pairs),
        other_keys=tuple(other),
        config_path=config_path,
        problem=problem,
        use_dora=use_dora,
    )


def _with_bias(
    pair: LoraPair,
    bias: str | None,
    shapes: Mapping[str, tuple[int, ...]],
    model_shapes: Mapping[str, tuple[int, ...]],
    use_bias: bool,
) -> LoraPair:
    """``pair`` with its ``lora_B.bias`` (``lora_bias``), or with the problem that blocks it."""
    if bias is None:
        if not use_bias:
            return pair
        return replace(pair, problem="lora_bias is set, but the adapter has no lora_B.bias for it")
    if not use_bias:  # PEFT would ignore it; merging the layer without it drops part of it
        return replace(
            pair,
            problem=f"the adapter also holds {bias!r} for this layer (a LoRA bias), but "
            f"{CONFIG_NAME} does not set lora_bias; set it if the adapter was trained with it, "
            "or merge it with PEFT (PeftModel.from_pretrained(model, folder).merge_and_unload())",
        )
    target = pair.base_key[: -len("weight")] + "bias"
    if pair.layer == "Embedding" or target not in model_shapes:
        return replace(
            pair,
            problem=f"the adapter holds a lora_B.bias, but the model has no {target!r} to add it "
            "to (PEFT cannot merge it either)",
        )
    if tuple(shapes[bias]) != tuple(model_shapes[target]):
        return replace(
            pair,
            problem=f"its lora_B.bias is {list(shapes[bias])}, the model's {target!r} is "
            f"{list(model_shapes[target])}",
        )
    return replace(pair, bias_key=bias)


def _with_magnitude(
    pair: LoraPair,
    magnitude: str | None,
    shapes: Mapping[str, tuple[int, ...]],
    model_shapes: Mapping[str, tuple[int, ...]],
    use_dora: bool,
) -> LoraPair:
    """``pair`` with its DoRA magnitude (``use_dora``), or with the problem that blocks it."""
    if magnitude is None:
        if not use_dora:
            return pair
        return replace(
            pair, problem="use_dora is set, but the adapter has no lora_magnitude_vector for it"
        )
    if not use_dora:  # PEFT would ignore it, a DoRA-trained layer merged without it is wrong
        return replace(
            pair,
            problem=f"the adapter also holds {magnitude!r} for this layer (a DoRA magnitude), but "
            f"{CONFIG_NAME} does not set use_dora; set it if the adapter was trained with DoRA, "
            "or merge it with PEFT (PeftModel.from_pretrained(model, folder).merge_and_unload())",
        )
    weight = tuple(model_shapes[pair.base_key])
    if pair.layer in ("Linear", "Conv1D", "Embedding"):
        rows = weight[0] if pair.layer == "Linear" else weight[1]
        wanted: tuple[int, ...] = (rows,)
    else:
        wanted = (1, weight[0], *([1] * (len(weight) - 2)))
    got = tuple(shapes[magnitude])
    if got != wanted:
        return replace(
            pair,
            problem=f"its DoRA magnitude {magnitude!r} is {list(got)}, the {pair.layer}'s weight "
            f"{list(weight)} needs {list(wanted)}",
        )
    return replace(pair, magnitude_key=magnitude)


def _model_path(path: str, model_shapes: Mapping[str, Any], prefix: str) -> str:
    """The model's module path for the adapter's ``path``.

    As it is, or across the model's ``base_model_prefix`` (task model ↔ base model); ``path``
    when neither is in the model.
    """
    candidates = [path]
    if prefix:
        head = prefix + "."
        candidates.append(path[len(head) :] if path.startswith(head) else head + path)
    return next((c for c in candidates if f"{c}.weight" in model_shapes), path)


def _expected_shape(layer: str, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of ΔW for factors ``a`` and ``b`` of a ``layer`` (what the weight must be)."""
    if layer in ("Conv1D", "Embedding"):
        return (a[1], b[0])
    return (b[0], a[1], *a[2:])


def _factor_problem(
    layer: str, module: nn.Module, a: tuple[int, ...], b: tuple[int, ...]
) -> str | None:
    """Why factors of these shapes are no LoRA pair of this layer; None when they are."""
    conv = layer.startswith("Conv") and layer != "Conv1D"
    dims = 2 + int(layer[-2]) if conv else 2
    if len(a) != dims or len(b) != dims:
        return f"factors {list(a)} and {list(b)} are not {dims}-D, as a {layer}'s LoRA factors are"
    if conv and any(k != 1 for k in b[2:]):
        return f"lora_B {list(b)} has a kernel larger than 1, as PEFT never writes one"
    if conv and getattr(module, "groups", 1) != 1:
        return (
            f"the {layer} has groups={getattr(module, 'groups', 1)}: PEFT does not merge LoRA "
            "into a grouped convolution either"
        )
    if layer == "Conv3d" and tuple(a[2:4]) == (1, 1):
        return "PEFT's own merge cannot merge into a Conv3d whose kernel starts 1 x 1"
    return None


def _pair(
    path: str,
    a_key: str,
    b_key: str,
    shapes: Mapping[str, tuple[int, ...]],
    model_shapes: Mapping[str, tuple[int, ...]],
    module: nn.Module | None,
    config: Mapping[str, Any],
    rank: float | None,
    alpha: float | None,
) -> LoraPair:
    """One factor pair, checked against the model weight (and layer) it modifies."""
    base_key = f"{path}.weight"
    a_shape, b_shape = tuple(shapes[a_key]), tuple(shapes[b_key])
    layer = layer_kind(module) if module is not None else ""
    r = a_shape[0] if a_shape else 0
    problem: str | None = None
    try:
        pattern_r = _pattern(config.get("rank_pattern"), path, "rank_pattern")
        pattern_alpha = _pattern(config.get("alpha_pattern"), path, "alpha_pattern")
        expected_r = _number({"r": pattern_r}, "r", integer=True) if pattern_r is not None else rank
        pair_alpha = (
            _number({"lora_alpha": pattern_alpha}, "lora_alpha", integer=False)
            if pattern_alpha is not None
            else alpha
        )
    except ValueError as exc:
        expected_r, pair_alpha = rank, alpha
        problem = f"{CONFIG_NAME}: {exc}"
    model_shape = model_shapes.get(base_key)
    if module is None or model_shape is None:
        problem = problem or f"the model has no {base_key!r} for it to modify"
    elif layer not in LAYERS:
        problem = problem or (
            f"{path!r} is a {layer}: PEFT merges LoRA into Linear, Conv1D, Embedding and "
            "Conv1d/2d/3d layers, and so does this"
        )
    elif (why := _factor_problem(layer, module, a_shape, b_shape)) is not None:
        problem = problem or why
    elif b_shape[1] != r or r < 1:
        problem = (
            problem or f"lora_A {list(a_shape)} and lora_B {list(b_shape)} disagree on the rank"
        )
    elif expected_r is not None and r != expected_r:
        problem = problem or f"the factors have rank {r}, the config says r={expected_r:g}"
    else:
        wanted = _expected_shape(layer, a_shape, b_shape)
        if tuple(model_shape) != wanted:
            product = (b_shape[0], a_shape[1])
            stored = (
                f"; a {layer} stores it transposed as {list(wanted)}"
                if layer in ("Conv1D", "Embedding")
                else ""
            )
            problem = problem or (
                f"B @ A is {list(product)}{stored}; the model's weight is {list(model_shape)}"
                if len(wanted) == 2
                else f"the merged kernel is {list(wanted)}, the model's weight is "
                f"{list(model_shape)}"
            )
    use_rslora = config.get("use_rslora") is True
    scale = 0.0
    if pair_alpha is not None and r >= 1:
        scale = float(pair_alpha) / (math.sqrt(r) if use_rslora else r)
    return LoraPair(
        base_key=base_key,
        a_key=a_key,
        b_key=b_key,
        rank=r,
        alpha=float(pair_alpha) if pair_alpha is not None else math.nan,
        scale=scale,
        layer=layer,
        problem=problem,
    )
