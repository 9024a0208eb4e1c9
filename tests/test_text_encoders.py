from __future__ import annotations

import numpy as np
import pytest

from mdd_bench.data.captions import pre_caption
from mdd_bench.errors import MddError
from mdd_bench.models import create_text_encoder, list_text_encoders
from mdd_bench.models.text import model_folder

CAPTIONS = [
    "a small red circle to the left of a large blue square",
    "a large green triangle above a small yellow star on a striped background",
    "a small red circle to the left of a large blue square",
]


@pytest.fixture(scope="module")
def minilm():
    return create_text_encoder("minilm", max_length=32)


def test_minilm_offline(minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert minilm.dim == 384 and minilm.max_length == 32
    a = minilm.embed(CAPTIONS, progress=False)
    b = minilm.embed(CAPTIONS[::-1], batch_size=1, progress=False)
    assert a.shape == (3, 384) and a.dtype == np.float32
    np.testing.assert_allclose(a, b[::-1], atol=1e-5)  # order restored, padding-independent
    np.testing.assert_array_equal(a[0], a[2])
    assert np.abs(a[0] - a[1]).max() > 1e-2
    assert minilm.embed([], progress=False).shape == (0, 384)


def test_frozen_and_fingerprint(minilm):
    assert not minilm.model.training
    assert not any(p.requires_grad for p in minilm.model.parameters())
    assert minilm.fingerprint == minilm.fingerprint and len(minilm.fingerprint) == 64


def test_minilm_l3(minilm):
    small = create_text_encoder("minilm-l3", max_length=32)
    assert len(small.model.encoder.layer) == 3 and small.model.config.num_hidden_layers == 3
    assert small.dim == 384
    assert small.fingerprint != minilm.fingerprint
    a = small.embed(CAPTIONS[:1], progress=False)
    assert np.abs(a - minilm.embed(CAPTIONS[:1], progress=False)).max() > 1e-2


def test_local_folder_matches_minilm(minilm):
    folder = create_text_encoder(str(model_folder("minilm")), max_length=32)
    np.testing.assert_allclose(
        folder.embed(CAPTIONS, progress=False), minilm.embed(CAPTIONS, progress=False), atol=1e-6
    )


def test_truncation(minilm):
    long = " ".join(["circle"] * 200)
    short = create_text_encoder("minilm", max_length=8)
    np.testing.assert_allclose(
        short.embed([long], progress=False), short.embed([" ".join(["circle"] * 6)], progress=False)
    )
    assert minilm.embed([long], progress=False).shape == (1, 384)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("A Dog. Runs!", "a dog runs"),
        ('He said "hi" (twice); ok: #1 ~*', "he said hi twice ok 1"),
        ("  many    spaces  \n", "many spaces"),
        ("Don't, stop-it/now?", "don't, stop-it/now?"),
        ("", ""),
    ],
)
def test_pre_caption(raw, expected):
    assert pre_caption(raw) == expected


def test_pre_caption_max_words():
    words = [f"w{i}" for i in range(40)]
    assert pre_caption(" ".join(words)) == " ".join(words[:30])
    assert pre_caption(" ".join(words), max_words=5) == " ".join(words[:5])


def test_unknown_text_encoder():
    assert {"minilm", "minilm-l3", "bert-base-uncased"} <= set(list_text_encoders())
    with pytest.raises(MddError, match="Did you mean 'minilm'"):
        create_text_encoder("minlm")
