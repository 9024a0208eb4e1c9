"""`mdd-bench run`: the grid of cells (method x dataset x budget x seed), each distilled, evaluated and
written as one result JSON. A cell whose result exists is skipped, so an interrupted run resumes;
with `--archs all`, a finished cell evaluated on fewer encoder pairs (an `--archs source` run) is
extended instead: only its missing pairs are evaluated, from the set saved beside it (`extend_cell`).

Improvement over random (`scores.py`) needs random pairs under the same protocol, budgets and seeds:
unless `random_baseline` is off, a grid with other methods gets `random` cells too (finished ones are
reused like any other cell), and a cell whose native track uses extras records random pairs trained
with the same kind of extras (`baselines.py`) in its result.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from . import __version__
from .api import DistillContext, Method
from .baselines import native_random_baseline
from .cache import atomic_write_json
from .cells import BUSY, FAILED, CellJob, CellOutcome
from .data import load_dataset
from .distilled import DistilledSet
from .errors import MddError, did_you_mean
from .evaluate import TRACKS, arch_grid, check_budget, repetition_seeds
from .progress import StageClock
from .protocol import Protocol
from .record import DistillCost, ResultRecord
from .registry import get_method, method_distribution
from .results import FULL_DATA, RANDOM, read_result


@dataclass(frozen=True)
class Cell:
    method: str
    dataset: str
    budget: int
    seed: int

    def path(self, out: Path, protocol: Protocol) -> Path:
        return Path(out) / protocol.name / self.dataset / self.method / f"b{self.budget}-s{self.seed}.json"


@dataclass
class RunConfig:
    methods: list[str]
    datasets: list[str]
    budgets: list[int]
    seeds: list[int] = field(default_factory=lambda: [0])  # deterministic methods run the first only
    archs: str = "source"
    tracks: list[str] = field(default_factory=lambda: ["hard", "native"])
    out: Path = Path("runs")
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    data_root: Path | None = None
    repetitions: int | None = None
    device: str = "cpu"
    executor: str = "local"  # local (in-process) | ray (one task per cell and per shared artifact)
    address: str | None = None  # Ray cluster to join; None starts a local Ray
    cpus_per_task: float | None = None  # torch threads per cell (Ray: also its CPU request, default 1)
    gpus_per_task: float = 0.0  # Ray GPU request per cell
    ray_cpus: int | None = None  # CPUs of the local Ray this run starts (default: every core)
    # The full-data upper bound's repetitions. None: only what the methods need (repetition 0 is the
    # coreset baselines' feature model); N: train it to N repetitions for every dataset of the grid.
    full_data_repetitions: int | None = None
    # Improvement over random: add `random` cells to a grid of other methods, and give every native
    # track with extras a random baseline trained with the same kind of extras.
    random_baseline: bool = True
    # `--archs all` on a finished cell whose saved set is gone (sets are not committed): re-run it whole
    # (distil and evaluate every pair) instead of failing; its result is replaced only once the new one
    # is written, so a failed re-run keeps it.
    redistill: bool = False


class PeakMemory:
    """Peak resident memory (MB) while the block runs, sampled every 20 ms; CUDA peak when on a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0
        self.cuda_peak_mb: float | None = None
        self._stop = threading.Event()

    @staticmethod
    def _rss_mb() -> float:
        return psutil.Process().memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())
        if self.device.type == "cuda":
            self.cuda_peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    import timm
    import transformers

    return {
        "mdd_bench": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
    }


ARTIFACT_STAGES = {
    "text_features": "text features",
    "anchor": "anchor",
    "reference_model": "reference model",
    "experts": "experts",
    "head_experts": "experts",
}


def prepare_artifacts(
    ctx: DistillContext, artifacts: tuple[str, ...], archs: str, clock: StageClock | None = None
) -> None:
    """Build (or load) what the cell needs before its timed distillation: the method's artifacts, and
    what its evaluation needs anyway (the text features and the anchor of every encoder it trains)."""
    clock = clock or StageClock()
    for artifact in dict.fromkeys(("text_features", "anchor", *artifacts)):
        with clock.stage(ARTIFACT_STAGES.get(artifact, artifact)):
            ctx.prepare((artifact,))
    for image, text in arch_grid(ctx.protocol, archs):
        with clock.stage("anchor"):
            ctx.workspace.image_encoder(image)
        with clock.stage("text features"):
            ctx.text_embeddings("test", text)


