"""sd_widgets agrees with PyTorch: the scenarios of torch's and transformers' own loading tests.

Each test builds a real model and a real state dict (or file), asks plain torch what
``load_state_dict`` does with them (``_IncompatibleKeys``, the ``RuntimeError`` it raises, the
state it leaves), and checks that ``compare`` says the same, that ``loads_cleanly`` is what a
strict load does, and that the plan, loaded by torch's own ``load_state_dict`` (or as exported
by ``to_code()``), ends in the state torch's load of the whole file ends in. Where sd_widgets
deliberately says more than torch (a ``tied`` key torch lists as missing), the test pins it.

Ported scenarios: ``test/nn/test_load_state_dict.py`` (missing/unexpected/size mismatch,
pre- and post-hooks, extra state, ParameterList/ParameterDict, ``assign``), ``test/nn/
test_parametrization.py`` and ``test_nn.py`` (old ``weight_norm`` into the parametrized one,
version-less ``spectral_norm``, BatchNorm < v2), ``test/nn/test_lazy_modules.py``,
``test/quantization`` (quantized ``Linear``'s packed parameters), LSTM; transformers'
``test_modeling_common`` loading-info tests (missing / unexpected / mismatched with small
configs, tied embeddings of causal LMs saved with ``save_pretrained``).
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import sd_widgets as sdw
from sd_widgets.statuses import PROBLEM_STATUSES

pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.nn.utils.weight_norm is deprecated"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

MISSING = ("missing", "missing_buffer")


# ------------------------------------------------------------------------------------ helpers


def torch_says(make: Callable[[], nn.Module], sd: Mapping[str, Any]) -> dict[str, Any]:
    """What plain ``load_state_dict`` does with ``sd``: strict=False lists, size mismatches,
    whether a strict load succeeds, and the state a strict=False load leaves (None if it
    raised)."""
    model = make()
    size: set[str] = set()
    seen: list[Any] = []
    model.register_load_state_dict_post_hook(lambda _m, keys: seen.append(keys))
    try:
        model.load_state_dict(_copy(sd), strict=False)
        after: Any = model
    except RuntimeError as exc:
        size = {
            line.strip()[len("size mismatch for ") :].partition(":")[0]
            for line in str(exc).splitlines()
            if line.strip().startswith("size mismatch for ")
        }
        assert size, exc
        after = None
    keys = seen[-1]
    try:
        make().load_state_dict(_copy(sd), strict=True)
        strict = True
    except RuntimeError:
        strict = False
    return {
        "missing": set(keys.missing_keys),
        "unexpected": set(keys.unexpected_keys),
        "size": size,
        "strict": strict,
        "model": after,
    }


def _copy(sd: Mapping[str, Any]) -> OrderedDict[str, Any]:
    out = OrderedDict(sd)
    meta = getattr(sd, "_metadata", None)
    if meta is not None:
        out._metadata = copy.deepcopy(meta)  # type: ignore[attr-defined]
    return out


def assert_agrees(make: Callable[[], nn.Module], sd: Mapping[str, Any]) -> sdw.Comparison:
    """compare() says what torch says; the default plan, loaded by torch, ends where torch's
    own strict=False load of the whole dict ends (when that load does not raise)."""
    truth = torch_says(make, sd)
    cmp = sdw.compare(make(), sd)
    ours_missing = {r.key for r in cmp if r.status in (*MISSING, "tied")}
    assert ours_missing == truth["missing"], cmp.to_frame()[["key", "status"]]
    assert set(cmp.keys("unexpected")) == truth["unexpected"]
    assert set(cmp.keys("shape_mismatch")) == truth["size"]
    assert cmp.loads_cleanly is truth["strict"]
    if truth["model"] is not None:
        model = make()
        plan = cmp.plan()
        result = model.load_state_dict(plan.state_dict(model), strict=False)
        assert not result.unexpected_keys
        assert_same_state(model, truth["model"])
    return cmp


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k, v in sa.items():
        w = sb[k]
        if isinstance(v, torch.Tensor) and v.is_quantized:
            assert torch.equal(v.int_repr(), w.int_repr()), k
        elif isinstance(v, torch.Tensor):
            assert v.dtype == w.dtype and torch.equal(v, w), k
        elif isinstance(v, tuple):  # quantized packed parameters
            assert len(v) == len(w)
            for x, y in zip(v, w, strict=True):
                assert (x is None and y is None) or torch.equal(
                    x.int_repr() if x.is_quantized else x, y.int_repr() if y.is_quantized else y
                ), k
        else:
            assert v == w, k


def run_exported(plan: sdw.LoadPlan, model: nn.Module) -> Any:
    code = plan.to_code()
    namespace: dict[str, Any] = {"__name__": "exported"}
    exec(compile(code, "exported.py", "exec"), namespace)
    return namespace["load_partial"](model, namespace["read_checkpoint"]())


def seeded(make: Callable[[], nn.Module], seed: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(seed)
        return make()

    return build


# ------------------------------------------------------------- load_state_dict's own scenarios


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Linear(5, 5)
        self.bn = nn.BatchNorm1d(5)
        self.block = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2))
        self.register_buffer("persistent", torch.arange(3.0))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)


def test_missing_unexpected_and_size_mismatch_as_torch_reports_them():
    make = seeded(Net, 0)
    full = seeded(Net, 1)().state_dict()
    assert_agrees(make, full)  # all keys matched
    sd = OrderedDict(full)
    del sd["block.0.bias"], sd["bn.running_var"], sd["persistent"]
    sd["extra_param"] = torch.ones(1)
    sd["scratch"] = torch.ones(2)  # a non-persistent buffer: torch calls it unexpected
    sd._metadata = full._metadata  # type: ignore[attr-defined]
    cmp = assert_agrees(make, sd)
    assert cmp["block.0.bias"].status == "missing"
    assert cmp["bn.running_var"].status == cmp["persistent"].status == "missing_buffer"
    assert cmp["scratch"].status == "unexpected"
    sd["block.2.weight"] = torch.ones(4, 3)  # torch raises (after copying the rest)
    cmp = assert_agrees(make, sd)
    assert cmp["block.2.weight"].status == "shape_mismatch"
    assert "shape mismatch: checkpoint (4, 3) vs model (2, 3)" in cmp["block.2.weight"].reason


def test_parameter_list_and_dict():
    class P(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.plist = nn.ParameterList([nn.Parameter(torch.randn(2)) for _ in range(3)])
            self.pdict = nn.ParameterDict({"a": nn.Parameter(torch.randn(4)), "b": None})

    make = seeded(P, 0)
    sd = seeded(P, 1)().state_dict()
    assert list(sd) == ["plist.0", "plist.1", "plist.2", "pdict.a"]
    assert_agrees(make, sd)
    del sd["plist.1"]
    sd["pdict.c"] = torch.zeros(1)
    sd["plist.2"] = torch.zeros(5)
    cmp = assert_agrees(make, sd)
    assert {r.key: r.kind for r in cmp}["plist.0"] == "param"


def test_lstm_layers_and_directions():
    make = seeded(lambda: nn.LSTM(4, 6, num_layers=2, bidirectional=True), 0)
    full = seeded(lambda: nn.LSTM(4, 6, num_layers=2, bidirectional=True), 1)().state_dict()
    assert_agrees(make, full)
    one_layer = nn.LSTM(4, 6, num_layers=1, bidirectional=True).state_dict()
    cmp = assert_agrees(make, one_layer)  # the second layer missing
    assert set(cmp.keys("missing")) == {k for k in full if "_l1" in k}
    wider = nn.LSTM(4, 8, num_layers=2, bidirectional=True).state_dict()
    cmp = assert_agrees(make, wider)
    assert set(cmp.keys("shape_mismatch")) == set(full)


# --------------------------------------------------------------------------------- hooks


class Renamed(nn.Module):
    """A module whose load pre-hook accepts an old name (as HF's and torchvision's do)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 3)
        self.register_load_state_dict_pre_hook(self._old_names)

    @staticmethod
    def _old_names(module, state_dict, prefix, *args):
        for leaf in ("weight", "bias"):
            old = f"{prefix}dense.{leaf}"
            if old in state_dict:
                state_dict[f"{prefix}proj.{leaf}"] = state_dict.pop(old)


