"""One tuning trial: draw the method's hyper-parameters, distil on each tuning seed, report the val curve.

The objective is the protocol's `[tuning] objective` track's val mean recall of the set the run selects
(the same `[distill]` rule as the grid: paired checks, plateau stop, best checks re-scored), averaged
over the tuning seeds. Each check of the first seed reports its val score to the pruner, which may stop
the trial there. A NaN or infinite loss, or settings the method rejects, make the trial failed; it still
counts against the budget (a setting that diverges is a result of the search, not a crash).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from mdd_bench.digests import artifact_log, logged_digests
from mdd_bench.errors import MddError
from mdd_bench.protocol import Protocol
from mdd_bench.search_space import suggest
from mdd_bench.tuning.studies import open_study


@dataclass(frozen=True)
class TrialSpec:
    """Everything a process (local or a Ray worker) needs to run trials of one study."""

    protocol: Protocol
    method: str
    budget: int
    journal: Path
    study: str
    data_root: Path | None = None
    device: str = "cpu"
    progress: bool = False

    @property
    def meta(self) -> dict[str, Any]:
        return {"dataset": self.protocol.data.dataset, "method": self.method, "budget": self.budget}


@dataclass
class TrialOutcome:
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    cpu_s: float
    error: str | None = None


def _load_dataset(spec: TrialSpec):
    from mdd_bench.data import load_dataset

    return load_dataset(spec.protocol.data.dataset, spec.protocol, spec.data_root, progress=spec.progress)


def distil_once(spec: TrialSpec, params: dict[str, Any], seed: int, dataset, hook=None) -> dict[str, Any]:
    """One distillation with `params` on `seed`; the loop's selection record of the objective track, and
    the cached artifacts it read (`digests.py`)."""
    from mdd_bench.api import DistillContext
    from mdd_bench.registry import get_method

    cls = get_method(spec.method)
    method = cls.for_protocol(spec.protocol, params, spec.budget, tuned=None)
    ctx = DistillContext(spec.protocol, dataset, seed=seed, device=spec.device, progress=spec.progress)
    ctx.select_tracks = (spec.protocol.tuning.objective,)
    ctx.check_hook = hook
    with artifact_log():
        ctx.prepare(cls.artifacts)
        method.distill(ctx, spec.budget)
        artifacts = logged_digests()
    extra = ctx.stats.extra
    chosen = extra["selection"][spec.protocol.tuning.objective]
    return {
        "value": float(chosen["val"]),
        "iteration": int(chosen["iteration"]),
        "iterations": int(ctx.stats.iterations),
        "stop": extra.get("stop"),
        "artifacts": artifacts,
    }


def execute_trial(spec: TrialSpec, number: int, dataset=None) -> TrialOutcome:
    """Run trial `number` (already asked, RUNNING) of the study and tell its end state."""
    from mdd_bench.registry import get_method

    study = open_study(spec.journal, spec.study, spec.protocol, number)
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    trial = optuna.Trial(study, frozen._trial_id)
    cls = get_method(spec.method)
    params = suggest(trial, cls.search_space_for(spec.protocol), spec.protocol)
    dataset = dataset if dataset is not None else _load_dataset(spec)
    objective = spec.protocol.tuning.objective
    cpu0, wall0 = time.process_time(), time.perf_counter()

    def hook(iteration: int, scores: dict[str, float]) -> None:
        trial.report(scores[objective], iteration)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at iteration {iteration}")

    def record(**attrs: Any) -> None:
        attrs.update(cpu_s=round(time.process_time() - cpu0, 2), wall_s=round(time.perf_counter() - wall0, 2))
        for key, value in attrs.items():
            trial.set_user_attr(key, value)

    runs: list[dict[str, Any]] = []
    try:
        for i, seed in enumerate(spec.protocol.tuning.seeds):
            runs.append(distil_once(spec, params, seed, dataset, hook if i == 0 else None))
    except optuna.TrialPruned as exc:
        record(error=str(exc))
        study.tell(number, state=TrialState.PRUNED)
        return TrialOutcome(number, "pruned", None, params, time.process_time() - cpu0)
    except MddError as exc:  # a NaN loss (NonFiniteLoss) or settings the method rejects
        # Stored as pruned at its last check, flagged failed: Optuna's samplers ignore FAIL trials, so a
        # region that diverges would be drawn again and again; a pruned trial ranks below every complete
        # one. The summary counts it as failed.
        record(error=str(exc), failed=True)
        study.tell(number, state=TrialState.PRUNED)
        return TrialOutcome(number, "failed", None, params, time.process_time() - cpu0, str(exc))
    value = float(np.mean([r["value"] for r in runs]))
    record(
        iterations=runs[0]["iterations"],
        best_iteration=runs[0]["iteration"],
        stop=runs[0]["stop"],
        seed_values=[r["value"] for r in runs],
        artifacts=runs[0]["artifacts"],
    )
    study.tell(number, value)
    return TrialOutcome(number, "complete", value, params, time.process_time() - cpu0)
