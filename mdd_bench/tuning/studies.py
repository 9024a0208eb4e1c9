"""Optuna studies of `mdd-bench tune`: one per (dataset, method, budget), kept in a journal file.

Journal storage appends every event to one file, so a study survives a SIGKILL and several processes (a
Ray cluster's workers on a shared filesystem) can report to the same study. A trial that was running
when its process died is marked failed with `interrupted` and re-queued with its parameters, and only
finished trials (complete, pruned, or failed on their own, such as a NaN loss) count against the budget,
so a resumed study runs exactly the trials it still owes and never repeats a finished one. A failed
trial (NaN loss) is stored as pruned at its last check with `failed` set: Optuna's samplers skip FAIL
trials, and a region that diverges must count against itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from mdd_bench.errors import MddError
from mdd_bench.protocol import Protocol

optuna.logging.set_verbosity(optuna.logging.WARNING)

INTERRUPTED = "interrupted"
FAILED = "failed"


def study_name(dataset: str, method: str, budget: int) -> str:
    return f"{dataset}-{method}-b{budget}"


def journal_path(out: Path, dataset: str, method: str, budget: int) -> Path:
    return out / "studies" / f"{study_name(dataset, method, budget)}.journal"


def sampler_for(protocol: Protocol, number: int) -> optuna.samplers.BaseSampler:
    """Seeded TPE; each trial number draws from its own seed, so parallel workers never share a stream
    and a resumed study draws what an uninterrupted one would have (given the same finished trials)."""
    spec = protocol.tuning
    return optuna.samplers.TPESampler(
        seed=spec.sampler_seed * 1_000_003 + number, n_startup_trials=spec.startup_trials, multivariate=True
    )


def pruner_for(protocol: Protocol) -> optuna.pruners.BasePruner:
    """The protocol's pruner on the val curve, in iterations (largest budget: [distill] max_iterations)."""
    spec, rule = protocol.tuning, protocol.distill
    top = max(rule.max_iterations, spec.min_iterations)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_iterations, max_resource=top, reduction_factor=3
        )
    if spec.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.min_iterations, reduction_factor=3)
    return optuna.pruners.NopPruner()


def storage(path: Path) -> JournalStorage:
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def open_study(
    path: Path, name: str, protocol: Protocol, number: int = 0, meta: dict[str, Any] | None = None
) -> optuna.Study:
    """Create or load the study (recording `meta`: dataset, method, budget); one made under another
    version of the protocol is an error. An existing study is loaded, not re-created: `create_study`
    appends a create record to the journal even when the study exists, so every status call and trial
    would grow the committed journals."""
    backend, sampler, pruner = storage(path), sampler_for(protocol, number), pruner_for(protocol)
    try:
        study = optuna.load_study(study_name=name, storage=backend, sampler=sampler, pruner=pruner)
    except KeyError:  # not made yet; load_if_exists covers a worker that creates it first
        study = optuna.create_study(
            study_name=name,
            storage=backend,
            direction="maximize",
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
    made = study.user_attrs.get("protocol_hash")
    if made is None:
        study.set_user_attr("protocol_hash", protocol.hash)
        study.set_user_attr("protocol", protocol.name)
        for key, value in (meta or {}).items():
            study.set_user_attr(key, value)
    elif made != protocol.hash:
        raise MddError(
            f"Study {path} was made under another version of protocol '{protocol.name}' (hash {made}, now "
            f"{protocol.hash}); its trials would not compare. Tune into a new --out folder or delete it."
        )
    return study


def is_counted(trial: FrozenTrial) -> bool:
    """A finished trial that counts against the budget (an interrupted one was re-queued instead)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(INTERRUPTED)


def state_of(trial: FrozenTrial) -> str:
    """complete, pruned, failed (a NaN loss or rejected settings: stored as pruned with `failed`, so the
    sampler learns from it), interrupted, running or waiting."""
    if trial.user_attrs.get(FAILED):
        return "failed"
    if trial.user_attrs.get(INTERRUPTED):
        return "interrupted"
    return {TrialState.FAIL: "failed"}.get(trial.state, trial.state.name.lower())


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Trials left running by a killed process: mark them failed (interrupted) and queue their
    parameters again. Call it only while holding the study's lock (no live process runs them)."""
    numbers = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
        numbers.append(trial.number)
    return numbers


@dataclass
class StudySummary:
    name: str
    dataset: str
    method: str
    budget: int
    trials: int  # counted: complete + pruned + failed
    complete: int
    pruned: int
    failed: int
    interrupted: int
    cpu_hours: float
    wall_hours: float
    best_trial: int | None
    best_val: float | None
    best_params: dict[str, Any]
    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _stamp(when: datetime | None) -> str | None:
    return when.replace(microsecond=0).isoformat() if when is not None else None


def summarise(study: optuna.Study, dataset: str, method: str, budget: int) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if is_counted(t)]
    complete = [t for t in counted if t.state == TrialState.COMPLETE and t.value is not None]
    complete = [t for t in complete if math.isfinite(t.value)]
    best = min(complete, key=lambda t: (-t.value, t.number)) if complete else None
    cpu = sum(float(t.user_attrs.get("cpu_s", 0.0)) for t in trials)
    wall = sum(float(t.user_attrs.get("wall_s", 0.0)) for t in trials)
    rows = [
        {
            "number": t.number,
            "state": state_of(t),
            "value": t.value if t.state == TrialState.COMPLETE else None,
            "params": dict(t.params),
            "last_check": max(t.intermediate_values) if t.intermediate_values else None,
            "iterations": t.user_attrs.get("iterations"),
            "best_iteration": t.user_attrs.get("best_iteration"),
            "stop": t.user_attrs.get("stop"),
            "cpu_s": t.user_attrs.get("cpu_s"),
            "error": t.user_attrs.get("error"),
            "interrupted": bool(t.user_attrs.get(INTERRUPTED)),
            # when it ran (the tuner's clock, whole seconds): the tuning's elapsed time is the union of
            # these spans, shorter than the sum of trial wall times when trials ran in parallel
            "start": _stamp(t.datetime_start),
            "end": _stamp(t.datetime_complete) if is_counted(t) else None,
        }
        for t in trials
    ]
    return StudySummary(
        name=study.study_name,
        dataset=dataset,
        method=method,
        budget=budget,
        trials=len(counted),
        complete=len(complete),
        pruned=sum(state_of(t) == "pruned" for t in counted),
        failed=sum(state_of(t) == "failed" for t in counted),
        interrupted=sum(bool(t.user_attrs.get(INTERRUPTED)) for t in trials),
        cpu_hours=round(cpu / 3600, 4),
        wall_hours=round(wall / 3600, 4),
        best_trial=best.number if best else None,
        best_val=round(float(best.value), 4) if best else None,
        best_params=dict(best.params) if best else {},
        rows=rows,
    )
