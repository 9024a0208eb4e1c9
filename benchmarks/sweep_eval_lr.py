"""Val mean recall of a random-pair set per image encoder and evaluation lr (one repetition each).

Shows which evaluation learning rate each architecture needs; selection happens on val, never test.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from mdd_bench.data import load_dataset
from mdd_bench.evaluate import Evaluator, random_pairs
from mdd_bench.protocol import load_protocol


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--archs", default="test_nfnet,test_vit,test_convnext")
    parser.add_argument("--lrs", default="0.1,0.03,0.01")
    parser.add_argument("--budget", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(2)
    protocol = load_protocol(args.protocol)
    dataset = load_dataset(protocol.data.dataset, protocol, progress=False)
    base = Evaluator(protocol, dataset, progress=False)
    distilled = random_pairs(dataset, base.text_embeddings("train"), protocol, args.budget, seed=0)
    for arch in args.archs.split(","):
        for lr in (float(v) for v in args.lrs.split(",")):
            swept = dataclasses.replace(
                protocol, eval=dataclasses.replace(protocol.eval, lr_img=lr, lr_txt=lr)
            )
            evaluator = Evaluator(swept, dataset, progress=False)
            model = evaluator.train_on(distilled, arch, seed=0)
            print(f"{arch:<14} lr {lr:<6} val mean {evaluator.score(model, 'val')['mean']:.2f}", flush=True)


if __name__ == "__main__":
    main()
