"""Per-iteration cost of every distillation method, in one run: graph memory against syn_steps, and time
and memory per iteration of mdm, lors, tesla, mtt-vl and repblend at each budget, as ratios to lors.

Memory: the peak bytes of tensors held for backward during one iteration (counted through autograd's
saved-tensor hooks, so it is exact and the same on every machine), plus the CUDA peak on a GPU.
TESLA and LoRS must stay flat as syn_steps grows (constant-memory gradient); MTT-VL grows (full unroll).
Time: the median step of each method at each budget, with every method's ratio to LoRS (the poster
reports MDM at about 0.32x LoRS per iteration at 100 pairs, on a GPU at 224 px); memory: the same
saved-for-backward peak of one step at each budget. Ratios are taken within one run (shared machines
are noisy across runs).

Floors (issue 32): each trajectory method's step against the student work its gradient cannot do
without, timed in turn with the step (step, floors, step, ...), so all three see the same load. Both
floors call the method's own step-loss closures (the same functional student, loss, similarity block
and blending) on the step's own mini-batches of syn_batch synthetic pairs from an expert checkpoint;
they leave out the step's bookkeeping (expert draw, random-state replay, matching loss, step-size
gradient, optimiser step) and any wasted autograd work.
- fwd+bwd floor, the issue's: K student forward+backward steps per pass. TESLA, LoRS and RepBlend make
  two passes: K steps of the trajectory loss back-propagated into theta (pass 1; RepBlend's runs its
  frozen encoder without a graph, as its step does), then K of the step loss into theta and every
  synthetic leaf (pass 2). MTT-VL makes one: its K steps forward and backward into theta and the leaves.
  First order only: it leaves out the Hessian-vector products each gradient needs (TESLA's pass 2
  differentiates every step's gradient again, MTT-VL back-propagates through the whole unroll). On
  test_nfnet that second-order backward alone costs about two forward+backward passes of the same
  batch, so an exact step stays near 2x this floor (TESLA/LoRS) or 3.5x (MTT-VL).
- autograd floor: the method's gradient as bare autograd calls and nothing else. TESLA/LoRS/RepBlend:
  pass 1 as above, then per step g_k = grad(L_k, theta, create_graph) and backward(<c, g_k>) into the
  leaves; MTT-VL: K steps theta_{k+1} = theta_k - eta grad(L_k, theta_k, create_graph), then backward
  of ||theta_K - theta_T||^2 into the leaves and step sizes. step / autograd floor is the step's own
  overhead; the target is 1.5x at most.

    python benchmarks/bench_trajectory.py --protocol cpu --steps-grid 4,8,16 --budgets 100,200,500
"""

from __future__ import annotations

import argparse
import statistics
import time
import weakref
from collections.abc import Callable

import torch

from mdd_bench.api import DistillContext
from mdd_bench.data import load_dataset
from mdd_bench.methods.mdm import MDM, MDMState
from mdd_bench.protocol import load_protocol
from mdd_bench.registry import get_method


class SavedBytes:
    """Live and peak bytes of tensors autograd saves for backward inside the `with` block.

    `unique`: count each storage once however many tensors saved for backward share it (a parameter is
    saved by every operation that reads it): the memory the graph holds, not the sum of what it saved.
    """

    def __init__(self, unique: bool = False) -> None:
        self.live = 0
        self.peak = 0
        self.unique = unique
        self._refs: dict[int, int] = {}

    def _release(self, key: int | None, nbytes: int) -> None:
        if key is not None:
            self._refs[key] -= 1
            if self._refs[key]:
                return
            del self._refs[key]
        self.live -= nbytes

    def _pack(self, tensor: torch.Tensor):
        key, nbytes = None, tensor.numel() * tensor.element_size()
        if self.unique:
            storage = tensor.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            self._refs[key] = self._refs.get(key, 0) + 1
        if key is None or self._refs[key] == 1:
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        box = [tensor]
        holder = _Holder(box)
        weakref.finalize(holder, self._release, key, nbytes)
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


def timed_together(
    fns: dict[str, Callable[[], object]], steps: int, device: torch.device, warmup: int = 2
) -> dict[str, float]:
    """Median seconds of each function over `steps` rounds after `warmup` warm-up rounds, the functions
    called in turn within each round (so a change in the machine's load hits all of them alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps + warmup):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t[warmup:]) for name, t in times.items()}


def _floor_inputs(run):
    """A step's own inputs: theta_0 and theta_T of the next expert draw, the next K mini-batches'
    step-loss closures, and the synthetic leaves the step updates."""
    _, _, start, target = run.sampler.next()
    step_loss, trajectory_loss = run.step_losses(run.schedule.steps(run.hp.syn_steps))
    theta = {m: v.detach().clone().requires_grad_(True) for m, v in start.items()}
    leaves = [t for t in (run.syn.images, run.syn.texts, *run.similarity.params) if t.requires_grad]
    return start, target, theta, step_loss, trajectory_loss or step_loss, leaves


def fwd_bwd_floor(run) -> None:
    """The issue's floor: K student forward+backward steps per pass (two for TESLA's gradient, one for
    MTT-VL's), the first pass into theta with the trajectory loss, the last into theta and the data."""
    _, _, theta, step_loss, first, leaves = _floor_inputs(run)
    params = list(theta.values())
    if run.gradient == "tesla":
        for k in range(run.hp.syn_steps):
            torch.autograd.grad(first(theta, k), params)
    for k in range(run.hp.syn_steps):
        torch.autograd.backward(step_loss(theta, k), inputs=params + leaves)
    run.optimiser.zero_grad(set_to_none=True)


