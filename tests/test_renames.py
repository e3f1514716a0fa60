"""Rename rules and their discovery: leaf-name tables, conventions named for what they are,
near-linear voting, collisions, chained suggestions, tied and meta-device rows."""

from __future__ import annotations

import copy
import re
import time
from collections import OrderedDict

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import sd_widgets as sdw
from sd_widgets.compare._renames import (
    KeySets,
    Rename,
    RuleContext,
    apply_renames,
    discover_rules,
    name_rule,
    pair_keys,
    parse_renames,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)

# ------------------------------------------------------------------------------------ models


class Block(nn.Module):
    def __init__(self, d: int = 6) -> None:
        super().__init__()
        self.attn = nn.Linear(d, d)
        self.LayerNorm = nn.LayerNorm(d)
        self.mlp = nn.Linear(d, 2 * d)


class Encoder(nn.Module):
    def __init__(self, n: int = 3, d: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, d)
        self.layer = nn.ModuleList(Block(d) for _ in range(n))
        self.norm = nn.LayerNorm(d)


class Classifier(nn.Module):
    """A task model laid out as transformers does: base model under ``base_model_prefix``."""

    base_model_prefix = "encoder"

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.head = nn.Linear(6, 2)


class BaseOnly(Encoder):
    """The base model itself (has ``base_model_prefix`` but no such submodule)."""

    base_model_prefix = "encoder"


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(13, 4)
        self.body = nn.Linear(4, 4)
        self.lm_head = nn.Linear(4, 13, bias=False)
        self.lm_head.weight = self.embed.weight


def prefixed(sd, prefix: str) -> OrderedDict:
    out = OrderedDict((prefix + k, v) for k, v in sd.items())
    out._metadata = OrderedDict(  # type: ignore[attr-defined]
        ((prefix.rstrip(".") + "." + k).strip(".") if k else prefix.rstrip("."), v)
        for k, v in getattr(sd, "_metadata", {}).items()
    )
    return out


def torch_strict_ok(model: nn.Module, sd) -> bool:
    try:
        copy.deepcopy(model).load_state_dict(sd, strict=True)
    except RuntimeError:
        return False
    return True


# ------------------------------------------------------------------------------------ leaf rules


def test_leaf_rule_renames_the_last_name_by_a_table():
    rule = Rename.leaves({"gamma": "weight", "beta": "bias"})
    assert rule.kind == "leaf" and rule.leaf_table == {"gamma": "weight", "beta": "bias"}
    assert rule("enc.LayerNorm.gamma") == "enc.LayerNorm.weight"
    assert rule("enc.LayerNorm.beta") == "enc.LayerNorm.bias"
    assert rule("enc.gamma.kernel") == "enc.gamma.kernel"  # only the last name
    assert rule("gamma") == "weight"
    # spec round trip (CLI --rename and mappings read it back), code export agrees
    old, new = rule.to_spec()
    assert (old, new) == ("leaf:gamma,beta", "weight,bias")
    assert parse_renames({old: new}) == (rule,)
    code = rule.to_code("k")
    for key in ("a.b.gamma", "a.beta", "gamma", "a.b.c", "x.gamma_", "beta.gamma"):
        assert eval(code, {}, {"k": key}) == rule(key)
    assert ".gamma → .weight" in rule.describe() and ".beta → .bias" in rule.describe()


@pytest.mark.parametrize("old, new", [("gamma,beta", "weight"), ("a.b", "c"), ("", "x")])
def test_leaf_rule_rejects_malformed_tables(old, new):
    with pytest.raises(ValueError, match="leaf rename"):
        Rename("leaf", old, new)


def test_tensorflow_style_names_are_one_rule_that_fixes_all_of_them():
    model = Encoder()
    sd = OrderedDict(
        (
            re.sub(
                r"(LayerNorm|norm)\.weight$",
                r"\1.gamma",
                re.sub(r"(LayerNorm|norm)\.bias$", r"\1.beta", k),
            ),
            v,
        )
        for k, v in model.state_dict().items()
    )
    n_norm = sum(1 for k in sd if k.endswith((".gamma", ".beta")))
    assert n_norm == 8
    cmp = sdw.compare(model, sd)
    assert cmp.summary()["unexpected"] == n_norm
    [best] = [s for s in cmp.prefix_suggestions() if s.convention == "tf_names"]
    assert cmp.prefix_suggestions()[0] == best
    assert best.rule == Rename.leaves({"gamma": "weight", "beta": "bias"})
    assert best.fixes == n_norm and "TensorFlow" in best.reason
    fixed = cmp.with_renames(best)  # a suggestion is accepted as it is
    assert fixed.loads_cleanly
    # the plan loads them bit-identically
    target = Encoder()
    sdw.partial_load(target, fixed.plan())
    for k, v in model.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k