def test_a_pre_hook_that_renames_is_torchs_answer():
    make = seeded(lambda: nn.Sequential(Renamed()), 0)
    old = OrderedDict(
        ("0.dense." + k, v) for k, v in seeded(lambda: nn.Linear(3, 3), 1)().state_dict().items()
    )
    cmp = assert_agrees(make, old)  # "All keys matched" for torch, and for sd_widgets
    assert cmp.loads_cleanly and not cmp.keys("unexpected")
    assert cmp["0.proj.weight"].ckpt_key == "0.dense.weight"


def test_post_hook_that_clears_missing_keys_is_followed():
    class Quiet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.register_load_state_dict_post_hook(self._forgive)

        @staticmethod
        def _forgive(module, keys):
            keys.missing_keys[:] = [k for k in keys.missing_keys if not k.endswith("bias")]

    make = seeded(lambda: nn.Sequential(Quiet()), 0)
    sd = OrderedDict((k, v) for k, v in make().state_dict().items() if "bias" not in k)
    truth = torch_says(make, sd)
    assert truth["missing"] == set() and truth["strict"]
    cmp = sdw.compare(make(), sd)
    assert cmp["0.a.bias"].status == "match" and cmp["0.a.bias"].ckpt_key is None
    assert cmp.loads_cleanly is True


