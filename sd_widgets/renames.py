"""Key renaming rules: prefix, regex and exact pairs, applied in order.

Rules are small pure functions of a key (as timm's and safetensors' prefix cleaning are).
A rule set can be given as:

* a mapping: ``{"module.": ""}`` (a key ending in ``.`` or an empty key is a *prefix* rule),
  ``{"re:^fc\\.": "classifier."}`` (``re:`` marks a regex), ``{"fc.weight": "head.weight"}``
  (an exact pair);
* an iterable of :class:`Rename` objects or ``(old, new)`` pairs read the same way;
* a single :class:`Rename`;
* accepted suggestions: items of ``Comparison.suggest_renames()`` (exact pairs) and of
  ``Comparison.prefix_suggestions()`` (their rules), in an iterable, mixed freely with rules.

Each rule sees the output of the previous one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Union

__all__ = ["Rename", "RenamesLike", "apply_renames", "parse_renames"]

RuleKind = Literal["prefix", "regex", "exact"]


@dataclass(frozen=True)
class Rename:
    """One renaming rule for checkpoint keys."""

    kind: RuleKind
    old: str
    new: str

    def __post_init__(self) -> None:
        if self.kind not in ("prefix", "regex", "exact"):
            raise ValueError(f"unknown rename kind {self.kind!r}; use 'prefix', 'regex' or 'exact'")
        if self.kind == "regex":
            try:
                re.compile(self.old)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.old!r} in rename rule: {exc}") from None

    # constructors -------------------------------------------------------------------------
    @classmethod
    def strip_prefix(cls, prefix: str) -> Rename:
        """Remove ``prefix`` where a key starts with it (``module.``, ``_orig_mod.``, ``model.``)."""
        return cls("prefix", prefix, "")

    @classmethod
    def add_prefix(cls, prefix: str) -> Rename:
        """Put ``prefix`` in front of every key."""
        return cls("prefix", "", prefix)

    @classmethod
    def prefix(cls, old: str, new: str) -> Rename:
        """Replace a leading ``old`` with ``new`` (e.g. ``linear.`` → ``different_linear.``)."""
        return cls("prefix", old, new)

    @classmethod
    def regex(cls, pattern: str, replacement: str) -> Rename:
        """``re.sub(pattern, replacement, key)`` on every key."""
        return cls("regex", pattern, replacement)

    @classmethod
    def exact(cls, old: str, new: str) -> Rename:
        """Rename exactly one key."""
        return cls("exact", old, new)

    # behaviour ----------------------------------------------------------------------------
    def __call__(self, key: str) -> str:
        if self.kind == "exact":
            return self.new if key == self.old else key
        if self.kind == "prefix":
            return self.new + key[len(self.old) :] if key.startswith(self.old) else key
        return _compiled(self.old).sub(self.new, key)

    def to_spec(self) -> tuple[str, str]:
        """The ``(old, new)`` pair that :func:`parse_renames` reads back into this rule."""
        if self.kind == "regex":
            return ("re:" + self.old, self.new)
        if self.kind == "prefix" and not _looks_like_prefix(self.old, self.new):
            # a prefix without a trailing dot cannot be told from an exact pair: use regex
            return ("re:^" + re.escape(self.old), self.new.replace("\\", "\\\\"))
        return (self.old, self.new)

    def describe(self) -> str:
        if self.kind == "prefix":
            if not self.new:
                return f"strip prefix {self.old!r}"
            if not self.old:
                return f"add prefix {self.new!r}"
            return f"prefix {self.old!r} → {self.new!r}"
        if self.kind == "regex":
            return f"regex {self.old!r} → {self.new!r}"
        return f"{self.old!r} → {self.new!r}"

    def to_code(self, var: str = "k") -> str:
        """A Python expression applying this rule to the string variable ``var``."""
        if self.kind == "exact":
            return f"({self.new!r} if {var} == {self.old!r} else {var})"
        if self.kind == "prefix":
            if not self.old:
                return f"({self.new!r} + {var})"
            return (
                f"({self.new!r} + {var}[{len(self.old)}:] if {var}.startswith({self.old!r}) "
                f"else {var})"
            )
        return f"re.sub({self.old!r}, {self.new!r}, {var})"


_RE_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    pat = _RE_CACHE.get(pattern)
    if pat is None:
        pat = _RE_CACHE[pattern] = re.compile(pattern)
    return pat


def _looks_like_prefix(old: str, new: str) -> bool:
    return old == "" or (old.endswith(".") and (new == "" or new.endswith(".")))


def _rule_from_pair(old: str, new: str) -> Rename:
    if not isinstance(old, str) or not isinstance(new, str):
        raise TypeError(f"rename rules map strings to strings, got {old!r} → {new!r}")
    if old.startswith("re:"):
        return Rename.regex(old[3:], new)
    if _looks_like_prefix(old, new):
        return Rename.prefix(old, new)
    return Rename.exact(old, new)


RenamesLike = Union[  # noqa: UP007
    Rename, Mapping[str, str], Iterable[Rename | tuple[str, str]], None]


def parse_renames(renames: RenamesLike) -> tuple[Rename, ...]:
    """Normalise any accepted form of rename rules into a tuple of :class:`Rename`."""
    if renames is None:
        return ()
    if isinstance(renames, Rename):
        return (renames,)
    if isinstance(renames, Mapping):
        return tuple(_rule_from_pair(o, n) for o, n in renames.items())
    if isinstance(renames, str):
        raise TypeError(
            f"renames={renames!r} is a string; give a mapping such as {{{renames!r}: ''}} "
            "to strip a prefix, or a list of Rename rules"
        )
    rules: list[Rename] = []
    for item in renames:
        if isinstance(item, Rename):
            rules.append(item)
        elif isinstance(getattr(item, "rule", None), Rename):  # Comparison.prefix_suggestions()
            rules.append(item.rule)
        elif hasattr(item, "ckpt_key") and hasattr(item, "model_key"):  # suggest_renames()
            rules.append(Rename.exact(item.ckpt_key, item.model_key))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            rules.append(_rule_from_pair(item[0], item[1]))
        else:
            raise TypeError(f"cannot read {item!r} as a rename rule; use Rename.* or (old, new)")
    return tuple(rules)


def apply_renames(key: str, rules: Iterable[Rename]) -> str:
    """Apply ``rules`` in order to ``key``."""
    for rule in rules:
        key = rule(key)
    return key
