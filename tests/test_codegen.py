"""Code export (``plan.to_code()``): the exported file performs exactly the partial load.

Every case is run the three ways a user runs it and compared bit for bit with
``sdw.partial_load``: (a) executed as a notebook cell does (``exec`` in a ``__main__`` namespace
that holds the model), (b) in a fresh interpreter as a script (``__main__`` without a model: it
only says how to call it) and (c) imported as a module (nothing happens until it is called), then
called. The subprocess runs are batched: one interpreter for every case of a test.

Hostile names (hypothesis): keys, entry names, rename patterns and paths with newlines, quotes
of every kind, backslashes, NUL and lone surrogates; the export must compile, stay ASCII, perform
exactly the load, and run nothing (a marker file the names try to create never appears).
"""

from __future__ import annotations

import argparse
import collections
import copy
import datetime
import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from bitwise import assert_bit_identical, state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import sd_widgets as sdw
from sd_widgets import demo
from sd_widgets.plan._codegen import LoadSpec, to_code

HERE = pathlib.Path(__file__).parent

# --------------------------------------------------------------------------------- running


def exec_as_notebook_cell(code: str, model: nn.Module, name: str = "model") -> dict[str, Any]:
    """What IPython does with a pasted cell: run it as ``__main__`` in the user's namespace."""
    namespace: dict[str, Any] = {"__name__": "__main__", name: model}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # DCP: "torch.distributed is disabled"
        exec(compile(code, "<notebook cell>", "exec"), namespace)
    return namespace


