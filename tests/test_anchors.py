"""Offline pretrained anchors: a generated classification corpus, trained once, cached by content."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mdd_bench.data.images import normaliser
from mdd_bench.pretrained import anchors
from mdd_bench.pretrained.anchors import NUM_CLASSES, anchor_path, classification_corpus, ensure_anchor
from mdd_bench.protocol import load_protocol

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts


def test_corpus_is_deterministic_and_labelled():
    a_img, a_lab = classification_corpus(64, 32, seed=5)
    b_img, b_lab = classification_corpus(64, 32, seed=5)
    c_img, _ = classification_corpus(64, 32, seed=6)
    assert torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab)
    assert not torch.equal(a_img, c_img)
    assert a_img.shape == (64, 3, 32, 32) and a_img.dtype == torch.uint8
    assert int(a_lab.min()) >= 0 and int(a_lab.max()) < NUM_CLASSES
    assert len(a_lab.unique()) > 10


def test_anchor_is_trained_once_and_keyed_by_its_recipe(monkeypatch):
    protocol = load_protocol("smoke")
    path = ensure_anchor("test_resnet", protocol, progress=False)
    assert path.exists()
    monkeypatch.setattr(anchors, "train_anchor", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert ensure_anchor("test_resnet", protocol, progress=False) == path  # a hit trains nothing
    other = dataclasses.replace(protocol, image=dataclasses.replace(protocol.image, anchor_epochs=3))
    assert anchor_path("test_resnet", other) != path
    assert anchor_path("test_nfnet", protocol) != path


def test_anchor_features_separate_classes_better_than_random_init():
    protocol = load_protocol("smoke")
    images, labels = classification_corpus(400, 32, seed=12345)
    x = normaliser(protocol)(images)

    def centroid_accuracy(encoder) -> float:
        with torch.no_grad():
            f = torch.nn.functional.normalize(encoder.eval()(x), dim=1)
        half = len(f) // 2
        classes = labels[:half].unique()
        centroids = torch.stack([f[:half][labels[:half] == c].mean(0) for c in classes])
        pred = classes[(f[half:] @ centroids.T).argmax(1)]
        return float((pred == labels[half:]).float().mean())

    torch.manual_seed(0)
    random_init = anchors.create_image_encoder("test_nfnet", "none", resolution=32)
    pretrained = anchors.pretrained_image_encoder("test_nfnet", protocol, progress=False)
    assert centroid_accuracy(pretrained) > centroid_accuracy(random_init)
