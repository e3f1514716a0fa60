"""A user's acceptance pass: what the product says and exports, checked as a user reads it."""

from __future__ import annotations

import io
import re

import pytest
import torch

import sd_widgets as sdw
from sd_widgets import demo


def _header(html_text: str) -> dict[str, str]:
    """The report header's rows: label -> text (tags dropped)."""
    rows = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", html_text)
    return {k: re.sub(r"<[^>]+>", "", v) for k, v in rows}


def _report(widget: sdw.Explorer) -> str:
    out = io.StringIO()
    widget.to_html(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def base_and_tuned() -> tuple[torch.nn.Module, torch.nn.Module]:
    base = demo.pretrained("cnn")
    tuned = demo.pretrained("cnn")
    demo.fine_tune(tuned, freeze="backbone", steps=2)
    return base, tuned


def test_report_of_two_in_memory_state_dicts_names_both_sides(base_and_tuned):
    base, tuned = base_and_tuned
    w = sdw.Explorer(sdw.compare_values(base.state_dict(), tuned.state_dict()))
    head = _header(_report(w))
    # the sides are called as the tree's columns call them, never "model" (there is none)
    assert list(head)[:2] == ["b (after)", "a (before)"]
    assert head["b (after)"] == head["a (before)"] == "in-memory state dict (38 tensors)"
    assert "model" not in head
    assert "mapping" not in repr(w)
    assert w.values["a"] == w.values["b"] == "in-memory state dict (38 tensors)"


def test_report_of_two_files_names_each_file(base_and_tuned, tmp_path):
    base, tuned = base_and_tuned
    a = demo.save(base.state_dict(), tmp_path / "base.safetensors", format="safetensors")
    b = demo.save(tuned.state_dict(), tmp_path / "tuned.safetensors", format="safetensors")
    text = _report(sdw.Explorer(sdw.compare_values(a, b)))
    head = _header(text)
    assert head["b (after)"].endswith("tuned.safetensors")
    assert head["a (before)"].endswith("base.safetensors")
    title = re.search(r"<title>(.*)</title>", text)[1]
    assert title.index("base.safetensors") < title.index("tuned.safetensors")
    assert "compare_values" in text  # the note says how to see it live, not Explorer(model, ...)


def test_report_of_model_and_checkpoint_keeps_its_header():
    w = sdw.Explorer(demo.target_model("new_head"), demo.variant("new_head"))
    head = _header(_report(w))
    assert list(head)[:2] == ["checkpoint", "model"]
    assert head["model"] == "SmallCNN"


def _files(tmp_path, base_and_tuned):
    base, tuned = base_and_tuned
    a = demo.save(base.state_dict(), tmp_path / "base.safetensors", format="safetensors")
    b = demo.save(tuned.state_dict(), tmp_path / "tuned.safetensors", format="safetensors")
    return a, b


def test_cli_diff_against_a_checkpoint_does_not_call_it_a_model(base_and_tuned, tmp_path, capsys):
    from sd_widgets.cli import _main as cli

    a, b = _files(tmp_path, base_and_tuned)
    assert cli.main(["diff", str(b), "--against", str(a)]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert f"against: safetensors {a}" in lines
    assert not any(line.startswith("model:") for line in lines)

    assert cli.main(["diff", str(b), "--against", str(a), "--values"]) == cli.EXIT_DIFFERENT
    lines = capsys.readouterr().out.splitlines()
    assert f"a (--against): safetensors {a}" in lines  # not "checkpoint safetensors ..."
    assert f"b (CHECKPOINT): safetensors {b}" in lines


def test_cli_values_footer_counts_one_tensor_in_the_singular(tmp_path, capsys):
    from safetensors.torch import save_file

    from sd_widgets.cli import _main as cli

    save_file({"w": torch.zeros(2), "v": torch.ones(2)}, tmp_path / "a.safetensors")
    save_file({"w": torch.ones(2), "v": torch.ones(2)}, tmp_path / "b.safetensors")
    argv = ["diff", str(tmp_path / "b.safetensors"), "--against", str(tmp_path / "a.safetensors")]
    assert cli.main([*argv, "--values"]) == cli.EXIT_DIFFERENT
    assert "DIFFERENT: 1 tensor changed" in capsys.readouterr().out.splitlines()


def test_a_data_class_checkpoint_is_not_said_to_need_code(tmp_path):
    """A Lightning-style file with argparse.Namespace: the title must not say it runs code,
    the text says it is not known to, and the fix names just that class."""
    import argparse

    ckpt = {"state_dict": demo.variant("identical"), "hparams": argparse.Namespace(lr=0.1)}
    torch.save(ckpt, tmp_path / "light.ckpt")
    w = sdw.Explorer(demo.target_model("identical"), tmp_path / "light.ckpt")
    assert w.error["kind"] == "unsafe"
    assert "code" not in w.error["title"]
    assert "not known to run code" in w.error["text"]
    assert "argparse.Namespace" in w.error["fix"]


def test_exported_load_sharded_returns_the_model_keys_of_a_nested_dcp(tmp_path):
    """FSDP training code nests the weights under "model": the exported ``load_sharded`` reads
    ``model.<key>`` and returns the model's own keys (what a job checks its load against),
    run in a fresh process without sd_widgets, here on one rank."""
    import json
    import subprocess
    import sys
    import warnings

    import torch.distributed.checkpoint as dcp

    src = demo.pretrained("cnn").state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save({"model": dict(src)}, checkpoint_id=tmp_path / "dcp", no_dist=True)
    model = demo.make_model("cnn", seed=1)
    plan = sdw.compare(model, tmp_path / "dcp").plan(include="backbone")
    (tmp_path / "exported.py").write_text(plan.to_code())
    torch.save(model.state_dict(), tmp_path / "fresh.pt")
    job = (
        "import json, sys, torch, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from sd_widgets.demo import make_model\n"  # the user's model class
        "model = make_model('cnn', seed=1)\n"
        "ns = {'__name__': 'exported'}\n"
        "exec(open('exported.py').read(), ns)\n"
        "loaded = ns['load_sharded'](model)\n"
        "src = torch.load(sys.argv[1])\n"
        "fresh = torch.load('fresh.pt')\n"
        "sd = model.state_dict()\n"
        "print(json.dumps({'loaded': loaded,\n"
        "    'equal': all(torch.equal(sd[k], src[k]) for k in loaded),\n"
        "    'rest': all(torch.equal(sd[k], fresh[k]) for k in sd if k not in loaded)}))\n"
    )
    torch.save(src, tmp_path / "src.pt")
    run = subprocess.run(
        [sys.executable, "-c", job, str(tmp_path / "src.pt")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["loaded"] == list(plan.keys)
    assert got["equal"] and got["rest"]


def test_a_json_without_weight_map_says_what_it_holds(tmp_path):
    """``{"a": 1}`` is an object without 'weight_map' (was: "found NoneType")."""
    path = tmp_path / "model.safetensors.index.json"
    path.write_text('{"a": 1, "\\u001b[31m": 2}')
    with pytest.raises(sdw.UnreadableCheckpointError) as info:
        sdw.open_checkpoint(path)
    text = str(info.value)
    assert "found an object without 'weight_map' (its keys: 'a', '\\x1b[31m')" in text
    assert "NoneType" not in text and "\x1b" not in text


def test_two_sides_from_modules_read_as_module_state_dicts():
    """``compare_values(a_module_state, b)`` with b a module: b is "a module's state dict"."""
    base = demo.pretrained("cnn")
    w = sdw.Explorer(sdw.compare_values(base.state_dict(), demo.pretrained("cnn")))
    assert w.tree["source"] == "a module's state dict (38 tensors)"
    assert w.tree["model"] == "in-memory state dict (38 tensors)"


def test_repr_writes_a_file_names_control_characters_as_escapes(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "evil\x1b[31mRED\x1b[0m.safetensors"
    save_file({"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}, path)
    r = repr(sdw.Explorer(torch.nn.Linear(2, 2), path))
    assert "\x1b" not in r
    assert "evil\\x1b[31mRED\\x1b[0m.safetensors" in r


def test_report_of_two_checkpoints_by_keys_only_names_them_checkpoint_and_against(tmp_path, capsys):
    """``diff A --against B --format html`` (no values): the header rows and the title agree."""
    from safetensors.torch import save_file

    from sd_widgets.cli import _main as cli

    save_file({"w": torch.zeros(2)}, tmp_path / "a.safetensors")
    save_file({"w": torch.zeros(2), "\x1b[2Jv": torch.ones(1)}, tmp_path / "b.safetensors")
    argv = ["diff", str(tmp_path / "b.safetensors"), "--against", str(tmp_path / "a.safetensors")]
    assert cli.main([*argv, "--format", "html"]) == cli.EXIT_DIFFERENT
    text = capsys.readouterr().out
    head = _header(text)
    assert list(head)[:2] == ["checkpoint", "against"]
    title = re.search(r"<title>(.*)</title>", text)[1]
    assert title == (
        f"sd_widgets report: safetensors {tmp_path / 'b.safetensors'} against "
        f"safetensors {tmp_path / 'a.safetensors'}"
    )


def test_code_tab_after_rule_adapter_and_load_reproduces_the_widget_bit_for_bit(tmp_path):
    """A DDP checkpoint of a 10-class CNN into a 3-class model: Apply the banner's rule, the
    head's overlap adapter, Load; the Code tab pasted into a fresh interpreter (no sd_widgets
    import in it) over the same file and a fresh model gives the widget's tensors exactly."""
    import subprocess
    import sys

    src = demo.pretrained("cnn").state_dict()
    torch.save({"module." + k: v for k, v in src.items()}, tmp_path / "ddp.pt")
    model = demo.make_model("cnn", num_classes=3, seed=1)
    torch.save(model.state_dict(), tmp_path / "fresh.pt")
    w = sdw.Explorer(model, tmp_path / "ddp.pt")
    w.handle_action({"action": "accept_suggestion", "id": w.banner["id"]})
    for key in ("classifier.weight", "classifier.bias"):
        w.handle_action({"action": "adapt", "key": key, "adapter": "overlap"})
    w.handle_action({"action": "load"})
    assert w.last_load["loaded"] == 38
    w.tab = "code"
    assert "sd_widgets" not in [
        line.split()[1] for line in w.code.splitlines() if line.startswith(("import ", "from "))
    ]
    (tmp_path / "cell.py").write_text(w.code)
    torch.save(model.state_dict(), tmp_path / "widget.pt")
    job = (
        "import sys, torch\n"
        "from sd_widgets.demo import make_model\n"  # the user's model class
        "model = make_model('cnn', num_classes=3, seed=1)\n"
        "model.load_state_dict(torch.load('fresh.pt'))\n"
        "exec(open('cell.py').read(), {'model': model, '__name__': '__main__'})\n"
        "got, want = model.state_dict(), torch.load('widget.pt')\n"
        "bad = [k for k in want if got[k].dtype != want[k].dtype"
        " or not torch.equal(got[k], want[k])]\n"
        "print('DIFFER', bad)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", job], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "DIFFER []" in run.stdout, run.stdout


def test_bn_panel_says_why_nothing_is_plotted():
    """A model without BatchNorm is not told to check its bn policy or selection."""
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    w = sdw.Explorer(mlp, {k: v + 1 for k, v in mlp.state_dict().items()})
    w.handle_action({"action": "load"})
    assert w.bn_plot["text"].startswith("The model has no BatchNorm running statistics")

    cnn = demo.target_model("identical")
    w = sdw.Explorer(cnn, demo.variant("identical"), bn="keep")
    w.handle_action({"action": "load"})
    assert w.bn_plot["text"].startswith("bn='keep': this load kept")


def test_other_entries_of_one_element_are_counted_in_the_singular(tmp_path):
    ckpt = {"state_dict": demo.variant("identical"), "hp": {"lr": 0.1}, "tags": ["a"]}
    torch.save(ckpt, tmp_path / "run.ckpt")
    other = sdw.open_checkpoint(tmp_path / "run.ckpt").source.other_entries
    assert other == {"hp": "dict (1 entry)", "tags": "list (1 item)"}


def test_the_plain_text_summary_escapes_keys_from_the_file():
    """The Explorer's text/plain output (a saved notebook, a terminal) gets keys from the file
    escaped: an ANSI escape cannot colour it, a newline cannot forge a row of its own."""
    from sd_widgets.widget._summary import summary_text
    from sd_widgets.widget._tree_payload import payload_from_comparison

    model = torch.nn.Linear(2, 2)
    forged = "evil\x1b[31m\n  ✓ fake.row: match"
    ckpt = {"weight": torch.zeros(3, 3), forged: torch.zeros(1)}
    payload = payload_from_comparison(sdw.compare(model, ckpt), source="a\x1b]0;x\x07.pt")
    text = summary_text(payload)
    assert "\x1b" not in text and "\x07" not in text
    assert all(
        line.startswith(("Explorer: ", "  ", "2 keys", "3 keys")) for line in text.splitlines()
    )
    assert not any(line.strip().startswith("✓ fake.row") for line in text.splitlines())
    assert "evil\\x1b[31m\\n" in text