def import_as_module(code: str, path: pathlib.Path) -> Any:
    path.write_text(code, encoding="ascii")
    name = f"sdw_export_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNER = textwrap.dedent('''
    """Run exports in a fresh interpreter: as a script, then imported as a module and called."""
    import contextlib, importlib.util, io, json, runpy, sys, warnings
    import torch

    warnings.simplefilter("ignore", UserWarning)
    results = []
    for job in json.load(open(sys.argv[1])):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):  # `python export.py`: no model in this process
            globals_after = runpy.run_path(job["export"], run_name="__main__")
        spec = importlib.util.spec_from_file_location("exported_" + str(len(results)),
                                                      job["export"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # imported: must do nothing by itself
        side_effects = sorted(n for n in ("result", "model") if hasattr(module, n))
        model = torch.load(job["model"], weights_only=False)
        state = job.get("state")
        state = module.read_checkpoint() if state is None else torch.load(state)
        module.load_partial(model, state)
        torch.save(model.state_dict(), job["out"])
        results.append({"stdout": out.getvalue(), "script_loaded": "result" in globals_after,
                        "side_effects": side_effects})
    json.dump(results, open(sys.argv[2], "w"))
''')


def run_in_subprocess(jobs: list[dict[str, Any]], tmp: pathlib.Path) -> list[dict[str, Any]]:
    """Run every job's export in ONE fresh interpreter (a script run + an import + a call)."""
    runner = tmp / "runner.py"
    runner.write_text(RUNNER)
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    proc = subprocess.run(
        [sys.executable, str(runner), str(tmp / "jobs.json"), str(tmp / "results.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp / "results.json").read_text())


# ----------------------------------------------------------------------------------- cases


def _prefixed(sd, prefix: str) -> collections.OrderedDict:
    out = collections.OrderedDict((prefix + k, v) for k, v in sd.items())
    out._metadata = collections.OrderedDict(  # type: ignore[attr-defined]
        ((prefix + p if p else prefix[:-1]), dict(v)) for p, v in sd._metadata.items()
    )
    return out


def _stirred(model: nn.Module, channels: int = 3) -> nn.Module:
    """A few training steps so BN buffers hold values of their own, then eval."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, channels, 16, 16, generator=torch.Generator().manual_seed(3)))
    return model.eval()


def first_conv_net(in_channels: int) -> nn.Sequential:
    """A ResNet stem (64x3x7x7 conv, BN) and a head; plain torch classes (picklable anywhere)."""
    torch.manual_seed(in_channels)
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def _leaf_named(sd) -> collections.OrderedDict:
    """TensorFlow-style BatchNorm names: ``bn.gamma``/``bn.beta`` for ``weight``/``bias``."""
    tf_names = {"weight": "gamma", "bias": "beta"}
    out = collections.OrderedDict()
    for k, v in sd.items():
        module, _, leaf = k.rpartition(".")
        if module + ".running_mean" in sd:  # a BatchNorm
            leaf = tf_names.get(leaf, leaf)
        out[f"{module}.{leaf}"] = v
    out._metadata = sd._metadata  # type: ignore[attr-defined]
    return out


def _half_everything(sd) -> collections.OrderedDict:
    """``{k: v.half()}``: what a careless fp16 conversion does (num_batches_tracked too)."""
    out = collections.OrderedDict((k, v.half()) for k, v in sd.items())
    out._metadata = sd._metadata  # type: ignore[attr-defined]
    return out


@dataclass
class Case:
    model: Callable[[], nn.Module]
    #: (tmp dir) -> what compare() reads
    source: Callable[[pathlib.Path], Any]
    plan: dict[str, Any] = field(default_factory=dict)
    compare: dict[str, Any] = field(default_factory=dict)


def _cnn(num_classes: int = 10) -> Callable[[], nn.Module]:
    return lambda: _stirred(demo.make_model("cnn", num_classes=num_classes, seed=1))


def _file(sd_factory: Callable[[], Any], fmt: str, name: str = "ckpt") -> Callable[..., Any]:
    return lambda tmp: demo.save(sd_factory(), tmp / f"{name}-{fmt}", fmt)


IDENTICAL = lambda: demo.variant("identical")  # noqa: E731

CASES: dict[str, Case] = {
    "plain": Case(_cnn(), _file(IDENTICAL, "torch")),
    "subset": Case(
        _cnn(),
        _file(IDENTICAL, "torch"),
        dict(include=["backbone.layer1", "*.bias"], exclude="backbone.layer1.0.bn2"),
    ),
    "prefix": Case(
        _cnn(),
        _file(lambda: _prefixed(IDENTICAL(), "module."), "torch"),
        dict(renames={"module.": ""}),
    ),
    "regex": Case(
        _cnn(),
        _file(lambda: _prefixed(demo.variant("renamed_layer"), "module."), "torch"),
        dict(renames=[("module.", ""), ("re:^fc\\.", "classifier.")]),
    ),
    "exact": Case(
        _cnn(),
        _file(lambda: demo.variant("renamed_layer"), "torch"),
        dict(renames=[("fc.weight", "classifier.weight"), ("fc.bias", "classifier.bias")]),
    ),
    "leaf": Case(
        _cnn(),
        _file(lambda: _leaf_named(IDENTICAL()), "torch"),
        dict(renames={"leaf:gamma,beta": "weight,bias"}),
    ),
    "overlap": Case(_cnn(3), _file(IDENTICAL, "torch"), dict(adapt={"classifier.*": "overlap"})),
    "input_conv_1": Case(
        lambda: first_conv_net(1),
        _file(lambda: first_conv_net(3).state_dict(), "torch"),
        dict(adapt={"0.weight": "input_conv"}),
    ),
    "input_conv_5": Case(
        lambda: first_conv_net(5),
        _file(lambda: first_conv_net(3).state_dict(), "safetensors"),
        dict(adapt="input_conv"),
    ),
    "bn_keep": Case(_cnn(), _file(IDENTICAL, "torch"), dict(bn="keep")),
    "bn_reset": Case(
        _cnn(),
        _file(IDENTICAL, "torch"),
        dict(include=["backbone.layer2", "classifier"], bn="reset"),
    ),
    "fp16_casts": Case(_cnn(), _file(lambda: demo.variant("fp16"), "torch")),
    "half_counters": Case(_cnn(), _file(lambda: _half_everything(IDENTICAL()), "torch")),
    "safetensors": Case(
        _cnn(3),
        _file(IDENTICAL, "safetensors"),
        dict(adapt={"classifier.weight": "overlap"}, bn="reset"),
    ),
    "safetensors_index": Case(_cnn(), _file(IDENTICAL, "safetensors_sharded")),
    "bin_index": Case(_cnn(), _file(IDENTICAL, "bin_sharded"), dict(exclude="classifier")),
    "dcp": Case(_cnn(), _file(IDENTICAL, "dcp"), dict(include="backbone.layer2")),
    "torch_legacy": Case(_cnn(), _file(IDENTICAL, "torch_legacy")),
    "lightning": Case(_cnn(), _file(IDENTICAL, "lightning"), dict(renames={"model.": ""})),
    "trust_list": Case(
        _cnn(),
        lambda tmp: demo.write_unsafe_checkpoint(tmp / "ns.pt"),
        compare=dict(trust=[argparse.Namespace]),
    ),
    "trust_true": Case(
        _cnn(), lambda tmp: demo.write_unsafe_checkpoint(tmp / "ns.pt"), compare=dict(trust=True)
    ),
}


@dataclass
class Built:
    name: str
    plan: sdw.LoadPlan
    code: str
    before: nn.Module  # the model before loading (a copy to load into)
    expected: collections.OrderedDict  # state after sdw.partial_load


def build(name: str, tmp: pathlib.Path) -> Built:
    case = CASES[name]
    model = case.model()
    src = case.source(tmp)
    cmp = sdw.compare(model, src, **case.compare)
    source = cmp.checkpoint.source
    trust = case.compare.get("trust")
    if isinstance(trust, list):
        # the reader records exactly the allow-list the user passed; the export admits it
        assert source.allowed_globals == tuple(trust)
    plan = cmp.plan(**case.plan)
    assert len(plan) > 0
    before = copy.deepcopy(model)
    code = plan.to_code()
    sdw.partial_load(model, plan)
    return Built(name, plan, code, before, state(model))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Built]:
    tmp = tmp_path_factory.mktemp("cases")
    out = {}
    for name in CASES:
        (tmp / name).mkdir()
        out[name] = build(name, tmp / name)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_export_pasted_into_a_notebook_cell_performs_the_load(built, name):
    b = built[name]
    compile(b.code, name, "exec")
    b.code.encode("ascii")
    model = copy.deepcopy(b.before)
    ns = exec_as_notebook_cell(b.code, model)
    assert ns["model"] is model and "result" in ns
    assert not ns["result"].unexpected_keys
    assert_bit_identical(state(model), b.expected)
    changed = [k for k, v in b.expected.items() if not torch.equal(v, state(b.before)[k])]
    assert changed  # the load changed the model: the comparison means something


@pytest.mark.parametrize("name", list(CASES))
def test_export_imported_as_a_module_does_nothing_until_called(built, name, tmp_path):
    b = built[name]
    module = import_as_module(b.code, tmp_path / f"{name}.py")
    assert not hasattr(module, "result") and not hasattr(module, "model")
    model = copy.deepcopy(b.before)
    assert_bit_identical(state(model), state(b.before))  # importing touched nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        module.load_partial(model, module.read_checkpoint())
    assert_bit_identical(state(model), b.expected)


def test_every_export_runs_as_a_script_and_as_a_module_in_a_fresh_interpreter(built, tmp_path):
    jobs = []
    for name, b in built.items():
        (tmp_path / name).mkdir()
        export = tmp_path / name / "export.py"
        export.write_text(b.code, encoding="ascii")
        torch.save(b.before, tmp_path / name / "model.pt")
        jobs.append(
            {
                "export": str(export),
                "model": str(tmp_path / name / "model.pt"),
                "out": str(tmp_path / name / "out.pt"),
            }
        )
    results = run_in_subprocess(jobs, tmp_path)
    for (name, b), job, res in zip(built.items(), jobs, results, strict=True):
        assert res["stdout"] == (
            "Build your model, then call load_partial(model, read_checkpoint()).\n"
        ), name
        assert not res["script_loaded"] and res["side_effects"] == [], name
        assert_bit_identical(torch.load(job["out"]), b.expected)


def test_plain_python_runs_the_file(built, tmp_path):
    """Literally ``python export.py``: exit 0, says how to call it, loads nothing."""
    path = tmp_path / "export.py"
    path.write_text(built["dcp"].code, encoding="ascii")
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Build your model, then call load_partial(model, read_checkpoint()).\n"


@pytest.mark.parametrize("which", ["cnn", "tied"])
def test_meta_device_model_is_assigned_as_partial_load_does(tmp_path, which):
    """A model built under ``torch.device("meta")`` has no storage to copy into: the export
    assigns (in the model's dtypes) as partial_load does, keeps ties, and leaves the rest on
    meta."""
    if which == "cnn":
        src = demo.save(demo.variant("fp16"), tmp_path / "c.safetensors", "safetensors")
        with torch.device("meta"):
            model = demo.make_model("cnn", seed=1)
        plan = sdw.compare(model, src).plan(exclude="classifier")
    else:
        src = demo.save(demo.tied_model(seed=5).state_dict(), tmp_path / "t.pt", "torch")
        with torch.device("meta"):
            model = demo.tied_model(seed=0)
        plan = sdw.compare(model, src).plan()
        assert "tied" in plan.skipped["embed.weight"]  # torch keeps the last: lm_head.weight
    code = plan.to_code()
    assert "strict=False, assign=True" in code
    ref, mine = copy.deepcopy(model), copy.deepcopy(model)
    sdw.partial_load(ref, plan)
    exec_as_notebook_cell(code, mine)
    expected, got = ref.state_dict(), mine.state_dict()
    assert list(expected) == list(got)
    for key in expected:
        assert got[key].is_meta == expected[key].is_meta, key
        assert got[key].dtype == expected[key].dtype, key
        if not expected[key].is_meta:
            assert_bit_identical({key: got[key]}, {key: expected[key]})
    loaded = [k for k, v in got.items() if not v.is_meta]
    assert loaded and len(loaded) < len(got) if which == "cnn" else len(loaded) == len(got)
    if which == "tied":
        assert mine.lm_head.weight is mine.embed.weight
    assert "strict=False, assign=True" not in built_plain_code()  # only where it is needed


def built_plain_code() -> str:
    model = demo.make_model("cnn", seed=1)
    return sdw.compare(model, demo.variant("identical")).plan().to_code()


# ------------------------------------------------------------------------------ what it says


def test_trust_is_kept_in_the_export(built):
    plain, listed, anything = (built[n].code for n in ("plain", "trust_list", "trust_true"))
    assert "weights_only=True" in plain and "weights_only=False" not in plain
    assert "safe_globals" not in plain
    # trust=[argparse.Namespace]: still weights-only, admitting exactly that class
    assert "weights_only=True" in listed and "weights_only=False" not in listed
    assert "TRUSTED = [\n    ('argparse', 'Namespace'),\n]" in listed
    assert "with torch.serialization.safe_globals(allowed):" in listed
    # trust=True: the unrestricted load, and a comment saying why it is dangerous
    assert "weights_only=False" in anything
    assert "can\n    # run any code on this machine" in anything


def test_export_of_a_trust_list_refuses_other_globals(built, tmp_path):
    """The exported reader admits Namespace only: a file needing another global is refused."""
    module = import_as_module(built["trust_list"].code, tmp_path / "trusting.py")
    other = tmp_path / "other.pt"
    torch.save(
        {"model_state_dict": demo.variant("identical"), "when": datetime.timedelta(days=1)}, other
    )
    with pytest.raises(Exception, match="Weights only load failed"):
        module.read_checkpoint(str(other))


def test_dcp_export_refuses_a_metadata_file_changed_after_export(built, tmp_path):
    import shutil

    b = built["dcp"]
    path = pathlib.Path(b.plan.comparison.checkpoint.source.path)
    copy_dir = tmp_path / "dcp"
    shutil.copytree(path, copy_dir)
    module = import_as_module(b.code, tmp_path / "dcp_export.py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        module.read_checkpoint(str(copy_dir))  # same bytes: fine
        with open(copy_dir / ".metadata", "ab") as f:
            f.write(b"\x00")
        with pytest.raises(ValueError, match="changed since the export"):
            module.read_checkpoint(str(copy_dir))
    # exporting for another directory vets its .metadata first: a pickle calling os.system is
    # refused at export time, and nothing runs
    marker = tmp_path / "ran"
    (copy_dir / ".metadata").write_bytes(
        b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    )
    with pytest.raises(sdw.UnsafeCheckpointError):
        b.plan.to_code(path=copy_dir)
    assert not marker.exists()


def test_in_memory_source_says_which_object_to_pass(tmp_path):
    ckpt = demo.variant("identical")
    model = _cnn()()
    plan = sdw.compare(model, ckpt).plan(include="backbone.layer1")
    code = plan.to_code(model_name="net")
    ns = exec_as_notebook_cell(code, copy.deepcopy(model), name="net")
    assert "result" not in ns  # no file to read: it does not guess which dict to load
    fresh = copy.deepcopy(model)
    ns["load_partial"](fresh, ckpt)
    sdw.partial_load(model, plan)
    assert_bit_identical(state(fresh), state(model))
    assert "load_partial(net, state_dict)" in code
    module = sdw.compare(model, demo.make_model("cnn", seed=4)).plan().to_code()
    assert "(for a module, its .state_dict())" in module


def test_model_name_is_the_notebook_variable(built):
    b = built["plain"]
    code = b.plan.to_code(model_name="resnet", function_name="load_into")
    assert 'if "resnet" in globals():' in code and "load_into(resnet, read_checkpoint())" in code
    model = copy.deepcopy(b.before)
    ns = exec_as_notebook_cell(code, model, name="resnet")
    assert "model" not in ns
    assert_bit_identical(state(model), b.expected)


@pytest.mark.parametrize(
    "bad", ["class", "2x", "my model", "", "KEYS", "torch", "print", "load_partial", "x\n=1"]
)
def test_model_name_must_be_a_free_identifier(built, bad):
    with pytest.raises(ValueError, match="model_name"):
        built["plain"].plan.to_code(model_name=bad)


def test_skipped_keys_listed_with_their_reasons(built):
    b = built["bn_keep"]
    ns = exec_as_notebook_cell(b.code, copy.deepcopy(b.before))
    assert ns["SKIPPED"] == b.plan.skipped and len(b.plan.skipped) == 18
    assert "SKIPPED" not in built["overlap"].code  # everything selected loads
    # many skipped keys: the first 20 are listed, and the count of the rest is said
    extra = collections.OrderedDict(demo.variant("identical"))
    extra.update((f"old_head.{i}.weight", torch.zeros(1)) for i in range(30))
    code = sdw.compare(_cnn()(), extra).plan().to_code()
    ns = exec_as_notebook_cell(code, _cnn()())
    assert list(ns["SKIPPED"]) == [f"old_head.{i}.weight" for i in range(20)]
    assert "(first 20 of 30)" in code


def test_line_count_scales_with_the_keys():
    """A 12-key load is well under 100 lines; every further key costs one line."""

    def code_for(layers: int) -> str:
        model = nn.Sequential(*(nn.Linear(4, 4) for _ in range(layers)))
        src = nn.Sequential(*(nn.Linear(4, 4) for _ in range(layers)))
        return sdw.compare(model, src.state_dict()).plan().to_code()

    small, big = code_for(6), code_for(60)
    lines_small, lines_big = len(small.splitlines()), len(big.splitlines())
    assert lines_small < 70, small
    assert lines_big - lines_small == 120 - 12


def test_spec_is_plain_frozen_data(built):
    spec = built["regex"].plan.spec()
    assert isinstance(spec, LoadSpec)
    hash(spec)
    with pytest.raises(AttributeError):
        spec.path = "/elsewhere"  # type: ignore[misc]
    assert spec.renames == (("prefix", "module.", ""), ("regex", "^fc\\.", "classifier."))
    assert spec.keys[-1] == ("classifier.bias", "module.fc.bias")
    # to_code(spec) alone makes the file: codegen needs no plan
    assert to_code(spec) == built["regex"].code
    leaf = built["leaf"].plan.spec()
    hash(leaf)
    assert leaf.renames == (("leaf", "", (("gamma", "weight"), ("beta", "bias"))),)


# ------------------------------------------------------------------------ adapters (timm)


def timm_adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """timm's formula, written out again here: 1 channel sums the RGB filters; N channels
    tile them ceil(N/3) times, keep the first N, and scale by 3/N (float32 math)."""
    w = weight.float()
    if in_chans == 1:
        out = w[:, 0:1] + w[:, 1:2] + w[:, 2:3]
    else:
        tiles = [w] * math.ceil(in_chans / 3)
        out = torch.cat(tiles, dim=1)[:, :in_chans] * (3.0 / in_chans)
    return out.to(weight.dtype)


@pytest.mark.parametrize("in_chans", [1, 2, 4, 5, 6, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_input_conv_matches_timm(in_chans, dtype):
    weight = torch.randn(64, 3, 7, 7, generator=torch.Generator().manual_seed(in_chans)).to(dtype)
    from sd_widgets.compare._adapters import ADAPTERS

    target = torch.empty(64, in_chans, 7, 7, device="meta")  # the model's values are not needed
    got = ADAPTERS["input_conv"](weight, target)
    expected = timm_adapt_input_conv(in_chans, weight)
    assert got.shape == (64, in_chans, 7, 7) and got.dtype == dtype
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    if in_chans == 1:
        torch.testing.assert_close(got, weight.float().sum(1, keepdim=True).to(dtype))
    elif in_chans % 3 == 0:  # tiled whole: a constant image gives the RGB response (3/N)
        torch.testing.assert_close(got.float().sum(1), weight.float().sum(1), rtol=1e-3, atol=1e-3)


def test_input_conv_plan_on_a_real_first_conv():
    rgb = first_conv_net(3)
    gray = first_conv_net(1)
    cmp = sdw.compare(gray, rgb.state_dict())
    row = cmp["0.weight"]
    assert row.status == "shape_mismatch"
    without = cmp.plan()
    assert "'input_conv'" in without.skipped["0.weight"] and "timm" in without.skipped["0.weight"]
    plan = cmp.plan(adapt={"0.weight": "input_conv"})
    assert plan.adapted == {"0.weight": "input_conv"}
    sdw.partial_load(gray, plan)
    torch.testing.assert_close(gray[0].weight, timm_adapt_input_conv(1, rgb[0].weight))
    # the meta device: input_conv needs no model values, overlap does
    with torch.device("meta"):
        meta = first_conv_net(4)
    meta_cmp = sdw.compare(meta, rgb.state_dict())
    assert "0.weight" in meta_cmp.plan(adapt="input_conv").adapted
    assert "meta device" in meta_cmp.plan(adapt="overlap").skipped["0.weight"]
    # not a first conv: input_conv refuses a 2-D weight, with the reason
    head = sdw.compare(demo.make_model("cnn", num_classes=3), demo.variant("identical"))
    why = head.plan(adapt={"classifier.weight": "input_conv"}).skipped["classifier.weight"]
    assert "cannot handle" in why and "2-D convolution" in why


# -------------------------------------------------------- integer buffers from float files


def test_half_state_dict_counters_load_exactly_by_default():
    """``{k: v.half()}`` turns num_batches_tracked into fp16; the default plan casts it back
    exactly (whole numbers in range) and the default partial_load succeeds."""
    src = _stirred(demo.make_model("cnn", seed=0))
    half = _half_everything(src.state_dict())
    model = demo.make_model("cnn", seed=1)
    plan = sdw.compare(model, half).plan()
    counter = "backbone.stem.bn.num_batches_tracked"
    assert plan.entries[counter].cast == ("float16", "int64")
    assert plan.state_dict()[counter].dtype == torch.int64
    sdw.partial_load(model, plan)
    assert int(model.backbone.stem.bn.num_batches_tracked) == 2


@pytest.mark.parametrize(
    ("value", "why"),
    [(2.5, "whole number"), (float("nan"), "NaN"), (1e30, "do not fit"), (-3.0, None)],
)
def test_float_counter_for_an_integer_buffer_only_when_exact(value, why):
    model = demo.make_model("cnn", seed=1)
    bad = collections.OrderedDict(demo.variant("identical"))
    counter = "backbone.stem.bn.num_batches_tracked"
    bad[counter] = torch.tensor(value, dtype=torch.float32)
    plan = sdw.compare(model, bad).plan()
    if why is None:  # -3 is whole and fits int64: cast exactly
        assert counter in plan.entries
        sdw.partial_load(model, plan)
        assert int(model.backbone.stem.bn.num_batches_tracked) == -3
        return
    assert counter not in plan.entries and why in plan.skipped[counter]
    assert "int64" in plan.skipped[counter]
    before = int(model.backbone.stem.bn.num_batches_tracked)
    sdw.partial_load(model, plan)  # the default plan loads: nothing partial_load refuses
    assert int(model.backbone.stem.bn.num_batches_tracked) == before


# ----------------------------------------------------------------------------- hostile names

MARKER_NAME = "sdw_codegen_marker"

FRAGMENTS = [
    '"""',
    "'''",
    '"',
    "'",
    "\n",
    "\r",
    "\\",
    "\x00",
    "\udc80",
    "\ud800",
    "\u2028",
    "\u202e",
    "#",
    "{",
    "}",
    "{KEYS}",
    "{NEEDED}",
    "%s",
    "\\n",
    "\\'",
    "é",
    "😀",
    "\t",
    "\x1b[31m",
    "\nimport pathlib; pathlib.Path(MARKER).touch()\n",
    "'); __import__('pathlib').Path(MARKER).touch(); ('",
    '"""\n__import__("pathlib").Path(MARKER).touch()\n"""',
]


def hostile_text(marker: str) -> st.SearchStrategy[str]:
    pieces = st.one_of(
        st.sampled_from([f.replace("MARKER", repr(marker)) for f in FRAGMENTS]),
        st.text(st.characters(exclude_categories=()), min_size=1, max_size=4),
    )
    return st.lists(pieces, min_size=1, max_size=5).map("".join)


def hostile_dir(root: pathlib.Path, name: str) -> pathlib.Path:
    """A directory named with the hostile text (what a file system allows of it)."""
    # "/" and NUL cannot be in a name; torch.load cannot open a path with a lone surrogate
    safe = "".join("_" if c in "/\x00" or 0xD800 <= ord(c) <= 0xDFFF else c for c in name)
    safe = safe[:60] or "_"
    path = root / safe
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, UnicodeEncodeError):
        path = root / "plain"
        path.mkdir(exist_ok=True)
    return path


def tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


@pytest.mark.slow
def test_hostile_names_compile_and_run_inertly(tmp_path):
    """Hypothesis: hostile checkpoint keys (renamed onto model keys), unexpected hostile keys
    (skipped, with reasons), a hostile nested entry name and a hostile directory. Each export
    is checked in process (compiles, ASCII, notebook-cell load bit-identical to partial_load),
    then all of them run in one fresh interpreter as scripts and as imported modules."""
    marker = tmp_path / MARKER_NAME
    examples: list[dict[str, Any]] = []

    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        keys=st.lists(hostile_text(str(marker)), min_size=3, max_size=3, unique=True),
        extra=st.lists(hostile_text(str(marker)), max_size=2, unique=True),
        entry=hostile_text(str(marker)),
        folder=hostile_text(str(marker)),
        fmt=st.sampled_from(["torch", "torch", "safetensors"]),
    )
    def check(keys, extra, entry, folder, fmt):
        entry = entry.replace("/", "|")  # "/" separates nested entries (a typed error)
        index = len(examples)
        model = tiny_model(index)
        target = ["0.weight", "0.bias", "1.weight"]
        src = tiny_model(index + 100).state_dict()
        sd = collections.OrderedDict((k, src[t]) for k, t in zip(keys, target, strict=True))
        sd.update((k, torch.ones(2)) for k in extra if k not in sd and k not in src)
        sd.update((k, v) for k, v in src.items() if k not in target)
        if fmt == "safetensors":
            try:
                for k in sd:
                    k.encode("utf-8")
            except UnicodeEncodeError:
                fmt = "torch"  # safetensors headers are UTF-8 JSON: surrogates cannot be saved
        where = hostile_dir(tmp_path / f"ex{index}", folder)
        if fmt == "torch":
            path = where / "ckpt.pt"
            torch.save({entry: sd, "epoch": 1}, path)
            compare_key: Any = entry
        else:
            path = where / "ckpt.safetensors"
            demo.save(sd, path, "safetensors")
            compare_key = None
        renames = [sdw.Rename.exact(k, t) for k, t in zip(keys, target, strict=True)]
        cmp = sdw.compare(model, path, key=compare_key, renames=renames)
        plan = cmp.plan()
        assert set(target) <= set(plan.keys)
        code = plan.to_code()
        compile(code, "export", "exec")
        code.encode("ascii")
        before = copy.deepcopy(model)
        sdw.partial_load(model, plan)
        notebook_model = copy.deepcopy(before)
        ns = exec_as_notebook_cell(code, notebook_model)
        assert "result" in ns
        assert_bit_identical(state(notebook_model), state(model))
        assert not marker.exists()
        export = where / "export.py"
        export.write_text(code, encoding="ascii")
        torch.save(before, where / "model.pt")
        examples.append(
            {
                "export": str(export),
                "model": str(where / "model.pt"),
                "out": str(where / "out.pt"),
                "expected": state(model),
                "names": [*keys, *extra, entry if fmt == "torch" else "", str(where)],
            }
        )

    check()
    assert len(examples) >= 20
    names = [n for e in examples for n in e["names"]]
    for nasty in ("\n", '"""', "'''", "\\", "\x00", "\udc80", repr(str(marker))):
        assert sum(nasty in n for n in names) >= 2, f"no example used {nasty!r}"
    jobs = [{k: v for k, v in e.items() if k not in ("expected", "names")} for e in examples]
    results = run_in_subprocess(jobs, tmp_path)
    for example, res in zip(examples, results, strict=True):
        assert res["side_effects"] == [] and not res["script_loaded"]
        assert_bit_identical(torch.load(example["out"]), example["expected"])
    assert not marker.exists()
    leftovers = [p for p in pathlib.Path(tempfile.gettempdir()).glob(f"*{MARKER_NAME}*")]
    assert not leftovers


