"""Kernel energies (MMD) between two feature sets on the unit sphere.

`kernel_energy` is the squared MMD with a Gaussian kernel of the geodesic (great-circle) distance,
optionally square-rooted (MDM's GKE). Two estimators: "v" (the paper's, every pair incl. the
diagonal, 1/m^2 weights) and "u" (the released code's, off-diagonal within-set means, 1/(m(m-1))).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mdd_bench.errors import MddError

KERNELS = ("geodesic", "chordal")
STATISTICS = ("v", "u")
_CLAMP = 1e-6  # the reference clamps cosines to [-1 + 1e-6, 1 - 1e-6] before arccos


def geodesic_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise great-circle distance arccos(<a, b>) between rows (re-normalised inside)."""
    cos = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    return torch.arccos(cos.clamp(-1 + _CLAMP, 1 - _CLAMP))


def sphere_kernel(a: torch.Tensor, b: torch.Tensor, sigma: float, kind: str = "geodesic") -> torch.Tensor:
    """exp(-d^2 / (2 sigma^2)); d = geodesic distance, or 1 - cos for the first commit's chordal kernel."""
    if kind == "geodesic":
        d = geodesic_distance(a, b)
    elif kind == "chordal":
        d = 1 - F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    else:
        raise MddError(f"Unknown kernel '{kind}'. Use one of: {', '.join(KERNELS)}.")
    return torch.exp(-d.pow(2) / (2 * sigma**2))


def _within(k: torch.Tensor, statistic: str) -> torch.Tensor:
    n = k.shape[0]
    if statistic == "v":
        return k.mean()
    if n < 2:
        raise MddError("The U-statistic needs at least two features per set.")
    return (k.sum() - k.diagonal().sum()) / (n * (n - 1))


def kernel_energy(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float = 0.5,
    statistic: str = "v",
    sqrt: bool = True,
    kind: str = "geodesic",
    diversity_weight: float = 1.0,
) -> torch.Tensor:
    """MMD^2(x, y) = w E k(x, x') + E k(y, y') - 2 E k(x, y); with `sqrt`, sqrt(max(MMD^2, 0) + 1e-12).

    `x` is the set being learned (synthetic) and `y` the target (real); `diversity_weight` w scales the
    synthetic self-similarity as the reference's `diversity_weight`.
    """
    if statistic not in STATISTICS:
        raise MddError(f"Unknown statistic '{statistic}'. Use one of: {', '.join(STATISTICS)}.")
    mmd2 = (
        diversity_weight * _within(sphere_kernel(x, x, sigma, kind), statistic)
        + _within(sphere_kernel(y, y, sigma, kind), statistic)
        - 2 * sphere_kernel(x, y, sigma, kind).mean()
    )
    return torch.sqrt(mmd2.clamp_min(0) + 1e-12) if sqrt else mmd2
