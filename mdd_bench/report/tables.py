"""The paper's tables, built from the long results frame of one protocol: retrieval, cross-architecture,
timing and ablation; and, when a protocol's variants ran too (cpu, cpu-frozen), the protocols side by
side. Every number is a mean (± sample std, ddof=1, or ± the 95% interval of the mean) over distillation
seeds of per-seed values that are already means over evaluation repetitions. A
deterministic method runs one seed; its spread and interval come from its evaluation repetitions. The
grid of a table is the product of every method, budget and dataset seen under the protocol, so a cell
that was not run shows as missing.

Bolding is a claim, so it needs the noise: the best of a column is bold only when its mean lies above
the runner-up's 95% interval (t-quantile, n - 1 degrees of freedom); otherwise it and every cell whose
interval reaches it are marked tied (≈), and none is bold. The best is the largest number, except in the
columns a table lists as lower-is-better (HLR).

The retrieval table carries improvement over random (IOR), hard-label recovery (HLR) and their Score
(`scores.py`) beside each dataset's recalls, as fractions, when the results have them (a random baseline
and the full-data upper bound).

The gain table gives each iterative method's gain over its own iteration-0 set (hard track, source
encoders, the same evaluation seeds): the paired difference per distillation seed, its mean over seeds
with the 95% t-interval of that mean, when the results carry the initial set.

The run-length table gives each iterative method's stop (the distillation loop's rule, the same for
every method): iterations run, the chosen iteration, and how many seeds stopped on the plateau or were
still rising at the maximum (marked ↗, here and on the method's label in the retrieval table). The
tuning table gives the `mdd-bench tune` entry behind each cell's settings, or says it ran untuned.
The trajectory family's factor table (each switch flipped alone) is built in `factors.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from mdd_bench.evaluation.metrics import METRICS
from mdd_bench.record import FULL_DATA
from mdd_bench.report.artifact_builds import builds_note
from mdd_bench.report.factors import FACTORS_GROUP, factor_table
from mdd_bench.report.frame import (
    INITIAL_METRICS,
    RUN_METRICS,
    SCORE_METRICS,
    TIMING_TRACK,
    TUNING_METRICS,
)
from mdd_bench.report.layout import (
    DETERMINISTIC,
    EXTRAS,
    FEWER_SEEDS,
    SOURCE,
    STILL_RISING,
    TIED,
    Cell,
    Table,
)
from mdd_bench.report.lineage import Lineage, description
from mdd_bench.report.names import dataset_name, method_name, ordered_datasets, ordered_methods
from mdd_bench.report.random_weights import mark_tables
from mdd_bench.report.seed_stats import Stat, seed_stat, t975

RETRIEVAL_COLUMNS = (*METRICS, "mean")
SCORE_HEADERS = {"ior": "IOR", "hlr": "HLR", "score": "Score"}
LOWER_IS_BETTER = ("hlr",)
SCORE_DIGITS = 3
SCORE_TEXT = (
    "IOR: improvement over random, the mean recall minus that of N random real pairs trained the same way "
    "(same recipe and kind of extras); HLR: hard-label recovery, the full data's mean recall minus the "
    "set's hard-track one (lower is better; the same in both tracks); Score = (1 + IOR/2 - HLR/2)/2, in "
    "[0, 1]. All three as fractions, per seed then over seeds; – where a baseline is missing."
)
_BOLD_RULE = "Bold: best of its column and budget, above the runner-up's 95% interval (else ≈ tied);"
TRACK_TEXT = {
    "hard": "hard track (every set trained with identity targets, InfoNCE and the protocol's learning rates)",
    "native": "native track (each method with its own extras: learned similarity, loss, learning rates)",
}


INTERVALS = ("std", "ci95")


def _agg(df: pd.DataFrame, keys: list[str]) -> dict[tuple, Stat]:
    """Seed statistics of `value` per group of `keys`."""
    out = {}
    for key, g in df.groupby(keys, sort=False):
        deterministic = bool(g["deterministic"].all()) if "deterministic" in g else False
        rep_std = float(g["rep_std"].iloc[0]) if "rep_std" in g and len(g) == 1 else math.nan
        reps = int(g["repetitions"].iloc[0]) if "repetitions" in g and len(g) == 1 else 0
        out[key] = seed_stat(g["value"].to_numpy(dtype=float), rep_std, reps, deterministic)
    return out


def _files(df: pd.DataFrame, keys: list[str]) -> dict[tuple, tuple[str, ...]]:
    """The result files behind each group of `keys`, so every cell can name where its number came from."""
    return {key: tuple(sorted(set(g["file"]))) for key, g in df.groupby(keys, sort=False)}


def _pairs_method_columns(datasets: list[str], headers: tuple[str, ...]) -> list[tuple[str, str]]:
    """Pairs and Method labels, then `headers` under each dataset (tables whose rows are budget x method)."""
    return [("", "Pairs"), ("", "Method")] + [(dataset_name(d), h) for d in datasets for h in headers]


def _main(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells of the main grid: not part of an ablation."""
    return frame[frame["ablation_group"] == ""]