def test_tf_rule_only_names_what_it_fixes_and_never_renames_a_real_gamma():
    class LayerScale(nn.Module):  # ConvNeXt-style: a real parameter called gamma
        def __init__(self) -> None:
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(4))
            self.norm = nn.LayerNorm(4)

    model = LayerScale()
    sd = OrderedDict(
        [
            ("gamma", model.gamma.detach()),
            ("norm.gamma", model.norm.weight.detach()),
            ("norm.bias", model.norm.bias.detach()),
        ]
    )
    cmp = sdw.compare(model, sd)
    assert cmp["gamma"].status == "match"
    rules = [s for s in cmp.prefix_suggestions() if s.rule.kind == "leaf"]
    # renaming every .gamma would break the matched LayerScale.gamma: it says so
    assert rules and rules[0].rule.leaf_table == {"gamma": "weight"}
    assert "would no longer" in rules[0].reason


# ------------------------------------------------------------------------------------ naming


def test_module_prefix_is_ddp_and_orig_mod_is_compile():
    model = Encoder()
    for prefix, conv, origin in [
        ("module.", "ddp", "DistributedDataParallel"),
        ("_orig_mod.", "compile", "torch.compile"),
        ("_orig_mod.module.", "compile+ddp", "torch.compile + "),
    ]:
        cmp = sdw.compare(model, prefixed(model.state_dict(), prefix))
        best = cmp.prefix_suggestions()[0]
        assert best.rule == Rename.strip_prefix(prefix), prefix
        assert best.convention == conv and origin in best.reason
        assert best.fixes == len(model.state_dict())
        assert cmp.with_renames(best.rule).loads_cleanly


def test_real_torch_compile_prefix(tmp_path):
    model = Encoder()
    compiled = torch.compile(model)  # lazy: no compilation happens for state_dict()
    sd = compiled.state_dict()
    assert all(k.startswith("_orig_mod.") for k in sd)
    best = sdw.compare(Encoder(), sd).prefix_suggestions()[0]
    assert best.rule == Rename.strip_prefix("_orig_mod.") and best.convention == "compile"


def test_model_prefix_is_lightning_only_for_a_lightning_file(tmp_path):
    model = Encoder()
    sd = prefixed(model.state_dict(), "model.")
    lightning = {
        "state_dict": sd,
        "pytorch-lightning_version": "2.4.0",
        "epoch": 3,
        "global_step": 120,
    }
    path = tmp_path / "last.ckpt"
    torch.save(lightning, path)
    best = sdw.compare(Encoder(), path).prefix_suggestions()[0]
    assert best.rule == Rename.strip_prefix("model.")
    assert best.convention == "lightning" and "Lightning" in best.reason
    # the same keys in a plain state dict: described, not guessed
    plain = sdw.compare(Encoder(), sd).prefix_suggestions()[0]
    assert plain.rule == Rename.strip_prefix("model.")
    assert plain.convention is None and "Lightning" not in plain.reason
    assert plain.reason.startswith("strip prefix 'model.'")


def test_hugging_face_base_model_prefix_both_ways():
    base = Encoder()
    # base checkpoint into the task model: add the base-model prefix
    cmp = sdw.compare(Classifier(), base.state_dict())
    best = cmp.prefix_suggestions()[0]
    assert best.rule == Rename.add_prefix("encoder.") and best.convention == "hf_base"
    assert "base-model checkpoint into the task model Classifier" in best.reason
    fixed = cmp.with_renames(best.rule)
    assert set(fixed.keys("missing")) == {"head.weight", "head.bias"}
    assert not fixed.keys("unexpected")
    # task checkpoint into the base model: strip it
    task_sd = Classifier().state_dict()
    back = sdw.compare(BaseOnly(), task_sd)
    best = back.prefix_suggestions()[0]
    assert best.rule == Rename.strip_prefix("encoder.") and best.convention == "hf_base"
    assert "task-model checkpoint into the base model BaseOnly" in best.reason
    assert set(back.with_renames(best.rule).keys("unexpected")) == {"head.weight", "head.bias"}


