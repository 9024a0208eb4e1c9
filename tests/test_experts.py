"""Expert trajectories on the smoke protocol: round trip, resume, content key, learning."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mdd_bench.artifacts import experts as experts_mod
from mdd_bench.artifacts.experts import ExpertConfig, ensure_experts, experts_folder, snapshot
from mdd_bench.data import load_dataset
from mdd_bench.errors import MddError
from mdd_bench.evaluation.evaluator import Evaluator
from mdd_bench.protocol import load_protocol
from mdd_bench.workspace import Workspace

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts


@pytest.fixture(scope="module")
def evaluator():
    protocol = load_protocol("smoke")
    return Evaluator(Workspace(protocol, load_dataset("shapes", protocol, progress=False), progress=False))


@pytest.fixture(scope="module")
def store(evaluator):
    return ensure_experts(evaluator.workspace, progress=False)


def test_round_trip_flat_vectors_and_state_dict(evaluator, store):
    spec = evaluator.protocol.experts
    assert store.num_experts == spec.num_experts
    assert store.epochs == list(range(spec.keep_epochs + 1))
    model = store.load_model(evaluator.workspace, expert=1, epoch=spec.keep_epochs)
    image, text = store.flat(1, spec.keep_epochs)
    again = snapshot(model)
    assert torch.equal(again["image"], image) and torch.equal(again["text"], text)
    n_img = sum(p.numel() for p in model.image_encoder.parameters())
    n_txt = sum(p.numel() for p in model.text_projection.parameters())
    assert image.numel() == n_img and text.numel() == n_txt
    start, _ = store.flat(1, 0)
    assert not torch.equal(start, image)  # training moved the weights


def test_epoch_zero_is_the_anchor(evaluator, store):
    from mdd_bench.pretrained.anchors import pretrained_image_encoder

    anchor = pretrained_image_encoder(evaluator.protocol.image.source, evaluator.protocol, progress=False)
    flat_anchor = torch.cat([p.detach().reshape(-1) for p in anchor.parameters()])
    for expert in store.complete_experts:
        assert torch.equal(store.flat(expert, 0)[0], flat_anchor)


def test_trained_expert_beats_the_untrained_anchor(evaluator, store):
    last = store.epochs[-1]
    for expert in store.complete_experts:
        start = evaluator.score(store.load_model(evaluator.workspace, expert, 0), "test")["mean"]
        end = evaluator.score(store.load_model(evaluator.workspace, expert, last), "test")["mean"]
        assert end > start


def test_unstored_epoch_and_expert_are_clear_errors(store):
    with pytest.raises(MddError, match="not stored"):
        store.flat(0, 99)
    with pytest.raises(MddError, match="not trained"):
        store.flat(99, 0)


def test_content_key_follows_the_training_config(evaluator):
    config = ExpertConfig.from_protocol(evaluator.protocol)
    base = experts_folder(evaluator.workspace, config)
    assert experts_folder(evaluator.workspace, dataclasses.replace(config, lr=0.05)) != base
    assert experts_folder(evaluator.workspace, dataclasses.replace(config, epochs=config.epochs + 1)) != base
    assert experts_folder(evaluator.workspace, dataclasses.replace(config, batch_size=32)) != base
    # The expert count is not part of the key: asking for more experts extends the same set.
    assert experts_folder(evaluator.workspace, dataclasses.replace(config, num_experts=7)) == base


def test_resume_keeps_finished_experts_and_retrains_the_interrupted_one(evaluator, monkeypatch):
    protocol = dataclasses.replace(
        evaluator.protocol, experts=dataclasses.replace(evaluator.protocol.experts, lr=0.07)
    )
    ev = Evaluator(Workspace(protocol, evaluator.dataset, progress=False))
    real_train = experts_mod.train_dual
    calls = {"n": 0}

    def crash_on_second_expert(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            hook = kwargs["on_epoch_end"]
            hook(0, args[0])  # the interrupted expert has written its first epoch...
            raise KeyboardInterrupt  # ...and then dies
        return real_train(*args, **kwargs)

    monkeypatch.setattr(experts_mod, "train_dual", crash_on_second_expert)
    with pytest.raises(KeyboardInterrupt):
        ensure_experts(ev.workspace, progress=False)
    folder = experts_folder(ev.workspace, ExpertConfig.from_protocol(protocol))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert list(manifest["experts"]) == ["0"]
    finished = folder / "expert000_epoch01.safetensors"
    mtime = finished.stat().st_mtime_ns

    monkeypatch.setattr(experts_mod, "train_dual", real_train)
    trained = []
    monkeypatch.setattr(
        experts_mod, "train_dual", lambda *a, **k: trained.append(k["desc"]) or real_train(*a, **k)
    )
    store = ensure_experts(ev.workspace, progress=False)
    assert trained == ["expert 2/2"]
    assert store.complete_experts == [0, 1]
    assert finished.stat().st_mtime_ns == mtime


def test_experts_with_an_image_head_round_trip(evaluator):
    # projection_dim > 0 adds an image projection: it is part of the image vector and loads back.
    protocol = dataclasses.replace(
        evaluator.protocol, model=dataclasses.replace(evaluator.protocol.model, projection_dim=16)
    )
    ev = Evaluator(Workspace(protocol, evaluator.dataset, progress=False))
    store = ensure_experts(ev.workspace, num_experts=1, epochs=1, progress=False)
    model = store.load_model(ev.workspace, 0, 1)
    assert model.image_projection.weight.shape == (16, model.image_encoder.num_features)
    image, text = store.flat(0, 1)
    flat = torch.cat([p.detach().reshape(-1) for p in [*model.image_encoder.parameters(),
                                                       *model.image_projection.parameters()]])  # fmt: skip
    assert torch.equal(image, flat)
    assert text.numel() == sum(p.numel() for p in model.text_projection.parameters())


def test_expert_key_follows_real_augmentation(evaluator):
    protocol = dataclasses.replace(
        evaluator.protocol, experts=dataclasses.replace(evaluator.protocol.experts, real_augment=True)
    )
    plain = experts_folder(evaluator.workspace, ExpertConfig.from_protocol(evaluator.protocol))
    augmented = experts_folder(evaluator.workspace, ExpertConfig.from_protocol(protocol))
    assert plain != augmented


def test_head_experts_are_a_set_of_their_own_that_trains_only_the_heads(evaluator, store):
    from mdd_bench.models.dual import FROZEN
    from mdd_bench.pretrained.anchors import pretrained_image_encoder

    ws = evaluator.workspace
    normal = experts_folder(ws, ExpertConfig.from_protocol(evaluator.protocol))
    frozen_config = ExpertConfig.from_protocol(evaluator.protocol, towers=FROZEN)
    assert experts_folder(ws, frozen_config) != normal and "-heads-" in experts_folder(ws, frozen_config).name
    assert dataclasses.replace(frozen_config, towers=store.towers) == ExpertConfig.from_protocol(ws.protocol)
    with pytest.raises(MddError, match="Unknown expert towers"):
        ExpertConfig.from_protocol(evaluator.protocol, towers="heads")

    heads = ensure_experts(ws, num_experts=1, epochs=1, progress=False, towers=FROZEN)
    assert heads.folder != store.folder and heads.towers == FROZEN and store.towers == "backbone+text-head"
    assert all(name.startswith("image_projection.") for name, _ in heads.manifest["layout"]["image"])
    start, end = heads.flat(0, 0), heads.flat(0, 1)
    assert not torch.equal(start[0], end[0]) and not torch.equal(start[1], end[1])  # both heads trained
    model = heads.load_model(ws, 0, 1)
    assert model.towers == FROZEN
    head = torch.cat([p.detach().reshape(-1) for p in model.image_projection.parameters()])
    assert torch.equal(head, end[0])
    anchor = pretrained_image_encoder(ws.protocol.image.source, ws.protocol, progress=False)
    encoder = model.image_encoder.state_dict()
    assert all(torch.equal(v, encoder[k]) for k, v in anchor.state_dict().items())  # never trained


def test_a_derived_protocol_with_the_same_expert_config_reuses_its_bases_set(evaluator, store):
    from mdd_bench.protocol import load_protocol

    frozen_eval = load_protocol("smoke-frozen")  # base = "smoke", only [eval] differs
    ws = Workspace(frozen_eval, evaluator.dataset, progress=False)
    assert experts_folder(ws, ExpertConfig.from_protocol(frozen_eval)) == store.folder
    other = dataclasses.replace(ExpertConfig.from_protocol(frozen_eval), lr=0.05)  # a config of its own
    assert experts_folder(ws, other).name.startswith("smoke-frozen-")
