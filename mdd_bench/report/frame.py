"""Result files of `mdd-bench run` -> one long pandas DataFrame: the single source of every reported number.

One row per (cell, track, image x text encoder pair, metric); `value` is that seed's number, the mean
over its evaluation repetitions. Distillation cost gets rows of its own (metrics in TIMING_METRICS) with
track TIMING_TRACK ("-"): it is measured once per cell, whatever the evaluation track, and is tagged
with the source encoders (source=True). Cells whose method is FULL_DATA are the full-data upper bound.
Cells whose JSON has an "ablation" key ({"group": ..., "variant": ..., optional "order": int}) carry it in
`ablation_group` / `ablation_variant` (empty strings elsewhere) so the main tables can leave them out.

Improvement over random and recovery (`scores.py`, metrics in SCORE_METRICS) get rows of their own, per
cell (its seed) and track, on the source encoder pair only, as fractions (not percent):
- `ior`: the cell's mean recall minus its random baseline's. Hard track: the mean over the seeds of the
  `random` cells of the same protocol, dataset and budget (ablation cells excluded). Native track of a
  cell that used extras: the random pairs recorded with it (`evaluation.native.random_baseline`);
  without extras its native track is its hard one, and so is the baseline's.
- `hlr`: the mean over the full-data cells of the same protocol and dataset minus the cell's hard-track
  mean recall; the same number in both tracks (recovery is measured with hard labels by definition).
- `score`: (1 + IOR / 2 - HLR / 2) / 2 from the two rows of that track.
A row whose baseline is missing (no random cells, no full-data cell, a native track with extras but no
recorded baseline) is left out, never written as 0; full-data cells get none. `rep_std` is the spread
over the cell's evaluation repetitions, paired with the baseline's where it has as many repetitions.

A cell whose hard track carries its method's iteration-0 set (`evaluation.hard.initial`, trained and
scored with the cell's own evaluation seeds) gets two hard-track rows on the source pair (metrics in
INITIAL_METRICS, percent): `initial_mean`, that set's mean recall, and `initial_gain`, the cell's mean
recall minus it (the paired difference of this seed; `rep_std` over the repetitions paired by seed).

Two more kinds of per-cell rows share the cost's track "-" (once per cell, on the source encoders), and
only results that record them get them, so older result files give the frame they always gave:
- run length (RUN_METRICS), for a method that ran the distillation loop (`distill.extra.stop`):
  `max_iterations` (the protocol's), `plateau` (1 when it stopped on the plateau rule, else 0) and
  `still_rising` (1 when it reached the maximum without a plateau, so its val curve may still rise).
- tuning (TUNING_METRICS), for a result that records its `tuning` key: `tuned` (1 when its settings
  came from a `mdd-bench tune` entry, else 0); a tuned one adds that entry's provenance `tuning_trials`,
  `tuning_complete`, `tuning_pruned`, `tuning_failed`, `tuning_cpu_hours`, `tuning_wall_hours`,
  `tuning_best_val` and `tuning_trial` (the chosen trial's number); an untuned coreset (family
  "coreset": nothing to tune) adds `tuning_trials` = 0, what `mdd-bench tune` gives such a method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mdd_bench.errors import MddError
from mdd_bench.evaluation import scores
from mdd_bench.evaluation.metrics import METRICS
from mdd_bench.record import FULL_DATA, RANDOM, read_result, result_files
from mdd_bench.report.artifact_builds import ARTIFACTS, file_artifacts
from mdd_bench.report.random_weights import ATTR as RANDOM_WEIGHTS
from mdd_bench.report.random_weights import check_not_mixed

RETRIEVAL_METRICS = (*METRICS, "mean", "rsum")
TIMING_METRICS = (
    "time_per_iter_s",
    "iterations",
    "iters_to_best",
    "distill_s",
    "peak_mem_mb",
    "cuda_peak_mem_mb",
    "storage_bytes",
)
TIMING_TRACK = "-"
SCORE_METRICS = scores.SCORE_METRICS
INITIAL_METRICS = ("initial_mean", "initial_gain")
RUN_METRICS = ("max_iterations", "plateau", "still_rising")
# metric -> the key of `tuned.TunedEntry.provenance()` it holds
TUNING_FIELDS = {
    "tuning_trials": "trials",
    "tuning_complete": "complete",
    "tuning_pruned": "pruned",
    "tuning_failed": "failed",
    "tuning_cpu_hours": "cpu_hours",
    "tuning_wall_hours": "wall_hours",
    "tuning_best_val": "best_val",
    "tuning_trial": "trial",
}
TUNING_METRICS = ("tuned", *TUNING_FIELDS)
CORESET_FAMILY = "coreset"
COLUMNS = (
    "protocol",
    "dataset",
    "method",
    "budget",
    "seed",
    "track",
    "image_encoder",
    "text_encoder",
    "source",
    "extras",
    "metric",
    "value",
    "rep_std",
    "repetitions",
    "deterministic",
    "ablation_group",
    "ablation_variant",
    "ablation_order",
    "file",
)


def _seed_value(arch: dict[str, Any], metric: str) -> float:
    """The seed's number: the stored mean over repetitions, else computed from the repetitions."""
    if metric in arch.get("mean", {}):
        return float(arch["mean"][metric])
    values = [r[metric] for r in arch.get("runs", []) if metric in r]
    return float(sum(values) / len(values)) if values else math.nan


