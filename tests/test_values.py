"""compare_values(): value-level comparison, checked against independent float64 computations on
real models (a fine-tuned CNN with a "frozen" backbone, a small fine-tuned BERT from files),
streamed reads (chunks only, never a whole large tensor from a safetensors file), the edge cases
of the contract (NaN, -0.0, all zeros, casts, renames, one-sided keys) and "did it load?"."""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import sd_widgets as sdw
from sd_widgets import demo
from sd_widgets.checkpoint import Checkpoint
from sd_widgets.compare import _values as V


def reference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float | bool]:
    """The contract, computed independently with numpy in float64."""
    x, y = (
        (torch.view_as_real(t.detach()) if t.is_complex() else t.detach())
        .to(torch.float64)
        .numpy()
        .ravel()
        for t in (a, b)
    )  # a complex value is two reals
    if a.dtype == b.dtype:
        equal = a.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() == (
            b.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    else:
        equal = bool(np.all((x == y) | (np.isnan(x) & np.isnan(y))))
    d = y - x
    na, nb = float(np.sqrt(np.sum(x * x))), float(np.sqrt(np.sum(y * y)))
    if equal:
        rel = 0.0
    elif na == 0:
        rel = math.inf if np.any(d != 0) else 0.0
    else:
        rel = float(np.sqrt(np.sum(d * d)) / na)
    cos = float(np.dot(x, y) / (na * nb)) if na > 0 and nb > 0 else math.nan
    return {
        "equal": equal,
        "max_abs_diff": 0.0 if equal else float(np.max(np.abs(d))) if d.size else 0.0,
        "rel_l2_change": rel,
        "cosine": cos,
    }


def check_against_reference(
    frame: pd.DataFrame, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], keys
) -> None:
    rows = frame.set_index("key")
    for k in keys:
        want = reference(a[k], b[k])
        got = rows.loc[k]
        assert bool(got["equal"]) == want["equal"], k
        for col in ("max_abs_diff", "rel_l2_change", "cosine"):
            w, g = want[col], float(got[col])
            if math.isnan(w):
                assert math.isnan(g), (k, col, g)
            elif math.isinf(w):
                assert g == w, (k, col, g)
            else:
                assert g == pytest.approx(w, rel=1e-9, abs=1e-12), (k, col, g, w)


# ---------------------------------------------------------------------------- a fine-tuned CNN


@pytest.fixture(scope="module")
def cnn_pair() -> tuple[nn.Module, nn.Module]:
    base = demo.pretrained("cnn")
    tuned = demo.fine_tune(demo.pretrained("cnn"), freeze="backbone", steps=5)
    return base, tuned


