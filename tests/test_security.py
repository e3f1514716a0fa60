"""The fuzz and hostile-file suite: untrusted files stay inert (issue 8, reader half).

For every reader the invariant is: ``open_checkpoint`` (and reading the tensors it lists)
returns or raises a :class:`sd_widgets.CheckpointError` subclass, within a few seconds and
bounded memory; never runs code from the file (marker-file payloads: the marker must not
exist, and a control shows the payload is live); never reads outside the source (shard and
data-file names pointing elsewhere are refused, and no byte of their targets reaches a
message). Hand-made hostile files cover each class of attack; hypothesis covers the rest
(derandomized, so CI is reproducible).
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import safetensors
import torch
from fuzz_files import (
    ReduceTo,
    call_pickle,
    dump_metadata,
    index_file,
    make_fifo,
    marker_payloads,
    real_dcp_metadata,
    safetensors_bytes,
    torch_zip_members,
    write_dcp,
    write_zip,
    zip_bomb_checkpoint,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import sd_widgets as sdw
from sd_widgets.checkpoint._safetensors import SAFETENSORS_DTYPES
from sd_widgets.checkpoint._unpickle import dcp_metadata_globals
from sd_widgets.errors import CheckpointChangedError

pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
    # torch's weights-only unpickler warns about the protocol of random bytes it then refuses
    pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning"),
]

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SECRET = b"SECRET-BYTES-OUTSIDE-THE-CHECKPOINT"
REPO = Path(__file__).resolve().parents[1]


def opened_or_typed(src: Any, **kwargs: Any) -> sdw.Checkpoint | sdw.CheckpointError:
    """The invariant for one source: a Checkpoint whose tensors can all be read (or refused
    with a typed error), or a typed error. Anything else fails the test."""
    try:
        ck = sdw.open_checkpoint(src, **kwargs)
    except sdw.CheckpointError as exc:
        assert "Traceback" not in str(exc)
        return exc
    try:
        ck.state_dict()
    except sdw.CheckpointError as exc:
        return exc
    return ck


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this venv (a hang or a crash cannot take the test
    process with it)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside every checkpoint directory; its bytes must never appear anywhere."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "secret.safetensors"
    save_file({"w": torch.ones(1)}, str(path), metadata={"note": SECRET.decode()})
    return path


# ============================================================================ DCP .metadata


def _recorded_globals(raw: bytes) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            seen.add((module, name))
            return super().find_class(module, name)

    Recorder(io.BytesIO(raw)).load()
    return seen


def _rich_dcp_state() -> dict[str, Any]:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 3),
    )
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    dtypes = {
        f"t_{str(d).split('.')[1]}": torch.zeros(3, dtype=d)
        for d in (
            torch.float64,
            torch.float16,
            torch.bfloat16,
            torch.int8,
            torch.int16,
            torch.int32,
            torch.uint8,
            torch.bool,
            torch.complex64,
        )
    }
    return {
        "model": model.state_dict(),
        "optim": opt.state_dict(),
        "extra": dtypes,
        "channels_last": torch.randn(2, 3, 4, 4).to(memory_format=torch.channels_last),
        "epoch": 3,
        "name": "run-1",
        "blob": b"\x00\x01",
        "nothing": None,
    }


def test_dcp_allow_list_is_exactly_what_real_metadata_needs(tmp_path):
    """Real DCP checkpoints (nested, optimizer state, every dtype, channels_last, non-tensor
    entries) use only exact (module, name) pairs of the allow-list, none of them dotted, and
    the allow-list has no module-wide entries."""
    directory = write_dcp(tmp_path / "rich", _rich_dcp_state())
    used = _recorded_globals((directory / ".metadata").read_bytes())
    allowed = dcp_metadata_globals()
    assert used <= set(allowed), used - set(allowed)
    assert all("." not in name for _, name in allowed)
    assert ("torch.distributed.checkpoint.metadata", "Metadata") in used
    ck = sdw.open_checkpoint(directory, key="model")
    assert ck.source.kind == "dcp" and "0.weight" in ck
    assert torch.equal(ck.tensor("1.running_var"), torch.ones(4) * ck.tensor("1.running_var"))
    assert set(ck.source.alternatives) == {"extra"}  # a lone top-level tensor is not a set
    extra = sdw.open_checkpoint(directory, key="extra")
    assert extra["t_bfloat16"].dtype == torch.bfloat16
    assert torch.equal(extra.tensor("t_complex64"), torch.zeros(3, dtype=torch.complex64))


def test_torch_weights_only_unpickler_cannot_parse_dcp_metadata(tmp_path):
    """Why DCP metadata has its own allow-list unpickler: DCP pickles with protocol 4 (FRAME,
    STACK_GLOBAL, MEMOIZE), which torch's weights-only unpickler does not parse even with every
    metadata class admitted through safe_globals."""
    import torch._weights_only_unpickler as wou

    directory = write_dcp(tmp_path / "dcp", {"model": {"w": torch.ones(2)}})
    raw = (directory / ".metadata").read_bytes()
    admitted = [
        obj
        for (module, _), obj in dcp_metadata_globals().items()
        if module != "torch" and isinstance(obj, type)
    ]
    with torch.serialization.safe_globals(admitted), pytest.raises(pickle.UnpicklingError):
        wou.load(io.BytesIO(raw), encoding="utf-8")
    assert sdw.open_checkpoint(directory).source.key == "model"


@pytest.mark.parametrize("payload", list(marker_payloads(Path("/m"))))
def test_dcp_metadata_payloads_never_run(payload, tmp_path):
    marker = tmp_path / "PWNED"
    directory = write_dcp(tmp_path / "dcp", {"w": torch.ones(2)})
    raw = marker_payloads(marker)[payload]
    (directory / ".metadata").write_bytes(raw)
    for trust in (False, True):  # DCP metadata is never more than metadata, even trusted
        with pytest.raises(sdw.UnsafeCheckpointError) as info:
            sdw.open_checkpoint(directory, trust=trust)
        assert not marker.exists()
        assert len(info.value.globals) == 1
        module_name = payload.split(" ", 1)[1].replace("/", ".")
        if "via" not in payload and "dcp." not in payload:
            assert info.value.globals == [module_name]
        assert info.value.globals[0] in str(info.value)
        assert "Nothing was executed" in str(info.value)
    # control: the payload is live under a plain unpickler
    with contextlib.suppress(Exception):
        pickle.loads(raw)
    assert marker.exists(), f"payload {payload} is not live, so the test proves nothing"


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("field", ["planner_data", "storage_meta", "state_dict_metadata"])
def test_payload_inside_real_metadata_never_runs(field, protocol, tmp_path):
    marker = tmp_path / "PWNED"
    directory = write_dcp(tmp_path / "dcp", {"model": {"w": torch.ones(2)}})
    md = real_dcp_metadata(directory)
    evil = ReduceTo(os.system, f"touch {marker}")
    if field == "state_dict_metadata":
        md.state_dict_metadata["model.w"] = evil
    else:
        setattr(md, field, evil)
    dump_metadata(directory, md, protocol)
    with pytest.raises(sdw.UnsafeCheckpointError) as info:
        sdw.open_checkpoint(directory)
    assert info.value.globals == [f"{os.system.__module__}.system"]
    assert not marker.exists()
    with pytest.raises(sdw.UnsafeCheckpointError):
        sdw.compare(torch.nn.Linear(2, 2), directory)
    assert not marker.exists()


def test_dcp_metadata_refusal_offers_no_opt_in_that_does_nothing(tmp_path, capsys):
    """No trust option opens DCP metadata, so neither the CLI nor the Explorer offers one."""
    from sd_widgets.cli import _main as cli
    from sd_widgets.widget._texts import error_state as _error_state

    marker = tmp_path / "PWNED"
    directory = write_dcp(tmp_path / "dcp", {"model": {"w": torch.ones(2)}})
    md = real_dcp_metadata(directory)
    md.planner_data = ReduceTo(os.system, f"touch {marker}")
    dump_metadata(directory, md, 2)
    with pytest.raises(sdw.UnsafeCheckpointError) as info:
        sdw.open_checkpoint(directory, trust=True)
    assert info.value.opt_in is False
    name = f"{os.system.__module__}.system"
    assert cli.main(["inspect", str(directory)]) == 2
    err = capsys.readouterr().err
    assert name in err and f"--allow {name}" not in err
    assert "No --allow or --trust applies" in err
    # following what an --allow would have been changes nothing: still refused, nothing ran
    assert cli.main(["inspect", str(directory), "--allow", "argparse.Namespace"]) == 2
    state = _error_state(info.value, directory)
    assert "trust=" not in state["fix"]
    assert not marker.exists()


@pytest.mark.parametrize("field", ["offset", "length"])
def test_dcp_storage_entry_without_offset_or_length_is_typed(field, tmp_path):
    """_StorageInfo pickles without its None fields: a missing offset/length is a typed error
    (found by the mutation fuzz below: it was an AttributeError)."""
    directory = write_dcp(tmp_path / "dcp", {"model": {"w": torch.ones(2)}})
    md = real_dcp_metadata(directory)
    for info in md.storage_data.values():
        setattr(info, field, None)
    dump_metadata(directory, md, 2)
    with pytest.raises(sdw.UnreadableCheckpointError, match="offset"):
        sdw.open_checkpoint(directory)


def _mutate_storage(directory: Path, **changes: Any) -> None:
    md = real_dcp_metadata(directory)
    for info in md.storage_data.values():
        for k, v in changes.items():
            setattr(info, k, v)
    dump_metadata(directory, md)


@pytest.mark.parametrize(
    "case",
    ["parent", "absolute", "symlink-out", "nul", "negative-offset", "float-length", "transform"],
)
def test_dcp_data_files_stay_inside_the_directory(case, tmp_path, secret):
    directory = write_dcp(tmp_path / "dcp", {"w": torch.ones(2)})
    changes: dict[str, Any] = {
        "parent": {"relative_path": f"../outside/{secret.name}"},
        "absolute": {"relative_path": str(secret)},
        "symlink-out": {"relative_path": "link.distcp"},
        "nul": {"relative_path": "__0_0.distcp\x00x"},
        "negative-offset": {"offset": -8},
        "float-length": {"length": 1.5},
        "transform": {"transform_descriptors": ["stream.zstd"]},
    }[case]
    if case == "symlink-out":
        (directory / "link.distcp").symlink_to(secret)
    _mutate_storage(directory, **changes)
    with pytest.raises(sdw.UnreadableCheckpointError) as info:
        sdw.open_checkpoint(directory)
    assert SECRET.decode() not in str(info.value)
    assert "not valid torch.distributed.checkpoint metadata" in str(info.value)


def test_dcp_extension_opcodes_and_corrupt_metadata_are_unreadable(tmp_path):
    directory = write_dcp(tmp_path / "dcp", {"w": torch.ones(2)})
    for raw in (
        b"\x80\x02\x82\x01.",
        b"\x80\x02\x83\x01\x00.",
        b"\x80\x04\x95",
        b"\x80\x02]q\x00(K\x01" + b"h\x00" * 10,
        b"\x80\x02P0\n.",
    ):
        (directory / ".metadata").write_bytes(raw)
        with pytest.raises(sdw.UnreadableCheckpointError):
            sdw.open_checkpoint(directory)


# ============================================================================ index files


@pytest.mark.parametrize("case", ["parent", "absolute", "symlink-out", "nul", "dir-symlink-out"])
def test_index_shards_must_stay_inside_the_index_directory(case, tmp_path, secret):
    d = tmp_path / "ckpt"
    d.mkdir()
    shard = {
        "parent": f"../outside/{secret.name}",
        "absolute": str(secret),
        "symlink-out": "model-00001-of-00001.safetensors",
        "nul": "model.safetensors\x00../../x",
        "dir-symlink-out": "sub/secret.safetensors",
    }[case]
    if case == "symlink-out":
        (d / shard).symlink_to(secret)
    if case == "dir-symlink-out":
        (d / "sub").symlink_to(secret.parent, target_is_directory=True)
    path = index_file(d, {"w": shard})
    with pytest.raises(sdw.UnreadableCheckpointError) as info:
        sdw.open_checkpoint(path)
    message = str(info.value)
    assert "'w'" in message  # names the entry
    assert SECRET.decode() not in message
    with pytest.raises(sdw.UnreadableCheckpointError):
        sdw.open_checkpoint(d)  # found through the directory: the same refusal


def test_index_symlink_inside_the_directory_is_fine(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    save_file({"w": torch.arange(3.0)}, str(d / "real.safetensors"))
    (d / "model-00001-of-00001.safetensors").symlink_to(d / "real.safetensors")
    ck = sdw.open_checkpoint(index_file(d, {"w": "model-00001-of-00001.safetensors"}))
    assert torch.equal(ck.tensor("w"), torch.arange(3.0))


@pytest.mark.parametrize(
    "name",
    [
        ".metadata",
        "model.safetensors.index.json",
        "model.safetensors",
        "pytorch_model.bin",
        "weights.pt",
    ],
)
def test_files_found_by_listing_a_directory_must_be_inside_it(name, tmp_path, secret):
    """A directory whose checkpoint file is a symlink out (``pytorch_model.bin ->
    ~/.ssh/id_rsa``): refused before the target is opened, so none of its bytes (not even
    the first 8 that a "not a checkpoint" message would show) leave it."""
    d = tmp_path / "repo"
    d.mkdir()
    (d / name).symlink_to(secret)
    with pytest.raises(sdw.UnreadableCheckpointError, match="resolves outside") as info:
        sdw.open_checkpoint(d)
    assert SECRET.decode() not in str(info.value)
    assert repr(secret.read_bytes()[:8])[2:-1] not in str(info.value)


@pytest.mark.parametrize(
    "weight_map,fragment",
    [
        ({"w": 3}, "maps to a int"),
        ({"w": None}, "maps to a NoneType"),
        ({"w": ["a.safetensors"]}, "maps to a list"),
        ({"w": {"file": "a"}}, "maps to a dict"),
        (["w", "a.safetensors"], "found a 'weight_map' that is a JSON array"),
        ("a.safetensors", "found a 'weight_map' that is a JSON string"),
        (None, "found a 'weight_map' that is a JSON null"),
    ],
)
def test_index_weight_map_of_the_wrong_type_is_typed(weight_map, fragment, tmp_path):
    with pytest.raises(sdw.UnreadableCheckpointError, match=fragment):
        sdw.open_checkpoint(index_file(tmp_path, weight_map))


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"weight_map": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001,
        "[]",
        '"x"',
        "1e999999",
        '{"weight_map": {}}',
        "\ufeff{}",
    ],
)
def test_index_json_oddities_are_typed(text, tmp_path):
    path = tmp_path / "model.safetensors.index.json"
    path.write_text(text)
    result = opened_or_typed(path)
    assert isinstance(result, sdw.CheckpointError)


def test_index_over_64_mb_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "model.safetensors.index.json"
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)  # sparse: costs no disk
    t0 = time.perf_counter()
    with pytest.raises(sdw.UnreadableCheckpointError, match="limit"):
        sdw.open_checkpoint(path)
    assert time.perf_counter() - t0 < 1


# ============================================================================ paths


def test_fifos_sockets_and_devices_are_refused_at_once(tmp_path):
    """FIFOs named like every format, a FIFO .metadata, a FIFO shard, a socket and a device:
    refused without being opened. In a subprocess with a timeout, so a regression (a blocking
    open) fails instead of hanging the test run."""
    (tmp_path / "dcp").mkdir()
    (tmp_path / "shards").mkdir()
    index_file(tmp_path / "shards", {"w": "model-00001-of-00001.safetensors"})
    fifos = [
        make_fifo(tmp_path / n)
        for n in ("model.safetensors.index.json", "x.pt", "x.safetensors", "x.bin", "x.ckpt")
    ]
    make_fifo(tmp_path / "dcp" / ".metadata")
    make_fifo(tmp_path / "shards" / "model-00001-of-00001.safetensors")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.pt"))
    try:
        sources = [
            *map(str, fifos),
            str(tmp_path / "dcp"),
            str(tmp_path / "shards"),
            str(tmp_path / "sock.pt"),
            "/dev/zero",
            "/dev/null",
            str(tmp_path),
        ]
        proc = run_python(
            f"""
            import json, time, sd_widgets as sdw
            out = []
            for src in {sources!r}:
                t0 = time.perf_counter()
                try:
                    sdw.open_checkpoint(src)
                    out.append([src, "opened", 0])
                except sdw.CheckpointError as exc:
                    out.append([src, type(exc).__name__, time.perf_counter() - t0])
            print(json.dumps(out))
        """,
            timeout=90,
        )
    finally:
        sock.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(sources)
    for src, outcome, seconds in results:
        assert outcome == "UnreadableCheckpointError", (src, outcome)
        assert seconds < 1, (src, seconds)


@pytest.mark.parametrize(
    "path",
    [
        "model\x00.pt",
        "/tmp/" + "a" * 5000 + ".pt",
        "/tmp/" + "b" * 300 + ".pt",
        "\ud800.safetensors",
        "",
        "/tmp/\x1b[31mred.pt",
    ],
)
def test_impossible_paths_are_typed(path):
    result = opened_or_typed(path)
    assert isinstance(result, sdw.UnreadableCheckpointError)
    assert "\x1b" not in str(result) and "\x00" not in str(result)


# ============================================================================ zip bombs


def _invariant_script(paths: list[str]) -> str:
    return f"""
        import json, time, sd_widgets as sdw

        def hwm():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        base = hwm()
        out = []
        for src in {paths!r}:
            t0 = time.perf_counter()
            try:
                ck = sdw.open_checkpoint(src)
                ck.state_dict()
                outcome = "opened"
            except sdw.CheckpointError as exc:
                outcome = type(exc).__name__
            out.append([src, outcome, time.perf_counter() - t0, hwm() - base])
        print(json.dumps(out))
    """


def test_small_hostile_files_are_refused_fast_and_in_bounded_memory(tmp_path):
    """Every file here is under 10 MB; each is opened or refused in < 5 s and the process
    never grows by 512 MB (peak RSS measured in a subprocess)."""
    files = {
        "data.pkl inflating to 2 GiB": zip_bomb_checkpoint(tmp_path / "bomb.pt"),
        "data/0 inflating to 2 GiB": zip_bomb_checkpoint(tmp_path / "bomb0.pt", member="data/0"),
        "lying declared size": zip_bomb_checkpoint(tmp_path / "lie.pt", lie=True),
        "just under the ratio cap": zip_bomb_checkpoint(tmp_path / "small.pt", mib=8),
    }
    # a legacy pickle declaring a 2**40-element storage
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(10)}, buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue().replace(b"cpuq\x06K\nNtq", b"cpuq\x06\x8a\x06\x00\x00\x00\x00\x00\x01Ntq")
    assert raw != buf.getvalue()
    (tmp_path / "legacy_bomb.pth").write_bytes(raw)
    files["legacy storage of 2**40 elements"] = tmp_path / "legacy_bomb.pth"
    # a safetensors header declaring a 2**40-element tensor with 4 bytes of data
    (tmp_path / "huge.safetensors").write_bytes(
        safetensors_bytes(
            {"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 4]}}, 4
        )
    )
    files["safetensors 2**40 elements"] = tmp_path / "huge.safetensors"
    # a DCP directory whose metadata declares a 2**40-element tensor
    directory = write_dcp(tmp_path / "dcp", {"w": torch.ones(2)})
    md = real_dcp_metadata(directory)
    md.state_dict_metadata["w"].size = torch.Size([2**20, 2**20])
    dump_metadata(directory, md)
    files["DCP 2**40 elements"] = directory
    files["DCP data file holding a zip bomb"] = _dcp_with_bomb(tmp_path / "dcp_bomb")
    # an index of 150k entries, 9 MB, all naming one missing shard
    wm = {f"layer.{i}.weight": "model-00001-of-00002.safetensors" for i in range(150_000)}
    files["9 MB index"] = index_file(tmp_path / "idx", wm)
    # issue 16: one tensor under 30k names (1 MB; opens), a 50,000-level key, DCP metadata
    # setting state on a class, DCP chunks that do not tile
    from fuzz_files import (
        aliased_checkpoint,
        build_on_global_pickle,
        deep_key_checkpoint,
        set_dcp_chunks,
    )

    files["one tensor under 30k names"] = aliased_checkpoint(tmp_path / "alias.pt", 30_000)
    files["a 50,000-level key"] = deep_key_checkpoint(tmp_path / "deep.pt", 50_000)
    build = write_dcp(tmp_path / "dcp_build", {"w": torch.ones(2)})
    (build / ".metadata").write_bytes(build_on_global_pickle("pathlib", "PosixPath", "x"))
    files["DCP BUILD on a class"] = build
    untiled = write_dcp(tmp_path / "dcp_untiled", {"w": torch.ones(4, 64)})
    set_dcp_chunks(untiled, "w", [([0, 0], [1, 64])])
    files["DCP chunks not tiling"] = untiled
    opens = {"one tensor under 30k names"}
    for path in files.values():
        if path.is_file():
            assert path.stat().st_size < 10 * 1024 * 1024, path
    proc = run_python(_invariant_script([str(p) for p in files.values()]), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (label, _), (_src, outcome, seconds, extra) in zip(files.items(), results, strict=True):
        expected = "opened" if label in opens else "UnreadableCheckpointError"
        assert outcome == expected, (label, outcome)
        assert seconds < 5, (label, seconds)
        assert extra < 512 * 1024 * 1024, (label, extra)


def _dcp_with_bomb(directory: Path, mib: int = 2048) -> Path:
    """A real DCP directory whose data file is replaced by a zip bomb (DCP stores each tensor
    as a torch.save archive inside the data file and torch.load-s that slice)."""
    write_dcp(directory, {"w": torch.ones(4)})
    data = next(directory.glob("*.distcp"))
    zip_bomb_checkpoint(data, mib=mib)
    _mutate_storage(directory, offset=0, length=data.stat().st_size)
    return directory


def test_zip_bomb_inside_a_dcp_data_file_is_refused_before_inflating(tmp_path):
    ck = sdw.open_checkpoint(_dcp_with_bomb(tmp_path / "dcp"))  # metadata alone: fine
    with pytest.raises(sdw.UnreadableCheckpointError, match="zip bomb"):
        ck.tensor("w")


def test_zip_bomb_is_unreadable_not_unsafe(tmp_path):
    path = zip_bomb_checkpoint(tmp_path / "bomb.pt", mib=64)
    with pytest.raises(sdw.UnreadableCheckpointError) as info:
        sdw.open_checkpoint(path)
    assert not isinstance(info.value, sdw.UnsafeCheckpointError)
    assert "zip bomb" in str(info.value) and "trust=True would not" in str(info.value)
    with pytest.raises(sdw.UnreadableCheckpointError):
        sdw.open_checkpoint(path, trust=True)


def test_a_compressed_but_honest_torch_archive_still_opens(tmp_path):
    """Compression itself is not refused: a re-zipped (deflated) torch file within the caps
    opens and reads the same tensors (read without mmap, which cannot map compressed data)."""
    sd = {"w": torch.arange(1000.0), "b": torch.zeros(5)}
    import zipfile

    members = torch_zip_members(sd)
    path = tmp_path / "deflated.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    ck = sdw.open_checkpoint(path)
    assert torch.equal(ck.tensor("w"), sd["w"]) and torch.equal(ck.tensor("b"), sd["b"])


# ============================================================================ changed files


def test_truncated_memory_mapped_file_gives_a_typed_error_not_sigbus(tmp_path):
    path = tmp_path / "big.pt"
    torch.save({"w": torch.randn(2048, 1024), "b": torch.randn(10)}, path)  # 8 MB, mmap-ed
    code = f"""
        import os, sys, torch, sd_widgets as sdw
        from sd_widgets.errors import CheckpointChangedError
        path = {str(path)!r}
        ck = sdw.open_checkpoint(path)
        os.truncate(path, 4096)
        try:
            ck.tensor("w").sum()
        except CheckpointChangedError as exc:
            assert isinstance(exc, sdw.UnreadableCheckpointError)
            assert exc.path == path
            print("typed:", exc)
            sys.exit(0)
        sys.exit(3)
    """
    proc = run_python(code)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "changed since the checkpoint was opened" in proc.stdout
    assert "size changed" in proc.stdout


def test_truncated_memory_mapped_file_is_a_real_sigbus_without_the_check(tmp_path):
    """Control for the test above: plain torch.load(mmap=True) of the same file, truncated,
    kills the process with SIGBUS."""
    path = tmp_path / "big.pt"
    torch.save({"w": torch.randn(2048, 1024)}, path)
    proc = run_python(f"""
        import os, torch
        sd = torch.load({str(path)!r}, mmap=True, weights_only=True)
        os.truncate({str(path)!r}, 4096)
        print(float(sd["w"].sum()))
    """)
    assert proc.returncode == -signal.SIGBUS


@pytest.mark.parametrize("fmt", ["torch", "safetensors", "dcp", "index", "legacy"])
@pytest.mark.parametrize("change", ["truncate", "replace", "remove"])
def test_any_change_after_opening_is_typed(fmt, change, tmp_path):
    sd = {"w": torch.randn(64, 64), "b": torch.randn(3)}
    if fmt == "torch" or fmt == "legacy":
        path = tmp_path / "w.pt"
        torch.save(sd, path, _use_new_zipfile_serialization=fmt == "torch")
        target = path
    elif fmt == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(sd, str(path))
        target = path
    elif fmt == "index":
        d = tmp_path / "idx"
        d.mkdir()
        save_file(sd, str(d / "s1.safetensors"))
        path = index_file(d, {"w": "s1.safetensors", "b": "s1.safetensors"})
        target = d / "s1.safetensors"
    else:
        path = write_dcp(tmp_path / "dcp", sd)
        target = next(path.glob("*.distcp"))
    ck = sdw.open_checkpoint(path)
    data = target.read_bytes()
    if change == "truncate":
        os.truncate(target, len(data) // 2)
    elif change == "replace":  # same bytes, another file: a different inode
        target.unlink()
        target.write_bytes(data)
    else:
        target.unlink()
    with pytest.raises(sdw.UnreadableCheckpointError, match="re-open") as info:
        ck.tensor("w")
    if fmt != "legacy":  # a legacy file is read into memory whole; its change shows up too
        assert isinstance(info.value, CheckpointChangedError)


# ============================================================================ typed failures


def test_slash_in_nested_entry_names(tmp_path):
    """A ``/`` inside an entry's name is escaped in ``source.key`` (``x\\/y``), so the text names
    one entry; an unescaped ``x/y`` still finds a name with a slash when nothing else matches."""
    w = {"w": torch.ones(2)}
    cases = [
        ({"x/y": w, "epoch": 1}, None, "x\\/y"),
        ({"x/y": w}, "x/y", "x\\/y"),
        ({"a": {"b/c": w}, "step": 2}, None, "a/b\\/c"),
        ({"a": {"b/c": w}}, "a/b/c", "a/b\\/c"),
        ({"a": {"b/c": w}}, ["a", "b/c"], "a/b\\/c"),
        ({"a/b": {"c": w}, "a": {"b": {"c": {"v": torch.zeros(1)}}}}, "a/b/c", "a/b/c"),
        ({"a\\b": w, "n": 1}, None, "a\\\\b"),
    ]
    for obj, key, expected in cases:
        path = tmp_path / "n.pt"
        torch.save(obj, path)
        for src in (obj, path):
            ck = sdw.open_checkpoint(src, key=key)
            if expected is not None:
                assert ck.source.key == expected
            # the reported key opens the same entry again
            again = sdw.open_checkpoint(src, key=ck.source.key)
            assert list(again) == list(ck)
    with pytest.raises(sdw.NotAStateDictError, match="no entry 'x/z'"):
        sdw.open_checkpoint({"x/y": w}, key="x/z")
    with pytest.raises(sdw.NotAStateDictError):
        sdw.open_checkpoint({"x": w}, key="x/w")  # "w" is a tensor, not an entry


def test_an_entry_named_like_a_nested_path_is_never_the_other_one(tmp_path):
    """``{"run/ema": A, "run": {"ema": B}}``: each entry is read by the key its source reports
    (issue 17: ``key='run/ema'`` used to read the other one), through the file too."""
    literal = {"lit.weight": torch.full((2,), 1.0)}
    nested = {"nest.weight": torch.full((3,), 2.0)}
    obj = {"run/ema": literal, "run": {"ema": nested}, "epoch": 3}
    path = tmp_path / "both.pt"
    torch.save(obj, path)
    for src in (obj, path):
        auto = sdw.open_checkpoint(src)
        by_key = {k: sdw.open_checkpoint(src, key=k) for k in auto.source.candidates}
        assert set(auto.source.candidates) == {"run\\/ema", "run/ema"}
        assert list(by_key["run/ema"]) == ["nest.weight"]
        assert list(by_key["run\\/ema"]) == ["lit.weight"]
        assert list(sdw.open_checkpoint(src, key=["run/ema"])) == ["lit.weight"]
        assert list(sdw.open_checkpoint(src, key=["run", "ema"])) == ["nest.weight"]
        for k, ck in by_key.items():
            assert ck.source.key == k  # the entry named is the entry read, and reported
            again = sdw.open_checkpoint(src, key=ck.source.key)
            assert list(again) == list(ck)
        # the auto choice reports a key that reads what it read
        assert list(sdw.open_checkpoint(src, key=auto.source.key)) == list(auto)
    # the exported code reads the same entry as sd_widgets (a name with a slash stays whole)
    model = torch.nn.Module()
    model.lit = torch.nn.Module()
    model.lit.register_buffer("weight", torch.zeros(2))
    code = sdw.compare(model, sdw.open_checkpoint(path, key="run\\/ema")).plan().to_code()
    assert "ENTRY = ('run/ema',)" in code
    namespace: dict[str, Any] = {"__name__": "exported"}
    exec(compile(code, "<plan>", "exec"), namespace)
    assert list(namespace["read_checkpoint"]()) == ["lit.weight"]


@pytest.mark.parametrize("metadata", [[1, 2], "text", 3, {"a": 1}, {"a": ["b"]}, {"a": None}])
def test_safetensors_metadata_must_be_str_to_str(metadata, tmp_path):
    path = tmp_path / "m.safetensors"
    header = {"__metadata__": metadata, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    path.write_bytes(safetensors_bytes(header, 4))
    with pytest.raises(sdw.UnreadableCheckpointError):
        sdw.open_checkpoint(path)


def test_safetensors_validation_reads_only_the_header(tmp_path):
    """A header describing 4 GiB of data over a sparse file: opened (and validated by the
    library) in well under a second, without the data pages being read."""
    path = tmp_path / "sparse.safetensors"
    n = 1 << 30
    head = safetensors_bytes({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}})
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + 4 * n)
    t0 = time.perf_counter()
    ck = sdw.open_checkpoint(path)
    assert time.perf_counter() - t0 < 1
    assert ck["w"].shape == (n,) and ck.nbytes == 4 * n
    assert os.stat(path).st_blocks * 512 < 1 << 20  # still sparse: nothing was written or read


def _corrupt_pickle_zip(tmp_path: Path) -> Path:
    members = [
        (
            n,
            b"\x80\x02}q\x00(X\x01\x00\x00\x00wq\x01\xff\xfe\xfd" if n.endswith("data.pkl") else d,
            None,
        )
        for n, d in torch_zip_members({"w": torch.ones(2)})
    ]
    return write_zip(tmp_path / "corrupt.pt", members)


def test_corrupt_pickle_is_unreadable_and_never_advises_trust(tmp_path):
    legacy = io.BytesIO()
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    raw = bytearray(legacy.getvalue())
    raw[20:40] = b"\xfe" * 20
    (tmp_path / "corrupt.pth").write_bytes(bytes(raw))
    for path in (_corrupt_pickle_zip(tmp_path), tmp_path / "corrupt.pth"):
        with pytest.raises(sdw.UnreadableCheckpointError) as info:
            sdw.open_checkpoint(path)
        assert not isinstance(info.value, sdw.UnsafeCheckpointError), path
        assert "trust" not in str(info.value)


def test_unsafe_means_a_global_to_name(tmp_path):
    """UnsafeCheckpointError (and the advice to trust) only when there are globals to name."""
    path = tmp_path / "evil.pt"
    members = [
        (n, call_pickle("os", "system", ("true",), "GLOBAL") if n.endswith("data.pkl") else d, None)
        for n, d in torch_zip_members({"w": torch.ones(2)})
    ]
    write_zip(path, members)
    with pytest.raises(sdw.UnsafeCheckpointError) as info:
        sdw.open_checkpoint(path)
    assert info.value.globals == ["os.system"]
    assert "trust=" in str(info.value)


# ============================================================================ tied storage


def test_tied_detection_agrees_with_safetensors_shared_tensors(tmp_path):
    """Public-API tied detection (storage data_ptr and nbytes, as safetensors'
    ``_find_shared_tensors``) on a model with a tied head and on its saved file."""
    from safetensors.torch import _find_shared_tensors

    from sd_widgets import demo

    model = demo.tied_model()
    sd = model.state_dict()
    shared = [sorted(g) for g in _find_shared_tensors(sd) if len(g) > 1]
    path = tmp_path / "tied.pt"
    torch.save(sd, path)
    for src in (model, sd, path):
        groups = [sorted(g) for g in sdw.open_checkpoint(src).tied_groups()]
        assert groups == shared, src
    source = (REPO / "sd_widgets" / "checkpoint" / "_memory.py").read_text()
    assert "_cdata" not in source


# ============================================================================ weight sets


def test_other_weight_sets_are_listed_and_can_be_opened(tmp_path):
    sd = collections.OrderedDict(w=torch.ones(2), b=torch.zeros(2))
    ema = collections.OrderedDict(w=torch.full((2,), 0.5), b=torch.zeros(2))
    for obj, used, others in [
        (
            {"state_dict": sd, "state_dict_ema": ema, "optimizer": {"state": {}}},
            "state_dict",
            {"state_dict_ema": 2},
        ),
        ({"model": sd, "ema": ema, "epoch": 3}, "model", {"ema": 2}),
        ({"state_dict": sd, "epoch": 3}, "state_dict", {}),
    ]:
        path = tmp_path / "t.pt"
        torch.save(obj, path)
        for src in (obj, path):
            ck = sdw.open_checkpoint(src)
            assert ck.source.key == used and ck.source.alternatives == others
            for other in others:
                alt = sdw.open_checkpoint(src, key=other)
                assert alt.source.key == other and used in alt.source.alternatives
                assert torch.equal(alt.tensor("w"), obj[other]["w"])
            if others:
                assert repr(next(iter(others))) in ck.source.describe()


# ============================================================================ hypothesis


_DTYPES = [*SAFETENSORS_DTYPES, "Q7", "f32", ""]


@st.composite
def _safetensors_file(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 3))
    header: dict[str, Any] = {}
    offset = 0
    for i in range(n):
        dtype = draw(st.sampled_from(_DTYPES))
        shape = draw(st.lists(st.integers(-1, 3), max_size=3))
        size = 1
        for s in shape:
            size *= max(s, 0)
        itemsize = SAFETENSORS_DTYPES[dtype].itemsize if dtype in SAFETENSORS_DTYPES else 4
        length = size * itemsize + draw(st.sampled_from([0, 0, 0, 1, -1, 4]))
        start = offset + draw(st.sampled_from([0, 0, 0, 1, -1]))
        header[draw(st.sampled_from([f"t{i}", f"t{i}.w", "__x__"]))] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [start, start + length],
        }
        offset = start + length
    meta = draw(st.sampled_from([None, {"format": "pt"}, {"a": 1}, [], "x"]))
    if meta is not None:
        header["__metadata__"] = meta
    data = max(offset, 0) + draw(st.sampled_from([0, 0, 1, -1, 8]))
    return safetensors_bytes(header, max(data, 0))


def _library_accepts(path: Path) -> bool:
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            for k in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                f.get_slice(k).get_shape()
        return True
    except Exception:
        return False


@settings(FUZZ, max_examples=150)
@given(raw=_safetensors_file())
def test_safetensors_acceptance_matches_the_library(raw, tmp_path):
    path = tmp_path / "h.safetensors"
    path.write_bytes(raw)
    expected = _library_accepts(path)
    result = opened_or_typed(path)
    accepted = not isinstance(result, sdw.UnreadableCheckpointError)
    assert accepted == expected, (raw[:300], result)


@FUZZ
@given(data=st.data())
def test_mutated_real_safetensors_headers_match_the_library(data, tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(
        {
            "a": torch.randn(3, 4),
            "b": torch.zeros(2, dtype=torch.int64),
            "c": torch.ones(5, dtype=torch.bfloat16),
        },
        str(path),
        metadata={"k": "v"},
    )
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(8, 8 + n - 1))
        raw[i] = data.draw(st.sampled_from(list(b'0123456789,:[]{}"-eE. ')))
    path.write_bytes(bytes(raw))
    expected = _library_accepts(path)
    result = opened_or_typed(path)
    assert (not isinstance(result, sdw.UnreadableCheckpointError)) == expected, result


_SEEDS: dict[str, bytes] = {}


def _seed_files(tmp: Path) -> dict[str, tuple[str, bytes]]:
    """Real files of every format, as (file name, bytes) to mutate."""
    if not _SEEDS:
        # fixed values: the same bytes are mutated on every run (a failure reproduces)
        sd = {
            "conv.weight": torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0)),
            "bn.running_mean": torch.zeros(4),
            "bn.num_batches_tracked": torch.tensor(3),
        }
        buf = io.BytesIO()
        torch.save({"state_dict": sd, "epoch": 1}, buf)
        _SEEDS["zip"] = buf.getvalue()
        buf = io.BytesIO()
        torch.save(sd, buf, _use_new_zipfile_serialization=False)
        _SEEDS["legacy"] = buf.getvalue()
        from safetensors.torch import save

        _SEEDS["safetensors"] = save(sd)
        d = write_dcp(tmp / "seed_dcp", {"model": sd})
        _SEEDS["dcp"] = (d / ".metadata").read_bytes()
    return {
        "zip": ("x.pt", _SEEDS["zip"]),
        "legacy": ("x.pth", _SEEDS["legacy"]),
        "safetensors": ("x.safetensors", _SEEDS["safetensors"]),
        "dcp": (".metadata", _SEEDS["dcp"]),
    }


def test_a_legacy_file_declaring_an_enormous_length_is_typed_not_memory_error(tmp_path):
    # found by the fuzz test below in CI: the refusal message scans the pickle's opcodes, and
    # pickletools reads a declared length (here 2**62 bytes) in one read() of the real file
    path = tmp_path / "x.pth"
    path.write_bytes(b"\x80\x02\x8e" + (2**62).to_bytes(8, "little") + bytes(64))
    with pytest.raises(sdw.UnreadableCheckpointError, match="BINBYTES8"):
        sdw.open_checkpoint(path)


@settings(FUZZ, max_examples=60)
@given(fmt=st.sampled_from(["zip", "legacy", "safetensors", "dcp"]), data=st.data())
def test_mutated_real_files_of_every_format_are_typed(fmt, data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mut")
    name, raw = _seed_files(tmp)[fmt]
    raw = bytearray(raw)
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice"]))
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = (
                data.draw(st.integers(0, 255))
                if kind == "flip"
                else raw[data.draw(st.integers(0, len(raw) - 1))]
            )
    if fmt == "dcp":
        d = write_dcp(tmp / "dcp", {"model": {"w": torch.ones(2)}})
        (d / name).write_bytes(bytes(raw))
        src = d
    else:
        src = tmp / name
        src.write_bytes(bytes(raw))
    opened_or_typed(src)


@FUZZ
@given(
    raw=st.binary(max_size=512),
    name=st.sampled_from(
        ["x.pt", "x.pth", "x.safetensors", "x.bin", "model.safetensors.index.json", ".metadata"]
    ),
    prefix=st.sampled_from(
        [b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]
    ),
)
def test_random_bytes_for_every_reader_are_typed(raw, name, prefix, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rnd")
    data = prefix + raw
    if name == ".metadata":
        d = write_dcp(tmp / "dcp", {"w": torch.ones(1)})
        (d / name).write_bytes(data)
        src = d
    else:
        src = tmp / name
        src.write_bytes(data)
    result = opened_or_typed(src)
    assert isinstance(result, (sdw.CheckpointError, sdw.Checkpoint))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@FUZZ
@given(
    weight_map=st.dictionaries(
        st.text(max_size=6),
        st.sampled_from(
            [
                "s1.safetensors",
                "../s1.safetensors",
                "/s1.safetensors",
                "s2.bin",
                "sub/../s1.safetensors",
                "",
                ".",
                "s1.safetensors\x00",
            ]
        )
        | _json,
        max_size=4,
    )
    | _json
)
def test_random_index_json_is_typed(weight_map, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("idx")
    save_file({"w": torch.ones(2)}, str(tmp / "s1.safetensors"))
    result = opened_or_typed(index_file(tmp, weight_map))
    if isinstance(result, sdw.Checkpoint):  # only an index that names s1.safetensors opens
        assert all(
            os.path.realpath(f) == os.path.realpath(tmp / "s1.safetensors")
            for f in result.source.files
        )


_names = st.text(alphabet=st.sampled_from("ab/._\x00\n"), min_size=0, max_size=5)


@settings(FUZZ, max_examples=80)
@given(
    obj=st.recursive(
        st.just(torch.ones(1)) | st.integers() | st.none(),
        lambda inner: st.dictionaries(_names, inner, max_size=3),
        max_leaves=8,
    ).filter(lambda o: isinstance(o, dict)),
    key=st.none() | _names,
)
def test_nested_mappings_with_hostile_entry_names(obj, key):
    result = opened_or_typed(obj, key=key)
    if isinstance(result, sdw.Checkpoint) and result.source.key is not None:
        again = sdw.open_checkpoint(obj, key=result.source.key)
        assert list(again) == list(result)
        for other in result.source.alternatives:
            assert isinstance(opened_or_typed(obj, key=other), sdw.Checkpoint)


_field_values = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.text(max_size=6),
    st.just("../x"),
    st.just("/etc/passwd"),
    st.lists(st.integers(-2, 4), max_size=3),
    st.just(torch.float32),
    st.just({"a": 1}),
)


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_mutated_dcp_metadata_objects_are_typed(data, tmp_path_factory, secret):
    """Real DCP metadata with fields replaced by values of the wrong type, negative sizes,
    paths out of the directory: opening and reading every tensor is typed, never reads the
    secret outside, never crashes."""
    tmp = tmp_path_factory.mktemp("dcpmut")
    directory = write_dcp(
        tmp / "dcp",
        {"model": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)}, "step": 1},
    )
    md = real_dcp_metadata(directory)
    targets: list[tuple[Any, str]] = [
        (md, "planner_data"),
        (md, "storage_meta"),
        (md, "state_dict_metadata"),
        (md, "storage_data"),
    ]
    for item in md.state_dict_metadata.values():
        targets.append((item, "size") if hasattr(item, "size") else (item, "__class__"))
        if hasattr(item, "chunks"):
            targets += [
                (item, "chunks"),
                (item.chunks[0], "offsets"),
                (item.chunks[0], "sizes"),
                (item.properties, "dtype"),
            ]
    for info in md.storage_data.values():
        targets += [(info, "relative_path"), (info, "offset"), (info, "length")]
    for _ in range(data.draw(st.integers(1, 3))):
        obj, field = data.draw(st.sampled_from([t for t in targets if t[1] != "__class__"]))
        with contextlib.suppress(Exception):
            setattr(obj, field, data.draw(_field_values))
    try:
        dump_metadata(directory, md)
    except Exception:  # some replacements cannot even be pickled
        return
    result = opened_or_typed(directory)
    if isinstance(result, sdw.CheckpointError):
        assert SECRET.decode() not in str(result)


# ============================================================ fail closed: trust (issue 16 §1)

#: globals that run code with arguments a file chooses: never offered, never allowed one by one
RUNS_CODE = [
    "builtins.eval",
    "builtins.exec",
    "builtins.compile",
    "builtins.getattr",
    "builtins.setattr",
    "builtins.__import__",
    "builtins.open",
    "os.system",
    "posix.system",
    "nt.system",
    "subprocess.Popen",
    "commands.Popen",
    "importlib.import_module",
    "runpy._run_code",
    "pty.spawn",
    "socket.create_connection",
    "shutil.rmtree",
    "ctypes.CDLL",
    "sys.exit",
    "pickle.loads",
    "_pickle.loads",
    "marshal.loads",
    "functools.partial",
    "operator.attrgetter",
    "torch.load",
    "torch.serialization.load",
    "torch.hub.load",
    "torch.jit.load",
    "torch.storage._load_from_bytes",
    "torch._inductor.codecache.compile_file",
    "pathlib.Path.write_text",
    "code.InteractiveInterpreter.runcode",
    "evil\x1b[31m.Thing",
    "not a name",
]
#: data-like globals: still offered as trust=[...] and then allowed
DATA_LIKE = [
    "argparse.Namespace",
    "types.SimpleNamespace",
    "collections.OrderedDict",
    "numpy.dtype",
    "numpy._core.multiarray._reconstruct",
    "__main__.TrainConfig",
    "builtins.set",
]


@pytest.mark.parametrize("name", RUNS_CODE)
def test_globals_that_run_code_are_classified_as_code(name):
    from sd_widgets.checkpoint._trust import code_globals

    assert code_globals([name]) == [name]


@pytest.mark.parametrize("name", DATA_LIKE)
def test_data_classes_are_not_classified_as_code(name):
    from sd_widgets.checkpoint._trust import code_globals

    assert code_globals([name]) == []


def test_the_classification_is_picklescans():
    """Modules only picklescan's list names (not sd_widgets' own additions) run code too: the
    knowledge is the maintained scanner's."""
    from picklescan.scanner import SafetyLevel, scan_pickle_bytes

    from sd_widgets.checkpoint._trust import ALSO_RUNS_CODE, code_globals

    names = ["webbrowser.open", "bdb.Bdb", "pdb.run", "venv.create", "timeit.timeit"]
    assert not any(n.split(".")[0] in ALSO_RUNS_CODE for n in names)
    raw = b"".join(b"c" + n.replace(".", "\n", 1).encode() + b"\n" for n in names) + b"."
    verdicts = {g.safety for g in scan_pickle_bytes(io.BytesIO(raw), "t").globals}
    assert verdicts == {SafetyLevel.Dangerous}
    assert code_globals(names) == names


