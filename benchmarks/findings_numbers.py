"""Every number `reports/FINDINGS.md` quotes, computed from the committed result files.

Seed means with their spread, differences between methods with a Welch 95% interval (seeds are the
unit: each seed is an independent distillation and evaluation), rankings by raw recall and by
improvement over random, cross-architecture drops, ablation orderings and timing ratios.

    python benchmarks/findings_numbers.py --runs reports/cpu/runs --protocol cpu > /tmp/findings.md
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mdd_bench.report.factors import FACTORS_GROUP, factor_table
from mdd_bench.report.frame import load_frame
from mdd_bench.report.markdown import table_md

SEED_CLAIMS = {  # the poster's comparisons: MDM against each trajectory method and LoRS
    "mdm": ("mtt-vl", "tesla", "lors"),
    "repblend": ("lors",),
}
CORESETS = ("random", "herding", "k-center", "forgetting")
TIMED = ("mdm", "lors", "tesla", "mtt-vl", "repblend")


@dataclass(frozen=True)
class Diff:
    """mean(a) - mean(b) over seeds with the Welch 95% interval's half-width (NaN below 2 seeds each)."""

    diff: float
    half: float
    n_a: int
    n_b: int

    def text(self) -> str:
        if math.isnan(self.diff):
            return "--"
        half = "n/a" if math.isnan(self.half) else f"{self.half:.1f}"
        return f"{self.diff:+.1f} ± {half} (n={self.n_a}/{self.n_b})"


@dataclass(frozen=True)
class Sample:
    """A cell's mean, spread and count. Over seeds normally; a deterministic method has one distillation
    seed, so its spread is over evaluation runs (narrower: it leaves out distillation noise)."""

    mean: float
    sd: float
    n: int

    @classmethod
    def of(cls, values: np.ndarray) -> Sample:
        values = np.asarray(values, dtype=float)
        values = values[~np.isnan(values)]
        if not len(values):
            return cls(math.nan, math.nan, 0)
        return cls(
            float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan, len(values)
        )


def welch_samples(a: Sample, b: Sample) -> Diff:
    if not a.n or not b.n:
        return Diff(math.nan, math.nan, a.n, b.n)
    diff = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Diff(diff, math.nan, a.n, b.n)
    va, vb = a.sd**2 / a.n, b.sd**2 / b.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Diff(diff, 0.0, a.n, b.n)
    dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    return Diff(diff, float(stats.t.ppf(0.975, dof) * se), a.n, b.n)


def welch(a: np.ndarray, b: np.ndarray) -> Diff:
    return welch_samples(Sample.of(a), Sample.of(b))


def seed_values(frame: pd.DataFrame, protocol: str, track: str, metric: str = "mean") -> pd.DataFrame:
    """(method, budget, seed) -> value on the source encoder pair, main grid only (no ablation cells)."""
    f = frame[
        (frame["protocol"] == protocol)
        & (frame["track"] == track)
        & (frame["metric"] == metric)
        & (frame["source"].astype(bool))
        & (frame["ablation_group"].isna() | (frame["ablation_group"] == ""))
    ]
    return f.reindex(columns=["method", "budget", "seed", "value", "rep_std", "repetitions", "deterministic"])


def sample_of(table: pd.DataFrame, method: str, budget: int) -> Sample:
    """Seeds as the unit; a deterministic method's single seed falls back to its evaluation runs."""
    rows = table[(table["method"] == method) & (table["budget"] == budget)]
    if len(rows) == 1 and rows["deterministic"].fillna(False).astype(bool).all():
        row = rows.iloc[0]
        return Sample(float(row["value"]), float(row["rep_std"]), int(row["repetitions"]))
    return Sample.of(rows["value"].to_numpy(dtype=float))


def values_of(table: pd.DataFrame, method: str, budget: int) -> np.ndarray:
    return table[(table["method"] == method) & (table["budget"] == budget)]["value"].to_numpy(dtype=float)


def fmt(values: np.ndarray, digits: int = 1) -> str:
    values = values[~np.isnan(values)]
    if not len(values):
        return "--"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def recall_section(frame: pd.DataFrame, protocol: str, track: str) -> str:
    recall = seed_values(frame, protocol, track)
    ior = seed_values(frame, protocol, track, "ior")
    methods = sorted(set(recall["method"]) - {"full-data"})
    budgets = sorted(b for b in set(recall[recall["method"] != "full-data"]["budget"]))
    rows = []
    for m in methods:
        row = [m]
        for b in budgets:
            row.append(f"{fmt(values_of(recall, m, b))} / IOR {fmt(100 * values_of(ior, m, b))}")
        rows.append(row)
    head = ["method", *[f"{b} pairs: mean recall / IOR (points)" for b in budgets]]
    return f"### Mean recall ({track} track), mean ± std over seeds\n\n" + table(head, rows)