def _rep_std(arch: dict[str, Any], metric: str) -> float:
    """Sample std (ddof=1) of the metric over this seed's evaluation repetitions; NaN below two."""
    values = [r[metric] for r in arch.get("runs", []) if metric in r]
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _source_pair(result: dict[str, Any]) -> tuple[str, str]:
    for evaluation in result["evaluation"].values():
        for arch in evaluation.get("archs", []):
            if arch.get("source"):
                return arch["image_encoder"], arch["text_encoder"]
    proto = result.get("config", {}).get("protocol", {})
    return proto.get("image", {}).get("source", "?"), proto.get("text", {}).get("source", "?")


def _base(result: dict[str, Any], file: str) -> dict[str, Any]:
    """The row fields every row of one result file shares."""
    ablation = result.get("ablation") or {}
    return {
        "protocol": result["protocol"],
        "dataset": result["dataset"],
        "method": result["method"],
        "budget": int(result["budget"]),
        "seed": int(result["seed"]),
        "ablation_group": str(ablation.get("group", "")),
        "ablation_variant": str(ablation.get("variant", "")),
        "ablation_order": ablation.get("order", math.nan),
        "deterministic": bool(result.get("deterministic", False)),
        "file": file,
    }


def flatten(result: dict[str, Any], file: str) -> list[dict[str, Any]]:
    """The long-format rows of one result file (score rows need every file: `score_rows`)."""
    base = _base(result, file)
    rows: list[dict[str, Any]] = []
    for track, evaluation in result["evaluation"].items():
        extras = ",".join(evaluation.get("extras_used", []))
        for arch in evaluation.get("archs", []):
            pair = {
                "track": track,
                "image_encoder": arch["image_encoder"],
                "text_encoder": arch["text_encoder"],
                "source": bool(arch.get("source", False)),
                "extras": extras,
                "repetitions": len(arch.get("runs", [])),
            }
            for metric in RETRIEVAL_METRICS:
                value, spread = _seed_value(arch, metric), _rep_std(arch, metric)
                rows.append({**base, **pair, "metric": metric, "value": value, "rep_std": spread})
    rows += initial_rows(result, base)
    distill = result.get("distill")
    if isinstance(distill, dict):
        image, text = _source_pair(result)
        cost = {**distill, "distill_s": distill.get("seconds"), "storage_bytes": result.get("storage_bytes")}
        pair = {
            "track": TIMING_TRACK,
            "image_encoder": image,
            "text_encoder": text,
            "source": True,
            "extras": "",
            "repetitions": 0,
        }
        for metric in TIMING_METRICS:
            value = cost.get(metric)
            value = math.nan if value is None else float(value)
            rows.append({**base, **pair, "metric": metric, "value": value, "rep_std": math.nan})
    rows += cell_rows(result, base)
    return rows