def test_a_hook_that_cannot_run_on_meta_is_reported_not_raised():
    class NeedsValues(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))
            self.register_load_state_dict_pre_hook(self._check)

        @staticmethod
        def _check(module, state_dict, prefix, *args):
            if float(state_dict[prefix + "w"].sum()) < 0:  # reads a value
                raise ValueError("negative")

    make = seeded(lambda: nn.Sequential(nn.Linear(2, 2), NeedsValues()), 0)
    sd = make().state_dict()
    cmp = assert_agrees(make, sd)
    assert list(cmp.unasked) == ["1"] and "meta" in cmp.unasked["1"]
    assert cmp.summary()["match"] == len(sd)


# ---------------------------------------------------------------------------- extra state


class WithState(nn.Module):
    """Module-level extra state, as a tensor (Transformer Engine's FP8 scales) or any value."""

    def __init__(self, tensor: bool) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.tensor = tensor
        self.state: Any = torch.zeros(3) if tensor else {"step": 0}
        self.calls = 0

    def get_extra_state(self) -> Any:
        return self.state

    def set_extra_state(self, state: Any) -> None:
        self.calls += 1
        self.state = state


@pytest.mark.parametrize("tensor", [True, False], ids=["tensor", "value"])
def test_extra_state_has_a_row_and_strictness_agrees(tensor):
    make = seeded(lambda: nn.Sequential(WithState(tensor)), 0)
    saved = make()
    saved[0].state = torch.arange(3.0) if tensor else {"step": 7}
    sd = saved.state_dict()
    cmp = sdw.compare(make(), sd)
    row = cmp["0._extra_state"]
    assert row.kind == "extra_state" and row.status == "match"
    assert cmp.loads_cleanly is torch_says(make, sd)["strict"] is True
    without = OrderedDict((k, v) for k, v in sd.items() if k != "0._extra_state")
    cmp = sdw.compare(make(), without)
    assert cmp["0._extra_state"].status == "missing_buffer"
    assert "set_extra_state is not called" in cmp["0._extra_state"].reason
    assert cmp.loads_cleanly is torch_says(make, without)["strict"] is False


@pytest.mark.parametrize("tensor", [True, False], ids=["tensor", "value"])
def test_extra_state_loads_through_set_extra_state(tmp_path: Path, tensor: bool):
    make = seeded(lambda: nn.Sequential(WithState(tensor)), 0)
    saved = make()
    saved[0].state = torch.arange(3.0) if tensor else {"step": 7}
    path = tmp_path / "state.pt"
    torch.save(saved.state_dict(), path)

    def check(model: nn.Module) -> None:
        assert model[0].calls == 1
        if tensor:
            assert torch.equal(model[0].state, torch.arange(3.0))
        else:
            assert model[0].state == {"step": 7}

    model = make()
    plan = sdw.compare(model, path).plan()
    assert "0._extra_state" in plan.entries  # compare's match is a plan entry, not a KeyError
    model.load_state_dict(plan.state_dict(model), strict=True)
    check(model)
    exported = make()
    run_exported(plan, exported)
    check(exported)
    loaded = make()  # the transaction loads through the module's own loading, once
    sdw.partial_load(loaded, sdw.compare(loaded, path).plan())
    check(loaded)


