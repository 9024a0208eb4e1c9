"""Retrieval metrics on COCO-test-sized random embeddings: time and peak extra memory.

A full 5k x 25k float32 similarity matrix alone would be 500 MB; the chunked computation must stay far
below that.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mdd_bench.evaluation.metrics import retrieval_metrics
from mdd_bench.run.provenance import PeakMemory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--dim", type=int, default=2304)
    parser.add_argument("--chunk", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = F.normalize(torch.randn(args.images, args.dim), dim=1)
    texts = F.normalize(torch.randn(args.images * args.captions_per_image, args.dim), dim=1)
    owner = torch.arange(args.images).repeat_interleave(args.captions_per_image)
    before = PeakMemory._rss_mb()
    with PeakMemory(torch.device("cpu")) as memory:
        start = time.perf_counter()
        metrics = retrieval_metrics(images, texts, owner, chunk=args.chunk)
        seconds = time.perf_counter() - start
    full_matrix_mb = args.images * len(texts) * 4 / 2**20
    print(f"{args.images} images x {len(texts)} captions, dim {args.dim}, chunk {args.chunk}")
    print(
        f"time {seconds:.2f} s; extra memory at peak {memory.peak_mb - before:.0f} MB over {before:.0f} MB ",
        end="",
    )
    print(f"resident before (a full similarity matrix alone would be {full_matrix_mb:.0f} MB)")
    print({k: round(v, 2) for k, v in metrics.items()})


if __name__ == "__main__":
    main()