def autograd_floor(run) -> None:
    """The method's gradient as bare autograd calls: TESLA's two passes (the second differentiating
    <c, g_k> into the data), or MTT-VL's unroll with create_graph and one backward through it."""
    start, target, theta, step_loss, first, leaves = _floor_inputs(run)
    keys, steps = list(theta), run.hp.syn_steps
    if run.gradient == "tesla":
        eta = {m: float(run.lrs[m].detach()) for m in keys}
        coefficient = {m: target[m] - start[m] for m in keys}
        for loss_at, second in ((first, False), (step_loss, True)):
            live = theta
            for k in range(steps):
                grads = torch.autograd.grad(loss_at(live, k), [live[m] for m in keys], create_graph=second)
                if second:
                    inner = sum((coefficient[m] * g).sum() for m, g in zip(keys, grads, strict=True))
                    torch.autograd.backward(inner, inputs=leaves)
                with torch.no_grad():
                    live = {
                        m: (live[m] - eta[m] * g).requires_grad_(True)
                        for m, g in zip(keys, grads, strict=True)
                    }
    else:
        live = theta
        for k in range(steps):
            grads = torch.autograd.grad(step_loss(live, k), [live[m] for m in keys], create_graph=True)
            live = {m: live[m] - run.lrs[m] * g for m, g in zip(keys, grads, strict=True)}
        loss = sum((live[m] - target[m]).pow(2).sum() for m in keys)
        torch.autograd.backward(loss, inputs=leaves + list(run.lrs.values()))
    run.optimiser.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="cpu")
    parser.add_argument("--budgets", default="100,200,500")
    parser.add_argument("--steps-grid", default="4,8,16")
    parser.add_argument("--memory-budget", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="lors,tesla,mtt-vl,repblend,mdm", help="lors first (the base)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = load_protocol(args.protocol)
    dataset = load_dataset(protocol.data.dataset, protocol)

    print(f"Graph memory of one iteration at {args.memory_budget} pairs (MB saved for backward; CUDA peak)")
    print("method   syn_steps  saved MB  cuda peak MB")
    for name in ("tesla", "lors", "mtt-vl"):
        for steps in (int(s) for s in args.steps_grid.split(",") if s):
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

    names = args.methods.split(",")
    hp = MDM.for_protocol(protocol).hparams
    rows: dict[int, dict[str, tuple[float, float]]] = {}
    floors: dict[int, dict[str, dict[str, float]]] = {}
    for budget in (int(b) for b in args.budgets.split(",")):
        rows[budget], floors[budget] = {}, {}
        for name in names:
            if name == "mdm":
                ctx = DistillContext(protocol, dataset, seed=0, device=args.device, progress=False)
                fns = {"step": MDMState(ctx, hp, budget).step}
            else:
                run, ctx = trajectory_run(name, protocol, dataset, budget, args.device, {})
                fns = {
                    "step": run.step,
                    "fwd+bwd": lambda run=run: fwd_bwd_floor(run),
                    "autograd": lambda run=run: autograd_floor(run),
                }
            seconds = timed_together(fns, args.iterations, ctx.device)
            with SavedBytes() as saved:
                fns["step"]()
            rows[budget][name] = (seconds["step"], saved.peak / 2**20)
            if name != "mdm":
                floors[budget][name] = seconds

    print(f"\nPer iteration at each budget: median seconds of {args.iterations} steps after 2 warm-up steps,")
    print(f"and MB saved for backward by one step; (x) = ratio to {names[0]}")
    print("budget  " + "  ".join(f"{n:>22s}" for n in names))
    for budget, row in rows.items():
        base_s = row[names[0]][0]
        cells = [f"{s:.3f}s ({s / base_s:.2f}x) {mb:6.1f}MB" for s, mb in row.values()]
        print(f"{budget:6d}  " + "  ".join(f"{c:>22s}" for c in cells))

    print(
        "\nStep against its floors (median seconds, timed in turn with the step; see the script's docstring):"
    )
    print("fwd+bwd = K student forward+backward steps per pass (tesla/lors/repblend: 2 passes, mtt-vl: 1);")
    print("autograd = the gradient's own autograd calls, second-order terms included, nothing else")
    print("pairs  method    step (s)  fwd+bwd (s)  step/fwd+bwd  autograd (s)  step/autograd")
    for budget, table in floors.items():
        for name, seconds in table.items():
            step, first, exact = seconds["step"], seconds["fwd+bwd"], seconds["autograd"]
            print(
                f"{budget:5d}  {name:8s}  {step:8.3f}  {first:11.3f}  {step / first:12.2f}  "
                f"{exact:12.3f}  {step / exact:13.2f}"
            )


if __name__ == "__main__":
    main()