def test_custom_save_to_state_dict_keys_and_quantized_linear():
    q = torch.ao.nn.quantized.Linear(4, 3)
    q.set_weight_bias(
        torch.quantize_per_tensor(torch.randn(3, 4), 0.1, 0, torch.qint8), torch.randn(3)
    )
    sd = q.state_dict()
    cmp = sdw.compare(torch.ao.nn.quantized.Linear(4, 3), sd)
    kinds = {r.key: r.kind for r in cmp}
    # the kinds torch's state_dict gives them: none is a parameter or a buffer
    assert kinds == dict.fromkeys(sd, "custom")
    assert cmp.loads_cleanly is torch_says(lambda: torch.ao.nn.quantized.Linear(4, 3), sd)["strict"]
    # its loading reads values (float(scale)): torch's answer cannot be had on meta, and says so
    assert list(cmp.unasked) == [""]


def _quantized_state(model: nn.Module) -> list:
    """Everything a quantized model's state dict holds, as plain values to compare (a quantized
    tensor as its integers, scale and zero point)."""

    def plain(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.is_quantized:
            return ("q", v.int_repr().tolist(), v.q_scale(), v.q_zero_point())
        if isinstance(v, torch.Tensor):
            return ("t", v.tolist())
        if isinstance(v, (tuple, list)):
            return tuple(plain(x) for x in v)
        return v

    return [(k, plain(v)) for k, v in model.state_dict().items()]


def test_undo_of_a_load_into_dynamically_quantized_layers_restores_their_packed_weights(
    monkeypatch,
):
    """A quantized layer keeps its weights packed in a script object, written and read by its
    own state-dict code: no parameter holds them. Undo (and a rollback) used to say "restored"
    and leave the loaded weights. It runs the layer's own loading again with what it held
    before; a change made after the load is not overwritten unless forced."""
    from sd_widgets.load import _transaction as transaction

    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's move to torchao
            return torch.ao.quantization.quantize_dynamic(
                nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), {nn.Linear}
            )

    sd = make(1).state_dict()
    model = make(0)
    before = _quantized_state(model)
    report = sdw.partial_load(model, sdw.compare(model, sd).plan())
    loaded = _quantized_state(model)
    assert loaded != before and loaded == _quantized_state(make(1))
    assert report.changed_since_load() == []
    report.undo()
    assert _quantized_state(model) == before

    # a later change to the packed weights: undo refuses, names the keys, force restores
    report = sdw.partial_load(model, sdw.compare(model, sd).plan())
    ones = torch.quantize_per_tensor(torch.ones(4, 4), 0.1, 0, torch.qint8)
    model[0]._packed_params.set_weight_bias(ones, None)
    assert "0._packed_params._packed_params" in report.changed_since_load()
    with pytest.raises(sdw.UndoError, match="changed after it"):
        report.undo()
    report.undo(force=True)
    assert _quantized_state(model) == before

    # a load that fails after torch's load ran: rolled back to the weights from before
    def fail(self: Any) -> None:
        raise RuntimeError("injected after the load")

    monkeypatch.setattr(transaction.Transaction, "_after_pass", fail)
    with pytest.raises(sdw.LoadError, match="injected"):
        sdw.partial_load(model, sdw.compare(model, sd).plan())
    assert _quantized_state(model) == before


