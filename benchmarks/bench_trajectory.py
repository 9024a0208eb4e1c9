"""Per-iteration cost of every distillation method, in one run: graph memory against syn_steps, and time
and memory per iteration of mdm, lors, tesla, mtt-vl and repblend at each budget, as ratios to lors.

Memory: the peak bytes of tensors held for backward during one iteration (counted through autograd's
saved-tensor hooks, so it is exact and the same on every machine), plus the CUDA peak on a GPU.
TESLA and LoRS must stay flat as syn_steps grows (constant-memory gradient); MTT-VL grows (full unroll).
Time: the median step of each method at each budget, with every method's ratio to LoRS (the poster
reports MDM at about 0.32x LoRS per iteration at 100 pairs, on a GPU at 224 px); memory: the same
saved-for-backward peak of one step at each budget. Ratios are taken within one run (shared machines
are noisy across runs).

    python benchmarks/bench_trajectory.py --protocol cpu --steps-grid 4,8,16 --budgets 100,200,500
"""

from __future__ import annotations

import argparse
import weakref

import torch
from bench_mdm import timed  # the same median-step timer (scripts run from benchmarks/)
from mdd_bench.methods.mdm import MDM, MDMState

from mdd_bench.api import DistillContext
from mdd_bench.data import load_dataset
from mdd_bench.protocol import load_protocol
from mdd_bench.registry import get_method


class SavedBytes:
    """Live and peak bytes of tensors autograd saves for backward inside the `with` block."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0

    def _release(self, nbytes: int) -> None:
        self.live -= nbytes

    def _pack(self, tensor: torch.Tensor):
        nbytes = tensor.numel() * tensor.element_size()
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        box = [tensor]
        holder = _Holder(box)
        weakref.finalize(holder, self._release, nbytes)
        return holder

    @staticmethod
    def _unpack(holder) -> torch.Tensor:
        return holder.box[0]

    def __enter__(self) -> SavedBytes:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


class _Holder:
    def __init__(self, box: list[torch.Tensor]) -> None:
        self.box = box


def trajectory_run(name: str, protocol, dataset, budget: int, device: str, overrides: dict[str, str]):
    method = get_method(name).for_protocol(protocol, overrides, budget)
    ctx = DistillContext(protocol, dataset, seed=0, device=device, progress=False)
    ctx.prepare(method.artifacts)
    return method.make_run(ctx, budget), ctx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--budgets", default="100,200,500")
    parser.add_argument("--steps-grid", default="4,8,16")
    parser.add_argument("--memory-budget", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = load_protocol(args.protocol)
    dataset = load_dataset(protocol.data.dataset, protocol)

    print(f"Graph memory of one iteration at {args.memory_budget} pairs (MB saved for backward; CUDA peak)")
    print("method   syn_steps  saved MB  cuda peak MB")
    for name in ("tesla", "lors", "mtt-vl"):
        for steps in (int(s) for s in args.steps_grid.split(",")):
            run, ctx = trajectory_run(name, protocol, dataset, args.memory_budget, args.device,
                                      {"syn_steps": str(steps)})  # fmt: skip
            run.step()  # warm-up (allocator, lazy init)
            if ctx.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(ctx.device)
            with SavedBytes() as saved:
                run.step()
            cuda = torch.cuda.max_memory_allocated(ctx.device) / 2**20 if ctx.device.type == "cuda" else None
            cuda_text = f"{cuda:12.1f}" if cuda is not None else "           -"
            print(f"{name:7s}  {steps:9d}  {saved.peak / 2**20:8.2f}  {cuda_text}")

    names = ("lors", "tesla", "mtt-vl", "repblend", "mdm")
    print(f"\nPer iteration at each budget: median seconds of {args.iterations} steps after 2 warm-up steps,")
    print("and MB saved for backward by one step; (x) = ratio to lors")
    print("budget  " + "  ".join(f"{n:>22s}" for n in names))
    hp = MDM.for_protocol(protocol).hparams
    for budget in (int(b) for b in args.budgets.split(",")):
        row: dict[str, tuple[float, float]] = {}
        for name in names:
            if name == "mdm":
                ctx = DistillContext(protocol, dataset, seed=0, device=args.device, progress=False)
                step = MDMState(ctx, hp, budget).step
            else:
                run, ctx = trajectory_run(name, protocol, dataset, budget, args.device, {})
                step = run.step
            seconds = timed(step, args.iterations, ctx.device)
            with SavedBytes() as saved:
                step()
            row[name] = (seconds, saved.peak / 2**20)
        base_s, base_mb = row["lors"]
        cells = [f"{s:.3f}s ({s / base_s:.2f}x) {mb:6.1f}MB" for s, mb in row.values()]
        print(f"{budget:6d}  " + "  ".join(f"{c:>22s}" for c in cells))


if __name__ == "__main__":
    main()
