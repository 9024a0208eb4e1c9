"""MTT-VL, TESLA and LoRS as methods: per-protocol settings, their switches, and a LoRS cell end to end."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from mdd_bench.cli import cli
from mdd_bench.errors import MddError
from mdd_bench.methods.lors import LoRS
from mdd_bench.methods.mtt_vl import MTTVL
from mdd_bench.methods.tesla import TESLA
from mdd_bench.protocol import load_protocol

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts


def test_paper_settings_follow_the_reference_scripts_per_dataset_and_budget() -> None:
    paper = load_protocol("paper")
    coco500 = LoRS.for_protocol(paper.with_dataset("coco"), budget=500).hparams
    assert (coco500.lr_img, coco500.lr_sim, coco500.sim_rank, coco500.syn_batch) == (5000.0, 500.0, 40, 30)
    assert coco500.normaliser == "shared" and coco500.temperature == 0.1
    flickr100 = LoRS.for_protocol(paper.with_dataset("flickr30k"), budget=100).hparams
    assert (flickr100.lr_img, flickr100.sim_alpha, flickr100.normaliser) == (100.0, 3.0, "per-modality")
    flickr500 = LoRS.for_protocol(paper.with_dataset("flickr8k"), budget=500).hparams
    assert (flickr500.max_start_epoch, flickr500.sim_alpha) == (3, 0.01)
    tesla = TESLA.for_protocol(paper.with_dataset("coco"), budget=200).hparams
    # The run length is the protocol's rule for everyone (the scripts' 2000 iterations are dropped).
    assert tesla.iterations is None and not hasattr(tesla, "lr_sim") and not hasattr(tesla, "eval_every")
    assert paper.distill.max_iterations == 3000
    # --set still wins over the table
    assert LoRS.for_protocol(paper, {"lr_sim": "1"}, budget=100).hparams.lr_sim == 1.0
    # other protocols have no table
    assert LoRS.for_protocol(load_protocol("smoke"), budget=500).hparams.lr_img == LoRS().hparams.lr_img


def test_mtt_vl_logit_scale_flag() -> None:
    smoke = load_protocol("smoke")
    assert MTTVL.for_protocol(smoke).logit_scale(0.07) == pytest.approx(1 / 0.07)
    buggy = MTTVL.for_protocol(smoke, {"buggy_logit_scale": "true"})
    assert buggy.logit_scale(0.07) == pytest.approx(math.log(1 / 0.07))


def test_trajectory_needs_stored_epochs() -> None:
    import torch

    from mdd_bench.distill.trajectory import TrajectorySampler

    class Bank:
        experts = [0, 1, 2]
        keys = [(e, p) for e in experts for p in range(3)]

        def get(self, expert, epoch):
            return torch.tensor([expert, epoch]), torch.tensor([epoch])

    with pytest.raises(MddError, match="keep_epochs"):
        TrajectorySampler(Bank(), max_start_epoch=3, expert_epochs=1, seed=0)
    sampler = TrajectorySampler(Bank(), max_start_epoch=2, expert_epochs=1, seed=0)
    draws = [sampler.next() for _ in range(30)]
    for start in range(0, 30, 3):  # every expert once per pass
        assert sorted(d[0] for d in draws[start : start + 3]) == [0, 1, 2]
    assert {d[1] for d in draws} == {0, 1}
    for expert, epoch, theta0, theta_t in draws:
        assert theta0["image"].tolist() == [expert, epoch]
        assert theta_t["image"].tolist() == [expert, epoch + 1]


def test_lors_cell_trains_native_with_its_similarity_and_lrs(tmp_path) -> None:
    out = tmp_path / "runs"
    args = ["run", "--methods", "lors", "--protocol", "smoke", "--budgets", "10", "--out", str(out),
            "--tracks", "hard,native", "--repetitions", "1"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    (path,) = [p for p in out.rglob("b10-s0.json") if p.parent.name == "lors"]  # random/ is its baseline
    record = json.loads(path.read_text())
    native = record["evaluation"]["native"]
    assert set(native["extras_used"]) == {"learned_lr", "similarity", "loss:wbce"}
    assert record["evaluation"]["hard"]["extras_used"] == []
    # random pairs trained the same way (its lrs, WBCE, a similarity from the reference) for the native IOR
    assert sorted(native["random_baseline"]["extras_used"]) == sorted(native["extras_used"])
    assert native["random_baseline"]["recipe"]["lr_img"] == pytest.approx(native["recipe"]["lr_img"])
    # the native track trains on the set its own val chose, with that iteration's learned step sizes
    assert native["recipe"]["lr_img"] == pytest.approx(record["distill"]["extra"]["learned_lrs"]["native"][0])
    assert record["distill"]["extra"]["similarity_bytes"] == (10 + 2 * 10 * 2) * 4
    assert record["distill"]["iterations"] == 3 and record["distill"]["time_per_iter_s"] > 0
