"""MDM's time per iteration against its floor, at each budget, in one run.

Floor: one forward of the real batch (no gradient) plus one forward/backward of the synthetic batch
through the same frozen model; everything else in an MDM step (drawing and merging the teacher,
the kernel terms, clipping, the optimiser step) is overhead. Target: step <= 1.5 x floor.

    python benchmarks/bench_mdm.py --protocol cpu --budgets 100,200,500 --steps 30
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from mdd_bench.api import DistillContext
from mdd_bench.data import load_dataset
from mdd_bench.methods.mdm import MDM, MDMState
from mdd_bench.protocol import load_protocol


def timed(fn, steps: int, device: torch.device) -> float:
    times = []
    for _ in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])  # two warm-up steps


def floor_step(state: MDMState, model, syn_batch: int) -> None:
    """One forward of the real batch (no gradient) + forward/backward of the synthetic batch."""
    images, texts = state.real.next()
    with torch.no_grad():
        model.encode_images(images), model.encode_texts(texts)
    syn = state.syn
    idx = syn.sample(syn_batch, state.generator).to(syn.device)
    (model.encode_images(syn.images[idx]) * model.encode_texts(syn.texts[idx])).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--budgets", default="100,200,500")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = load_protocol(args.protocol)
    dataset = load_dataset(protocol.data.dataset, protocol)
    hp = MDM.for_protocol(protocol).hparams
    print(f"protocol {protocol.name}: real batch {hp.real_batch}, synthetic batch {hp.syn_batch}")
    print("budget  step (s)  floor (s)  ratio  teacher draw (s)")
    for budget in (int(b) for b in args.budgets.split(",")):
        ctx = DistillContext(protocol, dataset, seed=0, device=args.device, progress=False)
        state = MDMState(ctx, hp, budget)
        step = timed(state.step, args.steps, ctx.device)
        model = state.teacher.sample()
        floor = functools.partial(floor_step, state, model, hp.syn_batch)
        base = timed(floor, args.steps, ctx.device)
        draw = timed(state.teacher.sample, args.steps, ctx.device)
        print(f"{budget:6d}  {step:8.3f}  {base:9.3f}  {step / base:5.2f}  {draw:16.4f}")


if __name__ == "__main__":
    main()
