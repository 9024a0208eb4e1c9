"""The result record: one typed shape for what `mdd-bench run` writes per cell and the report reads.

Schema 1 is what every result file so far holds; fields added later are optional, so older files
still read. The runner builds a `ResultRecord` for every cell (and for the published full-data upper
bound) and writes `to_dict()`; every reader goes through `read_result` (the checked dict, what the
report's tables flatten) or `read_record` (a typed `ResultRecord`), both built on `ResultRecord.check`,
so a bad file is named once, in one place, whoever reads it.

A result made with randomly initialised encoders carries `random_weights: true`: it measures time, memory
and the path through the code, never retrieval, and the report marks it so (older files read as false).

A native track that trained with extras may carry `random_baseline` (a `RandomBaseline`): N random real
pairs trained with the same kind of extras, what the native track's improvement over random (IOR,
`scores.py`) subtracts. Files without it still read; their native IOR is missing, never 0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdd_bench.errors import MddError

SCHEMA = 1
REQUIRED = ("method", "dataset", "protocol", "budget", "seed", "evaluation")
# Result files that are not a method's cell: the full-data upper bound, and the random-pair baseline.
FULL_DATA = "full-data"
RANDOM = "random"


@dataclass
class DistillCost:
    seconds: float | None = None
    iterations: int = 0
    time_per_iter_s: float | None = None
    iters_to_best: int | None = None
    peak_mem_mb: float | None = None
    cuda_peak_mem_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RandomBaseline:
    """`evaluation.native.random_baseline`: N random real pairs (drawn with `pairs_seed`, the draw of the
    `random` cell of that seed) trained exactly as the set's native track trains: its learned lrs and
    loss, and, where the set learned a similarity, one computed from `similarity_from` instead. Its
    evaluation has the set's repetition seeds, so the two pair up repetition by repetition."""

    pairs_seed: int
    similarity_from: str | None  # where its similarity came from; None when the set learned none
    extras_used: list[str]
    recipe: dict[str, Any]
    archs: list[dict[str, Any]]  # as `evaluation.<track>.archs`

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ResultRecord:
    method: str
    family: str
    dataset: str
    protocol: str
    protocol_hash: str
    budget: int
    seed: int
    evaluation: dict[str, Any]
    config: dict[str, Any]
    versions: dict[str, Any]
    distill: DistillCost = field(default_factory=DistillCost)
    hparams: dict[str, Any] = field(default_factory=dict)
    deterministic: bool = False
    method_dist: dict[str, str] = field(default_factory=dict)  # the distribution providing the method
    # The method's display name, paper and algorithm version (`Method.info`) when the cell ran.
    method_info: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    storage_bytes: int | None = None
    distilled_set: str | None = None
    ablation: dict[str, Any] | None = None
    # The `mdd-bench tune` entry the settings came from (study, trial, best val, trial counts, CPU
    # hours; `tuned.TunedEntry.provenance`), None when the method ran untuned.
    tuning: dict[str, Any] | None = None
    # Wall seconds of this cell by stage (artifacts, distill, evaluate, random baseline): what the grid cost.
    stages_s: dict[str, float] = field(default_factory=dict)
    # Made with randomly initialised encoders (`Protocol.random_weights`): cost and plumbing only, not a
    # result. The report says so on every table and refuses to mix such results with real ones.
    random_weights: bool = False
    # The cached artifacts the cell read (cache name -> sha256 prefix, `digests.py`): cells made in other
    # sessions or machines compare only where these agree. Older files have none.
    artifacts: dict[str, str] = field(default_factory=dict)
    schema: int = SCHEMA
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["ablation"] is None:
            out.pop("ablation")
        return out

    @staticmethod
    def check(result: Any, path: Path | str) -> dict[str, Any]:
        """`result` (a parsed result file) checked enough that a bad one is named instead of breaking a
        table later: an mdd-bench file, a schema this version reads, the required keys, a well-formed
        ablation key."""
        if not isinstance(result, dict) or "schema" not in result:
            raise MddError(
                f"'{path}' is not an mdd-bench result file (no 'schema' key). Move it out of the runs."
            )
        if not isinstance(result["schema"], int) or result["schema"] > SCHEMA:
            raise MddError(
                f"Result file '{path}' has schema {result['schema']!r}; this mdd-bench reads up to "
                f"{SCHEMA}. Upgrade mdd-bench."
            )
        missing = [k for k in REQUIRED if k not in result]
        if missing or not isinstance(result["evaluation"], dict):
            what = f"lacks {', '.join(missing)}" if missing else "has no evaluation object"
            raise MddError(f"Result file '{path}' is corrupt (it {what}). Delete it to rerun that cell.")
        ablation = result.get("ablation")
        if ablation is not None and not (
            isinstance(ablation, dict) and {"group", "variant"} <= set(ablation)
        ):
            raise MddError(
                f"Result file '{path}' has an 'ablation' entry without 'group' and 'variant': "
                'write it as {"group": "data_init", "variant": "kmeans"}.'
            )
        return result

    @classmethod
    def from_dict(cls, result: dict[str, Any], path: Path | str = "<result>") -> ResultRecord:
        """A checked result as a record; keys this version does not know are dropped, missing optional
        ones take their defaults (older files)."""
        result = cls.check(result, path)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in result.items() if k in known}
        for key in ("family", "protocol_hash"):
            values.setdefault(key, "")
        values.setdefault("config", {})
        values.setdefault("versions", {})
        distill = values.get("distill")
        if isinstance(distill, dict):
            cost = {f.name for f in dataclasses.fields(DistillCost)}
            values["distill"] = DistillCost(**{k: v for k, v in distill.items() if k in cost})
        else:
            values.pop("distill", None)
        return cls(**values)


def read_result(path: Path | str) -> dict[str, Any]:
    """One result file as the checked dict every table is built from; a bad file is a one-line error."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MddError(f"Result file '{path}' is corrupt ({exc}). Delete it to rerun that cell.") from None
    return ResultRecord.check(result, path)


def read_record(path: Path | str) -> ResultRecord:
    """One result file as a typed `ResultRecord`."""
    return ResultRecord.from_dict(read_result(path), path)


def result_files(runs: Path | str) -> list[Path]:
    """Every result JSON under `runs`; `sets/` folders hold distilled sets (and their JSON), not results."""
    runs = Path(runs)
    if not runs.is_dir():
        raise MddError(f"No result files under '{runs}' (no such folder). Run `mdd-bench run` first.")
    files = sorted(p for p in runs.rglob("*.json") if "sets" not in p.relative_to(runs).parts[:-1])
    if not files:
        raise MddError(f"No result files under '{runs}'. Run `mdd-bench run` first.")
    return files
