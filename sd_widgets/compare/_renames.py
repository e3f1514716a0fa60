r"""Key renaming rules (prefix, regex, exact pairs, leaf-name tables) and their discovery.

Rules are small pure functions of a key (as timm's and safetensors' prefix cleaning are).
A rule set can be given as:

* a mapping: ``{"module.": ""}`` (a key ending in ``.`` or an empty key is a *prefix* rule),
  ``{"re:^fc\.": "classifier."}`` (``re:`` marks a regex), ``{"fc.weight": "head.weight"}``
  (an exact pair), ``{"leaf:gamma,beta": "weight,bias"}`` (``leaf:`` renames the last name of
  every key by a table, as TensorFlow-style ``LayerNorm.gamma`` → ``LayerNorm.weight`` needs);
* an iterable of :class:`Rename` objects or ``(old, new)`` pairs read the same way;
* a single :class:`Rename`, or a single suggestion;
* accepted suggestions: items of ``Comparison.suggest_renames()`` (exact pairs) and of
  ``Comparison.prefix_suggestions()`` (their rules), in an iterable, mixed freely with rules.

Each rule sees the output of the previous one.

Discovery (:func:`discover_rules`, :func:`pair_keys`) works on plain ``name → shape`` mappings
and is near-linear: known conventions are checked first, in one pass each, and when one rule
explains every key nothing else runs; otherwise candidate rules are voted for through a hash map
from a key's dotted suffix to the keys that end with it, and pairs are scored only inside
buckets that can match (same leaf name and shape), with rapidfuzz for string similarity.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import eq
from typing import Literal, Union

import regex  # type: ignore[import-untyped]

from ..errors import RenameTimeoutError
from ..units import gc_paused

RuleKind = Literal["prefix", "regex", "exact", "leaf"]


@dataclass(frozen=True)
class Rename:
    """One renaming rule for checkpoint keys."""

    kind: RuleKind
    old: str
    new: str

    def __post_init__(self) -> None:
        if self.kind not in ("prefix", "regex", "exact", "leaf"):
            raise ValueError(
                f"unknown rename kind {self.kind!r}; use 'prefix', 'regex', 'exact' or 'leaf'"
            )
        if self.kind == "leaf":
            olds, news = self.old.split(","), self.new.split(",")
            if len(olds) != len(news) or not all(_is_leaf_name(n) for n in olds + news):
                raise ValueError(
                    f"a leaf rename maps comma-separated leaf names to as many new names "
                    f"(e.g. 'gamma,beta' → 'weight,bias'), got {self.old!r} → {self.new!r}"
                )
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

    @classmethod
    def leaves(cls, mapping: Mapping[str, str]) -> Rename:
        """Rename the last name of every key by a table.

        E.g. TensorFlow-style ``{"gamma": "weight", "beta": "bias"}``:
        ``encoder.LayerNorm.gamma`` → ``encoder.LayerNorm.weight``. One rule, however many leaf
        names it renames.
        """
        return cls("leaf", ",".join(mapping), ",".join(mapping.values()))

    @property
    def leaf_table(self) -> dict[str, str]:
        """For a ``leaf`` rule: old leaf name → new leaf name (empty for other kinds)."""
        if self.kind != "leaf":
            return {}
        return _leaf_table(self.old, self.new)

    # behaviour ----------------------------------------------------------------------------
    def __call__(self, key: str) -> str:
        """The key after this rule (unchanged when the rule does not apply to it)."""
        if self.kind == "exact":
            return self.new if key == self.old else key
        if self.kind == "prefix":
            return self.new + key[len(self.old) :] if key.startswith(self.old) else key
        if self.kind == "leaf":
            head, dot, leaf = key.rpartition(".")
            new = _leaf_table(self.old, self.new).get(leaf)
            return key if new is None else head + dot + new
        return _regex_sub(self, key)

    def to_spec(self) -> tuple[str, str]:
        """The ``(old, new)`` pair that :func:`parse_renames` reads back into this rule."""
        if self.kind == "regex":
            return ("re:" + self.old, self.new)
        if self.kind == "leaf":
            return ("leaf:" + self.old, self.new)
        if self.kind == "prefix" and not _looks_like_prefix(self.old, self.new):
            # a prefix without a trailing dot cannot be told from an exact pair: use regex
            return ("re:^" + re.escape(self.old), self.new.replace("\\", "\\\\"))
        return (self.old, self.new)

    def describe(self) -> str:
        """What the rule does, in words: ``strip prefix 'module.'``, ``regex … → …``."""
        if self.kind == "prefix":
            if not self.new:
                return f"strip prefix {self.old!r}"
            if not self.old:
                return f"add prefix {self.new!r}"
            return f"prefix {self.old!r} → {self.new!r}"
        if self.kind == "regex":
            return f"regex {self.old!r} → {self.new!r}"
        if self.kind == "leaf":
            pairs = ", ".join(f".{o} → .{n}" for o, n in self.leaf_table.items())
            return f"rename leaf names {pairs}"
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
        if self.kind == "leaf":
            table = self.leaf_table
            return f"(lambda h, d, n: h + d + {table!r}.get(n, n))(*{var}.rpartition('.'))"
        return f"re.sub({self.old!r}, {self.new!r}, {var})"


#: one key is matched by one regex rule in at most this many seconds ...
MATCH_TIMEOUT = 0.25
#: ... and the matches of one rule slower than a millisecond add up to at most this many
SLOW_MATCH_BUDGET = 2.0


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str]:
    """``pattern`` compiled by the ``regex`` package (Python's ``re`` syntax, VERSION0)."""
    return regex.compile(pattern)


def _regex_sub(rule: Rename, key: str) -> str:
    """``re.sub(rule.old, rule.new, key)``, bounded in time.

    Rule patterns are the user's, keys are the file's: a pattern such as ``(a|aa)+$`` takes
    exponential time on a crafted key under a backtracking engine. Each match runs under
    :data:`MATCH_TIMEOUT` (the ``regex`` package's ``timeout=``), and a rule whose slow
    matches add up to :data:`SLOW_MATCH_BUDGET` is stopped too, so applying one rule to any
    number of keys is bounded.
    """
    spent = rule.__dict__.get("_slow_seconds", 0.0)
    start = time.perf_counter()
    try:
        out: str = _compiled(rule.old).sub(
            rule.new, key, timeout=max(min(MATCH_TIMEOUT, SLOW_MATCH_BUDGET - spent), 0.001)
        )
    except TimeoutError:
        raise RenameTimeoutError(
            f"the rename rule {rule.old!r} took too long on the key {key[:200]!r} "
            f"(over {min(MATCH_TIMEOUT, SLOW_MATCH_BUDGET):g} s on one key, or "
            f"{SLOW_MATCH_BUDGET:g} s on slow keys in all): its pattern backtracks "
            "exponentially on keys like this one (nested repetition such as '(a+)+'). Nothing "
            "was renamed by it; simplify the pattern (e.g. 'a+' for '(a+)+') or use a prefix "
            "rule.",
            rule=rule.old,
            key=key,
        ) from None
    elapsed = time.perf_counter() - start
    if elapsed > 0.001:
        object.__setattr__(rule, "_slow_seconds", spent + elapsed)
    return out


def _is_leaf_name(name: str) -> bool:
    return bool(name) and "." not in name and "," not in name


_LEAF_CACHE: dict[tuple[str, str], dict[str, str]] = {}


def _leaf_table(old: str, new: str) -> dict[str, str]:
    table = _LEAF_CACHE.get((old, new))
    if table is None:
        table = _LEAF_CACHE[(old, new)] = dict(zip(old.split(","), new.split(","), strict=True))
    return table


def _looks_like_prefix(old: str, new: str) -> bool:
    return old == "" or (old.endswith(".") and (new == "" or new.endswith(".")))


def _rule_from_pair(old: str, new: str) -> Rename:
    if not isinstance(old, str) or not isinstance(new, str):
        raise TypeError(f"rename rules map strings to strings, got {old!r} → {new!r}")
    if old.startswith("re:"):
        return Rename.regex(old[3:], new)
    if old.startswith("leaf:"):
        return Rename("leaf", old[5:], new)
    if _looks_like_prefix(old, new):
        return Rename.prefix(old, new)
    return Rename.exact(old, new)


RenamesLike = Union[  # noqa: UP007
    Rename, Mapping[str, str], Iterable[Rename | tuple[str, str]], None
]


def _from_suggestion(item: object) -> Rename | None:
    """The rule of a suggestion item, or None for anything else.

    A ``prefix_suggestions()`` item gives its rule, a ``suggest_renames()`` item its exact pair.
    """
    rule = getattr(item, "rule", None)
    if isinstance(rule, Rename):
        return rule
    ckpt_key, model_key = getattr(item, "ckpt_key", None), getattr(item, "model_key", None)
    if isinstance(ckpt_key, str) and isinstance(model_key, str):
        return Rename.exact(ckpt_key, model_key)
    return None


def parse_renames(renames: RenamesLike) -> tuple[Rename, ...]:
    """Normalise any accepted form of rename rules into a tuple of :class:`Rename`."""
    if renames is None:
        return ()
    if isinstance(renames, Rename):
        return (renames,)
    single = _from_suggestion(renames)  # one item of prefix_suggestions()/suggest_renames()
    if single is not None:
        return (single,)
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
        elif (rule := _from_suggestion(item)) is not None:
            rules.append(rule)
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


# --------------------------------------------------------------------------------------------
# discovery: which rules would pair unexpected checkpoint names with missing model keys
# --------------------------------------------------------------------------------------------

Shape = tuple[int, ...]

#: wrapper prefixes, named for what adds them
WRAPPER_PREFIXES: dict[str, str] = {
    "module.": "DataParallel / DistributedDataParallel",
    "_orig_mod.": "torch.compile",
}
#: wrapper segments that appear *inside* keys (a wrapped submodule), named for what adds them
WRAPPER_SEGMENTS: dict[str, tuple[str, str]] = {
    "_fsdp_wrapped_module.": ("fsdp", "FSDP1, FullyShardedDataParallel"),
    "_checkpoint_wrapped_module.": ("checkpoint_wrapper", "activation checkpointing"),
    "_orig_mod.": ("compiled_submodule", "torch.compile on a submodule"),
    "module.": ("dp_submodule", "DataParallel / DistributedDataParallel on a submodule"),
}
_SEGMENT_ALTERNATIVES = 32  # distinct wrapped-module paths one inserting rule may name
#: what a Lightning checkpoint's ``model.`` prefix is (only said when the file looks Lightning)
LIGHTNING_ORIGIN = "PyTorch Lightning: the LightningModule's 'model' attribute"
#: TensorFlow-style leaf names and their PyTorch names (norm layers, BatchNorm statistics)
TF_LEAF_NAMES: dict[str, str] = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
#: Hugging Face ``base_model_prefix`` values of common architectures (named only as a hint
#: when the model itself is not a transformers model)
HF_BASE_PREFIXES: tuple[str, ...] = (
    "bert",
    "roberta",
    "distilbert",
    "albert",
    "electra",
    "deberta",
    "xlm_roberta",
    "transformer",
    "model",
    "gpt_neox",
    "vit",
    "swin",
    "wav2vec2",
    "clip",
)

_VOTE_SAMPLE = 4000  # unexpected keys that vote for candidate rules (evenly spaced)
_BUCKET_CAP = 4  # a longest common suffix shared by more keys than this says nothing
_VOTED_RULES = 12  # voted candidates checked exactly
_CELL_CAP = 250_000  # string comparisons per (leaf, shape) bucket before it is split further
#: a suggested pair's name similarity must beat the next candidate's by this much (about two
#: characters of a 40-character key), or the pair is a guess and is not offered
_AMBIGUOUS = 0.05
_DIGITS = re.compile(r"\d+")
_LAYER_NUMBERS = re.compile(r"(?:^|\.)(\d+)(?=\.|$)")  # the numbered segments: layers.3.


@dataclass(frozen=True)
class RuleContext:
    """What is known about where the keys came from, to name a rule for what it is."""

    #: the checkpoint is a Lightning-style dict (``state_dict`` beside
    #: ``pytorch-lightning_version`` or ``epoch``/``global_step``)
    lightning: bool = False
    #: the model's transformers ``base_model_prefix`` ("" when it has none)
    base_model_prefix: str = ""
    #: the model holds its base model under ``base_model_prefix`` (a task model with a head)
    has_base_submodule: bool = False
    #: the model's class name
    model_class: str = ""


@dataclass(frozen=True)
class RuleCandidate:
    """A rule and what it would do to the current comparison."""

    rule: Rename
    #: unexpected names the rule pairs with missing model keys
    pairs: tuple[tuple[str, str], ...]
    #: how many of those pairs have equal shapes
    same_shape: int
    #: names that pair with a model key now and would no longer
    breaks: int
    #: what added the prefix: "ddp", "compile", "compile+ddp", "lightning", "hf_base",
    #: "tf_names" — or None when the rule is only described
    convention: str | None
    reason: str

    @property
    def fixes(self) -> int:
        return len(self.pairs)

    @property
    def score(self) -> float:
        return self.same_shape + 0.5 * (self.fixes - self.same_shape) - self.breaks


class KeySets:
    """The names discovery works on.

    Unexpected checkpoint names and missing model keys (with shapes), and the checkpoint names
    that pair with a model key now.

    Parameters
    ----------
    unexpected
        Current checkpoint name (after the rules already in force) → shape.
    missing
        Model key absent from the checkpoint → shape.
    paired
        Current checkpoint names that pair with a model key.
    """

    def __init__(
        self, unexpected: Mapping[str, Shape], missing: Mapping[str, Shape], paired: Iterable[str]
    ) -> None:
        self.unexpected = dict(unexpected)
        self.missing = dict(missing)
        self.paired = list(paired)
        self._ukeys = list(self.unexpected)
        self._names = set(self._ukeys)
        self._names.update(self.paired)

    # exact evaluation ---------------------------------------------------------------------
    def evaluate_prefix(self, old: str, new: str) -> tuple[list[tuple[str, str]], int, int] | None:
        """(pairs, same_shape, breaks) for the prefix rule ``old`` → ``new``.

        None when it pairs nothing or would map a name onto one that stays (a collision).
        """
        lp = len(old)
        missing, names = self.missing, self._names
        pairs: list[tuple[str, str]] = []
        same = 0
        keys = self._ukeys if not old else [k for k in self._ukeys if k.startswith(old)]
        for u in keys:
            t = new + u[lp:]
            shape = missing.get(t)
            if shape is None:
                if t in names and not t.startswith(old):
                    return None
                continue
            pairs.append((u, t))
            same += shape == self.unexpected[u]
        if not pairs:
            return None
        breaks = 0
        for c in self.paired if not old else [c for c in self.paired if c.startswith(old)]:
            t = new + c[lp:]
            if t not in missing:
                if t in names and not t.startswith(old):
                    return None
                breaks += 1
        return pairs, same, breaks

    def evaluate(self, rule: Rename) -> tuple[list[tuple[str, str]], int, int] | None:
        """(pairs, same_shape, breaks) for any rule (one call of the rule per name)."""
        if rule.kind == "prefix":
            return self.evaluate_prefix(rule.old, rule.new)
        missing, names = self.missing, self._names
        pairs: list[tuple[str, str]] = []
        same = 0
        for u in self._ukeys:
            t = rule(u)
            if t == u:
                continue
            shape = missing.get(t)
            if shape is None:
                if t in names and rule(t) == t:
                    return None
                continue
            pairs.append((u, t))
            same += shape == self.unexpected[u]
        if not pairs:
            return None
        breaks = sum(1 for c in self.paired if rule(c) != c and rule(c) not in missing)
        return pairs, same, breaks

    # candidates ---------------------------------------------------------------------------
    def voted_prefixes(
        self, unexplained: Iterable[str], open_keys: Iterable[str], limit: int = _VOTED_RULES
    ) -> list[tuple[str, str]]:
        """Prefix rules ``(old, new)`` voted for by unexplained names.

        Each name pairs with the missing keys sharing its longest dotted suffix (a hash map
        from suffix to keys, so one pass over each side), when few keys share it.
        """
        index: dict[str, list[str]] = {}
        for m in open_keys:
            index.setdefault(m, []).append("")
            i = m.find(".")
            while i >= 0:
                index.setdefault(m[i + 1 :], []).append(m[: i + 1])
                i = m.find(".", i + 1)
        if not index:
            return []
        names = list(unexplained)
        step = max(1, len(names) // _VOTE_SAMPLE)
        votes: dict[tuple[str, str], int] = {}
        for u in names[::step]:
            old, s, j = "", u, -1
            while True:
                news = index.get(s)
                if news is not None:
                    if len(news) <= _BUCKET_CAP:
                        for new in news:
                            votes[(old, new)] = votes.get((old, new), 0) + 1
                    break
                j = u.find(".", j + 1)
                if j < 0:
                    break
                old, s = u[: j + 1], u[j + 1 :]
        return sorted(votes, key=lambda r: -votes[r])[:limit]

    def tf_leaf_rule(self) -> Rename | None:
        """One leaf rule for the TensorFlow-style names present (``gamma``/``beta``, ...)."""
        found = {u.rpartition(".")[2] for u in self._ukeys} & set(TF_LEAF_NAMES)
        if not found:
            return None
        return Rename.leaves({o: n for o, n in TF_LEAF_NAMES.items() if o in found})


def _wrapper_origin(prefix: str) -> tuple[str, str] | None:
    """``_orig_mod.module.`` → ("compile+ddp", "torch.compile + DataParallel / ...")."""
    parts: list[str] = []
    names: list[str] = []
    rest = prefix
    while rest:
        for p, origin in WRAPPER_PREFIXES.items():
            if rest.startswith(p):
                parts.append("ddp" if p == "module." else "compile")
                names.append(origin)
                rest = rest[len(p) :]
                break
        else:
            return None
    return ("+".join(parts), " + ".join(names)) if parts else None


# wrapper segments inside keys ----------------------------------------------------------------
_STRIP_HEAD = "(?<![^.])(?:"  # a segment at the start of a key or right after a dot


def _needle(seg: str) -> str:
    """What marks ``seg`` in a key.

    The FSDP/checkpoint wrapper names anywhere (no module is called that); ``module.`` and
    ``_orig_mod.`` only after a dot (at the start they are the whole-model prefixes).
    """
    return seg if seg.startswith("_") and seg != "_orig_mod." else "." + seg


def _segments_in(keys: Iterable[str]) -> list[str]:
    """The wrapper segments inside some of ``keys`` (one pass, stops when all are found)."""
    pending = [(seg, _needle(seg)) for seg in WRAPPER_SEGMENTS]
    found: set[str] = set()
    for k in keys:
        for seg, needle in pending:
            if needle in k:
                found.add(seg)
        if found.issuperset(WRAPPER_SEGMENTS):
            break
        if found and len(found) + len(pending) > len(WRAPPER_SEGMENTS):
            pending = [(s, n) for s, n in pending if s not in found]
    return [seg for seg in WRAPPER_SEGMENTS if seg in found]


def _strip_pattern(segments: Iterable[str]) -> str:
    return _STRIP_HEAD + "|".join(re.escape(s[:-1]) for s in segments) + r")\."


def _split_segments(text: str) -> list[str] | None:
    """``_orig_mod.module.`` → its wrapper segments in order; None if it is not made of them."""
    out: list[str] = []
    while text:
        seg = next((s for s in WRAPPER_SEGMENTS if text.startswith(s)), None)
        if seg is None:
            return None
        out.append(seg)
        text = text[len(seg) :]
    return out


def _segment_origin(segments: Iterable[str]) -> tuple[str, str]:
    """(convention, what adds them) of wrapper segments, e.g. ("fsdp+checkpoint_wrapper", ...)."""
    named = [WRAPPER_SEGMENTS[s] for s in dict.fromkeys(segments)]
    return "+".join(c for c, _ in named), " + ".join(w for _, w in named)


def segment_rule_origin(rule: Rename) -> tuple[list[str], bool] | None:
    """(segments, True when the rule inserts them) for a wrapper-segment rule, else None."""
    if rule.kind != "regex":
        return None
    if rule.new == "" and rule.old.startswith(_STRIP_HEAD) and rule.old.endswith(r")\."):
        names = rule.old[len(_STRIP_HEAD) : -3].replace("\\", "").split("|")
        segs = [n + "." for n in names]
        return (segs, False) if all(s in WRAPPER_SEGMENTS for s in segs) else None
    if rule.old.startswith("^(") and rule.new.startswith("\\1"):
        inserted = _split_segments(rule.new[2:])
        return (inserted, True) if inserted else None
    return None


def _parent_pattern(parent: str) -> str:
    r"""``layers.0.`` → ``layers\.\d+\.``: a module path with its layer numbers generalised."""
    return r"\.".join(r"\d+" if p.isdigit() else re.escape(p) for p in parent.split("."))


def _readable_parents(pattern: str) -> str:
    r"""``^(encoder\.layers\.\d+\.)`` → ``'encoder.layers.<n>.'`` (for descriptions)."""
    inner = pattern[2:-1]
    if inner.startswith("(?:") and inner.endswith(")"):
        inner = inner[3:-1]
    parts = [p.replace("\\d+", "<n>").replace("\\", "") for p in inner.split("|")]
    shown = ", ".join(repr(p) for p in parts[:3])
    return shown + (f" and {len(parts) - 3} more" if len(parts) > 3 else "")


def segment_rules(keys: KeySets) -> list[Rename]:
    """Rules for wrapper segments inside keys (a wrapped *submodule*), both directions.

    FSDP1's ``_fsdp_wrapped_module.``, activation checkpointing's
    ``_checkpoint_wrapped_module.``, ``_orig_mod.`` of a compiled submodule and ``module.`` of a
    DataParallel submodule stand in the middle of keys, where no prefix rule reaches. In the
    checkpoint: one regex removes every such segment wherever it stands (any nesting). In the
    model: one regex inserts them after the submodule paths that hold them (layer numbers
    generalised), when every wrapped key has them at one place. One pass over each side.
    """
    out: list[Rename] = []
    in_ckpt = _segments_in(keys.unexpected)
    if in_ckpt:
        # segments at the start of a key go too (FSDP also wraps the root)
        out.append(Rename.regex(_strip_pattern(in_ckpt), ""))
    in_model = _segments_in(keys.missing)
    if in_model:
        rule = _insert_rule(keys, in_model)
        if rule is not None:
            out.append(rule)
    return out


def _insert_rule(keys: KeySets, segments: list[str]) -> Rename | None:
    """One regex inserting wrapper segments after submodule paths, from the missing keys."""
    strip = re.compile(_strip_pattern(segments))
    dotted = [_needle(s) for s in segments]
    votes: dict[str, dict[str, int]] = {}  # inserted text -> parent path -> count
    for m in keys.missing:
        if not any(d in m for d in dotted):
            continue
        if strip.sub("", m) not in keys.unexpected:
            continue
        last = None
        for last in strip.finditer(m):  # noqa: B007 - the last match is wanted
            pass
        if last is None:
            continue
        wrapped = m[: last.end()]
        parent = strip.sub("", wrapped)
        inserted = wrapped[len(parent) :]
        if not parent or parent + inserted != wrapped:
            continue  # segments at more than one place: not one insertion
        by_parent = votes.setdefault(inserted, {})
        by_parent[parent] = by_parent.get(parent, 0) + 1
    if not votes:
        return None
    inserted = max(votes, key=lambda t: sum(votes[t].values()))
    exact = sorted(votes[inserted], key=len, reverse=True)
    general = sorted({_parent_pattern(p) for p in exact}, key=len, reverse=True)
    for alternatives in (general, [re.escape(p) for p in exact]):
        if len(alternatives) > _SEGMENT_ALTERNATIVES:
            continue
        body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
        rule = Rename.regex(f"^({body})", "\\1" + inserted)
        result = keys.evaluate(rule)
        if result is not None and not result[2]:
            return rule
    return None


def name_rule(rule: Rename, ctx: RuleContext | None = None) -> tuple[str | None, str]:
    """(convention, description) of a rule.

    Named for what it is when that is known — DDP's ``module.``, torch.compile's ``_orig_mod.``,
    Lightning's ``model.`` (only for a Lightning-style checkpoint), a Hugging Face base-model
    prefix (from the model's ``base_model_prefix``), TensorFlow-style leaf names — else
    described by what it does.
    """
    ctx = ctx or RuleContext()
    segments = segment_rule_origin(rule)
    if segments is not None:
        segs, inserts = segments
        convention, origin = _segment_origin(segs)
        names = ", ".join(repr(s) for s in segs)
        if inserts:
            return convention, (
                f"insert {rule.new[2:]!r} after {_readable_parents(rule.old)} "
                f"(the model's submodule is wrapped: {origin})"
            )
        return convention, f"remove wrapper segment(s) {names} inside keys ({origin})"
    if rule.kind == "leaf":
        if set(rule.leaf_table.items()) <= set(TF_LEAF_NAMES.items()):
            return "tf_names", f"{rule.describe()} (TensorFlow-style names)"
        return None, rule.describe()
    if rule.kind != "prefix":
        return None, rule.describe()
    old, new = rule.old, rule.new
    bp = ctx.base_model_prefix + "." if ctx.base_model_prefix else None
    model = ctx.model_class or "the model"
    if not new:
        wrapper = _wrapper_origin(old)
        if wrapper:
            return wrapper[0], f"strip {old!r} ({wrapper[1]})"
        if old == "model." and ctx.lightning:
            return "lightning", f"strip 'model.' ({LIGHTNING_ORIGIN})"
        if old == bp and not ctx.has_base_submodule:
            return "hf_base", (
                f"strip {old!r}: a task-model checkpoint into the base model "
                f"{model} (Hugging Face base_model_prefix "
                f"{ctx.base_model_prefix!r})"
            )
        return None, f"strip prefix {old!r}"
    if not old:
        wrapper = _wrapper_origin(new)
        if wrapper:
            return wrapper[0], f"add {new!r} (the model is wrapped: {wrapper[1]})"
        if new == bp and ctx.has_base_submodule:
            return "hf_base", (
                f"add {new!r}: a base-model checkpoint into the task model "
                f"{model}, whose base model sits under {new!r} (Hugging Face "
                "base_model_prefix)"
            )
        return None, f"add prefix {new!r}"
    wrapper = _wrapper_origin(old)
    if wrapper and new == bp and ctx.has_base_submodule:
        return "hf_base", (f"prefix {old!r} ({wrapper[1]}) → {new!r} (the base model of {model})")
    if old.count(".") == new.count(".") == 1:
        return None, f"module {old[:-1]!r} renamed to {new[:-1]!r}"
    return None, f"prefix {old!r} → {new!r}"


def _candidate(
    rule: Rename, result: tuple[list[tuple[str, str]], int, int], ctx: RuleContext | None
) -> RuleCandidate:
    pairs, same, breaks = result
    convention, what = name_rule(rule, ctx)
    n = len(pairs)
    text = f"{what}: {n} key{'s' if n != 1 else ''} would match"
    if same < n:
        text += f" ({n - same} with a different shape)"
    if breaks:
        text += f"; {breaks} key{'s' if breaks != 1 else ''} that pair now would no longer"
    return RuleCandidate(rule, tuple(pairs), same, breaks, convention, text)


def _convention_rules(keys: KeySets, ctx: RuleContext) -> list[Rename]:
    prefixes = [*WRAPPER_PREFIXES, "_orig_mod.module.", "module._orig_mod.", "model."]
    if ctx.base_model_prefix:
        prefixes.append(ctx.base_model_prefix + ".")
        prefixes.extend(p + ctx.base_model_prefix + "." for p in WRAPPER_PREFIXES)
    prefixes.extend(p + "." for p in HF_BASE_PREFIXES)
    firsts_u = {k.partition(".")[0] for k in keys.unexpected}
    firsts_m = {k.partition(".")[0] for k in keys.missing}
    out: list[Rename] = []
    for p in dict.fromkeys(prefixes):
        first = p.partition(".")[0]
        if first in firsts_u and any(k.startswith(p) for k in keys.unexpected):
            out.append(Rename.strip_prefix(p))
        if first in firsts_m and any(k.startswith(p) for k in keys.missing):
            out.append(Rename.add_prefix(p))
    return out


def discover_rules(
    keys: KeySets, ctx: RuleContext | None = None, *, limit: int = 10
) -> list[RuleCandidate]:
    """Rules that pair many unexpected names with missing keys, best first.

    Known conventions are tried first (one pass over the names each); when the best of them
    explains every unexpected name or every missing key, that is the answer. Otherwise the
    names no rule explains vote for prefix rules through a suffix → keys hash map, and the
    most voted are checked exactly. A rule that would collide with a name that stays is never
    offered (``with_renames`` would refuse it).

    Parameters
    ----------
    keys
        The unexpected, missing and paired names.
    ctx
        Where the keys came from, to name the rules (see :func:`name_rule`).
    limit
        How many rules to return at most.

    Returns
    -------
    list of RuleCandidate
        Best first: most pairs of equal shape, then most pairs, then fewest broken pairs.
    """
    ctx = ctx or RuleContext()
    if not keys.unexpected or not keys.missing:
        return []
    with gc_paused():
        return _discover(keys, ctx, limit)


def _discover(keys: KeySets, ctx: RuleContext, limit: int) -> list[RuleCandidate]:
    found: dict[Rename, RuleCandidate] = {}

    def consider(rule: Rename) -> None:
        if rule in found:
            return
        result = keys.evaluate(rule)
        if result is not None:
            found[rule] = _candidate(rule, result, ctx)

    def complete() -> bool:
        return any(
            c.fixes >= min(len(keys.unexpected), len(keys.missing)) and not c.breaks
            for c in found.values()
        )

    for rule in _convention_rules(keys, ctx):
        consider(rule)
    if not complete():
        tf = keys.tf_leaf_rule()
        if tf is not None:
            consider(tf)
            if tf in found:  # keep only the leaf names that pair something
                used = {u.rpartition(".")[2] for u, _ in found[tf].pairs}
                narrowed = Rename.leaves({o: n for o, n in tf.leaf_table.items() if o in used})
                if narrowed != tf:
                    del found[tf]
                    consider(narrowed)
    if not complete():
        for rule in segment_rules(keys):
            consider(rule)
    if not complete():
        explained = {u for c in found.values() for u, _ in c.pairs}
        targets = {m for c in found.values() for _, m in c.pairs}
        rest_u = [u for u in keys.unexpected if u not in explained]
        rest_m = [m for m in keys.missing if m not in targets]
        for old, new in keys.voted_prefixes(rest_u, rest_m):
            if old or new:
                consider(Rename.prefix(old, new))
    ranked = sorted(
        found.values(), key=lambda c: (-c.score, c.convention is None, c.rule.describe())
    )
    return ranked[:limit]


def _suffix_fraction(a: str, b: str) -> float:
    """The share of trailing dotted names ``a`` and ``b`` have in common (of the longer)."""
    pa, pb = a.split("."), b.split(".")
    la, lb = len(pa), len(pb)
    n = min(la, lb)
    if pa[la - n :] != pb[lb - n :]:  # the shorter is not all trailing names of the longer
        n = 0
        for x, y in zip(reversed(pa), reversed(pb), strict=False):
            if x != y:
                break
            n += 1
    return n / max(la, lb)


def _fmt(shape: Shape | None) -> str:
    return "?" if shape is None else str(tuple(shape))


def pair_keys(
    keys: KeySets, rules: Iterable[RuleCandidate] = (), *, limit: int = 50, min_score: float = 0.5
) -> list[tuple[str, str, float, str]]:
    """Pairs (unexpected name, missing key, score, reason), best first, each key once.

    Score: 0.5 for equal shapes + 0.25 × the share of trailing dotted names in common +
    0.25 × normalised Levenshtein similarity (rapidfuzz). Pairs the given ``rules`` explain
    are scored directly; the other names are compared only inside buckets that can match
    (same leaf name and, unless ``min_score`` < 0.5, same shape).

    Parameters
    ----------
    keys
        The unexpected, missing and paired names.
    rules
        Rules already discovered (:func:`discover_rules`), whose pairs are scored first.
    limit
        How many pairs to return at most.
    min_score
        Pairs scoring less are left out.

    Returns
    -------
    list of (ckpt_name, model_key, score, reason)
    """
    if not keys.unexpected or not keys.missing:
        return []
    with gc_paused():
        return _pair(keys, rules, limit, min_score)


def _pair(
    keys: KeySets, rules: Iterable[RuleCandidate], limit: int, min_score: float
) -> list[tuple[str, str, float, str]]:
    import numpy as np
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist, cpdist

    U, M = keys.unexpected, keys.missing
    scored: list[tuple[float, str, str, float]] = []  # (score, u, m, similarity)

    def add(u: str, m: str, sim: float, same: bool, suffix: float) -> None:
        """Score a pair: ``same`` shapes, ``suffix`` :func:`_suffix_fraction`, ``sim`` alike."""
        score = (0.5 if same else 0.0) + 0.25 * suffix + 0.25 * sim
        if score >= min_score:
            scored.append((round(score, 3), u, m, sim))

    covered_u: set[str] = set()
    covered_m: set[str] = set()
    rule_pairs: list[tuple[str, str]] = []
    for c in list(rules)[:5]:
        for u, m in c.pairs:
            if u in covered_u or m in covered_m:
                continue
            covered_u.add(u)
            covered_m.add(m)
            rule_pairs.append((u, m))
    if rule_pairs:  # element-wise similarities in one call
        pair_u = [u for u, _ in rule_pairs]
        pair_m = [m for _, m in rule_pairs]
        sims = cpdist(
            pair_u,
            pair_m,
            scorer=Levenshtein.normalized_similarity,
            dtype=np.float64,
        )
        for (u, m), sim, same, suffix in zip(
            rule_pairs,
            sims.tolist(),
            map(eq, map(U.__getitem__, pair_u), map(M.__getitem__, pair_m)),
            map(_suffix_fraction, pair_u, pair_m),
            strict=True,
        ):
            add(u, m, sim, same, suffix)
    by_shape = min_score >= 0.5  # pairs of different shapes cannot reach 0.5

    def bucket_key(k: str, shape: Shape, depth: int = 1) -> tuple[str, Shape | None]:
        return ".".join(k.rsplit(".", depth)[-depth:]), (shape if by_shape else None)

    def score_bucket(us: list[str], ms: list[str], depth: int) -> None:
        # a bucket too large is split by one more trailing name, depth first (an explicit
        # stack: a recursive closure would refer to itself through its cell, a reference cycle
        # keeping this frame, ``scored`` with it, for the cyclic collector to find)
        stack = [(us, ms, depth)]
        while stack:
            us, ms, depth = stack.pop()
            if len(us) * len(ms) > _CELL_CAP and depth < 4:
                sub_u: dict[tuple[str, Shape | None], list[str]] = {}
                sub_m: dict[tuple[str, Shape | None], list[str]] = {}
                for u in us:
                    sub_u.setdefault(bucket_key(u, U[u], depth + 1), []).append(u)
                for m in ms:
                    sub_m.setdefault(bucket_key(m, M[m], depth + 1), []).append(m)
                subs = [(bu, sub_m[b], depth + 1) for b, bu in sub_u.items() if b in sub_m]
                stack.extend(reversed(subs))
            elif len(us) * len(ms) <= _CELL_CAP:  # larger: too ambiguous to say anything
                score_one(us, ms)

    def score_one(us: list[str], ms: list[str]) -> None:
        sims = cdist(us, ms, scorer=Levenshtein.normalized_similarity)
        # a pair is offered only when it is not a guess: among the model keys of u's shape
        # and layer numbers, the best must be clearly more alike than the next (ViT's legacy
        # query/key/value against q_proj/k_proj/v_proj are all alike: none is offered)
        ids: dict[tuple, int] = {}

        def signatures(k: str, shape: Shape | None) -> tuple[int, int, int]:
            return (
                ids.setdefault(("layers", *_LAYER_NUMBERS.findall(k)), len(ids)),
                ids.setdefault(("digits", *_DIGITS.findall(k)), len(ids)),
                ids.setdefault(("shape", shape and tuple(shape)), len(ids)),
            )

        layer_m, digit_m, shape_m = np.array([signatures(m, M[m]) for m in ms]).T
        for i, u in enumerate(us):
            row = sims[i]
            layer_u, digit_u, shape_u = signatures(u, U[u])
            fits = (layer_m == layer_u) & (shape_m == shape_u)
            if (narrower := fits & (digit_m == digit_u)).any():
                fits = narrower  # bn1 -> norm1, not norm2
            candidates = np.flatnonzero(fits) if fits.any() else np.arange(len(ms))
            alike = row[candidates]
            best = int(candidates[int(alike.argmax())])
            if len(candidates) > 1 and row[best] - np.partition(alike, -2)[-2] < _AMBIGUOUS:
                continue
            m = ms[best]
            add(u, m, float(row[best]), U[u] == M[m], _suffix_fraction(u, m))

    rest_u: dict[tuple[str, Shape | None], list[str]] = {}
    rest_m: dict[tuple[str, Shape | None], list[str]] = {}
    for u, shape in U.items():
        if u not in covered_u:
            rest_u.setdefault(bucket_key(u, shape), []).append(u)
    if rest_u:
        for m, shape in M.items():
            if m not in covered_m:
                rest_m.setdefault(bucket_key(m, shape), []).append(m)
        for b, us in rest_u.items():
            if b in rest_m:
                score_bucket(us, rest_m[b], 1)

    scored.sort(key=lambda s: (-s[0], s[2]))
    used_u: set[str] = set()
    used_m: set[str] = set()
    out: list[tuple[str, str, float, str]] = []
    for score, u, m, sim in scored:
        if u in used_u or m in used_m:
            continue
        used_u.add(u)
        used_m.add(m)
        leaf = m.rpartition(".")[2]
        same = U[u] == M[m]
        bits = [
            f"same shape {_fmt(M[m])}" if same else f"shapes differ {_fmt(U[u])} vs {_fmt(M[m])}",
            f"same leaf name '.{leaf}'"
            if u.rpartition(".")[2] == leaf
            else f"leaf '.{u.rpartition('.')[2]}' → '.{leaf}'",
            f"names {sim:.0%} similar",
        ]
        out.append((u, m, score, ", ".join(bits)))
        if len(out) >= limit:
            break
    return out