class _SavedUnderAnOldName(nn.Module):
    """Saves ``lin.*`` as ``old_lin.*`` and takes ``old_lin.*`` back on loading: a state-dict
    hook pair that keeps old checkpoints loading (``old_lin`` is no module)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.bn = nn.BatchNorm1d(3)
        self._register_state_dict_hook(_SavedUnderAnOldName._save)
        self._register_load_state_dict_pre_hook(_SavedUnderAnOldName._load)

    @staticmethod
    def _save(module: nn.Module, sd: dict, prefix: str, _meta: Any) -> None:
        for k in [k for k in sd if k.startswith(prefix + "lin.")]:
            sd[prefix + "old_" + k[len(prefix) :]] = sd.pop(k)

    @staticmethod
    def _load(sd: dict, prefix: str, *_: Any) -> None:
        for k in [k for k in sd if k.startswith(prefix + "old_lin.")]:
            sd[prefix + k[len(prefix) + len("old_") :]] = sd.pop(k)


def test_keys_a_state_dict_hook_renamed_load_and_undo():
    """The model's state dict names ``old_lin.weight``, a module that does not exist (the load
    used to fail with KeyError 'old_lin'): the tensor is the one ``lin.weight`` holds, loaded
    through the model's own hook and restored through that tensor."""
    torch.manual_seed(0)
    sd = _SavedUnderAnOldName().state_dict()
    assert "old_lin.weight" in sd and "lin.weight" not in sd
    model = _SavedUnderAnOldName()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cmp = assert_agrees(_SavedUnderAnOldName, sd)
    assert cmp.loads_cleanly
    report = sdw.partial_load(model, cmp.plan())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    report.undo()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_a_torchscript_model_is_refused_with_what_to_pass_instead():
    """TorchScript modules refuse ``get_submodule`` and iterating their buffers: compare and
    the Explorer say so in a typed error instead of failing inside; a scripted model's weights
    still compare as a checkpoint."""
    from sd_widgets import Explorer

    scripted = torch.jit.script(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
    fresh = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    for attempt in (
        lambda: sdw.compare(scripted, fresh.state_dict()),
        lambda: Explorer(scripted, fresh.state_dict()),
    ):
        with pytest.raises(TypeError, match=r"TorchScript module .*Pass the nn\.Module"):
            attempt()
    assert sdw.compare(fresh, scripted).loads_cleanly


# ---------------------------------------------------------------- modules that rewrite keys


def test_old_weight_norm_checkpoint_into_the_parametrized_module(tmp_path: Path):
    torch.manual_seed(1)
    old = nn.utils.weight_norm(nn.Conv1d(2, 4, 3))  # weight_g, weight_v (wav2vec2's pos_conv)
    sd = nn.Sequential(old).state_dict()
    assert {"0.weight_g", "0.weight_v"} <= set(sd)

    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Conv1d(2, 4, 3)))

    cmp = assert_agrees(make, sd)
    assert cmp.loads_cleanly and cmp.summary()["match"] == 3
    g = cmp["0.parametrizations.weight.original0"]
    assert (g.ckpt_key, g.status) == ("0.weight_g", "match")
    model = make()
    report = sdw.partial_load(model, cmp.plan())
    assert sorted(report.loaded) == sorted(r.key for r in cmp)
    truth = make()
    truth.load_state_dict(sd)
    assert_same_state(model, truth)
    path = tmp_path / "old.pt"
    torch.save(sd, path)
    exported = make()
    run_exported(sdw.compare(make(), path).plan(), exported)  # to_code() ends in the same state
    assert_same_state(exported, truth)


def test_version_less_spectral_norm_and_batchnorm_before_v2():
    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.utils.spectral_norm(nn.Linear(3, 3)), nn.BatchNorm1d(3))

    sd = make().state_dict()
    del sd._metadata  # type: ignore[attr-defined]  # a safetensors-like dict: no versions
    cmp = assert_agrees(make, sd)
    assert cmp.loads_cleanly

    bn_old = nn.Sequential(nn.BatchNorm1d(3)).state_dict()
    del bn_old["0.num_batches_tracked"]
    bn_old._metadata["0"]["version"] = 1  # type: ignore[attr-defined]
    bn = seeded(lambda: nn.Sequential(nn.BatchNorm1d(3)), 0)
    cmp = assert_agrees(bn, bn_old)  # torch fills num_batches_tracked in: not missing
    row = cmp["0.num_batches_tracked"]
    assert row.status == "match" and row.ckpt_key is None and cmp.loads_cleanly
    plan = cmp.plan()
    assert "0.num_batches_tracked" not in plan.entries
    assert "BatchNorm of version < 2" in plan.skipped["0.num_batches_tracked"]


def test_lazy_module_takes_the_checkpoints_shape():
    sd = nn.Linear(5, 10).state_dict()
    cmp = assert_agrees(lambda: nn.LazyLinear(10), sd)  # no RuntimeError
    assert cmp["weight"].model_shape == (10, 5) and cmp["weight"].status == "match"
    model = nn.LazyLinear(10)
    model.load_state_dict(cmp.plan().state_dict(model))
    assert model.weight.shape == (10, 5) and torch.equal(model.weight, sd["weight"])


