"""Where the cells of a grid run: in this process (`local`) or as Ray tasks (`ray`).

Both run every cell through `cells.execute_cell` (its lock, its result file, failure isolation), so a
grid gives the same result files either way; extensions of finished cells (`--archs all`) are jobs like
cells there. The Ray executor also makes every shared artifact a task
of its own (the data and text features of a dataset, each expert, the full-data reference), which the
cells that need it wait for; artifacts come from the content-addressed cache, which must then be on a
filesystem every node sees (`MDD_BENCH_HOME`), and its file locks make a second builder wait and reuse.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from mdd_bench.cluster import connect_ray
from mdd_bench.errors import MddError
from mdd_bench.locks import try_cell_lock
from mdd_bench.run.config import EXECUTORS
from mdd_bench.run.execute import execute_cell, record_failure
from mdd_bench.run.jobs import BUSY, DONE, DRAINED, FAILED, CellJob, CellOutcome, DatasetCache, error_line
from mdd_bench.run.progress import GridBar, StageClock

if TYPE_CHECKING:
    from mdd_bench.protocol import Protocol
    from mdd_bench.run.config import RunConfig


# Environment the Ray workers need to find the same caches and work offline like the driver.


@dataclass
class ExecReport:
    outcomes: list[CellOutcome] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def make_executor(config: RunConfig) -> LocalExecutor | RayExecutor:
    if config.executor == "local":
        return LocalExecutor()
    if config.executor == "ray":
        return RayExecutor(config.address)
    raise MddError(f"Unknown executor '{config.executor}'. Use: {', '.join(EXECUTORS)}.")


@contextmanager
def torch_threads(count: float | None) -> Iterator[None]:
    """Run with torch using `count` threads (its CPU request); unchanged when None."""
    import torch

    if not count:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _say(log: Callable[[str], None], enabled: bool) -> Callable[[str], None]:
    """Log lines printed above the progress bars instead of through them."""

    def say(line: str) -> None:
        if enabled:
            with tqdm.external_write_mode():
                log(line)
        else:
            log(line)

    return say


def _report_outcome(outcome: CellOutcome, say: Callable[[str], None]) -> None:
    job = outcome.job
    if outcome.status == FAILED:
        say(f"FAILED {job.label}: {outcome.error} (traceback in {job.log_path})")
    elif outcome.status == BUSY:
        say(f"busy {job.label}: another run holds its lock, left to it")


def upper_bound(proto: Protocol, config: RunConfig, datasets: DatasetCache, progress: bool) -> None:
    """Train the full-data upper bound of `proto`'s dataset to `config.full_data_repetitions`."""
    from mdd_bench.artifacts.references import full_data_reference
    from mdd_bench.workspace import Workspace

    workspace = Workspace(proto, datasets.get(proto), config.device, progress)
    full_data_reference(workspace, progress, repetitions=config.full_data_repetitions)


def _drained(jobs: list[CellJob]) -> list[CellOutcome]:
    """The cells the drain file kept from starting; the command's summary names them, once."""
    return [CellOutcome(job, DRAINED) for job in jobs]


class LocalExecutor:
    """Cells one after another in this process (today's behaviour); artifacts are built on first need."""

    parallel = False

    def run(
        self,
        jobs: list[CellJob],
        upper: list[Protocol],
        config: RunConfig,
        log: Callable[[str], None],
        progress: bool,
    ) -> ExecReport:
        report = ExecReport()
        datasets = DatasetCache(config.data_root, progress)
        bar = GridBar(len(jobs), progress)
        say = _say(log, progress and len(jobs) > 0)
        totals = StageClock()
        try:
            with torch_threads(config.cpus_per_task):
                for index, job in enumerate(jobs):
                    if config.draining():
                        report.outcomes += _drained(jobs[index:])
                        upper = []
                        break
                    say(job.announce)
                    outcome = execute_cell(
                        job, config, datasets, progress, lambda stage, j=job: bar.show(f"{j.short}: {stage}")
                    )
                    _report_outcome(outcome, say)
                    totals.add(outcome.stages)
                    report.outcomes.append(outcome)
                    bar.advance()
                for proto in upper:
                    bar.show(f"{proto.data.dataset}: full-data upper bound")
                    try:
                        with totals.stage("data"):
                            datasets.get(proto)
                        with totals.stage("full-data upper bound"):
                            upper_bound(proto, config, datasets, progress)
                    except Exception as exc:  # the cells' results stand; this is reported at the end
                        report.errors.append(
                            f"the full-data upper bound of {proto.data.dataset} failed ({exc})"
                        )
        finally:
            bar.close()
        report.stages = totals.seconds
        return report


# ------------------------------------------------------------------------------------------------ Ray


def _worker_setup(cpus: float) -> None:
    """In a Ray worker: torch uses exactly the task's CPU request (two torch processes with default
    threads on 2 cores run up to 25x slower per step than one)."""
    import torch

    torch.set_num_threads(max(1, int(cpus)))


_WORKER_DATASETS: dict[tuple[Path | None, bool], DatasetCache] = {}


