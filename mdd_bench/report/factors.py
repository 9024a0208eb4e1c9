"""The factor table of the trajectory family: each method as configured, then each of its switches
flipped alone (`mdd-bench ablate METHOD --groups factors`), as the paired change in test mean recall.

The methods share one matching core, so a flip changes nothing else: the change says how much of a
method's result that one switch carries. Per distillation seed the change is the flipped run's mean
recall minus the as-configured run's, both trained and scored with the same evaluation seeds, so the
seeds pair; the interval is the 95% t-interval of the mean of those differences (none with one seed).
A seed that only one of the two runs has is left out of the change.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd

from mdd_bench.report.layout import Cell, Table
from mdd_bench.report.names import dataset_name, method_name, ordered_methods
from mdd_bench.report.seed_stats import Stat, seed_stat

FACTORS_GROUP = "factors"  # the ablation group that `TrajectoryMatching` declares
CONFIGURED = "As configured"  # its first variant: no switch flipped
CARRIES = "◆"  # the flip with the largest change whose interval excludes 0, per method


def _flip_label(variant: str) -> str:
    """ "Gradient: full unroll" reads "Gradient → full unroll": the switch, then the value it was set to."""
    factor, _, value = variant.partition(":")
    return f"{factor.strip()} → {value.strip()}" if value else variant


def _significant(stat: Stat) -> bool:
    return stat.n > 1 and not math.isnan(stat.ci) and abs(stat.mean) > stat.ci


def factor_table(frame: pd.DataFrame, track: str) -> Table | None:
    """Rows method x (as configured, then each flip in declared order); columns mean recall, change
    against as configured ± its 95% interval, seeds. None without a flipped variant on this track."""
    df = frame[
        (frame["ablation_group"] == FACTORS_GROUP)
        & (frame["track"] == track)
        & frame["source"]
        & (frame["metric"] == "mean")
    ]
    if set(df["ablation_variant"]) <= {CONFIGURED}:
        return None  # a track the flips were not evaluated on: nothing to compare
    blocks = sorted(set(zip(df["dataset"], df["budget"], strict=True)))
    labels = 3 if len(blocks) > 1 else 2
    columns = ([("Setting",)] if labels == 3 else []) + [
        ("Method",),
        ("Switch",),
        ("Mean recall",),
        ("Change",),
        ("Seeds",),
    ]
    image, text = (df["image_encoder"].iloc[0], df["text_encoder"].iloc[0])
    where = "" if labels == 3 else f" on {dataset_name(blocks[0][0])} with {blocks[0][1]} pairs"
    caption = (
        f"Factors of the trajectory family{where}: each method as configured, then each switch flipped alone "
        f"with every other setting kept. Mean recall = test mean of IR@1/5/10 and TR@1/5/10 (%, {track} "
        f"track, source encoders {image} + {text}), mean ± 95% t-interval over distillation seeds. Change = "
        "the flipped run minus the as-configured run of the same seed (same evaluation seeds), mean ± 95% "
        "t-interval over the paired seeds; an interval that excludes 0 means the switch matters. Seeds = "
        "the as-configured run's, and for a flip those both runs have. "
        f"Protocol {frame['protocol'].iloc[0]}. – not run."
    )
    table = Table(f"factors_{track}", "Factors of the trajectory family", caption, columns, labels)
    for dataset, budget in blocks:
        part = df[(df["dataset"] == dataset) & (df["budget"] == budget)]
        for m_index, method in enumerate(ordered_methods(part["method"])):
            mine = part[part["method"] == method]
            seeds = mine.pivot_table(
                index="seed", columns="ablation_variant", values="value", aggfunc="first"
            )
            files = {v: tuple(sorted(set(g["file"]))) for v, g in mine.groupby("ablation_variant")}
            order = mine.groupby("ablation_variant")["ablation_order"].min()
            variants = sorted(order.index, key=lambda v: (v != CONFIGURED, math.isnan(order[v]), order[v], v))
            first_row = len(table.rows)
            changes: dict[int, Stat] = {}
            for k, variant in enumerate(variants):
                setting = (
                    f"{dataset_name(dataset)}, {budget}" if labels == 3 and m_index == 0 and k == 0 else ""
                )
                row = [Cell(text=setting)] if labels == 3 else []
                row += [
                    Cell(text=method_name(method) if k == 0 else ""),
                    Cell(text=CONFIGURED if variant == CONFIGURED else _flip_label(variant)),
                ]
                alone = seed_stat(seeds[variant].to_numpy(dtype=float))
                row.append(
                    Cell(mean=alone.mean, std=alone.ci, ci=alone.ci, sources=files[variant])
                    if alone.n
                    else Cell(mean=math.nan)
                )
                if variant == CONFIGURED:
                    row += [Cell(text=""), Cell(mean=float(alone.n), digits=0, sources=files[variant])]
                elif CONFIGURED not in seeds:
                    row += [Cell(mean=math.nan), Cell(mean=math.nan, digits=0)]
                else:
                    diff = (seeds[variant] - seeds[CONFIGURED]).to_numpy(dtype=float)
                    change = seed_stat(diff)  # drops the seeds only one of the two runs has (NaN)
                    used = files[variant] + files[CONFIGURED]
                    if change.n:
                        changes[len(table.rows)] = change
                        row.append(
                            Cell(mean=change.mean, std=change.ci, signed=True, ci=change.ci, sources=used)
                        )
                    else:
                        row.append(Cell(mean=math.nan))
                    row.append(Cell(mean=float(change.n), digits=0, sources=used))
                table.add_row(row, new_group=k == 0 and first_row > 0)
            carried = [r for r, s in changes.items() if _significant(s)]
            if carried:
                top = max(carried, key=lambda r: abs(changes[r].mean))
                col = table.column("Change")
                table.rows[top][col] = replace(
                    table.rows[top][col], marks=table.rows[top][col].marks + CARRIES
                )
    if any(CARRIES in c.marks for row in table.rows for c in row):
        table.notes.append(
            f"{CARRIES} The switch that carries the most of this method's result: the largest change whose "
            "95% interval excludes 0."
        )
    return table
