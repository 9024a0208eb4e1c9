"""How long the committed grid took: wall seconds per stage summed over every result file.

A cell's seconds come from, in order: its `stages_s` (recorded by the runner since 2026-12-03), the
last successful attempt in its `.log`, or, for older cells with neither, an estimate: its recorded
distillation seconds plus its evaluations (tracks x encoder pairs x repetitions, and the native
random baseline) times the per-repetition time `bench_eval.py` measured for that pair and budget.

With `--tuning SUMMARY` (the `summary.json` that `mdd-bench tune` writes; repeatable, one per protocol), the
tuning the grid's settings came from is counted too: per method the CPU hours of every finished trial, the
sum of the trials' wall times, and the hours the machine spent tuning (parallel trials counted once).

    python benchmarks/grid_time.py --runs reports/cpu/runs --bench reports/cpu/bench_eval.txt
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

STAGE_LINE = re.compile(r"^\S+\s+(?P<stage>[a-z][a-z ]*[a-z]): (?P<seconds>[\d.]+) s$")
EVAL_LINE = re.compile(
    r"^\S+ (?P<image>\S+) \+ (?P<text>\S+): one repetition of a (?P<n>\d+)-pair set .* takes (?P<low>[\d.]+)-"
)


@dataclass
class GridTime:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cells: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # by how their time is known
    estimated_s: float = 0.0
    # [written - recorded stage seconds, written] of each file with recorded stages: cells run in
    # parallel overlap, so their union is the machine's elapsed time, shorter than the sum
    spans: list[tuple[datetime, datetime]] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


def log_stages(path: Path) -> dict[str, float] | None:
    """Stage seconds of the log's last attempt, when that attempt finished."""
    if not path.exists():
        return None
    lines = path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if " start " in line]
    if not starts or not any(" done: " in line for line in lines[starts[-1] :]):
        return None
    out: dict[str, float] = defaultdict(float)
    for line in lines[starts[-1] :]:
        match = STAGE_LINE.match(line)
        if match:
            out[match["stage"]] += float(match["seconds"])
    return dict(out)


def per_repetition(bench: Path) -> dict[tuple[str, str, int], float]:
    """(image, text, budget) -> the faster measured repetition (the slower one also filled caches)."""
    out = {}
    for line in bench.read_text().splitlines() if bench.exists() else []:
        match = EVAL_LINE.match(line)
        if match:
            out[(match["image"], match["text"], int(match["n"]))] = float(match["low"])
    return out


def rep_seconds(reps: dict, pair: tuple[str, str], source: tuple[str, str], budget: int) -> float:
    """A pair's measured time at this budget, else its 100-pair time scaled as the source pair's scales."""
    if (*pair, budget) in reps:
        return reps[(*pair, budget)]
    at_100 = reps.get((*source, 100), 0.0)
    scale = reps.get((*source, budget), at_100) / at_100 if at_100 else 1.0
    return reps.get((*pair, 100), at_100) * scale


def estimate(result: dict, reps: dict[tuple[str, str, int], float]) -> dict[str, float]:
    budget = int(result["budget"])
    evaluate = baseline = 0.0
    tracks = [t for t in result.get("evaluation", {}).values() if isinstance(t, dict)]
    source = next(
        (
            (a["image_encoder"], a["text_encoder"])
            for t in tracks
            for a in t.get("archs", [])
            if a.get("source")
        ),
        ("", ""),
    )

    def cost(archs: list[dict]) -> float:
        pairs = ((a["image_encoder"], a["text_encoder"]) for a in archs)
        return sum(
            len(a.get("seeds", [])) * rep_seconds(reps, p, source, budget)
            for a, p in zip(archs, pairs, strict=True)
        )

    for track in tracks:
        if not track.get("same_as"):
            evaluate += cost(track.get("archs", []))
            baseline += cost(track.get("random_baseline", {}).get("archs", []))
    out = {"distill": float(result.get("distill", {}).get("seconds") or 0.0), "evaluate": evaluate}
    if baseline:
        out["random baseline"] = baseline
    return out


def grid_time(runs: Path, bench: Path) -> GridTime:
    reps = per_repetition(bench)
    total = GridTime()
    for path in sorted(runs.rglob("b*-s*.json")):
        if path.parent.name == "sets":
            continue
        result = json.loads(path.read_text())
        stages = result.get("stages_s")
        if not stages and result.get("method") == "full-data":
            total.cells["untimed upper bound"] += 1  # trained as an artifact; its time was not kept
            continue
        how = "recorded"
        if not stages:
            stages, how = log_stages(path.with_suffix(".log")), "log"
        if not stages:
            stages, how = estimate(result, reps), "estimated"
            total.estimated_s += sum(stages.values()) - stages["distill"]
        total.cells[how] += 1
        for stage, seconds in stages.items():
            total.seconds[stage] += seconds
        if how == "recorded" and result.get("created"):
            end = datetime.fromisoformat(result["created"])
            total.spans.append((end - timedelta(seconds=sum(stages.values())), end))
    return total