def run_cell(
    method: Method,
    cell: Cell,
    protocol: Protocol,
    config: RunConfig,
    ctx: DistillContext,
    result_path: Path | None = None,
    ablation: dict[str, Any] | None = None,
    clock: StageClock | None = None,
) -> dict[str, Any]:
    """Prepare artifacts (untimed), distil (timed, peak memory), save the set, evaluate every track.

    `clock` collects the seconds of each stage (artifacts, distill, evaluate) for the run's breakdown.
    """
    clock = clock or StageClock()
    before = dict(clock.seconds)  # the clock may be the whole grid's: this cell's cost is the difference
    check_budget(ctx.dataset, cell.budget)
    prepare_artifacts(ctx, method.artifacts, config.archs, clock)
    with clock.stage("distill"):
        with PeakMemory(ctx.device) as memory:
            start = time.perf_counter()
            distilled = method.distill(ctx, cell.budget)
            distill_s = time.perf_counter() - start
        if distilled.size != cell.budget:
            raise MddError(
                f"Method '{cell.method}' returned {distilled.size} pairs for budget {cell.budget}."
            )
        distilled.provenance.update(
            method=cell.method, budget=cell.budget, seed=cell.seed, hparams=method.describe()["hparams"]
        )
        result_path = result_path or cell.path(config.out, protocol)
        set_path = distilled.save(result_path.parent / "sets" / result_path.stem)
    stats = ctx.stats
    evaluation: dict[str, Any] = {}
    for track in config.tracks:
        reuse = track == "native" and "hard" in evaluation and not _has_native_extras(distilled)
        if reuse:
            # Nothing native to use: the native recipe is the hard one, so the numbers are too.
            evaluation[track] = dict(evaluation["hard"], track="native", same_as="hard")
            continue
        with clock.stage("evaluate"):
            result = ctx.evaluator.evaluate(
                distilled, config.archs, track, config.repetitions, seed=cell.seed, split="test"
            )
        evaluation[track] = result.to_dict()
        if track == "native" and config.random_baseline:
            with clock.stage("random baseline"):
                baseline = native_random_baseline(ctx, distilled, config.archs, config.repetitions, cell.seed)
            if baseline is not None:
                evaluation[track]["random_baseline"] = baseline.to_dict()
    iterations = stats.iterations
    return ResultRecord(
        method=cell.method,
        family=method.family,
        dataset=cell.dataset,
        protocol=protocol.name,
        protocol_hash=protocol.hash,
        budget=cell.budget,
        seed=cell.seed,
        evaluation=evaluation,
        config={"archs": config.archs, "tracks": config.tracks, "protocol": protocol.to_dict()},
        versions=versions(),
        distill=DistillCost(
            seconds=distill_s,
            iterations=iterations,
            time_per_iter_s=stats.time_per_iter_s or (distill_s / iterations if iterations else None),
            iters_to_best=stats.iters_to_best,
            peak_mem_mb=memory.peak_mb,
            cuda_peak_mem_mb=memory.cuda_peak_mb,
            extra=stats.extra,
        ),
        hparams=method.describe()["hparams"],
        deterministic=method.deterministic,
        method_dist=method_distribution(cell.method),
        device=str(ctx.device),
        storage_bytes=distilled.storage_bytes,
        distilled_set=str(set_path),
        ablation=ablation,
        stages_s=stage_delta(clock, before),
    ).to_dict()


def stage_delta(clock: StageClock, before: dict[str, float], into: dict[str, float] | None = None) -> dict:
    """Seconds per stage spent since `before` (a snapshot of the clock), added to `into`'s."""
    out = dict(into or {})
    for name, total in clock.seconds.items():
        spent = total - before.get(name, 0.0)
        if spent > 0:
            out[name] = round(out.get(name, 0.0) + spent, 2)
    return out


def _has_native_extras(distilled) -> bool:
    return bool(distilled.extras) or distilled.provenance.get("eval_loss", "infonce") != "infonce"


Pair = tuple[str, str]


def missing_pairs(result: dict[str, Any], protocol: Protocol, tracks: list[str]) -> dict[str, list[Pair]]:
    """Per track to evaluate, the pairs of the protocol's full grid that a finished result lacks.

    Only tracks the result has are considered (a track it never ran is not added here). A track
    recorded as `same_as` another is a copy: its pairs come from evaluating the track it copies.
    """
    grid = arch_grid(protocol, "all")
    evaluation = result.get("evaluation", {})
    out: dict[str, list[Pair]] = {}
    for track in tracks:
        entry = evaluation.get(track)
        if not isinstance(entry, dict):
            continue
        own = entry.get("same_as") or track
        if not isinstance(evaluation.get(own), dict):
            continue
        have = {(a.get("image_encoder"), a.get("text_encoder")) for a in evaluation[own].get("archs", [])}
        missing = [pair for pair in grid if pair not in have]
        if missing:
            out.setdefault(own, missing)
    return out


