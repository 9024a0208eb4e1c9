"""Every iterative method's cost at the paper's scale, in one run, without the paper's downloads (issue 33).

The `paper` protocol's networks and settings (224 px, NFNet-L0, BERT-base's 768-d text features, each
method's paper batch sizes and syn_steps) with random weights on a generated Flickr30k-layout folder:
time and memory do not depend on the values of the weights or the pictures. Printed, in one run:
- per budget, each method's median seconds per iteration after warm-up and the peak bytes its step holds
  for backward (plus the CUDA peak on a GPU), with ratios to LoRS; MDM/LoRS beside the poster's 0.32x
  (Table 3: MDM 1.72 s vs LoRS 5.43 s per iteration at 100 pairs);
- MTT-VL's and TESLA's graph memory at syn_steps 2/4/8 (TESLA's constant-memory gradient stays flat, MTT-VL's
  full unroll grows);
- MDM's step against its floor (one forward of the real batch, one forward/backward of the synthetic
  batch, as `bench_mdm.py`).

Experts: one expert of random-walk checkpoints around the random-init model (epochs 0..10, as the paper
protocol keeps), written into a throw-away mdd-bench home, never the user's cache: a trajectory's values do
not change what a step costs. The synthetic sets start from real pairs as in a run.

Memory guard: before a configuration runs, the bytes its step saves for backward are measured at syn_batch
2 and 3 and extrapolated linearly to its syn_batch; a configuration predicted above --memory-limit-gb
(default 80% of the free RAM, or of the GPU) is not run and its prediction is printed, marked "predicted".
MTT-VL's paper setting (100 images x 8 unrolled NFNet-L0 steps) needs far more than a 24 GiB machine.

    python benchmarks/bench_paper_scale.py --device cpu --budgets 100 --iterations 2 --warmup 1
    python benchmarks/bench_paper_scale.py --device cuda --budgets 100,200,500
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from bench_mdm import floor_step
from bench_trajectory import SavedBytes, timed_together, trajectory_run

POSTER_MDM_OVER_LORS = 1.72 / 5.43  # MDM poster, Table 3: seconds per iteration at 100 pairs
GiB = 2**30


@dataclass
class Cost:
    seconds: float | None  # median step; None when not run
    saved: float  # bytes saved for backward by one step (measured, or predicted when not run)
    cuda_peak: float | None = None
    predicted: bool = False

    def memory(self) -> str:
        text = f"{self.saved / GiB:.2f} GiB" + (" predicted" if self.predicted else "")
        return text + (f" (CUDA peak {self.cuda_peak / GiB:.2f} GiB)" if self.cuda_peak is not None else "")


def free_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return float(line.split()[1]) * 1024
    raise SystemExit("Error: cannot read MemAvailable from /proc/meminfo; pass --memory-limit-gb.")


def setup(args: argparse.Namespace):
    """A throw-away home with a generated Karpathy folder at 224 px, the paper-scale protocol (paper-offline:
    the paper's networks with random weights) and one random-walk expert; returns (protocol, dataset)."""
    home = Path(args.work or tempfile.mkdtemp(prefix="mdd-paper-scale-"))
    os.environ["MDD_BENCH_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from mdd_bench.data import load_dataset
    from mdd_bench.data.generated_karpathy import write_karpathy
    from mdd_bench.protocol import parse_protocol

    data = home / "data" / f"{args.dataset}-{args.resolution}px"
    if not (data / "generated.json").exists():
        write_karpathy(data, args.dataset, args.images, args.resolution, seed=0, progress=False)
    raw = {"base": "paper-offline", "name": "paper-scale", "experts": {"num_experts": 1},
           "data": {"dataset": args.dataset, "resolution": args.resolution}}  # fmt: skip
    protocol = parse_protocol(raw, "bench_paper_scale.py")
    dataset = load_dataset(args.dataset, protocol, data)
    write_random_walk_expert(protocol, dataset, args.device)
    print(f"# home {home} (generated {args.dataset}: {args.images} images at {args.resolution} px)")
    return protocol, dataset


def write_random_walk_expert(protocol, dataset, device: str) -> None:
    """Expert 0 as checkpoints theta_e = theta_0 + sum of e small random steps (theta_0: the random-init
    student), stored where `ensure_experts` looks, so no expert is trained."""
    from mdd_bench.artifacts.experts import (
        ExpertConfig,
        _is_complete,
        experts_folder,
        record_expert,
        snapshot,
        write_snapshot,
    )
    from mdd_bench.workspace import Workspace
    from mdd_bench.workspace.params import MODALITIES, layout

    workspace = Workspace(protocol, dataset, device, progress=False)
    config = ExpertConfig.from_protocol(protocol)
    folder = experts_folder(workspace, config)
    if _is_complete(folder, 0):
        return
    folder.mkdir(parents=True, exist_ok=True)
    model = workspace.fresh_model(seed=10_000, towers=config.towers)
    tensors = snapshot(model)
    generator = torch.Generator().manual_seed(0)
    for epoch in config.kept:
        if epoch:
            for m in MODALITIES:
                tensors[m] = tensors[m] + 1e-3 * torch.randn(tensors[m].shape, generator=generator)
        write_snapshot(folder, 0, epoch, tensors)
    entry = {"complete": True, "seed": 10_000, "random_walk": "cost only (bench_paper_scale.py)"}
    record_expert(folder, workspace, config, 0, entry, {m: layout(model, m) for m in MODALITIES})


def make_step(name: str, protocol, dataset, budget: int, device: str, overrides: dict[str, str]):
    """(step, hparams, context, state) of one cell as a run builds it (paper settings + overrides)."""
    if name == "mdm":
        from mdd_bench.api import DistillContext
        from mdd_bench.methods.mdm import MDMState
        from mdd_bench.registry import get_method

        hp = get_method("mdm").for_protocol(protocol, overrides, budget).hparams
        ctx = DistillContext(protocol, dataset, seed=0, device=device, progress=False)
        state = MDMState(ctx, hp, budget)
        return state.step, hp, ctx, state
    run, ctx = trajectory_run(name, protocol, dataset, budget, device, overrides)
    return run.step, run.hp, ctx, run


def saved_by_one_step(step, device: torch.device) -> tuple[float, float | None]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    with SavedBytes(unique=True) as saved:
        step()
    peak = float(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return float(saved.peak), peak


def predicted_saved(name: str, protocol, dataset, budget: int, args, overrides: dict[str, str]) -> float:
    """Bytes saved for backward by one step at the configuration's syn_batch, extrapolated from the same
    step measured at syn_batch 2 and 3 (the graph is linear in the batch)."""
    from mdd_bench.registry import get_method

    batch = get_method(name).for_protocol(protocol, overrides, budget).hparams.syn_batch
    measured = []
    for probe in (2, 3):
        step, _, ctx, _ = make_step(
            name, protocol, dataset, budget, args.device, {**overrides, "syn_batch": str(probe)}
        )
        measured.append(saved_by_one_step(step, ctx.device)[0])
    return measured[0] + (measured[1] - measured[0]) * (batch - 2)


def cost(name: str, protocol, dataset, budget: int, args, overrides: dict[str, str], timed: bool) -> Cost:
    """One configuration's cost: its predicted memory first, then, when it fits, its median step time
    (`timed`; memory taken on the last warm-up step, outside the timing) or one step's memory."""
    guess = predicted_saved(name, protocol, dataset, budget, args, overrides)
    if guess > args.limit:
        return Cost(None, guess, predicted=True)
    step, _, ctx, state = make_step(name, protocol, dataset, budget, args.device, overrides)
    if not timed:
        if ctx.device.type == "cuda":
            step()  # warm-up: the first step's CUDA peak includes lazy initialisation
        return Cost(None, *saved_by_one_step(step, ctx.device))
    memory: list[tuple[float, float | None]] = []
    calls = [0]

    def step_or_measure() -> None:
        calls[0] += 1
        if calls[0] == args.warmup:
            memory.append(saved_by_one_step(step, ctx.device))
        else:
            step()

    fns = {"step": step_or_measure}
    if name == "mdm":
        model = state.teacher.sample()
        fns["floor"] = lambda: floor_step(state, model, state.hp.syn_batch)
    seconds = timed_together(fns, args.iterations, ctx.device, args.warmup)
    result = Cost(seconds["step"], *memory[0])
    if name == "mdm":
        args.mdm_floor[budget] = seconds["floor"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--budgets", default="100,200,500")
    parser.add_argument("--methods", default="lors,tesla,mtt-vl,repblend,mdm", help="lors first (the base)")
    parser.add_argument("--steps-grid", default="2,4,8", help="syn_steps of the memory table ('' skips it)")
    parser.add_argument("--grid-methods", default="mtt-vl,tesla")
    parser.add_argument("--grid-budget", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=5, help="timed steps per method after warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 1)")
    parser.add_argument("--dataset", default="flickr30k", choices=("flickr8k", "flickr30k", "coco"))
    parser.add_argument("--images", type=int, default=200, help="images of the generated set")
    parser.add_argument(
        "--resolution", type=int, default=224, help="the paper's 224; less only to try the script"
    )
    parser.add_argument("--memory-limit-gb", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--work", default=None, help="keep the generated data and expert here (default: a temp dir)"
    )
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (memory is taken on the last warm-up step)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("Error: --device cuda but torch sees no GPU. Use --device cpu.")
    args.limit = (args.memory_limit_gb * GiB) if args.memory_limit_gb else 0.8 * free_bytes(device)
    args.mdm_floor = {}
    command = "python benchmarks/bench_paper_scale.py " + shlex.join(sys.argv[1:])
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"# {command}   ({time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__})")
    protocol, dataset = setup(args)
    names = args.methods.split(",")
    budgets = [int(b) for b in args.budgets.split(",") if b]
    print(f"# memory limit {args.limit / GiB:.1f} GiB: configurations predicted above it are not run")

    print(f"\nPer iteration ({protocol.data.dataset} layout, {args.resolution} px, NFNet-L0 random init,")
    print(f"768-d text features): median seconds of {args.iterations} steps after {args.warmup} warm-up,")
    print("(x) ratio to " + names[0] + "; memory = peak bytes one step holds for backward, each storage once")
    for budget in budgets:
        row: dict[str, Cost] = {}
        for n in names:
            c = row[n] = cost(n, protocol, dataset, budget, args, {}, timed=True)
            base = row[names[0]].seconds
            sec = "not run" if c.seconds is None else f"{c.seconds:9.2f} s"
            ratio = f"({c.seconds / base:.2f}x)" if c.seconds is not None and base else ""
            print(f"{budget:5d}  {n:8s}  {sec:>11s} {ratio:>8s}  {c.memory()}", flush=True)
        mdm, lors = row.get("mdm"), row.get("lors")
        if mdm and lors and mdm.seconds and lors.seconds:
            print(
                f"       MDM/LoRS {mdm.seconds / lors.seconds:.2f}x (poster, GPU {POSTER_MDM_OVER_LORS:.2f}x)"
            )
        if budget in args.mdm_floor and mdm and mdm.seconds:
            floor = args.mdm_floor[budget]
            print(
                f"       MDM step/floor {mdm.seconds / floor:.2f} "
                f"(floor {floor:.2f} s: real forward + synthetic fwd/bwd)"
            )

    grid = [int(k) for k in args.steps_grid.split(",") if k]
    if grid:
        print(
            f"\nGraph memory against syn_steps at {args.grid_budget} pairs (one step each, paper syn_batch):"
        )
        for n in args.grid_methods.split(","):
            for k in grid:
                c = cost(n, protocol, dataset, args.grid_budget, args, {"syn_steps": str(k)}, timed=False)
                print(f"{n:8s}  syn_steps {k:2d}  {c.memory()}", flush=True)
    if device.type == "cpu":
        print("\n# On a GPU: " + command.replace("--device cpu", "--device cuda"))


if __name__ == "__main__":
    main()
