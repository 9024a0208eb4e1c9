"""Representation blending (RepBlend, NeurIPS 2025; spec `repblend.md` section 3).

In every student step the inputs of the two heads (the frozen image encoder's features of the
synthetic images, and the synthetic text embeddings) are mixed across the mini-batch,

    x~_i = lam x_i + (1 - lam) x_pi(i),

with ONE lam ~ Beta(alpha, alpha) and ONE permutation pi per step, shared by both modalities: blended
image i still pairs with blended text i, so the diagonal stays the positive set. The target (the
learned similarity block) is not blended; that is the caller's to leave alone. A step's plan is drawn
once and reused by both passes of the TESLA gradient, so the second pass differentiates the step the
first one took. alpha <= 0 turns blending off (lam = 1), the reference's ablation switch.

The draws come from a seeded numpy stream of their own (the reference uses torch's global one), so
blending neither shifts nor depends on the dropout masks' random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mdd_bench.distill.resume import rng_state, set_rng_state
from mdd_bench.errors import MddError


@dataclass(frozen=True)
class BlendPlan:
    """One step's blend: the coefficient and the partner of each batch row."""

    lam: float
    perm: torch.Tensor  # long [b], a permutation of range(b)

    def apply(self, inputs: torch.Tensor) -> torch.Tensor:
        """lam * x + (1 - lam) * x[perm], row-wise; differentiable in `inputs` (both branches)."""
        if inputs.shape[0] != len(self.perm):
            raise MddError(f"A blend plan for {len(self.perm)} rows was applied to {inputs.shape[0]}.")
        if self.lam == 1.0:
            return inputs
        return self.lam * inputs + (1.0 - self.lam) * inputs[self.perm.to(inputs.device)]


def draw_plan(batch: int, alpha: float, rng: np.random.Generator) -> BlendPlan:
    """lam ~ Beta(alpha, alpha) and a uniform permutation of `batch` rows; alpha <= 0: no blending."""
    if batch < 1:
        raise MddError(f"A blend needs at least one row (got {batch}).")
    if alpha <= 0:
        return BlendPlan(1.0, torch.arange(batch))
    lam = float(rng.beta(alpha, alpha))
    return BlendPlan(lam, torch.from_numpy(rng.permutation(batch)).long())


def blend_pair(
    image_inputs: torch.Tensor, text_inputs: torch.Tensor, plan: BlendPlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both heads' inputs blended with the same lam and the same permutation."""
    if image_inputs.shape[0] != text_inputs.shape[0]:
        raise MddError(f"{image_inputs.shape[0]} image rows but {text_inputs.shape[0]} text rows to blend.")
    return plan.apply(image_inputs), plan.apply(text_inputs)


class BlendSampler:
    """The per-step plans of a run, from one seeded stream (a rerun draws the same plans)."""

    def __init__(self, alpha: float, seed: int) -> None:
        self.alpha = float(alpha)
        self.rng = np.random.default_rng([seed, 8191])

    def draw(self, batch: int) -> BlendPlan:
        return draw_plan(batch, self.alpha, self.rng)

    def plans(self, batches: list[torch.Tensor]) -> list[BlendPlan]:
        """One plan per student step (its batch of indices), drawn before either pass runs."""
        return [self.draw(len(b)) for b in batches]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
