"""One cell of the grid as a unit of work: its files, its lock, and failure isolation.

Every executor (in-process or Ray) runs a cell through `execute_cell`, so the rules are the same
everywhere: a cell runs only under its lock; it writes its result JSON atomically and last; a cell that
raises is recorded (a one-line `<cell>.error.txt` beside where its result would go, the traceback in
`<cell>.log`) and the grid goes on; a rerun retries it and removes the stale error file on success.

A job may also extend a finished cell (`--archs all` over a result evaluated on fewer encoder pairs):
the same lock, log, error file and isolation, but no distillation; it evaluates the missing pairs from
the set saved beside the result and rewrites the result atomically (`cell.extend_cell`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mdd_bench.cache import atomic_write
from mdd_bench.distill.resume import checkpoint_path
from mdd_bench.locks import remove_stale_temps, try_cell_lock
from mdd_bench.run.cell import extend_cell, extension_job, run_cell
from mdd_bench.run.jobs import BUSY, DONE, FAILED, FINISHED, CellJob, CellOutcome, DatasetCache, error_line
from mdd_bench.run.progress import CellLog, StageClock

if TYPE_CHECKING:
    from mdd_bench.run.config import RunConfig


def record_failure(job: CellJob, line: str, details: str, log: CellLog | None = None) -> None:
    """Write the cell's error file (one line) and the details (a traceback) into its log."""
    own = log is None
    log = log or CellLog(job.log_path)
    try:
        log(f"FAILED {line}\n{details}")
    finally:
        if own:
            log.close()
    atomic_write(job.error_path, lambda p: p.write_text(line + "\n"))


def execute_cell(
    job: CellJob,
    config: RunConfig,
    datasets: DatasetCache,
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
) -> CellOutcome:
    """Run one cell under its lock; never raises for a failure of the cell itself (only interrupts)."""
    with try_cell_lock(job.path) as held:
        if not held:
            return CellOutcome(job, BUSY)
        if job.path.exists() and not _still_to_extend(job, config):
            return CellOutcome(job, FINISHED)  # finished (or extended) by another run since we looked
        # A killed earlier attempt may have left temporary files; nobody else writes them now.
        resume = checkpoint_path(job.path)
        for target in (job.path, job.error_path, job.set_file, job.set_sidecar, resume):
            remove_stale_temps(target)
        log = CellLog(job.log_path)
        clock = StageClock(on_stage=on_stage, on_done=lambda name, s: log(f"  {name}: {s:.1f} s"))
        start = job.announce if job.extend or job.redo else f"start {job.label}"
        log(f"{start} (protocol {job.protocol.name}, device {config.device})")
        if resume.is_file() and not job.extend:
            log(f"  {resume.name}: an earlier attempt's distillation checkpoint (resumed if its key matches)")
        try:
            result = _run(job, config, datasets, clock, progress)
            from mdd_bench.cache import atomic_write_json

            atomic_write_json(job.path, result)
            resume.unlink(missing_ok=True)  # the result holds everything now
        except Exception as exc:  # isolation: any failure of one cell is recorded, the grid goes on
            line = error_line(exc)
            record_failure(job, line, traceback.format_exc(), log)
            log.close()
            return CellOutcome(job, FAILED, line, clock.seconds)
        job.error_path.unlink(missing_ok=True)
        log(f"done: {job.path}")
        log.close()
        return CellOutcome(job, DONE, None, clock.seconds)


def _still_to_extend(job: CellJob, config: RunConfig) -> bool:
    """Whether an extension (or re-run) job's result still lacks pairs (another run may have added them)."""

    return bool(job.extend or job.redo) and extension_job(job, config) is not None


def _run(
    job: CellJob, config: RunConfig, datasets: DatasetCache, clock: StageClock, progress: bool
) -> dict[str, Any]:
    from mdd_bench.api import DistillContext

    with clock.stage("data"):
        dataset = datasets.get(job.protocol)
    cell = job.cell
    if job.extend and job.path.exists():
        ctx = DistillContext(job.protocol, dataset, seed=cell.seed, device=config.device, progress=progress)
        return extend_cell(job, config, ctx, clock)
    overrides = {**config.overrides.get(cell.method, {}), **job.overrides}
    method = job.method_cls.for_protocol(job.protocol, overrides, cell.budget, config.tuned)
    ctx = DistillContext(job.protocol, dataset, seed=cell.seed, device=config.device, progress=progress)
    return run_cell(method, cell, job.protocol, config, ctx, job.path, job.ablation, clock)