def test_name_problem_is_what_to_code_checks():
    """The Explorer's model_name field can ask the same question to_code() asks."""
    from sd_widgets.plan._codegen import name_problem

    assert name_problem("model") is None and name_problem("resnet50") is None
    for bad in ("class", "2x", "", "KEYS", "read_checkpoint", "print", None, "load_partial"):
        assert name_problem(bad) is not None, bad
    assert name_problem("load_into", function_name="load_into") is not None


def test_adapter_registry_answers_for_rows():
    """One table says which adapters apply and why not: the plan's reasons and a row's text
    can end with the same clause."""
    from sd_widgets.compare._adapters import ADAPTERS, adapter_hint, applicable
    from sd_widgets.plan._plan import ADAPTERS as plan_adapters

    assert (
        list(ADAPTERS)
        == ["overlap", "input_conv", "interpolate", "resample_patch"]
        == list(plan_adapters)
    )
    assert all(a.description and callable(a.fn) for a in ADAPTERS.values())
    assert applicable((64, 3, 7, 7), (64, 1, 7, 7)) == ("overlap", "input_conv")
    assert applicable((64, 3, 7, 7), (64, 1, 7, 7), model_on_meta=True) == ("input_conv",)
    assert applicable((10, 32), (3, 32)) == ("overlap",)
    assert applicable((10, 32), (10, 32, 1, 1)) == ()
    hint = adapter_hint((10, 32), (3, 32))
    assert hint.startswith("to use it pass adapt='overlap' (copies")
    assert "adapt={'fc.weight': 'overlap'}" in adapter_hint((10, 32), (3, 32), key="fc.weight")
    none = adapter_hint((10, 32), (10, 32, 1, 1))
    assert none.startswith("no adapter applies (different number of dimensions; not a 2-D")
    assert "not an absolute position embedding" in none


