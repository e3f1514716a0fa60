"""PEFT LoRA adapters: recognise one, pair its factors with the weights they modify, merge.

An ``adapter_model.safetensors`` written by PEFT's ``save_pretrained`` holds, for every target
module, ``base_model.model.<path>.lora_A.weight`` (r × in) and ``...lora_B.weight`` (out × r),
and no base weights; ``adapter_config.json`` beside it holds ``r``, ``lora_alpha``,
``target_modules``, ``fan_in_fan_out`` (GPT-2's ``Conv1D`` stores its weight as in × out),
``use_rslora``, ``rank_pattern`` / ``alpha_pattern`` and ``use_dora``. :func:`detect_lora` reads the
checkpoint's key names and shapes and that file (never a tensor) and pairs every factor pair
with the model key it modifies; :func:`merge_lora` is the merge PEFT's ``merge_and_unload``
performs for a ``Linear``/``Conv1D`` layer:

    W + scale · (B @ A)  (transposed when fan_in_fan_out), scale = lora_alpha / r
    (lora_alpha / √r with use_rslora).

Everything read from the adapter (key names, the config's values) is untrusted: the config is
size-capped, type-checked, and a problem becomes a reason on the pair or a
:class:`~sd_widgets.errors.UnreadableCheckpointError` that says what was found.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UnreadableCheckpointError

CONFIG_NAME = "adapter_config.json"
#: how many target module names :meth:`LoraAdapter.describe` writes out
TARGETS_SHOWN = 8
#: an adapter_config.json is a few kB; anything far larger is not one
MAX_CONFIG_BYTES = 1 << 20

#: ``base_model.model.<path>.lora_A.weight`` (an adapter name segment tolerated before
#: ``weight``); ``lora_embedding_A``, ``lora_magnitude_vector`` and biases are recognised as
#: LoRA keys too, so they are named instead of ignored
_PEFT_PREFIX = "base_model.model."
_OTHER_LORA = re.compile(r"\.(lora_[A-Za-z_]+)(?:\.|$)")


def _factor_of(key: str) -> tuple[str, str] | None:
    """(module path, "A" or "B") of ``base_model.model.<path>.lora_A[.<adapter>].weight``."""
    if not key.startswith(_PEFT_PREFIX):
        return None
    head, _, tail = key.rpartition(".lora_")
    parts = tail.split(".")
    if parts[0] not in ("A", "B") or parts[-1] != "weight" or len(parts) not in (2, 3):
        return None
    path = head[len(_PEFT_PREFIX) :]
    return (path, parts[0]) if path else None


def merge_lora(
    weight: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: float,
    fan_in_fan_out: bool,
) -> torch.Tensor:
    """``weight + scale · (B @ A)`` (``(B @ A).T`` when fan_in_fan_out), a new tensor.

    As PEFT's LoRA ``Linear.get_delta_weight`` and ``merge``: the factors in the weight's dtype
    (in float32 for a float16/bfloat16 weight, as PEFT keeps the adapter in float32 and computes
    there on the CPU; the delta cast back), transposed, times scale, added.
    """
    dtype = weight.dtype
    low = dtype in (torch.float16, torch.bfloat16)
    compute = torch.float32 if low else dtype
    a, b = lora_a.detach().to(compute), lora_b.detach().to(compute)
    delta = b @ a
    if fan_in_fan_out:
        delta = delta.T
    delta = delta * scale
    if low:
        delta = delta.to(dtype)
    return weight.detach() + delta


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
    fan_in_fan_out: bool
    #: why this pair cannot be merged into the model; None when it can
    problem: str | None = None


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
    #: why nothing can be merged (no config, DoRA, ...); None when pairs can
    problem: str | None = None

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
            f"weights (W + lora_alpha/{'√r' if self.use_rslora else 'r'} · B @ A)"
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
        return f"peft_type is {peft_type!r}, not 'LORA'"
    if config.get("use_dora"):
        return "use_dora is set: DoRA rescales each merged column by a magnitude vector"
    if config.get("lora_bias"):
        return "lora_bias is set: the adapter also changes the layers' biases"
    return None


def detect_lora(
    shapes: Mapping[str, tuple[int, ...]],
    model_shapes: Mapping[str, tuple[int, ...]],
    source_path: str | os.PathLike[str] | None,
    *,
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
    pairs = []
    for path, ab in factors.items():
        if "A" not in ab or "B" not in ab:
            other.extend(ab.values())
            continue
        where = _model_path(path, model_shapes, base_model_prefix)
        pairs.append(_pair(where, ab["A"], ab["B"], shapes, model_shapes, config, rank, alpha))
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
    )


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


def _pair(
    path: str,
    a_key: str,
    b_key: str,
    shapes: Mapping[str, tuple[int, ...]],
    model_shapes: Mapping[str, tuple[int, ...]],
    config: Mapping[str, Any],
    rank: float | None,
    alpha: float | None,
) -> LoraPair:
    """One factor pair, checked against the model weight it modifies."""
    base_key = f"{path}.weight"
    a_shape, b_shape = tuple(shapes[a_key]), tuple(shapes[b_key])
    fan_in_fan_out = config.get("fan_in_fan_out") is True
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
    if len(a_shape) != 2 or len(b_shape) != 2:
        problem = problem or (
            f"factors {list(a_shape)} and {list(b_shape)} are not 2-D: only Linear and Conv1D "
            "LoRA layers are merged"
        )
    elif b_shape[1] != r or r < 1:
        problem = (
            problem or f"lora_A {list(a_shape)} and lora_B {list(b_shape)} disagree on the rank"
        )
    elif expected_r is not None and r != expected_r:
        problem = problem or f"the factors have rank {r}, the config says r={expected_r:g}"
    elif model_shape is None:
        problem = problem or f"the model has no {base_key!r} for it to modify"
    else:
        product = (b_shape[0], a_shape[1])
        wanted = product[::-1] if fan_in_fan_out else product
        if tuple(model_shape) != wanted:
            problem = problem or (
                f"B @ A is {list(product)}"
                + (" (transposed: fan_in_fan_out)" if fan_in_fan_out else "")
                + f", the model's weight is {list(model_shape)}"
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
        fan_in_fan_out=fan_in_fan_out,
        problem=problem,
    )
