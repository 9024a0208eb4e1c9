"""Fill `reports/FINDINGS.md`'s generated block from the committed result files, so its numbers and
verdicts cannot drift from `reports/cpu/runs`. The prose around the block is written by hand.

The block between `<!-- findings:begin -->` and `<!-- findings:end -->` holds the poster's claims with
their verdicts, RepBlend's claim, the coresets against random, then every table of
`findings_numbers.py` for both tracks. A test checks the committed file against this output.

With `--before EARLIER_RUNS` and `--tuning SUMMARY` (a grid re-run with tuned values against the one
before it), the block also holds, per budget, the tuning each method got, each method's rank before and
after with Kendall's tau (the cost of unequal tuning), each method's gain over its own initial set, and
the papers' orderings (`fair_rerun.py`'s tables).

    python benchmarks/findings.py            # rewrite reports/FINDINGS.md in place
    python benchmarks/findings.py --check    # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import fair_rerun
import findings_numbers as numbers
from poster_claims import claims_table, coreset_table, repblend_table
from readme_summary import replace_block

from mdd_bench.report.frame import load_frame

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- findings:begin -->", "<!-- findings:end -->"


METHODS = ("random", "herding", "k-center", "forgetting", "mtt-vl", "tesla", "lors", "mdm", "repblend")


def coverage(frame, protocol: str) -> str:
    """How much of the grid the numbers below stand on: finished seeds per cell (source encoders and
    unseen ones), so a reader sees at once which verdicts wait for runs."""
    main = frame[
        (frame["metric"] == "mean") & (frame["ablation_group"].isna() | (frame["ablation_group"] == ""))
        & (frame["track"] == "hard")
    ]  # fmt: skip
    rows = []
    for p in (protocol, f"{protocol}-frozen"):
        f = main[main["protocol"] == p]
        for method in METHODS:
            m = f[f["method"] == method]
            if m.empty and p != protocol:
                continue
            cells = [
                str(m[m["source"].astype(bool) & (m["budget"] == b)]["seed"].nunique())
                for b in (100, 200, 500)
            ]
            unseen = m[~m["source"].astype(bool) & (m["budget"] == 100)]["seed"].nunique()
            rows.append([f"{method} ({p})", *cells, str(unseen)])
    head = ["method (protocol)", "100 pairs", "200 pairs", "500 pairs", "unseen encoders, 100 pairs"]
    return "### Finished seeds per cell (deterministic methods run one)\n\n" + numbers.table(head, rows)


def fair_sections(after, before, tuning: Path | None, protocol: str = "cpu") -> list[str]:
    """Per budget of `after`: the tuning (from the tuner's summary.json), the ranks before -> after
    (`before` a frame, or None), the gain over each method's initial set and the papers' orderings."""
    main = after[(after["protocol"] == protocol) & after["method"].isin(fair_rerun.ITERATIVE)]
    sections = []
    for budget in sorted(int(b) for b in main["budget"].unique()):
        if tuning is not None:
            sections.append(fair_rerun.tuning(tuning, budget))
        for track in ("hard", "native"):
            if before is not None:
                sections.append(fair_rerun.ranks(before, after, protocol, track, budget))
        sections.append(fair_rerun.initial_gains(after, protocol, budget))
        sections += [fair_rerun.orderings(after, protocol, track, budget) for track in ("hard", "native")]
    return sections


def block(
    runs: Path, bench: Path, protocol: str = "cpu", before: Path | None = None, tuning: Path | None = None
) -> str:
    frame = load_frame(runs)
    sections = [
        coverage(frame, protocol),
        claims_table(frame, protocol, "hard", bench),
        claims_table(frame, protocol, "native", bench, recall_only=True),
        repblend_table(frame, "hard"),
        coreset_table(frame, protocol, "hard"),
    ]
    for track in ("hard", "native"):
        sections += [
            numbers.recall_section(frame, protocol, track),
            numbers.ranking_section(frame, protocol, track),
            numbers.cross_arch_section(frame, protocol, track),
            numbers.ablation_section(frame, protocol, track),
            numbers.factor_section(frame, protocol, track),
            numbers.blend_section(frame, track),
        ]
    sections.append(numbers.timing_section(frame, protocol))
    if before is not None or tuning is not None:
        sections += fair_sections(frame, load_frame(before) if before else None, tuning, protocol)
    return BEGIN + "\n" + "\n\n".join(s.replace("### ", "#### ", 1) for s in sections if s) + "\n" + END


def updated(
    findings: str, runs: Path, bench: Path, before: Path | None = None, tuning: Path | None = None
) -> str:
    return replace_block(
        findings, BEGIN, END, block(runs, bench, before=before, tuning=tuning), name="FINDINGS.md"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=Path, default=REPO / "reports" / "FINDINGS.md")
    parser.add_argument("--runs", type=Path, default=REPO / "reports" / "cpu" / "runs")
    parser.add_argument("--bench", type=Path, default=REPO / "reports" / "cpu" / "bench_trajectory.txt")
    parser.add_argument("--before", type=Path, help="the results folder of the grid before this one")
    parser.add_argument("--tuning", type=Path, help="the tuner's summary.json behind --runs' tuned values")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when out of date")
    args = parser.parse_args()
    current = args.findings.read_text()
    new = updated(current, args.runs, args.bench, args.before, args.tuning)
    if args.check:
        sys.exit(0 if new == current else 1)
    args.findings.write_text(new)


if __name__ == "__main__":
    main()
