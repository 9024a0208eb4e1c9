from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mdd_bench.data.images import TensorImages
from mdd_bench.data.pairs import PairDataset, Split
from mdd_bench.errors import MddError
from mdd_bench.models import text as text_models
from mdd_bench.models.text import TextEncoder, model_folder
from mdd_bench.pretrained import text_features
from mdd_bench.pretrained.text_features import caption_embeddings, split_embeddings
from mdd_bench.protocol import TextSpec

CAPTIONS = ["A red circle.", "a blue square", "a red circle", "A RED CIRCLE!", "a green star"]


@pytest.fixture
def calls(monkeypatch):
    """Counts the captions each TextEncoder.embed call receives."""
    seen: list[int] = []
    original = TextEncoder.embed

    def counting(self, captions, *args, **kwargs):
        seen.append(len(captions))
        return original(self, captions, *args, **kwargs)

    monkeypatch.setattr(TextEncoder, "embed", counting)
    return seen


def no_loading(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("model loaded on a cache hit")

    monkeypatch.setattr(text_models, "create_text_encoder", fail)


def test_miss_then_hit_without_loading(calls, monkeypatch):
    caps = [*CAPTIONS, "hit test"]
    first = caption_embeddings(caps, "minilm", max_length=32)
    assert first.shape == (6, 384) and calls == [4]  # dedup: three spellings of "a red circle"
    no_loading(monkeypatch)
    second = caption_embeddings(caps, "minilm", max_length=32)
    np.testing.assert_array_equal(first, second)
    assert calls == [4]


def test_dedup_rows_identical(calls):
    out = caption_embeddings(CAPTIONS, "minilm", max_length=32)
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[0], out[3])
    assert np.abs(out[0] - out[1]).max() > 1e-2


def test_invalidation(calls):
    base = ["invalidation one", "invalidation two"]
    caption_embeddings(base, "minilm", max_length=32)
    caption_embeddings(base, "minilm", max_length=32)
    assert len(calls) == 1
    caption_embeddings([*base, "invalidation three"], "minilm", max_length=32)
    assert len(calls) == 2
    caption_embeddings(base, "minilm", max_length=16)
    assert len(calls) == 3
    small = caption_embeddings(base, "minilm-l3", max_length=32)
    assert len(calls) == 4
    assert np.abs(small - caption_embeddings(base, "minilm", max_length=32)).max() > 1e-2


def test_passed_encoder_shares_cache(calls):
    encoder = text_models.create_text_encoder("minilm", max_length=32)
    caption_embeddings(["shared entry"], "minilm", max_length=32)
    caption_embeddings(["shared entry"], "minilm", max_length=32, encoder=encoder)
    assert len(calls) == 1


def test_changed_weights_invalidate(tmp_path, calls):
    folder = tmp_path / "model"
    shutil.copytree(model_folder("minilm"), folder)
    before = caption_embeddings(["weights test"], str(folder), max_length=32)
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in state if "word_embeddings" in k)
    state[key] = state[key] + torch.randn_like(state[key]) * 0.1
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    after = caption_embeddings(["weights test"], str(folder), max_length=32)
    assert len(calls) == 2 and np.abs(before - after).max() > 0


def test_pooling_and_empty():
    with pytest.raises(MddError, match="pooling"):
        caption_embeddings(["x"], "minilm", max_length=32, pooling="mean")
    assert caption_embeddings([], "minilm", max_length=32).shape == (0, 384)


def test_split_embeddings(calls):
    def split(name, captions):
        pixels = torch.zeros((1, 3, 8, 8), dtype=torch.uint8)
        return Split(name, TensorImages(pixels), captions, np.zeros(len(captions)))

    splits = {"train": split("train", ["a b", "c d"]), "test": split("test", ["e f"])}
    dataset = PairDataset("toy", splits, resolution=8)
    out = split_embeddings(dataset, TextSpec(source="minilm", max_length=32))
    assert {k: v.shape for k, v in out.items()} == {"train": (2, 384), "test": (1, 384)}
    out3 = split_embeddings(dataset, TextSpec(max_length=32), encoder_name="minilm-l3")
    assert np.abs(out3["train"] - out["train"]).max() > 1e-2
    assert len(calls) == 4
    assert text_features.PREPROCESS_VERSION >= 1
