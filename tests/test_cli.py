"""The ``sd-widgets`` command: inspect / diff, every format, output formats, exit codes,
bad input, unsafe pickles, --model specs, streaming and closed pipes.

Most tests call ``sd_widgets.cli._main.main`` in-process; a few run the installed console script
and ``python -m sd_widgets`` in a subprocess (exit codes, closed pipe, module entry point).
Checkpoint files are real, written by ``sd_widgets.demo``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import safetensors
import torch
from hostile import write_hostile_global, write_hostile_keys, write_malicious_checkpoint
from safetensors.torch import save_file

import sd_widgets as sdw
from sd_widgets import demo
from sd_widgets.cli import _main as cli

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)

BIN = Path(sys.executable).parent
SCRIPT = BIN / "sd-widgets"
SMALL_CNN = "sd_widgets.demo:SmallCNN"
THREE_CLASS = "sd_widgets.demo:make_model('cnn', num_classes=3)"

# demo format -> CheckpointSource.kind the CLI must report
FORMAT_KINDS = {
    "torch": "torch",
    "torch_legacy": "torch-legacy",
    "safetensors": "safetensors",
    "safetensors_sharded": "safetensors-index",
    "bin_sharded": "torch-index",
    "dcp": "dcp",
    "lightning": "torch",
}


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return dict(demo.variant("identical"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    out: dict[str, Path] = dict(demo.write_all_formats(d / "formats", "identical"))
    for name in ("renamed_layer", "fp16", "ema", "training"):
        out[name] = demo.write_checkpoint(d, name, "torch")
    out["new_head_model_py"] = d / "new_head_nets.py"
    out["new_head_model_py"].write_text(
        "from sd_widgets import demo\n\n"
        "def three_class():\n"
        "    return demo.make_model('cnn', num_classes=3)\n"
    )
    return out


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 tensors: ~1.5 MB of table output, far more than a pipe buffer (64 KB)."""
    path = tmp_path_factory.mktemp("big") / "big.safetensors"
    save_file(
        {f"model.layers.{i}.self_attn.q_proj.weight": torch.zeros(2) for i in range(20_000)},
        str(path),
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out: str) -> dict[str, list[str]]:
    """Rows of the first table in ``out`` (header, dashes, rows until the blank line), by key;
    cells split on runs of two or more spaces."""
    import re

    lines = out.splitlines()
    assert lines[1].startswith("---"), out[:500]
    rows: dict[str, list[str]] = {}
    for line in lines[2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


def shape_text(t: torch.Tensor) -> str:
    return "[" + ", ".join(map(str, t.shape)) + "]"


def run_script(*args: object, via: tuple[str, ...] = (str(SCRIPT),)) -> Any:
    """Run the installed ``sd-widgets`` (or ``via``, e.g. ``python -m sd_widgets``) as a user
    would, text output captured; the ``subprocess.CompletedProcess``."""
    return subprocess.run(
        [*via, *map(str, args)], capture_output=True, text=True, env=script_env(), timeout=300
    )


def script_env() -> dict[str, str]:
    """The caller's environment, minus settings that would change stdout buffering or
    warnings: the script must behave as it does for a user (block-buffered pipe)."""
    env = dict(os.environ)
    for name in ("PYTHONWARNINGS", "PYTHONUNBUFFERED"):
        env.pop(name, None)
    return env


# ------------------------------------------------------------------------------ version / help


def test_version_and_help(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip().startswith(f"sd-widgets {sdw.__version__}")
    code, out, _ = run(capsys, "-h")
    assert code == 0
    assert "examples:" in out and "sd-widgets diff" in out and "sd-widgets inspect" in out
    code, out, _ = run(capsys, "diff", "-h")
    assert code == 0
    for text in ("--allow-dtype", "exit status", "--against", "--rename", "MODULE:CALLABLE"):
        assert text in out, text
    code, out, _ = run(capsys, "inspect", "--help")
    assert code == 0 and "--trust" in out and "--key" in out


def test_no_command_and_bad_arguments_exit_2(capsys):
    code, _, err = run(capsys)
    assert code == 2 and "inspect" in err and "diff" in err
    code, _, err = run(capsys, "inspect", "x.pt", "--format", "yaml")
    assert code == 2 and "invalid choice" in err


# ------------------------------------------------------------------------------------ inspect


@pytest.mark.parametrize("fmt", demo.FORMATS)
def test_inspect_every_format(capsys, files, reference, fmt):
    path = files[fmt]
    expected = reference
    if fmt == "lightning":  # Lightning stores the network as LightningModule.model
        expected = {f"model.{k}": v for k, v in reference.items()}

    code, out, err = run(capsys, "inspect", path)
    assert code == 0, err
    rows = table_rows(out)
    assert sorted(rows) == sorted(expected)
    for k, t in expected.items():
        _key, shape, dtype, numel, size = rows[k]
        assert shape == shape_text(t)
        assert dtype == str(t.dtype).removeprefix("torch.")
        assert numel == f"{t.numel():,}"
        assert size.endswith("B")
    total = sum(t.numel() * t.element_size() for t in expected.values())
    numel = sum(t.numel() for t in expected.values())
    assert f"{len(expected)} tensors, {numel:,} parameters" in out
    assert f"({total:,} bytes)" in out
    assert f"format: {FORMAT_KINDS[fmt]}" in out

    code, out, err = run(capsys, "inspect", path, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["source"]["format"] == FORMAT_KINDS[fmt]
    got = {r["key"]: r for r in doc["tensors"]}
    assert sorted(got) == sorted(expected)
    for k, t in expected.items():
        assert got[k]["shape"] == list(t.shape)
        assert got[k]["numel"] == t.numel()
        assert got[k]["nbytes"] == t.numel() * t.element_size()  # exact, not human-readable
    assert doc["summary"]["tensors"] == len(expected)
    assert doc["summary"]["bytes"] == total


def test_inspect_footer_reports_nested_key_other_entries_and_candidates(capsys, files):
    code, out, _ = run(capsys, "inspect", files["lightning"])
    assert code == 0
    assert "weights from entry: 'state_dict'" in out
    assert "epoch (int: 3)" in out and "pytorch-lightning_version" in out

    code, out, _ = run(capsys, "inspect", files["ema"], "--format", "json")
    doc = json.loads(out)
    assert doc["source"]["key"] == "model"  # preferred automatically
    assert doc["source"]["candidates"] == {"model": 38, "ema": 38}
    code, out, _ = run(capsys, "inspect", files["ema"])
    assert "other entries holding tensors (choose with --key): 'ema' (38 tensors)" in out


def test_inspect_key_chooses_nested_entry(capsys, files):
    code, out, _ = run(capsys, "inspect", files["ema"], "--key", "ema", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["source"]["key"] == "ema"
    assert doc["source"]["other_entries"] == {"model": "OrderedDict (38 entries)"}
    assert len(doc["tensors"]) == 38

    code, _, err = run(capsys, "inspect", files["training"], "--key", "nope")
    assert code == 2
    assert "no entry 'nope'" in err and "model_state_dict" in err


def test_inspect_tied_and_non_tensor_entries(capsys, tmp_path):
    sd = demo.tied_model().state_dict()
    sd["_extra"] = 42  # type: ignore[assignment]
    path = tmp_path / "tied.pt"
    torch.save(sd, path)
    code, out, _ = run(capsys, "inspect", path)
    assert code == 0
    rows = table_rows(out)
    assert rows["embed.weight"][-1] == "lm_head.weight"  # "tied to" column
    assert "tied: embed.weight = lm_head.weight" in out
    assert "non-tensor entries in the state dict: _extra (int: 42)" in out
    # tied tensors are counted once: 50*16 + 16*16 + 16 elements, not + another 50*16
    assert "3 tensors" not in out and "4 tensors, 1,072 parameters" in out
    assert "(4,288 bytes) (tied tensors counted once)" in out

    code, out, _ = run(capsys, "inspect", path, "--format", "json")
    doc = json.loads(out)
    assert doc["summary"]["tied_groups"] == [["embed.weight", "lm_head.weight"]]
    assert doc["summary"]["parameters"] == 1072
    assert doc["source"]["non_tensor"] == {"_extra": "int: 42"}


def test_inspect_csv_and_jsonl_keep_stdout_machine_readable(capsys, files, reference):
    code, out, err = run(capsys, "inspect", files["torch"], "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["key"] for r in rows] == list(reference)
    for r in rows:
        assert json.loads(r["shape"]) == list(reference[r["key"]].shape)
        assert int(r["nbytes"]) == reference[r["key"]].numel() * 4 or r["dtype"] == "int64"
    assert "38 tensors" in err and "38 tensors" not in out  # footer on stderr

    code, out, err = run(capsys, "inspect", files["torch"], "--format", "jsonl")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["key"] for d in lines] == list(reference)
    assert "format: torch" in err


def assert_no_raw_control(*texts: str) -> None:
    """Only printable characters and line ends: no terminal escape, NUL, bidi override or lone
    surrogate from a file reaches the terminal."""
    for text in texts:
        bad = sorted({c for c in text if c != "\n" and not c.isprintable()})
        assert not bad, f"raw control characters {bad!r} in output"
        text.encode("utf-8")  # no lone surrogates


@pytest.mark.parametrize("fmt", cli.FORMATS)
@pytest.mark.parametrize("writer", ["torch", "safetensors"])
@pytest.mark.parametrize("command", ["inspect", "diff"])
def test_hostile_keys_are_escaped_in_every_format(capsys, tmp_path, command, writer, fmt):
    path = tmp_path / f"hostile.{'pt' if writer == 'torch' else 'safetensors'}"
    sd = write_hostile_keys(path, writer)
    extra = ["--model", SMALL_CNN] if command == "diff" else []
    code, out, err = run(capsys, command, path, "--format", fmt, *extra)
    assert code == (0 if command == "inspect" else 1), err
    assert_no_raw_control(out, err)
    assert "Traceback" not in err
    wanted = set(sd)
    if fmt == "json":
        doc = json.loads(out)
        items = doc["tensors"] if command == "inspect" else doc["rows"]
        got = {r["key"] for r in items if command == "inspect" or r["status"] == "unexpected"}
        assert got == wanted  # exactly recoverable
    elif fmt == "jsonl":
        items = [json.loads(line) for line in out.splitlines()]
        got = {r["key"] for r in items if command == "inspect" or r["status"] == "unexpected"}
        assert got == wanted
        assert len(items) == (len(sd) if command == "inspect" else len(sd) + 38)
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        got = {r["key"] for r in rows if command == "inspect" or r["status"] == "unexpected"}
        assert got == {cli.escape_text(k) for k in sd}
        assert "\\x1b[31m" in out and "line\\nbreak" in out and "nul\\x00byte" in out
    else:
        rows = table_rows(out)
        assert {cli.escape_text(k) for k in sd} <= set(rows)
        assert "evil\\x1b[31m.red" in rows and "\\u202eright_to_left.bias" in rows
        if writer == "torch":
            assert "lone\\udc80surrogate.weight" in rows


def test_hostile_names_in_messages_and_footers_are_escaped(capsys, tmp_path):
    # an unsafe global whose module name carries a terminal escape: refused, named escaped
    path = tmp_path / "global.pt"
    name = write_hostile_global(path)
    for extra in ([], ["--debug"]):
        code, out, err = run(capsys, "inspect", path, *extra)
        assert code == 2 and out == ""
        assert_no_raw_control(err)
        # a name that is no importable global cannot be vouched for: no --allow is offered
        assert cli.escape_text(name) in err and "no --allow admits code" in err
        assert "--allow evil" not in err
        assert ("Traceback" in err) == bool(extra)
        if not extra:
            assert err.count("\n") == 1  # one line
    # entry names of a checkpoint that holds no tensors, in the error message
    path = tmp_path / "no_tensors.pt"
    torch.save({"epoch\x1b[2J": 3, "note\nforged line": "x"}, path)
    code, out, err = run(capsys, "inspect", path)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert_no_raw_control(err)
    assert "epoch\\x1b[2J" in err
    # nested entry names and non-tensor entries in the footer (table on stdout, csv on stderr)
    path = tmp_path / "nested.pt"
    torch.save(
        {"state_dict": {"w": torch.zeros(1), "bad\x1b]0;title\x07": 1}, "opt\x1b[2J": {"lr": 0.1}},
        path,
    )
    for fmt in ("table", "csv", "jsonl"):
        code, out, err = run(capsys, "inspect", path, "--format", fmt)
        assert code == 0, err
        assert_no_raw_control(out, err)
        footer = out if fmt == "table" else err
        assert "bad\\x1b]0;title\\x07" in footer and "opt\\x1b[2J" in footer
    code, out, _ = run(capsys, "inspect", path, "--format", "json")
    doc = json.loads(out)
    assert "opt\x1b[2J" in doc["source"]["other_entries"]
    assert "bad\x1b]0;title\x07" in doc["source"]["non_tensor"]


def test_escape_text():
    assert cli.escape_text("layer.0.weight") == "layer.0.weight"
    assert cli.escape_text("café.ß.权重") == "café.ß.权重"  # printable text is unchanged
    assert cli.escape_text("a\x1b[31mb\nc\td\x00e\u202ef\udc80g\U000e0001") == (
        "a\\x1b[31mb\\nc\\td\\x00e\\u202ef\\udc80g\\U000e0001"
    )
    assert all(cli.escape_text(chr(i)).isprintable() for i in range(0x20000))


def test_inspect_safetensors_reads_no_tensor_data(capsys, files, monkeypatch):
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tensor data was read")

    monkeypatch.setattr(safetensors, "safe_open", forbidden)
    monkeypatch.setattr(torch, "from_file", forbidden)
    code, out, _ = run(capsys, "inspect", files["safetensors"])
    assert code == 0 and "38 tensors" in out
    code, _, _ = run(capsys, "diff", files["safetensors"], "--model", SMALL_CNN)
    assert code == 0


# ---------------------------------------------------------------------------- diff: exit codes


def test_diff_identical_checkpoint_exits_0(capsys, files, reference):
    code, out, err = run(capsys, "diff", files["torch"], "--model", SMALL_CNN)
    assert code == 0, err
    rows = table_rows(out)
    assert sorted(rows) == sorted(reference)
    assert {cells[1] for cells in rows.values()} == {"match"}
    assert "38 keys: 38 match" in out
    assert "OK: loads cleanly" in out
    assert "built on the meta device" in out


def test_diff_new_head_exits_1_with_shape_mismatch_rows(capsys, files):
    code, out, _ = run(capsys, "diff", files["torch"], "--model", THREE_CLASS)
    assert code == 1
    rows = table_rows(out)
    assert rows["classifier.weight"][1:5] == ["shape_mismatch", "param", "[10, 32]", "[3, 32]"]
    assert rows["classifier.bias"][1:5] == ["shape_mismatch", "param", "[10]", "[3]"]
    assert sum(cells[1] == "match" for cells in rows.values()) == 36
    assert "38 keys: 36 match, 2 shape_mismatch" in out
    assert "DIFFERENT" in out


def test_diff_only_problems_prints_problem_rows_but_counts_all(capsys, files):
    code, out, _ = run(capsys, "diff", files["torch"], "--model", THREE_CLASS, "--only-problems")
    assert code == 1
    assert sorted(table_rows(out)) == ["classifier.bias", "classifier.weight"]
    assert "38 keys: 36 match, 2 shape_mismatch" in out
    code, out, _ = run(capsys, "diff", files["torch"], "--model", SMALL_CNN, "-p")
    assert code == 0
    assert "(no problems: every key matches)" in out


def test_diff_dtype_mismatch_is_a_difference_unless_allowed(capsys, files):
    code, out, _ = run(capsys, "diff", files["fp16"], "--model", SMALL_CNN)
    assert code == 1
    assert "32 dtype_mismatch" in out and "--allow-dtype" in out
    assert table_rows(out)["classifier.weight"][5:7] == ["float16", "float32"]
    code, out, _ = run(
        capsys, "diff", files["fp16"], "--model", SMALL_CNN, "--allow-dtype", "--format", "json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["clean"] is True and doc["allow_dtype"] is True and doc["exit_code"] == 0
    assert doc["summary"]["dtype_mismatch"] == 32


def test_diff_without_model_or_against_exits_2(capsys, files):
    code, out, err = run(capsys, "diff", files["torch"])
    assert code == 2 and out == ""
    assert "--model" in err and "--against" in err and "sd-widgets inspect" in err
    code, _, err = run(
        capsys, "diff", files["torch"], "--model", SMALL_CNN, "--against", files["safetensors"]
    )
    assert code == 2 and "not allowed with" in err
    code, _, err = run(capsys, "diff", files["torch"], "--model", SMALL_CNN, "--against-key", "x")
    assert code == 2 and "--against-key needs --against" in err


# ------------------------------------------------------------------------ diff: output formats


def test_diff_json_parses_with_statuses_and_summary(capsys, files):
    code, out, err = run(capsys, "diff", files["torch"], "--model", THREE_CLASS, "-f", "json")
    assert code == 1
    assert err == ""  # everything is inside the JSON object
    doc = json.loads(out)
    statuses = {r["key"]: r["status"] for r in doc["rows"]}
    assert len(statuses) == 38
    assert statuses["classifier.weight"] == statuses["classifier.bias"] == "shape_mismatch"
    assert {s for k, s in statuses.items() if not k.startswith("classifier.")} == {"match"}
    row = next(r for r in doc["rows"] if r["key"] == "classifier.weight")
    assert row["ckpt_shape"] == [10, 32] and row["model_shape"] == [3, 32]
    assert row["kind"] == "param" and row["ckpt_dtype"] == row["model_dtype"] == "float32"
    assert doc["summary"] == {
        "match": 36,
        "shape_mismatch": 2,
        "dtype_mismatch": 0,
        "missing": 0,
        "missing_buffer": 0,
        "unexpected": 0,
        "tied": 0,
    }
    assert doc["clean"] is False and doc["exit_code"] == 1 and doc["total"] == 38
    assert doc["model"] == {"spec": THREE_CLASS, "class": "SmallCNN", "device": "meta"}

    code, out, _ = run(capsys, "diff", files["torch"], "--model", THREE_CLASS, "-f", "json", "-p")
    doc = json.loads(out)
    assert [r["key"] for r in doc["rows"]] == ["classifier.weight", "classifier.bias"]
    assert doc["summary"]["match"] == 36


def test_diff_json_and_csv_fields_stand_in_the_one_row_field_order(capsys, files):
    from sd_widgets.compare._compare import ROW_FIELDS

    order = list(ROW_FIELDS)
    _, out, _ = run(capsys, "diff", files["renamed_layer"], "--model", SMALL_CNN, "-f", "json")
    rows = json.loads(out)["rows"]
    fields = list(rows[0])
    assert fields == sorted(fields, key=order.index)  # every field is a row field, in order
    assert {"key", "status", "ckpt_shape", "model_dtype", "nbytes", "reason", "tied"} <= set(fields)
    assert all(list(r) == fields for r in rows)
    _, out, _ = run(capsys, "diff", files["renamed_layer"], "--model", SMALL_CNN, "-f", "csv")
    header = next(csv.reader(io.StringIO(out)))
    assert header == sorted(header, key=order.index) and header[:3] == ["key", "status", "kind"]


def test_diff_csv_parses_and_summary_goes_to_stderr(capsys, files):
    code, out, err = run(
        capsys, "diff", files["renamed_layer"], "--model", SMALL_CNN, "--format", "csv"
    )
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 40
    by_key = {r["key"]: r for r in rows}
    assert by_key["classifier.weight"]["status"] == "missing"
    assert by_key["classifier.weight"]["ckpt_shape"] == ""
    assert json.loads(by_key["classifier.weight"]["model_shape"]) == [10, 32]
    assert by_key["fc.weight"]["status"] == "unexpected"
    assert json.loads(by_key["fc.weight"]["ckpt_shape"]) == [10, 32]
    assert sum(r["status"] == "match" for r in rows) == 36
    assert "40 keys: 36 match, 2 missing, 2 unexpected" in err
    assert "keys:" not in out


def test_diff_jsonl_one_object_per_row(capsys, files):
    code, out, err = run(capsys, "diff", files["torch"], "--model", THREE_CLASS, "-f", "jsonl")
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 38
    assert sum(r["status"] == "shape_mismatch" for r in rows) == 2
    assert "36 match, 2 shape_mismatch" in err


# ---------------------------------------------------------------- diff: --against/--rename/--key


@pytest.mark.parametrize("fmt", ["safetensors", "dcp", "safetensors_sharded"])
def test_diff_against_checkpoint_in_another_format_is_clean(capsys, files, fmt):
    code, out, _ = run(capsys, "diff", files["torch"], "--against", files[fmt])
    assert code == 0
    assert "38 keys: 38 match" in out


def test_safetensors_rows_come_module_by_module_with_numbers_in_order(capsys, tmp_path):
    """A safetensors file stores its tensors by dtype, then by name as a string: every
    BatchNorm step counter (int64) first, ``10.`` before ``2.``. ``inspect`` and both sides of
    ``diff --against`` list them a module at a time, numbers as numbers; a ``torch.save`` file
    keeps its own order (the model's)."""
    model = torch.nn.Sequential(
        *[torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)) for _ in range(12)]
    )
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    modules = [f"{i}.{j}" for i in range(12) for j in (0, 1)]  # 0.0, 0.1, 1.0, ..., 11.1
    expected = [k for m in modules for k in sorted(k for k in sd if k.rpartition(".")[0] == m)]
    old, new = tmp_path / "old.safetensors", tmp_path / "new.safetensors"
    save_file(sd, old)
    raw = old.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert next(iter(header)) == "0.1.num_batches_tracked"  # the file's own order: by dtype
    extra = {"extra.10.x": torch.zeros(1), "extra.9.x": torch.zeros(1)}
    save_file({**sd, "3.0.weight": torch.zeros(3, 2), **extra}, new)

    code, out, _ = run(capsys, "inspect", old, "-f", "jsonl")
    assert code == 0
    assert [json.loads(line)["key"] for line in out.splitlines()] == expected

    code, out, _ = run(capsys, "diff", new, "--against", old, "-f", "json")
    assert code == 1
    rows = json.loads(out)["rows"]
    assert [r["key"] for r in rows] == [*expected, "extra.9.x", "extra.10.x"]
    assert {r["key"]: r["status"] for r in rows if r["status"] != "match"} == {
        "3.0.weight": "shape_mismatch",
        "extra.9.x": "unexpected",
        "extra.10.x": "unexpected",
    }

    pt = tmp_path / "model.pt"
    torch.save(model.state_dict(), pt)
    code, out, _ = run(capsys, "inspect", pt, "-f", "jsonl")
    assert [json.loads(line)["key"] for line in out.splitlines()] == list(model.state_dict())


def test_diff_against_reports_missing_and_unexpected_by_direction(capsys, files):
    code, out, _ = run(
        capsys, "diff", files["renamed_layer"], "--against", files["torch"], "-f", "json"
    )
    assert code == 1
    doc = json.loads(out)
    statuses = {r["key"]: r["status"] for r in doc["rows"] if r["status"] != "match"}
    # "missing": in OTHER only; "unexpected": in CHECKPOINT only
    assert statuses == {
        "classifier.weight": "missing",
        "classifier.bias": "missing",
        "fc.weight": "unexpected",
        "fc.bias": "unexpected",
    }
    assert doc["model"]["against"]["format"] == "torch"
    assert doc["suggested_renames"][0]["rename"] == "fc.=classifier."


def test_rename_makes_renamed_layer_clean(capsys, files):
    code, out, _ = run(capsys, "diff", files["renamed_layer"], "--model", SMALL_CNN)
    assert code == 1
    assert "hint: --rename fc.=classifier." in out  # the suggestion is the fix tested below
    code, out, _ = run(
        capsys, "diff", files["renamed_layer"], "--model", SMALL_CNN, "--rename", "fc.=classifier."
    )
    assert code == 0
    rows = table_rows(out)
    assert rows["classifier.weight"][1] == "match"
    assert rows["classifier.weight"][-1] == "fc.weight"  # ckpt_key column appears with renames
    assert "38 keys: 38 match" in out


def test_rename_and_key_for_lightning_checkpoint(capsys, files):
    code, _, _ = run(capsys, "diff", files["lightning"], "--model", SMALL_CNN)
    assert code == 1
    code, out, _ = run(
        capsys,
        "diff",
        files["lightning"],
        "--model",
        SMALL_CNN,
        "--key",
        "state_dict",
        "--rename",
        "model.=",
        "-f",
        "json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["checkpoint"]["key"] == "state_dict"
    assert doc["renames"] == ["model.="]
    assert {r["status"] for r in doc["rows"]} == {"match"}


def test_diff_key_chooses_nested_entry(capsys, files):
    code, out, _ = run(
        capsys, "diff", files["ema"], "--model", SMALL_CNN, "--key", "ema", "-f", "json"
    )
    assert code == 0
    assert json.loads(out)["checkpoint"]["key"] == "ema"
    code, _, err = run(capsys, "diff", files["ema"], "--model", SMALL_CNN, "--key", "emma")
    assert code == 2 and "'emma'" in err and "'ema'" in err


@pytest.mark.parametrize(
    ("rename", "message"),
    [
        ("fc.classifier.", "expected OLD=NEW"),
        ("=", "both empty"),
        ("re:(=x", "invalid regex"),
        ("re:.*=same", "map both"),  # every key renamed to one name: a collision
    ],
)
def test_bad_rename_exits_2(capsys, files, rename, message):
    code, out, err = run(capsys, "diff", files["torch"], "--model", SMALL_CNN, "--rename", rename)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert out == ""


# ----------------------------------------------------------------------------- diff: --model


def device_probe(tmp_path: Path, name: str, then: str = "") -> Path:
    """A ``--model`` file whose ``build()`` records the device SmallCNN was built on.

    ``then``: one more statement run on the built model ``m`` before it is returned.
    """
    mod = tmp_path / f"{name}.py"
    mod.write_text(
        "from sd_widgets import demo\n"
        "seen = []\n\n"
        "def build():\n"
        "    m = demo.SmallCNN()\n"
        "    seen.append(m.classifier.weight.device.type)\n"
        + (f"    {then}\n" if then else "")
        + "    return m\n"
    )
    return mod


def test_model_is_built_on_the_meta_device(capsys, files, tmp_path):
    mod = device_probe(tmp_path, "meta_probe")
    code, out, _ = run(capsys, "diff", files["torch"], "--model", f"{mod}:build")
    assert code == 0 and "built on the meta device" in out
    probe = sys.modules["_sd_widgets_model_meta_probe"]
    assert probe.seen == ["meta"]


def test_model_falls_back_to_cpu_when_meta_fails(capsys, files, tmp_path):
    # float() of a meta tensor is impossible: the build fails there and is retried on the CPU
    mod = device_probe(tmp_path, "needs_cpu", then="float(m.classifier.weight.detach().sum())")
    code, out, err = run(capsys, "diff", files["torch"], "--model", f"{mod}:build")
    assert code == 0
    assert sys.modules["_sd_widgets_model_needs_cpu"].seen == ["meta", "cpu"]
    assert "could not be built on the meta device" in err and "CPU" in err
    assert "(on cpu)" in out


def test_model_from_file_module_in_cwd_and_instance(capsys, files, monkeypatch, tmp_path):
    # a .py path with a no-argument factory (the new-head model): shape mismatches
    code, _, _ = run(
        capsys, "diff", files["torch"], "--model", f"{files['new_head_model_py']}:three_class"
    )
    assert code == 1
    # a module importable from the current directory, like `python -m`
    (tmp_path / "cli_cwd_nets.py").write_text(
        "from sd_widgets import demo\nnet = demo.SmallCNN()\n"
        "def build(n):\n    return demo.SmallCNN(num_classes=n)\n"
    )
    monkeypatch.chdir(tmp_path)
    path_before = list(sys.path)
    try:
        code, out, _ = run(capsys, "diff", files["torch"], "--model", "cli_cwd_nets:net")
        assert code == 0 and "(on cpu)" in out  # an instance is used as it is
        code, _, _ = run(capsys, "diff", files["torch"], "--model", "cli_cwd_nets:build(3)")
        assert code == 1
        code, _, _ = run(capsys, "diff", files["torch"], "--model", "cli_cwd_nets:build(n=10)")
        assert code == 0
    finally:
        sys.modules.pop("cli_cwd_nets", None)
    assert sys.path == path_before


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sd_widgets.demo", "expected MODULE:CALLABLE"),
        ("no_such_module_xyz:Net", "cannot import module 'no_such_module_xyz'"),
        ("sd_widgets.demo:SmallCN", "did you mean SmallCNN"),
        ("sd_widgets.demo:describe", "returned a str, not a torch.nn.Module"),
        ("sd_widgets.demo:FORMATS", "is a tuple, not a callable"),
        ("sd_widgets.demo:BasicBlock", "calling sd_widgets.demo:BasicBlock failed (TypeError"),
        ("sd_widgets.demo:make_model(*x)", "only literal arguments"),
        ("sd_widgets.demo:make_model(os.sep)", "only literal arguments"),
        ("sd_widgets.demo:1+", "is not a name or a call"),
        ("missing_file.py:build", "no Python file"),
    ],
)
def test_bad_model_spec_exits_2(capsys, files, spec, message):
    code, out, err = run(capsys, "diff", files["torch"], "--model", spec)
    assert code == 2
    assert err.startswith("sd-widgets: error: --model")
    assert message in err
    assert "Traceback" not in err and out == ""


def test_model_module_raising_on_import_exits_2(capsys, files, tmp_path):
    mod = tmp_path / "broken_import.py"
    mod.write_text("raise RuntimeError('boom at import')\n")
    code, _, err = run(capsys, "diff", files["torch"], "--model", f"{mod}:x")
    assert code == 2
    assert "importing" in err and "boom at import" in err


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("command", ["inspect", "diff"])
def test_missing_file_exits_2(capsys, tmp_path, command):
    extra = ["--model", SMALL_CNN] if command == "diff" else []
    code, out, err = run(capsys, command, tmp_path / "nope.pt", *extra)
    assert code == 2 and out == ""
    assert err.startswith("sd-widgets: error: no file or directory at")
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["inspect", "diff"])
def test_random_bytes_exit_2(capsys, tmp_path, command):
    path = tmp_path / "random.pt"
    path.write_bytes(bytes(range(256)) * 20)
    extra = ["--model", SMALL_CNN] if command == "diff" else []
    code, out, err = run(capsys, command, path, *extra)
    assert code == 2 and out == ""
    assert "not a checkpoint sd_widgets can read" in err


def test_not_a_state_dict_exits_2(capsys, tmp_path):
    path = tmp_path / "meta_only.pt"
    torch.save({"epoch": 3, "name": "run-1"}, path)
    code, _, err = run(capsys, "inspect", path)
    assert code == 2 and "holds no tensors" in err


def test_against_unreadable_other_exits_2(capsys, files, tmp_path):
    other = tmp_path / "empty.safetensors"
    other.write_bytes(b"")
    code, _, err = run(capsys, "diff", files["torch"], "--against", other)
    assert code == 2 and "empty file" in err


@pytest.mark.parametrize("command", ["inspect", "diff"])
def test_malicious_pickle_is_refused_and_runs_nothing(capsys, tmp_path, command):
    marker = tmp_path / "PWNED"
    path = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    extra = ["--model", SMALL_CNN] if command == "diff" else []
    code, out, err = run(capsys, command, path, *extra)
    assert code == 2 and out == ""
    assert not marker.exists()
    assert "io.open" in err  # names the refused global
    assert "--trust" in err and "Traceback" not in err


def test_allow_admits_just_the_named_class(capsys, tmp_path):
    """--allow argparse.Namespace opens a checkpoint carrying its args, stays weights-only for
    the rest (the malicious file is still refused, its payload never runs), and says so."""
    path = demo.write_unsafe_checkpoint(tmp_path / "ns.pt", "namespace")
    code, _, err = run(capsys, "inspect", path)
    assert code == 2 and "--allow argparse.Namespace" in err
    code, out, err = run(capsys, "inspect", path, "--allow", "argparse.Namespace")
    assert code == 0 and "warning" not in err and "args (Namespace)" in out
    marker = tmp_path / "PWNED"
    evil = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    code, _, err = run(capsys, "inspect", evil, "--allow", "argparse.Namespace")
    assert code == 2 and "io.open" in err and not marker.exists()
    code, _, err = run(capsys, "inspect", path, "--allow", "no_such_module_xyz.Thing")
    assert code == 2 and "cannot be imported" in err
    code, _, err = run(capsys, "inspect", path, "--allow", "argparse.NoSuchThing")
    assert code == 2 and "has no 'NoSuchThing'" in err


def test_trust_flag_passes_trust_and_warns(capsys, tmp_path):
    """--trust really unpickles everything: the payload runs (creating the marker)."""
    path = demo.write_unsafe_checkpoint(tmp_path / "ns.pt", "namespace")
    code, _, err = run(capsys, "inspect", path)
    assert code == 2 and "argparse.Namespace" in err
    code, out, err = run(capsys, "inspect", path, "--trust")
    assert code == 0
    assert "warning: --trust" in err
    assert "args (Namespace)" in out and "trusted" in out

    marker = tmp_path / "PWNED"
    evil = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    code, _, _ = run(capsys, "diff", evil, "--model", SMALL_CNN, "--trust")
    assert code == 0
    assert marker.exists()


# ---------------------------------------------------------------------------------- streaming


class RecordingStdout(io.StringIO):
    """Records the size of every write; raises BrokenPipeError after ``fail_after`` writes."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.fail_after = fail_after

    def write(self, s: str) -> int:
        if self.fail_after is not None and len(self.sizes) >= self.fail_after:
            raise BrokenPipeError(32, "Broken pipe")
        self.sizes.append(len(s))
        return super().write(s)


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
@pytest.mark.parametrize("command", ["inspect", "diff"])
def test_output_is_streamed_row_by_row(monkeypatch, big, fmt, command):
    stdout = RecordingStdout()
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    extra = ["--against", str(big)] if command == "diff" else []
    assert cli.main([command, str(big), "-f", fmt, *extra]) == 0
    assert len(stdout.sizes) >= 20_000
    assert max(stdout.sizes) < 2_000  # never one giant string
    if fmt == "json":
        assert (
            len(json.loads(stdout.getvalue())["rows" if command == "diff" else "tensors"]) == 20_000
        )


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_broken_pipe_in_process_returns_141(capsys, monkeypatch, big, fmt):
    monkeypatch.setattr(sys, "stdout", RecordingStdout(fail_after=5))
    assert cli.main(["inspect", str(big), "-f", fmt]) == cli.EXIT_BROKEN_PIPE


# ----------------------------------------------------------------- the installed console script


def test_console_script_diff_exit_code(files):
    proc = run_script("diff", files["torch"], "--model", THREE_CLASS, "--only-problems")
    assert proc.returncode == 1, proc.stderr
    assert "shape_mismatch" in proc.stdout and "classifier.weight" in proc.stdout
    assert proc.stderr == ""


def test_console_script_unsafe_input_exit_2(tmp_path):
    marker = tmp_path / "PWNED"
    path = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    proc = run_script("inspect", path)
    assert proc.returncode == 2
    assert "--trust" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_console_script_closed_pipe_exits_quietly(big, fmt):
    proc = subprocess.Popen(
        [str(SCRIPT), "inspect", str(big), "-f", fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=script_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`: the reader goes away with ~1.5 MB still to write
    err = proc.stderr.read().decode()
    proc.stderr.close()
    code = proc.wait(timeout=300)
    assert first.startswith(b"key" if fmt == "table" else b"{")
    assert code == cli.EXIT_BROKEN_PIPE  # the pipe really broke (a full write would give 0)
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert err == ""


def test_console_script_pipe_closed_before_any_output(files):
    """Small output sits in the stdout buffer until the final flush: that flush must not
    print 'Exception ignored ... BrokenPipeError' at interpreter exit either."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: every write gets EPIPE
    try:
        proc = subprocess.run(
            [str(SCRIPT), "inspect", str(files["torch"])],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=script_env(),
            timeout=300,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == cli.EXIT_BROKEN_PIPE
    assert proc.stderr == b""


def test_python_dash_m_sd_widgets(files):
    python_m = (sys.executable, "-m", "sd_widgets")
    proc = run_script(
        "diff", files["safetensors"], "--model", SMALL_CNN, "-f", "json", via=python_m
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["clean"] is True and doc["summary"]["match"] == 38
    proc = run_script("--version", via=python_m)
    assert proc.returncode == 0 and proc.stdout.startswith("sd-widgets ")


def test_cli_imports_no_widget_libraries():
    code = (
        "import sys, sd_widgets.cli._main; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('ipywidgets', 'anywidget')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------- --model code that exits, interrupts, prints


@pytest.mark.parametrize(
    ("source", "spec_attr", "doing"),
    [
        ("import sys\nsys.exit(0)\n", "x", "importing"),
        ("import sys\ndef build():\n    sys.exit(0)\n", "build", "calling"),
        ("def build():\n    raise SystemExit('done')\n", "build", "calling"),
        ("def __getattr__(name):\n    raise SystemExit(3)\n", "build", "looking up"),
    ],
    ids=["exit-at-import", "exit-in-factory", "systemexit-message", "exit-in-module-getattr"],
)
def test_model_calling_sys_exit_is_a_bad_model(capsys, files, tmp_path, source, spec_attr, doing):
    mod = tmp_path / "exiting.py"
    mod.write_text(source)
    code, out, err = run(capsys, "diff", files["torch"], "--model", f"{mod}:{spec_attr}")
    assert code == 2 and out == ""
    assert err.startswith("sd-widgets: error: --model: " + doing)
    assert "sys.exit(" in err and "Traceback" not in err and err.count("\n") == 1


def test_model_raising_keyboard_interrupt_exits_130(capsys, files, tmp_path):
    mod = tmp_path / "interrupting.py"
    mod.write_text("def build():\n    raise KeyboardInterrupt\n")
    code, out, err = run(capsys, "diff", files["torch"], "--model", f"{mod}:build")
    assert code == cli.EXIT_INTERRUPTED and out == ""
    assert "interrupted while calling" in err and "Traceback" not in err


def test_console_script_model_exit_is_not_a_clean_exit(files, tmp_path):
    """The real process exit status: sys.exit(0) in the model's code must not end the command
    with 0 (a CI job would read that as 'loads cleanly')."""
    mod = tmp_path / "exits_zero.py"
    mod.write_text("import sys\ndef build():\n    sys.exit(0)\n")
    proc = run_script("diff", files["torch"], "--model", f"{mod}:build")
    assert proc.returncode == 2, proc.stderr
    assert "sys.exit(0)" in proc.stderr and proc.stdout == ""
    mod.write_text("def build():\n    raise KeyboardInterrupt\n")
    proc = run_script("diff", files["torch"], "--model", f"{mod}:build")
    assert proc.returncode == 130 and "Traceback" not in proc.stderr


def test_model_printing_keeps_json_stdout_valid(capsys, files, tmp_path):
    mod = tmp_path / "chatty.py"
    mod.write_text(
        "print('importing chatty')\n"
        "from sd_widgets import demo\n"
        "def build():\n"
        "    print('building\\x1b[31m')\n"
        "    return demo.SmallCNN()\n"
    )
    code, out, err = run(capsys, "diff", files["torch"], "--model", f"{mod}:build", "-f", "json")
    assert code == 0
    assert json.loads(out)["clean"] is True
    assert "importing chatty" in err and "building" in err


# ------------------------------------------------------------------------ errors keep meaning


def _checkpoint_error_classes() -> list[type[sdw.CheckpointError]]:
    out: list[type[sdw.CheckpointError]] = []
    todo: list[type[sdw.CheckpointError]] = [sdw.CheckpointError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(out), key=lambda c: c.__name__)


def _make_error(cls: type[sdw.CheckpointError], message: str) -> sdw.CheckpointError:
    try:
        return cls(message)
    except TypeError:  # a subclass with more required arguments
        return cls(message, [])  # type: ignore[call-arg]


@pytest.mark.parametrize("command", ["inspect", "diff"])
def test_every_checkpoint_error_is_exit_2_on_one_line(capsys, monkeypatch, files, command):
    classes = _checkpoint_error_classes()
    assert {"UnreadableCheckpointError", "UnsafeCheckpointError", "NotAStateDictError"} <= {
        c.__name__ for c in classes
    }
    extra = ["--model", SMALL_CNN] if command == "diff" else []
    for cls in classes:
        error = _make_error(cls, "found x\x1b[2J\nforged: line; expected y; do z")

        def failing_open(*args: Any, error: Exception = error, **kwargs: Any) -> Any:
            raise error

        monkeypatch.setattr(cli, "open_checkpoint", failing_open)
        code, out, err = run(capsys, command, files["torch"], *extra)
        assert code == 2, cls
        assert out == "" and err.count("\n") == 1, (cls, err)
        assert err.startswith("sd-widgets: error: found x\\x1b[2J\\nforged: line"), (cls, err)
        assert "Traceback" not in err
        code, _, err = run(capsys, command, files["torch"], *extra, "--debug")
        assert code == 2 and "Traceback" in err and cls.__name__ in err, cls
        assert_no_raw_control(err)


def test_checkpoint_error_during_compare_is_not_called_a_rename_error(capsys, monkeypatch, files):
    def changed(*args: Any, **kwargs: Any) -> Any:
        raise sdw.UnreadableCheckpointError("ckpt.pt changed on disk since it was opened")

    monkeypatch.setattr(cli, "compare", changed)
    code, out, err = run(
        capsys, "diff", files["torch"], "--model", SMALL_CNN, "--rename", "module.="
    )
    assert code == 2 and out == ""
    assert err == "sd-widgets: error: ckpt.pt changed on disk since it was opened\n"


def test_unexpected_exception_is_one_line_unless_debug(capsys, monkeypatch, files):
    def bug(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "compare", bug)
    code, _, err = run(capsys, "diff", files["torch"], "--model", SMALL_CNN)
    assert code == 2 and err.count("\n") == 1
    assert "unexpected ZeroDivisionError" in err and "--debug" in err
    code, _, err = run(capsys, "--debug", "diff", files["torch"], "--model", SMALL_CNN)
    assert code == 2 and "Traceback" in err and "ZeroDivisionError" in err


# --------------------------------------------------------------------------- tied keys shown


def test_diff_shows_tied_keys(capsys, tmp_path):
    path = tmp_path / "tied.pt"
    torch.save(demo.tied_model().state_dict(), path)
    code, out, _ = run(capsys, "diff", path, "--model", "sd_widgets.demo:tied_model")
    assert code == 0
    rows = table_rows(out)
    assert rows["embed.weight"][-1] == "lm_head.weight"
    assert rows["lm_head.weight"][-1] == "embed.weight"
    assert rows["proj.weight"][-1] == "float32"  # untied rows leave the column empty
    code, out, _ = run(capsys, "diff", path, "--model", "sd_widgets.demo:tied_model", "-f", "json")
    tied = {r["key"]: r["tied"] for r in json.loads(out)["rows"]}
    assert tied["embed.weight"] == ["lm_head.weight"] and tied["proj.weight"] == []
    code, out, _ = run(capsys, "diff", path, "--model", "sd_widgets.demo:tied_model", "-f", "csv")
    by_key = {r["key"]: r for r in csv.DictReader(io.StringIO(out))}
    assert by_key["lm_head.weight"]["tied"] == "embed.weight"


def test_diff_and_inspect_share_one_writer_per_format():
    # issue 11 §4: one streamed writer per format serves both commands
    assert set(cli._WRITERS) == set(cli.FORMATS)
    import inspect as pyinspect

    for fn in (cli._cmd_inspect, cli._cmd_diff):
        body = pyinspect.getsource(fn)
        assert "_WRITERS[args.format]" in body
        assert "csv.writer" not in body and "json.dumps(_diff_row_dict" not in body


def test_hostile_shard_names_in_an_index_are_escaped(capsys, tmp_path):
    """A *.index.json naming shards with terminal escapes and newlines: whatever the reader
    says about them (missing shard, name outside the directory) reaches stderr escaped, on one
    line, with exit 2."""
    for shard in (
        "evil\x1b[2J.safetensors",
        "../\x1b]0;pwned\x07/x.safetensors",
        "line\nbreak.safetensors",
    ):
        index = tmp_path / "model.safetensors.index.json"
        index.write_text(json.dumps({"metadata": {}, "weight_map": {"w\x1b[31m": shard}}))
        code, out, err = run(capsys, "inspect", index)
        assert code == 2 and out == "", err
        assert_no_raw_control(err)
        assert err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------- --model hf:CONFIG (D2)


def _tiny_bert(**sizes: int) -> Any:
    from realworld import TINY
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(**{**TINY, **sizes})).eval()


@pytest.fixture(scope="module")
def hf_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """save_pretrained folders: a tiny BERT-MLM and one twice as wide; a config-only folder."""
    pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("hf")
    _tiny_bert().save_pretrained(d / "bert")
    _tiny_bert(hidden_size=64, intermediate_size=96).save_pretrained(d / "wide")
    (d / "config_only").mkdir()
    (d / "config_only" / "config.json").write_text((d / "bert" / "config.json").read_text())
    return {"bert": d / "bert", "wide": d / "wide", "config_only": d / "config_only"}


def test_hf_model_from_a_folder_or_its_config_json(capsys, hf_files):
    ckpt = hf_files["bert"] / "model.safetensors"
    for spec in (f"hf:{hf_files['config_only']}", f"hf:{hf_files['bert'] / 'config.json'}"):
        code, out, err = run(capsys, "diff", ckpt, "--model", spec)
        assert "-> BertForMaskedLM (built on the meta device)" in out, err
        # every key matches; the decoder follows the word embeddings it is tied to
        assert "keys: 58 match, 2 tied" in out
        assert code == cli.EXIT_OK and "OK: loads cleanly" in out


def test_hf_model_of_another_width_says_config_and_collapses_layers(capsys, hf_files):
    ckpt = hf_files["wide"] / "model.safetensors"
    code, out, _ = run(capsys, "diff", ckpt, "--model", f"hf:{hf_files['config_only']}")
    assert code == cli.EXIT_DIFFERENT
    footer = out[out.index("DIFFERENT") :]
    assert "config: All " in footer and "64 vs 32, 96 vs 48" in footer
    assert "built with a different config?" in footer
    assert "hidden_size=32 (checkpoint: 64)" in footer
    # 3 layers' keys once each
    assert "bert.encoder.layer.{0..2}.attention.self.query.weight" in footer
    assert "shape_mismatch (" in footer and " pattern(s)): " in footer
    # the table still lists every key
    assert "bert.encoder.layer.2.attention.self.query.weight" in table_rows(out)


def test_hf_config_never_runs_code_from_the_folder(capsys, hf_files, tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "remote"
    folder.mkdir()
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\nEvilModel = None\n")
    config = json.loads((hf_files["bert"] / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    config["architectures"] = ["EvilModel"]  # not a transformers class: AutoModel instead
    (folder / "config.json").write_text(json.dumps(config))
    code, out, err = run(
        capsys, "diff", hf_files["bert"] / "model.safetensors", "--model", f"hf:{folder}"
    )
    assert not marker.exists()
    assert "-> BertModel (built on the meta device)" in out, err
    assert code == cli.EXIT_DIFFERENT  # the base model lacks the MLM head: unexpected keys
    # a Hub kernel named as the attention implementation (top level or in a sub-config) is
    # never fetched: the fields that name code are dropped, the model builds with the defaults
    config["_attn_implementation"] = "kernels-community/flash-attn"
    config["attn_implementation"] = "kernels-community/flash-attn"
    config["text_config"] = {"_attn_implementation": "kernels-community/flash-attn"}
    (folder / "config.json").write_text(json.dumps(config))
    code, out, err = run(
        capsys, "diff", hf_files["bert"] / "model.safetensors", "--model", f"hf:{folder}"
    )
    assert "-> BertModel (built on the meta device)" in out, err
    assert "kernel" not in err and not marker.exists()
    # a model_type transformers does not know is an error, not remote code
    config["model_type"] = "evil"
    (folder / "config.json").write_text(json.dumps(config))
    code, _, err = run(
        capsys, "diff", hf_files["bert"] / "model.safetensors", "--model", f"hf:{folder}"
    )
    assert code == cli.EXIT_ERROR and "'evil'" in err and not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no config.json there"),
        ("{not json", "is not JSON"),
        ('["a list"]', "is not a transformers config"),
        ('{"hidden_size": 3}', "is not a transformers config"),
    ],
)
def test_hf_bad_config_exits_2(capsys, files, tmp_path, content, message):
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    code, _, err = run(capsys, "diff", files["torch"], "--model", f"hf:{tmp_path}")
    assert code == cli.EXIT_ERROR and message in err
    assert len(err.strip().splitlines()) == 1


def test_hf_without_transformers_exits_2(hf_files):
    # transformers hidden from the import system, as on an install without it
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "from sd_widgets import cli\n"
        f"sys.exit(cli.main(['diff', {str(hf_files['bert'] / 'model.safetensors')!r}, "
        f"'--model', 'hf:{hf_files['config_only']}']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == cli.EXIT_ERROR, proc.stderr
    assert "needs the transformers package" in proc.stderr
    assert "pip install transformers" in proc.stderr and "Traceback" not in proc.stderr


def test_collapse_prints_repeated_layers_once_in_the_table(capsys, hf_files):
    ckpt = hf_files["wide"] / "model.safetensors"
    model = f"hf:{hf_files['config_only']}"
    _, full, _ = run(capsys, "diff", ckpt, "--model", model, "--only-problems")
    code, out, _ = run(capsys, "diff", ckpt, "--model", model, "--only-problems", "--collapse")
    assert code == cli.EXIT_DIFFERENT
    rows = table_rows(out)
    every = table_rows(full)
    assert len(every) == 57 and len(rows) == 25  # 3 layers' keys once each
    query = rows["bert.encoder.layer.{0..2}.attention.self.query.weight"]
    assert query[1:] == every["bert.encoder.layer.0.attention.self.query.weight"][1:]
    assert "bert.encoder.layer.1.attention.self.query.weight" not in rows
    assert "bert.embeddings.word_embeddings.weight" in rows  # not repeated: as it is
    assert "60 keys: 1 match, 57 shape_mismatch, 2 tied" in out  # the summary covers every row
    # machine-readable formats keep every row
    _, out, _ = run(capsys, "diff", ckpt, "--model", model, "-p", "--collapse", "--format", "json")
    assert len(json.loads(out)["rows"]) == 57
