"""Tests for sd_widgets.load._stats: numbers checked against float64 torch/numpy references."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sd_widgets.load._stats import (
    Histogram,
    TensorStats,
    _logical_chunks,
    before_after_histogram,
    bn_channel_stats,
    change_frame,
    change_stats,
    histogram,
    iter_progress,
    shared_edges,
    stats_frame,
    tensor_stats,
)
from sd_widgets.load._transaction import measure

NAN = float("nan")
INF = float("inf")


def reference(t: torch.Tensor) -> dict:
    """float64 numpy reference for TensorStats fields."""
    x = t.detach().to(torch.float64).reshape(-1).numpy()
    fin = x[np.isfinite(x)]
    return {
        "numel": x.size,
        "mean": fin.mean() if fin.size else NAN,
        "std": fin.std(ddof=1) if fin.size > 1 else NAN,
        "min": fin.min() if fin.size else NAN,
        "max": fin.max() if fin.size else NAN,
        "l2": float(np.sqrt((fin**2).sum())) if fin.size else NAN,
        "zero_fraction": float((x == 0).sum() / x.size) if x.size else NAN,
        "nan_count": int(np.isnan(x).sum()),
        "inf_count": int(np.isinf(x).sum()),
    }


def assert_matches(st: TensorStats, ref: dict, rtol: float = 1e-6, atol: float = 0.0) -> None:
    assert st.numel == ref["numel"]
    assert st.nan_count == ref["nan_count"]
    assert st.inf_count == ref["inf_count"]
    for name in ("mean", "std", "min", "max", "l2", "zero_fraction"):
        got, want = getattr(st, name), ref[name]
        if math.isnan(want):
            assert math.isnan(got), name
        else:
            scale = ref["std"] if name == "mean" and not math.isnan(ref["std"]) else 0.0
            assert got == pytest.approx(want, rel=rtol, abs=atol + 1e-7 * scale), name


def noisy(n: int = 20_000, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(n, generator=g, dtype=torch.float64) * 2.5 + 0.3).to(dtype)
    t[::97] = 0
    t[5] = NAN
    t[17] = INF
    t[33] = -INF
    t[1000] = NAN
    return t


# ------------------------------------------------------------------------------- tensor_stats


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_tensor_stats_matches_reference_with_nan_inf(dtype):
    t = noisy(dtype=dtype)
    st = tensor_stats(t)
    assert st.dtype == str(dtype).removeprefix("torch.")
    assert (st.nan_count, st.inf_count) == (2, 2)
    assert st.finite_count == t.numel() - 4
    assert_matches(st, reference(t))


@pytest.mark.parametrize("chunk", [1, 997, 1024, 4096 + 3, 2**24])
def test_chunked_equals_unchunked(chunk):
    t = noisy(3000).reshape(30, 100)
    a = tensor_stats(t)
    b = tensor_stats(t, chunk_elements=chunk)
    for name in ("numel", "nan_count", "inf_count", "min", "max", "zero_fraction"):
        assert getattr(a, name) == getattr(b, name)
    for name in ("mean", "std", "l2"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-7)


def test_non_contiguous_views():
    base = noisy(6000).reshape(60, 100)
    for view in (base.t(), base[:, ::3], base[::2, 10:50], base[:1].expand(40, 100)):
        assert not view.is_contiguous()
        for chunk in (2**24, 333):
            assert_matches(tensor_stats(view, chunk_elements=chunk), reference(view))


def test_logical_chunks_bounded_and_complete():
    base = torch.arange(60 * 100, dtype=torch.float32).reshape(60, 100)
    view = base[:, ::3]
    chunks = list(_logical_chunks(view, 250))
    assert max(c.numel() for c in chunks) <= 250
    assert torch.equal(torch.cat(chunks), view.reshape(-1))


def test_int_bool_and_zero_dim():
    nbt = torch.tensor(1234, dtype=torch.int64)  # BatchNorm num_batches_tracked
    st = tensor_stats(nbt)
    assert (st.numel, st.dtype, st.mean, st.min, st.max, st.l2) == (
        1,
        "int64",
        1234,
        1234,
        1234,
        1234,
    )
    assert math.isnan(st.std) and st.zero_fraction == 0.0
    assert tensor_stats(torch.tensor(0)).zero_fraction == 1.0
    ints = torch.randint(
        -50, 50, (7, 13), generator=torch.Generator().manual_seed(1), dtype=torch.int32
    )
    assert_matches(tensor_stats(ints), reference(ints), rtol=1e-12)
    u8 = torch.arange(256, dtype=torch.uint8)
    assert_matches(tensor_stats(u8), reference(u8), rtol=1e-12)
    b = torch.tensor([True, False, True, True])
    st = tensor_stats(b)
    assert st.mean == 0.75 and st.zero_fraction == 0.25 and st.dtype == "bool"


def test_empty_and_meta_and_all_nan():
    st = tensor_stats(torch.empty(0, 5))
    assert (
        st.numel == 0 and st.nan_count == 0 and math.isnan(st.mean) and math.isnan(st.zero_fraction)
    )
    huge = torch.empty(10**6, 10**6, device="meta")  # 1e12 elements: must not be materialised
    st = tensor_stats(huge)
    assert st.numel == 10**12 and st.dtype == "float32"
    assert math.isnan(st.mean) and st.nan_count is None and st.finite_count is None
    st = tensor_stats(torch.full((10,), NAN))
    assert st.nan_count == 10 and math.isnan(st.mean) and math.isnan(st.min)
    assert st.zero_fraction == 0.0


def test_precision_mean_dominates_spread():
    g = torch.Generator().manual_seed(3)
    x64 = 1000.0 + 1e-3 * torch.randn(50_000, generator=g, dtype=torch.float64)
    st = tensor_stats(x64)
    assert st.std == pytest.approx(float(np.std(x64.numpy(), ddof=1)), rel=1e-9)
    x32 = (5.0 + 1e-2 * torch.randn(50_000, generator=g)).float()
    assert_matches(tensor_stats(x32), reference(x32), rtol=1e-6)
    const = torch.full((1000,), 0.1)
    assert tensor_stats(const).std == 0.0


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_extreme_magnitudes_use_float64(scale):
    t = torch.randn(5000, generator=torch.Generator().manual_seed(4)) * scale
    t = t.float()
    assert_matches(tensor_stats(t), reference(t), rtol=1e-6)


def test_requires_grad_and_complex():
    p = torch.nn.Parameter(torch.randn(100))
    assert_matches(tensor_stats(p), reference(p.detach()))
    z = torch.tensor([3 + 4j, 0j])
    st = tensor_stats(z)
    assert st.max == 5.0 and st.zero_fraction == 0.5


def test_as_dict():
    st = tensor_stats(torch.tensor([1.0, NAN]))
    d = st.as_dict()
    assert list(d) == [
        "numel", "dtype", "mean", "std", "min", "max", "l2", "zero_fraction", "nan_count",
        "inf_count",
    ]  # fmt: skip
    assert math.isnan(d["std"])
    safe = st.as_dict(json_safe=True)
    assert safe["std"] is None and safe["mean"] == 1.0
    json.dumps(safe, allow_nan=False)


# ------------------------------------------------------------------------------- change_stats


def test_change_stats_reference():
    g = torch.Generator().manual_seed(5)
    before = torch.randn(40, 50, generator=g)
    after = before.clone()
    after[:10] += 0.01 * torch.randn(10, 50, generator=g)
    ch = change_stats(before, after)
    d = (after.double() - before.double()).numpy()
    assert ch["numel"] == ch["compared"] == 2000
    assert ch["max_abs_change"] == pytest.approx(np.abs(d).max(), rel=1e-6)
    assert ch["mean_abs_change"] == pytest.approx(np.abs(d).mean(), rel=1e-6)
    assert ch["relative_l2_change"] == pytest.approx(
        np.linalg.norm(d) / np.linalg.norm(before.double().numpy()), rel=1e-6
    )
    assert ch["changed_count"] == int((after != before).sum())
    assert ch["changed_fraction"] == pytest.approx(ch["changed_count"] / 2000)
    assert change_stats(before, after, chunk_elements=77) == pytest.approx(ch, rel=1e-6)
    same = change_stats(before, before.clone())
    assert (
        same["max_abs_change"] == 0
        and same["relative_l2_change"] == 0
        and same["changed_count"] == 0
    )


def test_change_stats_nan_inf_dtype_and_zero_before():
    before = torch.tensor([1.0, NAN, INF, 2.0, NAN, 0.0])
    after = torch.tensor([1.5, NAN, INF, 2.0, 3.0, 0.0], dtype=torch.float16)
    ch = change_stats(before, after)
    # compared: positions 0, 3, 5; changed: 0 (1->1.5) and 4 (NaN->3)
    assert ch["compared"] == 3
    assert ch["changed_count"] == 2
    assert ch["max_abs_change"] == 0.5
    assert ch["mean_abs_change"] == pytest.approx(0.5 / 3)
    assert ch["relative_l2_change"] == pytest.approx(0.5 / math.sqrt(5))
    zeros = change_stats(torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    assert zeros["relative_l2_change"] == INF
    assert change_stats(torch.zeros(3), torch.zeros(3))["relative_l2_change"] == 0.0
    ints = change_stats(torch.tensor(5), torch.tensor(7))
    assert ints["max_abs_change"] == 2 and ints["changed_count"] == 1


def test_change_stats_shape_mismatch_meta_empty():
    with pytest.raises(ValueError, match=r"same shape.*\(3, 4\).*\(4, 3\)"):
        change_stats(torch.zeros(3, 4), torch.zeros(4, 3))
    m = change_stats(torch.empty(3, device="meta"), torch.zeros(3))
    assert m["numel"] == 3 and m["changed_count"] is None and math.isnan(m["max_abs_change"])
    e = change_stats(torch.empty(0), torch.empty(0))
    assert e["compared"] == 0 and math.isnan(e["relative_l2_change"])


# ------------------------------------------------------------------------------- histograms


def test_shared_edges_cover_both():
    a = torch.randn(1000, generator=torch.Generator().manual_seed(6))
    b = a * 3 + 2
    b[0] = INF
    b[1] = NAN
    e = shared_edges(a, b, bins=20)
    assert e.dtype == torch.float64 and e.numel() == 21
    fb = b[torch.isfinite(b)]
    assert e[0] == min(a.min(), fb.min()) and e[-1] == max(a.max(), fb.max())
    assert torch.all(e[1:] > e[:-1])


def test_shared_edges_degenerate_and_empty():
    e = shared_edges(torch.full((5,), 3.0), torch.tensor([3.0]), bins=4)
    assert e[0] < 3.0 < e[-1] and e[2] == pytest.approx(3.0)
    assert e[-1] - 3.0 == pytest.approx(3.0 - e[0])
    e0 = shared_edges(torch.tensor(0, dtype=torch.int64), bins=3)
    assert e0[0] < 0 < e0[-1]
    none = shared_edges(torch.empty(0), torch.empty(4, device="meta"), torch.tensor([NAN]), bins=2)
    assert none.tolist() == [-1.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        shared_edges(torch.ones(2), bins=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int64])
def test_histogram_counts_finite_and_matches_numpy(dtype):
    t = (
        noisy(10_000, dtype=torch.float64, seed=7)
        if dtype.is_floating_point
        else torch.randint(-20, 20, (10_000,), generator=torch.Generator().manual_seed(7))
    )
    t = t.to(dtype)
    e = shared_edges(t, bins=37)
    counts = histogram(t, e)
    assert counts.dtype == torch.int64 and counts.numel() == 37
    finite = int(torch.isfinite(t.double()).sum())
    assert int(counts.sum()) == finite
    x = t.double().numpy()
    ref, _ = np.histogram(x[np.isfinite(x)], bins=e.numpy())
    # histc bins in the data's precision: at most a value or two near an inner edge may move
    assert np.abs(counts.numpy() - ref).sum() <= (0 if dtype == torch.float64 else 4)
    assert torch.equal(histogram(t, e, chunk_elements=999), counts)


def test_histogram_last_edge_and_outside_values():
    t = torch.tensor([0.0, 0.5, 1.0, 1.0, -0.1, 1.1, NAN])
    assert histogram(t, [0.0, 0.5, 1.0]).tolist() == [1, 3]
    # non-uniform edges go through bucketize: same semantics
    assert histogram(t, [0.0, 0.2, 1.0]).tolist() == [1, 3]
    assert histogram(t, torch.tensor([-1.0, 0.0, 0.5, 2.0])).tolist() == [1, 1, 4]
    with pytest.raises(ValueError):
        histogram(t, [1.0, 0.0])


def test_histogram_nonuniform_matches_numpy():
    t = torch.randn(5000, generator=torch.Generator().manual_seed(8))
    e = torch.tensor([-4.0, -1.0, -0.5, 0.0, 0.1, 2.0, 4.5])
    ref, _ = np.histogram(t.double().numpy(), bins=e.numpy())
    assert histogram(t, e).tolist() == ref.tolist()


def test_before_after_histogram_json():
    g = torch.Generator().manual_seed(9)
    before = torch.randn(64, 32, generator=g)
    after = before * 1.5 + 0.2
    after[0, 0] = NAN
    h = before_after_histogram(before, after, bins=30, key="fc.weight")
    assert isinstance(h, Histogram) and h.bins == 30 and h.key == "fc.weight"
    assert sum(h.before) == before.numel() and sum(h.after) == after.numel() - 1
    finite_after = after[torch.isfinite(after)]
    assert h.edges[0] == min(float(before.min()), float(finite_after.min()))
    assert h.edges[-1] == max(float(before.max()), float(finite_after.max()))
    d = h.to_dict()
    assert all(type(c) is int for c in d["before"] + d["after"])
    assert all(type(e) is float for e in d["edges"])
    assert Histogram.from_dict(json.loads(json.dumps(d))) == h
    meta = before_after_histogram(torch.empty(3, device="meta"), after, bins=5)
    assert meta.before == [0] * 5 and sum(meta.after) == after.numel() - 1


# ------------------------------------------------------------------------------- BatchNorm


def test_bn_channel_stats():
    bn = torch.nn.BatchNorm1d(6)
    fresh = bn_channel_stats(bn.running_mean, bn.running_var, bn.num_batches_tracked)
    assert fresh["is_reset"] and fresh["num_channels"] == 6 and fresh["num_batches_tracked"] == 0
    bn.train()
    bn(torch.randn(32, 6, generator=torch.Generator().manual_seed(10)) * 3 + 1)
    s = bn_channel_stats(bn.running_mean, bn.running_var, bn.num_batches_tracked)
    assert not s["is_reset"] and s["num_batches_tracked"] == 1
    assert s["mean"] == pytest.approx(bn.running_mean.tolist())
    assert s["std"] == pytest.approx(bn.running_var.sqrt().tolist())
    assert s["var_summary"]["max"] == pytest.approx(float(bn.running_var.max()))
    assert s["mean_summary"]["mean"] == pytest.approx(float(bn.running_mean.mean()))
    odd = bn_channel_stats(torch.tensor([0.0, NAN]), torch.tensor([-1.0, 2.0]))
    assert odd["nonpositive_var"] == 1 and odd["nonfinite"] == 1 and odd["std"][0] == 0.0
    with pytest.raises(ValueError, match="same length"):
        bn_channel_stats(torch.zeros(3), torch.ones(4))
    meta = bn_channel_stats(torch.empty(4, device="meta"), torch.empty(4, device="meta"))
    assert meta["num_channels"] == 4 and meta["mean"] is None and meta["is_reset"] is None


# ------------------------------------------------------------------------------- frames, progress


class LazyMapping(dict):
    """Stands in for a Checkpoint: values are metadata, .tensor(key) materialises."""

    def __init__(self, tensors):
        super().__init__({k: ("info", tuple(v.shape)) for k, v in tensors.items()})
        self._tensors = tensors
        self.materialised: list[str] = []

    def tensor(self, key):
        self.materialised.append(key)
        return self._tensors[key]


def test_stats_frame():
    sd = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).state_dict()
    frame = stats_frame(sd)
    assert list(frame["key"]) == list(sd)
    assert {"key", "shape", "numel", "mean", "std", "nan_count"} <= set(frame.columns)
    row = frame.set_index("key").loc["1.num_batches_tracked"]
    assert row["dtype"] == "int64" and row["numel"] == 1 and row["shape"] == ()
    assert frame.set_index("key").loc["1.running_var", "mean"] == 1.0
    lazy = LazyMapping(dict(sd))
    lazy_frame = stats_frame(lazy, progress=False)
    assert lazy.materialised == list(sd)
    assert lazy_frame["mean"].equals(frame["mean"])
    odd = stats_frame({"w": torch.ones(2), "_extra_state": {"a": 1}})
    assert odd.loc[1, "dtype"] == "dict" and math.isnan(odd.loc[1, "mean"])


def test_change_frame():
    before = {
        "a": torch.zeros(3),
        "b": torch.ones(2, 2),
        "c": torch.ones(5),
        "only_before": torch.ones(1),
    }
    after = {"a": torch.ones(3), "b": torch.ones(2, 2), "c": torch.ones(4)}
    frame = change_frame(before, after).set_index("key")
    assert list(frame.index) == ["a", "b", "c"]
    assert frame.loc["a", "rel_l2_change"] == INF and frame.loc["a", "after_mean"] == 1.0
    assert frame.loc["b", "rel_l2_change"] == 0.0 and frame.loc["b", "changed_fraction"] == 0.0
    assert math.isnan(frame.loc["c", "max_abs_change"])


def test_iter_progress():
    items = list(range(5))
    assert iter_progress(items, len(items), "x", None) is items  # < 20: no bar by default
    assert iter_progress(list(range(30)), 30, "x", False) is not None
    many = list(range(25))
    from tqdm.auto import tqdm

    bar = iter_progress(many, len(many), "x", None)
    assert isinstance(bar, tqdm)
    assert list(bar) == many
    forced = iter_progress(items, None, "x", True)
    assert isinstance(forced, tqdm) and list(forced) == items


# ----------------------------------------------------- one path: what a load measures


def _mixed_tensors() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    out = [
        torch.randn(n, generator=g) * s + m
        for n, s, m in [
            (1, 1.0, 0.0),
            (7, 2.0, 5.0),
            (64, 0.1, 1.0),
            (4096, 1.0, 0.0),
            (5000, 3.0, -1.0),
        ]
    ]
    out += [torch.ones(256), torch.zeros(33), torch.full((100,), 0.1)]  # BN weight, bias, const
    out += [noisy(3000, seed=12), noisy(70_000, seed=13)]  # NaN/inf, small and large
    out += [torch.tensor(1234), torch.randint(-9, 9, (50,), generator=g, dtype=torch.int32)]
    out += [torch.randn(40, generator=g).half(), torch.randn(40, generator=g).double()]
    out += [torch.tensor([True, False]), torch.empty(0), torch.empty(5, device="meta")]
    out += [torch.randn(12, 10, generator=g).t(), torch.randn(3, 4, 5, generator=g)]
    t = torch.randn(50, generator=g)
    t[3] = -0.0
    t[4] = 0.0
    out.append(t)
    return out


def test_what_a_load_measures_is_tensor_stats_and_change_stats():
    """A load feeds the same accumulators chunk by chunk (``transaction.measure``): the numbers
    are tensor_stats' and change_stats' to float64 rounding, and exact against float64."""
    g = torch.Generator().manual_seed(14)
    tensors = [t for t in _mixed_tensors() if not t.is_meta]
    for b in tensors:
        a = b.clone()
        if a.numel() and a.is_floating_point():
            flat = a.view(-1) if a.is_contiguous() else a.t().view(-1)  # a is a's own copy
            flat[: max(1, a.numel() // 3)] += torch.rand(1, generator=g).item() + 0.5
        sb, sa, ch = measure(b, a)
        for got, one in ((sb, tensor_stats(b)), (sa, tensor_stats(a))):
            assert (got.numel, got.dtype, got.nan_count, got.inf_count) == (
                one.numel,
                one.dtype,
                one.nan_count,
                one.inf_count,
            )
            for name in ("mean", "std", "min", "max", "l2", "zero_fraction"):
                x, y = getattr(got, name), getattr(one, name)
                assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-9), name
        if b.numel():
            assert_matches(sb, reference(b))
            assert_matches(sa, reference(a))
        one = change_stats(b, a)
        assert ch["numel"] == one["numel"] and ch["compared"] == one["compared"]
        assert ch["changed_count"] == one["changed_count"]
        for name in ("max_abs_change", "mean_abs_change", "relative_l2_change", "changed_fraction"):
            x, y = ch[name], one[name]
            assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-9), name
    t = _mixed_tensors()[-1]
    assert tensor_stats(t).zero_fraction == 2 / 50  # +0.0 and -0.0 both count
    assert tensor_stats(torch.full((100,), 0.1)).std == 0.0  # constant: exactly 0


def test_measure_of_a_large_tensor_in_chunks_is_exact():
    """4 MB chunks of a 3M-element tensor whose mean dominates its spread: std and the change
    agree with float64 references to 1e-9."""
    g = torch.Generator().manual_seed(16)
    b = torch.randn(3_000_000, generator=g) * 0.01 + 100.0
    a = b.clone()
    a[::7] += 0.001
    sb, sa, ch = measure(b, a)
    b64, a64 = b.double(), a.double()
    assert sb.std == pytest.approx(float(b64.std()), rel=1e-6)  # float32 data
    assert sa.mean == pytest.approx(float(a64.mean()), rel=1e-8)
    d = a64 - b64
    assert ch["relative_l2_change"] == pytest.approx(float(d.norm() / b64.norm()), rel=1e-9)
    assert ch["mean_abs_change"] == pytest.approx(float(d.abs().mean()), rel=1e-9)
    assert ch["changed_count"] == int((a != b).sum())


def test_many_small_tensors_measured_together_equal_each_measured_alone():
    """measure_many packs small tensors into one buffer per dtype and reduces per segment; every
    number equals the tensor measured alone (counts exactly, sums to float64 rounding), across
    batch boundaries, NaN/inf, ints, halves, empty and meta tensors among them."""
    from sd_widgets.load._transaction import measure_many

    g = torch.Generator().manual_seed(21)
    pairs = []
    for t in _mixed_tensors() * 3 + [torch.randn(50, generator=g) for _ in range(3000)]:
        a = t.clone()
        if a.numel() and a.is_floating_point() and a.is_contiguous():
            a.view(-1)[:: max(1, a.numel() // 4)] += 0.25
        pairs.append((t, a))
    together = measure_many(pairs)
    assert len(together) == len(pairs)
    for (b, a), (sb, sa, ch) in zip(pairs, together, strict=True):
        alone_b, alone_a, alone_ch = measure(b, a)
        for got, one in ((sb, alone_b), (sa, alone_a)):
            assert (got.numel, got.dtype, got.nan_count, got.inf_count) == (
                one.numel, one.dtype, one.nan_count, one.inf_count
            )  # fmt: skip
            for name in ("mean", "std", "min", "max", "l2", "zero_fraction"):
                x, y = getattr(got, name), getattr(one, name)
                assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12)
        assert (ch is None) == (alone_ch is None)
        if ch is not None:
            assert ch["changed_count"] == alone_ch["changed_count"]
            assert ch["compared"] == alone_ch["compared"]
            for name in ("max_abs_change", "mean_abs_change", "relative_l2_change"):
                x, y = ch[name], alone_ch[name]
                assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12)


@pytest.mark.parametrize(
    "case", ["mean moves between chunks", "constant then noise", "offset uniform", "nan inside"]
)
def test_large_float32_tensors_whose_mean_dominates_match_float64(case):
    """A large float32 tensor whose mean dominates its spread (float64 sums of x and x^2, a
    second pass over x - mean when they cancel): mean, std and l2 agree with float64
    references, whether the mean stays, moves between chunks, or NaN/inf sit in a chunk."""
    g = torch.Generator().manual_seed(31)

    def randn(n: int, scale: float, offset: float) -> torch.Tensor:
        return torch.randn(n, generator=g) * scale + offset

    t = {
        "mean moves between chunks": torch.cat([randn(2_000_000, 0.01, 100.0), randn(2_000_000, 0.01, 0.0)]),
        "constant then noise": torch.cat([torch.full((1_500_000,), 2.0), randn(1_500_000, 1e-3, 2.0)]),
        "offset uniform": torch.empty(5_000_000).uniform_(-0.05, 0.05, generator=g) + 1.0,
        "nan inside": torch.cat([randn(2_000_000, 0.01, 50.0), torch.tensor([NAN, INF]), randn(2_000_000, 0.01, 50.0)]),
    }[case]  # fmt: skip
    sb, sa, _ = measure(t, t + 0.5)
    for st, x in ((sb, t.double()), (sa, (t + 0.5).double())):
        fin = x[torch.isfinite(x)]
        assert st.mean == pytest.approx(float(fin.mean()), rel=1e-9)
        assert st.std == pytest.approx(float(fin.std()), rel=1e-6)
        assert st.l2 == pytest.approx(float(fin.norm()), rel=1e-9)