def _code_objects() -> list[Any]:
    import ctypes
    import importlib
    import marshal
    import pty
    import runpy
    import shutil

    return [
        eval,
        exec,
        compile,
        getattr,
        setattr,
        __import__,
        open,
        os.system,
        subprocess.Popen,
        importlib.import_module,
        runpy.run_path,
        pty.spawn,
        socket.socket,
        shutil.rmtree,
        ctypes.CDLL,
        sys.exit,
        pickle.loads,
        marshal.loads,
        torch.load,
        torch.hub.load,
        torch.jit.load,
        os,
        (os.system, "argparse.Namespace"),  # a harmless name cannot smuggle a callable in
    ]


@pytest.mark.parametrize("obj", _code_objects(), ids=lambda o: str(getattr(o, "__name__", o)))
def test_trust_list_of_a_callable_that_runs_code_is_refused(obj, tmp_path):
    """trust=[eval] used to run the payload: now refused before the file is read, naming the
    callable; only trust=True opens such a file."""
    from fuzz_files import payload_checkpoints, write_payload_checkpoint

    marker = tmp_path / "PWNED"
    payload, _ = payload_checkpoints(marker)["eval"]
    path = write_payload_checkpoint(tmp_path / "evil.pt", payload)
    with pytest.raises(sdw.UnsafeCheckpointError, match="can run code") as info:
        sdw.open_checkpoint(path, trust=[obj])
    assert info.value.runs_code and info.value.runs_code[0] in str(info.value)
    assert "trust=True" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", ["eval", "exec", "os.system", "subprocess.Popen",
                                     "getattr chain", "importlib", "runpy", "pty",
                                     "pickle in pickle"])  # fmt: skip