def extension_job(job: CellJob, config: RunConfig) -> CellJob | None:
    """`job` as an extension of its finished result when `--archs all` finds pairs it lacks, else None;
    with `redistill` and no saved set to extend from, `job` re-run whole instead.

    An unreadable result is not extended here; reading the grid's results names it afterwards.
    """
    if config.archs != "all" or not job.path.exists():
        return None
    try:
        result = read_result(job.path)
    except MddError:
        return None
    missing = missing_pairs(result, job.protocol, config.tracks)
    pairs = tuple(dict.fromkeys(pair for track in missing.values() for pair in track))
    if not pairs:
        return None
    if config.redistill and not job.has_saved_set:
        return dataclasses.replace(job, redo=True)
    return dataclasses.replace(job, extend=pairs)


def saved_set(job: CellJob) -> DistilledSet:
    """The distilled set the runner saved beside a finished result (`sets/<stem>`), checked to be
    that cell's; a missing one (sets are not committed) is a one-line error saying what to do."""
    for path in (job.set_file, job.set_sidecar):
        if not path.is_file():
            raise MddError(
                f"The saved set {path} of finished cell {job.short} is missing, so its other encoder pairs "
                f"cannot be evaluated: pass --redistill-missing-sets to re-run the cell, or run with --archs "
                "source."
            )
    distilled = DistilledSet.load(job.set_file)
    cell, made = job.cell, distilled.provenance
    wanted = {"method": cell.method, "budget": cell.budget, "seed": cell.seed}
    if distilled.size != cell.budget or any(made.get(k, v) != v for k, v in wanted.items()):
        raise MddError(
            f"The saved set {job.set_file} is not the one of {job.short} (its provenance says "
            f"{ {k: made.get(k) for k in wanted} }): delete {job.path} to re-run the cell."
        )
    return distilled


def _jsonable(value: Any) -> Any:
    """`value` as it reads back from a result file (tuples become lists), for comparisons with one."""
    return json.loads(json.dumps(value))


def extend_cell(
    job: CellJob, config: RunConfig, ctx: DistillContext, clock: StageClock | None = None
) -> dict[str, Any]:
    """A finished cell's result with the pairs of the full grid it lacks added, evaluated from its saved
    set exactly as a fresh `--archs all` cell would evaluate them; nothing else is re-evaluated.

    Each track keeps the repetitions of its recorded source pair (and so its seeds), its recipe logic is
    the evaluator's as for a fresh cell (checked against the recorded one), and a track recorded as
    `same_as` another is copied again from it. `config.archs` becomes `all`. The native track's
    `random_baseline` stays on the source pair only: improvement over random is read there alone, and
    extending it would mean training the random pairs again on every pair.
    """
    clock = clock or StageClock()
    result = read_result(job.path)
    missing = missing_pairs(result, job.protocol, config.tracks)
    if not missing:
        return result
    if result.get("protocol_hash") != job.protocol.hash:
        raise MddError(
            f"{job.path} was evaluated under another version of protocol '{job.protocol.name}' (hash "
            f"{result.get('protocol_hash')}, now {job.protocol.hash}), so new pairs would not compare with "
            "its own: delete it to re-run the cell, or run with --archs source."
        )
    distilled = saved_set(job)
    before = dict(clock.seconds)
    prepare_artifacts(ctx, (), "all", clock)
    evaluation = result["evaluation"]
    for track, pairs in missing.items():
        entry = evaluation[track]
        source = next((a for a in entry.get("archs", []) if a.get("source")), None)
        if source is None:
            raise MddError(f"{job.path} has no source-pair entry in its {track} track: delete it to re-run.")
        reps = len(source["seeds"])
        if repetition_seeds(job.cell.seed, reps, "test") != source["seeds"]:
            raise MddError(
                f"{job.path}'s {track} seeds {source['seeds']} are not the ones this version gives seed "
                f"{job.cell.seed}: delete it to re-run the cell, or run with --archs source."
            )
        with clock.stage("evaluate"):
            new = ctx.evaluator.evaluate(
                distilled, "all", track, reps, seed=job.cell.seed, split="test", pairs=pairs
            )
        recorded = (entry.get("extras_used"), entry.get("recipe"))
        if _jsonable((new.extras_used, new.recipe)) != _jsonable(recorded):
            raise MddError(
                f"{job.path}'s {track} track was evaluated with another recipe than this version gives its "
                "set: delete it to re-run the cell, or run with --archs source."
            )
        entry["archs"] = [*entry["archs"], *(a.to_dict() for a in new.archs)]
    for name, entry in list(evaluation.items()):
        if isinstance(entry, dict) and entry.get("same_as") in evaluation:
            # As in a fresh cell: nothing native to use, so the native numbers are the hard ones.
            evaluation[name] = dict(evaluation[entry["same_as"]], track=name, same_as=entry["same_as"])
    result["config"] = {**result.get("config", {}), "archs": "all"}
    result["stages_s"] = stage_delta(clock, before, result.get("stages_s"))
    return result


