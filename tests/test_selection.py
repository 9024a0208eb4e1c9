"""The one run rule of every iterative method (`distill/loop.py`) on constructed val curves: per-track
selection, the plateau stop, still-rising runs, re-scoring of the best checks, paired val seeds, ties."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import pytest
import torch

from mdd_bench.api import DistillStats
from mdd_bench.distill.loop import DistillLoop
from mdd_bench.distill.synthetic import SyntheticSet
from mdd_bench.errors import NonFiniteLoss
from mdd_bench.protocol import DistillSpec


@dataclasses.dataclass
class FakeProtocol:
    distill: DistillSpec


class CurveContext:
    """A context whose val score of a set is read off a table by the iteration the set was saved at.

    The synthetic images hold the iteration number (the step writes it), so a candidate says which
    check it is. `curves[track][iteration]` is the cheap (first runs) score, `rescored[track][iteration]`
    the mean of the extra runs a re-score adds (default: the cheap score).
    """

    def __init__(self, rule: DistillSpec, curves, rescored=None, tracks=("hard", "native")) -> None:
        self.protocol = FakeProtocol(rule)
        self.curves = curves
        self.rescored = rescored or {}
        self.select_tracks = tracks
        self.check_hook = None
        self.stats = DistillStats()
        self.selected: dict = {}
        self.initial = None
        self.calls: list[tuple[str, int, int, int]] = []  # (track, iteration, repetitions, first)

    def val_runs(self, distilled, track="hard", repetitions=1, first=0):
        iteration = int(distilled.images.flatten()[0])
        self.calls.append((track, iteration, repetitions, first))
        if first == 0:
            return [self.curves[track][iteration]] * repetitions
        value = self.rescored.get(track, {}).get(iteration, self.curves[track][iteration])
        return [value] * repetitions

    @contextmanager
    def progress(self, total, desc):
        class Bar:
            def update(self, n):
                pass

            def set_postfix(self, **kw):
                pass

        yield Bar()


def run_curve(ctx, max_iterations: int, nan_at: int | None = None):
    syn = SyntheticSet(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5), "cpu")

    def step(it: int):
        with torch.no_grad():
            syn.images.fill_(float(it))
        return float("nan") if it == nan_at else 1.0

    return DistillLoop(ctx, syn, max_iterations, {}, desc="curve").run(step)


RULE = DistillSpec(
    max_iterations=10, eval_every=1, patience=3, val_repetitions=2, rescore_top=2, rescore_repetitions=5
)


def test_each_track_selects_its_own_iteration_when_the_tracks_disagree():
    hard = {0: 10, 1: 12, 2: 20, 3: 15, 4: 14, 5: 13, 6: 12, 7: 11, 8: 10, 9: 9, 10: 8}
    native = {0: 10, 1: 11, 2: 12, 3: 13, 4: 14, 5: 30, 6: 25, 7: 20, 8: 19, 9: 18, 10: 17}
    ctx = CurveContext(RULE, {"hard": hard, "native": native})
    out = run_curve(ctx, 10)
    assert out.provenance["best_iteration"] == 2 and int(out.images.flatten()[0]) == 2  # hard's choice
    native_set = ctx.selected["native"]
    assert native_set.provenance["best_iteration"] == 5 and int(native_set.images.flatten()[0]) == 5
    assert ctx.stats.extra["selection"]["hard"]["iteration"] == 2
    assert ctx.stats.extra["selection"]["native"]["iteration"] == 5
    assert int(ctx.initial.images.flatten()[0]) == 0  # the iteration-0 set, for the paired gain
    # The plateau counts checks without a new best on any track: native's best at 5, stop at 8.
    assert ctx.stats.iterations == 8 and ctx.stats.extra["stop"] == "plateau"
    assert ctx.stats.extra["still_rising"] is False


def test_a_plateau_stops_the_run_after_patience_checks():
    curve = {i: min(i, 4) * 1.0 for i in range(11)}  # rises to iteration 4, then flat
    ctx = CurveContext(RULE, {"hard": curve}, tracks=("hard",))
    run_curve(ctx, 10)
    assert ctx.stats.iterations == 7  # checks 5, 6, 7 without a new best (patience 3)
    assert ctx.stats.extra["stop"] == "plateau" and not ctx.stats.extra["still_rising"]
    assert ctx.stats.iters_to_best == 4  # ties at 4.0 go to the earliest iteration


def test_a_curve_still_rising_at_the_maximum_is_flagged():
    curve = {i: float(i) for i in range(11)}
    ctx = CurveContext(RULE, {"hard": curve}, tracks=("hard",))
    run_curve(ctx, 10)
    assert ctx.stats.iterations == 10 and ctx.stats.extra["stop"] == "max_iterations"
    assert ctx.stats.extra["still_rising"] is True and ctx.stats.iters_to_best == 10


def test_the_best_checks_are_rescored_and_a_lucky_cheap_score_loses():
    curve = {0: 5, 1: 9, 2: 8, 3: 1, 4: 1, 5: 1}
    # Iteration 1 was lucky: its extra runs score 2, iteration 2's score 8 again.
    ctx = CurveContext(RULE, {"hard": curve}, rescored={"hard": {1: 2.0, 2: 8.0}}, tracks=("hard",))
    out = run_curve(ctx, 5)
    assert out.provenance["best_iteration"] == 2
    selection = ctx.stats.extra["selection"]["hard"]
    rescored = {c["iteration"]: c["rescored"] for c in selection["candidates"]}
    assert rescored == {1: pytest.approx((9 * 2 + 2 * 3) / 5), 2: pytest.approx(8.0)}
    assert selection["val"] == pytest.approx(8.0)
    # Paired checks: every check asks the same first runs; a re-score asks only the runs it lacks.
    checks = [c for c in ctx.calls if c[3] == 0]
    assert all(c[2] == RULE.val_repetitions for c in checks)
    extra = [c for c in ctx.calls if c[3] != 0]
    assert sorted(c[1] for c in extra) == [1, 2]
    assert all(c[2] == 3 and c[3] == 2 for c in extra)


def test_a_method_that_never_helps_returns_its_initial_set():
    curve = {0: 10, 1: 5, 2: 5, 3: 5, 4: 5}
    ctx = CurveContext(RULE, {"hard": curve}, tracks=("hard",))
    out = run_curve(ctx, 10)
    assert out.provenance["best_iteration"] == 0 and ctx.stats.iterations == 3


def test_check_hook_sees_every_check_and_can_stop_the_run():
    curve = {i: float(i) for i in range(11)}
    ctx = CurveContext(RULE, {"hard": curve}, tracks=("hard",))
    seen = []

    class Stop(Exception):
        pass

    def hook(iteration, scores):
        seen.append((iteration, scores["hard"]))
        if iteration == 3:
            raise Stop

    ctx.check_hook = hook
    with pytest.raises(Stop):
        run_curve(ctx, 10)
    assert seen == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]


def test_a_nan_loss_is_a_one_line_non_finite_error():
    ctx = CurveContext(RULE, {"hard": {i: 1.0 for i in range(11)}}, tracks=("hard",))
    with pytest.raises(NonFiniteLoss, match="loss became nan at iteration 2"):
        run_curve(ctx, 10, nan_at=2)


def test_zero_iterations_scores_and_returns_the_initial_set():
    ctx = CurveContext(RULE, {"hard": {0: 3.0}}, tracks=("hard",))
    out = run_curve(ctx, 0)
    assert out.provenance["best_iteration"] == 0 and ctx.stats.extra["stop"] == "no_iterations"
