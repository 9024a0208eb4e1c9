"""The grid's cells whose val curve was still rising at the run-length rule's maximum in most seeds: the
ones issue 34 gives one longer run (maximum x3) to show where they end.

Prints one `PROTOCOL:METHOD:BUDGET:MAX` line per such cell of the main grid (source encoders, no
ablation), MAX being the maximum its runs had; `fair_grid.sh` runs seed 0 of each to 3 x MAX.

    python benchmarks/still_rising.py --runs reports/cpu/runs-tuned
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mdd_bench.report.frame import TIMING_TRACK, load_frame


def rising_cells(frame: pd.DataFrame) -> list[tuple[str, str, int, int]]:
    """(protocol, method, budget, max_iterations) where more than half the seeds reached the maximum
    without a plateau."""
    main = frame[(frame["ablation_group"].fillna("") == "") & (frame["track"] == TIMING_TRACK)]
    flags = main[main["metric"] == "still_rising"]
    maxima = main[main["metric"] == "max_iterations"]
    out = []
    for (protocol, method, budget), cell in flags.groupby(["protocol", "method", "budget"], sort=True):
        per_seed = cell.groupby("seed")["value"].max()
        if (per_seed > 0).sum() * 2 > len(per_seed):
            top = maxima[(maxima["protocol"] == protocol) & (maxima["method"] == method)
                         & (maxima["budget"] == budget)]["value"].max()  # fmt: skip
            out.append((str(protocol), str(method), int(budget), int(top)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True)
    args = parser.parse_args()
    if not args.runs.is_dir():  # no grid yet: no cell to lengthen
        return
    for protocol, method, budget, top in rising_cells(load_frame(args.runs)):
        print(f"{protocol}:{method}:{budget}:{top}")


if __name__ == "__main__":
    main()
