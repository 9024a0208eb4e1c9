"""The random baseline the scores need, on the smoke protocol: the runner adds `random` cells for the
grid's budgets and seeds (and reuses finished ones), and a cell whose native track uses extras records
random pairs trained with the same kind of extras, its similarity from the full-data reference model."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mdd_bench.api import DistillContext, Method
from mdd_bench.cli import cli
from mdd_bench.data import load_dataset
from mdd_bench.distilled import DistilledSet
from mdd_bench.models.dual import BACKBONE, FROZEN
from mdd_bench.protocol import load_protocol
from mdd_bench.registry import get_method
from mdd_bench.report.frame import load_frame
from mdd_bench.run import grid
from mdd_bench.run.baselines import SIMILARITY_FROM, native_extras, random_like, soft_targets
from mdd_bench.run.config import RunConfig
from mdd_bench.run.grid import run_grid

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

LR_IMG, LR_TXT = 0.05, 0.02


class WithExtras(Method):
    """The first N real pairs with what a trajectory method ships: a similarity, lrs and its loss."""

    name = "with-extras"
    family = "distillation"

    def distill(self, ctx, budget: int) -> DistilledSet:
        pairs = ctx.coreset(list(range(budget)), method=self.name)
        extras = {
            "similarity": 0.9 * torch.eye(budget) + 0.01,
            "lr_img": torch.tensor(LR_IMG),
            "lr_txt": torch.tensor(LR_TXT),
        }
        return DistilledSet(pairs.images, pairs.texts, extras, {**pairs.provenance, "eval_loss": "wbce"})


@pytest.fixture
def with_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grid, "get_method", lambda n: WithExtras if n == WithExtras.name else get_method(n))


def config(out: Path, seeds: list[int], **kw) -> RunConfig:
    return RunConfig([WithExtras.name], ["shapes"], [10], seeds=seeds, out=out, repetitions=1, **kw)


def source(evaluation: dict) -> dict:
    return next(a for a in evaluation["archs"] if a["source"])


def test_soft_targets_average_the_row_and_column_softmax() -> None:
    logits = np.array([[5.0, 1.0, 0.0], [0.5, 4.0, 2.0], [0.0, 3.0, 3.0]])
    rows = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    cols = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    got = soft_targets(torch.tensor(logits)).numpy()
    assert got == pytest.approx((rows + cols) / 2, abs=1e-6)
    assert got.sum() == pytest.approx(3.0, abs=1e-5) and (got >= 0).all() and (got <= 1).all()
    sure = soft_targets(torch.eye(4) * 100).numpy()  # a certain teacher gives the identity
    assert sure == pytest.approx(np.eye(4), abs=1e-6)


def test_runner_adds_random_cells_and_records_the_native_baseline(tmp_path: Path, with_extras) -> None:
    out = tmp_path / "runs"
    said: list[str] = []
    results = run_grid(load_protocol("smoke"), config(out, [0, 1]), log=said.append, progress=False)
    assert sorted((r["method"], r["seed"]) for r in results) == [
        ("random", 0), ("random", 1), ("with-extras", 0), ("with-extras", 1)
    ]  # fmt: skip
    assert any("adding random cells" in line for line in said)
    by = {(r["method"], r["seed"]): r for r in results}
    assert "random_baseline" not in by[("random", 0)]["evaluation"]["native"]  # no extras: nothing to pair

    proto = load_protocol("smoke")
    dataset = load_dataset("shapes", proto, progress=False)
    for seed in (0, 1):
        native = by[("with-extras", seed)]["evaluation"]["native"]
        baseline = native["random_baseline"]
        assert baseline["pairs_seed"] == seed and baseline["similarity_from"] == SIMILARITY_FROM
        assert sorted(baseline["extras_used"]) == sorted(native["extras_used"]) == [
            "learned_lr", "loss:wbce", "similarity"
        ]  # fmt: skip
        assert baseline["recipe"]["lr_img"] == pytest.approx(LR_IMG)
        assert baseline["recipe"]["lr_txt"] == pytest.approx(LR_TXT) and baseline["recipe"]["loss"] == "wbce"
        assert source(baseline)["seeds"] == source(native)["seeds"]  # paired repetitions
        # Its pairs are the random cell's of that seed, its similarity the reference model's soft targets.
        ctx = DistillContext(proto, dataset, seed=seed, progress=False)
        mine = DistilledSet.load(by[("with-extras", seed)]["distilled_set"])
        again = random_like(ctx, mine, seed)
        random_set = DistilledSet.load(by[("random", seed)]["distilled_set"])
        assert again.provenance["real_indices"] == random_set.provenance["real_indices"]
        assert torch.equal(again.images, random_set.images) and torch.equal(again.texts, random_set.texts)
        with torch.no_grad():
            logits = ctx.reference_model().logits(random_set.images, random_set.texts).double()
        expected = (logits.softmax(1) + logits.softmax(0)) / 2
        assert torch.allclose(again.extras["similarity"].double(), expected, atol=1e-5)
        assert again.learned_lrs() == pytest.approx((LR_IMG, LR_TXT))

    # The reference was trained for the similarity: the upper bound is published, so HLR exists too.
    (full_path,) = (out / "smoke" / "shapes" / "full-data").glob("b*-s0.json")
    full = source(json.loads(full_path.read_text())["evaluation"]["hard"])["mean"]["mean"]
    frame = load_frame(out)
    random_hard = statistics.fmean(
        source(by[("random", s)]["evaluation"]["hard"])["mean"]["mean"] for s in (0, 1)
    )
    for seed in (0, 1):
        ev = by[("with-extras", seed)]["evaluation"]
        hard, native = source(ev["hard"])["mean"]["mean"], source(ev["native"])["mean"]["mean"]
        native_random = source(ev["native"]["random_baseline"])["mean"]["mean"]
        got = frame[(frame["method"] == "with-extras") & (frame["seed"] == seed)]
        value = {(t, m): v for t, m, v in got[["track", "metric", "value"]].itertuples(index=False)}
        assert value[("hard", "ior")] == pytest.approx((hard - random_hard) / 100)
        assert value[("native", "ior")] == pytest.approx((native - native_random) / 100)
        assert value[("native", "hlr")] == value[("hard", "hlr")] == pytest.approx((full - hard) / 100)

    # A rerun reuses every finished cell, the random ones included.
    stamp = (out / "smoke" / "shapes" / "random" / "b10-s1.json").stat().st_mtime_ns
    said.clear()
    run_grid(load_protocol("smoke"), config(out, [0, 1]), log=said.append, progress=False)
    assert sum(line.startswith("skip random shapes budget=10") for line in said) == 2
    assert (out / "smoke" / "shapes" / "random" / "b10-s1.json").stat().st_mtime_ns == stamp


def test_no_random_baseline_runs_neither(tmp_path: Path, with_extras) -> None:
    out = tmp_path / "runs"
    results = run_grid(
        load_protocol("smoke"), config(out, [0], random_baseline=False, tracks=["native"]), progress=False
    )
    assert [r["method"] for r in results] == ["with-extras"]
    assert "random_baseline" not in results[0]["evaluation"]["native"]
    assert not (out / "smoke" / "shapes" / "random").exists()


def test_dry_run_lists_the_random_cells_unless_switched_off(tmp_path: Path) -> None:
    args = ["run", "--protocol", "smoke", "--methods", "herding", "--budgets", "10", "--seeds", "0,1",
            "--out", str(tmp_path), "--dry-run"]  # fmt: skip
    dry = CliRunner().invoke(cli, args)
    assert dry.exit_code == 0, dry.output
    assert "cells: 3 in the grid" in dry.output  # herding is deterministic: seed 0; random: seeds 0 and 1
    assert [line.split()[:4] for line in dry.output.splitlines() if line.startswith("random")] == [
        ["random", "shapes", "10", "0"], ["random", "shapes", "10", "1"]
    ]  # fmt: skip
    off = CliRunner().invoke(cli, [*args, "--no-random-baseline"])
    assert off.exit_code == 0, off.output
    assert "cells: 1 in the grid" in off.output and "\nrandom " not in off.output


@pytest.mark.parametrize("protocol", ["smoke", "smoke-frozen"])
def test_the_baseline_keeps_the_learned_lrs_towers(protocol: str) -> None:
    """A set's learned lrs apply only where the evaluation trains the towers they were learned for, so
    the random pairs must carry that provenance too (under cpu-frozen they once lost it: RepBlend's cells
    failed their extras check, and a silent drop would have compared unlike recipes)."""
    proto = load_protocol(protocol)
    ctx = DistillContext(proto, load_dataset("shapes", proto, progress=False), seed=0, progress=False)
    pairs = ctx.coreset(list(range(6)), method="lrs-only")
    lrs = {"lr_img": torch.tensor(LR_IMG), "lr_txt": torch.tensor(LR_TXT)}
    for towers in (BACKBONE, FROZEN):
        mine = DistilledSet(pairs.images, pairs.texts, lrs, {**pairs.provenance, "towers": towers})
        used = native_extras(ctx, mine)
        assert used == (["learned_lr"] if towers == proto.eval.towers else [])
        baseline = random_like(ctx, mine, seed=0)
        if not used:
            assert baseline is None  # nothing to pair: the random cells themselves are the baseline
            continue
        assert native_extras(ctx, baseline) == used and baseline.towers == towers
        assert ctx.evaluator.recipe_for(baseline, "native")[0] == ctx.evaluator.recipe_for(mine, "native")[0]
