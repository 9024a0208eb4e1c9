"""What issue 32's fair re-run changed, from the committed result files: the numbers of its closing note.

- each method's rank among the iterative methods before and after (by seed-mean recall), its move, and
  Kendall's tau between the two orders: the cost of unequal tuning, as a number;
(The before -> after table itself is the report's: `mdd-bench report --runs AFTER --before BEFORE`.)
- each method's paired gain over its own initial set (after; hard track, the same seed's iteration-0 set
  trained the same way) with the 95% t-interval over seeds;
- the papers' orderings (LoRS > TESLA > MTT-VL on Flickr30k, MDM ≈ LoRS) tested on the after runs;
- the tuning each method got (trials complete / pruned / failed, best val, CPU hours) from the tuner's
  summary.json.

    python benchmarks/fair_rerun.py --before reports/cpu/runs --after reports/cpu/runs-tuned \
        --tuning reports/cpu/tuning/summary.json --budget 100
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from findings_numbers import Sample, fmt, seed_values, table, values_of, welch_samples
from poster_claims import verdict
from scipy import stats

from mdd_bench.report.frame import load_frame

ITERATIVE = ("mtt-vl", "tesla", "lors", "repblend", "mdm")
# (a, b, claim): the papers' orderings; `greater` = a above b, `tie` = a ≈ b (MDM's poster: competitive)
ORDERINGS = (
    ("lors", "tesla", "greater"),
    ("tesla", "mtt-vl", "greater"),
    ("lors", "mtt-vl", "greater"),
    ("mdm", "lors", "tie"),
)


def initial_gains(after, protocol: str, budget: int) -> str:
    gains = seed_values(after, protocol, "hard", "initial_gain")
    starts = seed_values(after, protocol, "hard", "initial_mean")
    rows = []
    for method in ITERATIVE:
        values = values_of(gains, method, budget)
        values = values[~np.isnan(values)]
        if len(values) > 1:
            half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
            gain = f"{values.mean():+.1f} ± {half:.1f} (n={len(values)})"
        else:
            gain = f"{values[0]:+.1f} (1 seed)" if len(values) else "--"
        rows.append([method, fmt(values_of(starts, method, budget)), gain])
    header = ["method", "initial set (iteration 0)", "gain over it (95% t-interval over seeds)"]
    return f"### Gain over each method's own initial set, hard track, {budget} pairs\n\n" + table(
        header, rows
    )


def orderings(after, protocol: str, track: str, budget: int) -> str:
    new = seed_values(after, protocol, track)
    rows = []
    for a, b, claim in ORDERINGS:
        d = welch_samples(Sample.of(values_of(new, a, budget)), Sample.of(values_of(new, b, budget)))
        if claim == "tie":
            said = "open" if math.isnan(d.half) else ("holds" if abs(d.diff) <= d.half else "does not hold")
            rows.append([f"{a} ≈ {b}", d.text(), said])
        else:
            rows.append([f"{a} > {b}", d.text(), verdict(d)])
    header = ["papers' ordering", "difference (Welch 95%)", "verdict"]
    return f"### The papers' orderings, {track} track, {budget} pairs (after)\n\n" + table(header, rows)


def ranks(before, after, protocol: str, track: str, budget: int) -> str:
    """Rank (1 = best seed-mean recall) of each iterative method run on both sides, and Kendall's tau."""
    old, new = seed_values(before, protocol, track), seed_values(after, protocol, track)
    means = {}
    for method in ITERATIVE:
        a, b = values_of(old, method, budget), values_of(new, method, budget)
        if len(a[~np.isnan(a)]) and len(b[~np.isnan(b)]):
            means[method] = (float(np.nanmean(a)), float(np.nanmean(b)))
    if len(means) < 2:
        return f"### Ranks, {track} track, {budget} pairs: fewer than 2 methods on both sides"
    order = list(means)
    rank_before = {m: r + 1 for r, m in enumerate(sorted(order, key=lambda m: -means[m][0]))}
    rank_after = {m: r + 1 for r, m in enumerate(sorted(order, key=lambda m: -means[m][1]))}
    rows = [
        [m, f"{means[m][0]:.1f} ({rank_before[m]})", f"{means[m][1]:.1f} ({rank_after[m]})",
         f"{rank_before[m] - rank_after[m]:+d}"]
        for m in sorted(order, key=lambda m: rank_after[m])
    ]  # fmt: skip
    tau = stats.kendalltau([rank_before[m] for m in order], [rank_after[m] for m in order]).statistic
    moved = sum(abs(rank_before[m] - rank_after[m]) for m in order)
    header = ["method", "before (rank)", "after (rank)", "places up"]
    return (
        f"### Ranks, {track} track, {budget} pairs: Kendall's tau before/after {tau:+.2f}, "
        f"{moved} places moved in all\n\n" + table(header, rows)
    )


def tuning(summary: Path, budget: int) -> str:
    studies = json.loads(summary.read_text())["studies"]
    rows = []
    for study in sorted(
        studies, key=lambda s: ITERATIVE.index(s["method"]) if s["method"] in ITERATIVE else 99
    ):
        if study["budget"] != budget:
            continue
        best = (
            "--"
            if study.get("best_val") is None
            else f"{study['best_val']:.2f} (trial {study['best_trial']})"
        )
        counts = f"{study['complete']} / {study['pruned']} / {study['failed']}"
        rows.append([study["method"], counts, best, f"{study['cpu_hours']:.2f}"])
    header = ["method", "trials complete / pruned / failed", "best hard val", "CPU hours"]
    return f"### Tuning, {budget} pairs ({summary})\n\n" + table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, default=Path("reports/cpu/runs"))
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--tuning", type=Path, default=Path("reports/cpu/tuning/summary.json"))
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--tracks", default="hard,native")
    args = parser.parse_args()
    before, after = load_frame(args.before), load_frame(args.after)
    tracks = args.tracks.split(",")
    sections = [initial_gains(after, args.protocol, args.budget)]
    sections += [ranks(before, after, args.protocol, t, args.budget) for t in tracks]
    sections += [orderings(after, args.protocol, t, args.budget) for t in tracks]
    if args.tuning.is_file():
        sections.append(tuning(args.tuning, args.budget))
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
