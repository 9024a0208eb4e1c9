"""The paper's tables, built from the long results frame of one protocol: retrieval, cross-architecture,
timing and ablation. Every number is a mean (± sample std, ddof=1) over distillation seeds of per-seed
values that are already means over evaluation repetitions. The grid of a table is the product of every
method, budget and dataset seen under the protocol, so a cell that was not run shows as missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..metrics import METRICS
from ..results import FULL_DATA, TIMING_TRACK
from .layout import EXTRAS, FEWER_SEEDS, SOURCE, Cell, Table
from .names import dataset_name, method_name, ordered_datasets, ordered_methods

RETRIEVAL_COLUMNS = (*METRICS, "mean")
TRACK_TEXT = {
    "hard": "hard track (every set trained with identity targets, InfoNCE and the protocol's learning rates)",
    "native": "native track (each method with its own extras: learned similarity, loss, learning rates)",
}


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int


def _stat(values: np.ndarray) -> Stat:
    values = values[~np.isnan(values)]
    if not len(values):
        return Stat(math.nan, math.nan, 0)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return Stat(float(np.mean(values)), std, len(values))


def _agg(df: pd.DataFrame, keys: list[str]) -> dict[tuple, Stat]:
    """Seed statistics of `value` per group of `keys`."""
    return {key: _stat(g.to_numpy(dtype=float)) for key, g in df.groupby(keys, sort=False)["value"]}


def _main(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells of the main grid: not part of an ablation."""
    return frame[frame["ablation_group"] == ""]


def _cell(stat: Stat | None, n_max: int, digits: int = 1, spread: bool = True) -> Cell:
    if stat is None or stat.n == 0:
        return Cell(mean=math.nan)
    marks = FEWER_SEEDS if stat.n < n_max else ""
    return Cell(mean=stat.mean, std=stat.std if spread else None, digits=digits, marks=marks)


def _bold_best(table: Table, rows: list[int], columns: range | list[int]) -> None:
    """Bold the best shown value of each column among `rows`; ties at the shown precision all get bold."""
    for col in columns:
        cells = [(r, table.rows[r][col]) for r in rows if not table.rows[r][col].missing]
        if not cells:
            continue
        best = max(float(c.number().replace(",", "")) for _, c in cells)
        for r, c in cells:
            if float(c.number().replace(",", "")) == best:
                table.rows[r][col] = replace(c, bold=True)


def _seeds_text(n_max: int, spread: bool = True) -> str:
    if n_max <= 1:
        return "One seed"
    return f"{'Mean ± std' if spread else 'Mean'} over {n_max} seeds"


def _repetitions(df: pd.DataFrame) -> str:
    reps = sorted(set(df["repetitions"]) - {0})
    if not reps:
        return ""
    text = "/".join(map(str, reps))
    return f", each the mean of {text} evaluation repetition{'s' if reps != [1] else ''}"


def _source_pair(df: pd.DataFrame) -> tuple[str, str]:
    src = df[df["source"]]
    return (src["image_encoder"].iloc[0], src["text_encoder"].iloc[0]) if len(src) else ("?", "?")


def _extras_by_method(df: pd.DataFrame) -> dict[str, str]:
    """Methods that used extras in this track, with the extras (a method's cells may differ; union)."""
    used: dict[str, set[str]] = {}
    for method, extras in df[["method", "extras"]].drop_duplicates().itertuples(index=False):
        used.setdefault(method, set()).update(e for e in extras.split(",") if e)
    return {m: ", ".join(sorted(e)) for m, e in used.items() if e}


def _method_label(method: str, extras: dict[str, str]) -> Cell:
    return Cell(text=method_name(method), marks=EXTRAS if method in extras else "")