def _worker_datasets(config: RunConfig) -> DatasetCache:
    key = (config.data_root, False)
    if key not in _WORKER_DATASETS:
        _WORKER_DATASETS[key] = DatasetCache(config.data_root, progress=False)
    return _WORKER_DATASETS[key]


def _worker_workspace(proto: Protocol, config: RunConfig, cpus: float, clock: StageClock):
    """In a Ray worker: threads set to the task's CPUs, the dataset loaded (timed as `data`), and a
    workspace over it (every artifact comes from the shared cache)."""
    from mdd_bench.workspace import Workspace

    _worker_setup(cpus)
    with clock.stage("data"):
        dataset = _worker_datasets(config).get(proto)
    return Workspace(proto, dataset, config.device, progress=False)


def _task_prepare(proto: Protocol, config: RunConfig, cpus: float) -> dict[str, float]:
    """Ray task: the dataset (generated when needed), its text features and the anchors of every
    encoder the grid evaluates with."""
    from mdd_bench.evaluation.evaluator import arch_grid

    clock = StageClock()
    workspace = _worker_workspace(proto, config, cpus, clock)
    with clock.stage("text features"):
        for split in workspace.dataset.splits:
            workspace.text_embeddings(split)
    for image, text in arch_grid(proto, config.archs):
        with clock.stage("anchor"):
            workspace.image_encoder(image)
        with clock.stage("text features"):
            workspace.text_embeddings("test", text)
    return clock.seconds


def _task_expert(
    proto: Protocol, config: RunConfig, cpus: float, expert: int, towers: str, *_deps: Any
) -> dict[str, float]:
    """Ray task: one expert trajectory of the dataset's set (of the given towers)."""
    from mdd_bench.artifacts.experts import ExpertConfig, ensure_expert

    clock = StageClock()
    workspace = _worker_workspace(proto, config, cpus, clock)
    with clock.stage("experts"):
        spec = ExpertConfig.from_protocol(proto, towers=towers)
        ensure_expert(workspace, expert, spec, progress=False)
    return clock.seconds


def _task_reference(
    proto: Protocol, config: RunConfig, cpus: float, repetitions: int, *_deps: Any
) -> dict[str, float]:
    """Ray task: the full-data reference (repetition 0 is the coreset baselines' feature model)."""
    from mdd_bench.artifacts.references import full_data_reference

    clock = StageClock()
    workspace = _worker_workspace(proto, config, cpus, clock)
    with clock.stage("reference model" if repetitions <= 1 else "full-data upper bound"):
        full_data_reference(workspace, False, repetitions=repetitions)
    return clock.seconds


def _task_cell(job: CellJob, config: RunConfig, cpus: float, *_deps: Any) -> CellOutcome:
    """Ray task: one cell, exactly as the local executor runs it."""
    _worker_setup(cpus)
    return execute_cell(job, config, _worker_datasets(config), progress=False)


@dataclass
class _CellFeed:
    """The cells not yet given to Ray, in grid order, and how to give one."""

    queue: list[tuple[CellJob, list[Any]]]
    submit: Callable[..., Any]
    config: RunConfig

    def take(self, count: int) -> list[tuple[CellJob, list[Any]]]:
        taken, self.queue = self.queue[:count], self.queue[count:]
        return taken