def claims_section(frame: pd.DataFrame, protocol: str, track: str) -> str:
    recall = seed_values(frame, protocol, track)
    budgets = sorted(set(recall[recall["method"] != "full-data"]["budget"]))
    rows = []
    for a, others in SEED_CLAIMS.items():
        for b_method in others:
            row = [f"{a} − {b_method}"]
            for b in budgets:
                row.append(welch(values_of(recall, a, b), values_of(recall, b_method, b)).text())
            rows.append(row)
    head = ["difference", *[f"{b} pairs" for b in budgets]]
    return (
        f"### Differences of mean recall ({track} track): diff ± Welch 95% half-width over seeds\n\n"
        + table(head, rows)
    )


def ranking_section(frame: pd.DataFrame, protocol: str, track: str) -> str:
    recall = seed_values(frame, protocol, track)
    ior = seed_values(frame, protocol, track, "ior")
    lines = [f"### Rankings ({track} track): by raw recall and by improvement over random"]
    for b in sorted(set(recall[recall["method"] != "full-data"]["budget"])):
        by_raw = (
            recall[recall["budget"] == b].groupby("method")["value"].mean().drop("full-data", errors="ignore")
        )
        by_ior = ior[ior["budget"] == b].groupby("method")["value"].mean()
        raw_order = list(by_raw.sort_values(ascending=False).index)
        ior_order = list(by_ior.sort_values(ascending=False).index)
        moved = [m for m in raw_order if m in ior_order and raw_order.index(m) != ior_order.index(m)]
        lines.append(
            f"- {b} pairs: raw {' > '.join(raw_order)}; IOR {' > '.join(ior_order)}; "
            + (f"positions differ for {', '.join(moved)}" if moved else "same order")
        )
    return "\n".join(lines)


def source_and_unseen(
    frame: pd.DataFrame, protocol: str, track: str, method: str, budget: int
) -> tuple[pd.Series, pd.Series, int]:
    """Per-seed mean recall on the source pair and averaged over the unseen pairs (seeds having both),
    and how many unseen (image, text) pairs there are: the one reading of a cross-architecture cell."""
    f = frame[
        (frame["protocol"] == protocol) & (frame["track"] == track) & (frame["metric"] == "mean")
        & (frame["budget"] == budget) & (frame["method"] == method)
        & (frame["ablation_group"].isna() | (frame["ablation_group"] == ""))
    ]  # fmt: skip
    unseen_rows = f[~f["source"].astype(bool)]
    unseen = unseen_rows.groupby("seed")["value"].mean()
    source = f[f["source"].astype(bool)].groupby("seed")["value"].mean()
    seeds = source.index.intersection(unseen.index)
    pairs = unseen_rows.groupby(["image_encoder", "text_encoder"]).ngroups
    return source[seeds], unseen[seeds], pairs


def cross_arch_section(frame: pd.DataFrame, protocol: str, track: str, budget: int = 100) -> str:
    rows = []
    for method in sorted(frame.loc[frame["protocol"] == protocol, "method"].unique()):
        source, unseen, pairs = source_and_unseen(frame, protocol, track, method, budget)
        if not pairs:
            continue
        drop = (source - unseen).to_numpy(dtype=float)
        relative = 100 * drop / source.to_numpy(dtype=float)
        rows.append(
            [method, fmt(source.to_numpy()), fmt(unseen.to_numpy()), fmt(drop), fmt(relative), str(pairs)]
        )
    head = [
        "method",
        "source pair",
        "mean of unseen pairs",
        "drop (points)",
        "drop (% of source)",
        "unseen pairs",
    ]
    return f"### Cross-architecture at {budget} pairs ({track} track)\n\n" + table(head, rows)