def test_frozen_backbone_bn_statistics_change_and_nothing_else(cnn_pair):
    base, tuned = cnn_pair
    vc = sdw.compare_values(base, tuned)
    frame = vc.to_frame()
    assert list(frame.columns[:6]) == [
        "key",
        "status",
        "equal",
        "max_abs_diff",
        "rel_l2_change",
        "cosine",
    ]
    for col in ("max_abs_diff", "rel_l2_change", "cosine"):
        assert frame[col].dtype == np.float64
    a, b = base.state_dict(), tuned.state_dict()
    check_against_reference(frame, a, b, list(a))
    rows = frame.set_index("key")
    backbone_params = [k for k, _ in base.backbone.named_parameters(prefix="backbone")]
    assert backbone_params and all(rows.loc[k, "equal"] for k in backbone_params)
    bn_stats = [k for k in a if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(not rows.loc[k, "equal"] for k in bn_stats)
    assert not rows.loc["classifier.weight", "equal"]
    assert vc.summary()["identical"] == len(backbone_params)
    assert vc.summary()["changed"] == len(a) - len(backbone_params)
    callouts = vc.frozen_bn_changes()
    assert list(callouts) == ["backbone"]
    assert "6 BatchNorm layers changed" in callouts["backbone"]
    mods = vc.by_module().set_index("module")
    assert mods.loc["backbone", "tensors"] == 6 * 5 + 6  # 6 convs, 6 BN x 5 entries
    assert mods.loc["backbone.stem.conv", "text"] == "backbone.stem.conv: 0 of 1 tensor changed"
    assert mods.loc["classifier", "changed"] == 2


def test_truly_frozen_in_eval_mode_changes_only_the_head():
    base = demo.pretrained("cnn")
    tuned = demo.fine_tune(demo.pretrained("cnn"), steps=3, train_mode=False)
    vc = sdw.compare_values(base, tuned)
    changed = {r.key for r in vc if r.changed}
    assert changed == {"classifier.weight", "classifier.bias"}
    assert vc.frozen_bn_changes() == {}
    assert vc.by_module().set_index("module").loc["backbone", "changed"] == 0


def test_files_in_every_format_give_the_same_rows(cnn_pair, tmp_path):
    base, tuned = cnn_pair
    by_key = "key"
    expected = sdw.compare_values(base, tuned).to_frame().sort_values(by_key, ignore_index=True)
    for fmt, name in (("torch", "m.pt"), ("safetensors", "m.safetensors")):
        pa = demo.save(base.state_dict(), tmp_path / f"a-{name}", format=fmt)
        pb = demo.save(tuned.state_dict(), tmp_path / f"b-{name}", format=fmt)
        got = sdw.compare_values(pa, pb).to_frame().sort_values(by_key, ignore_index=True)
        pd.testing.assert_frame_equal(got, expected)


# ------------------------------------------------------------------------------- a small BERT


@pytest.fixture(scope="module")
def bert_files(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from realworld import bert_config, build

    root = tmp_path_factory.mktemp("bert")
    base = build(transformers.BertModel, bert_config(), seed=0)
    base.save_pretrained(root / "base")
    tuned = transformers.BertForSequenceClassification.from_pretrained(root / "base", num_labels=3)
    tuned.bert.encoder.layer[0].requires_grad_(False)
    opt = torch.optim.SGD([p for p in tuned.parameters() if p.requires_grad], lr=0.1)
    gen = torch.Generator().manual_seed(0)
    tuned.train()
    for _ in range(2):
        ids = torch.randint(0, 120, (4, 12), generator=gen)
        loss = tuned(input_ids=ids, labels=torch.tensor([0, 1, 2, 0])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    tuned.save_pretrained(root / "tuned")
    return root / "base" / "model.safetensors", root / "tuned" / "model.safetensors"


def test_fine_tuned_bert_from_safetensors_against_numpy(bert_files, monkeypatch):
    a_path, b_path = bert_files
    a, b = load_file(a_path), load_file(b_path)
    renamed = {k.removeprefix("bert."): k for k in b}
    vc = sdw.compare_values(a_path, b_path, renames={"bert.": ""})
    frame = vc.to_frame()
    both = [k for k in a if k in renamed]
    assert len(both) == len(a)  # every base key pairs up with a renamed tuned key
    check_against_reference(frame, a, {k: b[renamed[k]] for k in both}, both)
    rows = frame.set_index("key")
    assert rows.loc["classifier.weight", "status"] == "unexpected"
    assert rows.loc["classifier.weight", "change"] == "not_compared"
    frozen = [k for k in both if k.startswith("encoder.layer.0.")]
    assert frozen and all(rows.loc[k, "equal"] for k in frozen)
    assert not rows.loc["encoder.layer.1.output.dense.weight", "equal"]
    # the same numbers when every tensor is streamed in tiny blocks
    monkeypatch.setattr(V, "SMALL_BYTES", 0)
    monkeypatch.setattr(V, "READ_ELEMENTS", 1000)
    streamed = sdw.compare_values(a_path, b_path, renames={"bert.": ""}).to_frame()
    check_against_reference(streamed, a, {k: b[renamed[k]] for k in both}, both)


def test_large_tensors_are_read_in_row_blocks_only(bert_files, monkeypatch):
    """Never a whole large tensor from a safetensors file: only blocks of rows."""
    a_path, b_path = bert_files
    monkeypatch.setattr(V, "SMALL_BYTES", 0)
    monkeypatch.setattr(V, "READ_ELEMENTS", 2000)
    blocks: list[int] = []
    real_rows = Checkpoint.read_rows

    def counting_rows(self, key, start, stop):
        t = real_rows(self, key, start, stop)
        blocks.append(t.numel())
        return t

    def no_whole_tensors(self, keys):
        keys = list(keys)
        assert all(not self[k].shape for k in keys), f"whole tensors read: {keys[:3]}"
        return Checkpoint._read(self, keys)

    monkeypatch.setattr(Checkpoint, "read_rows", counting_rows)
    monkeypatch.setattr(Checkpoint, "tensors", no_whole_tensors)
    vc = sdw.compare_values(a_path, b_path, renames={"bert.": ""})
    assert vc.summary()["changed"] > 0
    assert blocks and max(blocks) <= 2000 + 32 * 48  # a block is at most one row over
    word = load_file(a_path)["embeddings.word_embeddings.weight"]
    assert sum(blocks) >= 2 * sum(t.numel() for t in load_file(a_path).values()) - 2 * 16
    assert word.numel() > 2000


# ------------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("streamed", [False, True], ids=["packed", "streamed"])
def test_the_contract_edge_cases(streamed, monkeypatch):
    if streamed:  # every pair streamed in blocks of 2 values (rows of 1-D tensors)
        monkeypatch.setattr(V, "SMALL_BYTES", -1)
        monkeypatch.setattr(V, "READ_ELEMENTS", 2)
    nan = float("nan")
    a = {
        "same": torch.tensor([1.0, 2.0, 3.0]),
        "same_nan": torch.tensor([1.0, nan, 3.0]),
        "nan_appeared": torch.tensor([1.0, 2.0, 3.0]),
        "from_zero": torch.zeros(4),
        "still_zero": torch.zeros(4),
        "neg_zero": torch.tensor([0.0, 1.0]),
        "cast_exact": torch.tensor([0.5, -2.25], dtype=torch.float32),
        "cast_lossy": torch.tensor([0.1, 1 / 3], dtype=torch.float32),
        "tiny": torch.full((1000,), 1.0),
        "ints": torch.tensor([1, 2, 3]),
        "empty": torch.zeros(0),
        "scalar": torch.tensor(3.0),
        "resized": torch.zeros(3),
        "only_a": torch.ones(2),
        "bf16": torch.tensor([1.0, 2.0], dtype=torch.bfloat16),
    }
    b = {
        "same": torch.tensor([1.0, 2.0, 3.0]),
        "same_nan": torch.tensor([1.0, nan, 3.0]),
        "nan_appeared": torch.tensor([1.0, nan, 3.0]),
        "from_zero": torch.tensor([0.0, 0.5, 0.0, 0.0]),
        "still_zero": torch.zeros(4),
        "neg_zero": torch.tensor([-0.0, 1.0]),
        "cast_exact": torch.tensor([0.5, -2.25], dtype=torch.float16),
        "cast_lossy": torch.tensor([0.1, 1 / 3], dtype=torch.float16),
        "tiny": torch.full((1000,), 1.0).index_fill_(0, torch.tensor([7]), 1.0001),
        "ints": torch.tensor([1, 2, 4]),
        "empty": torch.zeros(0),
        "scalar": torch.tensor(-3.0),
        "resized": torch.zeros(4),
        "only_b": torch.ones(2),
        "bf16": torch.tensor([1.0, 2.0], dtype=torch.bfloat16),
    }
    vc = sdw.compare_values(a, b)
    rows = {r.key: r for r in vc}
    common = [k for k in a if k in b and a[k].shape == b[k].shape]
    check_against_reference(vc.to_frame(), a, b, common)
    assert rows["same_nan"].equal and rows["same_nan"].change == "identical"
    assert rows["nan_appeared"].change == "nan_appeared" and rows["nan_appeared"].b_nan == 1
    assert rows["from_zero"].rel_l2_change == math.inf and rows["from_zero"].change == "from_zero"
    assert rows["still_zero"].equal and rows["still_zero"].rel_l2_change == 0.0
    # -0.0 and 0.0: different bytes, equal values
    assert not rows["neg_zero"].equal and rows["neg_zero"].rel_l2_change == 0.0
    assert rows["cast_exact"].status == "dtype_mismatch" and rows["cast_exact"].equal
    assert not rows["cast_lossy"].equal and rows["cast_lossy"].change == "tiny"
    assert rows["tiny"].change == "tiny" and rows["ints"].change == "large"
    assert rows["empty"].equal and rows["scalar"].cosine == pytest.approx(-1.0)
    assert rows["bf16"].equal
    for k, status in (("resized", "shape_mismatch"), ("only_a", "missing"), ("only_b", None)):
        r = rows[k]
        assert r.change == "not_compared" and not r.equal and math.isnan(r.rel_l2_change)
        if status:
            assert r.status == status
    assert rows["only_b"].status == "unexpected"
    assert not vc.keys_match and not vc.identical
    s = vc.summary()
    assert s["not_compared"] == 3 and s["nan_appeared"] == 1 and s["from_zero"] == 1
    assert [r.key for r in vc.most_changed(2)] == ["nan_appeared", "from_zero"]
    json_row = rows["from_zero"].to_json()
    assert json_row["rel_l2_change"] is None and json_row["rel_l2_change_text"] == "inf"


_DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int16,
    torch.uint8,
    torch.bool,
    torch.complex64,
]


def _values_like(n: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.rand(n, generator=g) > 0.5
    if not (dtype.is_floating_point or dtype.is_complex):
        return torch.randint(0, 200, (n,), generator=g).to(dtype)
    if dtype.is_complex:
        return torch.complex(torch.randn(n, generator=g), torch.randn(n, generator=g) * 3)
    return (torch.randn(n, generator=g) * 3).to(dtype)


@pytest.mark.parametrize("streamed", [False, True], ids=["packed", "streamed"])
def test_segments_around_the_kernel_step_in_every_dtype_against_numpy(streamed, monkeypatch):
    """Lengths around the fused pass's inner step (2,048), NaN and inf at its edges, one changed
    element at either end, every dtype and cross-dtype pair: the numbers of the numpy reference."""
    if streamed:
        monkeypatch.setattr(V, "SMALL_BYTES", -1)
        monkeypatch.setattr(V, "READ_ELEMENTS", 3000)
    g = torch.Generator().manual_seed(7)
    a: dict[str, torch.Tensor] = {}
    b: dict[str, torch.Tensor] = {}
    for n, da, db in itertools.product(
        (1, 2047, 2048, 2049, 6001),
        _DTYPES,
        (None, torch.float32, torch.float64),
    ):
        x = _values_like(n, da, g)
        for how in ("same", "first", "last", "nan_edge", "inf"):
            y = x.clone()
            if how == "first":
                y[0] = y[0] + 1 if da != torch.bool else ~y[0]
            elif how == "last":
                y[-1] = y[-1] + 1 if da != torch.bool else ~y[-1]
            elif how in ("nan_edge", "inf") and (da.is_floating_point or da.is_complex):
                y[min(2047, n - 1)] = float("nan") if how == "nan_edge" else float("inf")
            if db is not None:
                if da.is_complex:
                    continue
                y = y.to(db)
            key = f"{n}.{str(da)[6:]}.{db and str(db)[6:]}.{how}"
            a[key], b[key] = x, y
    frame = sdw.compare_values(a, b).to_frame()
    check_against_reference(frame, a, b, list(a))
    rows = frame.set_index("key")
    for key in a:  # NaN counts, per real component
        assert rows.loc[key, "b_nan"] == int(
            torch.isnan(
                torch.view_as_real(b[key]) if b[key].is_complex() else b[key].double()
            ).sum()
        ), key


def test_identical_checkpoints_and_renames(tmp_path):
    sd = demo.pretrained("cnn").state_dict()
    path = demo.save(sd, tmp_path / "a.safetensors", format="safetensors")
    vc = sdw.compare_values(path, path)
    assert vc.identical and vc.keys_match
    assert vc.summary() == {"identical": len(sd), "changed": 0, "not_compared": 0}
    ddp = {f"module.{k}": v for k, v in sd.items()}
    vc = sdw.compare_values(sd, ddp, renames={"module.": ""})
    assert vc.identical
    assert {r.b_key for r in vc} == set(ddp)


def test_a_meta_model_has_no_values_to_compare():
    with torch.device("meta"):
        model = demo.make_model("cnn")
    vc = sdw.compare_values(model, demo.pretrained("cnn").state_dict())
    assert {r.change for r in vc} == {"not_compared"}


class _Stepped(nn.Module):
    """A module with extra state that is not a tensor (a step counter)."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.step = step

    def get_extra_state(self) -> dict:
        return {"step": self.step}

    def set_extra_state(self, state: dict) -> None:
        self.step = state["step"]


def test_extra_state_that_is_not_a_tensor_is_not_compared_from_a_model_or_a_file(tmp_path):
    """A model with non-tensor extra state used to fail the whole comparison (KeyError
    '_extra_state'); it is a row with no values to compare, the tensors are compared."""
    torch.manual_seed(0)
    a, b = _Stepped(3), _Stepped(5)
    torch.save(b.state_dict(), tmp_path / "b.pt")
    torch.save(a.state_dict(), tmp_path / "a.pt")
    for first in (a, tmp_path / "a.pt"):
        vc = sdw.compare_values(first, tmp_path / "b.pt")
        changes = {r.key: r.change for r in vc}
        assert changes == {
            "lin.weight": "large",
            "lin.bias": "large",
            "_extra_state": "not_compared",
        }


# ------------------------------------------------------------------------------ did it load?


def test_did_it_load_after_a_partial_load():
    model = demo.target_model("new_head")
    ckpt = demo.variant("new_head")
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    cmp = sdw.compare(model, ckpt)
    report = sdw.partial_load(model, cmp.plan(include=[r.key for r in cmp if r.loadable]))
    vc = sdw.compare_values(model, ckpt)
    loaded = set(report.loaded)
    assert all(r.equal for r in vc if r.key in loaded)
    # everything else still holds its initial values
    for r in vc:
        if r.key not in loaded:
            assert torch.equal(model.state_dict()[r.key], fresh[r.key])
    line = report.did_it_load()
    assert line.startswith(f"Yes: all {len(loaded)} loaded tensors equal the checkpoint")
    assert "2 other model tensors kept their own values" in line
    assert "classifier.weight" in line and "\n" not in line


def test_did_it_load_says_no_when_the_model_changed_after_the_load():
    model = demo.target_model("identical")
    ckpt = demo.variant("identical")
    report = sdw.partial_load(model, sdw.compare(model, ckpt).plan())
    with torch.no_grad():
        model.backbone.stem.conv.weight.add_(1.0)
    line = report.did_it_load()
    assert line.startswith("NO: 1 of 38 loaded tensors differ from the checkpoint")
    assert "backbone.stem.conv.weight" in line


def test_unreadable_inputs_raise_typed_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    with pytest.raises(sdw.CheckpointError):
        sdw.compare_values(bad, {"a": torch.ones(1)})


def test_save_file_roundtrip_keeps_rows(tmp_path):
    """A checkpoint truncated after opening gives a typed error, not a crash."""
    sd = {"w": torch.randn(3000, 100)}
    path = tmp_path / "w.safetensors"
    save_file(sd, path)
    vc = sdw.compare_values(path, sd)
    with open(path, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(sdw.CheckpointError):
        vc.rows  # noqa: B018


# ------------------------------------------------------------------------ sd-widgets diff --values


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    from sd_widgets.cli._main import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cnn_files(cnn_pair, tmp_path_factory):
    base, tuned = cnn_pair
    root = tmp_path_factory.mktemp("cli")
    sd = dict(tuned.state_dict())
    sd["evil\x1b[31m.key"] = torch.zeros(2)
    return (
        demo.save(base.state_dict(), root / "base.safetensors", format="safetensors"),
        demo.save(sd, root / "tuned.pt"),
    )


def test_cli_values_table_top_and_exit_codes(capsys, cnn_files, cnn_pair):
    base_path, tuned_path = cnn_files
    code, out, _ = run_cli(capsys, "diff", tuned_path, "--against", base_path, "--values")
    assert code == 1
    assert "evil\\x1b[31m.key" in out and "\x1b" not in out
    assert "39 keys: 18 identical, 20 changed (20 large), 1 not compared" in out
    assert "note: backbone: all 18 parameters are identical" in out
    assert "DIFFERENT: 20 tensors changed; key sets differ: 1 unexpected" in out
    code, out, _ = run_cli(
        capsys, "diff", tuned_path, "--against", base_path, "--top", "3", "--format", "jsonl"
    )
    rows = [json.loads(line) for line in out.splitlines()]
    base, tuned = cnn_pair
    a, b = base.state_dict(), tuned.state_dict()
    ranked = sorted(
        (k for k in a if not torch.equal(a[k], b[k])),
        key=lambda k: reference(a[k], b[k])["rel_l2_change"],
        reverse=True,
    )
    want = [reference(a[k], b[k])["rel_l2_change"] for k in ranked[:3]]
    assert [r["rel_l2_change"] for r in rows] == pytest.approx(want, rel=1e-9)
    assert rows[0]["key"] == ranked[0] == "backbone.stem.bn.running_mean"
    code, out, _ = run_cli(capsys, "diff", base_path, "--against", base_path, "--values")
    assert code == 0 and "IDENTICAL: the same keys, every tensor bit-identical" in out


def test_cli_values_json_and_csv_hold_the_numbers(capsys, cnn_files, cnn_pair):
    base_path, tuned_path = cnn_files
    code, out, _ = run_cli(
        capsys, "diff", tuned_path, "--against", base_path, "--values", "--format", "json"
    )
    doc = json.loads(out)
    assert code == 1 and doc["exit_code"] == 1 and doc["identical"] is False
    rows = {r["key"]: r for r in doc["rows"]}
    assert rows["evil\x1b[31m.key"]["status"] == "unexpected"  # JSON keeps the key exactly
    base, tuned = cnn_pair
    a, b = base.state_dict(), tuned.state_dict()
    for k in a:
        want = reference(a[k], b[k])
        assert rows[k]["equal"] == want["equal"]
        assert rows[k]["rel_l2_change"] == pytest.approx(want["rel_l2_change"], rel=1e-9)
    code, out, err = run_cli(
        capsys, "diff", tuned_path, "--against", base_path, "--values", "--format", "csv"
    )
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == list(V.VALUE_FIELDS)
    assert "\x1b" not in out and "DIFFERENT" in err


def test_cli_values_errors_exit_2(capsys, cnn_files, tmp_path):
    base_path, tuned_path = cnn_files
    code, _, err = run_cli(
        capsys, "diff", tuned_path, "--model", "sd_widgets.demo:SmallCNN", "--values"
    )
    assert code == 2 and "--values compares two checkpoints" in err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 4)
    code, _, err = run_cli(capsys, "diff", bad, "--against", base_path, "--values")
    assert code == 2 and err.count("\n") == 1


def test_cli_values_html_report_holds_every_rows_change(capsys, cnn_files, cnn_pair):
    import re

    base_path, tuned_path = cnn_files
    code, out, err = run_cli(
        capsys, "diff", tuned_path, "--against", base_path, "--values", "--format", "html"
    )
    assert code == 1, err
    state = json.loads(
        re.search(
            r'<script type="application/json" id="sdw-state">(.*?)</script>', out, re.S
        ).group(1)
    )
    v = state["values"]
    assert v["state"] == "ready" and v["a_is_model"] is False
    assert list(v["frozen_bn"]) == ["backbone"]
    vc = sdw.compare_values(base_path, tuned_path)
    legend = [e["change"] for e in v["legend"]]
    assert dict(zip(v["rows"]["key"], (legend[c] for c in v["rows"]["change"]), strict=True)) == {
        r.key: r.change for r in vc
    }
    assert "\x1b" not in out and "\x1b" not in out.replace("\\u001b", "")  # escaped key
    assert "\x1b" not in out
    code, _, err = run_cli(
        capsys,
        "diff",
        tuned_path,
        "--against",
        base_path,
        "--values",
        "--top",
        "3",
        "--format",
        "html",
    )
    assert code == 2 and "--top N lists the most changed rows" in err


# --------------------------------------------------------------- the results views of a load


def test_results_rank_changes_from_zero_first_and_bn_panel_plots_changed_modules():
    from sd_widgets.widget import _results

    model = demo.pretrained("cnn")
    ckpt = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt["backbone.layer1.0.bn2.running_mean"] += 0.5  # the one BatchNorm that changes
    with torch.no_grad():
        model.classifier.bias.zero_()  # a fresh bias: its load is a change from zero
    report = sdw.partial_load(model, sdw.compare(model, ckpt).plan())
    assert report.bn_modules() == ["backbone.layer1.0.bn2"]
    table = _results.results_payload(report.to_frame())
    rel = dict(zip(table["data"]["key"], table["data"]["rel_change"], strict=True))
    assert rel["classifier.bias"] == "inf"  # JSON has no infinity
    json.dumps(table, allow_nan=False)
    order = _results.most_changed(table)
    assert order[:2] == ["classifier.bias", "backbone.layer1.0.bn2.running_mean"]
    assert all(rel[k] == 0.0 for k in order[2:])


# -------------------------------------------------------------------- the Explorer's value view


def test_explorer_value_view_frozen_backbone(cnn_pair):
    base, _ = cnn_pair
    model = demo.fine_tune(demo.pretrained("cnn"), steps=5)
    w = sdw.Explorer(model, base.state_dict())
    assert (w.values or {}).get("state") in (None, "none")
    w.handle_action({"action": "compare_values"})
    v = w.values
    assert v["state"] == "ready", w.message
    json.dumps(v, allow_nan=False)  # "inf" for a change from zero, None for unmeasured
    legend = [e["change"] for e in v["legend"]]
    rows = v["rows"]
    change = {k: legend[c] for k, c in zip(rows["key"], rows["change"], strict=True)}
    vc = sdw.compare_values(model, base.state_dict())
    assert change == {r.key: r.change for r in vc}
    assert v["modules"]["backbone.stem.conv"][:2] == [1, 0]
    assert v["modules"]["backbone"][3] == "backbone: 18 of 36 tensors changed"
    assert v["callouts"] and v["callouts"][0].startswith("backbone: all 18 parameters")
    assert "requires_grad=False does not freeze BatchNorm" in w.message["text"]
    # rank 0 is the most changed tensor
    top = rows["key"][rows["rank"].index(0)]
    assert top == vc.most_changed(1)[0].key
    w.handle_action({"action": "value_plot", "key": "backbone.stem.bn.running_var"})
    assert w.value_plot["key"] == "backbone.stem.bn.running_var"
    assert w.value_plot["src"].startswith("data:image/png;base64,")
    w.handle_action({"action": "value_plot", "key": "no.such.key"})
    assert w.message["level"] == "error"
    # a load changes the model: the comparison is marked stale, not silently wrong
    w.handle_action({"action": "load"})
    assert w.values["state"] == "stale"
    w.handle_action({"action": "compare_values"})
    assert w.values["summary"]["changed"] == 0  # did it load? every tensor equals the file


def test_value_plot_of_a_hostile_key_is_text(recwarn):
    from sd_widgets.widget._values_view import value_figure_src

    for key in ("$\\nosuchcmd$ \x1b[31m\n", "k"):
        src = value_figure_src(key, torch.tensor([0.0, float("nan")]), torch.tensor([1.0, 2.0]))
        assert src.startswith("data:image/png;base64,")
    assert not [w for w in recwarn if "Glyph" in str(w.message)]


# ------------------------------------------------------- the Explorer over two checkpoints (no model)


@pytest.fixture(scope="module")
def two_files(tmp_path_factory, cnn_pair) -> tuple[str, str]:
    """The pretrained CNN as torch.save, its "frozen"-backbone fine-tune as safetensors."""
    base, tuned = cnn_pair
    d = tmp_path_factory.mktemp("two")
    torch.save(base.state_dict(), d / "base.pt")
    save_file({k: v.contiguous() for k, v in tuned.state_dict().items()}, d / "tuned.safetensors")
    return str(d / "base.pt"), str(d / "tuned.safetensors")


def test_explorer_of_two_checkpoints_against_float64(cnn_pair, two_files):
    base, tuned = cnn_pair
    a_sd, b_sd = base.state_dict(), tuned.state_dict()
    w = sdw.Explorer(sdw.compare_values(*two_files))
    v = w.values
    # shown at once, nothing to load into: nothing selected, the sides named by their files
    assert v["state"] == "ready", w.message
    assert w.model is None and w.selected_keys == []
    assert v["a_is_model"] is False and v["a"].endswith("base.pt")
    assert v["b"].endswith("tuned.safetensors")
    assert w.tree["model"].endswith("base.pt") and w.tree["source"].endswith("tuned.safetensors")
    json.dumps(v, allow_nan=False)
    # every row against numpy in float64
    legend = [e["change"] for e in v["legend"]]
    rows = v["rows"]
    assert sorted(rows["key"]) == sorted(a_sd)
    for i, k in enumerate(rows["key"]):
        want = reference(a_sd[k], b_sd[k])
        rel = rows["rel"][i]
        if want["rel_l2_change"] == math.inf:
            assert rel == "inf" and legend[rows["change"][i]] == "from_zero", k
        else:
            assert rel == pytest.approx(want["rel_l2_change"], rel=1e-9, abs=1e-12), k
            assert rows["max_abs"][i] == pytest.approx(want["max_abs_diff"], rel=1e-9, abs=1e-12)
        expect = (
            "identical" if want["equal"] else "tiny" if want["rel_l2_change"] <= V.TINY else None
        )
        if expect:
            assert legend[rows["change"][i]] == expect, k
    # rank: most changed first = from zero, then by relative change (numpy's), identical last
    by_rank = [
        rows["key"][i] for i in sorted(range(len(rows["key"])), key=rows["rank"].__getitem__)
    ]
    measured = {k: reference(a_sd[k], b_sd[k])["rel_l2_change"] for k in a_sd}
    assert all(measured[p] >= measured[q] for p, q in itertools.pairwise(by_rank))
    assert measured[by_rank[0]] == max(measured.values()) and measured[by_rank[-1]] == 0.0
    # module roll-ups: counted independently from the two state dicts
    for module in ("backbone", "backbone.stem", "classifier"):
        keys = [k for k in a_sd if k.startswith(module + ".")]
        changed = sum(not reference(a_sd[k], b_sd[k])["equal"] for k in keys)
        tensors, n_changed, _, text = v["modules"][module]
        assert (tensors, n_changed) == (len(keys), changed)
        assert text == f"{module}: {changed} of {len(keys)} tensors changed"
    assert v["root"] == "(all keys): 20 of 38 tensors changed"
    # the frozen-looking backbone whose BatchNorm statistics moved: flagged on its module row
    assert list(v["frozen_bn"]) == ["backbone"]
    assert "requires_grad=False does not freeze BatchNorm" in v["frozen_bn"]["backbone"]
    # a clicked row: the two files' tensors, plotted
    a, b = w._values.tensors("backbone.stem.bn.running_mean")
    assert torch.equal(a, a_sd["backbone.stem.bn.running_mean"])
    assert torch.equal(b, b_sd["backbone.stem.bn.running_mean"])
    w.handle_action({"action": "value_plot", "key": "backbone.stem.bn.running_mean"})
    assert w.value_plot["key"] == "backbone.stem.bn.running_mean"
    png = base64.b64decode(w.value_plot["src"].removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    # nothing to load into: nothing can be selected, a load is refused with a reason
    w.handle_action({"action": "toggle", "keys": ["classifier.weight"], "modules": ["backbone"]})
    w.handle_action({"action": "select_all_loadable"})
    assert w.selected_keys == []
    w.handle_action({"action": "load"})
    assert w.message["level"] == "error" and "no model" in w.message["text"]


def test_explorer_of_two_checkpoints_legend_flags_and_renames(cnn_pair, tmp_path):
    base, tuned = cnn_pair
    # b saved from a DDP-wrapped model: every key under module.
    ddp = {"module." + k: v for k, v in tuned.state_dict().items()}
    torch.save(ddp, tmp_path / "ddp.pt")
    w = sdw.Explorer(sdw.compare_values(base.state_dict(), tmp_path / "ddp.pt"))
    legend = {e["change"]: e for e in w.values["legend"]}
    assert list(legend) == list(V.CHANGES)
    assert {c for c, e in legend.items() if e["changed"]} == {
        "nan_appeared",
        "from_zero",
        "large",
        "tiny",
    }
    assert {c for c, e in legend.items() if not e["compared"]} == {"not_compared"}
    # keys do not line up: nothing compared yet
    assert w.values["summary"]["not_compared"] == 2 * len(ddp)
    # the banner's rule re-aligns the rows: the values are out of date until compared again
    w.handle_action({"action": "accept_suggestion", "id": w.banner["id"]})
    assert w.values["state"] == "stale"
    w.handle_action({"action": "value_plot", "key": "classifier.weight"})
    assert w.message["level"] == "error" and "compare the values first" in w.message["text"]
    w.handle_action({"action": "compare_values"})
    assert w.values["state"] == "ready", w.message
    b_sd = tuned.state_dict()
    equal = [reference(v, b_sd[k])["equal"] for k, v in base.state_dict().items()]
    s = w.values["summary"]
    assert (s["identical"], s["changed"], s["not_compared"]) == (sum(equal), 38 - sum(equal), 0)
    assert w._values.comparison is w.comparison


def test_explorer_of_a_model_value_comparison_can_load(cnn_pair):
    base, _ = cnn_pair
    model = demo.fine_tune(demo.pretrained("cnn"), steps=3)
    w = sdw.Explorer(sdw.compare_values(model, base.state_dict()))
    assert w.model is model and w.values["a_is_model"] is True and w.values["a"] == "model"
    assert w.values["root"].startswith("(model): ")
    assert w.selected_keys  # a model: the loadable keys are selected as usual
    w.handle_action({"action": "load"})
    assert w.message["level"] == "success", w.message
    assert w.values["state"] == "stale"
    w.handle_action({"action": "compare_values"})
    assert w.values["summary"]["changed"] == 0


def test_two_checkpoints_given_as_arguments_say_how_to_compare_them(two_files):
    with pytest.raises(TypeError, match=r"sdw\.Explorer\(sdw\.compare_values\(before, after\)\)"):
        sdw.Explorer(*two_files)
    with pytest.raises(TypeError, match="takes no source/key"):
        sdw.Explorer(sdw.compare_values(*two_files), two_files[0])
    # a comparison of two checkpoints' keys only has no values to read: it says what to do
    w = sdw.Explorer(sdw.compare(*two_files))
    w.handle_action({"action": "compare_values"})
    assert w.message["level"] == "error" and "compare_values(before, after)" in w.message["text"]


def test_explorer_of_two_bert_files_renamed_by_its_banner_against_numpy(bert_files):
    a_path, b_path = bert_files
    a, b = load_file(a_path), load_file(b_path)
    w = sdw.Explorer(sdw.compare_values(a_path, b_path))
    # the task model's keys sit under "bert.": nothing pairs up, so nothing was compared yet
    assert w.values["summary"]["identical"] == w.values["summary"]["changed"] == 0
    assert "bert." in w.banner["text"]
    w.handle_action({"action": "accept_suggestion", "id": w.banner["id"]})
    assert w.values["state"] == "stale"
    w.handle_action({"action": "compare_values"})
    v = w.values
    assert v["state"] == "ready", w.message
    legend = [e["change"] for e in v["legend"]]
    rows = dict(zip(v["rows"]["key"], range(len(v["rows"]["key"])), strict=True))
    for k in a:  # every base tensor against its fine-tuned counterpart, in numpy float64
        want = reference(a[k], b["bert." + k])
        i = rows[k]
        assert (legend[v["rows"]["change"][i]] == "identical") == want["equal"], k
        rel = v["rows"]["rel"][i]
        rel = math.inf if rel == "inf" else rel  # JSON has no infinity: a change from zero
        assert rel == pytest.approx(want["rel_l2_change"], rel=1e-9, abs=1e-12), k
    # the head the base model lacks: on one side only, not compared
    head = [k for k in v["rows"]["key"] if k.startswith("classifier.")]
    assert head and all(legend[v["rows"]["change"][rows[k]]] == "not_compared" for k in head)
    # the frozen first layer rolls up to "0 changed"; the next one counted from the files
    for layer in ("encoder.layer.0", "encoder.layer.1"):
        keys = [k for k in a if k.startswith(layer + ".")]
        changed = sum(not reference(a[k], b["bert." + k])["equal"] for k in keys)
        assert v["modules"][layer][:2] == [len(keys), changed], layer
    assert v["modules"]["encoder.layer.0"][1] == 0 and v["modules"]["encoder.layer.1"][1] > 0
