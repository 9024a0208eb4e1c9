"""Expert trajectories: training time, disk size, and the cost of reading one start/target pair.

Target (`cpu`): reading the flat parameters of (expert, start epoch) and (expert, target epoch) takes
at most 50 ms; training the experts takes at most 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from mdd_bench.artifacts.experts import ensure_experts
from mdd_bench.data import load_dataset
from mdd_bench.evaluation.evaluator import Evaluator
from mdd_bench.protocol import load_protocol
from mdd_bench.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(2)
    protocol = load_protocol(args.protocol)
    evaluator = Evaluator(Workspace(protocol, load_dataset(protocol.data.dataset, protocol), progress=False))
    evaluator.text_embeddings("train")
    start = time.perf_counter()
    store = ensure_experts(evaluator.workspace)
    print(f"ensure_experts: {time.perf_counter() - start:.1f} s (0 when already trained)")
    rng = random.Random(0)
    times = []
    for _ in range(args.reads):
        expert = rng.choice(store.complete_experts)
        s = rng.choice(store.epochs[:-1])
        t0 = time.perf_counter()
        a_img, a_txt = store.flat(expert, s)
        b_img, b_txt = store.flat(expert, s + 1)
        _ = float((a_img - b_img).square().sum() + (a_txt - b_txt).square().sum())  # touch the data
        times.append(time.perf_counter() - t0)
    times.sort()
    median, worst = times[len(times) // 2] * 1000, times[-1] * 1000
    print(f"{store.num_experts} experts, epochs {store.epochs}, {store.disk_bytes / 2**20:.1f} MiB on disk")
    print(f"parameters per snapshot: image {a_img.numel():,}, text head {a_txt.numel():,}")
    print(f"read start+target pair (and one pass over both): median {median:.2f} ms, max {worst:.2f} ms")


if __name__ == "__main__":
    main()
