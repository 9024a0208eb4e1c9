"""Paired baselines (issue 32 item 4): a method initialised from random pairs at seed s starts from the
`random` cell of seed s; the native track follows each method's reference evaluation on DSA."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from mdd_bench.api import DistillContext, Method
from mdd_bench.data import load_dataset
from mdd_bench.data.pairs import random_indices
from mdd_bench.distill.init import initial_pairs
from mdd_bench.distilled import DistilledSet
from mdd_bench.evaluation.evaluator import Evaluator, random_pairs
from mdd_bench.protocol import PairRecipe, Protocol, load_protocol
from mdd_bench.registry import get_method
from mdd_bench.run import grid
from mdd_bench.run.config import RunConfig
from mdd_bench.run.grid import run_grid
from mdd_bench.workspace import Workspace


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


# ---------------------------------------------------------------------------------- native DSA


def with_dsa(protocol: Protocol, dsa: bool) -> Protocol:
    return dataclasses.replace(protocol, eval=dataclasses.replace(protocol.eval, dsa=dsa))


def real_set(dataset, n: int, **provenance) -> DistilledSet:
    images = torch.zeros(n, 3, dataset.resolution, dataset.resolution)
    return DistilledSet(images, torch.zeros(n, 8), {}, {"method": "m", **provenance})


def test_native_dsa_follows_each_methods_reference_evaluation() -> None:
    """Only MDM's reference evaluation uses DSA (mdm.md section 5); MTT-VL's, TESLA/LoRS's and RepBlend's
    never call DiffAugment; coresets have no native track of their own (None: the protocol's recipe)."""
    want = {"mdm": True, "mtt-vl": False, "tesla": False, "lors": False, "repblend": False}
    for name in ("mdm", "mtt-vl", "tesla", "lors", "repblend", "random", "herding", "k-center", "forgetting"):
        assert get_method(name).native_dsa is want.get(name), name


@pytest.fixture(scope="module")
def shapes():
    protocol = load_protocol("smoke")
    return load_dataset("shapes", protocol, progress=False)


@pytest.mark.parametrize("protocol_dsa", [True, False])
def test_native_recipe_takes_the_sets_dsa_and_hard_keeps_the_protocols(shapes, protocol_dsa: bool) -> None:
    evaluator = Evaluator(Workspace(with_dsa(load_protocol("smoke"), protocol_dsa), shapes, progress=False))
    for eval_dsa in (True, False, None):
        distilled = real_set(shapes, 4, eval_dsa=eval_dsa)
        hard, hard_used = evaluator.recipe_for(distilled, "hard")
        native, used = evaluator.recipe_for(distilled, "native")
        assert hard.dsa is protocol_dsa and hard_used == []  # hard: the protocol's recipe for every set
        want = protocol_dsa if eval_dsa is None else eval_dsa
        assert native.dsa is want
        assert used == ([] if want == protocol_dsa else ["dsa:on" if want else "dsa:off"])
        assert dataclasses.replace(native, dsa=hard.dsa) == hard  # nothing else changes
        assert evaluator.native_is_hard(distilled) is (want == protocol_dsa)
    assert evaluator.recipe_for(real_set(shapes, 4), "native")[0].dsa is protocol_dsa  # no provenance


def test_per_pair_recipes_follow_the_set_on_native_only(shapes) -> None:
    """A pair whose tuned recipe has DSA on trains without it natively when the reference has none."""
    smoke = load_protocol("smoke")
    pair = PairRecipe(smoke.image.source, smoke.text.source, dsa=True)
    protocol = dataclasses.replace(smoke, eval=dataclasses.replace(smoke.eval, dsa=False, recipes=(pair,)))
    evaluator = Evaluator(Workspace(protocol, shapes, progress=False))
    distilled = real_set(shapes, 4, eval_dsa=False)
    assert evaluator.recipe_for(distilled, "hard")[0].dsa is True
    assert evaluator.recipe_for(distilled, "native")[0].dsa is False
    assert not evaluator.native_is_hard(distilled)
    assert evaluator.native_is_hard(real_set(shapes, 4, eval_dsa=True))


class NoDsa(Method):
    """The first N real pairs, from a method whose reference evaluation has no DSA."""

    name = "no-dsa"
    family = "distillation"
    native_dsa = False

    def distill(self, ctx, budget: int) -> DistilledSet:
        return ctx.coreset(list(range(budget)), method=self.name)


@pytest.mark.slow  # runs a grid on smoke
def test_a_cell_trains_native_without_dsa_where_its_reference_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grid, "get_method", lambda n: NoDsa if n == NoDsa.name else get_method(n))
    protocol = with_dsa(load_protocol("smoke"), True)
    config = RunConfig([NoDsa.name], ["shapes"], [10], seeds=[0], out=tmp_path, repetitions=1)
    results = {r["method"]: r for r in run_grid(protocol, config, progress=False)}
    hard, native = results[NoDsa.name]["evaluation"]["hard"], results[NoDsa.name]["evaluation"]["native"]
    assert hard["extras_used"] == [] and all(a["recipe"]["dsa"] for a in hard["archs"])
    assert "same_as" not in native and native["extras_used"] == ["dsa:off"]  # the result says so
    assert not native["recipe"]["dsa"] and not any(a["recipe"]["dsa"] for a in native["archs"])
    baseline = native["random_baseline"]  # random pairs trained the way this native track trains
    assert baseline["extras_used"] == ["dsa:off"] and not baseline["recipe"]["dsa"]
    assert DistilledSet.load(results[NoDsa.name]["distilled_set"]).provenance["eval_dsa"] is False
    random = results["random"]["evaluation"]  # the random cell: the protocol's recipe on both tracks
    assert random["native"]["same_as"] == "hard" and random["hard"]["recipe"]["dsa"]
