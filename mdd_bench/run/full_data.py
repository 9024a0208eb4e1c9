"""The full-data upper bound, published as a result file beside the grid's cells."""

from __future__ import annotations

import json
from pathlib import Path

from mdd_bench.cache import atomic_write_json
from mdd_bench.protocol import Protocol
from mdd_bench.record import FULL_DATA, ResultRecord
from mdd_bench.run.config import Cell, RunConfig
from mdd_bench.run.provenance import versions


def publish_full_data(protocol: Protocol, dataset, config: RunConfig, log=print) -> Path | None:
    """Write the cached full-data upper bound (if one was trained) as a result file for the report.

    It is not trained here: methods that need the reference model pay for its first repetition, and
    `run --full-data-repetitions N` for more. The file lists every repetition finished (the report says
    how many) and is rewritten when more have finished since; never by a cache holding fewer
    repetitions than the published file (a fresh machine's one-repetition reference must not replace
    committed results).
    """
    from mdd_bench.artifacts.references import reference_folder

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
        random_weights=protocol.random_weights,
    ).to_dict()
    atomic_write_json(path, result)
    reps = len(ref["runs"])
    log(f"full-data upper bound ({reps} repetition{'s' if reps != 1 else ''}) written to {path}")
    return path
