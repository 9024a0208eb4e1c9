"""Paired baselines (issue 32 item 4): a method initialised from random pairs at seed s starts from the
`random` cell of seed s; the native track follows each method's reference evaluation on DSA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdd_bench.api import DistillContext
from mdd_bench.data.pairs import random_indices
from mdd_bench.distill.init import initial_pairs
from mdd_bench.evaluation.evaluator import random_pairs
from mdd_bench.registry import get_method


def test_random_indices_draw_without_replacement_sorted_and_seeded() -> None:
    idx = random_indices(50, 12, seed=3)
    assert len(idx) == 12 and len(set(idx.tolist())) == 12 and (np.diff(idx) > 0).all()
    assert idx.min() >= 0 and idx.max() < 50
    assert np.array_equal(idx, random_indices(50, 12, seed=3))
    assert not np.array_equal(idx, random_indices(50, 12, seed=4))
    assert np.array_equal(random_indices(7, 7, seed=0), np.arange(7))
    with pytest.raises(ValueError):
        random_indices(5, 6, seed=0)


@pytest.mark.slow  # builds the smoke text features
@pytest.mark.parametrize("seed", [0, 1])
def test_random_init_starts_from_the_random_cell_of_its_seed(smoke, seed: int) -> None:
    protocol, dataset = smoke
    ctx = DistillContext(protocol, dataset, seed=seed, progress=False)
    ctx.prepare(("text_features",))
    budget = 12
    cell = get_method("random").for_protocol(protocol).distill(ctx, budget)  # the `random` cell's set
    images, texts, chosen = initial_pairs(ctx.workspace, budget, "random", seed)  # data_init = "random"
    assert chosen == cell.provenance["real_indices"]
    assert torch.equal(images, cell.images) and torch.equal(texts, cell.texts)
    direct = random_pairs(dataset, ctx.text_embeddings("train"), protocol, budget, seed)
    assert direct.provenance["real_indices"] == chosen
    assert chosen == random_indices(dataset.train.num_captions, budget, seed).tolist()