def test_name_rule_describes_what_it_does_when_unsure():
    ctx = RuleContext()
    assert name_rule(Rename.strip_prefix("model."), ctx) == (None, "strip prefix 'model.'")
    assert name_rule(Rename.add_prefix("bert."), ctx) == (None, "add prefix 'bert.'")
    assert name_rule(Rename.prefix("fc.", "head."), ctx)[1] == "module 'fc' renamed to 'head'"
    assert name_rule(Rename.prefix("a.b.", "c."), ctx)[1] == "prefix 'a.b.' → 'c.'"
    # Lightning needs the file's word for it; an HF model's 'model.' is its base model
    hf = RuleContext(
        base_model_prefix="model", has_base_submodule=True, model_class="LlamaForCausalLM"
    )
    conv, text = name_rule(Rename.add_prefix("model."), hf)
    assert conv == "hf_base" and "Lightning" not in text and "LlamaForCausalLM" in text


# ------------------------------------------------------------------------------------ discovery


def test_renamed_module_inside_a_stack_is_found_by_voting():
    model = Encoder(n=4)
    sd = OrderedDict((k.replace("layer.", "layers.", 1), v) for k, v in model.state_dict().items())
    cmp = sdw.compare(model, sd)
    best = cmp.prefix_suggestions()[0]
    assert best.rule == Rename.prefix("layers.", "layer.")
    assert best.fixes == cmp.summary()["unexpected"] and best.convention is None
    assert cmp.with_renames(best.rule).loads_cleanly


def test_ddp_prefix_and_a_renamed_head_are_fixed_one_after_the_other():
    model = Classifier()
    sd = OrderedDict(
        ("module." + k.replace("head.", "fc."), v) for k, v in model.state_dict().items()
    )
    cmp = sdw.compare(model, sd)
    rules = cmp.prefix_suggestions()
    assert rules[0].rule == Rename.strip_prefix("module.") and rules[0].convention == "ddp"
    assert rules[0].fixes == len(sd) - 2
    assert Rename.prefix("module.fc.", "head.") in [r.rule for r in rules]
    step = cmp.with_renames(rules[0].rule)
    assert set(step.keys("unexpected")) == {"fc.weight", "fc.bias"}
    # suggestions name the key as the next rule sees it (after 'module.' is stripped)
    pairs = step.suggest_renames()
    assert [(p.ckpt_key, p.model_key) for p in pairs] == [
        ("fc.weight", "head.weight"),
        ("fc.bias", "head.bias"),
    ]
    assert step.with_renames(pairs).loads_cleanly
    assert step.prefix_suggestions()[0].rule == Rename.prefix("fc.", "head.")
    assert step.with_renames(step.prefix_suggestions()[0]).loads_cleanly


def test_a_rule_that_would_collide_is_not_offered():
    keys = KeySets({"module.a.weight": (2,), "a.weight": (2,)}, {"b.weight": (2,)}, [])
    # stripping 'module.' maps module.a.weight onto a.weight, which stays: with_renames refuses
    assert all(c.rule != Rename.strip_prefix("module.") for c in discover_rules(keys))


def test_discovery_is_cached_and_with_renames_shares_the_model_side():
    model = Encoder()
    cmp = sdw.compare(model, prefixed(model.state_dict(), "module."))
    assert cmp.prefix_suggestions() == cmp.prefix_suggestions()
    assert cmp._rule_candidates is cmp._rule_candidates
    again = cmp.with_renames({"module.": ""})
    assert again.entries is cmp.entries and again._module_types is cmp._module_types
    assert again.prefix_suggestions() == [] and again.suggest_renames() == []


