"""What a comparison's problems say at a glance, in text.

* :func:`config_mismatch`: when every shape mismatch differs by one size ratio (every hidden
  width 768 vs 384, every intermediate 3072 vs 1536), the model was most likely built with a
  different config than the checkpoint was trained with — one sentence instead of 150 rows.
* :func:`collapse_keys`: repeated layers written once, as transformers' load report writes
  them: ``encoder.layer.{0..11}.attention.self.query.weight``.

Works on rows (anything with ``key``, ``status``, ``module``, ``ckpt_shape``,
``model_shape``) and plain key lists; imports nothing of the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

from ..statuses import Status

T = TypeVar("T")

#: a shape mismatch this narrow is one layer's own business (a classifier head), not a config
MIN_MODULES = 3


@dataclass(frozen=True)
class ConfigMismatch:
    """Every shape mismatch of a comparison differs by the same size ratio."""

    #: checkpoint size / model size, the same for every differing dimension
    ratio: Fraction
    #: (checkpoint size, model size) pairs, in first-seen order: ((768, 384), (3072, 1536))
    sizes: tuple[tuple[int, int], ...]
    #: the shape-mismatched keys
    keys: tuple[str, ...]
    #: model config fields holding the model's sizes: (name, model value, checkpoint value)
    config_fields: tuple[tuple[str, int, int], ...] = ()

    @property
    def sentence(self) -> str:
        """One sentence: the sizes, the ratio and the likely cause."""
        n = len(self.keys)
        sizes = ", ".join(f"{c} vs {m}" for c, m in self.sizes[:6])
        if len(self.sizes) > 6:
            sizes += f" and {len(self.sizes) - 6} more"
        ratio = self.ratio
        factor = (
            f"{ratio.numerator}"
            if ratio.denominator == 1
            else f"{ratio.numerator}/{ratio.denominator}"
        )
        text = (
            f"All {n:,} shape mismatches differ by one factor (checkpoint = {factor} × model: "
            f"{sizes}): built with a different config?"
        )
        if self.config_fields:
            fields = ", ".join(f"{name}={m} (checkpoint: {c})" for name, m, c in self.config_fields)
            text += f" The model's config has {fields}."
        return text

    def __str__(self) -> str:
        return self.sentence


def config_mismatch(
    rows: Iterable[Any], config: Mapping[str, Any] | None = None
) -> ConfigMismatch | None:
    """The one size ratio behind every shape mismatch, or None.

    None unless there are shape mismatches in at least :data:`MIN_MODULES` modules, each
    checkpoint/model shape pair has the same number of dimensions, and every dimension that
    differs (in every row) has the same ratio. ``config`` (e.g. ``model.config.to_dict()`` of
    a transformers model) names the integer fields that hold the model's sizes (not a size
    that tensors which match have too).
    """
    keys: list[str] = []
    modules: set[str] = set()
    fitting: set[int] = set()  # sizes of the tensors that fit: no config field to blame
    sizes: dict[tuple[int, int], None] = {}
    ratio: Fraction | None = None
    for r in rows:
        if r.status != Status.SHAPE_MISMATCH:
            if r.status == Status.MATCH and r.model_shape:
                fitting.update(r.model_shape)
            continue
        a, b = r.ckpt_shape, r.model_shape
        if a is None or b is None or len(a) != len(b):
            return None
        for c, m in zip(a, b, strict=True):
            if c == m:
                continue
            if c <= 0 or m <= 0:
                return None
            q = Fraction(int(c), int(m))
            if ratio is None:
                ratio = q
            elif q != ratio:
                return None
            sizes[(int(c), int(m))] = None
        keys.append(r.key)
        modules.add(r.module)
    if ratio is None or len(modules) < MIN_MODULES:
        return None
    fields: list[tuple[str, int, int]] = []
    for name, value in (config or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or value in fitting:
            continue
        for c, m in sizes:
            if value == m:
                fields.append((str(name), m, c))
                break
    return ConfigMismatch(ratio, tuple(sizes), tuple(keys), tuple(fields))


def model_config(model: Any) -> dict[str, Any]:
    """A transformers model's config as a dict (``{}`` for any other model)."""
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    if not callable(to_dict):
        return {}
    try:
        d = to_dict()
    except Exception:  # a config that cannot describe itself names nothing
        return {}
    return d if isinstance(d, dict) else {}


def _parts(key: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``layer.3.w`` → (("layer", "{}", "w"), (3,)): the key with its numbers taken out."""
    skeleton: list[str] = []
    numbers: list[int] = []
    for p in key.split("."):
        if p.isdigit() and p.isascii() and (p == "0" or not p.startswith("0")):
            skeleton.append("{}")
            numbers.append(int(p))
        else:
            skeleton.append(p)
    return tuple(skeleton), tuple(numbers)


def _span(values: Sequence[int]) -> str:
    vs = sorted(set(values))
    if len(vs) > 2 and vs[-1] - vs[0] == len(vs) - 1:
        return f"{{{vs[0]}..{vs[-1]}}}"
    return "{" + ",".join(map(str, vs)) + "}"


def collapse_keys(keys: Iterable[str]) -> list[str]:
    """Keys with repeated layers written once, in first-seen order.

    ``encoder.layer.0.attention.self.query.weight`` … ``encoder.layer.11.…`` becomes
    ``encoder.layer.{0..11}.attention.self.query.weight`` (gaps as ``{0,2,5}``). See
    :func:`collapse_groups`.
    """
    return [pattern for pattern, _ in collapse_groups(keys, str)]


def collapse_groups(
    items: Iterable[T],
    key: Callable[[T], str],
    same: Callable[[T], Hashable] = lambda _item: None,
) -> list[tuple[str, list[T]]]:
    """``items`` grouped under collapsed keys: ``(pattern, members)``, in first-seen order.

    Items are grouped by ``key(item)`` with its numbers taken out, and by ``same(item)`` (what
    else must be equal, e.g. a row's status and shapes). A group collapses when its numbers
    form the full grid of the values at each position (every layer has the key), else each of
    its items stands alone under its own key. Linear in the number of items.
    """
    groups: dict[tuple[tuple[str, ...], Hashable], list[tuple[T, str, tuple[int, ...]]]] = {}
    for item in items:
        k = key(item)
        skeleton, numbers = _parts(k)
        groups.setdefault((skeleton, same(item)), []).append((item, k, numbers))
    out: list[tuple[str, list[T]]] = []
    for (skeleton, _), members in groups.items():
        if len(members) == 1:
            out.append((members[0][1], [members[0][0]]))
            continue
        columns = list(zip(*(n for _, _, n in members), strict=True))
        grid = 1
        for col in columns:
            grid *= len(set(col))
        if grid != len({n for _, _, n in members}) or grid != len(members):
            out.extend((k, [item]) for item, k, _ in members)
            continue
        filled = iter(_span(col) if len(set(col)) > 1 else str(col[0]) for col in columns)
        pattern = ".".join(next(filled) if p == "{}" else p for p in skeleton)
        out.append((pattern, [item for item, _, _ in members]))
    return out
