"""LoRS's learned similarity targets: low-rank S = diag(a) + (alpha / r) L R^T, or a full N x N matrix.

Both start at exactly the identity (a = 1, R = 0; or S = I), so with a zero learning rate they are
TESLA's identity targets. During distillation only a batch's rows are built: the B x B block of the
low-rank form is diag(a_B) + (alpha / r) L_B R_B^T, O(B r) work from O(N r) parameters. The factors
are stored as `DistilledSet` extras (`sim_diag`, `sim_left`, `sim_right`, `sim_alpha`, or `similarity`).
"""

from __future__ import annotations

import torch

from mdd_bench.distill.synthetic import SyntheticSet
from mdd_bench.errors import MddError

SIMILARITIES = ("identity", "low-rank", "full")


def low_rank_block(
    diag: torch.Tensor, left: torch.Tensor, right: torch.Tensor, alpha: float, idx: torch.Tensor
) -> torch.Tensor:
    """Rows and columns `idx` of diag(a) + (alpha / r) L R^T without building the N x N matrix."""
    return torch.diag(diag[idx]) + (alpha / left.shape[1]) * left[idx] @ right[idx].T


def low_rank_matrix(
    diag: torch.Tensor, left: torch.Tensor, right: torch.Tensor, alpha: float
) -> torch.Tensor:
    return torch.diag(diag) + (alpha / left.shape[1]) * left @ right.T


class Similarity:
    """The learnable target of a synthetic set (registered as its extras); `block(idx)` per batch."""

    def __init__(
        self,
        syn: SyntheticSet,
        kind: str,
        rank: int = 10,
        alpha: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if kind not in SIMILARITIES:
            raise MddError(f"Unknown similarity '{kind}'. Use one of: {', '.join(SIMILARITIES)}.")
        self.kind, self.alpha = kind, float(alpha)
        n = syn.size
        self.params: list[torch.Tensor] = []
        if kind == "low-rank":
            if rank < 1:
                raise MddError(f"similarity rank must be >= 1 (got {rank}).")
            left = torch.randn(n, rank, generator=generator)
            self.diag = syn.add_extra("sim_diag", torch.ones(n))
            self.left = syn.add_extra("sim_left", left)
            self.right = syn.add_extra("sim_right", torch.zeros(n, rank))
            syn.add_extra("sim_alpha", torch.tensor(self.alpha), learnable=False)
            self.params = [self.diag, self.left, self.right]
        elif kind == "full":
            self.full = syn.add_extra("similarity", torch.eye(n))
            self.params = [self.full]
        self.device = syn.device

    def block(self, idx: torch.Tensor) -> torch.Tensor | None:
        """The B x B target of batch `idx`; None for the identity (the loss then uses I itself)."""
        if self.kind == "low-rank":
            return low_rank_block(self.diag, self.left, self.right, self.alpha, idx)
        if self.kind == "full":
            return self.full[idx][:, idx]
        return None

    @property
    def stored_bytes(self) -> int:
        return int(sum(p.numel() * p.element_size() for p in self.params))