def test_pair_scoring_stays_inside_leaf_and_shape_buckets():
    unexpected = {f"old{i}.weight": (i + 1, 3) for i in range(40)}
    missing = {f"new{i}.weight": (i + 1, 3) for i in range(40)}
    missing.update({f"new{i}.bias": (i + 1,) for i in range(40)})
    pairs = pair_keys(KeySets(unexpected, missing, []), limit=100)
    assert sorted((u, m) for u, m, _, _ in pairs) == sorted(
        (f"old{i}.weight", f"new{i}.weight") for i in range(40)
    )
    assert all("same shape" in reason for *_, reason in pairs)


def test_discovery_at_20k_keys_is_not_quadratic():
    # a loose guard only: the measured targets are in benchmarks/bench_renames.py
    n = 20_000
    model_keys = {f"blocks.{i // 4}.p{i % 4}.weight": (i % 7 + 1,) for i in range(n)}
    ckpt = {"module." + k.replace("blocks.", "layers.", 1): s for k, s in model_keys.items()}
    t0 = time.perf_counter()
    keys = KeySets(ckpt, model_keys, [])
    rules = discover_rules(keys)
    pairs = pair_keys(keys, rules)
    elapsed = time.perf_counter() - t0
    assert rules[0].rule == Rename.prefix("module.layers.", "blocks.") and rules[0].fixes == n
    assert len(pairs) == 50
    assert elapsed < 10, f"discovery on {n} keys took {elapsed:.1f} s"


def test_apply_renames_chains_a_leaf_rule_after_a_prefix():
    rules = parse_renames([("module.", ""), ("leaf:gamma,beta", "weight,bias")])
    assert apply_renames("module.enc.LayerNorm.gamma", rules) == "enc.LayerNorm.weight"


# ------------------------------------------------------------------------------------ rows


def test_tied_key_absent_from_the_file_is_reported_as_tied():
    model = TiedLM()
    sd = OrderedDict((k, v) for k, v in model.state_dict().items() if k != "lm_head.weight")
    result = copy.deepcopy(model).load_state_dict(sd, strict=False)
    assert result.missing_keys == ["lm_head.weight"]  # torch calls it missing (fact 14)
    cmp = sdw.compare(TiedLM(), sd)
    row = cmp["lm_head.weight"]
    assert row.status == "tied" and row.tied_to == "embed.weight"  # not a problem
    assert "tied to 'embed.weight'" in row.reason and "initial" not in row.reason
    assert cmp["embed.weight"].tied_to is None  # it is in the file
    frame = cmp.to_frame().set_index("key")
    assert frame.loc["lm_head.weight", "tied_to"] == "embed.weight"
    leaf = next(c for c in cmp.tree()["children"] if c["path"] == "lm_head")["children"][0]
    assert leaf["tied_to"] == "embed.weight"
    # and it is true: loading the embedding changes lm_head.weight
    target = TiedLM()
    sdw.partial_load(target, cmp.plan())
    assert torch.equal(target.lm_head.weight, sd["embed.weight"])


def test_tied_keys_both_absent_are_not_said_to_follow_each_other():
    model = TiedLM()
    sd = OrderedDict(
        (k, v) for k, v in model.state_dict().items() if k not in ("lm_head.weight", "embed.weight")
    )
    cmp = sdw.compare(TiedLM(), sd)
    assert cmp["lm_head.weight"].tied_to is None and cmp["embed.weight"].tied_to is None
    assert "keeps its current (initial) value" in cmp["lm_head.weight"].reason


def test_missing_on_a_meta_model_does_not_claim_an_initial_value():
    with torch.device("meta"):
        model = Encoder()
    sd = OrderedDict((k, v) for k, v in Encoder().state_dict().items() if not k.startswith("norm"))
    cmp = sdw.compare(model, sd)
    for key in ("norm.weight", "norm.bias"):
        row = cmp[key]
        assert row.status == "missing" and row.model_on_meta
        assert "meta device" in row.reason and "initial value" not in row.reason
        assert "cannot run until it is initialised" in row.reason
    leaf = next(c for c in cmp.tree()["children"] if c["path"] == "norm")["children"][0]
    assert leaf["model_on_meta"] is True and "meta device" in leaf["reason"]


def test_torch_agrees_with_the_statuses_after_a_suggested_rule():
    model = Classifier()
    sd = prefixed(model.state_dict(), "module.")
    cmp = sdw.compare(Classifier(), sd)
    assert not torch_strict_ok(Classifier(), sd)
    rule = cmp.prefix_suggestions()[0].rule
    renamed = OrderedDict((rule(k), v) for k, v in sd.items())
    assert torch_strict_ok(Classifier(), renamed) == cmp.with_renames(rule).loads_cleanly is True


