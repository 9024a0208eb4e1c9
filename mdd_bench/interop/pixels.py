"""Pixel spaces: every reference stores images normalised with its own mean/std, as do we.

A distilled image is only meaningful in the space it was learned in; moving it between a reference and
a protocol de-normalises with one pair of statistics and re-normalises with the other (an exact affine
map, no clipping: distilled pixels often leave [0, 1] and must keep doing so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mdd_bench.protocol import Protocol

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Normalisation:
    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, protocol: Protocol) -> Normalisation:
        return cls(f"protocol '{protocol.name}'", tuple(protocol.data.mean), tuple(protocol.data.std))

    def same_as(self, other: Normalisation) -> bool:
        return np.allclose(self.mean, other.mean, atol=1e-7) and np.allclose(self.std, other.std, atol=1e-7)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std)}


# All three references normalise with the CLIP statistics (their `create_dataset` transforms), although
# NFNet-L0 was pretrained with ImageNet's.
REFERENCE_NORMALISATION = {
    "lors": Normalisation("LoRS (CLIP mean/std)", CLIP_MEAN, CLIP_STD),
    "mtt-vl": Normalisation("MTT-VL (CLIP mean/std)", CLIP_MEAN, CLIP_STD),
    "mdm": Normalisation("MDM (CLIP mean/std)", CLIP_MEAN, CLIP_STD),
}


def _stats(norm: Normalisation) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(norm.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float64).view(1, 3, 1, 1)
    return mean, std


def renormalise(images: torch.Tensor, source: Normalisation, target: Normalisation) -> torch.Tensor:
    """float32 images moved from `source`'s normalised space to `target`'s (a copy; untouched if equal)."""
    if source.same_as(target):
        return images.float()
    src_mean, src_std = _stats(source)
    dst_mean, dst_std = _stats(target)
    pixels = images.double() * src_std + src_mean
    return ((pixels - dst_mean) / dst_std).float()


def to_uint8(images: torch.Tensor, norm: Normalisation) -> tuple[np.ndarray, float]:
    """[N, H, W, 3] uint8 pixels for viewing, and the fraction of values clipped to [0, 1] on the way."""
    mean, std = _stats(norm)
    pixels = images.double() * std + mean
    clipped = float(((pixels < 0) | (pixels > 1)).double().mean())
    out = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return out.numpy(), clipped
