"""The runner's overhead per cell: a grid's wall time minus the seconds its stages account for.

Runs `random` cells (the cheapest method, so the harness's own cost is visible) twice into fresh
output folders: a warm-up that builds the protocol's caches (data, text features, anchor, reference
model), then the timed grid. Overhead = wall - (distill + evaluate + artifacts), divided by the cells;
it is planning, locking, saving sets, writing result files atomically and publishing the reference.

    python benchmarks/bench_runner.py --protocol cpu --cells 3 --repetitions 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from mdd_bench.protocol import load_protocol
from mdd_bench.run.config import RunConfig
from mdd_bench.run.grid import execute_grid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="smoke")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--cells", type=int, default=3, help="random cells (seeds 0..cells-1)")
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = load_protocol(args.protocol)
    budget = min(args.budget, max(protocol.budgets))

    def grid(out: Path, seeds: list[int]):
        config = RunConfig(
            methods=["random"],
            datasets=[protocol.data.dataset],
            budgets=[budget],
            seeds=seeds,
            tracks=["hard"],
            out=out,
            repetitions=args.repetitions,
            random_baseline=False,
        )
        return execute_grid(protocol, config, log=lambda *_: None, progress=False)

    with tempfile.TemporaryDirectory() as tmp:
        grid(Path(tmp) / "warm", [0])  # builds every cache the timed run reads
        run = grid(Path(tmp) / "timed", list(range(args.cells)))
    accounted = sum(run.stages.values())
    overhead = run.wall_s - accounted
    print(
        json.dumps(
            {
                "protocol": protocol.name,
                "budget": budget,
                "cells": args.cells,
                "repetitions": args.repetitions,
                "threads": args.threads,
                "wall_s": round(run.wall_s, 2),
                "stages_s": {k: round(v, 2) for k, v in run.stages.items()},
                "overhead_s": round(overhead, 2),
                "overhead_per_cell_s": round(overhead / args.cells, 2),
                "overhead_fraction": round(overhead / run.wall_s, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
