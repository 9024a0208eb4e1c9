"""`mdd-bench run --dry-run`: what a run would do, read from disk alone; nothing is built or trained.

Before a grid of hours a user wants to see which cells are done, which will run (and which failed
before), which finished ones `--archs all` extends with the encoder pairs they lack, which shared
artifacts are cached and which will be built first, and how much training that is: distillations,
evaluation trainings and their optimiser steps, artifact trainings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from mdd_bench.data.shapes import CAPTIONS_PER_IMAGE
from mdd_bench.errors import MddError
from mdd_bench.evaluation.evaluator import arch_grid
from mdd_bench.evaluation.training import Recipe
from mdd_bench.locks import is_locked
from mdd_bench.protocol import Protocol
from mdd_bench.record import read_result
from mdd_bench.run.cell import extension_job, missing_pairs
from mdd_bench.run.config import RunConfig
from mdd_bench.run.grid import plan_grid
from mdd_bench.run.jobs import CellJob
from mdd_bench.run.preflight import preflight

CAPTIONS_PER_SHAPES_IMAGE = CAPTIONS_PER_IMAGE


@dataclass
class Artifact:
    name: str
    state: str  # "cached" | "to build" | "unknown" | a short note
    steps: int = 0  # optimiser steps of the training it needs (0: none, or not a training)


def cell_status(job: CellJob, extension: CellJob | None = None) -> str:
    """done, running elsewhere, to run or (`extension`: the job extending a finished cell) to extend."""
    if job.path.exists() and extension is None:
        return "done"
    if is_locked(job.path):
        return "running elsewhere"
    state = "to run"
    if extension is not None and extension.redo:
        state = "to re-run whole: its saved set is missing (--redistill-missing-sets)"
    elif extension is not None:
        missing = "" if job.has_saved_set else ", saved set missing"  # it would fail: sets are not committed
        state = f"to extend: {len(extension.extend)} encoder pair(s){missing}"
    error = job.previous_error()
    return f"{state} (failed before: {error})" if error else state


def extension_work(job: CellJob, config: RunConfig) -> tuple[int, int]:
    """(evaluation trainings, optimiser steps) of extending a finished cell: its missing pairs only, at
    the repetitions its result records; no distillation, no random baseline (it stays source-only)."""
    result = read_result(job.path)
    proto, trainings, steps = job.protocol, 0, 0
    for track, pairs in missing_pairs(result, proto, config.tracks).items():
        source = next((a for a in result["evaluation"][track]["archs"] if a.get("source")), {})
        reps = len(source.get("seeds", [])) or proto.eval.repetitions
        trainings += len(pairs) * reps
        steps += reps * sum(
            Recipe.from_eval(proto, image, text).epochs * math.ceil(job.cell.budget / proto.eval.batch_size)
            for image, text in pairs
        )
    return trainings, steps


def _dataset(proto: Protocol, config: RunConfig):
    """The dataset when it is on disk (read without decoding any image), else None."""
    from mdd_bench.data import dataset_root, load_dataset

    name = proto.data.dataset
    if name == "shapes":
        from mdd_bench.data.shapes import ShapesConfig, is_prepared, shapes_root

        shapes = ShapesConfig.from_sizes(proto.data.shapes, proto.data.resolution)
        if not is_prepared(shapes_root(dataset_root(name, config.data_root), shapes), shapes):
            return None
    try:
        return load_dataset(name, proto, config.data_root, decode=False, progress=False)
    except MddError:
        return None


def _train_pairs(proto: Protocol, dataset) -> int | None:
    if dataset is not None:
        return dataset.train.num_captions
    if proto.data.dataset == "shapes":
        return proto.data.shapes.train * CAPTIONS_PER_SHAPES_IMAGE
    return None


def artifacts_of(proto: Protocol, config: RunConfig, jobs: list[CellJob]) -> list[Artifact]:
    """The shared artifacts the cells `jobs` (all of one dataset) need, cached or to build."""
    from mdd_bench.pretrained.anchors import anchor_path
    from mdd_bench.pretrained.text_features import missing_splits
    from mdd_bench.pretrained.text_student import text_encoder_weights

    dataset = _dataset(proto, config)
    name = proto.data.dataset
    out = [Artifact(f"data {name}", "cached" if dataset is not None else "to build")]
    pairs = _train_pairs(proto, dataset)
    grid = arch_grid(proto, config.archs)
    for text in dict.fromkeys([proto.text.source, *(t for _, t in grid)]):
        random = proto.text.weights == "random"  # a random build trains nothing
        weights = None if random else text_encoder_weights(text, build=False)
        if weights is not None:
            built = (weights / "config.json").exists()
            out.append(Artifact(f"text encoder {text}", "cached" if built else "to build"))
        splits = () if text == proto.text.source else ("test",)
        missing = missing_splits(dataset, proto.text, text, splits) if dataset is not None else ["all"]
        if missing is None:
            state = "unknown (the encoder was never loaded here)"
        else:
            state = f"to build: {', '.join(missing)} split(s)" if missing else "cached"
        out.append(Artifact(f"text features {text} ({name})", state))
    if proto.image.pretrained == "anchor":
        for image in dict.fromkeys(i for i, _ in grid):
            out.append(
                Artifact(f"anchor {image}", "cached" if anchor_path(image, proto).exists() else "to build")
            )
    needs = {a for j in jobs for a in j.artifacts}
    if "reference_model" in needs or config.full_data_repetitions:
        out.append(_reference(proto, config, dataset, pairs))
    from mdd_bench.artifacts.experts import EXPERT_ARTIFACTS

    for kind, towers in EXPERT_ARTIFACTS.items():
        if kind in needs:
            out.append(_experts(proto, config, dataset, pairs, towers))
    return out


def _steps(pairs: int | None, batch: int, epochs: int) -> int:
    return epochs * math.ceil(pairs / batch) if pairs else 0


def _reference(proto: Protocol, config: RunConfig, dataset, pairs: int | None) -> Artifact:
    from mdd_bench.artifacts.references import reference_folder

    wanted = max(1, config.full_data_repetitions or 0)
    have = 0
    if dataset is not None:
        runs = reference_folder(proto, dataset) / "runs"
        while (runs / f"rep{have}.json").exists():
            have += 1
    label = f"full-data reference ({proto.data.dataset}), {wanted} repetition{'s' if wanted != 1 else ''}"
    missing = max(0, wanted - have)
    steps = missing * _steps(pairs, proto.eval.batch_size, proto.eval.full_data_epochs)
    return Artifact(label, "cached" if not missing else f"to build: {missing} of {wanted}", steps)


def _experts(proto: Protocol, config: RunConfig, dataset, pairs: int | None, towers: str) -> Artifact:
    from mdd_bench.artifacts.experts import MANIFEST, ExpertConfig, experts_folder
    from mdd_bench.models.dual import BACKBONE
    from mdd_bench.workspace import Workspace

    spec = ExpertConfig.from_protocol(proto, towers=towers)
    have = 0
    if dataset is not None:
        manifest = experts_folder(Workspace(proto, dataset, "cpu"), spec) / MANIFEST
        if manifest.exists():
            entries = json.loads(manifest.read_text())["experts"]
            have = sum(1 for i in range(spec.num_experts) if entries.get(str(i), {}).get("complete"))
    missing = spec.num_experts - have
    steps = missing * _steps(pairs, spec.batch_size, spec.epochs)
    kind = "experts" if towers == BACKBONE else "head experts (frozen image encoder)"
    label = f"{kind} ({proto.data.dataset}), {spec.num_experts} x {spec.epochs} epochs"
    return Artifact(label, "cached" if not missing else f"to build: {missing} of {spec.num_experts}", steps)


def evaluation_work(job: CellJob, config: RunConfig) -> tuple[int, int, int]:
    """(trainings certain, trainings at most, optimiser steps at most) of one cell's evaluation.

    The native track retrains only a set that carries extras (a learned similarity, learning rates);
    coreset sets never do, so for them it reuses the hard numbers. A set with extras also trains its
    native random baseline (`baselines.py`) unless the random baseline is off.
    """
    proto = job.protocol
    reps = config.repetitions or proto.eval.repetitions
    grid = arch_grid(proto, config.archs)
    steps = sum(
        Recipe.from_eval(proto, image, text).epochs * math.ceil(job.cell.budget / proto.eval.batch_size)
        for image, text in grid
    )
    hard = int("hard" in config.tracks)
    native = int("native" in config.tracks and job.method_cls.family != "coreset")
    baseline = native * int(config.random_baseline)  # extras: random pairs trained the same way
    if not hard and "native" in config.tracks:
        hard, native = 1, 0  # alone, the native track always trains
    most = hard + native + baseline
    return hard * len(grid) * reps, most * len(grid) * reps, most * reps * steps


def describe_plan(protocol: Protocol, config: RunConfig) -> str:
    """The dry run's text: cells with their status, the artifacts, the estimate of the work."""
    notes: list[str] = []
    jobs = plan_grid(protocol, config, log=notes.append)
    extensions = {j: extension_job(j, config) for j in jobs}
    statuses = [cell_status(j, extensions[j]) for j in jobs]
    todo = [j for j, s in zip(jobs, statuses, strict=True) if s.startswith(("to run", "to re-run"))]
    extend: list[CellJob] = [
        e for j, s in zip(jobs, statuses, strict=True) if s.startswith("to extend") and (e := extensions[j])
    ]
    done = statuses.count("done")
    elsewhere = statuses.count("running elsewhere")
    failed = sum("(failed before" in s for s in statuses)
    lines = [f"dry run: nothing is built, trained or written; results would go to {Path(config.out)}", ""]
    redo = sum(s.startswith("to re-run") for s in statuses)
    head = f"cells: {len(jobs)} in the grid, {done} done, {len(todo)} to run"
    head += f" ({redo} finished ones re-run whole: saved set missing)" if redo else ""
    head += f", {len(extend)} to extend with the encoder pairs they lack" if extend else ""
    head += f" ({failed} failed before)" if failed else ""
    head += f", {elsewhere} running in another process" if elsewhere else ""
    lines.append(head)
    try:
        preflight(protocol, config, [*todo, *extend])
    except MddError as exc:  # what `mdd-bench run` would stop on: shown, not raised
        lines.append(f"pre-flight: a run would stop before any cell starts: {exc}")
    lines += [n for n in notes if "another version of protocol" in n]
    rows = [
        [j.cell.method, j.cell.dataset, j.cell.budget, j.cell.seed, s]
        for j, s in zip(jobs, statuses, strict=True)
    ]
    lines.append(tabulate(rows, headers=["method", "dataset", "budget", "seed", "status"]))
    artifacts: list[Artifact] = []
    for name in config.datasets:
        of_dataset = [j for j in [*todo, *extend] if j.cell.dataset == name]
        if of_dataset or config.full_data_repetitions:
            artifacts += artifacts_of(protocol.with_dataset(name), config, of_dataset)
    lines.append("")
    if artifacts:
        lines.append("shared artifacts (built once, then reused from the cache):")
        lines.append(tabulate([[a.name, a.state] for a in artifacts], headers=["artifact", "state"]))
    else:
        lines.append("shared artifacts: none needed (nothing to run)")
    certain = most = steps = 0
    for job in todo:
        c, m, s = evaluation_work(job, config)
        certain, most, steps = certain + c, most + m, steps + s
    for extension in extend:
        c, s = extension_work(extension, config)
        certain, most, steps = certain + c, most + c, steps + s
    trainings = f"{certain}" if certain == most else f"{certain} to {most}"
    built = [a for a in artifacts if a.state != "cached"]
    artifact_steps = sum(a.steps for a in built)
    lines += [
        "",
        f"estimate: {len(todo)} distillation(s)"
        + (f", {len(extend)} extension(s) from saved sets" if extend else "")
        + f"; {trainings} evaluation training(s) (at most {steps} "
        f"optimiser steps); {len(built)} artifact(s) to build"
        + (f" ({artifact_steps} optimiser steps of reference and expert training)" if artifact_steps else ""),
    ]
    if config.executor == "ray":
        cpus = config.cpus_per_task or 1
        lines.append(
            f"executor: ray ({config.address or 'a local Ray'}), {cpus:g} CPU(s)"
            f" and {config.gpus_per_task:g} GPU(s) per task"
        )
    return "\n".join(lines)
