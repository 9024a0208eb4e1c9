"""Result files of `mdd-bench run` -> one long pandas DataFrame: the single source of every reported number.

One row per (cell, track, image x text encoder pair, metric); `value` is that seed's number, the mean
over its evaluation repetitions. Distillation cost gets rows of its own (metrics in TIMING_METRICS) with
track TIMING_TRACK ("-"): it is measured once per cell, whatever the evaluation track, and is tagged
with the source encoders (source=True). Cells whose method is FULL_DATA are the full-data upper bound.
Cells whose JSON has an "ablation" key ({"group": ..., "variant": ..., optional "order": int}) carry it in
`ablation_group` / `ablation_variant` (empty strings elsewhere) so the main tables can leave them out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import MddError
from .metrics import METRICS
from .record import REQUIRED, SCHEMA

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
FULL_DATA = "full-data"
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


def result_files(runs: Path) -> list[Path]:
    """Every result JSON under `runs`; `sets/` folders hold distilled sets (and their JSON), not results."""
    runs = Path(runs)
    if not runs.is_dir():
        raise MddError(f"No result files under '{runs}' (no such folder). Run `mdd-bench run` first.")
    files = sorted(p for p in runs.rglob("*.json") if "sets" not in p.relative_to(runs).parts[:-1])
    if not files:
        raise MddError(f"No result files under '{runs}'. Run `mdd-bench run` first.")
    return files


def read_result(path: Path) -> dict[str, Any]:
    """One result file, checked enough that a bad one is named instead of breaking a table later."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MddError(f"Result file '{path}' is corrupt ({exc}). Delete it to rerun that cell.") from None
    if not isinstance(result, dict) or "schema" not in result:
        raise MddError(
            f"'{path}' is not an mdd-bench result file (no 'schema' key). Move it out of the runs."
        )
    if not isinstance(result["schema"], int) or result["schema"] > SCHEMA:
        raise MddError(
            f"Result file '{path}' has schema {result['schema']!r}; this mdd-bench reads up to {SCHEMA}. "
            "Upgrade mdd-bench."
        )
    missing = [k for k in REQUIRED if k not in result]
    if missing or not isinstance(result["evaluation"], dict):
        what = f"lacks {', '.join(missing)}" if missing else "has no evaluation object"
        raise MddError(f"Result file '{path}' is corrupt (it {what}). Delete it to rerun that cell.")
    ablation = result.get("ablation")
    if ablation is not None and not (isinstance(ablation, dict) and {"group", "variant"} <= set(ablation)):
        raise MddError(
            f"Result file '{path}' has an 'ablation' entry without 'group' and 'variant': "
            'write it as {"group": "data_init", "variant": "kmeans"}.'
        )
    return result


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


def flatten(result: dict[str, Any], file: str) -> list[dict[str, Any]]:
    """The long-format rows of one result file."""
    ablation = result.get("ablation") or {}
    base = {
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
    return rows


def load_frame(runs: Path) -> pd.DataFrame:
    """All results under `runs` as one long DataFrame (columns COLUMNS), in file order."""
    runs = Path(runs)
    rows: list[dict[str, Any]] = []
    seen: dict[tuple, Path] = {}
    for path in result_files(runs):
        result = read_result(path)
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
        rows.extend(flatten(result, path.relative_to(runs).as_posix()))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype(
        {"budget": int, "seed": int, "value": float, "rep_std": float, "source": bool, "repetitions": int,
         "deterministic": bool}
    )  # fmt: skip
