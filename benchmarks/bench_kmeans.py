"""MDM's K-means initialisation at a given size, on random unit features (no dataset needed).

COCO's Karpathy train split has 566,747 pairs; the paper's joint feature is 4608-d (2 x 2304, NFNet-L0)
and K = N <= 500. faiss trains on at most 256 points per centroid (128k at K = 500), then every pair
is assigned. Times seeding (k-means++), training and the final assignment separately.

    python benchmarks/bench_kmeans.py --pairs 566747 --dim 4608 --k 500 --iterations 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mdd_bench.distill.init import kmeans_nearest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=566_747)
    parser.add_argument("--dim", type=int, default=4608)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    x = np.empty((args.pairs, args.dim), dtype=np.float32)
    for s in range(0, args.pairs, 50_000):
        block = rng.standard_normal((min(50_000, args.pairs - s), args.dim), dtype=np.float32)
        x[s : s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    print(f"features {x.shape} ({x.nbytes / 2**30:.1f} GiB) made in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    stages: dict[str, float] = {}
    chosen = kmeans_nearest(x, args.k, seed=0, iterations=args.iterations, timings=stages)
    took = time.perf_counter() - start
    distinct = len(set(chosen.tolist()))
    print(f"K-means K={args.k}, {args.iterations} iterations: {took:.0f} s; {distinct} pairs chosen")
    print("  " + ", ".join(f"{name} {s:.1f} s" for name, s in stages.items()))
    per_iteration = stages["train"] / args.iterations
    estimate = took + per_iteration * (100 - args.iterations)
    print(f"  {per_iteration:.2f} s per Lloyd iteration: about {estimate / 60:.1f} min at 100 iterations")


if __name__ == "__main__":
    main()
