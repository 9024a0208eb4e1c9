"""One cell's work: prepare its artifacts, distil (timed), evaluate every track; or extend a finished
cell with the encoder pairs its result lacks, from its saved set."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from mdd_bench import __version__
from mdd_bench.api import DistillContext, Method
from mdd_bench.digests import artifact_log, logged_digests, merge_digests
from mdd_bench.distill.resume import Checkpoint, checkpoint_path
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError
from mdd_bench.evaluation.evaluator import arch_grid, check_budget, repetition_seeds
from mdd_bench.protocol import Protocol
from mdd_bench.record import DistillCost, ResultRecord, read_result
from mdd_bench.registry import method_distribution
from mdd_bench.run.baselines import native_random_baseline
from mdd_bench.run.config import Cell, RunConfig
from mdd_bench.run.jobs import CellJob
from mdd_bench.run.progress import StageClock
from mdd_bench.run.provenance import PeakMemory, versions

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

    `clock` collects the seconds of each stage (artifacts, distill, evaluate) for the run's breakdown;
    the result names the cached artifacts the cell read, with their digests (`digests.py`).
    """
    with artifact_log():
        return _run_cell(method, cell, protocol, config, ctx, result_path, ablation, clock)


def _run_cell(
    method: Method,
    cell: Cell,
    protocol: Protocol,
    config: RunConfig,
    ctx: DistillContext,
    result_path: Path | None,
    ablation: dict[str, Any] | None,
    clock: StageClock | None,
) -> dict[str, Any]:
    clock = clock or StageClock()
    before = dict(clock.seconds)  # the clock may be the whole grid's: this cell's cost is the difference
    check_budget(ctx.dataset, cell.budget)
    prepare_artifacts(ctx, method.artifacts, config.archs, clock)
    ctx.selected, ctx.initial = {}, None
    result_path = result_path or cell.path(config.out, protocol)
    ctx.checkpoint = Checkpoint(
        checkpoint_path(result_path), checkpoint_key(method, cell, protocol, ctx, ablation)
    )
    with clock.stage("distill"):
        with PeakMemory(ctx.device) as memory:
            start = time.perf_counter()
            distilled = method.distill(ctx, cell.budget)
            # A resumed run adds the loop seconds its earlier attempts spent up to the check it went on from.
            distill_s = time.perf_counter() - start + ctx.stats.resumed_s
        if distilled.size != cell.budget:
            raise MddError(
                f"Method '{cell.method}' returned {distilled.size} pairs for budget {cell.budget}."
            )
        made = {"method": cell.method, "budget": cell.budget, "seed": cell.seed}
        made["hparams"] = method.describe()["hparams"]
        made["eval_dsa"] = method.native_dsa  # the native track's DSA, as the method's reference evaluates
        distilled.provenance.update(made)
        set_path = distilled.save(result_path.parent / "sets" / result_path.stem)
        # Each track is scored on the set its own val chose (`distill/loop.py`); a track whose choice is
        # another iteration than the hard track's gets its set saved beside the cell's.
        track_sets = {"hard": distilled}
        for track, chosen in ctx.selected.items():
            if track == "hard":
                continue
            if chosen.provenance.get("best_iteration") == distilled.provenance.get("best_iteration"):
                track_sets[track] = distilled
            else:
                chosen.provenance.update(made)
                chosen.save(result_path.parent / "sets" / f"{result_path.stem}.{track}")
                track_sets[track] = chosen
    clock.add({"distill": ctx.stats.resumed_s})
    stats = ctx.stats
    evaluation: dict[str, Any] = {}
    for track in config.tracks:
        track_set = track_sets.get(track, distilled)
        reuse = (
            track == "native"
            and "hard" in evaluation
            and ctx.evaluator.native_is_hard(track_set, config.archs)
            and track_set is distilled
        )
        if reuse:
            # Nothing native to use: the native recipe is the hard one, so the numbers are too.
            evaluation[track] = dict(evaluation["hard"], track="native", same_as="hard")
            continue
        with clock.stage("evaluate"):
            result = ctx.evaluator.evaluate(
                track_set, config.archs, track, config.repetitions, seed=cell.seed, split="test"
            )
        evaluation[track] = result.to_dict()
        if track == "native" and config.random_baseline:
            with clock.stage("random baseline"):
                baseline = native_random_baseline(ctx, track_set, config.archs, config.repetitions, cell.seed)
            if baseline is not None:
                evaluation[track]["random_baseline"] = baseline.to_dict()
        if track == "hard" and ctx.initial is not None:
            # The method's own iteration-0 set, trained and scored exactly as the cell (same seeds): the
            # paired gain the report gives is the difference, seed by seed.
            with clock.stage("evaluate"):
                initial = ctx.evaluator.evaluate(
                    ctx.initial, "source", "hard", config.repetitions, seed=cell.seed, split="test"
                )
            evaluation[track]["initial"] = initial.to_dict()
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
        method_info=method.info(),
        device=str(ctx.device),
        storage_bytes=distilled.storage_bytes,
        distilled_set=str(set_path),
        ablation=ablation,
        tuning=method.tuning.provenance() if method.tuning is not None else None,
        stages_s=stage_delta(clock, before),
        random_weights=protocol.random_weights,
        artifacts=logged_digests(),
    ).to_dict()


def checkpoint_key(
    method: Method, cell: Cell, protocol: Protocol, ctx: DistillContext, ablation: dict[str, Any] | None
) -> dict[str, Any]:
    """What determines a cell's distillation: a checkpoint saved under another key is not resumed (one
    made against another build of the experts or anchor included)."""
    return {
        "protocol": protocol.name,
        "protocol_hash": protocol.hash,
        "dataset": cell.dataset,
        "method": cell.method,
        "hparams": method.describe()["hparams"],
        "budget": cell.budget,
        "seed": cell.seed,
        "device": str(ctx.device),
        "select_tracks": ctx.select_tracks,
        "ablation": ablation,
        "mdd_bench": __version__,
        "artifacts": logged_digests(),
    }


def stage_delta(clock: StageClock, before: dict[str, float], into: dict[str, float] | None = None) -> dict:
    """Seconds per stage spent since `before` (a snapshot of the clock), added to `into`'s."""
    out = dict(into or {})
    for name, total in clock.seconds.items():
        spent = total - before.get(name, 0.0)
        if spent > 0:
            out[name] = round(out.get(name, 0.0) + spent, 2)
    return out


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
    with artifact_log():
        result = _extend_cell(job, config, ctx, clock)
        read = logged_digests()
        if result.get("artifacts") or read:
            result["artifacts"] = merge_digests(result.get("artifacts") or {}, read)
        return result


def _extend_cell(job: CellJob, config: RunConfig, ctx: DistillContext, clock: StageClock | None) -> dict:
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
        track_set = distilled
        if job.track_set_file(track) != job.set_file:
            track_set = DistilledSet.load(job.track_set_file(track))
        with clock.stage("evaluate"):
            new = ctx.evaluator.evaluate(
                track_set, "all", track, reps, seed=job.cell.seed, split="test", pairs=pairs
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
