"""The learnable synthetic set every optimisation-based method distils into.

Pixels live in the protocol's normalised space and texts in the source text encoder's embedding
space, so the set trains the evaluation models exactly as stored. Methods that learn more (step
sizes, a similarity) register those tensors as learnable extras under `DistilledSet.EXTRA_KEYS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mdd_bench.distilled import EXTRA_KEYS, DistilledSet
from mdd_bench.errors import MddError


class SyntheticSet:
    def __init__(self, images: torch.Tensor, texts: torch.Tensor, device: torch.device | str) -> None:
        if images.shape[0] != texts.shape[0]:
            raise MddError(f"{images.shape[0]} initial images but {texts.shape[0]} texts.")
        self.images = images.detach().to(device, torch.float32).clone().requires_grad_(True)
        self.texts = texts.detach().to(device, torch.float32).clone().requires_grad_(True)
        self.extras: dict[str, torch.Tensor] = {}

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def add_extra(self, name: str, value: torch.Tensor, learnable: bool = True) -> torch.Tensor:
        if name not in EXTRA_KEYS:
            raise MddError(f"Unknown extra '{name}'; allowed: {', '.join(EXTRA_KEYS)}.")
        tensor = value.detach().to(self.device, torch.float32).clone().requires_grad_(learnable)
        self.extras[name] = tensor
        return tensor

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Indices of a random mini-batch of min(batch, N) distinct pairs."""
        return torch.randperm(self.size, generator=generator)[: min(batch, self.size)]

    def sgd(
        self,
        lr_img: float,
        lr_txt: float,
        momentum: float = 0.5,
        extra_groups: Sequence[tuple[Sequence[torch.Tensor], float]] = (),
    ) -> torch.optim.SGD:
        """SGD with one group per modality plus (tensors, lr) groups for learnable extras, one momentum
        (MDM's and the trajectory methods' optimiser). Groups with lr 0 are left out (nothing moves)."""
        groups = [{"params": [self.images], "lr": lr_img}, {"params": [self.texts], "lr": lr_txt}]
        groups += [{"params": list(ts), "lr": lr} for ts, lr in extra_groups if lr > 0 and ts]
        return torch.optim.SGD(groups, lr=lr_img, momentum=momentum)

    def clip_grad(self, max_norm: float) -> float:
        """Joint gradient-norm clip over pixels and texts; returns the norm before clipping."""
        return float(torch.nn.utils.clip_grad_norm_([self.images, self.texts], max_norm))

    def state(self) -> dict[str, torch.Tensor]:
        """A detached CPU copy of every tensor (what the loop keeps as the best so far)."""
        tensors = {"images": self.images, "texts": self.texts, **self.extras}
        return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}

    @torch.no_grad()
    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Put a `state()` back in place (the optimiser keeps its references to the tensors)."""
        for name, tensor in {"images": self.images, "texts": self.texts, **self.extras}.items():
            tensor.copy_(state[name])

    @staticmethod
    def distilled(state: dict[str, torch.Tensor], provenance: dict[str, Any] | None = None) -> DistilledSet:
        extras = {k: v for k, v in state.items() if k not in ("images", "texts")}
        return DistilledSet(state["images"], state["texts"], extras, dict(provenance or {}))
