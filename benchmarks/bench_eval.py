"""One evaluation repetition of a set of random pairs under a protocol (target: <= 30 s at 100 pairs
under `cpu`, 2 cores); with `--archs all`, one repetition per encoder pair (the cross-architecture
grid's cost per cell).

    python benchmarks/bench_eval.py --protocol cpu --budget 100 --archs all --repeats 1
"""

from __future__ import annotations

import argparse
import time

import torch

from mdd_bench.data import load_dataset
from mdd_bench.evaluation.evaluator import Evaluator, arch_grid, random_pairs
from mdd_bench.pretrained.anchors import ensure_anchor
from mdd_bench.protocol import load_protocol
from mdd_bench.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--archs", choices=["source", "all"], default="source")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = load_protocol(args.protocol)
    dataset = load_dataset(protocol.data.dataset, protocol)
    evaluator = Evaluator(Workspace(protocol, dataset, progress=False))
    ensure_anchor(protocol.image.source, protocol)
    distilled = random_pairs(dataset, evaluator.text_embeddings("train"), protocol, args.budget, seed=0)
    evaluator.evaluate(distilled, repetitions=1)  # warm-up: text embeddings, anchor load
    for image, text in arch_grid(protocol, args.archs):
        times = []
        for r in range(args.repeats):
            start = time.perf_counter()
            result = evaluator.evaluate(distilled, "all", repetitions=1, seed=r + 1, pairs=[(image, text)])
            times.append(time.perf_counter() - start)
            mean = result.archs[0].mean["mean"]
            print(f"{image} + {text}, repetition {r}: {times[-1]:.1f} s, mean recall {mean:.1f}", flush=True)
        print(
            f"{args.protocol} {image} + {text}: one repetition of a {args.budget}-pair set "
            f"({protocol.eval.epochs} epochs + test scoring) takes {min(times):.1f}-{max(times):.1f} s "
            f"with {args.threads} threads",
            flush=True,
        )


if __name__ == "__main__":
    main()