def _number(value: Any) -> float:
    """A recorded number as a float; None, a bool or anything else not a number: NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def cell_rows(result: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    """The run-length and tuning rows of one cell (track "-", source encoders); none for what the result
    does not record (see the module docstring)."""
    values: dict[str, float] = {}
    distill = result.get("distill")
    extra = distill.get("extra") if isinstance(distill, dict) else None
    if isinstance(extra, dict) and "stop" in extra:
        stop = extra["stop"]
        values["max_iterations"] = _number(extra.get("max_iterations"))
        values["plateau"] = float(stop == "plateau")
        values["still_rising"] = float(bool(extra.get("still_rising", stop == "max_iterations")))
    if "tuning" in result:
        tuning = result["tuning"]
        values["tuned"] = float(isinstance(tuning, dict))
        if isinstance(tuning, dict):
            values.update({metric: _number(tuning.get(key)) for metric, key in TUNING_FIELDS.items()})
        elif result.get("family") == CORESET_FAMILY:
            values["tuning_trials"] = 0.0
    if not values:
        return []
    image, text = _source_pair(result)
    pair = {"track": TIMING_TRACK, "image_encoder": image, "text_encoder": text, "source": True,
            "extras": "", "repetitions": 0}  # fmt: skip
    return [
        {**base, **pair, "metric": metric, "value": value, "rep_std": math.nan}
        for metric, value in values.items()
    ]


def initial_rows(result: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    """The `initial_mean` and `initial_gain` rows of a cell whose hard track carries its iteration-0 set
    (none otherwise, or when the two lack a source pair, or name different ones)."""
    hard = result["evaluation"].get("hard")
    initial = hard.get("initial") if isinstance(hard, dict) else None
    if not isinstance(initial, dict):
        return []
    final, start = _source_arch(hard), _source_arch(initial)
    if final is None or start is None:
        return []
    pair = (start["image_encoder"], start["text_encoder"])
    if pair != (final["image_encoder"], final["text_encoder"]):
        return []
    before = [r["mean"] for r in start.get("runs", []) if "mean" in r]
    after = [r["mean"] for r in final.get("runs", []) if "mean" in r]
    # Repetitions pair when they trained with the same seeds (the cell's): one difference per repetition.
    paired = len(before) == len(after) and start.get("seeds") == final.get("seeds")
    differences = np.subtract(after, before) if paired else np.array([])
    spread = float(np.std(differences, ddof=1)) if len(differences) > 1 else math.nan
    fields = {"track": "hard", "image_encoder": pair[0], "text_encoder": pair[1], "source": True,
              "extras": "", "repetitions": len(before)}  # fmt: skip
    initial_mean = _seed_value(start, "mean")
    gain = _seed_value(final, "mean") - initial_mean
    return [
        {
            **base,
            **fields,
            "metric": "initial_mean",
            "value": initial_mean,
            "rep_std": _rep_std(start, "mean"),
        },
        {**base, **fields, "metric": "initial_gain", "value": gain, "rep_std": spread},
    ]


@dataclass
class CellRecall:
    """What the scores need of one cell: per track, its source pair's mean recall (the seed's, and per
    evaluation repetition; fractions), and the native track's own random baseline if it recorded one."""

    base: dict[str, Any]  # the cell's row fields (protocol, dataset, method, budget, seed, ..., file)
    image_encoder: str
    text_encoder: str
    seed_mean: dict[str, float]  # track -> the frame's `mean` value, as a fraction
    runs: dict[str, np.ndarray]  # track -> mean recall per evaluation repetition
    extras: dict[str, str]  # track -> extras used, as in the frame
    native_baseline: tuple[float, np.ndarray] | None = None  # (seed mean, per repetition)


def _recall(arch: dict[str, Any]) -> tuple[float, np.ndarray]:
    """(the seed's mean recall, mean recall per repetition) as fractions; no repetitions: the mean."""
    seed = _seed_value(arch, "mean") / 100.0
    runs = np.array([r["mean"] for r in arch.get("runs", []) if "mean" in r], dtype=np.float64) / 100.0
    return seed, runs if len(runs) else np.array([seed])


def _source_arch(evaluation: dict[str, Any]) -> dict[str, Any] | None:
    return next((a for a in evaluation.get("archs", []) if a.get("source")), None)


def cell_recall(result: dict[str, Any], base: dict[str, Any]) -> CellRecall | None:
    """The scores' view of one result file; None without a source-pair evaluation."""
    recall: CellRecall | None = None
    for track, evaluation in result["evaluation"].items():
        arch = _source_arch(evaluation)
        if arch is None:
            continue
        if recall is None:
            recall = CellRecall(base, arch["image_encoder"], arch["text_encoder"], {}, {}, {})
        recall.seed_mean[track], recall.runs[track] = _recall(arch)
        recall.extras[track] = ",".join(evaluation.get("extras_used", []))
        baseline = evaluation.get("random_baseline")
        if track == "native" and isinstance(baseline, dict) and _source_arch(baseline) is not None:
            recall.native_baseline = _recall(_source_arch(baseline))
    return recall


