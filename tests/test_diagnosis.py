"""What a comparison says at a glance: one size ratio behind every shape mismatch (a model
built with a different config), and repeated layers collapsed in text."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from realworld import TINY
from torch import nn

import sd_widgets as sdw
from sd_widgets.compare._diagnosis import collapse_keys, config_mismatch


def _bert(**sizes: int):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(**{**TINY, **sizes})).eval()


@pytest.fixture(scope="module")
def wide_bert_file(tmp_path_factory):
    """A BERT saved with save_pretrained at hidden 64 / intermediate 96 (twice TINY)."""
    pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("wide")
    _bert(hidden_size=64, intermediate_size=96).save_pretrained(path)
    return path / "model.safetensors"


def test_two_berts_of_different_hidden_sizes_say_config(wide_bert_file):
    model = _bert()  # hidden 32, intermediate 48
    cmp = sdw.compare(model, wide_bert_file)
    n_mismatch = cmp.summary()["shape_mismatch"]
    assert n_mismatch > 30  # every weight that touches the width
    found = cmp.config_mismatch()
    assert found is not None
    assert found.ratio == Fraction(2)
    assert set(found.sizes) == {(64, 32), (96, 48)}
    assert len(found.keys) == n_mismatch
    # the model's own config names the fields that hold its sizes
    assert ("hidden_size", 32, 64) in found.config_fields
    assert ("intermediate_size", 48, 96) in found.config_fields
    text = found.sentence
    assert f"All {n_mismatch} shape mismatches" in text
    assert "64 vs 32" in text and "96 vs 48" in text
    assert "built with a different config?" in text
    assert "hidden_size=32 (checkpoint: 64)" in text


def test_no_config_sentence_for_a_new_head_or_mixed_ratios(wide_bert_file):
    # a classifier head resized (transfer learning): one module, not a config
    from sd_widgets import demo

    cmp = sdw.compare(demo.make_model("cnn", num_classes=3), demo.variant("identical"))
    assert cmp.summary().get("shape_mismatch")
    assert cmp.config_mismatch() is None
    # hidden 64 vs 32 but intermediate 96 vs 64: two ratios, no single cause to name
    model = _bert(hidden_size=32, intermediate_size=64)
    assert sdw.compare(model, wide_bert_file).config_mismatch() is None
    # only the intermediate size differs (96 vs 64): one ratio; hidden_size and
    # max_position_embeddings are 64 as well and 64 fits the rows that match, so no config
    # field is named (it would be a guess)
    found = sdw.compare(_bert(hidden_size=64, intermediate_size=64), wide_bert_file)
    found = found.config_mismatch()
    assert found is not None and found.sizes == ((96, 64),)
    assert found.config_fields == ()
    assert "built with a different config?" in found.sentence
    # a clean comparison says nothing
    assert (
        sdw.compare(_bert(hidden_size=64, intermediate_size=96), wide_bert_file).config_mismatch()
        is None
    )


def test_ratio_check_reads_every_dimension():
    class Row:
        def __init__(self, key, a, b):
            self.key, self.status, self.module = key, "shape_mismatch", key.rpartition(".")[0]
            self.ckpt_shape, self.model_shape = a, b

    rows = [Row(f"m{i}.weight", (8, 4), (4, 2)) for i in range(3)]
    assert config_mismatch(rows).sizes == ((8, 4), (4, 2))
    assert config_mismatch([*rows, Row("x.weight", (8, 3), (4, 2))]) is None  # 3/2 != 2
    assert config_mismatch([*rows, Row("y.weight", (8,), (4, 2))]) is None  # rank differs


def test_collapse_repeated_layers():
    keys = [f"encoder.layer.{i}.attention.self.query.weight" for i in range(12)]
    keys += ["embeddings.word_embeddings.weight", "pooler.dense.weight"]
    assert collapse_keys(keys) == [
        "encoder.layer.{0..11}.attention.self.query.weight",
        "embeddings.word_embeddings.weight",
        "pooler.dense.weight",
    ]
    # gaps are listed; two nested numbers collapse when they fill the grid
    assert collapse_keys(["l.0.w", "l.2.w", "l.5.w"]) == ["l.{0,2,5}.w"]
    grid = [f"b.{i}.c.{j}.w" for i in range(3) for j in range(2)]
    assert collapse_keys(grid) == ["b.{0..2}.c.{0,1}.w"]
    # not a grid: the keys stay as they are (a collapsed form would claim keys that are absent)
    assert collapse_keys(["b.0.c.0.w", "b.1.c.1.w"]) == ["b.0.c.0.w", "b.1.c.1.w"]
    # a real model's keys: one line per distinct parameter of a layer
    lines = collapse_keys(nn.Sequential(*[nn.Linear(2, 2) for _ in range(4)]).state_dict())
    assert lines == ["{0..3}.weight", "{0..3}.bias"]


def test_the_widget_payload_carries_the_sentence(wide_bert_file):
    from sd_widgets.widget._tree_payload import payload_from_comparison

    cmp = sdw.compare(_bert(), wide_bert_file)
    payload = payload_from_comparison(cmp)
    assert payload["diagnosis"] == cmp.config_mismatch().sentence
    clean = sdw.compare(_bert(hidden_size=64, intermediate_size=96), wide_bert_file)
    assert payload_from_comparison(clean)["diagnosis"] == ""


def test_the_static_summaries_carry_the_sentence(wide_bert_file):
    from sd_widgets.widget._summary import summary_html, summary_text
    from sd_widgets.widget._tree_payload import payload_from_comparison

    cmp = sdw.compare(_bert(), wide_bert_file)
    payload = payload_from_comparison(cmp)
    sentence = cmp.config_mismatch().sentence
    assert summary_text(payload).splitlines()[2] == sentence
    assert "built with a different config?" in summary_html(payload)