def _slots(ray, cpus: float, gpus: float) -> int:
    """How many cells the Ray cluster runs at once: its CPUs (and GPUs, when cells ask for them) over a
    cell's request."""
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // cpus)
    if gpus:
        slots = min(slots, int(resources.get("GPU", 0) // gpus))
    return max(1, slots)


def _ray_failure(exc: BaseException) -> tuple[str, str]:
    """(error line, details) of a Ray task error: the cause's own line when Ray kept it."""

    cause = getattr(exc, "cause", None)
    line = error_line(cause) if isinstance(cause, BaseException) else error_line(exc)
    return line, "".join(traceback.format_exception(exc))


class RayExecutor:
    """Every cell, expert and shared artifact a Ray task with its own CPU/GPU request."""

    parallel = True

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def _init(self, config: RunConfig, progress: bool) -> bool:
        """Connect to (or start) Ray; True when this run started it and must shut it down."""
        return connect_ray(self.address, config.ray_cpus, progress)

    def run(
        self,
        jobs: list[CellJob],
        upper: list[Protocol],
        config: RunConfig,
        log: Callable[[str], None],
        progress: bool,
    ) -> ExecReport:
        report = ExecReport()
        if not jobs and not upper:
            return report
        if config.draining():  # nothing starts, not even Ray or the artifacts
            report.outcomes = _drained(jobs)
            return report
        import ray

        started = self._init(config, progress)
        try:
            return self._run(ray, jobs, upper, config, log, progress, report)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, jobs, upper, config, log, progress, report: ExecReport) -> ExecReport:
        cpus = float(config.cpus_per_task or 1)
        opts = {"num_cpus": cpus, "num_gpus": config.gpus_per_task, "max_retries": 1}
        prepare_task = ray.remote(_task_prepare).options(**opts)
        expert_task = ray.remote(_task_expert).options(**opts)
        reference_task = ray.remote(_task_reference).options(**opts)
        cell_task = ray.remote(_task_cell).options(**opts)
        datasets = dict.fromkeys([j.protocol.data.dataset for j in jobs] + [p.data.dataset for p in upper])
        protos = {j.protocol.data.dataset: j.protocol for j in jobs} | {p.data.dataset: p for p in upper}
        artifacts: dict[tuple[str, str], Any] = {}  # (dataset, artifact) -> ObjectRef(s)
        names: dict[Any, str] = {}  # ObjectRef -> what it builds, for messages
        for name in datasets:
            proto, needs = protos[name], {a for j in jobs if j.cell.dataset == name for a in j.artifacts}
            prep = prepare_task.remote(proto, config, cpus)
            names[prep] = f"data and text features of {name}"
            artifacts[(name, "prepare")] = [prep]
            from mdd_bench.artifacts.experts import EXPERT_ARTIFACTS, ExpertConfig

            for kind, towers in EXPERT_ARTIFACTS.items():
                if kind not in needs:
                    continue
                refs = [
                    expert_task.remote(proto, config, cpus, i, towers, prep)
                    for i in range(ExpertConfig.from_protocol(proto).num_experts)
                ]
                label = "expert" if kind == "experts" else "head expert"
                names.update({r: f"{label} {i} of {name}" for i, r in enumerate(refs)})
                artifacts[(name, kind)] = refs
            reps = (config.full_data_repetitions or 0) if proto in upper else 0
            if "reference_model" in needs or reps:
                ref = reference_task.remote(proto, config, cpus, max(1, reps), prep)
                names[ref] = f"full-data reference of {name}"
                artifacts[(name, "reference_model")] = [ref]
        queue = []
        for job in jobs:
            deps = list(artifacts[(job.cell.dataset, "prepare")])
            for artifact in ("experts", "head_experts", "reference_model"):
                if artifact in job.artifacts:
                    deps += artifacts[(job.cell.dataset, artifact)]
            queue.append((job, deps))

        def submit(job: CellJob, deps: list[Any]) -> Any:
            if job.extend or job.redo:  # cells start silently here; these say what they do, as locally
                log(job.announce)
            return cell_task.remote(job, config, cpus, *deps)

        # With a drain file, cells go to Ray only as its slots free, so none waits queued when the drain
        # starts; without one, all at once (a cluster that grows takes them as it grows).
        window = _slots(ray, cpus, config.gpus_per_task) if config.drain_file is not None else len(queue)
        feed = _CellFeed(queue, submit, config)
        cells = {feed.submit(*item): item for item in feed.take(window)}
        return self._collect(ray, cells, feed, artifacts, names, log, progress, report)

    def _collect(self, ray, cells, feed: _CellFeed, artifacts, names, log, progress, report) -> ExecReport:
        bar = GridBar(len(cells) + len(feed.queue), progress)
        say = _say(log, progress and len(cells) + len(feed.queue) > 0)
        totals = StageClock()
        artifact_refs = [r for refs in artifacts.values() for r in refs]
        failed_artifacts: dict[Any, str] = {}
        try:
            for ref in artifact_refs:  # stage seconds of the artifact tasks (and their failures)
                try:
                    totals.add(ray.get(ref))
                except Exception as exc:  # a failed artifact fails the cells that need it, below
                    line, _ = _ray_failure(exc)
                    failed_artifacts[ref] = line
                    say(f"FAILED {names[ref]}: {line}")
            pending = list(cells)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                job, deps = cells[done[0]]
                outcome = self._outcome(ray, done[0], job, deps, failed_artifacts, names)
                _report_outcome(outcome, say)
                if outcome.status == DONE:
                    say(f"done {job.label}")
                totals.add(outcome.stages)
                report.outcomes.append(outcome)
                bar.advance()
                if feed.queue and feed.config.draining():
                    report.outcomes += _drained([job for job, _ in feed.take(len(feed.queue))])
                for item in feed.take(1):
                    ref = feed.submit(*item)
                    cells[ref] = item
                    pending.append(ref)
                bar.show(f"{len(pending) + len(feed.queue)} cell task(s) left")
        finally:
            bar.close()
        report.errors += [f"the {names[r]} failed ({line})" for r, line in failed_artifacts.items()]
        report.stages = totals.seconds
        return report

    @staticmethod
    def _outcome(ray, ref, job: CellJob, deps, failed_artifacts, names) -> CellOutcome:
        try:
            return ray.get(ref)
        except Exception as exc:  # the task never ran its cell: a needed artifact failed or the worker died
            broken = [d for d in deps if d in failed_artifacts]
            line, details = _ray_failure(exc)
            if broken:
                line = f"ArtifactFailed: the {names[broken[0]]} failed ({failed_artifacts[broken[0]]})"
            with try_cell_lock(job.path) as held:
                if held and not job.path.exists():
                    record_failure(job, line, details)
            return CellOutcome(job, FAILED, line)