# ------------------------------------------------------------------------------------ properties

_name = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
_key = st.lists(_name, min_size=1, max_size=4).map(".".join)
_shape = st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple)
_prefix = st.lists(_name, min_size=1, max_size=2).map(lambda p: ".".join(p) + ".")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.dictionaries(_key, _shape, min_size=1, max_size=40),
    prefix=_prefix,
    strip=st.booleans(),
)
def test_one_prefix_on_every_key_is_found_first_and_fixes_all(model, prefix, strip):
    ckpt = {prefix + k: s for k, s in model.items()}
    unexpected, missing = (ckpt, model) if strip else (model, ckpt)
    # keys that are both (e.g. model has "a.b" and "x.a.b" with prefix "x.") pair already
    paired = [k for k in unexpected if k in missing]
    unexpected = {k: s for k, s in unexpected.items() if k not in missing}
    missing = {k: s for k, s in missing.items() if k not in paired}
    if not unexpected or not missing:
        return
    rules = discover_rules(KeySets(unexpected, missing, paired))
    assert rules, (unexpected, missing)
    want = Rename.strip_prefix(prefix) if strip else Rename.add_prefix(prefix)
    best = rules[0]
    # the best rule explains at least as many keys as the true one, and the true one is offered
    # unless it would collide with a name that stays
    true_fix = sum(1 for u in unexpected if want(u) in missing)
    assert best.fixes >= true_fix
    for c in rules:
        for u, m in c.pairs:
            assert c.rule(u) == m and m in missing and u in unexpected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(_key, min_size=1, max_size=25, unique=True),
    prefix=_prefix,
    renamed=st.sets(st.integers(0, 24), max_size=5),
    new_name=_name,
)
def test_every_suggested_rule_can_be_applied(keys, prefix, renamed, new_name):
    """No suggestion makes with_renames refuse (a collision), and applying one never lowers
    the number of paired keys."""
    model = {k: (2,) for k in keys}
    ckpt = {}
    for i, k in enumerate(keys):
        k2 = prefix + k if i % 2 == 0 else k
        if i in renamed:
            k2 = new_name + "." + k2
        ckpt[k2] = (2,)
    if len(ckpt) != len(model):
        return
    key_sets = KeySets(
        {k: s for k, s in ckpt.items() if k not in model},
        {k: s for k, s in model.items() if k not in ckpt},
        [k for k in ckpt if k in model],
    )
    paired_before = len(key_sets.paired)
    for c in discover_rules(key_sets):
        names = [c.rule(k) for k in ckpt]
        assert len(set(names)) == len(names), c.rule  # no collision
        paired_after = sum(1 for n in names if n in model)
        assert paired_after == paired_before + c.fixes - c.breaks


# ------------------------------------------------------------------ wrapper segments inside keys


class WBlock(nn.Module):
    def __init__(self, d: int = 6) -> None:
        super().__init__()
        self.attn = nn.Linear(d, d)
        self.norm = nn.BatchNorm1d(d)


class WNet(nn.Module):
    """Embedding, four wrappable blocks, a head."""

    def __init__(self, n: int = 4, d: int = 6) -> None:
        super().__init__()
        self.embed = nn.Linear(d, d)
        self.layers = nn.ModuleList(WBlock(d) for _ in range(n))
        self.head = nn.Linear(d, 2)