def cost_table(frame: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """(method, budget, seed) x cost metric (time_per_iter_s, iters_to_best, ...), main grid only."""
    f = frame[
        (frame["protocol"] == protocol)
        & (frame["track"] == "-")  # cost rows belong to the cell, not to a track
        & (frame["ablation_group"].isna() | (frame["ablation_group"] == ""))
    ]
    return f.pivot_table(
        index=["method", "budget", "seed"], columns="metric", values="value", aggfunc="first"
    )


def timing_section(frame: pd.DataFrame, protocol: str) -> str:
    wide = cost_table(frame, protocol)
    rows = []
    for (method, budget), g in wide.groupby(level=["method", "budget"]):
        if method not in TIMED or "time_per_iter_s" not in g:
            continue
        per_iter = g["time_per_iter_s"].to_numpy(dtype=float)
        to_best = (g["time_per_iter_s"] * g["iters_to_best"]).to_numpy(dtype=float) / 60
        lors = wide.xs(("lors", budget), level=["method", "budget"]) if method != "lors" else g
        lors_per_iter = lors["time_per_iter_s"].to_numpy(dtype=float) if len(lors) else np.array([math.nan])
        both = not np.isnan(per_iter).all() and not np.isnan(lors_per_iter).all()
        ratio = float(np.nanmean(per_iter) / np.nanmean(lors_per_iter)) if both else math.nan
        rows.append(
            [
                method,
                str(budget),
                fmt(per_iter, 2),
                "--" if math.isnan(ratio) else f"{ratio:.2f}",
                fmt(to_best),
            ]
        )
    head = ["method", "pairs", "time/iter (s)", "ratio to lors", "time to best (min)"]
    return "### Distillation cost (from the grid's result files; contended runs inflate these)\n\n" + table(
        head, rows
    )


def blend_grid(frame: pd.DataFrame, track: str, protocols: tuple[str, str] = ("cpu", "cpu-frozen")) -> dict:
    """RepBlend vs LoRS, each under each protocol: {(method, protocol, budget): seed values}."""
    out = {}
    for protocol in protocols:
        recall = seed_values(frame, protocol, track)
        for method in ("repblend", "lors"):
            for budget in sorted(set(recall.loc[recall["method"] != "full-data", "budget"])):
                out[(method, protocol, budget)] = values_of(recall, method, budget)
    return out


def blend_section(frame: pd.DataFrame, track: str, protocols: tuple[str, str] = ("cpu", "cpu-frozen")) -> str:
    """The 2 x 2 of issue 15: RepBlend's paper compares itself under its own (frozen) protocol with LoRS
    under the old one; the same-protocol differences say how much of that gain is the method's."""
    grid = blend_grid(frame, track, protocols)
    none = np.array([])
    budgets = sorted({b for _, _, b in grid})
    base, frozen = protocols
    rows = [[f"{m} under {p}", *[fmt(grid.get((m, p, b), none)) for b in budgets]]
            for p in protocols for m in ("repblend", "lors")]  # fmt: skip
    crossed = [
        welch(grid.get(("repblend", frozen, b), none), grid.get(("lors", base, b), none)) for b in budgets
    ]
    rows.append([f"repblend@{frozen} − lors@{base} (the paper's comparison)", *[d.text() for d in crossed]])
    same = {}
    for p in protocols:
        same[p] = [welch(grid.get(("repblend", p, b), none), grid.get(("lors", p, b), none)) for b in budgets]
        rows.append([f"repblend − lors, both under {p}", *[d.text() for d in same[p]]])
    kept = []
    for k in range(len(budgets)):
        gain, f = crossed[k], same[frozen][k].diff
        if math.isnan(gain.diff) or math.isnan(f):
            kept.append("--")
        elif math.isnan(gain.half):
            kept.append("-- (fewer than 2 seeds)")
        elif gain.diff - gain.half <= 0:  # a share of noise is any number at all
            kept.append("no gain to share (interval spans 0)")
        else:
            kept.append(f"{100 * f / gain.diff:.0f}%")
    rows.append([f"share of the paper-style gain left under {frozen} alone", *kept])
    head = ["", *[f"{b} pairs" for b in budgets]]
    return f"### RepBlend vs LoRS under both protocols ({track} track), mean recall\n\n" + table(head, rows)


def ablation_section(frame: pd.DataFrame, protocol: str, track: str) -> str:
    """Each ablation group's variants by mean recall, per method and budget (the factors group has its
    own section); a group with one variant on this track (the ablation ran the other track) is left out,
    and so is the section when no group is left."""
    f = frame[
        (frame["protocol"] == protocol)
        & (frame["track"] == track)
        & (frame["metric"] == "mean")
        & (frame["source"].astype(bool))
        & frame["ablation_group"].notna()
        & ~frame["ablation_group"].isin(["", FACTORS_GROUP])
    ]
    lines = [f"### Ablations ({track} track), variants by mean recall"]
    for (group, method, budget), g in f.groupby(["ablation_group", "method", "budget"]):
        means = (
            g.groupby("ablation_variant")["value"]
            .agg(["mean", "std", "count"])
            .sort_values("mean", ascending=False)
        )
        if len(means) < 2:
            continue  # only the main variant on this track (the others ran the hard track): no ranking
        parts = [f"{v} {r['mean']:.1f} ± {r['std']:.1f}" for v, r in means.iterrows()]
        lines.append(f"- {method} {group}, {budget} pairs: " + " > ".join(parts))
    return "\n".join(lines) if len(lines) > 1 else ""


def factor_section(frame: pd.DataFrame, protocol: str, track: str) -> str:
    """The report's factor table itself (each flip's change against the as-configured run, paired by
    seed), so FINDINGS and the report cannot disagree; empty without a factors ablation."""
    factors = factor_table(frame[frame["protocol"] == protocol], track)
    if factors is None:
        return ""
    notes = "".join(f"\n{n}  " for n in factors.notes).rstrip()
    head = f"### Factors of the trajectory family ({track} track)"
    return f"{head}\n\n{table_md(factors)}\n\n{factors.caption}{notes}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=Path, default=Path("reports/cpu/runs"))
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--tracks", default="hard,native")
    args = parser.parse_args()
    frame = load_frame(args.runs)
    sections = []
    for track in args.tracks.split(","):
        sections += [
            recall_section(frame, args.protocol, track),
            claims_section(frame, args.protocol, track),
            ranking_section(frame, args.protocol, track),
            cross_arch_section(frame, args.protocol, track),
            ablation_section(frame, args.protocol, track),
            factor_section(frame, args.protocol, track),
            blend_section(frame, track),
        ]
    sections.append(timing_section(frame, args.protocol))
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
