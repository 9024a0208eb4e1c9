"""The evaluator on the smoke protocol: tracks, the cross-architecture grid, determinism, references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdd_bench.artifacts.references import forgetting_counts, full_data_reference
from mdd_bench.data import load_dataset
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError
from mdd_bench.evaluation.evaluator import Evaluator, arch_grid, random_pairs
from mdd_bench.evaluation.metrics import METRICS
from mdd_bench.protocol import load_protocol
from mdd_bench.workspace import Workspace

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts


@pytest.fixture(scope="module")
def smoke():
    protocol = load_protocol("smoke")
    dataset = load_dataset("shapes", protocol, progress=False)
    evaluator = Evaluator(Workspace(protocol, dataset, progress=False))
    distilled = random_pairs(dataset, evaluator.text_embeddings("train"), protocol, 20, seed=0)
    return protocol, dataset, evaluator, distilled


def test_hard_track_reports_every_metric_per_repetition(smoke):
    protocol, _, evaluator, distilled = smoke
    result = evaluator.evaluate(distilled, track="hard", repetitions=2)
    (arch,) = result.archs
    assert arch.source and arch.image_encoder == protocol.image.source
    assert len(arch.runs) == 2 and arch.seeds == [0, 1]
    for run in arch.runs:
        assert set(METRICS) <= set(run)
        assert all(0.0 <= run[m] <= 100.0 for m in METRICS)
    assert result.extras_used == []


def test_same_seed_gives_same_numbers(smoke):
    _, _, evaluator, distilled = smoke
    a = evaluator.evaluate(distilled, repetitions=1, seed=3).source().runs
    b = evaluator.evaluate(distilled, repetitions=1, seed=3).source().runs
    c = evaluator.evaluate(distilled, repetitions=1, seed=4).source().runs
    assert a == b
    assert a != c


def test_native_track_uses_and_reports_extras(smoke):
    _, _, evaluator, distilled = smoke
    n = distilled.size
    extras = {
        "similarity": torch.eye(n) * 0.9 + 0.01,
        "lr_img": torch.tensor(0.05),
        "lr_txt": torch.tensor(0.2),
    }
    provenance = dict(distilled.provenance, eval_loss="wbce")
    with_extras = DistilledSet(distilled.images, distilled.texts, extras, provenance)
    native = evaluator.evaluate(with_extras, track="native", repetitions=1)
    assert set(native.extras_used) == {"learned_lr", "similarity", "loss:wbce"}
    assert native.recipe["lr_img"] == pytest.approx(0.05) and native.recipe["loss"] == "wbce"
    hard = evaluator.evaluate(with_extras, track="hard", repetitions=1)
    assert hard.extras_used == [] and hard.recipe["loss"] == "infonce"
    assert native.source().runs != hard.source().runs


def test_cross_architecture_grid_covers_every_pair(smoke):
    protocol, _, evaluator, distilled = smoke
    result = evaluator.evaluate(distilled, archs="all", repetitions=1)
    expected = arch_grid(protocol, "all")
    assert [(a.image_encoder, a.text_encoder) for a in result.archs] == expected
    assert len(expected) == (1 + len(protocol.image.unseen)) * (1 + len(protocol.text.unseen))
    assert sum(a.source for a in result.archs) == 1


def test_incompatible_text_dimension_is_a_clear_error(smoke):
    _, _, evaluator, distilled = smoke
    wrong = DistilledSet(distilled.images, distilled.texts[:, :100].contiguous())
    with pytest.raises(MddError, match="dimension|-d"):
        evaluator.evaluate(wrong, archs="all", repetitions=1)


def test_wrong_resolution_is_a_clear_error(smoke):
    _, _, evaluator, distilled = smoke
    small = DistilledSet(distilled.images[:, :, :16, :16].contiguous(), distilled.texts)
    with pytest.raises(MddError, match="3x32x32"):
        evaluator.evaluate(small, repetitions=1)


def test_budget_larger_than_train_set_is_a_clear_error(smoke):
    protocol, dataset, evaluator, _ = smoke
    with pytest.raises(MddError, match="larger than"):
        random_pairs(dataset, evaluator.text_embeddings("train"), protocol, 10**6, seed=0)


def test_full_data_reference_is_cached_with_model_and_forgetting(smoke):
    protocol, dataset, evaluator, _ = smoke
    ref = full_data_reference(evaluator.workspace, progress=False)
    assert len(ref.result["runs"]) == protocol.eval.full_data_repetitions
    assert ref.result["pairs"] == dataset.train.num_captions
    correct = ref.correctness()
    assert correct.shape == (protocol.eval.full_data_epochs, dataset.train.num_captions)
    assert correct.dtype == bool
    model = ref.load_model(evaluator.workspace)
    assert evaluator.score(model, "test") == pytest.approx(ref.result["runs"][0])
    again = full_data_reference(evaluator.workspace, progress=False)
    assert again.result == ref.result


def test_forgetting_counts_follow_toneva():
    correct = np.array(
        [
            [1, 0, 0, 1],
            [0, 0, 1, 1],
            [1, 0, 0, 1],
            [0, 0, 1, 1],
        ],
        dtype=bool,
    )
    counts = forgetting_counts(correct)
    assert counts[0] == 2  # learned, forgotten, learned, forgotten
    assert np.isinf(counts[1])  # never learned
    assert counts[2] == 1
    assert counts[3] == 0


def test_reference_key_follows_only_the_settings_that_shape_it(smoke):
    import dataclasses

    from mdd_bench.artifacts.references import reference_folder

    protocol, dataset, evaluator, _ = smoke
    base = reference_folder(protocol, dataset)
    assert base == reference_folder(evaluator.protocol, evaluator.dataset)
    experts = dataclasses.replace(protocol, experts=dataclasses.replace(protocol.experts, epochs=9))
    assert reference_folder(experts, dataset) == base
    ev = dataclasses.replace(protocol, eval=dataclasses.replace(protocol.eval, lr_img=0.01))
    assert reference_folder(ev, dataset) != base


def test_full_data_reference_resumes_per_repetition(smoke, monkeypatch):
    import dataclasses

    from mdd_bench.artifacts import references

    protocol, dataset, _, _ = smoke
    # A protocol variant of its own (other epochs), so this test trains a fresh reference.
    proto = dataclasses.replace(protocol, eval=dataclasses.replace(protocol.eval, full_data_epochs=2))
    evaluator = Evaluator(Workspace(proto, dataset, progress=False))
    trained = []
    real = references.train_full_data

    def counting(ev, image, seed, augment, recorder=None, progress=True):
        trained.append(seed)
        if seed == 1 and len(trained) == 2:
            raise KeyboardInterrupt  # interrupted during repetition 1
        return real(ev, image, seed, augment, recorder, progress)

    monkeypatch.setattr(references, "train_full_data", counting)
    with pytest.raises(KeyboardInterrupt):
        full_data_reference(evaluator.workspace, progress=False)
    folder = references.reference_folder(proto, dataset)
    rep0 = folder / "runs" / "rep0.json"
    assert rep0.exists() and not (folder / "result.json").exists()
    mtime = rep0.stat().st_mtime_ns
    ref = full_data_reference(evaluator.workspace, progress=False)
    assert trained == [0, 1, 1]  # repetition 0 kept, repetition 1 retrained once
    assert rep0.stat().st_mtime_ns == mtime and len(ref.result["runs"]) == 2
    assert ref.result["std"]["mean"] is not None  # ddof=1 over the two repetitions
    assert ref.result["recipe"]["epochs"] == 2 and ref.result["recipe"]["dsa"] is False


def test_full_data_of_an_unseen_image_encoder_is_its_own_reference(smoke):
    protocol, dataset, evaluator, _ = smoke
    from mdd_bench.artifacts.references import reference_folder

    unseen = protocol.image.unseen[0]
    assert reference_folder(protocol, dataset, unseen) != reference_folder(protocol, dataset)
    ref = full_data_reference(evaluator.workspace, progress=False, image_encoder=unseen, repetitions=1)
    assert ref.result["image_encoder"] == unseen and not ref.result["source"]
    assert len(ref.result["runs"]) == 1 and ref.result["std"]["mean"] is None
    assert not (ref.folder / "forgetting.npy").exists()  # forgetting is recorded for the source only


def test_std_is_the_sample_std():
    from mdd_bench.evaluation.evaluator import ArchResult

    arch = ArchResult("a", "b", [0, 1, 2], [{"mean": 10.0}, {"mean": 12.0}, {"mean": 14.0}])
    assert arch.std["mean"] == pytest.approx(2.0)
    assert ArchResult("a", "b", [0], [{"mean": 10.0}]).std["mean"] is None
