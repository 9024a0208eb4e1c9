"""`mdd-bench tune`: the same number of seeded TPE trials for every method at every budget.

Each (method, budget) is one study (`studies.py`) in `<out>/studies/`. The protocol fixes the trial count
(`[tuning] trials`) and nobody else does: a method with nothing to tune gets 0 trials and says so. When a
study has all its trials, its best complete trial's values go into `<out>/tuned.toml` (what
`Method.for_protocol` applies, after the method's defaults and before `--set`) with its provenance, and
every study's trials into `<out>/summary.json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mdd_bench.cache import atomic_write_json
from mdd_bench.errors import MddError
from mdd_bench.locks import try_cell_lock
from mdd_bench.protocol import Protocol
from mdd_bench.registry import get_method
from mdd_bench.tuned import TunedEntry, write_tuned
from mdd_bench.tuning.studies import (
    StudySummary,
    is_counted,
    journal_path,
    open_study,
    recover_interrupted,
    study_name,
    summarise,
)
from mdd_bench.tuning.trial import TrialSpec, execute_trial


@dataclass
class TuneConfig:
    methods: list[str]
    budgets: list[int]
    out: Path
    trials: int | None = None  # must equal the protocol's when given
    executor: str = "local"
    address: str | None = None
    workers: int = 2
    data_root: Path | None = None
    device: str = "cpu"
    progress: bool = True
    drain_file: Path | None = None  # once it exists, no new trial starts; the running ones finish

    def draining(self) -> bool:
        return self.drain_file is not None and self.drain_file.exists()


@dataclass
class TuneReport:
    summaries: list[StudySummary] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # methods with nothing to tune
    tuned_path: Path | None = None
    summary_path: Path | None = None


def check_trials(protocol: Protocol, trials: int | None) -> int:
    """The protocol's trial count; another one asked for is an error (every method gets the same)."""
    fixed = protocol.tuning.trials
    if trials is not None and trials != fixed:
        raise MddError(
            f"--trials {trials}: protocol '{protocol.name}' fixes {fixed} trials per method and budget "
            "([tuning] trials), the same for every method. Drop --trials, or change it for every method in "
            'a protocol file (base = "' + protocol.name + '", [tuning] trials = N).'
        )
    return fixed


def tune(
    protocol: Protocol, config: TuneConfig, log: Callable[[str], None] = print, run_trials: bool = True
) -> TuneReport:
    """Run every study's owed trials (none with `run_trials=False`: a status), then summarise `config.out`."""
    trials = check_trials(protocol, config.trials)
    report = TuneReport()
    dataset_name = protocol.data.dataset
    studies: list[tuple[TrialSpec, type]] = []
    for name in config.methods:
        cls = get_method(name)
        space = cls.search_space_for(protocol)
        if not space:
            report.skipped.append(name)
            log(f"{name}: nothing to tune under '{protocol.name}' (no search space): 0 trials")
            continue
        for budget in config.budgets:
            path = journal_path(config.out, dataset_name, name, budget)
            studies.append(
                (
                    TrialSpec(
                        protocol, name, budget, path, study_name(dataset_name, name, budget),
                        config.data_root, config.device, config.progress and config.executor == "local",
                    ),
                    cls,
                )
            )  # fmt: skip
    if studies and run_trials:
        if config.executor == "ray":
            _tune_ray(studies, trials, config, log)
        elif config.executor == "local":
            _tune_local(studies, trials, config, log)
        else:
            raise MddError(f"Unknown executor '{config.executor}'. Use: local, ray.")
    report.summaries = collect(config.out, protocol)
    write_outputs(report, config.out, protocol, trials)
    return report


def _prepare(spec: TrialSpec, cls: type, dataset) -> None:
    """Build the method's artifacts once, before any trial (so trials time distillation alone)."""
    from mdd_bench.api import DistillContext

    ctx = DistillContext(spec.protocol, dataset, seed=spec.protocol.tuning.seeds[0], device=spec.device,
                         progress=spec.progress)  # fmt: skip
    ctx.prepare(cls.artifacts)


@contextmanager
def _study_lock(spec: TrialSpec) -> Iterator[None]:
    """Hold the study's lock while its trials are asked for (one tuner per study)."""
    with try_cell_lock(spec.journal) as mine:
        if not mine:
            raise MddError(f"Another `mdd-bench tune` is running study {spec.journal}; wait for it.")
        yield


def _open_owed(spec: TrialSpec, trials: int, log) -> tuple[Any, int]:
    """The study, its interrupted trials re-queued, and how many trials it still owes."""
    study = open_study(spec.journal, spec.study, spec.protocol, meta=spec.meta)
    retried = recover_interrupted(study)
    if retried:
        log(f"{spec.study}: trial(s) {retried} were interrupted; their parameters run again")
    owed = trials - sum(is_counted(t) for t in study.get_trials(deepcopy=False))
    if owed <= 0:
        log(f"{spec.study}: {trials} trials done")
    return study, owed


