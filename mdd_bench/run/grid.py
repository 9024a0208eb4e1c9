"""`mdd-bench run`: plan the grid of cells, run what is not on disk with an executor, collect results."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdd_bench.data import load_dataset
from mdd_bench.errors import MddError
from mdd_bench.protocol import Protocol
from mdd_bench.record import RANDOM, read_result
from mdd_bench.registry import get_method
from mdd_bench.run.cell import extension_job
from mdd_bench.run.config import Cell, RunConfig
from mdd_bench.run.executors import make_executor
from mdd_bench.run.full_data import publish_full_data
from mdd_bench.run.jobs import BUSY, DRAINED, FAILED, CellJob, CellOutcome
from mdd_bench.run.preflight import preflight


def plan_grid(protocol: Protocol, config: RunConfig, log=print) -> list[CellJob]:
    """Every cell of the grid in run order (dataset, budget, seed, method), finished or not.

    Each method's hyper-parameters are resolved for every budget here, so a bad `--set` is a one-line
    error before any work starts rather than a failed cell.
    """
    config.validate()
    classes = {name: get_method(name) for name in grid_methods(config, log)}
    for name, cls in classes.items():
        if cls.deterministic and len(config.seeds) > 1:
            log(f"note {name} is deterministic: running seed {config.seeds[0]} only")
    jobs: list[CellJob] = []
    for dataset_name in config.datasets:
        proto = protocol.with_dataset(dataset_name)
        for budget in config.budgets:
            check_equal_tuning(proto, budget, classes, config)
            for seed in config.seeds:
                for name, cls in classes.items():
                    if cls.deterministic and seed != config.seeds[0]:
                        continue
                    cell = Cell(name, dataset_name, budget, seed)
                    jobs.append(CellJob(cell, proto, cls, cell.path(config.out, proto)))
    older = [job for job in jobs if _older_version(job)]
    if older:
        log(
            f"note {len(older)} finished cell(s) were made under another version of protocol "
            f"'{protocol.name}' (e.g. {older[0].path}); they are kept, not re-run: run into a new --out to "
            "make them under this version"
        )
    return jobs


def _older_version(job: CellJob) -> bool:
    """A finished result whose protocol hash is not the job's (made under another rule or recipe)."""
    if not job.path.is_file():
        return False
    try:
        return read_result(job.path).get("protocol_hash") != job.protocol.hash
    except MddError:
        return False


def check_equal_tuning(proto: Protocol, budget: int, classes: dict[str, type], config: RunConfig) -> None:
    """Resolve every method's settings for the budget (a bad `--set` fails here), and refuse a grid where
    some methods with a search space run tuned and others untuned: their tuning budgets would differ."""
    tunable, tuned = [], []
    for name, cls in classes.items():
        method = cls.for_protocol(proto, config.overrides.get(name), budget, config.tuned)
        if cls.search_space_for(proto):
            tunable.append(name)
            if method.tuning is not None:
                tuned.append(name)
    if tuned and len(tuned) != len(tunable):
        untuned = [n for n in tunable if n not in tuned]
        raise MddError(
            f"At {proto.data.dataset} budget {budget}, {', '.join(tuned)} run with tuned values and "
            f"{', '.join(untuned)} without, so their tuning budgets differ. Tune them (mdd-bench tune "
            f"--methods {','.join(untuned)} --budgets {budget}) or run every method untuned (--tuned none)."
        )


def grid_methods(config: RunConfig, log=print) -> list[str]:
    """The configured methods, with `random` first when the random baseline is on and missing."""
    methods = list(dict.fromkeys(config.methods))
    if config.random_baseline and methods and RANDOM not in methods:
        log(
            f"note adding {RANDOM} cells (same budgets and seeds), the baseline of improvement over "
            "random; --no-random-baseline leaves them out"
        )
        methods.insert(0, RANDOM)
    return methods


@dataclass
class GridRun:
    """What one `mdd-bench run` did: every finished result of the grid, and what failed or waited."""

    jobs: list[CellJob]
    results: list[dict[str, Any]]
    outcomes: list[CellOutcome]
    errors: list[str]  # failures outside any cell (the full-data upper bound asked for)
    stages: dict[str, float]
    wall_s: float
    parallel: bool = False  # stage seconds are summed over parallel tasks

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def busy(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == BUSY]

    @property
    def drained(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == DRAINED]

    def failure_message(self) -> str | None:
        """One line naming the failed cells and where their errors are, or None when none failed."""
        if not self.failed and not self.errors:
            return None
        names = [o.job.short for o in self.failed]
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        parts = [f"{len(names)} cell(s) failed: {shown}"] if names else []
        lines = list(dict.fromkeys(o.error for o in self.failed if o.error))
        if lines:  # the cause on the terminal, not only in the files (one shared cause: said once)
            parts.append(("all with: " if len(lines) == 1 and len(names) > 1 else "first: ") + lines[0])
        parts += self.errors
        where = (
            f"; the error lines are in <cell>.error.txt and the tracebacks in <cell>.log beside the results "
            f"(e.g. {self.failed[0].job.log_path})"
            if names
            else ""
        )
        return "; ".join(parts) + where + ". Rerun the same command to retry only what failed."


