"""open_checkpoint: every format, nested checkpoints, tied weights, security and bad input.

Files are real (written by ``sd_widgets.demo`` or plain torch/safetensors into tmp_path) and
every expectation is checked against what plain torch reads from the same file.
"""

from __future__ import annotations

import argparse
import collections
import json
import pickle
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors
import torch
from bitwise import assert_bit_identical, bits
from hostile import CreateMarker, write_malicious_checkpoint
from safetensors.torch import save_file
from torch import nn

import sd_widgets as sdw
from sd_widgets import demo

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)

# demo format → (source.kind, key order preserved, source.key)
FORMAT_KINDS = {
    "torch": ("torch", True, None),
    "torch_legacy": ("torch-legacy", True, None),
    "safetensors": ("safetensors", False, None),
    "safetensors_sharded": ("safetensors-index", True, None),
    "bin_sharded": ("torch-index", True, None),
    "dcp": ("dcp", False, None),
    "lightning": ("torch", True, "state_dict"),
}


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def reference() -> collections.OrderedDict[str, torch.Tensor]:
    return demo.variant("identical")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return demo.write_all_formats(tmp_path_factory.mktemp("formats"), "identical")


class Spy:
    """Wraps a callable and records the keyword arguments of every call."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.fn(*args, **kwargs)


# ------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("fmt", demo.FORMATS)
def test_every_format_round_trips_bit_identically(fmt, files, reference):
    ckpt = sdw.open_checkpoint(files[fmt])
    kind, ordered, key = FORMAT_KINDS[fmt]
    assert ckpt.source.kind == kind
    assert ckpt.source.key == key
    expected = reference
    if fmt == "lightning":  # the network is LightningModule.model
        expected = collections.OrderedDict((f"model.{k}", v) for k, v in reference.items())
    if ordered:
        assert list(ckpt) == list(expected)
    assert sorted(ckpt) == sorted(expected)
    for k, t in expected.items():
        assert ckpt[k].shape == tuple(t.shape), k
        assert ckpt[k].dtype == t.dtype, k
        assert ckpt[k].numel == t.numel()
        assert ckpt[k].nbytes == t.numel() * t.element_size()
    assert ckpt.nbytes == sum(t.numel() * t.element_size() for t in expected.values())
    sd = ckpt.state_dict()
    assert list(sd) == list(ckpt)
    assert_bit_identical(sd, expected, ordered=False)
    one = next(iter(expected))
    assert torch.equal(bits(ckpt.tensor(one)), bits(expected[one]))
    assert repr(ckpt).startswith("<Checkpoint ")


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
@pytest.mark.parametrize("legacy", [False, True])
def test_torch_suffixes_read_with_weights_only(tmp_path, monkeypatch, reference, suffix, legacy):
    path = tmp_path / f"weights{suffix}"
    torch.save(reference, path, _use_new_zipfile_serialization=not legacy)
    spy = Spy(torch.load)
    monkeypatch.setattr(torch, "load", spy)
    ckpt = sdw.open_checkpoint(path)
    assert ckpt.source.kind == ("torch-legacy" if legacy else "torch")
    assert len(spy.calls) == 1
    kwargs = spy.calls[0][1]
    assert kwargs["weights_only"] is True
    assert kwargs["mmap"] is (not legacy)  # zip files are memory-mapped, legacy ones cannot be
    assert_bit_identical(ckpt.state_dict(), reference, ordered=False)
    # _metadata (module versions) survives the round trip (PyTorch fact 6)
    assert ckpt.metadata == reference._metadata
    assert ckpt.state_dict()._metadata == reference._metadata


def test_safetensors_open_reads_only_the_header(files, monkeypatch, reference):
    """The file is never mapped (torch.from_file, the only reader of tensor data) nor opened by
    safe_open until a tensor is asked for."""

    def forbidden(*args, **kwargs):
        raise AssertionError("tensor data was read")

    monkeypatch.setattr(safetensors, "safe_open", forbidden)
    monkeypatch.setattr(torch, "from_file", forbidden)
    ckpt = sdw.open_checkpoint(files["safetensors"])
    assert sorted(ckpt) == sorted(reference)
    assert ckpt["classifier.weight"].shape == (10, 32)
    assert ckpt.source.other_entries == {"__metadata__.format": "str: 'pt'"}
    # the first tensor read maps the file (its failure is wrapped in a typed error)
    with pytest.raises(sdw.UnreadableCheckpointError, match="tensor data was read"):
        ckpt.tensor("classifier.weight")


def test_safetensors_reads_agree_with_the_library_and_own_their_memory(tmp_path):
    """Whole tensors and rows read from the mapped file equal safetensors' own reads, including
    a tensor at an offset that is not a multiple of its item size (valid, never written by
    safetensors); whole tensors own their memory: the file rewritten in place afterwards (a
    training job saving to the same path) changes none of them."""
    gen = torch.Generator().manual_seed(0)
    sd = {
        "b": torch.randint(0, 2, (3,), generator=gen).bool(),  # 3 bytes: "w" below is unaligned
        "w": torch.randn(7, 5, generator=gen),
        "z": torch.empty(0, 4),
        "s": torch.tensor(2.5, dtype=torch.float64),
    }
    names = {torch.bool: "BOOL", torch.float32: "F32", torch.float64: "F64"}
    header, offset, data = {}, 0, b""
    for k, v in sd.items():
        raw = v.numpy().tobytes()
        header[k] = {
            "dtype": names[v.dtype],
            "shape": list(v.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        offset += len(raw)
        data += raw
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path = tmp_path / "odd.safetensors"
    path.write_bytes(len(head).to_bytes(8, "little") + head + data)
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert_bit_identical({k: f.get_tensor(k) for k in f.keys()}, sd, ordered=False)  # noqa: SIM118
    ckpt = sdw.open_checkpoint(path)
    got = ckpt.tensors(list(sd))
    assert_bit_identical(got, sd, ordered=False)
    assert torch.equal(ckpt.read_rows("w", 2, 5), sd["w"][2:5])
    assert ckpt.read_rows("w", 5, 99).shape == (2, 5)
    raw = bytearray(path.read_bytes())
    raw[len(raw) - len(data) :] = bytes(len(data))
    with open(path, "r+b") as f:  # in place: same inode, as a plain open(path, "wb") rewrite
        f.write(raw)
    assert_bit_identical(got, sd, ordered=False)


def test_safetensors_data_region_gone_still_lists_keys_but_tensor_fails(tmp_path, reference):
    path = tmp_path / "w.safetensors"
    save_file(dict(reference), str(path))
    ckpt = sdw.open_checkpoint(path)
    raw = path.read_bytes()
    header_end = 8 + int.from_bytes(raw[:8], "little")
    path.write_bytes(raw[:header_end])  # keep the header, drop every tensor byte
    assert ckpt["classifier.weight"].shape == (10, 32)  # metadata is still known
    with pytest.raises(
        sdw.UnreadableCheckpointError, match=r"reading 'classifier.weight'.*re-open"
    ):
        ckpt.tensor("classifier.weight")
    # re-opening reports the truncation up front
    with pytest.raises(sdw.UnreadableCheckpointError, match="truncated"):
        sdw.open_checkpoint(path)


def test_safetensors_corrupt_data_bytes_do_not_matter_for_metadata(tmp_path, reference):
    path = tmp_path / "w.safetensors"
    save_file(dict(reference), str(path))
    raw = bytearray(path.read_bytes())
    header_end = 8 + int.from_bytes(raw[:8], "little")
    raw[header_end:] = b"\xff" * (len(raw) - header_end)  # garbage instead of tensor data
    path.write_bytes(bytes(raw))
    ckpt = sdw.open_checkpoint(path)
    assert {k: i.shape for k, i in ckpt.items()} == {
        k: tuple(v.shape) for k, v in reference.items()
    }
    assert not torch.equal(ckpt.tensor("classifier.weight"), reference["classifier.weight"])


@pytest.mark.parametrize("fmt", ["safetensors_sharded", "bin_sharded"])
def test_sharded_index_and_its_directory(fmt, files, reference):
    index = files[fmt]
    assert index.name in ("model.safetensors.index.json", "pytorch_model.bin.index.json")
    by_index = sdw.open_checkpoint(index)
    by_dir = sdw.open_checkpoint(index.parent)
    assert list(by_index) == list(by_dir) == list(reference)
    weight_map = json.loads(index.read_text())["weight_map"]
    shards = sorted(set(weight_map.values()))
    assert len(shards) > 1
    assert sorted(Path(f).name for f in by_index.source.files) == shards
    for k, info in by_index.items():  # each tensor knows its shard
        assert Path(info.location).name == weight_map[k]
    assert by_index.source.other_entries == {"metadata.total_size": "int: " + str(by_index.nbytes)}
    assert_bit_identical(by_dir.tensors(list(reference)), reference, ordered=False)


def test_safetensors_index_reads_no_tensor_data(files, monkeypatch):
    for owner, name in ((safetensors, "safe_open"), (torch, "from_file")):
        monkeypatch.setattr(owner, name, lambda *a, **k: pytest.fail("tensor data was read"))
    ckpt = sdw.open_checkpoint(files["safetensors_sharded"])
    assert len(ckpt) == 38


def test_dcp_metadata_only(files, tmp_path, reference):
    """Keys, shapes and dtypes come from .metadata: the data files are not needed to open."""
    directory = tmp_path / "dcp"
    shutil.copytree(files["dcp"], directory)
    data_files = list(directory.glob("*.distcp"))
    assert data_files
    for f in data_files:
        f.unlink()
    ckpt = sdw.open_checkpoint(directory)
    assert ckpt.source.kind == "dcp"
    assert {k: (i.shape, i.dtype) for k, i in ckpt.items()} == {
        k: (tuple(v.shape), v.dtype) for k, v in reference.items()
    }
    # asking for data now fails with a typed error (not DCP's BaseException)
    with pytest.raises(sdw.UnreadableCheckpointError, match="FileNotFoundError"):
        ckpt.tensor("classifier.weight")


def test_dcp_nested_training_checkpoint(tmp_path):
    directory = demo.write_checkpoint(tmp_path, "training", "dcp")
    ckpt = sdw.open_checkpoint(directory)
    assert ckpt.source.key == "model_state_dict"
    expected = demo.variant("training")["model_state_dict"]
    assert list(ckpt) == list(expected) or sorted(ckpt) == sorted(expected)
    assert_bit_identical(ckpt.tensors(list(ckpt)), expected, ordered=False)
    assert "epoch" in ckpt.source.non_tensor


def test_directory_with_one_checkpoint_file(tmp_path, reference):
    (tmp_path / "README.txt").write_text("weights below")
    torch.save(reference, tmp_path / "weights.pth")
    ckpt = sdw.open_checkpoint(tmp_path)
    assert ckpt.source.path == str(tmp_path / "weights.pth")
    assert len(ckpt) == len(reference)


def test_mapping_and_module_sources():
    model = demo.make_model("mlp")
    by_module = sdw.open_checkpoint(model)
    assert by_module.source.kind == "module"
    assert list(by_module) == list(model.state_dict())
    assert by_module.tensor("fc1.weight") is not None
    assert torch.equal(by_module.tensor("fc1.weight"), model.fc1.weight)
    by_mapping = sdw.open_checkpoint(model.state_dict())
    assert by_mapping.source.kind == "mapping"
    assert by_mapping.source.path is None
    assert_bit_identical(by_mapping.state_dict(), model.state_dict(), ordered=False)
    assert sdw.open_checkpoint(by_mapping) is by_mapping
    with pytest.raises(TypeError, match="already opened"):
        sdw.open_checkpoint(by_mapping, key="model")
    with pytest.raises(TypeError, match="cannot open a checkpoint from int"):
        sdw.open_checkpoint(42)  # type: ignore[arg-type]


def test_to_frame_lists_every_tensor(files):
    frame = sdw.open_checkpoint(files["torch"]).to_frame()
    assert list(frame.columns) == ["key", "shape", "dtype", "numel", "nbytes", "tied"]
    assert len(frame) == 38
    row = frame.set_index("key").loc["classifier.weight"]
    assert row["shape"] == (10, 32)
    assert row["dtype"] == "float32"
    assert row["nbytes"] == 10 * 32 * 4


def test_unknown_key_suggests_close_ones(files):
    ckpt = sdw.open_checkpoint(files["torch"])
    with pytest.raises(KeyError, match=r"did you mean.*classifier\.weight"):
        ckpt.tensor("classifier.weigth")
    with pytest.raises(KeyError, match="not in this checkpoint"):
        ckpt.tensors(["classifier.bias", "nope"])


def test_cuda_saved_checkpoint_maps_to_cpu(tmp_path, monkeypatch):
    """A file whose storages are tagged 'cuda:0' (faked here) opens on this CPU-only machine."""
    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    path = tmp_path / "gpu.pt"
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(sd, path)
    with pytest.raises(RuntimeError, match="CUDA"):  # what plain torch.load does
        torch.load(path, weights_only=True)
    ckpt = sdw.open_checkpoint(path)  # map_location="cpu" by default
    assert ckpt.tensor("w").device.type == "cpu"
    assert torch.equal(ckpt.tensor("w"), sd["w"])
    with pytest.raises(
        sdw.UnreadableCheckpointError, match=r"saved from a GPU.*map_location='cpu'"
    ):
        sdw.open_checkpoint(path, map_location=None)


# ------------------------------------------------------------------------------------ nesting


@pytest.mark.parametrize(
    "wrapper", ["state_dict", "model", "model_state_dict", "module", "ema", "net"]
)
def test_nested_entry_found_automatically(wrapper, tmp_path):
    model = demo.make_model("mlp")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 20)).sum().backward()
    opt.step()
    obj = {wrapper: model.state_dict(), "optimizer": opt.state_dict(), "epoch": 7, "best": 0.5}
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    for src in (obj, path):
        ckpt = sdw.open_checkpoint(src)
        assert ckpt.source.key == wrapper
        assert list(ckpt) == list(model.state_dict())
        assert ckpt.source.candidates == {wrapper: 6}  # the optimizer is never a candidate
        assert ckpt.source.other_entries["epoch"] == "int: 7"
        assert ckpt.source.other_entries["best"] == "float: 0.5"
        assert ckpt.source.other_entries["optimizer"] == "dict (2 entries)"
        assert wrapper not in ckpt.source.other_entries
        assert_bit_identical(ckpt.state_dict(), model.state_dict(), ordered=False)


@pytest.mark.parametrize("name", sorted(demo.NESTED_VARIANTS))
def test_demo_nested_variants(name, tmp_path):
    obj = demo.variant(name)
    weights_key = demo.NESTED_VARIANTS[name]
    path = demo.write_checkpoint(tmp_path, name, "torch")
    for src in (obj, path):
        ckpt = sdw.open_checkpoint(src)
        assert ckpt.source.key == weights_key
        assert_bit_identical(ckpt.state_dict(), obj[weights_key], ordered=False)
        assert set(ckpt.source.other_entries) == set(obj) - {weights_key}
    if name == "lightning":
        assert all(k.startswith("model.") for k in ckpt)
        assert ckpt.source.other_entries["epoch"] == "int: 3"
        assert ckpt.source.other_entries["pytorch-lightning_version"] == "str: '2.4.0'"
    if name == "training":
        assert "optimizer_state_dict" not in ckpt.source.candidates
        assert ckpt.source.other_entries["loss"] == "float: 0.42"


def test_key_chooses_the_ema_weights(tmp_path):
    obj = demo.variant("ema")
    path = demo.write_checkpoint(tmp_path, "ema", "torch")
    auto = sdw.open_checkpoint(path)
    ema = sdw.open_checkpoint(path, key="ema")
    assert auto.source.key == "model"
    assert ema.source.key == "ema"
    assert ema.source.candidates == {"model": 38, "ema": 38}
    # the other weight set is named, and each one names the other
    assert auto.source.alternatives == {"ema": 38}
    assert ema.source.alternatives == {"model": 38}
    assert set(ema.source.other_entries) == {"model"}
    assert_bit_identical(ema.state_dict(), obj["ema"], ordered=False)
    differs = [k for k in obj["ema"] if not torch.equal(ema.tensor(k), auto.tensor(k))]
    assert differs  # really another set of weights


def test_nested_key_paths():
    sd = demo.make_model("mlp").state_dict()
    obj = {"checkpoint": {"weights": sd, "step": 3}, "meta": {"author": "me"}}
    auto = sdw.open_checkpoint(obj)
    assert auto.source.key == "checkpoint/weights"
    assert auto.source.other_entries == {"step": "int: 3"}
    assert list(sdw.open_checkpoint(obj, key="checkpoint/weights")) == list(sd)
    assert list(sdw.open_checkpoint(obj, key=["checkpoint", "weights"])) == list(sd)


def test_non_tensor_leaves_are_reported_not_crashed_on():
    sd = collections.OrderedDict(
        [("w", torch.ones(2)), ("version", 3), ("_extra_state", "blob"), ("b", torch.zeros(1))]
    )
    ckpt = sdw.open_checkpoint({"state_dict": sd, "epoch": 1})
    assert list(ckpt) == ["w", "b"]
    assert ckpt.source.non_tensor == {"version": "int: 3", "_extra_state": "str: 'blob'"}
    assert ckpt.source.other_entries == {"epoch": "int: 1"}


def test_module_inside_a_mapping():
    obj = {"model": nn.Linear(3, 2), "epoch": 1}
    ckpt = sdw.open_checkpoint(obj)
    assert ckpt.source.key == "model"
    assert list(ckpt) == ["weight", "bias"]


# ------------------------------------------------------------------------------------ tied


def test_tied_weights_in_a_module_and_in_torch_files(tmp_path):
    model = demo.tied_model()
    assert model.lm_head.weight is model.embed.weight
    zip_path, legacy_path = tmp_path / "tied.pt", tmp_path / "tied.pth"
    torch.save(model.state_dict(), zip_path)
    torch.save(model.state_dict(), legacy_path, _use_new_zipfile_serialization=False)
    for src in (model, model.state_dict(), zip_path, legacy_path):
        ckpt = sdw.open_checkpoint(src)
        assert ckpt["lm_head.weight"].tied == ("embed.weight",), src
        assert ckpt["embed.weight"].tied == ("lm_head.weight",), src
        assert ckpt["proj.weight"].tied == ()
        assert ckpt.tied_groups() == [("embed.weight", "lm_head.weight")]
        assert "lm_head.weight" in ckpt.to_frame().set_index("key").loc["embed.weight", "tied"]


def test_tied_weights_on_the_meta_device():
    with torch.device("meta"):
        model = demo.TiedLM()
    assert model.embed.weight.is_meta
    ckpt = sdw.open_checkpoint(model)
    assert ckpt.tied_groups() == [("embed.weight", "lm_head.weight")]
    assert ckpt["proj.weight"].tied == ()


def test_views_of_one_storage_are_tied_only_when_identical():
    base = torch.randn(4, 3)
    ckpt = sdw.open_checkpoint({"x": base[:2], "y": base[2:], "z": base[:2], "t": base.t()})
    assert ckpt.tied_groups() == [("x", "z")]
    assert ckpt["y"].tied == ()
    assert ckpt["t"].tied == ()


# ------------------------------------------------------------------------------------ security


def test_namespace_checkpoint_needs_trust(tmp_path):
    path = demo.write_unsafe_checkpoint(tmp_path / "train.pt", "namespace")
    with pytest.raises(sdw.UnsafeCheckpointError) as info:
        sdw.open_checkpoint(path)
    exc = info.value
    assert isinstance(exc, sdw.CheckpointError)
    assert isinstance(exc, ValueError)
    assert exc.globals == ["argparse.Namespace"]
    assert "argparse.Namespace" in str(exc)
    assert "trust=True" in str(exc)
    assert "Nothing from the file was executed" in str(exc)
    # the same through compare
    with pytest.raises(sdw.UnsafeCheckpointError, match=r"argparse\.Namespace"):
        sdw.compare(demo.make_model(), path)
    ckpt = sdw.open_checkpoint(path, trust=True)
    assert ckpt.source.trusted
    assert ckpt.source.key == "model_state_dict"
    assert ckpt.source.other_entries["args"] == "Namespace"
    assert len(ckpt) == 38


def _legacy_malicious(path: Path, marker: Path) -> Path:
    obj = {"state_dict": demo.variant("identical"), "callback": CreateMarker(marker)}
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


def _zip_malicious(path: Path, marker: Path) -> Path:
    return write_malicious_checkpoint(path, marker)


@pytest.mark.parametrize("writer", [_zip_malicious, _legacy_malicious], ids=["zip", "legacy"])
def test_malicious_reduce_never_runs(writer, tmp_path):
    marker = tmp_path / "PWNED"
    path = writer(tmp_path / "evil.pt", marker)
    with pytest.raises(sdw.UnsafeCheckpointError) as info:
        sdw.open_checkpoint(path)
    assert not marker.exists()
    assert info.value.globals == ["io.open"]
    assert "io.open" in str(info.value) and "trust=True" in str(info.value)
    with pytest.raises(sdw.UnsafeCheckpointError):
        sdw.compare(demo.make_model(), path)
    assert not marker.exists()
    with pytest.raises(sdw.UnsafeCheckpointError):
        sdw.compare(path, demo.variant("identical"))  # the file as the "model" side
    assert not marker.exists()
    with pytest.raises(sdw.UnsafeCheckpointError):
        sdw.open_checkpoint(path.parent)  # found through its directory
    assert not marker.exists()


def test_malicious_payload_is_live(tmp_path):
    """Control for the test above: the payload really runs under weights_only=False."""
    marker = tmp_path / "PWNED"
    path = _zip_malicious(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_dcp_metadata_payload_is_refused(files, tmp_path):
    marker = tmp_path / "PWNED"
    directory = tmp_path / "evil_dcp"
    shutil.copytree(files["dcp"], directory)
    from sd_widgets.checkpoint._dcp import read_dcp_metadata

    meta = read_dcp_metadata(directory)
    meta.planner_data = CreateMarker(marker)
    with open(directory / ".metadata", "wb") as f:
        pickle.dump(meta, f)
    with pytest.raises(sdw.UnsafeCheckpointError) as info:
        sdw.open_checkpoint(directory)
    assert not marker.exists()
    assert info.value.globals == ["io.open"]
    assert "not checkpoint metadata" in str(info.value)
    with pytest.raises(sdw.UnsafeCheckpointError):
        sdw.compare(demo.make_model(), directory)
    assert not marker.exists()
    # control: a plain unpickler would have run it
    with open(directory / ".metadata", "rb") as f:
        pickle.load(f)
    assert marker.exists()


# ------------------------------------------------------------------------------------ bad input


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _random_bytes(n: int = 4096) -> bytes:
    data = random.Random(1234).randbytes(n)
    return b"\x13\x37" + data[2:]  # not "PK", not a pickle opcode, not a safetensors length


def _safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save({"w": torch.arange(64.0), "b": torch.zeros(3)})


def _torch_bytes(obj: Any, legacy: bool = False) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _index(
    tmp: Path,
    weight_map: Any,
    name: str = "model.safetensors.index.json",
    shards: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    for fname, tensors in (shards or {}).items():
        save_file(tensors, str(tmp / fname))
    body = {"metadata": {"total_size": 0}}
    if weight_map is not None:
        body["weight_map"] = weight_map
    return _write(tmp / name, json.dumps(body).encode())


def _optimizer_state() -> dict[str, Any]:
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return opt.state_dict()


def _two_checkpoints(tmp: Path) -> Path:
    _write(tmp / "a.pt", _torch_bytes({"w": torch.ones(1)}))
    _write(tmp / "b.pt", _torch_bytes({"w": torch.ones(1)}))
    return tmp


def _raw_safetensors(header: dict[str, Any], data_bytes: int) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + b"\0" * data_bytes


def _dcp_with(tmp: Path, metadata: bytes) -> Path:
    directory = tmp / "dcp"
    demo.save({"w": torch.ones(2)}, directory, "dcp")
    (directory / ".metadata").write_bytes(metadata)
    return directory


# id → (build(tmp_path) -> (src, kwargs), exception class, message fragments)
BAD_INPUTS: dict[str, tuple[Callable[[Path], tuple[Any, dict]], type, tuple[str, ...]]] = {
    "missing-path": (
        lambda t: (t / "nope.pt", {}),
        sdw.UnreadableCheckpointError,
        ("no file or directory", "nope.pt", "Check the path"),
    ),
    "missing-path-lists-neighbours": (
        lambda t: (_write(t / "real.safetensors", _safetensors_bytes()) and t / "rael.pt", {}),
        sdw.UnreadableCheckpointError,
        ("no file or directory", "real.safetensors"),
    ),
    "directory-without-checkpoint": (
        lambda t: (_write(t / "notes.txt", b"hi").parent, {}),
        sdw.UnreadableCheckpointError,
        ("holds no checkpoint", "notes.txt", "Pass the file's path"),
    ),
    "empty-directory": (
        lambda t: ((t / "empty").mkdir() or t / "empty", {}),
        sdw.UnreadableCheckpointError,
        ("holds no checkpoint", "contains: nothing"),
    ),
    "directory-with-two-pt-files": (
        lambda t: (_two_checkpoints(t), {}),
        sdw.UnreadableCheckpointError,
        ("exactly one", "a.pt", "b.pt"),
    ),
    "empty-file": (
        lambda t: (_write(t / "model.pt", b""), {}),
        sdw.UnreadableCheckpointError,
        ("empty file", "0 bytes", "Re-save"),
    ),
    "truncated-zip": (
        lambda t: (_write(t / "model.pt", _torch_bytes({"w": torch.randn(100, 100)})[:5000]), {}),
        sdw.UnreadableCheckpointError,
        ("could not be read as a torch checkpoint", "truncated"),
    ),
    "truncated-legacy": (
        lambda t: (
            _write(t / "model.pth", _torch_bytes({"w": torch.randn(100, 100)}, legacy=True)[:5000]),
            {},
        ),
        sdw.UnreadableCheckpointError,
        ("could not be read as a torch checkpoint", "truncated"),
    ),
    "random-bytes": (
        lambda t: (_write(t / "model.pt", _random_bytes()), {}),
        sdw.UnreadableCheckpointError,
        ("not a checkpoint sd_widgets can read", "starts with"),
    ),
    "random-bytes-named-safetensors": (
        lambda t: (_write(t / "model.safetensors", _random_bytes()), {}),
        sdw.UnreadableCheckpointError,
        ("named .safetensors", "corrupt or truncated"),
    ),
    "text-file": (
        lambda t: (_write(t / "model.bin", b"version https://git-lfs.github.com/spec/v1\n"), {}),
        sdw.UnreadableCheckpointError,
        ("not a checkpoint", "version "),
    ),
    "truncated-safetensors": (
        lambda t: (_write(t / "model.safetensors", _safetensors_bytes()[:-100]), {}),
        sdw.UnreadableCheckpointError,
        ("truncated", "Re-download"),
    ),
    "safetensors-header-cut": (
        lambda t: (_write(t / "model.safetensors", _safetensors_bytes()[:40]), {}),
        sdw.UnreadableCheckpointError,
        ("named .safetensors", "corrupt or truncated"),
    ),
    "safetensors-bad-json": (
        lambda t: (
            _write(
                t / "model.safetensors", (14).to_bytes(8, "little") + b'{"w": {"dtype"' + b"\0" * 64
            ),
            {},
        ),
        sdw.UnreadableCheckpointError,
        ("header is not valid JSON", "corrupt"),
    ),
    "safetensors-unsupported-dtype": (
        lambda t: (
            _write(
                t / "model.safetensors",
                _raw_safetensors({"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}}, 4),
            ),
            {},
        ),
        sdw.UnreadableCheckpointError,
        ("'w'", "unsupported dtype"),
    ),
    "safetensors-without-tensors": (
        lambda t: (_write(t / "model.safetensors", _raw_safetensors({}, 0)), {}),
        sdw.NotAStateDictError,
        ("no tensors",),
    ),
    "safetensors-with-key": (
        lambda t: (_write(t / "model.safetensors", _safetensors_bytes()), {"key": "state_dict"}),
        sdw.NotAStateDictError,
        ("safetensors file", "key='state_dict'", "Leave key=None"),
    ),
    "index-not-json": (
        lambda t: (_write(t / "model.safetensors.index.json", b"{not json"), {}),
        sdw.UnreadableCheckpointError,
        ("not valid JSON",),
    ),
    "index-without-weight-map": (
        lambda t: (_index(t, None), {}),
        sdw.UnreadableCheckpointError,
        ("not a sharded-checkpoint index", "'weight_map'"),
    ),
    "index-missing-shard": (
        lambda t: (_index(t, {"w": "model-00001-of-00002.safetensors"}), {}),
        sdw.UnreadableCheckpointError,
        ("are missing", "model-00001-of-00002.safetensors", "Download all shards"),
    ),
    "index-key-not-in-shard": (
        lambda t: (
            _index(
                t,
                {"w": "s1.safetensors", "ghost": "s1.safetensors"},
                shards={"s1.safetensors": {"w": torch.ones(2)}},
            ),
            {},
        ),
        sdw.UnreadableCheckpointError,
        ("'ghost'", "no such tensor", "do not belong together"),
    ),
    "index-in-directory-missing-shard": (
        lambda t: (
            _index(
                t, {"w": "pytorch_model-00001-of-00001.bin"}, name="pytorch_model.bin.index.json"
            ).parent,
            {},
        ),
        sdw.UnreadableCheckpointError,
        ("are missing", "pytorch_model-00001-of-00001.bin"),
    ),
    "pickled-list": (
        lambda t: (_write(t / "model.pt", _torch_bytes([torch.ones(2), torch.zeros(2)])), {}),
        sdw.NotAStateDictError,
        ("holds a list", "model.state_dict()"),
    ),
    "pickled-tensor": (
        lambda t: (_write(t / "model.pt", _torch_bytes(torch.ones(2))), {}),
        sdw.NotAStateDictError,
        ("holds a Tensor", "not a mapping"),
    ),
    "mapping-without-tensors": (
        lambda t: (_write(t / "model.pt", _torch_bytes({"epoch": 3, "lr": 0.1})), {}),
        sdw.NotAStateDictError,
        ("holds no tensors", "epoch (int: 3)", "Expected a state dict"),
    ),
    "empty-dict": (
        lambda t: (_write(t / "model.pt", _torch_bytes({})), {}),
        sdw.NotAStateDictError,
        ("empty mapping", "no tensors"),
    ),
    "key-that-does-not-exist": (
        lambda t: (demo.write_checkpoint(t, "ema", "torch"), {"key": "emma"}),
        sdw.NotAStateDictError,
        ("no entry 'emma'", "'ema' (38 tensors)", "'model' (38 tensors)"),
    ),
    "key-that-is-not-a-state-dict": (
        lambda t: (
            _write(t / "m.pt", _torch_bytes({"model": {"w": torch.ones(1)}, "epoch": 3})),
            {"key": "epoch"},
        ),
        sdw.NotAStateDictError,
        ("entry 'epoch'", "int: 3", "not a state dict"),
    ),
    "int-keys": (
        lambda t: (_write(t / "m.pt", _torch_bytes({0: torch.ones(2), 1: torch.zeros(2)})), {}),
        sdw.NotAStateDictError,
        ("key 0 is a int", "optimizer state"),
    ),
    "optimizer-state-dict-alone": (
        lambda t: (_write(t / "optim.pt", _torch_bytes(_optimizer_state())), {}),
        sdw.NotAStateDictError,
        ("holds no tensors", "param_groups"),
    ),
    "dcp-corrupt-metadata": (
        lambda t: (_dcp_with(t, b"\x80\x04garbage"), {}),
        sdw.UnreadableCheckpointError,
        (".metadata", "corrupt"),
    ),
    "dcp-empty-metadata": (
        lambda t: (_dcp_with(t, b""), {}),
        sdw.UnreadableCheckpointError,
        (".metadata", "incomplete or corrupt"),
    ),
    "dcp-metadata-of-wrong-type": (
        lambda t: (_dcp_with(t, pickle.dumps({"not": "metadata"})), {}),
        sdw.UnreadableCheckpointError,
        ("no state_dict_metadata",),
    ),
    "dcp-key-that-does-not-exist": (
        lambda t: (demo.save({"w": torch.ones(2)}, t / "dcp", "dcp"), {"key": "ema"}),
        sdw.NotAStateDictError,
        ("no entry 'ema'", "top-level entries: w"),
    ),
    "cuda-without-map-location": (
        lambda t: (_cuda_file(t), {"map_location": None}),
        sdw.UnreadableCheckpointError,
        ("saved from a GPU", "map_location='cpu'"),
    ),
    "unsafe-namespace": (
        lambda t: (
            _write(
                t / "ns.pt", _torch_bytes({"w": torch.ones(1), "args": argparse.Namespace(lr=1)})
            ),
            {},
        ),
        sdw.UnsafeCheckpointError,
        ("argparse.Namespace", "trust=True"),
    ),
}


def _cuda_file(tmp: Path) -> Path:
    path = tmp / "gpu.pt"
    original = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        torch.save({"w": torch.ones(2)}, path)
    finally:
        torch.serialization.location_tag = original
    return path


def test_there_are_at_least_fifteen_bad_inputs():
    assert len(BAD_INPUTS) >= 15


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_a_typed_error_that_says_what_to_do(case, tmp_path):
    build, exc_type, fragments = BAD_INPUTS[case]
    src, kwargs = build(tmp_path)
    with pytest.raises(exc_type) as info:
        sdw.open_checkpoint(src, **kwargs)
    assert isinstance(info.value, sdw.CheckpointError)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message
    # compare() surfaces the same typed error
    with pytest.raises(exc_type):
        sdw.compare(nn.Linear(2, 2), src, **kwargs)


# ------------------------------------------------------------------- devices and DCP layout


def test_map_location_cuda_on_a_cpu_only_machine_names_the_real_problem(tmp_path):
    """Asking for CUDA where there is none is the caller's map_location, not a GPU-saved file."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    sd = demo.variant("identical")
    for fmt, name in (("torch", "w.pt"), ("safetensors", "w.safetensors")):
        path = demo.save(sd, tmp_path / name, fmt)
        with pytest.raises(sdw.UnreadableCheckpointError) as info:
            sdw.open_checkpoint(path, map_location="cuda").tensor("classifier.bias")
        msg = str(info.value)
        assert "map_location='cuda' asks for a CUDA device" in msg, (fmt, msg)
        assert "map_location='cpu'" in msg and "saved from a GPU" not in msg


