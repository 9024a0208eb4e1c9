"""One evaluation repetition of a 100-pair set under a protocol (target: <= 30 s under `cpu`, 2 cores)."""

from __future__ import annotations

import argparse
import time

import torch

from mdd_bench.anchors import ensure_anchor
from mdd_bench.data import load_dataset
from mdd_bench.evaluate import Evaluator, random_pairs
from mdd_bench.protocol import load_protocol
from mdd_bench.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = load_protocol(args.protocol)
    dataset = load_dataset(protocol.data.dataset, protocol)
    evaluator = Evaluator(Workspace(protocol, dataset, progress=False))
    ensure_anchor(protocol.image.source, protocol)
    distilled = random_pairs(dataset, evaluator.text_embeddings("train"), protocol, args.budget, seed=0)
    evaluator.evaluate(distilled, repetitions=1)  # warm-up: text embeddings, anchor load
    times = []
    for r in range(args.repeats):
        start = time.perf_counter()
        result = evaluator.evaluate(distilled, repetitions=1, seed=r + 1)
        times.append(time.perf_counter() - start)
        print(f"repetition {r}: {times[-1]:.1f} s, mean recall {result.source().mean['mean']:.1f}")
    print(
        f"{args.protocol}: one repetition of a {args.budget}-pair set "
        f"({protocol.eval.epochs} epochs + test scoring) takes {min(times):.1f}-{max(times):.1f} s "
        f"with {args.threads} threads"
    )


if __name__ == "__main__":
    main()
