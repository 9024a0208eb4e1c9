"""Coreset baselines on the smoke protocol, and herding / k-center against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mdd_bench.api import DistillContext
from mdd_bench.methods.coreset import herding, k_center
from mdd_bench.registry import get_method

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

CORESETS = ["random", "herding", "k-center", "forgetting"]


def distil(smoke, name: str, budget: int, seed: int):
    protocol, dataset = smoke
    ctx = DistillContext(protocol, dataset, seed=seed, progress=False)
    method = get_method(name).for_protocol(protocol)
    ctx.prepare(method.artifacts)
    return ctx, method.distill(ctx, budget)


@pytest.mark.parametrize("name", CORESETS)
def test_coreset_sizes_uniqueness_content_and_determinism(smoke, name):
    protocol, dataset = smoke
    ctx, chosen = distil(smoke, name, 15, seed=0)
    idx = np.array(chosen.provenance["real_indices"])
    assert chosen.size == 15 and len(idx) == 15
    assert len(np.unique(idx)) == 15
    assert idx.min() >= 0 and idx.max() < dataset.train.num_captions
    images, texts = ctx.real_pairs(idx)
    assert torch.equal(chosen.images, images) and torch.equal(chosen.texts, texts)
    assert chosen.images.shape[1:] == (3, protocol.data.resolution, protocol.data.resolution)
    _, again = distil(smoke, name, 15, seed=0)
    assert again.provenance["real_indices"] == chosen.provenance["real_indices"]


def test_random_and_forgetting_depend_on_seed(smoke):
    for name in ("random", "forgetting"):
        _, a = distil(smoke, name, 15, seed=0)
        _, b = distil(smoke, name, 15, seed=1)
        if name == "random":
            assert a.provenance["real_indices"] != b.provenance["real_indices"]
        else:  # only ties are broken by the seed: the most-forgotten pairs come first either way
            assert a.size == b.size


def test_forgetting_picks_the_most_forgotten_pairs(smoke):
    from mdd_bench.artifacts.references import forgetting_counts

    ctx, chosen = distil(smoke, "forgetting", 15, seed=0)
    counts = forgetting_counts(ctx.reference().correctness())
    picked = counts[chosen.provenance["real_indices"]]
    rest = np.delete(counts, chosen.provenance["real_indices"])
    assert picked.min() >= rest.max()


def brute_force_herding(z: np.ndarray, budget: int) -> list[int]:
    mu = z.mean(0)
    chosen: list[int] = []
    for k in range(budget):
        best, best_d = None, np.inf
        for i in range(len(z)):
            if i in chosen:
                continue
            d = np.linalg.norm((k + 1) * mu - z[chosen].sum(0) - z[i])
            if d < best_d - 1e-12:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def test_herding_matches_brute_force():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 4))
    assert herding(torch.from_numpy(z), 8) == brute_force_herding(z, 8)


def test_k_center_matches_brute_force_greedy_and_radius():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(25, 3))
    chosen, radius = k_center(torch.from_numpy(z), 6)
    expected = [int(np.argmin(np.linalg.norm(z - z.mean(0), axis=1)))]
    for _ in range(5):
        dists = np.min([np.linalg.norm(z - z[c], axis=1) for c in expected], axis=0)
        expected.append(int(np.argmax(dists)))
    assert chosen == expected
    final = np.min([np.linalg.norm(z - z[c], axis=1) for c in expected], axis=0)
    assert radius == pytest.approx(final.max())


def test_k_center_greedy_is_within_twice_the_optimal_radius():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(12, 2))
    _, radius = k_center(torch.from_numpy(z), 3)
    optimal = min(
        np.min([np.linalg.norm(z - z[c], axis=1) for c in combo], axis=0).max()
        for combo in itertools.combinations(range(12), 3)
    )
    assert radius <= 2 * optimal + 1e-9