def _notes(table: Table, extras: dict[str, str], n_max: int) -> None:
    marks = "".join(c.marks for row in table.rows for c in row)
    if EXTRAS in marks:
        used = "; ".join(f"{method_name(m)}: {e}" for m, e in extras.items())
        table.notes.append(f"{EXTRAS} Used its own extras in the native track ({used}).")
    if FEWER_SEEDS in marks:
        table.notes.append(f"{FEWER_SEEDS} Fewer than {n_max} seeds finished for this cell.")


def _grid(frame: pd.DataFrame) -> tuple[list[str], list[int], list[str]]:
    """Methods, budgets and datasets of the main grid, as seen anywhere under the protocol."""
    main = _main(frame)
    methods = ordered_methods(main["method"])
    budgets = sorted(set(main.loc[main["method"] != FULL_DATA, "budget"]))
    return methods, budgets, ordered_datasets(main["dataset"])


# ---------------------------------------------------------------------------------------------- retrieval


def retrieval_table(frame: pd.DataFrame, track: str) -> Table | None:
    """Rows budget x method (+ the full-data upper bound), columns dataset x (IR@1..TR@10, Mean)."""
    df = _main(frame)
    df = df[(df["track"] == track) & df["source"] & df["metric"].isin(RETRIEVAL_COLUMNS)]
    if df.empty:
        return None
    methods, budgets, datasets = _grid(frame)
    stats = _agg(df[df["method"] != FULL_DATA], ["dataset", "budget", "method", "metric"])
    full = _agg(df[df["method"] == FULL_DATA], ["dataset", "metric"])
    n_max = max((s.n for s in stats.values()), default=0)
    n_full = max((s.n for s in full.values()), default=0)
    extras = _extras_by_method(df)
    protocol = frame["protocol"].iloc[0]
    image, text = _source_pair(df)
    caption = (
        f"Test retrieval (%) after training on the distilled sets: IR@K text→image, TR@K image→text, "
        f"Mean of the six. Protocol {protocol}, {TRACK_TEXT.get(track, track + ' track')}, "
        f"source encoders {image} + {text}. {_seeds_text(n_max)}{_repetitions(df)}. "
        "Best per column and budget in bold; – not run."
    )
    columns = [("", "Pairs"), ("", "Method")]
    columns += [(dataset_name(d), "Mean" if m == "mean" else m) for d in datasets for m in RETRIEVAL_COLUMNS]
    table = Table(f"retrieval_{track}", "Image-text retrieval", caption, columns, labels=2)
    for budget in budgets:
        first = len(table.rows)
        for i, method in enumerate(methods):
            row = [Cell(text=str(budget) if i == 0 else ""), _method_label(method, extras)]
            row += [
                _cell(stats.get((d, budget, method, m)), n_max) for d in datasets for m in RETRIEVAL_COLUMNS
            ]
            table.add_row(row, new_group=i == 0)
        _bold_best(table, list(range(first, len(table.rows))), range(2, len(columns)))
    if full:
        row = [Cell(text="all"), Cell(text=method_name(FULL_DATA))]
        row += [_cell(full.get((d, m)), n_full) for d in datasets for m in RETRIEVAL_COLUMNS]
        table.add_row(row, new_group=True)
        seeds = f"{n_full} seed{'s' if n_full != 1 else ''}"
        table.notes.append(f"Full data: the upper bound, trained on every training pair ({seeds}).")
    _notes(table, extras, n_max)
    return table


# ------------------------------------------------------------------------------------- cross-architecture


def _encoder_order(df: pd.DataFrame, column: str) -> list[str]:
    """Source encoder first, then the others in the order the evaluator ran them."""
    first = list(dict.fromkeys(df.loc[df["source"], column]))
    return first + [n for n in dict.fromkeys(df[column]) if n not in first]