def _cell(
    stat: Stat | None,
    n_max: int,
    digits: int = 1,
    spread: bool = True,
    interval: str = "std",
    sources: tuple[str, ...] = (),
) -> Cell:
    if stat is None or stat.n == 0:
        return Cell(mean=math.nan)
    marks = DETERMINISTIC if stat.deterministic else FEWER_SEEDS if stat.n < n_max else ""
    shown = stat.ci if interval == "ci95" else stat.std
    return Cell(
        mean=stat.mean, std=shown if spread else None, digits=digits, marks=marks, ci=stat.ci, sources=sources
    )


def _bold_best(table: Table, rows: list[int], columns: range | list[int]) -> None:
    """Per column among `rows`: bold the best when its mean is beyond the runner-up's 95% interval, else
    mark the best and every cell whose interval reaches it as tied. Without a noise estimate for the
    runner-up (one seed, one repetition) nothing can be claimed: ties at the shown precision are tied.
    The best is the largest mean, the smallest in the table's `lower_better` columns."""
    for col in columns:
        sign = -1.0 if col in table.lower_better else 1.0  # compare sign * mean: larger is better
        cells = sorted(
            ((r, table.rows[r][col]) for r in rows if not table.rows[r][col].missing),
            key=lambda rc: -sign * float(rc[1].mean),
        )
        if not cells:
            continue
        best = sign * float(cells[0][1].mean)
        if len(cells) == 1:
            table.rows[cells[0][0]][col] = replace(cells[0][1], bold=True)
            continue
        runner = cells[1][1]
        noise = runner.ci if runner.ci is not None and not math.isnan(runner.ci) else None
        if noise is not None and best > sign * float(runner.mean) + noise:
            table.rows[cells[0][0]][col] = replace(cells[0][1], bold=True)
            continue
        if noise is None and cells[0][1].number() != runner.number():
            table.rows[cells[0][0]][col] = replace(cells[0][1], bold=True)
            continue
        for r, c in cells:
            reach = sign * float(c.mean) + (c.ci if c.ci is not None and not math.isnan(c.ci) else 0.0)
            if r == cells[0][0] or reach >= best or c.number() == cells[0][1].number():
                table.rows[r][col] = replace(c, marks=c.marks + TIED)


def _seeds_text(n_max: int, spread: bool = True, interval: str = "std") -> str:
    if n_max <= 1:
        return "One distillation seed"
    shown = "Mean ± 95% interval" if interval == "ci95" else "Mean ± std (ddof=1)"
    return f"{shown if spread else 'Mean'} over {n_max} distillation seeds"


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


def _method_label(method: str, extras: dict[str, str], rising: bool = False) -> Cell:
    return Cell(
        text=method_name(method), marks=(EXTRAS if method in extras else "") + (STILL_RISING * rising)
    )


def _notes(table: Table, extras: dict[str, str], n_max: int, spread: bool = True) -> None:
    marks = "".join(c.marks for row in table.rows for c in row)
    if EXTRAS in marks:
        used = "; ".join(f"{method_name(m)}: {e}" for m, e in extras.items())
        table.notes.append(f"{EXTRAS} Used its own extras in the native track ({used}).")
    if FEWER_SEEDS in marks:
        table.notes.append(f"{FEWER_SEEDS} Fewer than {n_max} seeds finished for this cell.")
    if DETERMINISTIC in marks:
        over = "; its spread is over evaluation repetitions" if spread else ""
        table.notes.append(f"{DETERMINISTIC} Deterministic method: one distillation seed{over}.")
    if TIED in marks:
        table.notes.append(
            f"{TIED} Tied for best: the best mean is not above the runner-up's 95% interval, so none is bold."
        )
    if STILL_RISING in marks:
        see = "" if table.name == "run_length" else " (see the run length table)"
        table.notes.append(
            f"{STILL_RISING} The val curve was still rising at the maximum iterations in at least one seed: "
            f"a longer run might score higher{see}."
        )


def _grid(frame: pd.DataFrame) -> tuple[list[str], list[int], list[str]]:
    """Methods, budgets and datasets of the main grid, as seen anywhere under the protocol."""
    main = _main(frame)
    methods = ordered_methods(main["method"])
    budgets = sorted(set(main.loc[main["method"] != FULL_DATA, "budget"]))
    return methods, budgets, ordered_datasets(main["dataset"])


# ---------------------------------------------------------------------------------------------- retrieval