def _spread(per_repetition: np.ndarray | float) -> float:
    """Sample std over repetitions; NaN below two (one value, or repetitions that could not pair)."""
    values = np.atleast_1d(per_repetition)
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _paired(a: np.ndarray | float, b: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Two per-repetition arrays side by side; unequal repetitions cannot pair (NaN)."""
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    return (a, b) if len(a) == len(b) else (np.array([math.nan]), np.array([math.nan]))


def score_rows(cells: list[CellRecall]) -> list[dict[str, Any]]:
    """The `ior`, `hlr` and `score` rows of every cell (see the module docstring for the baselines)."""
    random_seeds: dict[tuple, list[float]] = {}
    full_seeds: dict[tuple, list[float]] = {}
    for c in cells:
        b = c.base
        if b["method"] == RANDOM and not b["ablation_group"]:
            for track, value in c.seed_mean.items():
                random_seeds.setdefault((b["protocol"], b["dataset"], b["budget"], track), []).append(value)
        elif b["method"] == FULL_DATA and "hard" in c.seed_mean:
            full_seeds.setdefault((b["protocol"], b["dataset"]), []).append(c.seed_mean["hard"])
    random = {k: float(np.mean(v)) for k, v in random_seeds.items()}
    full = {k: float(np.mean(v)) for k, v in full_seeds.items()}
    rows: list[dict[str, Any]] = []
    for c in cells:
        b = c.base
        if b["method"] == FULL_DATA:
            continue
        f = full.get((b["protocol"], b["dataset"]), math.nan)
        hard = c.seed_mean.get("hard", math.nan)
        hlr_runs = scores.hlr(f, c.runs.get("hard", np.array([math.nan])))
        for track, x in c.seed_mean.items():
            runs = c.runs[track]
            if track == "native" and c.extras[track]:
                r, r_runs = c.native_baseline or (math.nan, np.array([math.nan]))
            else:  # no extras: the recipe is the hard one, the random cells' too
                key = (b["protocol"], b["dataset"], b["budget"])
                r = random.get((*key, track), random.get((*key, "hard"), math.nan))
                r_runs = np.full(len(runs), r)
            ior_value, hlr_value = scores.ior(x, r), scores.hlr(f, hard)
            ior_runs = scores.ior(*_paired(runs, r_runs))
            values = {
                "ior": (ior_value, _spread(ior_runs)),
                "hlr": (hlr_value, _spread(hlr_runs)),
                "score": (
                    scores.combined(ior_value, hlr_value),
                    _spread(scores.combined(*_paired(ior_runs, hlr_runs))),
                ),
            }
            pair = {
                "track": track,
                "image_encoder": c.image_encoder,
                "text_encoder": c.text_encoder,
                "source": True,
                "extras": c.extras[track],
                "repetitions": len(runs),
            }
            for metric, (value, spread) in values.items():
                if not math.isnan(value):
                    rows.append({**b, **pair, "metric": metric, "value": value, "rep_std": spread})
    return rows


def load_frame(runs: Path) -> pd.DataFrame:
    """All results under `runs` as one long DataFrame (columns COLUMNS): each file's rows in file order,
    then the score rows of every cell. Results made with random weights never load beside real ones, and
    mark the frame (`random_weights.py`)."""
    runs = Path(runs)
    rows: list[dict[str, Any]] = []
    recalls: list[CellRecall] = []
    seen: dict[tuple, Path] = {}
    random_weights: dict[Path, bool] = {}
    artifacts: dict[str, dict[str, str]] = {}
    for path in result_files(runs):
        result = read_result(path)
        random_weights[path] = bool(result.get("random_weights", False))
        ablation = result.get("ablation") or {}
        key = (
            result["protocol"],
            result["dataset"],
            result["method"],
            result["budget"],
            result["seed"],
            ablation.get("group"),
            ablation.get("variant"),
        )
        if key in seen:
            raise MddError(
                f"Result files '{seen[key]}' and '{path}' are the same cell. Keep one of them under '{runs}'."
            )
        seen[key] = path
        file = path.relative_to(runs).as_posix()
        rows.extend(flatten(result, file))
        artifacts[file] = file_artifacts(result)
        recall = cell_recall(result, _base(result, file))
        if recall is not None:
            recalls.append(recall)
    rows.extend(score_rows(recalls))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame = frame.astype(
        {"budget": int, "seed": int, "value": float, "rep_std": float, "source": bool, "repetitions": int,
         "deterministic": bool}
    )  # fmt: skip
    frame.attrs[RANDOM_WEIGHTS] = check_not_mixed(random_weights, runs)
    frame.attrs[ARTIFACTS] = {file: found for file, found in artifacts.items() if found}
    return frame