def cross_arch_table(frame: pd.DataFrame, track: str) -> Table | None:
    """Rows budget x method, columns dataset x text encoder x image encoder (source marked *) + the
    mean over the unseen pairs (missing unless every unseen pair was evaluated for that seed)."""
    df = _main(frame)
    df = df[(df["track"] == track) & (df["metric"] == "mean") & (df["method"] != FULL_DATA)]
    seen = set(zip(df["text_encoder"], df["image_encoder"], strict=True))
    texts, images = _encoder_order(df, "text_encoder"), _encoder_order(df, "image_encoder")
    pairs = [(t, i) for t in texts for i in images if (t, i) in seen]
    if len(pairs) < 2:
        return None
    source = _source_pair(df)
    unseen = [p for p in pairs if p != (source[1], source[0])]
    methods, budgets, datasets = _grid(frame)
    stats = _agg(df, ["dataset", "budget", "method", "text_encoder", "image_encoder"])
    per_seed = df[[p in unseen for p in zip(df["text_encoder"], df["image_encoder"], strict=True)]]
    unseen_mean = per_seed.groupby(["dataset", "budget", "method", "seed"])["value"].agg(
        lambda v: v.mean() if v.notna().sum() == len(unseen) else math.nan
    )
    unseen_stats = _agg(unseen_mean.reset_index(), ["dataset", "budget", "method"])
    n_max = max(s.n for s in stats.values())
    extras = _extras_by_method(df)
    caption = (
        f"Cross-architecture generalisation: mean test recall (%, mean of IR@1/5/10 and TR@1/5/10) when the "
        f"sets distilled with {source[0]} + {source[1]} ({SOURCE}) train other image and text encoders; "
        f"Mean over the {len(unseen)} unseen pairs. Protocol {frame['protocol'].iloc[0]}, "
        f"{TRACK_TEXT.get(track, track + ' track')}. {_seeds_text(n_max, spread=False)}{_repetitions(df)}. "
        "Best per column and budget in bold; – not run."
    )
    columns = [("", "", "Pairs"), ("", "", "Method")]
    for d in datasets:
        columns += [(dataset_name(d), t, i) for t, i in pairs] + [(dataset_name(d), "", "Mean")]
    table = Table(f"cross_arch_{track}", "Cross-architecture generalisation", caption, columns, labels=2)
    for budget in budgets:
        first = len(table.rows)
        for k, method in enumerate(methods):
            row = [Cell(text=str(budget) if k == 0 else ""), _method_label(method, extras)]
            for d in datasets:
                for t, i in pairs:
                    cell = _cell(stats.get((d, budget, method, t, i)), n_max, spread=False)
                    row.append(replace(cell, marks=SOURCE + cell.marks) if (i, t) == source else cell)
                row.append(_cell(unseen_stats.get((d, budget, method)), n_max, spread=False))
            table.add_row(row, new_group=k == 0)
        _bold_best(table, list(range(first, len(table.rows))), range(2, len(columns)))
    _notes(table, extras, n_max)
    return table


# ------------------------------------------------------------------------------------------------- timing

# (key, header, digits); "total" and "wall" are in seconds here and shown in the table's time unit.
TIMING_COLUMNS = (
    ("time_per_iter_s", "Time/iter (s)", 2),
    ("iters_to_best", "# iter till best", 0),
    ("total", "Total", 2),
    ("wall", "Wall", 2),
    ("peak_mem_mb", "Peak mem (MB)", 0),
    ("cuda_peak_mem_mb", "GPU mem (MB)", 0),
    ("storage", "Storage", 1),
)
SAVING_COLUMNS = ("total", "wall")


def _unit(largest: float, units: tuple[tuple[str, float], ...]) -> tuple[str, float]:
    """The largest unit that the biggest value fills at least once (units ordered large to small)."""
    for name, size in units[:-1]:
        if largest >= size:
            return name, size
    return units[-1]