def _tune_local(studies: list[tuple[TrialSpec, type]], trials: int, config: TuneConfig, log) -> None:
    from mdd_bench.data import load_dataset

    dataset = None
    for spec, cls in studies:
        with _study_lock(spec):
            study, owed = _open_owed(spec, trials, log)
            if owed <= 0:
                continue
            if dataset is None:
                dataset = load_dataset(spec.protocol.data.dataset, spec.protocol, spec.data_root,
                                       progress=config.progress)  # fmt: skip
            _prepare(spec, cls, dataset)
            bar = tqdm(total=trials, initial=trials - owed, desc=f"tune {spec.study}", unit="trial",
                       disable=not config.progress)  # fmt: skip
            for _ in range(owed):
                if config.draining():
                    log(f"{config.drain_file} exists: no new trial")
                    bar.close()
                    return
                number = study.ask().number
                outcome = execute_trial(spec, number, dataset)
                bar.update(1)
                value = f"{outcome.value:.2f}" if outcome.value is not None else "-"
                log(f"{spec.study} trial {number}: {outcome.state} val {value} {outcome.params}")
            bar.close()


def _ray_trial(spec: TrialSpec, number: int, cpus: float):
    import torch

    torch.set_num_threads(max(1, int(cpus)))
    return execute_trial(spec, number)


def _tune_ray(studies: list[tuple[TrialSpec, type]], trials: int, config: TuneConfig, log) -> None:
    """Trials on Ray, `config.workers` at a time, each against its study's journal. A worker never waits
    for a study to finish: once a study has asked for all its trials, the next study's first ones start
    beside its last ones (on 2 cores a study boundary would otherwise leave one core idle for up to a
    trial's length)."""
    from mdd_bench.cluster import connect_ray
    from mdd_bench.data import load_dataset

    started = connect_ray(config.address, None, config.progress)
    import ray

    datasets: dict[str, object] = {}

    def open_next(queue, held: ExitStack) -> _Owed | None:
        """The next study that still owes trials, locked, its interrupted trials re-queued, its artifacts
        built; None when every study has all its trials."""
        for spec, cls in queue:
            if config.draining():
                return None
            held.enter_context(_study_lock(spec))
            study, owed = _open_owed(spec, trials, log)
            if owed <= 0:
                continue
            name = spec.protocol.data.dataset
            if name not in datasets:
                datasets[name] = load_dataset(name, spec.protocol, spec.data_root, progress=False)
            _prepare(spec, cls, datasets[name])
            return _Owed(spec, study, owed)
        return None

    try:
        cpus = max(1.0, float(ray.available_resources().get("CPU", 1)) / max(1, config.workers))
        task = ray.remote(_ray_trial).options(num_cpus=cpus)
        with ExitStack() as held:
            queue = iter(studies)
            current = open_next(queue, held)
            pending, names = [], {}
            while current is not None or pending:
                if current is not None and config.draining():
                    log(f"{config.drain_file} exists: no new trial; waiting for the {len(pending)} running")
                    current = None
                while current is not None and len(pending) < config.workers:
                    ref = task.remote(current.spec, current.study.ask().number, cpus)
                    pending.append(ref)
                    names[ref] = current.spec.study
                    current.owed -= 1
                    if current.owed == 0:
                        current = open_next(queue, held)
                done, pending = ray.wait(pending, num_returns=1)
                outcome = ray.get(done[0])
                log(f"{names.pop(done[0])} trial {outcome.number}: {outcome.state} {outcome.params}")
    finally:
        if started:
            ray.shutdown()


@dataclass
class _Owed:
    """A study being run: how many trials it has yet to ask for."""

    spec: TrialSpec
    study: Any
    owed: int


def collect(out: Path, protocol: Protocol) -> list[StudySummary]:
    """Summaries of every study in `out` (the ones this call ran and any earlier ones)."""
    summaries = []
    for path in sorted((out / "studies").glob("*.journal")):
        study = open_study(path, path.stem, protocol)
        meta = study.user_attrs
        summaries.append(summarise(study, meta["dataset"], meta["method"], int(meta["budget"])))
    return summaries


def write_outputs(report: TuneReport, out: Path, protocol: Protocol, trials: int) -> None:
    """`summary.json` (every study) and `tuned.toml` (studies with all their trials and a best one)."""
    entries = []
    for s in report.summaries:
        if s.trials != trials or s.best_trial is None:
            continue
        entries.append(
            TunedEntry(
                dataset=s.dataset, method=s.method, budget=s.budget, values=s.best_params, study=s.name,
                trial=s.best_trial, best_val=s.best_val, trials=s.trials, complete=s.complete,
                pruned=s.pruned, failed=s.failed, cpu_hours=s.cpu_hours, wall_hours=s.wall_hours,
            )
        )  # fmt: skip
    summary = {
        "protocol": protocol.name,
        "protocol_hash": protocol.hash,
        "trials": trials,
        "tuning": json.loads(json.dumps(protocol.to_dict()["tuning"])),
        "distill": protocol.to_dict()["distill"],
        "studies": [s.to_dict() for s in report.summaries],
    }
    report.summary_path = out / "summary.json"
    atomic_write_json(report.summary_path, summary)
    comment = (
        f"Chosen by `mdd-bench tune --protocol {protocol.name}`: {trials} trials per method and budget,\n"
        f"objective {protocol.tuning.objective}-track val mean recall; every study's trials: summary.json."
    )
    report.tuned_path = write_tuned(out / "tuned.toml", entries, protocol, comment)
