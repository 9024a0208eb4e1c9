"""One cell of the grid as a unit of work: its files, its lock, and failure isolation.

Every executor (in-process or Ray) runs a cell through `execute_cell`, so the rules are the same
everywhere: a cell runs only under its lock; it writes its result JSON atomically and last; a cell that
raises is recorded (a one-line `<cell>.error.txt` beside where its result would go, the traceback in
`<cell>.log`) and the grid goes on; a rerun retries it and removes the stale error file on success.

A job may also extend a finished cell (`--archs all` over a result evaluated on fewer encoder pairs):
the same lock, log, error file and isolation, but no distillation; it evaluates the missing pairs from
the set saved beside the result and rewrites the result atomically (`runner.extend_cell`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import atomic_write
from .locks import remove_stale_temps, try_cell_lock
from .progress import CellLog, StageClock

if TYPE_CHECKING:
    from .api import Method
    from .data import PairDataset
    from .protocol import Protocol
    from .runner import Cell, RunConfig

# done: run here; finished: found done by another run once the lock was ours; busy: another run holds it
DONE, FINISHED, FAILED, BUSY = "done", "finished", "failed", "busy"


@dataclass(frozen=True)
class CellJob:
    """A cell to run: what it is, under which protocol (with its dataset) and where its files go."""

    cell: Cell
    protocol: Protocol
    method_cls: type[Method]
    path: Path  # the result JSON
    # An ablation variant: its hyper-parameter overrides (on top of the run's --set) and the
    # {"group", "variant", "order"} key its result carries.
    overrides: dict[str, str] = field(default_factory=dict, compare=False)
    ablation: dict[str, Any] | None = field(default=None, compare=False)
    # An extension of a finished cell: the (image, text) encoder pairs its result lacked when planned
    # (rechecked under the lock); empty for a cell to distil and evaluate.
    extend: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    # A finished cell re-run whole (`RunConfig.redistill`): `--archs all` lacks pairs and its saved set.
    redo: bool = field(default=False, compare=False)

    @property
    def label(self) -> str:
        c = self.cell
        variant = f" {self.ablation['group']}/{self.ablation['variant']}" if self.ablation else ""
        return f"{c.method}{variant} {c.dataset} budget={c.budget} seed={c.seed}"

    @property
    def short(self) -> str:
        variant = f"{self.path.parent.parent.name}/{self.path.parent.name}/" if self.ablation else ""
        return f"{self.cell.method}/{variant}{self.path.stem}"

    @property
    def error_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.error.txt")

    @property
    def log_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.log")

    @property
    def set_base(self) -> Path:
        return self.path.parent / "sets" / self.path.stem

    @property
    def set_file(self) -> Path:
        """The saved set's tensors."""
        return self.set_base.with_name(self.set_base.name + ".safetensors")

    @property
    def set_sidecar(self) -> Path:
        """The saved set's JSON sidecar (provenance, extras' metadata)."""
        return self.set_base.with_name(self.set_base.name + ".json")

    @property
    def has_saved_set(self) -> bool:
        """Both files of the saved set are there, so the cell can be extended from it."""
        return self.set_file.is_file() and self.set_sidecar.is_file()

    @property
    def announce(self) -> str:
        """The line an executor says when it starts the job."""
        if self.redo:
            return f"redo {self.label}: its saved set is gone, so it is distilled again for every pair"
        if not self.extend:
            return f"run  {self.label}"
        count = len(self.extend)
        pairs = f"{count} unseen pair{'s' if count != 1 else ''}"
        return f"extend {self.label}: evaluating {pairs} from its saved set"

    @property
    def artifacts(self) -> tuple[str, ...]:
        """The method's artifacts; an extension distils nothing, so it needs none of them."""
        return () if self.extend else tuple(self.method_cls.artifacts)

    def previous_error(self) -> str | None:
        """The error line a failed earlier attempt left, if any."""
        try:
            return self.error_path.read_text().strip() or None
        except OSError:
            return None


@dataclass
class CellOutcome:
    job: CellJob
    status: str  # DONE | FINISHED | FAILED | BUSY
    error: str | None = None
    stages: dict[str, float] = field(default_factory=dict)


class DatasetCache:
    """Datasets loaded once per process (a worker serves many cells of one dataset)."""

    def __init__(self, data_root: Path | None, progress: bool) -> None:
        self.data_root, self.progress = data_root, progress
        self._loaded: dict[tuple[str, str], PairDataset] = {}

    def get(self, protocol: Protocol) -> PairDataset:
        from .data import load_dataset

        key = (protocol.data.dataset, protocol.hash)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(
                protocol.data.dataset, protocol, self.data_root, progress=self.progress
            )
        return self._loaded[key]


def error_line(exc: BaseException) -> str:
    """`Type: first line of the message`: what the error file and the summary say."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


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
        for target in (job.path, job.error_path, job.set_file, job.set_sidecar):
            remove_stale_temps(target)
        log = CellLog(job.log_path)
        clock = StageClock(on_stage=on_stage, on_done=lambda name, s: log(f"  {name}: {s:.1f} s"))
        start = job.announce if job.extend or job.redo else f"start {job.label}"
        log(f"{start} (protocol {job.protocol.name}, device {config.device})")
        try:
            result = _run(job, config, datasets, clock, progress)
            from .cache import atomic_write_json

            atomic_write_json(job.path, result)
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
    from .runner import extension_job

    return bool(job.extend or job.redo) and extension_job(job, config) is not None


def _run(
    job: CellJob, config: RunConfig, datasets: DatasetCache, clock: StageClock, progress: bool
) -> dict[str, Any]:
    from .api import DistillContext
    from .runner import extend_cell, run_cell

    with clock.stage("data"):
        dataset = datasets.get(job.protocol)
    cell = job.cell
    if job.extend and job.path.exists():
        ctx = DistillContext(job.protocol, dataset, seed=cell.seed, device=config.device, progress=progress)
        return extend_cell(job, config, ctx, clock)
    overrides = {**config.overrides.get(cell.method, {}), **job.overrides}
    method = job.method_cls.for_protocol(job.protocol, overrides, cell.budget)
    ctx = DistillContext(job.protocol, dataset, seed=cell.seed, device=config.device, progress=progress)
    return run_cell(method, cell, job.protocol, config, ctx, job.path, job.ablation, clock)
