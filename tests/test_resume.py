"""A distillation stopped mid-run goes on from its last val check and ends where the uninterrupted run
ends, bit for bit (`distill/resume.py`): every iterative method on smoke, a stale or broken checkpoint,
and a grid cell stopped then re-run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from mdd_bench.api import DistillContext
from mdd_bench.distill.loop import DistillLoop
from mdd_bench.distill.resume import Checkpoint, checkpoint_path
from mdd_bench.registry import get_method
from mdd_bench.run.config import RunConfig
from mdd_bench.run.grid import run_grid

pytestmark = pytest.mark.slow  # distils on smoke

ITERATIVE = ["mdm", "mtt-vl", "tesla", "lors", "repblend"]
KEY = {"cell": "test"}


class Stopped(Exception):
    """Stands for the process being stopped (a session's end, SIGINT) after a check."""


@pytest.fixture(scope="module")
def longer(smoke):
    """Smoke with checks at 0, 2, 4, 6 and no plateau stop, so a run has checks to resume from."""
    protocol, dataset = smoke
    rule = dataclasses.replace(protocol.distill, max_iterations=6, eval_every=2, patience=10)
    return dataclasses.replace(protocol, distill=rule), dataset


def distil(name: str, protocol, dataset, checkpoint: Path | None = None, stop_at: int | None = None):
    """(the returned set, its context) of one run; `stop_at`: raise `Stopped` at that check."""
    method = get_method(name).for_protocol(protocol, budget=10, tuned="none")
    ctx = DistillContext(protocol, dataset, seed=0, progress=False)
    if checkpoint is not None:
        ctx.checkpoint = Checkpoint(checkpoint, KEY)
    if stop_at is not None:

        def hook(iteration: int, scores: dict) -> None:
            if iteration == stop_at:
                raise Stopped

        ctx.check_hook = hook
    return method.distill(ctx, 10), ctx


def assert_same_run(a, ctx_a, b, ctx_b) -> None:
    for name in ("images", "texts"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.extras.keys() == b.extras.keys()
    for name in a.extras:
        assert torch.equal(a.extras[name], b.extras[name]), name
    for track, chosen in ctx_a.selected.items():
        assert torch.equal(chosen.images, ctx_b.selected[track].images), track
    extra_a, extra_b = ctx_a.stats.extra, ctx_b.stats.extra
    for key in ("val_curves", "selection", "stop", "final_loss", "best_iterations"):
        assert extra_a.get(key) == extra_b.get(key), key
    assert ctx_a.stats.iterations == ctx_b.stats.iterations
    assert torch.equal(ctx_a.initial.images, ctx_b.initial.images)


@pytest.mark.parametrize("name", ITERATIVE)
def test_a_stopped_run_resumes_to_the_uninterrupted_result(name: str, longer, tmp_path: Path) -> None:
    protocol, dataset = longer
    reference, ctx_ref = distil(name, protocol, dataset)  # no checkpoint at all
    path = tmp_path / "run.pt"
    with pytest.raises(Stopped):
        distil(name, protocol, dataset, path, stop_at=4)
    assert torch.load(path, weights_only=False)["iteration"] == 2  # the last check saved before the stop
    resumed, ctx = distil(name, protocol, dataset, path)
    assert ctx.stats.extra["resumed"]["from_iteration"] == 2
    assert ctx.stats.resumed_s > 0
    assert_same_run(reference, ctx_ref, resumed, ctx)
    assert len(ctx.stats.extra["val_curves"]["hard"]) == 4  # checks 0, 2, 4, 6: none lost, none twice


def test_a_checkpoint_under_another_key_or_cut_short_starts_afresh(longer, tmp_path: Path) -> None:
    protocol, dataset = longer
    reference, ctx_ref = distil("mdm", protocol, dataset)
    path = tmp_path / "run.pt"
    with pytest.raises(Stopped):
        distil("mdm", protocol, dataset, path, stop_at=4)
    assert Checkpoint(path, {"cell": "another"}).load() is None
    method = get_method("mdm").for_protocol(protocol, budget=10, tuned="none")
    ctx = DistillContext(protocol, dataset, seed=0, progress=False)
    ctx.checkpoint = Checkpoint(path, {"cell": "another"})
    fresh = method.distill(ctx, 10)
    assert "resumed" not in ctx.stats.extra
    assert_same_run(reference, ctx_ref, fresh, ctx)
    path.write_bytes(path.read_bytes()[:100])  # a save a crash cut short
    assert Checkpoint(path, KEY).load() is None
    fresh, ctx = distil("mdm", protocol, dataset, path)
    assert "resumed" not in ctx.stats.extra
    assert_same_run(reference, ctx_ref, fresh, ctx)


def test_a_plateau_stop_saved_at_its_check_is_not_run_further(longer, tmp_path: Path) -> None:
    protocol, dataset = longer
    rule = dataclasses.replace(protocol.distill, patience=1)
    protocol = dataclasses.replace(protocol, distill=rule)
    reference, ctx_ref = distil("mdm", protocol, dataset)
    path = tmp_path / "run.pt"
    distil("mdm", protocol, dataset, path)  # finishes: its last checkpoint is the stopping check
    saved = torch.load(path, weights_only=False)
    assert saved["iteration"] == ctx_ref.stats.iterations
    if ctx_ref.stats.extra["stop"] == "plateau":
        assert saved["stop"] == "plateau"
    again, ctx = distil("mdm", protocol, dataset, path)
    assert ctx.stats.extra["resumed"]["from_iteration"] == ctx_ref.stats.iterations
    assert_same_run(reference, ctx_ref, again, ctx)


def test_a_grid_cell_stopped_mid_distillation_resumes_on_rerun(
    smoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    protocol, _ = smoke  # checks at 0, 2 and 3
    config = RunConfig(
        ["mdm"], ["shapes"], [10], seeds=[0], out=tmp_path / "a", repetitions=1, tracks=["hard"]
    )
    config.random_baseline = False
    clean = run_grid(protocol, config, progress=False)[0]
    check = DistillLoop._check

    def stop_at_3(self, iteration):
        if iteration == 3:
            raise KeyboardInterrupt  # a stop the runner does not record as the cell's failure
        return check(self, iteration)

    stopped = dataclasses.replace(config, out=tmp_path / "b")
    monkeypatch.setattr(DistillLoop, "_check", stop_at_3)
    with pytest.raises(KeyboardInterrupt):
        run_grid(protocol, stopped, progress=False)
    result_path = next((tmp_path / "b").rglob("b10-s0.json"), None)
    assert result_path is None
    saved = next((tmp_path / "b").rglob(".b10-s0.distill.pt"))
    monkeypatch.setattr(DistillLoop, "_check", check)
    resumed = run_grid(protocol, stopped, progress=False)[0]
    assert resumed["distill"]["extra"]["resumed"]["from_iteration"] == 2
    assert not saved.exists()  # the result holds everything now
    assert checkpoint_path(Path(resumed["distilled_set"]).parent.parent / "b10-s0.json") == saved
    assert resumed["evaluation"]["hard"]["archs"] == clean["evaluation"]["hard"]["archs"]
    assert resumed["distill"]["extra"]["val_curves"] == clean["distill"]["extra"]["val_curves"]
    log = (saved.parent / "b10-s0.log").read_text()
    assert "an earlier attempt's distillation checkpoint" in log
    assert json.loads(json.dumps(resumed["stages_s"]))["distill"] > 0