def _named_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers under the names torch gives them (what a checkpoint saved from
    ``named_parameters()`` / a DCP model dict of a wrapped model holds)."""
    return {k: v.detach().clone() for k, v in [*model.named_parameters(), *model.named_buffers()]}


def _checkpoint_wrapped(model: WNet) -> WNet:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for i, block in enumerate(model.layers):
        model.layers[i] = checkpoint_wrapper(block)
    return model


def _assert_one_rule_pairs_all(cmp, convention: str, *words: str) -> Rename:
    best = cmp.prefix_suggestions()[0]
    affected = cmp.summary().get("unexpected", 0)
    assert affected and best.fixes == affected, best
    assert best.convention == convention, best
    for w in words:
        assert w in best.reason, best.reason
    fixed = cmp.with_renames(best.rule)
    assert fixed.loads_cleanly, fixed.summary()
    return best.rule


def test_checkpoint_wrapper_segments_stripped_by_one_named_rule():
    wrapped = _checkpoint_wrapped(WNet())
    sd = _named_state(wrapped)
    assert "layers.2._checkpoint_wrapped_module.attn.weight" in sd
    rule = _assert_one_rule_pairs_all(
        sdw.compare(WNet(), sd), "checkpoint_wrapper", "'_checkpoint_wrapped_module.'"
    )
    assert rule.kind == "regex"
    # the rule survives the round trip through the CLI/codegen spec and exported code
    assert parse_renames([rule.to_spec()]) == (rule,)
    k = "layers.3._checkpoint_wrapped_module.norm.running_mean"
    assert eval(rule.to_code("k"), {"re": re, "k": k}) == "layers.3.norm.running_mean"
    # torch's own checkpoint_wrapper strips the segment from state_dict(): clean both ways
    assert sdw.compare(wrapped, WNet().state_dict()).loads_cleanly
    assert sdw.compare(WNet(), wrapped.state_dict()).loads_cleanly


@pytest.fixture
def one_rank_group():
    import os
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fsdp_and_checkpoint_wrapper_segments_together(one_rank_group):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    model = _checkpoint_wrapped(WNet())
    for i, block in enumerate(model.layers):
        model.layers[i] = FSDP(block, device_id=torch.device("cpu"), use_orig_params=True)
    fsdp = FSDP(model, device_id=torch.device("cpu"), use_orig_params=True)
    sd = _named_state(fsdp)
    key = (
        "_fsdp_wrapped_module.layers.1._fsdp_wrapped_module._checkpoint_wrapped_module.attn.weight"
    )
    assert key in sd
    rule = _assert_one_rule_pairs_all(
        sdw.compare(WNet(), sd), "fsdp+checkpoint_wrapper", "FSDP1", "activation checkpointing"
    )
    assert rule(key) == "layers.1.attn.weight"
    # FSDP only: the same rule kind, named for FSDP alone
    plain = WNet()
    for i, block in enumerate(plain.layers):
        plain.layers[i] = FSDP(block, device_id=torch.device("cpu"), use_orig_params=True)
    sd = _named_state(plain)
    assert "layers.0._fsdp_wrapped_module.norm.running_var" in sd
    _assert_one_rule_pairs_all(sdw.compare(WNet(), sd), "fsdp", "FSDP1")


def test_compiled_submodule_both_directions():
    compiled = WNet()
    compiled.layers[1] = torch.compile(compiled.layers[1])  # lazy: nothing is compiled here
    sd = compiled.state_dict()
    assert "layers.1._orig_mod.attn.weight" in sd
    _assert_one_rule_pairs_all(sdw.compare(WNet(), sd), "compiled_submodule", "torch.compile")
    # a plain checkpoint into the model with the compiled submodule: the rule inserts it,
    # only where the model holds it (layers 0, 2 and 3 pair already and stay paired)
    cmp = sdw.compare(compiled, WNet().state_dict())
    rule = _assert_one_rule_pairs_all(cmp, "compiled_submodule", "insert '_orig_mod.'")
    assert rule("layers.1.attn.bias") == "layers.1._orig_mod.attn.bias"
    assert rule("layers.2.attn.bias") == "layers.2.attn.bias"


def test_dataparallel_submodules_both_directions():
    model = WNet()
    for i, block in enumerate(model.layers):
        model.layers[i] = nn.DataParallel(block)  # CPU: a plain wrapper
    sd = model.state_dict()
    assert "layers.3.module.norm.num_batches_tracked" in sd
    _assert_one_rule_pairs_all(sdw.compare(WNet(), sd), "dp_submodule", "DataParallel")
    cmp = sdw.compare(model, WNet().state_dict())
    rule = _assert_one_rule_pairs_all(cmp, "dp_submodule", "'layers.<n>.'")
    assert rule == Rename.regex(r"^(layers\.\d+\.)", r"\1module.")


def test_segment_named_module_that_is_not_a_wrapper_is_not_stripped():
    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = nn.Linear(3, 3)  # a real submodule called 'module'
            self.extra = nn.Linear(3, 3)

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = Holder()

    sd = {"enc.module.weight": torch.zeros(3, 3), "enc.module.bias": torch.zeros(3)}
    sd |= {"enc.other.weight": torch.zeros(3, 3)}
    cmp = sdw.compare(Outer(), sd)
    # stripping '.module.' would unpair enc.module.* (pair now) and pair nothing
    assert not any(s.convention == "dp_submodule" for s in cmp.prefix_suggestions())


def test_segment_rule_loads_and_exports(tmp_path):
    torch.manual_seed(3)
    wrapped = _checkpoint_wrapped(WNet())
    path = tmp_path / "wrapped.pt"
    torch.save(_named_state(wrapped), path)
    reference = wrapped.state_dict()  # torch's own wrapper writes the plain keys
    cmp = sdw.compare(WNet(), path)
    rule = cmp.prefix_suggestions()[0].rule
    # partial_load with the rule, and the exported plain-torch code, give the same weights
    model = WNet()
    report = sdw.partial_load(model, cmp.plan(renames=rule))
    assert len(report.loaded) == len(reference)
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    exported = WNet()
    exec(cmp.plan(renames=rule).to_code(), {"model": exported, "__name__": "__main__"})
    assert all(torch.equal(v, reference[k]) for k, v in exported.state_dict().items())


# ---------------------------------------------------------------- pair suggestions are not guesses

#: what transformers' own loading maps ViT's legacy names to (its conversion mapping)
VIT_LEGACY = {
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}


def _legacy_target(ckpt_key: str) -> str:
    """The model key ``ckpt_key`` (after the ``encoder.layer.`` -> ``layers.`` rule) belongs in."""
    n, rest = re.match(r"(?:encoder\.layer|layers)\.(\d+)\.(.*)", ckpt_key).group(1, 2)
    module, _, leaf = rest.rpartition(".")
    return f"layers.{n}.{VIT_LEGACY.get(module, module)}.{leaf}"


def test_pair_suggestions_on_vit_legacy_names_are_right_or_absent(tmp_path):
    """transformers' ViTModel.save_pretrained writes query/key/value/output.dense while its
    modules are q_proj/k_proj/v_proj/o_proj, all of one shape: which goes where cannot be told
    from names and shapes, so no such pair is offered (it used to offer value -> q_proj and
    query -> v_proj, and accepting them loaded the wrong tensors). Pairs that shapes and layer
    numbers decide (fc1, fc2) are still offered, each into its own place."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    saved, fresh = transformers.ViTModel(config), transformers.ViTModel(config)
    saved.save_pretrained(tmp_path)
    cmp = sdw.compare(fresh, tmp_path / "model.safetensors")
    assert cmp.summary()["unexpected"] == 32
    for c in (cmp, cmp.with_renames([cmp.prefix_suggestions()[0].rule])):
        pairs = {s.ckpt_key: s.model_key for s in c.suggest_renames()}
        assert pairs, "the pairs shapes decide are still offered"
        assert all(m == _legacy_target(u) for u, m in pairs.items()), pairs
        assert not any("_proj" in m for m in pairs.values())  # q/k/v/o: a guess, never offered
        assert {m.split(".")[-2] for m in pairs.values()} >= {"fc1", "fc2"}
    # accepting every offered pair loads each tensor into its own place
    renamed = cmp.with_renames(cmp.suggest_renames())
    report = sdw.partial_load(fresh, renamed.plan(include=[r.key for r in renamed if r.loadable]))
    theirs = saved.state_dict()
    assert report.loaded and all(
        torch.equal(fresh.state_dict()[k], theirs[k]) for k in report.loaded
    )


def test_a_renamed_numbered_module_is_still_paired_with_its_own_number():
    """bn1 -> norm1 (not norm2): names alike but for the module's own number are decided by it."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(8), nn.LayerNorm(8)

    model = nn.Sequential(Block(), Block())
    ckpt = {k.replace("norm", "bn"): v for k, v in model.state_dict().items()}
    pairs = {s.ckpt_key: s.model_key for s in sdw.compare(model, ckpt).suggest_renames()}
    assert pairs == {k.replace("norm", "bn"): k for k in model.state_dict()}
