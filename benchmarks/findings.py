"""Fill `reports/FINDINGS.md`'s generated block from the committed result files, so its numbers and
verdicts cannot drift from `reports/cpu/runs`. The prose around the block is written by hand.

The block between `<!-- findings:begin -->` and `<!-- findings:end -->` holds the poster's claims with
their verdicts, RepBlend's claim, the coresets against random, then every table of
`findings_numbers.py` for both tracks. A test checks the committed file against this output.

    python benchmarks/findings.py            # rewrite reports/FINDINGS.md in place
    python benchmarks/findings.py --check    # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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


def block(runs: Path, bench: Path, protocol: str = "cpu") -> str:
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
            numbers.blend_section(frame, track),
        ]
    sections.append(numbers.timing_section(frame, protocol))
    return BEGIN + "\n" + "\n\n".join(s.replace("### ", "#### ", 1) for s in sections) + "\n" + END


def updated(findings: str, runs: Path, bench: Path) -> str:
    return replace_block(findings, BEGIN, END, block(runs, bench), name="FINDINGS.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=Path, default=REPO / "reports" / "FINDINGS.md")
    parser.add_argument("--runs", type=Path, default=REPO / "reports" / "cpu" / "runs")
    parser.add_argument("--bench", type=Path, default=REPO / "reports" / "cpu" / "bench_trajectory.txt")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when out of date")
    args = parser.parse_args()
    current = args.findings.read_text()
    new = updated(current, args.runs, args.bench)
    if args.check:
        sys.exit(0 if new == current else 1)
    args.findings.write_text(new)


if __name__ == "__main__":
    main()