def for_workers(config: RunConfig) -> RunConfig:
    """Workers of a non-local executor may run elsewhere, in another working directory: absolute paths."""
    if config.executor == "local":
        return config
    return dataclasses.replace(
        config,
        out=Path(config.out).resolve(),
        data_root=None if config.data_root is None else Path(config.data_root).resolve(),
    )


def execute_grid(protocol: Protocol, config: RunConfig, log=print, progress: bool = True) -> GridRun:
    """Run every cell not already on disk with the configured executor; failures are recorded per cell.

    Finished cells are skipped (resume), or, with `--archs all`, extended with the encoder pairs their
    result lacks (`extend_cell`); cells another run holds are left to it, and the full-data
    upper bound is published as a result file when a reference was trained. With the random baseline
    on, a cached reference of any dataset of the grid is published too (the scores' HLR needs it),
    quietly skipped where there is none.
    """
    start = time.perf_counter()
    config = for_workers(config)
    planning: list[str] = []  # said once the pre-flight passes, so a refused grid prints its one line only
    jobs = plan_grid(protocol, config, planning.append)
    pending = []
    for job in jobs:
        if not job.path.exists():
            pending.append(job)
        elif (extension := extension_job(job, config)) is not None:
            pending.append(extension)
        else:
            planning.append(f"skip {job.label}: {job.path} exists")
    preflight(protocol, config, pending)  # a missing dataset or weights: one line, before any cell starts
    for line in planning:
        log(line)
    upper = _upper_bound_protocols(protocol, config) if config.full_data_repetitions else []
    executor = make_executor(config)
    report = executor.run(pending, upper, config, log, progress)
    needed = {p.data.dataset for p in _protocols_with_reference(protocol, config, jobs)}
    for name in config.datasets:
        if name not in needed and not config.random_baseline:
            continue
        proto = protocol.with_dataset(name)
        try:
            dataset = load_dataset(name, proto, config.data_root, decode=False, progress=False)
            publish_full_data(proto, dataset, config, log)
        except MddError as exc:
            if name in needed:
                report.errors.append(f"publishing the full-data upper bound failed ({exc})")
    results = [read_result(job.path) for job in jobs if job.path.exists()]
    wall = time.perf_counter() - start
    return GridRun(jobs, results, report.outcomes, report.errors, report.stages, wall, executor.parallel)


def _upper_bound_protocols(protocol: Protocol, config: RunConfig) -> list[Protocol]:
    return [protocol.with_dataset(name) for name in config.datasets]


def _protocols_with_reference(protocol: Protocol, config: RunConfig, jobs: list[CellJob]) -> list[Protocol]:
    """Datasets whose full-data reference this run may have trained (or that a killed run trained)."""
    names = {j.cell.dataset for j in jobs if "reference_model" in j.artifacts}
    if config.full_data_repetitions:
        names |= set(config.datasets)
    return [protocol.with_dataset(name) for name in config.datasets if name in names]


def run_grid(protocol: Protocol, config: RunConfig, log=print, progress: bool = True) -> list[dict[str, Any]]:
    """Run every cell not already on disk; returns all results of the grid (old and new).

    A cell that fails does not stop the others; when any failed, this raises one MddError naming them
    after the rest of the grid has run (`execute_grid` returns the details instead).
    """
    run = execute_grid(protocol, config, log, progress)
    message = run.failure_message()
    if message:
        raise MddError(message)
    return run.results


def summary_rows(results: list[dict[str, Any]], tracks: list[str]) -> list[list[Any]]:
    rows = []
    for r in results:
        row: list[Any] = [r["method"], r["dataset"], r["budget"], r["seed"]]
        for track in tracks:
            ev = r["evaluation"].get(track)
            if ev is None:
                row.append("-")
                continue
            source = next(a for a in ev["archs"] if a["source"])
            spread = source["std"]["mean"]
            row.append(f"{source['mean']['mean']:.1f}" + ("" if spread is None else f" ± {spread:.1f}"))
        row.append(f"{r['distill']['seconds']:.1f}")
        rows.append(row)
    return rows