def test_a_file_that_would_run_code_says_so_and_offers_no_allow_list(payload, tmp_path):
    from fuzz_files import payload_checkpoints, write_payload_checkpoint

    marker = tmp_path / "PWNED"
    obj, needed = payload_checkpoints(marker)[payload]
    path = write_payload_checkpoint(tmp_path / "evil.pt", obj)
    with pytest.raises(sdw.UnsafeCheckpointError) as info:
        sdw.open_checkpoint(path)
    text = str(info.value)
    assert needed in info.value.runs_code
    assert "would run code when loaded" in text and repr(needed) in text
    assert "trust=[" not in text.replace("No trust=[...]", "")  # nothing to allow one by one
    assert "corrupt" not in text
    with pytest.raises(sdw.UnsafeCheckpointError):  # and following no advice opens it
        sdw.compare(torch.nn.Linear(2, 2), path)
    assert not marker.exists()
    # the CLI: no --allow advice, and --allow of the callable is refused without running it
    from sd_widgets.cli import _main as cli

    assert cli.main(["inspect", str(path)]) == 2
    assert (
        cli.main(["inspect", str(path), "--allow", needed.replace("commands.", "subprocess.")]) == 2
    )
    assert not marker.exists()
    # control: the payload is live (trust=True runs it), so the test proves something
    if payload not in ("importlib", "runpy"):  # import_module("this"), run_path(missing file)
        with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
            sdw.open_checkpoint(path, trust=True)
        deadline = time.monotonic() + 10  # Popen's child creates it asynchronously
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), f"payload {payload} is not live"


