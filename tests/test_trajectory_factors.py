"""The trajectory family's factor switches (issue 34's factor table): gradient, student loss and towers as
hyper-parameters ("method": the class's own), each method's `factors` ablation group flipping each switch
alone, and the default that changes nothing."""

from __future__ import annotations

import pytest
import torch

from mdd_bench.api import DistillContext
from mdd_bench.distill import matching
from mdd_bench.errors import MddError
from mdd_bench.methods.lors import LoRS
from mdd_bench.methods.mtt_vl import MTTVL
from mdd_bench.methods.repblend import RepBlend
from mdd_bench.methods.tesla import TESLA
from mdd_bench.models.dual import BACKBONE, FROZEN
from mdd_bench.run.ablations import ablation_variants


def run_of(cls, smoke, **overrides: str):
    protocol, dataset = smoke
    ctx = DistillContext(protocol, dataset, seed=0, progress=False)
    return cls.for_protocol(protocol, overrides).make_run(ctx, 6)


def test_each_method_flips_each_of_its_own_switches_alone() -> None:
    groups = {cls.name: cls.ablations["factors"] for cls in (MTTVL, TESLA, LoRS, RepBlend)}
    assert groups["mtt-vl"] == {
        "As configured": {},
        "Gradient: constant memory": {"gradient": "tesla"},
        "Student loss: WBCE": {"student_loss": "wbce"},
        "Towers: frozen backbone + heads": {"towers": FROZEN},
    }
    assert groups["tesla"]["Gradient: full unroll"] == {"gradient": "unroll"}
    assert groups["tesla"]["Student loss: InfoNCE"] == {"student_loss": "infonce"}
    assert groups["lors"]["Similarity: identity"] == {"similarity": "identity"}
    # RepBlend keeps its frozen towers (its blending needs them); its extras flip instead
    assert "Towers: trainable backbone" not in groups["repblend"]
    assert groups["repblend"]["Blending: off"] == {"blend_alpha": 0.0}
    assert all(len(v) <= 1 for g in groups.values() for v in g.values())  # one switch per variant
    assert [v.variant for v in ablation_variants(TESLA, ["factors"])][0] == "As configured"


def test_the_default_is_the_method_own_and_a_flip_is_used(smoke, monkeypatch: pytest.MonkeyPatch) -> None:
    default = run_of(TESLA, smoke)
    assert (default.gradient, default.student_loss, default.towers) == ("tesla", "wbce", BACKBONE)
    flipped = run_of(TESLA, smoke, gradient="unroll", student_loss="infonce")
    assert (flipped.gradient, flipped.student_loss) == ("unroll", "infonce")
    called: list[str] = []
    real_unroll, real_tesla = matching.unroll, matching.tesla_backward
    monkeypatch.setattr(matching, "unroll", lambda *a, **k: called.append("unroll") or real_unroll(*a, **k))
    monkeypatch.setattr(
        matching, "tesla_backward", lambda *a, **k: called.append("tesla") or real_tesla(*a, **k)
    )
    losses: list[str] = []
    real_loss = matching.batch_loss
    monkeypatch.setattr(
        matching, "batch_loss", lambda lg, name, t: losses.append(name) or real_loss(lg, name, t)
    )
    flipped.step()
    default.step()
    assert called == ["unroll", "tesla"]
    assert set(losses) == {"infonce", "wbce"} and losses[0] == "infonce" and losses[-1] == "wbce"


def test_naming_the_method_own_switch_changes_nothing(smoke) -> None:
    """gradient=tesla, student_loss=wbce on TESLA is TESLA: the same losses and data, bit for bit (each run
    from the same global seed, as a cell starts: the student's dropout draws from it)."""
    runs = []
    for overrides in ({}, {"gradient": "tesla", "student_loss": "wbce", "towers": BACKBONE}):
        torch.manual_seed(0)
        run = run_of(TESLA, smoke, **overrides)
        runs.append(([run.step() for _ in range(2)], run.syn))
    (losses_a, a), (losses_b, b) = runs
    assert all(torch.equal(x, y) for x, y in zip(losses_a, losses_b, strict=True))
    assert torch.equal(a.images, b.images) and torch.equal(a.texts, b.texts)


def test_flipped_towers_train_the_heads_on_head_experts(smoke) -> None:
    run = run_of(MTTVL, smoke, towers=FROZEN)
    assert run.towers == FROZEN and run.student  # built on the frozen backbone's head experts
    assert torch.isfinite(run.step())


def test_bad_switches_are_one_line_errors(smoke) -> None:
    with pytest.raises(MddError, match=r"--set tesla.gradient=sideways"):
        TESLA.for_protocol(smoke[0], {"gradient": "sideways"})
    with pytest.raises(MddError, match="its own student steps need its towers"):
        run_of(RepBlend, smoke, towers=BACKBONE)