def check_tracks(tracks: list[str]) -> None:
    for track in tracks:
        if track not in TRACKS:
            raise MddError(f"Unknown track '{track}'. Use: {', '.join(TRACKS)}.")


def plan_grid(protocol: Protocol, config: RunConfig, log=print) -> list[CellJob]:
    """Every cell of the grid in run order (dataset, budget, seed, method), finished or not.

    Each method's hyper-parameters are resolved for every budget here, so a bad `--set` is a one-line
    error before any work starts rather than a failed cell.
    """
    check_tracks(config.tracks)
    classes = {name: get_method(name) for name in grid_methods(config, log)}
    for name, cls in classes.items():
        if cls.deterministic and len(config.seeds) > 1:
            log(f"note {name} is deterministic: running seed {config.seeds[0]} only")
    jobs: list[CellJob] = []
    for dataset_name in config.datasets:
        proto = protocol.with_dataset(dataset_name)
        for budget in config.budgets:
            for name, cls in classes.items():
                cls.for_protocol(proto, config.overrides.get(name), budget)
            for seed in config.seeds:
                for name, cls in classes.items():
                    if cls.deterministic and seed != config.seeds[0]:
                        continue
                    cell = Cell(name, dataset_name, budget, seed)
                    jobs.append(CellJob(cell, proto, cls, cell.path(config.out, proto)))
    return jobs


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
    from .executors import make_executor

    start = time.perf_counter()
    config = for_workers(config)
    jobs = plan_grid(protocol, config, log)
    pending = []
    for job in jobs:
        if not job.path.exists():
            pending.append(job)
        elif (extension := extension_job(job, config)) is not None:
            pending.append(extension)
        else:
            log(f"skip {job.label}: {job.path} exists")
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


@dataclass(frozen=True)
class AblationVariant:
    group: str
    order: int
    variant: str
    overrides: dict[str, Any]

    def path(self, cell: Cell, out: Path, protocol: Protocol) -> Path:
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.variant).strip("_")
        folder = Path(out) / protocol.name / cell.dataset / cell.method / f"ablation-{self.group}"
        return folder / slug / f"b{cell.budget}-s{cell.seed}.json"


def ablation_variants(cls: type[Method], groups: list[str] | None = None) -> list[AblationVariant]:
    """The method's declared ablation groups (all, or the named ones) as variants in display order."""
    declared = cls.ablations
    if not declared:
        raise MddError(f"Method '{cls.name}' declares no ablation groups.")
    for group in groups or []:
        if group not in declared:
            raise MddError(
                f"Method '{cls.name}' has no ablation group '{group}'.{did_you_mean(group, declared)}"
            )
    return [
        AblationVariant(group, k, variant, dict(overrides))
        for group, variants in declared.items()
        if not groups or group in groups
        for k, (variant, overrides) in enumerate(variants.items())
    ]


@dataclass
class AblationPlan:
    """The cells an ablation must run, and the variants that reuse another variant's identical run."""

    jobs: list[CellJob]  # every variant to run, each under its own result path
    copies: list[tuple[Path, Path, dict[str, Any]]]  # (variant path, identical run's path, ablation key)
    paths: list[Path]  # every variant's result path, in display order