def test_safetensors_on_the_meta_device_reads_shapes_not_data(tmp_path):
    sd = demo.variant("fp16")
    path = demo.save(sd, tmp_path / "w.safetensors", "safetensors")
    ck = sdw.open_checkpoint(path, map_location="meta")
    t = ck.tensor("classifier.weight")
    assert t.is_meta and t.shape == sd["classifier.weight"].shape and t.dtype == torch.float16
    with torch.device("meta"):
        model = demo.SmallCNN()
    report = sdw.partial_load(model, sdw.compare(model, ck).plan())
    assert report.assigned and all(v.is_meta for v in model.state_dict().values())


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
def test_flat_dcp_state_dict_whose_keys_start_with_model_is_not_unwrapped(tmp_path):
    """A flat {"model.fc.weight": ...} saved with DCP is not the nested {"model": {...}} case."""
    import torch.distributed.checkpoint as dcp

    flat = {"model.fc.weight": torch.randn(3, 4), "model.fc.bias": torch.randn(3)}
    dcp.save(flat, checkpoint_id=str(tmp_path / "flat"), no_dist=True)
    ck = sdw.open_checkpoint(tmp_path / "flat")
    assert sorted(ck) == ["model.fc.bias", "model.fc.weight"]
    assert ck.source.key is None
    assert torch.equal(ck.tensor("model.fc.bias"), flat["model.fc.bias"])
    # the nested save of the same tensors is unwrapped and says which entry it used
    dcp.save(
        {"model": {"fc.weight": flat["model.fc.weight"], "fc.bias": flat["model.fc.bias"]}},
        checkpoint_id=str(tmp_path / "nested"),
        no_dist=True,
    )
    nested = sdw.open_checkpoint(tmp_path / "nested")
    assert sorted(nested) == ["fc.bias", "fc.weight"] and nested.source.key == "model"


def test_trust_can_allow_just_the_named_classes(tmp_path):
    """trust=[cls] keeps weights-only loading and allows exactly those globals; anything else in
    the file is still refused, and a malicious payload still does not run."""
    path = demo.write_unsafe_checkpoint(tmp_path / "args.pt", "namespace")
    with pytest.raises(sdw.UnsafeCheckpointError, match=r"trust=\[argparse\.Namespace\]"):
        sdw.open_checkpoint(path)
    ck = sdw.open_checkpoint(path, trust=[argparse.Namespace])
    assert len(ck) > 0 and ck.source.trusted
    # allowing an unrelated class does not open the malicious file, and its payload never runs
    marker = tmp_path / "ran.txt"
    evil = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(sdw.UnsafeCheckpointError, match="would run code when loaded") as info:
        sdw.open_checkpoint(evil, trust=[argparse.Namespace])
    assert info.value.globals == ["io.open"] and info.value.runs_code == ["io.open"]
    assert "trust=[" not in str(info.value).replace("No trust=[...]", "")  # no advice to allow it
    assert not marker.exists()
    with pytest.raises(TypeError, match="trust="):
        sdw.open_checkpoint(path, trust="argparse.Namespace")
