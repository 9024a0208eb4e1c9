"""The result record: one typed shape for what `mdd-bench run` writes per cell and the report reads.

Schema 1 is what every result file so far holds; fields added later are optional, so older files
still read. The runner builds a `ResultRecord` for every cell (and for the published full-data upper
bound); `results.py` reads files back through `ResultRecord.check`.

A native track that trained with extras may carry `random_baseline` (a `RandomBaseline`): N random real
pairs trained with the same kind of extras, what the native track's improvement over random (IOR,
`scores.py`) subtracts. Files without it still read; their native IOR is missing, never 0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

SCHEMA = 1
REQUIRED = ("method", "dataset", "protocol", "budget", "seed", "evaluation")


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
    device: str | None = None
    storage_bytes: int | None = None
    distilled_set: str | None = None
    ablation: dict[str, Any] | None = None
    # Wall seconds of this cell by stage (artifacts, distill, evaluate, random baseline): what the grid cost.
    stages_s: dict[str, float] = field(default_factory=dict)
    schema: int = SCHEMA
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["ablation"] is None:
            out.pop("ablation")
        return out