def union_hours(spans: list[tuple[datetime, datetime]]) -> float | None:
    """Hours covered by the union of the spans (overlapping ones count once); None without spans."""
    if not spans:
        return None
    spans = sorted(spans)
    total, (start, end) = 0.0, spans[0]
    for a, b in spans[1:]:
        if a > end:
            total += (end - start).total_seconds()
            start, end = a, b
        else:
            end = max(end, b)
    return (total + (end - start).total_seconds()) / 3600


def tuning_hours(*summaries: Path) -> dict[str, tuple[float, float]]:
    """method -> (CPU hours, trial wall hours) summed over its studies (every budget, every summary.json
    given: one per protocol tuned)."""
    hours: dict[str, tuple[float, float]] = {}
    for summary in summaries:
        for study in json.loads(summary.read_text())["studies"]:
            cpu, wall = hours.get(study["method"], (0.0, 0.0))
            hours[study["method"]] = (
                cpu + float(study["cpu_hours"]),
                wall + float(study.get("wall_hours") or 0.0),
            )
    return hours


def tuning_elapsed(*summaries: Path) -> float | None:
    """Hours the machine spent tuning: the union of the finished trials' [start, end] spans over every
    study (trials that ran in parallel count once). None when no trial records its span."""
    return union_hours(
        [
            (datetime.fromisoformat(row["start"]), datetime.fromisoformat(row["end"]))
            for summary in summaries
            for study in json.loads(summary.read_text())["studies"]
            for row in study.get("rows", [])
            if row.get("start") and row.get("end")
        ]
    )


def tuning_sentence(hours: dict[str, tuple[float, float]], elapsed: float | None = None) -> str:
    each = ", ".join(f"{m} {cpu:.1f}" for m, (cpu, _) in hours.items())
    cpu, wall = sum(c for c, _ in hours.values()), sum(w for _, w in hours.values())
    spent = f"{wall:.1f} h of trial wall time"
    if elapsed is not None:
        spent += f", {elapsed:.1f} h elapsed on the same machine (trials in parallel count once)"
    return (
        f"**Tuning:** {cpu:.1f} CPU hours over every finished trial ({each}), {spent} "
        "(`mdd-bench tune`, the same trials per method; interrupted trials' partial work is not counted)."
    )


def sentence(t: GridTime) -> str:
    hours = {k: v / 3600 for k, v in t.seconds.items()}
    distill = hours.get("distill", 0.0)
    evaluate = hours.get("evaluate", 0.0) + hours.get("random baseline", 0.0)
    n = sum(v for k, v in t.cells.items() if k != "untimed upper bound")
    timed = t.cells.get("recorded", 0) + t.cells.get("log", 0)
    union = union_hours(t.spans)
    elapsed = (
        ""
        if union is None
        else f" The {len(t.spans)} files whose runner recorded their stage times took "
        f"{sum((b - a).total_seconds() for a, b in t.spans) / 3600:.1f} h summed and {union:.1f} h of "
        "elapsed time on the machine (cells run in parallel count once)."
    )
    return (
        f"**Grid time so far:** {n} result files took {distill + evaluate:.1f} h on the 2-core machine: "
        f"{distill:.1f} h distilling and {evaluate:.1f} h evaluating (shared artifacts such as experts, "
        "anchors and text features are built once per protocol and not counted, nor is the full-data "
        f"upper bound). Stage times are recorded for {timed} files; for the {t.cells.get('estimated', 0)} "
        f"older ones the evaluation ({t.estimated_s / 3600:.1f} h of the total) is estimated from their "
        "evaluation count and `bench_eval.py`'s time per repetition (`python benchmarks/grid_time.py`)."
        + elapsed
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("reports/cpu/runs"))
    parser.add_argument("--bench", type=Path, default=Path("reports/cpu/bench_eval.txt"))
    parser.add_argument(
        "--tuning", type=Path, action="append", default=[], help="a tuner's summary.json (repeatable)"
    )
    args = parser.parse_args()
    t = grid_time(args.runs, args.bench)
    for stage, seconds in sorted(t.seconds.items(), key=lambda kv: -kv[1]):
        print(f"{stage:<20} {seconds / 3600:6.2f} h")
    print(f"{'total':<20} {t.total_s / 3600:6.2f} h  cells: {dict(t.cells)}")
    print(sentence(t))
    if args.tuning:
        print(tuning_sentence(tuning_hours(*args.tuning), tuning_elapsed(*args.tuning)))


if __name__ == "__main__":
    main()
