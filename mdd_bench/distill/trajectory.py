"""Trajectory matching: students unrolled from an expert checkpoint, matched to a later one.

The pieces are pure functions of a `step_loss(theta, k)` closure (the k-th student step's loss at
flat parameters `theta`, with a graph back to whatever synthetic tensors it reads), so each can be
checked against an independent computation:

- `unroll`: K SGD steps theta_{k+1} = theta_k - eta_m g_k per modality m, with the graph through every
  step (MTT-VL's full back-propagation; memory grows with K) or without (a plain training loop);
- `match_distance`: ||theta_K - theta_T||^2 / ||theta_0 - theta_T||^2 summed over modalities, or with
  one shared normaliser (sum of numerators over sum of denominators; LoRS's `merge_loss_branches`);
- `tesla_backward`: TESLA's constant-memory gradient of that distance (first order: every theta_k is a
  constant of the data, as the TESLA and LoRS code);
- `TrajectorySampler` / `BatchSchedule`: which (expert, start epoch) and which synthetic mini-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mdd_bench.distill.merge import ExpertBank
from mdd_bench.distill.resume import rng_state, set_rng_state
from mdd_bench.distill.student import Flat
from mdd_bench.errors import MddError

StepLoss = Callable[[Flat, int], torch.Tensor]
NORMALISERS = ("per-modality", "shared")


def match_distance(final: Flat, start: Flat, target: Flat, normaliser: str = "per-modality") -> torch.Tensor:
    """The normalised matching loss; differentiable in `final` (start and target are constants)."""
    if normaliser not in NORMALISERS:
        raise MddError(f"Unknown normaliser '{normaliser}'. Use one of: {', '.join(NORMALISERS)}.")
    numerators = {m: (final[m] - target[m].detach()).pow(2).sum() for m in final}
    denominators = {m: (start[m] - target[m]).detach().pow(2).sum() for m in final}
    for m, d in denominators.items():
        if float(d) == 0.0:
            raise MddError(
                f"The expert's start and target '{m}' checkpoints are identical: nothing to match. "
                "Check that the experts trained (expert lr > 0) and expert_epochs >= 1."
            )
    if normaliser == "shared":
        return sum(numerators.values()) / sum(denominators.values())
    return sum(numerators[m] / denominators[m] for m in final)


def _grads(loss: torch.Tensor, theta: Flat, create_graph: bool) -> Flat:
    if not torch.isfinite(loss):
        raise MddError(f"A student step's loss became {float(loss)}. Lower the data or step learning rates.")
    keys = list(theta)
    grads = torch.autograd.grad(loss, [theta[m] for m in keys], create_graph=create_graph)
    return dict(zip(keys, grads, strict=True))


def unroll(
    step_loss: StepLoss,
    start: Flat,
    lrs: dict[str, torch.Tensor | float],
    steps: int,
    create_graph: bool = True,
) -> Flat:
    """theta_K after `steps` plain SGD steps from `start` with per-modality step sizes `lrs`.

    With `create_graph` the result depends differentiably on the data each step read and on the lrs
    (MTT-VL); without, it is a detached training loop (no momentum, no weight decay, as the experts).
    """
    theta = {m: v.detach().clone().requires_grad_(True) for m, v in start.items()}
    for k in range(steps):
        grads = _grads(step_loss(theta, k), theta, create_graph)
        if create_graph:
            theta = {m: theta[m] - lrs[m] * grads[m] for m in theta}
        else:
            with torch.no_grad():
                theta = {m: (theta[m] - float(lrs[m]) * grads[m]).requires_grad_(True) for m in theta}
    return theta if create_graph else {m: v.detach() for m, v in theta.items()}


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@dataclass
class MatchResult:
    loss: float  # the matching loss at the student's end point
    per_modality: dict[str, float]  # each modality's own normalised distance (for logging)


def tesla_backward(
    step_loss: StepLoss,
    start: Flat,
    target: Flat,
    lrs: dict[str, torch.Tensor],
    steps: int,
    inputs: Sequence[torch.Tensor],
    normaliser: str = "per-modality",
    trajectory_loss: StepLoss | None = None,
) -> MatchResult:
    """Accumulate d match_distance / d(inputs, lrs) into `.grad` in memory independent of `steps`.

    Pass 1 runs the trajectory without a graph and sums the step gradients G. With theta_K = theta_0 -
    eta G the loss L = w ||theta_K - theta_T||^2 has dL/dg_k = 2 w c, c = eta (theta_T - theta_0) +
    eta^2 G, the same for every k. Pass 2 re-runs each step from the recomputed theta_k, builds g_k
    with a graph and back-propagates 2 w <c, g_k> into that step's inputs (a Hessian-vector product).
    Only theta_k, G, c and one step's double-backward graph are alive at any time; theta_k is not
    stored per step. Each step's random state (dropout) is replayed in pass 2, so it recomputes exactly
    pass 1's g_k (the reference draws new dropout masks there). The lr gradient is that of the same
    loss (same normaliser) through theta_K = theta_0 - eta G, G held constant.

    Pass 1 needs each step's gradient in theta only, so `trajectory_loss`, when given, replaces
    `step_loss` there: the same value with no graph to the inputs (cheaper; e.g. a frozen backbone run
    under no_grad). It must draw the same random numbers in the same order as `step_loss`.
    """
    if normaliser not in NORMALISERS:
        raise MddError(f"Unknown normaliser '{normaliser}'. Use one of: {', '.join(NORMALISERS)}.")
    keys = list(start)
    device = start[keys[0]].device
    eta = {m: float(torch.as_tensor(lrs[m]).detach()) for m in keys}
    states = []
    theta = {m: start[m].detach().clone() for m in keys}
    total = {m: torch.zeros_like(theta[m]) for m in keys}
    first = trajectory_loss or step_loss
    for k in range(steps):
        states.append(_rng_state(device))
        live = {m: theta[m].requires_grad_(True) for m in keys}
        grads = _grads(first(live, k), live, create_graph=False)
        with torch.no_grad():
            theta = {m: live[m].detach() - eta[m] * grads[m] for m in keys}
            for m in keys:
                total[m] += grads[m]
    after = _rng_state(device)

    denominators = {m: float((start[m] - target[m]).pow(2).sum()) for m in keys}
    if any(d == 0.0 for d in denominators.values()):
        match_distance(start, start, target, normaliser)  # raises the one-line error
    shared = sum(denominators.values())
    weight = {m: 1.0 / (shared if normaliser == "shared" else denominators[m]) for m in keys}
    coefficient = {m: eta[m] * (target[m] - start[m]) + eta[m] ** 2 * total[m] for m in keys}

    theta = {m: start[m].detach().clone() for m in keys}
    leaves = [t for t in inputs if t.requires_grad]
    for k in range(steps):
        _set_rng_state(states[k], device)
        live = {m: theta[m].requires_grad_(True) for m in keys}
        grads = _grads(step_loss(live, k), live, create_graph=True)
        inner = sum(weight[m] * (coefficient[m] * grads[m]).sum() for m in keys)
        if leaves and inner.requires_grad:
            torch.autograd.backward(2.0 * inner, inputs=leaves)
        with torch.no_grad():
            theta = {m: live[m].detach() - eta[m] * grads[m].detach() for m in keys}
    _set_rng_state(after, device)

    final = {m: start[m] - lrs[m] * total[m] for m in keys}
    loss = match_distance(final, start, target, normaliser)
    learnable = [lrs[m] for m in keys if isinstance(lrs[m], torch.Tensor) and lrs[m].requires_grad]
    if learnable:
        torch.autograd.backward(loss, inputs=learnable)
    with torch.no_grad():
        per = {m: float((final[m] - target[m]).pow(2).sum() / denominators[m]) for m in keys}
    return MatchResult(float(loss.detach()), per)


class TrajectorySampler:
    """(expert, start epoch s, theta_s, theta_{s+M}) per iteration, as the references draw them.

    Experts are walked in a shuffled order, reshuffled after each full pass; s ~ U{0, ..., max_start-1}
    (numpy's randint excludes the bound, so the references' max_start_epoch 2 means s in {0, 1}).
    Checkpoints come from the in-memory (or memory-mapped) `ExpertBank`, never re-read from files.
    """

    def __init__(self, bank: ExpertBank, max_start_epoch: int, expert_epochs: int, seed: int) -> None:
        stored = sorted({p for _, p in bank.keys})
        if max_start_epoch < 1 or expert_epochs < 1:
            raise MddError("max_start_epoch and expert_epochs must be >= 1.")
        needed = max_start_epoch - 1 + expert_epochs
        if needed > max(stored):
            raise MddError(
                f"Trajectory matching needs expert epoch {needed} (max_start_epoch {max_start_epoch} + "
                f"expert_epochs {expert_epochs} - 1) but the store keeps epochs up to {max(stored)}. "
                "Lower them or raise [experts] keep_epochs in the protocol."
            )
        self.bank, self.max_start, self.span = bank, max_start_epoch, expert_epochs
        self.rng = np.random.default_rng([seed, 7331])
        self.order: list[int] = []

    def next(self) -> tuple[int, int, Flat, Flat]:
        if not self.order:
            self.order = [int(e) for e in self.rng.permutation(self.bank.experts)]
        expert = self.order.pop(0)
        start_epoch = int(self.rng.integers(0, self.max_start))
        start = dict(zip(("image", "text"), self.bank.get(expert, start_epoch), strict=True))
        target = dict(zip(("image", "text"), self.bank.get(expert, start_epoch + self.span), strict=True))
        return expert, start_epoch, start, target

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng), "order": list(self.order)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.order = list(state["order"])


class BatchSchedule:
    """Synthetic mini-batch indices per student step.

    `cycle` (LoRS, TESLA): consecutive chunks of one permutation, a new permutation when fewer than b
    indices remain, carried across iterations. `fresh` (MTT-VL): a new random batch every step.
    """

    def __init__(self, size: int, batch: int, mode: str, seed: int) -> None:
        if mode not in ("cycle", "fresh"):
            raise MddError(f"Unknown batch order '{mode}'. Use 'cycle' or 'fresh'.")
        self.size, self.batch, self.mode = size, min(batch, size), mode
        self.generator = torch.Generator().manual_seed(seed)
        self.pending = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        if self.mode == "fresh":
            return torch.randperm(self.size, generator=self.generator)[: self.batch]
        if len(self.pending) < self.batch:
            self.pending = torch.randperm(self.size, generator=self.generator)
        idx, self.pending = self.pending[: self.batch], self.pending[self.batch :]
        return idx

    def steps(self, count: int) -> list[torch.Tensor]:
        return [self.next() for _ in range(count)]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": rng_state(self.generator), "pending": self.pending.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.generator, state["generator"])
        self.pending = state["pending"].clone()