def retrieval_table(frame: pd.DataFrame, track: str, interval: str = "std") -> Table | None:
    """Rows budget x method (+ the full-data upper bound), columns dataset x (IR@1..TR@10, Mean, and IOR,
    HLR, Score when the results have them)."""
    main = _main(frame)
    main = main[(main["track"] == track) & main["source"]]
    df = main[main["metric"].isin(RETRIEVAL_COLUMNS)]
    if df.empty:
        return None
    scored = main[main["metric"].isin(SCORE_METRICS)]
    metrics = [*RETRIEVAL_COLUMNS, *(SCORE_METRICS if len(scored) else ())]
    methods, budgets, datasets = _grid(frame)
    stats = _agg(df[df["method"] != FULL_DATA], ["dataset", "budget", "method", "metric"])
    stats.update(_agg(scored, ["dataset", "budget", "method", "metric"]))
    full = _agg(df[df["method"] == FULL_DATA], ["dataset", "metric"])
    files = _files(df, ["dataset", "budget", "method"])
    n_max = max((s.n for s in stats.values()), default=0)
    n_full = max((s.n for s in full.values()), default=0)
    extras = _extras_by_method(df)
    rising = _still_rising(frame)
    protocol = frame["protocol"].iloc[0]
    image, text = _source_pair(df)
    caption = (
        f"Test retrieval (%) after training on the distilled sets: IR@K text→image, TR@K image→text, "
        f"Mean of the six. Protocol {protocol}, {TRACK_TEXT.get(track, track + ' track')}, "
        f"source encoders {image} + {text}. {_seeds_text(n_max, True, interval)}"
        f"{_repetitions(df[df['method'] != FULL_DATA])}. {_BOLD_RULE} – not run."
        + (f" {SCORE_TEXT}" if len(scored) else "")
    )
    headers = {"mean": "Mean", **SCORE_HEADERS}
    columns = [("", "Pairs"), ("", "Method")]
    columns += [(dataset_name(d), headers.get(m, m)) for d in datasets for m in metrics]
    lower = {2 + k * len(metrics) + metrics.index(m) for k in range(len(datasets)) for m in LOWER_IS_BETTER
             if m in metrics}  # fmt: skip
    table = Table(
        f"retrieval_{track}", "Image-text retrieval", caption, columns, labels=2, lower_better=lower
    )
    for budget in budgets:
        first = len(table.rows)
        for i, method in enumerate(methods):
            label = _method_label(method, extras, any((d, budget, method) in rising for d in datasets))
            row = [Cell(text=str(budget) if i == 0 else ""), label]
            row += [
                _cell(
                    stats.get((d, budget, method, m)),
                    n_max,
                    SCORE_DIGITS if m in SCORE_METRICS else 1,
                    interval=interval,
                    sources=files.get((d, budget, method), ()),
                )
                for d in datasets
                for m in metrics
            ]
            table.add_row(row, new_group=i == 0)
        _bold_best(table, list(range(first, len(table.rows))), range(2, len(columns)))
    if full:
        row = [Cell(text="all"), Cell(text=method_name(FULL_DATA))]
        full_files = _files(df[df["method"] == FULL_DATA], ["dataset"])
        row += [
            _cell(full.get((d, m)), n_full, interval=interval, sources=full_files.get((d,), ()))
            for d in datasets
            for m in metrics
        ]
        table.add_row(row, new_group=True)
        seeds = f"{n_full} seed{'s' if n_full != 1 else ''}"
        reps = sorted(set(df.loc[df["method"] == FULL_DATA, "repetitions"]) - {0})
        if reps:
            text = "/".join(map(str, reps))
            seeds += f", each the mean of {text} training repetition{'s' if reps != [1] else ''}"
            seeds += "; one repetition shows no spread" if reps == [1] else ""
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
    # The method's deterministic flag goes along, so a one-seed coreset's mean reads § there too, not ‡.
    unseen_mean = per_seed.groupby(["dataset", "budget", "method", "seed"]).agg(
        value=("value", lambda v: v.mean() if v.notna().sum() == len(unseen) else math.nan),
        deterministic=("deterministic", "all"),
    )
    unseen_stats = _agg(unseen_mean.reset_index(), ["dataset", "budget", "method"])
    n_max = max(s.n for s in stats.values())
    files = _files(df, ["dataset", "budget", "method"])
    extras = _extras_by_method(df)
    caption = (
        f"Cross-architecture generalisation: mean test recall (%, mean of IR@1/5/10 and TR@1/5/10) when the "
        f"sets distilled with {source[0]} + {source[1]} ({SOURCE}) train other image and text encoders; "
        f"Mean over the {len(unseen)} unseen pairs. Protocol {frame['protocol'].iloc[0]}, "
        f"{TRACK_TEXT.get(track, track + ' track')}. {_seeds_text(n_max, spread=False)}{_repetitions(df)}. "
        f"{_BOLD_RULE} – not run."
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
                used = files.get((d, budget, method), ())
                for t, i in pairs:
                    cell = _cell(stats.get((d, budget, method, t, i)), n_max, spread=False, sources=used)
                    row.append(replace(cell, marks=SOURCE + cell.marks) if (i, t) == source else cell)
                row.append(_cell(unseen_stats.get((d, budget, method)), n_max, spread=False, sources=used))
            table.add_row(row, new_group=k == 0)
        _bold_best(table, list(range(first, len(table.rows))), range(2, len(columns)))
    _notes(table, extras, n_max)
    return table


# ------------------------------------------------------------------------------------- before -> after


def welch_half(a: Stat, b: Stat) -> float:
    """Half-width of the Welch 95% interval of mean(a) - mean(b) over seeds (t-quantile at the floor of the
    Welch-Satterthwaite degrees of freedom, so never narrower than the exact one); NaN below 2 seeds each."""
    if a.n < 2 or b.n < 2:
        return math.nan
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    if va + vb == 0.0:
        return 0.0
    dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    return t975(max(1, math.floor(dof))) * math.sqrt(va + vb)


def before_after_table(before: pd.DataFrame, after: pd.DataFrame, track: str) -> Table | None:
    """Rows budget x method (run in either folder), columns dataset x (Before, After: mean ± std over
    seeds; Change: after - before ± the Welch 95% interval); the track's test mean recall on the source
    encoders, main grid. None when the two share no (dataset, budget, method)."""

    def stats_of(frame: pd.DataFrame) -> dict[tuple, Stat]:
        df = _main(frame)
        df = df[
            (df["track"] == track) & df["source"] & (df["metric"] == "mean") & (df["method"] != FULL_DATA)
        ]
        return {
            key: seed_stat(g["value"].to_numpy(dtype=float))
            for key, g in df.groupby(["dataset", "budget", "method"], sort=False)
        }

    old, new = stats_of(before), stats_of(after)
    if not set(old) & set(new):
        return None
    main = _main(after)
    files = _files(main[main["track"] == track], ["dataset", "budget", "method"])
    keys = set(old) | set(new)
    methods = ordered_methods(pd.Series([k[2] for k in keys]))
    datasets = ordered_datasets(pd.Series([k[0] for k in keys]))
    budgets = sorted({k[1] for k in keys})
    image, text = _source_pair(_main(after))
    caption = (
        f"Before -> after: each method's test mean recall (%, mean of IR@1/5/10 and TR@1/5/10; "
        f"{TRACK_TEXT.get(track, track)}; source encoders {image} + {text}) in the results given as --before "
        "(Before) and in these (After), mean ± std over distillation seeds; Change = After - Before ± the "
        "half-width of the Welch 95% interval over seeds (none with fewer than 2 seeds on a side). "
        f"Protocol {after['protocol'].iloc[0]}. – not run on that side."
    )
    columns = _pairs_method_columns(datasets, ("Before", "After", "Change"))
    table = Table(f"before_after_{track}", "Before -> after", caption, columns, labels=2)
    for budget in budgets:
        shown = [m for m in methods if any((d, budget, m) in keys for d in datasets)]
        for k, method in enumerate(shown):
            row = [Cell(text=str(budget) if k == 0 else ""), Cell(text=method_name(method))]
            for d in datasets:
                a, b = old.get((d, budget, method)), new.get((d, budget, method))
                used = files.get((d, budget, method), ())
                row += [_cell(a, 0), _cell(b, 0, sources=used)]
                if a is None or b is None or not a.n or not b.n:
                    row.append(Cell(mean=math.nan))
                    continue
                half = welch_half(b, a)
                row.append(Cell(mean=b.mean - a.mean, std=half, signed=True, ci=half, sources=used))
            table.add_row(row, new_group=k == 0)
    return table


# ------------------------------------------------------------------------------ gain over the initial set


def initial_gain_table(frame: pd.DataFrame) -> Table | None:
    """Rows budget x method (those whose results carry their iteration-0 set), columns dataset x (the gain
    over that set ± the 95% t-interval of its mean over seeds, the number of seeds, the initial set's
    mean recall); hard track, source encoders, main grid. None when no result carries an initial set.

    Per distillation seed the gain is the set's mean recall minus its own initial set's, both trained
    and scored with the cell's evaluation seeds, so the seeds pair; the interval is over those paired
    differences (t-quantile, n - 1 degrees of freedom), none with one seed.
    """
    df = _main(frame)
    df = df[(df["track"] == "hard") & df["source"] & df["metric"].isin(INITIAL_METRICS)]
    if df.empty:
        return None
    # No repetition spread: one seed gives no interval (the gain's noise is over distillation seeds).
    stats = {
        key: seed_stat(g["value"].to_numpy(dtype=float))
        for key, g in df.groupby(["dataset", "budget", "method", "metric"], sort=False)
    }
    files = _files(df, ["dataset", "budget", "method"])
    methods, datasets = ordered_methods(df["method"]), ordered_datasets(df["dataset"])
    budgets = sorted(set(df["budget"]))
    image, text = _source_pair(df)
    caption = (
        f"Gain over the initial set: each iterative method's test mean recall (%, mean of IR@1/5/10 and "
        f"TR@1/5/10; hard track, source encoders {image} + {text}) minus that of its own iteration-0 set, "
        "trained and scored with the same evaluation seeds, per distillation seed. Gain = mean over seeds "
        "± the 95% t-interval of that mean (n - 1 degrees of freedom; none with one seed); Seeds = n; "
        f"Iteration 0 = the initial set's mean recall. Protocol {frame['protocol'].iloc[0]}. – not run."
    )
    columns = _pairs_method_columns(datasets, ("Gain", "Seeds", "Iteration 0"))
    table = Table("initial_gain", "Gain over the initial set", caption, columns, labels=2)
    for budget in budgets:
        shown = [m for m in methods if any((d, budget, m) in files for d in datasets)]
        for k, method in enumerate(shown):
            row = [Cell(text=str(budget) if k == 0 else ""), Cell(text=method_name(method))]
            for d in datasets:
                used = files.get((d, budget, method), ())
                gain = stats.get((d, budget, method, "initial_gain"))
                start = stats.get((d, budget, method, "initial_mean"))
                if gain is None or not gain.n:
                    row += [Cell(mean=math.nan)] * 3
                    continue
                row.append(Cell(mean=gain.mean, std=gain.ci, signed=True, ci=gain.ci, sources=used))
                row.append(Cell(mean=float(gain.n), digits=0, sources=used))
                row.append(_cell(start, 0, spread=False, sources=used))
            table.add_row(row, new_group=k == 0)
    return table


# --------------------------------------------------------------------------------------------- run length


def _still_rising(frame: pd.DataFrame) -> set[tuple[str, int, str]]:
    """(dataset, budget, method) of the main grid with a seed that was still rising at the maximum."""
    df = _main(frame)
    df = df[(df["track"] == TIMING_TRACK) & (df["metric"] == "still_rising") & (df["value"] > 0)]
    return set(zip(df["dataset"], df["budget"], df["method"], strict=True))


def _median_cell(values: np.ndarray, sources: tuple[str, ...]) -> Cell:
    """The median of whole numbers, shown whole (a half from an even count of seeds keeps its .5)."""
    values = values[~np.isnan(values)]
    if not len(values):
        return Cell(mean=math.nan)
    median = float(np.median(values))
    return Cell(mean=median, digits=0 if median.is_integer() else 1, thousands=True, sources=sources)


def _count_cell(flags: np.ndarray, sources: tuple[str, ...]) -> Cell:
    """k/n: how many of the n seeds carry the flag (sorted on the page by the fraction)."""
    k, n = int(np.sum(flags > 0)), len(flags)
    return Cell(text=f"{k}/{n}", mean=k / n, sources=sources)


def run_length_table(frame: pd.DataFrame) -> Table | None:
    """Rows dataset, budget x method (cells whose results say how the distillation loop stopped), columns
    Seeds, Iterations (median over seeds of the iterations run), Best iteration (median of the hard
    track's chosen iteration), Max iterations (the protocol's), Plateau and Still rising (k/n seeds);
    main grid. None when no result records its stop (coresets, result files from before the rule)."""
    df = _main(frame)
    df = df[(df["track"] == TIMING_TRACK) & (df["method"] != FULL_DATA)]
    stopped = df[df["metric"] == "plateau"][["dataset", "budget", "method", "seed"]]
    if stopped.empty:
        return None
    df = df.merge(stopped, on=["dataset", "budget", "method", "seed"])  # only seeds that record their stop
    wide = df.pivot_table(
        index=["dataset", "budget", "method", "seed"], columns="metric", values="value", aggfunc="first"
    )
    for metric in ("iterations", "iters_to_best", *RUN_METRICS):
        if metric not in wide:
            wide[metric] = math.nan
    groups = {key: g for key, g in wide.groupby(level=["dataset", "budget", "method"])}
    files = _files(df, ["dataset", "budget", "method"])
    methods, budgets, datasets = _grid(frame)
    columns = [("Dataset",), ("Pairs",), ("Method",), ("Seeds",), ("Iterations",), ("Best iteration",),
               ("Max iterations",), ("Plateau",), ("Still rising",)]  # fmt: skip
    caption = (
        "Run length of each iterative method under the protocol's one stopping rule ([distill]: val checks "
        "every eval_every iterations; a stop once no track has improved for patience checks, else at "
        "max_iterations). Seeds = distillation seeds; Iterations = median over seeds of the iterations run; "
        "Best iteration = median over seeds of the hard track's chosen iteration; Max iterations = the "
        "protocol's maximum; Plateau = seeds that stopped on the plateau rule / seeds; Still rising = seeds "
        "that reached the maximum without a plateau / seeds. "
        f"Protocol {frame['protocol'].iloc[0]}, main grid; coresets run no iterations and have no row."
    )
    table = Table("run_length", "Run length", caption, columns, labels=3)
    for dataset in datasets:
        for b, budget in enumerate(budgets):
            shown = [m for m in methods if (dataset, budget, m) in groups]
            for k, method in enumerate(shown):
                g, used = groups[(dataset, budget, method)], files.get((dataset, budget, method), ())
                rising = g["still_rising"].to_numpy(dtype=float)
                row = [
                    Cell(text=dataset_name(dataset) if b == 0 and k == 0 else ""),
                    Cell(text=str(budget) if k == 0 else ""),
                    _method_label(method, {}, bool(np.nansum(rising) > 0)),
                    Cell(mean=float(len(g)), digits=0, sources=used),
                    _median_cell(g["iterations"].to_numpy(dtype=float), used),
                    _median_cell(g["iters_to_best"].to_numpy(dtype=float), used),
                    _median_cell(g["max_iterations"].to_numpy(dtype=float), used),
                    _count_cell(g["plateau"].to_numpy(dtype=float), used),
                    _count_cell(np.nan_to_num(rising), used),
                ]
                table.add_row(row, new_group=k == 0)
    _notes(table, {}, 0)
    return table


# ----------------------------------------------------------------------------------------------- tuning

UNTUNED = "untuned"
NOTHING_TO_TUNE = "0 (nothing to tune)"
NOT_RECORDED = "not recorded"
# (metric, header, digits) of a tuned cell's provenance
TUNING_COLUMNS = (
    ("tuning_trials", "Trials", 0),
    ("tuning_complete", "Complete", 0),
    ("tuning_pruned", "Pruned", 0),
    ("tuning_failed", "Failed", 0),
    ("tuning_cpu_hours", "CPU hours", 2),
    ("tuning_best_val", "Best val", 1),
    ("tuning_trial", "Trial", 0),
)


def _tuning_of_seed(values: dict[str, float]) -> tuple[float | None, ...]:
    """What one seed records about its tuning, comparable across seeds (NaN and absent read None)."""
    return tuple(None if math.isnan(values.get(m, math.nan)) else values[m] for m in TUNING_METRICS)


def tuning_table(frame: pd.DataFrame) -> Table | None:
    """Rows dataset, budget x method (every cell of the main grid but the full data), columns the tuning
    provenance of its settings: Trials, Complete, Pruned, Failed, CPU hours, Best val, Trial. A method
    that ran with its defaults reads `untuned`, a coreset `0 (nothing to tune)`, a result from before
    results recorded their tuning `not recorded`. None when no result of the grid was tuned."""
    main = _main(frame)
    main = main[main["method"] != FULL_DATA]
    df = main[(main["track"] == TIMING_TRACK) & main["metric"].isin(TUNING_METRICS)]
    if not (df["metric"].eq("tuned") & df["value"].gt(0)).any():
        return None
    keys = ["dataset", "budget", "method"]
    per_seed: dict[tuple, dict[int, dict[str, float]]] = {}
    for d, b, m, seed, metric, value in zip(
        df["dataset"], df["budget"], df["method"], df["seed"], df["metric"], df["value"], strict=True
    ):
        per_seed.setdefault((d, b, m), {}).setdefault(int(seed), {})[metric] = float(value)
    files = _files(main, keys)
    for (d, b, m), g in main.groupby(keys, sort=False):  # a seed that records nothing counts too
        for seed in set(g["seed"]):
            per_seed.setdefault((d, b, m), {}).setdefault(int(seed), {})
    methods, budgets, datasets = _grid(frame)
    columns = [("Dataset",), ("Pairs",), ("Method",), *((header,) for _, header, _ in TUNING_COLUMNS)]
    table = Table("tuning", "Tuning", "", columns, labels=3)
    trials: set[int] = set()
    disagree: list[str] = []
    for dataset in datasets:
        for b, budget in enumerate(budgets):
            shown = [m for m in methods if (dataset, budget, m) in files]
            for k, method in enumerate(shown):
                used = files[(dataset, budget, method)]
                seeds = per_seed.get((dataset, budget, method), {})
                if len({_tuning_of_seed(v) for v in seeds.values()}) > 1:
                    disagree.append(f"{dataset_name(dataset)} {budget} {method_name(method)}")
                first = seeds[min(seeds)] if seeds else {}  # the lowest seed's
                row = [
                    Cell(text=dataset_name(dataset) if b == 0 and k == 0 else ""),
                    Cell(text=str(budget) if k == 0 else ""),
                    Cell(text=method_name(method)),
                ]
                blank = [Cell(mean=math.nan)] * (len(TUNING_COLUMNS) - 1)
                if first.get("tuned", 0.0) > 0:
                    row += [
                        Cell(mean=first.get(metric, math.nan), digits=digits, sources=used)
                        for metric, _, digits in TUNING_COLUMNS
                    ]
                    if not math.isnan(first.get("tuning_trials", math.nan)):
                        trials.add(int(first["tuning_trials"]))
                elif first.get("tuning_trials") == 0.0:
                    row += [Cell(text=NOTHING_TO_TUNE, mean=0.0, sources=used), *blank]
                elif "tuned" in first:
                    row += [Cell(text=UNTUNED, sources=used), *blank]
                else:
                    row += [Cell(text=NOT_RECORDED, sources=used), *blank]
                table.add_row(row, new_group=k == 0)
    counts = f": {', '.join(map(str, sorted(trials)))} here" if trials else ""
    table.caption = (
        f"Tuning behind each cell's settings (`mdd-bench tune`; protocol {frame['protocol'].iloc[0]}, main "
        "grid). Trials = the study's counted trials (Complete + Pruned + Failed); the protocol fixes the "
        f"count ([tuning] trials), the same for every method{counts}. CPU hours = the study's "
        "CPU time; Best val = the chosen trial's objective, the val mean recall (%) of the protocol's "
        "[tuning] objective track (val split, never test); Trial = the chosen trial's number. untuned: "
        "the method ran with its defaults; 0 (nothing to tune): a method with no search space (a coreset); "
        "– none."
    )
    if disagree:
        table.caption += (
            f" Seeds tuned differently (different studies or trials), the lowest seed's shown: "
            f"{'; '.join(disagree)}."
        )
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
        files = _files(part, ["budget", "method"])
        time_unit, seconds = _unit(_largest(wide[["total", "wall"]]), (("min", 60.0), ("s", 1.0)))
        wide[["total", "wall"]] = wide[["total", "wall"]] / seconds
        units = (("GB", 2.0**30), ("MB", 2.0**20), ("KB", 2.0**10), ("B", 1.0))
        byte_unit, size = _unit(_largest(wide[["storage_bytes"]]), units)
        wide["storage"] = wide["storage_bytes"] / size
        has_gpu = wide.get("cuda_peak_mem_mb", pd.Series(dtype=float)).notna().any()
        cols = [c for c in TIMING_COLUMNS if c[0] != "cuda_peak_mem_mb" or has_gpu]
        det = part.groupby(["budget", "method"])["deterministic"].all() if "deterministic" in part else {}
        stats = {
            (b, m, key): seed_stat(g[key].to_numpy(dtype=float), deterministic=bool(det.get((b, m), False)))
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
                    used = files.get((budget, method), ())
                    cell = _cell(stats.get((budget, method, key)), n_max, digits, spread=False, sources=used)
                    cell = replace(cell, thousands=key == "iters_to_best")
                    base = stats.get((budget, baseline, key))
                    comparable = base is not None and base.n > 0 and base.mean > 0
                    if key in SAVING_COLUMNS and method != baseline and comparable and not cell.missing:
                        cell = replace(cell, change=cell.mean / base.mean - 1)
                    row.append(cell)
                table.add_row(row, new_group=k == 0)
        _notes(table, {}, n_max, spread=False)
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


def ablation_tables(frame: pd.DataFrame, track: str, interval: str = "std") -> list[Table]:
    """One table per ablation group: rows variant (per dataset and budget), columns IR, TR, Mean. The
    trajectory family's `factors` group has its own table of paired changes (`factors.py`). A group with
    one variant on this track (its other variants ran the other track) has nothing to compare: no table."""
    df = frame[
        ~frame["ablation_group"].isin(["", FACTORS_GROUP]) & (frame["track"] == track) & frame["source"]
    ]
    df = df[df["metric"].isin(RETRIEVAL_COLUMNS)]
    tables = []
    for group in sorted(set(df["ablation_group"])):
        part = df[df["ablation_group"] == group]
        if part["ablation_variant"].nunique() < 2:
            continue
        values = _ablation_seed_values(part)
        files = _files(part, ["dataset", "budget", "method", "ablation_variant"])
        order = part.groupby("ablation_variant")["ablation_order"].min()
        variants = sorted(order.index, key=lambda v: (math.isnan(order[v]), order[v], v))
        blocks = sorted(set(zip(values["dataset"], values["budget"], strict=True)))
        methods = ordered_methods(part["method"])
        stats = {
            (d, b, m, v, col): seed_stat(g[col].to_numpy(dtype=float))
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
            f"source encoders {image} + {text}. {_seeds_text(n_max, True, interval)}{_repetitions(part)}. "
            f"{_BOLD_RULE} – not run."
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
                used = files.get((dataset, budget, method, variant), ())
                row += [
                    _cell(
                        stats.get((dataset, budget, method, variant, c)),
                        n_max,
                        2,
                        interval=interval,
                        sources=used,
                    )
                    for c in ("IR", "TR", "Mean")
                ]
                table.add_row(row, new_group=k == 0)
            _bold_best(table, list(range(first, len(table.rows))), range(labels, len(columns)))
        _notes(table, extras, n_max)
        tables.append(table)
    return tables


# ------------------------------------------------------------------------------------ protocols compared

ALL_PAIRS = "all"  # the budget of the full-data upper bound in the comparison


@dataclass(frozen=True)
class _Comparison:
    """What the comparison table and its CSV share: the protocols with this track (the reference first),
    their source-pair mean recall rows, and the seed statistics per (dataset, budget, method, protocol),
    the full-data upper bound under budget ALL_PAIRS."""

    protocols: tuple[str, ...]
    rows: pd.DataFrame
    stats: dict[tuple, Stat]

    def difference(self, dataset: str, budget: int | str, method: str, protocol: str) -> float:
        """Mean under `protocol` minus the mean under the reference (NaN when either is missing)."""
        a = self.stats.get((dataset, budget, method, protocol))
        b = self.stats.get((dataset, budget, method, self.protocols[0]))
        return a.mean - b.mean if a is not None and b is not None and a.n and b.n else math.nan


def _comparison(frame: pd.DataFrame, protocols: tuple[str, ...], track: str) -> _Comparison | None:
    """None unless two of `protocols` have results in this track."""
    df = _main(frame)
    df = df[(df["track"] == track) & df["source"] & (df["metric"] == "mean") & df["protocol"].isin(protocols)]
    present = tuple(p for p in protocols if p in set(df["protocol"]))
    if len(present) < 2:
        return None
    full = df["method"] == FULL_DATA
    stats = _agg(df[~full], ["dataset", "budget", "method", "protocol"])
    stats.update(
        {(d, ALL_PAIRS, FULL_DATA, p): s for (d, p), s in _agg(df[full], ["dataset", "protocol"]).items()}
    )
    return _Comparison(present, df, stats)


def _comparison_blocks(comparison: _Comparison) -> list[tuple[int | str, list[str]]]:
    """(budget, methods) blocks of rows: the main grid's budgets, then the full data if it ran."""
    methods, budgets, _ = _grid(comparison.rows)
    blocks: list[tuple[int | str, list[str]]] = [(b, methods) for b in budgets]
    if any(m == FULL_DATA for _, _, m, _ in comparison.stats):
        blocks.append((ALL_PAIRS, [FULL_DATA]))
    return blocks


def protocol_comparison(frame: pd.DataFrame, protocols: tuple[str, ...], track: str) -> pd.DataFrame | None:
    """The comparison as tidy rows (its CSV): per dataset, budget, method and protocol, the source pair's
    mean recall over seeds (std ddof=1, 95% interval, seeds) and its difference to the first protocol.
    None unless two of `protocols` have results in this track."""
    comparison = _comparison(frame, protocols, track)
    if comparison is None:
        return None
    reference = comparison.protocols[0]
    rows = []
    for d in ordered_datasets(comparison.rows["dataset"]):
        for budget, methods in _comparison_blocks(comparison):
            for m in methods:
                for p in comparison.protocols:
                    stat = comparison.stats.get((d, budget, m, p))
                    if stat is None or not stat.n:
                        continue
                    image, text = _source_pair(comparison.rows[comparison.rows["protocol"] == p])
                    diff = comparison.difference(d, budget, m, p) if p != reference else math.nan
                    rows.append(
                        {"track": track, "dataset": d, "budget": str(budget), "method": m, "protocol": p,
                         "image_encoder": image, "text_encoder": text, "mean": stat.mean, "std": stat.std,
                         "ci95": stat.ci, "seeds": stat.n, "deterministic": stat.deterministic,
                         "reference": reference, "difference": diff}
                    )  # fmt: skip
    return pd.DataFrame(rows)


def protocol_table(
    frame: pd.DataFrame, protocols: tuple[str, ...], track: str, interval: str = "std"
) -> Table | None:
    """Rows budget x method (+ the full-data upper bound), columns dataset x (each protocol's mean recall
    of the source encoders, then each variant's difference to the first protocol). `frame` holds the
    results of every protocol of one lineage; None unless two of them have this track."""
    comparison = _comparison(frame, protocols, track)
    if comparison is None:
        return None
    (reference, *variants), df, stats = comparison.protocols, comparison.rows, comparison.stats
    datasets = ordered_datasets(df["dataset"])
    files = _files(df, ["dataset", "budget", "method", "protocol"])
    full_files = _files(df[df["method"] == FULL_DATA], ["dataset", "protocol"])
    files.update({(d, ALL_PAIRS, FULL_DATA, p): f for (d, p), f in full_files.items()})
    n_max = max((s.n for (_, _, m, _), s in stats.items() if m != FULL_DATA), default=1)
    n_full = max((s.n for (_, _, m, _), s in stats.items() if m == FULL_DATA), default=1)
    extras = _extras_by_method(df)
    encoders = "; ".join(
        f"{p}: {' + '.join(_source_pair(df[df['protocol'] == p]))}" for p in comparison.protocols
    )
    deltas = ", ".join(f"Δ {v} = {v} minus {reference}" for v in variants)
    caption = (
        f"Protocols compared: mean test recall (%, mean of IR@1/5/10 and TR@1/5/10) of the source encoders "
        f"({encoders}) under each protocol of one lineage, {TRACK_TEXT.get(track, track + ' track')}. "
        f"{_seeds_text(n_max, True, interval)}{_repetitions(df[df['method'] != FULL_DATA])}; {deltas} "
        "(the difference of the means, so its noise is both protocols'). – not run."
    )
    columns = [("", "Pairs"), ("", "Method")]
    for d in datasets:
        columns += [(dataset_name(d), p) for p in comparison.protocols]
        columns += [(dataset_name(d), f"Δ {v}") for v in variants]
    title = f"Protocols compared ({', '.join(comparison.protocols)})"
    table = Table(f"protocols_{track}", title, caption, columns, labels=2)
    for budget, methods in _comparison_blocks(comparison):
        for k, method in enumerate(methods):
            row = [Cell(text=str(budget) if k == 0 else ""), _method_label(method, extras)]
            for d in datasets:
                for p in comparison.protocols:
                    used = files.get((d, budget, method, p), ())
                    seeds = n_full if method == FULL_DATA else n_max
                    row.append(
                        _cell(stats.get((d, budget, method, p)), seeds, interval=interval, sources=used)
                    )
                for v in variants:
                    used = tuple(f for p in (reference, v) for f in files.get((d, budget, method, p), ()))
                    diff = comparison.difference(d, budget, method, v)
                    row.append(Cell(mean=diff, signed=True, sources=used))
            table.add_row(row, new_group=k == 0)
    table.notes += [f"{p}: {description(p)}." for p in comparison.protocols if description(p)]
    _notes(table, extras, n_max)
    return table


def build_tables(
    frame: pd.DataFrame,
    track: str,
    baseline: str | None = None,
    interval: str = "std",
    lineage: Lineage | None = None,
    before: pd.DataFrame | None = None,
) -> list[Table]:
    """Every table of one protocol's results, in the paper's order; with `lineage` (the protocol has
    variants or a base among the results), the protocols compared last; with `before` (the same
    protocol's results from another folder, e.g. the grid before tuning), before -> after second."""
    retrieval = retrieval_table(frame, track, interval)
    note = builds_note(frame)
    if note is not None:
        retrieval.notes.append(note)
    tables = [
        retrieval,
        before_after_table(before, frame, track) if before is not None else None,
        cross_arch_table(frame, track),
        initial_gain_table(frame),
        run_length_table(frame),
    ]
    compared = protocol_table(lineage.frame, lineage.protocols, track, interval) if lineage else None
    tuning = tuning_table(frame)
    factors = factor_table(frame, track)
    return mark_tables(
        [t for t in tables if t is not None]
        + timing_tables(frame, baseline)
        + ([tuning] if tuning is not None else [])
        + ablation_tables(frame, track, interval)
        + ([factors] if factors is not None else [])
        + ([compared] if compared is not None else []),
        frame,
    )