def test_a_path_for_an_in_memory_plan_is_refused_with_what_to_do():
    plan = sdw.compare(demo.make_model("cnn"), demo.variant("identical")).plan()
    with pytest.raises(ValueError, match=r"in-memory mapping.*save the state dict"):
        plan.to_code(path="/somewhere/else.pt")


def test_every_kind_of_rename_rule_can_be_exported():
    """A new kind of rule in renames.py must come with its code here (else to_code raises)."""
    import typing

    from sd_widgets.compare._renames import RuleKind
    from sd_widgets.plan._codegen import _RENAME_BRANCHES

    assert set(typing.get_args(RuleKind)) == set(_RENAME_BRANCHES)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    rules=st.lists(
        st.tuples(
            st.sampled_from(["prefix", "exact", "regex", "leaf"]),
            st.text("ab.c\n'\"\\", max_size=4),
            st.text("ab.xy\n'\"", max_size=4),
        ),
        min_size=1,
        max_size=4,
    ),
    keys=st.lists(st.text("ab.c\n'\"\\", max_size=8), min_size=1, max_size=10),
)
def test_exported_rename_is_the_library_rename(rules, keys):
    """The exported ``rename`` applies the rules exactly as ``apply_renames`` does."""
    import re

    from sd_widgets.compare._renames import Rename, apply_renames

    parsed = []
    for kind, old, new in rules:
        if kind == "regex":
            parsed.append(Rename.regex(re.escape(old) or "^", new.replace("\\", "")))
        elif kind == "leaf":
            leaf_old = "".join(c for c in old if c not in ".,") or "a"
            leaf_new = "".join(c for c in new if c not in ".,") or "b"
            parsed.append(Rename.leaves({leaf_old: leaf_new}))
        else:
            parsed.append(Rename(kind, old, new))
    spec = LoadSpec(
        kind="torch",
        path="/nowhere.pt",
        renames=tuple(
            ("leaf", "", tuple(r.leaf_table.items()))
            if r.kind == "leaf"
            else (r.kind, r.old, r.new)
            for r in parsed
        ),
    )
    namespace: dict[str, Any] = {"__name__": "exported"}
    exec(compile(to_code(spec), "export", "exec"), namespace)
    for key in keys:
        assert namespace["rename"](key) == apply_renames(key, parsed), (key, parsed)