def plan_ablations(
    protocol: Protocol, config: RunConfig, groups: list[str] | None = None, log=print
) -> AblationPlan:
    """Every declared ablation variant of one method as a cell job with an `ablation` key.

    Variants that resolve to the same hyper-parameters (the "as configured" one of every group) are
    distilled and evaluated once, then written under each group; an ordinary `mdd-bench run` result of
    the same cell with the same hyper-parameters counts as that run.
    """
    if len(config.methods) != 1:
        raise MddError("Ablations run one method at a time.")
    name = config.methods[0]
    cls = get_method(name)
    variants = ablation_variants(cls, groups)
    plan = AblationPlan([], [], [])
    for dataset_name in config.datasets:
        proto = protocol.with_dataset(dataset_name)
        for budget in config.budgets:
            for seed in config.seeds[:1] if cls.deterministic else config.seeds:
                cell = Cell(name, dataset_name, budget, seed)
                source: dict[str, Path] = {}  # hyper-parameters -> a result (or planned result) with them
                main = cell.path(config.out, proto)  # the ordinary run of this cell, when present
                if main.exists():
                    source[json.dumps(read_result(main).get("hparams", {}), sort_keys=True)] = main
                for v in variants:
                    path = v.path(cell, config.out, proto)
                    plan.paths.append(path)
                    overrides = {k: str(x) for k, x in v.overrides.items()}
                    method = cls.for_protocol(proto, {**config.overrides.get(name, {}), **overrides}, budget)
                    same = json.dumps(method.describe()["hparams"], sort_keys=True)
                    ablation = {"group": v.group, "variant": v.variant, "order": v.order}
                    if path.exists():
                        log(f"skip {name} {v.group}/{v.variant} budget={budget} seed={seed}: {path} exists")
                    elif same in source:
                        plan.copies.append((path, source[same], ablation))
                    else:
                        plan.jobs.append(CellJob(cell, proto, cls, path, overrides, ablation))
                    source.setdefault(same, path)
    return plan


def run_ablations(
    protocol: Protocol, config: RunConfig, groups: list[str] | None = None, log=print, progress: bool = True
) -> GridRun:
    """Run the planned variants with the configured executor (each under its lock, failures recorded
    per cell as in `mdd-bench run`), then write the variants that reuse an identical run."""
    from .executors import make_executor

    start = time.perf_counter()
    config = for_workers(config)
    plan = plan_ablations(protocol, config, groups, log)  # its jobs are the variants not on disk
    report = make_executor(config).run(plan.jobs, [], config, log, progress)
    for path, source, ablation in plan.copies:
        if not path.exists() and source.exists():
            log(f"same {config.methods[0]} {ablation['group']}/{ablation['variant']}: reusing {source}")
            atomic_write_json(path, {**read_result(source), "ablation": ablation})
    results = [read_result(path) for path in plan.paths if path.exists()]
    return GridRun(
        plan.jobs, results, report.outcomes, report.errors, report.stages, time.perf_counter() - start
    )


def publish_full_data(protocol: Protocol, dataset, config: RunConfig, log=print) -> Path | None:
    """Write the cached full-data upper bound (if one was trained) as a result file for the report.

    It is not trained here: methods that need the reference model pay for its first repetition, and
    `run --full-data-repetitions N` for more. The file lists every repetition finished (the report says
    how many) and is rewritten when more have finished since; never by a cache holding fewer
    repetitions than the published file (a fresh machine's one-repetition reference must not replace
    committed results).
    """
    from .references import reference_folder

    source = reference_folder(protocol, dataset) / "result.json"
    if not source.exists():
        return None
    ref = json.loads(source.read_text())
    path = Cell(FULL_DATA, dataset.name, ref["pairs"], 0).path(config.out, protocol)
    if path.exists():
        try:
            published = json.loads(path.read_text())["evaluation"]["hard"]["archs"][0]["runs"]
        except (OSError, ValueError, KeyError, IndexError):
            published = None
        if published == ref["runs"]:
            return path
        if published and len(published) >= len(ref["runs"]):
            log(
                f"full-data upper bound: kept {path} ({len(published)} repetitions); this cache has "
                f"{len(ref['runs'])} (--full-data-repetitions {len(published) + 1} trains more)"
            )
            return path
    arch = {k: ref[k] for k in ("image_encoder", "text_encoder", "seeds", "runs", "source", "mean", "std")}
    hard = {"track": "hard", "split": "test", "extras_used": [], "recipe": ref["recipe"], "archs": [arch]}
    result = ResultRecord(
        method=FULL_DATA,
        family="reference",
        dataset=dataset.name,
        protocol=protocol.name,
        protocol_hash=protocol.hash,
        budget=ref["pairs"],
        seed=0,
        evaluation={"hard": hard, "native": dict(hard, track="native", same_as="hard")},
        config={"archs": "source", "tracks": ["hard", "native"], "protocol": protocol.to_dict()},
        versions=versions(),
    ).to_dict()
    atomic_write_json(path, result)
    reps = len(ref["runs"])
    log(f"full-data upper bound ({reps} repetition{'s' if reps != 1 else ''}) written to {path}")
    return path


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


def parse_overrides(items: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """`--set mdm.lr_img=500` -> {"mdm": {"lr_img": "500"}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, param = key.partition(".")
        if not sep or not dot or not method or not param:
            raise MddError(
                f"--set '{item}' must look like METHOD.PARAM=VALUE, e.g. --set herding.features=image."
            )
        out.setdefault(method, {})[param] = value
    return out