def test_partial_load_refuses_uninitialised_lazy_modules_before_anything_changes():
    """torch's load gives a lazy parameter its shape by changing that tensor object in place,
    so an undo would have nothing to put back: a typed LoadError before anything is read or
    changed, and both ways out it names work (a forward pass first; or torch's load, no undo).
    The Explorer says the same and keeps the model as it was."""
    from torch.nn.parameter import is_lazy

    from sd_widgets import Explorer

    def lazy() -> nn.Module:
        return nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d())

    src = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    src(torch.randn(8, 3))  # running statistics that differ from a fresh module's
    sd = src.state_dict()
    model = lazy()
    cmp = sdw.compare(model, sd)
    assert cmp.loads_cleanly and cmp["0.weight"].model_shape == (4, 3)
    with pytest.raises(sdw.LoadError, match="lazy modules not initialised yet") as info:
        sdw.partial_load(model, cmp.plan())
    assert "Nothing was changed" in str(info.value) and "forward pass" in str(info.value)
    assert all(is_lazy(t) for t in [*model.parameters(), model[1].running_mean])

    w = Explorer(model, sd)
    w.handle_action({"action": "load"})
    assert w.message["level"] == "error" and "lazy modules" in w.message["text"], w.message
    assert not w.can_undo and all(is_lazy(p) for p in model.parameters())
    w.handle_action({"action": "compare_values"})  # no values to read: not compared, not raised
    assert w.message["level"] == "info" and "6 not compared" in w.message["text"], w.message
    # a forward pass gives the parameters their shapes in place: the Explorer sees the change,
    # and after Refresh it loads (and undoes) as for any model
    model(torch.randn(2, 3))
    assert w.check_stale() and {"0.weight", "1.running_mean"} <= set(w.stale["keys"]), w.stale
    w.handle_action({"action": "refresh"})
    ran = {k: v.clone() for k, v in model.state_dict().items()}
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    w.handle_action({"action": "undo"})
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ran.items())

    # torch's own load, without undo, as the message says; it changes the parameter object in
    # place (the control: nothing of the uninitialised parameter is left to put back)
    plain = lazy()
    obj = plain[0].weight
    plain.load_state_dict(sdw.compare(plain, sd).plan().state_dict(plain), strict=False)
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in sd.items())
    assert plain[0].weight is obj and type(obj) is nn.Parameter
    # or a forward pass first: then partial_load loads and undoes
    warmed = lazy()
    warmed(torch.randn(2, 3))
    before = {k: v.clone() for k, v in warmed.state_dict().items()}
    report = sdw.partial_load(warmed, sdw.compare(warmed, sd).plan())
    assert all(torch.equal(warmed.state_dict()[k], v) for k, v in sd.items())
    report.undo()
    assert all(torch.equal(warmed.state_dict()[k], v) for k, v in before.items())


# --------------------------------------------------------------------- ties and duplicates


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(6, 4)
        self.head = nn.Linear(4, 6, bias=False)
        self.head.weight = self.embed.weight


def test_a_tied_key_absent_from_the_file_is_tied_not_a_problem():
    sd = OrderedDict((k, v) for k, v in seeded(TiedLM, 1)().state_dict().items() if "head" not in k)
    cmp = assert_agrees(seeded(TiedLM, 0), sd)
    row = cmp["head.weight"]
    assert row.status == "tied" and row.tied_to == "embed.weight"
    assert "still lists it as missing" in row.reason
    assert not any(cmp.summary()[s] for s in PROBLEM_STATUSES)


def test_one_tensor_under_two_names_with_different_values_the_last_one_wins():
    sd = seeded(TiedLM, 1)().state_dict()
    sd["head.weight"] = torch.full_like(sd["embed.weight"], 3.0)  # not the same tensor
    cmp = assert_agrees(seeded(TiedLM, 0), sd)
    assert cmp.conflicts == [("embed.weight", "head.weight")]
    plan = cmp.plan()
    assert list(plan.entries) == ["head.weight"]
    assert (
        "torch keeps" in plan.skipped["embed.weight"] or "last one" in plan.skipped["embed.weight"]
    )
    model = seeded(TiedLM, 0)()
    sdw.partial_load(model, plan)
    assert torch.equal(model.embed.weight, sd["head.weight"])  # as torch leaves it


def test_a_buffer_shared_by_two_modules_is_not_said_to_keep_its_value():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Module()
            self.b = nn.Module()
            table = torch.zeros(4)
            self.a.register_buffer("table", table)
            self.b.register_buffer("table", table)

    sd = OrderedDict([("a.table", torch.arange(4.0))])
    cmp = assert_agrees(Shared, sd)
    row = cmp["b.table"]
    assert row.status == "tied" and row.tied_to == "a.table"
    assert "keeps its current value" not in row.reason
    model = Shared()
    sdw.partial_load(model, cmp.plan())
    assert torch.equal(model.b.table, torch.arange(4.0))