def _timing_per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (budget, method, seed) with the cost columns, derived ones included."""
    wide = df.pivot_table(
        index=["budget", "method", "seed"], columns="metric", values="value", aggfunc="first", dropna=False
    )
    for metric in ("time_per_iter_s", "iters_to_best", "distill_s", "peak_mem_mb", "storage_bytes"):
        if metric not in wide:
            wide[metric] = math.nan
    wide["total"] = wide["time_per_iter_s"] * wide["iters_to_best"]
    wide["wall"] = wide["distill_s"]
    return wide


def _largest(values: pd.DataFrame) -> float:
    return float(np.nanmax(values.to_numpy(dtype=float), initial=0.0))


def timing_tables(frame: pd.DataFrame, baseline: str | None) -> list[Table]:
    """Per dataset: rows budget x method, columns time/iter, iterations to best, time to best and wall time
    (with the change against `baseline` at the same budget), peak memory, storage."""
    df = _main(frame)
    df = df[(df["track"] == TIMING_TRACK) & (df["method"] != FULL_DATA)]
    methods, budgets, datasets = _grid(frame)
    tables = []
    for dataset in datasets:
        part = df[df["dataset"] == dataset]
        if part.empty:
            continue
        wide = _timing_per_seed(part)
        time_unit, seconds = _unit(_largest(wide[["total", "wall"]]), (("min", 60.0), ("s", 1.0)))
        wide[["total", "wall"]] = wide[["total", "wall"]] / seconds
        units = (("GB", 2.0**30), ("MB", 2.0**20), ("KB", 2.0**10), ("B", 1.0))
        byte_unit, size = _unit(_largest(wide[["storage_bytes"]]), units)
        wide["storage"] = wide["storage_bytes"] / size
        has_gpu = wide.get("cuda_peak_mem_mb", pd.Series(dtype=float)).notna().any()
        cols = [c for c in TIMING_COLUMNS if c[0] != "cuda_peak_mem_mb" or has_gpu]
        stats = {
            (b, m, key): _stat(g[key].to_numpy(dtype=float))
            for (b, m), g in wide.groupby(level=["budget", "method"])
            for key, _, _ in cols
        }
        n_max = max((s.n for s in stats.values()), default=0)
        unit_of = {"total": time_unit, "wall": time_unit, "storage": byte_unit}
        columns = [("# Pairs",), ("Method",)]
        columns += [(f"{label} ({unit_of[k]})",) if k in unit_of else (label,) for k, label, _ in cols]
        caption = (
            f"Distillation cost on {dataset_name(dataset)} (protocol {frame['protocol'].iloc[0]}): seconds "
            "per distillation iteration, the iteration with the best validation score, Total = time/iter × "
            "iterations till best (as in the paper), Wall = measured distillation time, peak resident "
            f"memory, bytes stored. Mean over {n_max} seed{'s' if n_max != 1 else ''}; the same for both "
            "evaluation tracks. – not run or not applicable (a coreset has no iterations)."
        )
        if baseline:
            caption += f" (↓x%): saving against {method_name(baseline)} at the same budget."
        name, title = f"timing_{dataset}", f"Distillation cost ({dataset_name(dataset)})"
        table = Table(name, title, caption, columns, labels=2)
        for budget in budgets:
            for k, method in enumerate(methods):
                row = [Cell(text=str(budget) if k == 0 else ""), Cell(text=method_name(method))]
                for key, _, digits in cols:
                    cell = _cell(stats.get((budget, method, key)), n_max, digits, spread=False)
                    cell = replace(cell, thousands=key == "iters_to_best")
                    base = stats.get((budget, baseline, key))
                    comparable = base is not None and base.n > 0 and base.mean > 0
                    if key in SAVING_COLUMNS and method != baseline and comparable and not cell.missing:
                        cell = replace(cell, change=cell.mean / base.mean - 1)
                    row.append(cell)
                table.add_row(row, new_group=k == 0)
        _notes(table, {}, n_max)
        tables.append(table)
    return tables


# ----------------------------------------------------------------------------------------------- ablation


def _ablation_seed_values(df: pd.DataFrame) -> pd.DataFrame:
    """Per seed: IR = mean of IR@1/5/10, TR likewise, Mean = the mean of the six (as on the poster)."""
    keys = ["dataset", "budget", "method", "ablation_variant", "seed"]
    wide = df.pivot_table(index=keys, columns="metric", values="value", aggfunc="first")
    out = pd.DataFrame(index=wide.index)
    out["IR"] = wide[[m for m in METRICS if m.startswith("IR")]].mean(axis=1, skipna=False)
    out["TR"] = wide[[m for m in METRICS if m.startswith("TR")]].mean(axis=1, skipna=False)
    out["Mean"] = wide["mean"]
    return out.reset_index()


def ablation_tables(frame: pd.DataFrame, track: str) -> list[Table]:
    """One table per ablation group: rows variant (per dataset and budget), columns IR, TR, Mean."""
    df = frame[(frame["ablation_group"] != "") & (frame["track"] == track) & frame["source"]]
    df = df[df["metric"].isin(RETRIEVAL_COLUMNS)]
    tables = []
    for group in sorted(set(df["ablation_group"])):
        part = df[df["ablation_group"] == group]
        values = _ablation_seed_values(part)
        order = part.groupby("ablation_variant")["ablation_order"].min()
        variants = sorted(order.index, key=lambda v: (math.isnan(order[v]), order[v], v))
        blocks = sorted(set(zip(values["dataset"], values["budget"], strict=True)))
        methods = ordered_methods(part["method"])
        stats = {
            (d, b, m, v, col): _stat(g[col].to_numpy(dtype=float))
            for (d, b, m, v), g in values.groupby(["dataset", "budget", "method", "ablation_variant"])
            for col in ("IR", "TR", "Mean")
        }
        n_max = max(s.n for s in stats.values())
        extras = _extras_by_method(part)
        labels = 2 if len(blocks) > 1 else 1
        columns = ([("Setting",)] if labels == 2 else []) + [("Variant",), ("IR",), ("TR",), ("Mean",)]
        image, text = _source_pair(part)
        where = "" if labels == 2 else f" on {dataset_name(blocks[0][0])} with {blocks[0][1]} pairs"
        caption = (
            f"Ablation {group}{where}: IR = mean of IR@1/5/10, TR likewise, Mean = mean of the six (%, "
            f"test). Protocol {frame['protocol'].iloc[0]}, {TRACK_TEXT.get(track, track + ' track')}, "
            f"source encoders {image} + {text}. {_seeds_text(n_max)}{_repetitions(part)}. "
            "Best per column in bold; – not run."
        )
        table = Table(f"ablation_{group}_{track}", f"Ablation: {group}", caption, columns, labels)
        for dataset, budget in blocks:
            first = len(table.rows)
            for k, (method, variant) in enumerate((m, v) for m in methods for v in variants):
                name = variant if len(methods) == 1 else f"{method_name(method)}: {variant}"
                row = (
                    [Cell(text=f"{dataset_name(dataset)}, {budget}" if k == 0 else "")] if labels == 2 else []
                )
                row.append(Cell(text=name, marks=EXTRAS if method in extras else ""))
                row += [
                    _cell(stats.get((dataset, budget, method, variant, c)), n_max, 2)
                    for c in ("IR", "TR", "Mean")
                ]
                table.add_row(row, new_group=k == 0)
            _bold_best(table, list(range(first, len(table.rows))), range(labels, len(columns)))
        _notes(table, extras, n_max)
        tables.append(table)
    return tables


def build_tables(frame: pd.DataFrame, track: str, baseline: str | None = None) -> list[Table]:
    """Every table of one protocol's results, in the paper's order."""
    tables = [t for t in (retrieval_table(frame, track), cross_arch_table(frame, track)) if t is not None]
    return tables + timing_tables(frame, baseline) + ablation_tables(frame, track)