def test_cli_says_the_file_would_run_code_and_never_suggests_allow(tmp_path, capsys):
    from fuzz_files import payload_checkpoints, write_payload_checkpoint

    from sd_widgets.cli import _main as cli

    marker = tmp_path / "PWNED"
    path = write_payload_checkpoint(tmp_path / "e.pt", payload_checkpoints(marker)["eval"][0])
    assert cli.main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "would run code when loaded" in err and "builtins.eval" in err
    assert "--allow builtins.eval" not in err and "no --allow admits code" in err
    assert cli.main(["inspect", str(path), "--allow", "builtins.eval"]) == 2
    err = capsys.readouterr().err
    assert "can run code" in err and "builtins.eval" in err
    os_path = write_payload_checkpoint(
        tmp_path / "os.pt", payload_checkpoints(marker)["os.system"][0]
    )
    assert cli.main(["inspect", str(os_path), "--allow", "posix.system"]) == 2
    err = capsys.readouterr().err
    assert "corrupt" not in err and "posix.system" in err
    assert not marker.exists()


def test_data_class_is_still_offered_and_opens_as_an_allow_list_load(tmp_path, capsys):
    import argparse

    from sd_widgets import demo
    from sd_widgets.cli import _main as cli

    path = demo.write_unsafe_checkpoint(tmp_path / "args.pt", "namespace")
    with pytest.raises(sdw.UnsafeCheckpointError) as info:
        sdw.open_checkpoint(path)
    assert info.value.runs_code == []
    assert "trust=[argparse.Namespace]" in str(info.value)
    assert len(sdw.open_checkpoint(path, trust=[argparse.Namespace])) > 0
    assert cli.main(["inspect", str(path)]) == 2
    assert "--allow argparse.Namespace" in capsys.readouterr().err
    assert cli.main(["inspect", str(path), "--allow", "argparse.Namespace"]) == 0
    out = capsys.readouterr().out
    assert "[allow-list: argparse.Namespace]" in out and "full unpickling" not in out
    assert cli.main(["inspect", str(path), "--trust"]) == 0
    assert "[trusted: full unpickling]" in capsys.readouterr().out


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize("legacy", [False, True])
def test_pickle_protocols_torch_cannot_parse_are_named_not_called_corrupt(
    protocol, legacy, tmp_path
):
    path = tmp_path / "p.pt"
    sd = {"w": torch.ones(2)}
    torch.save(sd, path, pickle_protocol=protocol, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(sdw.UnreadableCheckpointError) as info:
        sdw.open_checkpoint(path)
    text = str(info.value)
    assert "pickle protocol 4" in text and "FRAME" in text  # protocol 5 frames too
    assert "not necessarily corrupt" in text and "probably truncated" not in text
    assert list(sdw.open_checkpoint(path, trust=True)) == ["w"]  # what the message offers
    # a payload behind an unparseable protocol still says it runs code
    marker = tmp_path / "PWNED"
    from fuzz_files import ReduceTo

    torch.save({"w": torch.ones(2), "cb": ReduceTo(os.system, f"touch {marker}")}, path,
               pickle_protocol=protocol, _use_new_zipfile_serialization=not legacy)  # fmt: skip
    with pytest.raises(sdw.UnsafeCheckpointError) as unsafe:
        sdw.open_checkpoint(path)
    assert unsafe.value.runs_code == [f"{os.system.__module__}.system"]
    assert not marker.exists()


def test_protocol_1_pickle_is_named_not_called_corrupt(tmp_path):
    path = tmp_path / "p1.pt"
    torch.save({"w": torch.ones(2), "cfg": {"a": 1}}, path, pickle_protocol=1)
    with pytest.raises(sdw.UnreadableCheckpointError) as info:
        sdw.open_checkpoint(path)
    assert "pickle protocol" in str(info.value) and "probably truncated" not in str(info.value)
    assert list(sdw.open_checkpoint(path, trust=True)) == ["w"]


def test_explorer_error_for_a_payload_offers_no_trust_list(tmp_path):
    from fuzz_files import payload_checkpoints, write_payload_checkpoint

    from sd_widgets.widget._texts import error_state as _error_state

    marker = tmp_path / "PWNED"
    path = write_payload_checkpoint(tmp_path / "e.pt", payload_checkpoints(marker)["eval"][0])
    with pytest.raises(sdw.UnsafeCheckpointError) as info:
        sdw.open_checkpoint(path)
    state = _error_state(info.value, str(path))
    assert "run code" in state["title"] and "builtins.eval" in state["fix"]
    assert "trust=[...] naming" not in state["fix"]


# ============================================================ hostile files (issue 16 §4)


@pytest.mark.parametrize(
    ("module", "name", "attr"),
    [
        ("pathlib", "PosixPath", "__fspath__"),
        ("torch.serialization", "_get_layout", "cache_clear"),
        ("torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING", "TORCH_CONTIGUOUS"),
        ("torch", "Size", "numel"),
        ("collections", "OrderedDict", "keys"),
    ],
)
def test_dcp_metadata_cannot_set_state_on_classes_or_functions(module, name, attr, tmp_path):
    """BUILD on an admitted class or function used to setattr it for the whole process (a
    few bytes set pathlib.PosixPath.__fspath__ = None); now refused before the change."""
    directory = write_dcp(tmp_path / "dcp", {"w": torch.ones(2)})
    from fuzz_files import build_on_global_pickle

    target = dcp_metadata_globals()[(module, name)]
    before = target.__dict__.get(attr, "<absent>") if hasattr(target, "__dict__") else None
    (directory / ".metadata").write_bytes(build_on_global_pickle(module, name, attr))
    with pytest.raises(sdw.UnreadableCheckpointError, match="sets state"):
        sdw.open_checkpoint(directory)
    after = target.__dict__.get(attr, "<absent>") if hasattr(target, "__dict__") else None
    assert after is before
    assert os.fspath(Path("/tmp/x")) == "/tmp/x"  # the kernel's pathlib is intact
    if name == "PosixPath":  # control, in a fresh interpreter: a plain unpickler obeys
        done = run_python(
            f"""
            import os, pathlib, pickle, sys
            sys.path.insert(0, "tests")
            from fuzz_files import build_on_global_pickle
            pickle.loads(build_on_global_pickle({module!r}, {name!r}, {attr!r}))
            try:
                os.fspath(pathlib.Path("/tmp/x"))
            except TypeError:
                print("BROKEN")
            """
        )
        assert done.stdout.strip() == "BROKEN", done.stderr


def test_dcp_build_on_a_shared_enum_member_is_refused(tmp_path):
    """State set on an object the pickle got by calling an admitted class (an enum member is
    a process-wide singleton) is refused too: only instances it created with NEWOBJ."""
    from torch.distributed.checkpoint.metadata import _MEM_FORMAT_ENCODING

    directory = write_dcp(tmp_path / "dcp", {"w": torch.ones(2)})
    from fuzz_files import _unicode

    mod = "torch.distributed.checkpoint.metadata"
    raw = b"\x80\x04" + _unicode(mod, 4) + _unicode("_MEM_FORMAT_ENCODING", 4) + b"\x93"
    raw += b"K\x01\x85R"  # _MEM_FORMAT_ENCODING(1): the TORCH_CONTIGUOUS member
    raw += b"N}" + _unicode("_value_", 4) + b"K\x07s\x86b."
    (directory / ".metadata").write_bytes(raw)
    with pytest.raises(sdw.UnreadableCheckpointError, match="sets state"):
        sdw.open_checkpoint(directory)
    assert _MEM_FORMAT_ENCODING(1)._value_ == 1


def test_real_dcp_metadata_still_sets_state_on_its_own_instances(tmp_path):
    directory = write_dcp(tmp_path / "dcp", _rich_dcp_state())
    ck = sdw.open_checkpoint(directory)
    assert "model.0.weight" in ck and ck["model.0.weight"].shape == (4, 3, 3, 3)


@pytest.mark.parametrize(
    ("chunks", "fragment"),
    [
        ([], "cover 0 of its 256"),
        ([([0, 0], [1, 64])], "cover 64 of its 256"),
        ([([0, 0], [4, 64]), ([0, 0], [4, 64])], "cover 512"),
        ([([0, 0], [3, 64]), ([3, 0], [2, 64])], "reaches outside"),
        ([([0, 0], [2, 64]), ([1, 0], [2, 64]), ([3, 0], [0, 64])], "overlap"),
        ([([0, 0], [2, 32]), ([2, 0], [2, 32]), ([0, 0], [4, 32])], "overlap"),
        ([([0], [4])], "1 offsets"),
    ],
)
def test_dcp_chunks_must_tile_each_tensor(chunks, fragment, tmp_path):
    """A tensor whose chunks do not tile it used to compare as match and load uninitialised
    memory; now the file is a CheckpointError naming the tensor."""
    directory = write_dcp(tmp_path / "dcp", {"w": torch.arange(256.0).reshape(4, 64)})
    from fuzz_files import set_dcp_chunks

    set_dcp_chunks(directory, "w", chunks)
    with pytest.raises(sdw.CheckpointError, match="do not tile") as info:
        sdw.compare(torch.nn.Linear(64, 4, bias=False), directory)
    assert fragment in str(info.value) and "'w'" in str(info.value)


def test_dcp_chunks_that_tile_in_blocks_open(tmp_path):
    directory = write_dcp(tmp_path / "dcp", {"w": torch.arange(256.0).reshape(4, 64)})
    from fuzz_files import set_dcp_chunks

    from sd_widgets.checkpoint._dcp import _tiling_problem

    # a 2x2 block tiling is exact (checked without reading the data)
    blocks = [([r, c], [2, 32]) for r in (0, 2) for c in (0, 32)]
    assert _tiling_problem([4, 64], blocks) is None
    assert _tiling_problem([], [([], [])]) is None
    assert _tiling_problem([0, 5], []) is None
    set_dcp_chunks(directory, "w", [([0, 0], [4, 64])])
    assert torch.equal(
        sdw.open_checkpoint(directory).tensor("w"), torch.arange(256.0).reshape(4, 64)
    )


def test_one_tensor_under_many_names_is_linear(tmp_path):
    """341 KB of one tensor under 12,000 names took 19 s and +3 GB (each key listed every
    other); the group is shared and rows show at most 16 names and a count."""
    from fuzz_files import aliased_checkpoint

    from sd_widgets.checkpoint._core import TIED_SHOWN

    path = aliased_checkpoint(tmp_path / "alias.pt", 12_000)
    assert path.stat().st_size < 400_000
    code = f"""
        import resource, time, torch, sd_widgets as sdw
        from sd_widgets.widget._explorer import Explorer
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        ck = sdw.open_checkpoint({str(path)!r})
        cmp = sdw.compare(torch.nn.Linear(4, 1), ck)
        frame = cmp.to_frame()
        Explorer(torch.nn.Linear(4, 1), ck)
        print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
        info = ck["layer.0.weight"]
        assert len(info.tied) == 11_999 and "layer.11999.weight" in info.tied
        assert "layer.0.weight" not in info.tied
        shown = frame.loc[frame["key"] == "layer.0.weight", "tied"].item()
        assert shown.endswith("(+11,983 more)") and len(shown.split(", ")) == 17, shown
        assert len(cmp["layer.0.weight"].to_json()["tied"]) == {TIED_SHOWN + 1}
    """
    done = run_python(code, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seconds, kib = map(float, done.stdout.split()[-2:])
    assert seconds < 10 and kib < 400 * 1024, (seconds, kib)


def test_tied_keys_view_behaves_like_the_tuple_it_replaces():
    sd = {"a": torch.zeros(2)}
    sd["b"] = sd["a"]
    sd["c"] = sd["a"]
    ck = sdw.open_checkpoint(sd)
    assert tuple(ck["a"].tied) == ("b", "c") and ck["a"].tied == ("b", "c")
    assert ck["b"].tied == ("a", "c") and "a" in ck["b"].tied and "b" not in ck["b"].tied
    assert ck.tied_groups() == [("a", "b", "c")]
    assert pickle.loads(pickle.dumps(ck["c"])).tied == ("a", "b")


@pytest.mark.parametrize("levels", [20_000, 50_000])
def test_a_key_thousands_of_levels_deep_is_refused_cheaply(levels, tmp_path):
    from fuzz_files import deep_key_checkpoint

    path = deep_key_checkpoint(tmp_path / "deep.pt", levels)
    t0 = time.perf_counter()
    with pytest.raises(sdw.UnreadableCheckpointError, match=f"{levels:,} names deep"):
        sdw.compare(torch.nn.Linear(2, 1), path)
    assert time.perf_counter() - t0 < 5
    from sd_widgets.widget._explorer import Explorer

    ex = Explorer(torch.nn.Linear(2, 1), path)  # the widget shows the error, no MemoryError
    assert isinstance(ex.last_error, sdw.UnreadableCheckpointError)
    # a deep but real key is fine
    ok = {".".join(["m"] * 200) + ".weight": torch.zeros(1)}
    assert len(sdw.open_checkpoint(ok)) == 1


def test_regex_rule_cannot_hang_on_a_key_from_the_file():
    """``(a|aa)+$`` against a 60-character key from the file: exponential under a backtracking
    engine (more than 20 s at 40 characters); matched under a time bound, a typed error."""
    from sd_widgets.compare._renames import MATCH_TIMEOUT, SLOW_MATCH_BUDGET
    from sd_widgets.errors import RenameTimeoutError

    hostile = {"a" * 60 + "!": torch.zeros(1), "fc.weight": torch.zeros(2)}
    for pattern in (r"(a|aa)+$", r"(a+)+$", r"(\w+\.?)+$"):
        t0 = time.perf_counter()
        try:
            cmp = sdw.compare(torch.nn.Linear(1, 2, bias=False), hostile,
                              renames={f"re:{pattern}": "x"})  # fmt: skip
        except RenameTimeoutError as exc:
            assert exc.rule == pattern and exc.key == "a" * 60 + "!"
            assert "took too long" in str(exc) and repr(pattern) in str(exc)
        else:
            assert cmp.summary()  # matched in time: the rule just did not apply
        assert time.perf_counter() - t0 < SLOW_MATCH_BUDGET + 2 * MATCH_TIMEOUT + 1
    # many keys each just under the per-key bound add up to the rule's budget, not hours
    rule = sdw.Rename.regex(r"(a|aa)+$", "")
    keys = ["a" * 26 + str(i) + "!" for i in range(400)]
    t0 = time.perf_counter()
    with contextlib.suppress(RenameTimeoutError):
        for k in keys:
            rule(k)
    assert time.perf_counter() - t0 < SLOW_MATCH_BUDGET + 2 * MATCH_TIMEOUT + 1
    # ordinary rules behave as re.sub did
    assert sdw.Rename.regex(r"^module\.(\w+)", r"\1.x")("module.fc.weight") == "fc.x.weight"


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(
    size=st.lists(st.integers(0, 5), min_size=0, max_size=3),
    boxes=st.lists(
        st.tuples(st.lists(st.integers(0, 6), min_size=3, max_size=3),
                  st.lists(st.integers(0, 6), min_size=3, max_size=3)),
        max_size=6,
    ),
)  # fmt: skip
def test_chunk_tiling_check_agrees_with_counting_every_element(size, boxes):
    """The fuzz class for DCP chunks: the sweep accepts exactly the chunk lists that cover
    every element once (counted element by element with numpy)."""
    import numpy as np

    from sd_widgets.checkpoint._dcp import _tiling_problem

    chunks = [(o[: len(size)], n[: len(size)]) for o, n in boxes]
    counts = np.zeros(size, dtype=np.int64)
    inside = True
    for offsets, sizes in chunks:
        if any(o + n > d for o, n, d in zip(offsets, sizes, size, strict=True)):
            inside = False
            break
        counts[tuple(slice(o, o + n) for o, n in zip(offsets, sizes, strict=True))] += 1
    exact = inside and bool((counts == 1).all())
    assert (_tiling_problem(size, chunks) is None) == exact, (size, chunks)


def test_explorer_regex_rule_on_a_hostile_key_is_a_message_not_a_hang():
    """The Explorer's rule box, with a key from the file built to make ``(a|aa)+$`` explode: a
    readable error within the bound, the tree unchanged, the widget still usable."""
    from sd_widgets import demo
    from sd_widgets.compare._renames import MATCH_TIMEOUT, SLOW_MATCH_BUDGET
    from sd_widgets.widget._explorer import Explorer

    sd = dict(demo.variant("identical"))
    sd["a" * 60 + "!"] = torch.zeros(1)
    w = Explorer(demo.make_model("cnn"), sd)
    tree = w.tree
    t0 = time.perf_counter()
    w.handle_action({"action": "add_rule", "kind": "regex", "old": r"(a|aa)+$", "new": "x"})
    assert time.perf_counter() - t0 < SLOW_MATCH_BUDGET + 2 * MATCH_TIMEOUT + 5
    assert w.message["level"] == "error" and "took too long" in w.message["text"]
    assert w.tree is tree and w.rename_rules == []
    w.handle_action({"action": "add_rule", "kind": "prefix", "old": "zzz.", "new": ""})
    assert len(w.rename_rules) == 1  # still works


@pytest.mark.parametrize("form", ["zip", "legacy", "zip with a data.pkl over 1 MB"])
def test_a_payload_behind_a_data_class_is_still_named_and_not_offered(form, tmp_path):
    """torch names only the first global it refuses (here argparse.Namespace); the scan of the
    rest must still find builtins.eval, so no trust=[argparse.Namespace] advice is given (a
    pickle over 1 MB is scanned by sd_widgets, which used to leave every builtins.* out)."""
    import argparse

    from fuzz_files import ReduceTo

    legacy = form == "legacy"
    marker = tmp_path / "PWNED"
    path = tmp_path / "mixed.pt"
    n = 30_000 if "1 MB" in form else 1
    t = torch.ones(2)
    obj = {
        "state_dict": {f"encoder.layer.{i}.attention.output.weight": t for i in range(n)},
        "args": argparse.Namespace(lr=0.1),
        "cb": ReduceTo(eval, f"open({str(marker)!r}, 'w')"),
    }
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    if n > 1:
        import zipfile

        with zipfile.ZipFile(path) as zf:
            pkl = next(zi for zi in zf.infolist() if zi.filename.endswith("data.pkl"))
            assert pkl.file_size > 1_000_000
    with pytest.raises(sdw.UnsafeCheckpointError) as info:
        sdw.open_checkpoint(path)
    assert "argparse.Namespace" in info.value.globals
    # as the file names it: protocol 2 writes the builtin under its Python 2 module name (torch's
    # own scan, used for small zips, says builtins)
    assert info.value.runs_code == ["builtins.eval" if form == "zip" else "__builtin__.eval"]
    assert "would run code" in str(info.value)
    with pytest.raises(sdw.UnsafeCheckpointError, match="would run code"):
        sdw.open_checkpoint(path, trust=[argparse.Namespace])
    assert not marker.exists()


def test_globals_torch_admits_by_default_are_never_listed_as_refused():
    """The names an over-1 MB scan leaves out are torch's defaults, checked against torch's own
    table here (the package itself reads no private torch module)."""
    from torch._weights_only_unpickler import _get_allowed_globals

    from sd_widgets.checkpoint._unpickle import _TORCH_DEFAULTS, _torch_safe

    outside = {k for k in _get_allowed_globals() if not k.startswith("torch.")}
    assert outside <= _TORCH_DEFAULTS
    assert all(_torch_safe(k) for k in _get_allowed_globals())
    assert not _torch_safe("builtins.eval") and not _torch_safe("torch.serialization.load")
    assert not _torch_safe("argparse.Namespace")