# ------------------------------------------------------------------ transformers' loading info


transformers = pytest.importorskip("transformers")


def _tiny(name: str) -> Any:
    from transformers import BertConfig, GPT2Config, LlamaConfig

    common = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2)
    if name == "gpt2":
        return GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32)
    if name == "llama":
        return LlamaConfig(**common, intermediate_size=24, max_position_embeddings=32)
    return BertConfig(**common, intermediate_size=24, max_position_embeddings=32, num_labels=3)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("gpt2", "GPT2LMHeadModel"),
        ("llama", "LlamaForCausalLM"),
        ("llama-tied", "LlamaForCausalLM"),
    ],
)
def test_every_causal_lm_saved_with_save_pretrained_opens_with_no_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, cls: str
):
    from sd_widgets.cli import _main as cli

    model_cls = getattr(transformers, cls)
    config = _tiny(name.split("-")[0])
    if name.endswith("tied"):
        config.tie_word_embeddings = True
    torch.manual_seed(0)
    saved = model_cls(config)
    saved.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    torch.manual_seed(1)
    model = model_cls(config)
    cmp = sdw.compare(model, path)
    problems = {s: n for s, n in cmp.summary().items() if n and s not in ("match", "tied")}
    assert problems == {}
    tied = set(cmp.keys("tied"))
    assert tied == (
        {"lm_head.weight"} if model.lm_head.weight is model.get_input_embeddings().weight else set()
    )
    code = cli.main(["diff", str(path), "--model", f"hf:{tmp_path}"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    assert "OK: loads cleanly" in out
    # the load leaves the model as transformers' own from_pretrained does
    sdw.partial_load(model, cmp.plan())
    peer = model_cls.from_pretrained(tmp_path)
    assert_same_state(model, peer)


def test_base_checkpoint_into_a_task_model_missing_and_mismatched_as_transformers_says(
    tmp_path: Path,
):
    from transformers import BertForSequenceClassification

    config = _tiny("bert")
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    bigger = _tiny("bert")
    bigger.num_labels = 5
    peer, info = BertForSequenceClassification.from_pretrained(
        tmp_path, config=bigger, ignore_mismatched_sizes=True, output_loading_info=True
    )
    torch.manual_seed(1)
    model = BertForSequenceClassification(bigger)
    cmp = sdw.compare(model, tmp_path / "model.safetensors")
    mismatched = {k for k, *_ in info["mismatched_keys"]}
    assert set(cmp.keys("shape_mismatch")) == mismatched == {"classifier.weight", "classifier.bias"}
    assert set(cmp.keys(MISSING)) == set(info["missing_keys"])
    assert set(cmp.keys("unexpected")) == set(info["unexpected_keys"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdw.partial_load(model, cmp.plan())
    state, theirs = model.state_dict(), peer.state_dict()
    for k in state:
        if k not in mismatched:
            assert torch.equal(state[k], theirs[k]), k


def test_pre_1_0_spectral_norm_checkpoint_weight_is_consumed_by_its_hook():
    """A spectral_norm checkpoint from before ``weight_v`` existed (``weight`` instead): torch's
    hook computes ``weight_v`` from it, "All keys matched". compare agrees and the plan's dict
    loads as torch loads; partial_load does not yet pass a key the model does not have (pinned:
    it refuses before touching anything)."""

    def make() -> nn.Module:
        torch.manual_seed(1)
        return nn.utils.spectral_norm(nn.Linear(3, 3))

    torch.manual_seed(0)
    saved = nn.utils.spectral_norm(nn.Linear(3, 3))
    sd = saved.state_dict()
    old = OrderedDict(
        [
            ("bias", sd["bias"]),
            ("weight_orig", sd["weight_orig"]),
            ("weight_u", sd["weight_u"]),
            ("weight", saved.weight.detach().clone()),
        ]
    )
    old._metadata = OrderedDict([("", {"version": 1})])  # type: ignore[attr-defined]
    cmp = assert_agrees(make, old)
    assert cmp.loads_cleanly
    assert cmp["weight"].model_key is None and cmp["weight"].status == "match"
    assert cmp["weight_v"].ckpt_key is None and cmp["weight_v"].status == "match"
    model = make()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(sdw.LoadError, match="Nothing was changed"):
        sdw.partial_load(model, cmp.plan())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
