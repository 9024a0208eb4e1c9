"""The report's first screen (`<protocol>/summary.md`): mean recall of every method at every budget on
both tracks, and the distillation cost, in two narrow tables a README can embed. The full tables hold
the six recalls, IOR/HLR, the unseen encoders and the ablations; these repeat their numbers, not new ones.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mdd_bench.record import FULL_DATA
from mdd_bench.report.frame import TIMING_TRACK
from mdd_bench.report.layout import Cell, Table
from mdd_bench.report.markdown import section
from mdd_bench.report.names import dataset_name, method_name
from mdd_bench.report.random_weights import mark_tables
from mdd_bench.report.seed_stats import seed_stat
from mdd_bench.report.tables import (
    TRACK_TEXT,
    _agg,
    _bold_best,
    _cell,
    _grid,
    _main,
    _notes,
    _seeds_text,
    _timing_per_seed,
    tuning_table,
)

TRACKS = ("hard", "native")


def _label_columns(datasets: list[str]) -> list[tuple[str, str]]:
    return ([("", "Dataset")] if len(datasets) > 1 else []) + [("", "Method")]


def _labels(datasets: list[str], dataset: str, first: bool, method: str) -> list[Cell]:
    lead = [Cell(text=dataset_name(dataset) if first else "")] if len(datasets) > 1 else []
    return [*lead, Cell(text=method_name(method))]


def summary_retrieval(frame: pd.DataFrame, interval: str = "std") -> Table | None:
    """Rows (dataset,) method; columns budget x track: test mean recall on the source encoders."""
    main = _main(frame)
    df = main[main["source"] & (main["metric"] == "mean") & main["track"].isin(TRACKS)]
    if df.empty:
        return None
    methods, budgets, datasets = _grid(frame)
    tracks = [t for t in TRACKS if t in set(df["track"])]
    stats = _agg(df[df["method"] != FULL_DATA], ["dataset", "budget", "method", "track"])
    n_max = max((s.n for s in stats.values()), default=0)
    columns = _label_columns(datasets) + [(f"{b} pairs", t.capitalize()) for b in budgets for t in tracks]
    labels = len(columns) - len(budgets) * len(tracks)
    protocol = frame["protocol"].iloc[0]
    caption = (
        f"Test mean recall (%, mean of IR@1/5/10 and TR@1/5/10) on the source encoders, protocol {protocol}. "
        + "; ".join(f"{t.capitalize()}: {TRACK_TEXT[t]}" for t in tracks)
        + f". {_seeds_text(n_max, True, interval)}. Bold: best of its column, above the runner-up's 95% "
        "interval (else ≈ tied); – not run. The full retrieval table gives each recall, IOR and HLR."
    )
    table = Table("summary_retrieval", "Retrieval at a glance", caption, columns, labels=labels)
    for dataset in datasets:
        first = len(table.rows)
        for i, method in enumerate(methods):
            row = _labels(datasets, dataset, i == 0, method)
            row += [
                _cell(stats.get((dataset, b, method, t)), n_max, interval=interval)
                for b in budgets
                for t in tracks
            ]
            table.add_row(row, new_group=i == 0)
        _bold_best(table, list(range(first, len(table.rows))), range(labels, len(columns)))
    full = df[(df["method"] == FULL_DATA) & (df["track"] == "hard")]
    for dataset in datasets:
        values = full.loc[full["dataset"] == dataset, "value"].to_numpy(dtype=float)
        if len(values):
            table.notes.append(f"Full data ({dataset_name(dataset)}, the upper bound): {values.mean():.1f}.")
    _notes(table, {}, n_max)
    return table


def summary_cost(frame: pd.DataFrame) -> Table | None:
    """Rows (dataset,) method with iterations; columns budget x (seconds per iteration, minutes to the
    best iteration = time/iter x iterations till best)."""
    df = _main(frame)
    df = df[(df["track"] == TIMING_TRACK) & (df["method"] != FULL_DATA)]
    if df.empty:
        return None
    methods, budgets, datasets = _grid(frame)
    stats = {}
    for dataset in datasets:
        part = df[df["dataset"] == dataset]
        if part.empty:
            continue
        for (budget, method), g in _timing_per_seed(part).groupby(level=["budget", "method"]):
            stats[(dataset, budget, method, "s")] = seed_stat(g["time_per_iter_s"].to_numpy(dtype=float))
            stats[(dataset, budget, method, "min")] = seed_stat(g["total"].to_numpy(dtype=float) / 60.0)
    timed = [m for m in methods if any(k[2] == m and s.n for k, s in stats.items())]
    if not timed:
        return None
    n_max = max((s.n for s in stats.values()), default=0)
    columns = _label_columns(datasets)
    columns += [(f"{b} pairs", unit) for b in budgets for unit in ("s/iter", "min to best")]
    labels = len(columns) - 2 * len(budgets)
    caption = (
        f"Distillation cost, protocol {frame['protocol'].iloc[0]}: seconds per iteration and minutes to the "
        f"best iteration (time/iter × iterations till best), mean over {n_max} "
        f"seed{'s' if n_max != 1 else ''} "
        "of the grid's cells (a cell's time/iter varies with the machine's load: compare methods with the "
        "one-run benchmark). Methods without iterations (coresets) are left out."
    )
    table = Table("summary_cost", "Distillation cost at a glance", caption, columns, labels=labels)
    for dataset in datasets:
        for i, method in enumerate(timed):
            row = _labels(datasets, dataset, i == 0, method)
            for budget in budgets:
                for unit, digits in (("s", 2), ("min", 1)):
                    row.append(_cell(stats.get((dataset, budget, method, unit)), n_max, digits, spread=False))
            table.add_row(row, new_group=i == 0)
    _notes(table, {}, n_max)
    return table


def write_summary(path: Path, frame: pd.DataFrame, interval: str = "std") -> Path | None:
    """The summary tables as one Markdown file (level-3 headings, to sit inside another page): retrieval,
    then, when the grid ran tuned, the tuning each cell got (so a reader sees the budgets were equal),
    then cost."""
    found = (summary_retrieval(frame, interval), tuning_table(frame), summary_cost(frame))
    tables = [t for t in found if t is not None]
    tables = mark_tables(tables, frame)
    if not tables:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("#" + section(t) for t in tables))
    return path
