"""Augmentations of the training recipes, switched on per protocol.

- DSA (differentiable siamese augmentation, Zhao & Bilen 2021), as MDM's and MTT's evaluation apply it to
  every batch of a distilled set: one operation drawn per batch from colour, crop, cutout, flip, scale
  and rotate, with per-image parameters (the references' `ParamDiffAug`, mode "S"). It works on
  normalised float pixels and is differentiable, so a method may also apply it inside distillation.
- Real-image augmentation, as the references apply to real training images (experts, full data):
  random resized crop (scale 0.5-1), horizontal flip and RandAugment (2 ops, magnitude 7) per image on
  uint8 pixels, before normalisation.

Both draw from a `torch.Generator` (DSA) or a seed (real), so a training run reproduces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class DSAParams:
    """The references' `ParamDiffAug` values."""

    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


def _rand(x: torch.Tensor, g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, generator=g).to(x.device, x.dtype)


def _brightness(x, p, g):
    return x + (_rand(x, g, 1, 1, 1) - 0.5) * p.brightness


def _saturation(x, p, g):
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x, g, 1, 1, 1) * p.saturation) + mean


def _contrast(x, p, g):
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(x, g, 1, 1, 1) + p.contrast) + mean


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _scale(x, p, g):
    r = p.ratio_scale
    s = _rand(x, g, 2) * (r - 1.0 / r) + 1.0 / r
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = s[:, 0], s[:, 1]
    return _affine(x, theta)


def _rotate(x, p, g):
    angle = (_rand(x, g) - 0.5) * 2 * p.ratio_rotate / 180 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, sin, torch.zeros_like(cos)], 1),
                         torch.stack([-sin, cos, torch.zeros_like(cos)], 1)], 1)  # fmt: skip
    return _affine(x, theta)


def _flip(x, p, g):
    flip = _rand(x, g, 1, 1, 1) < p.prob_flip
    return torch.where(flip, x.flip(3), x)


def _crop(x, p, g):
    """Translate each image by up to ratio_crop_pad of its size, zero padding (a differentiable gather)."""
    n, _, h, w = x.shape
    sh, sw = int(h * p.ratio_crop_pad + 0.5), int(w * p.ratio_crop_pad + 0.5)
    tx = torch.randint(-sh, sh + 1, (n, 1, 1), generator=g).to(x.device)
    ty = torch.randint(-sw, sw + 1, (n, 1, 1), generator=g).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + tx
    cols = torch.arange(w, device=x.device).view(1, 1, w) + ty
    padded = F.pad(x, [1, 1, 1, 1])
    rows = (rows + 1).clamp(0, h + 1).expand(n, h, w)
    cols = (cols + 1).clamp(0, w + 1).expand(n, h, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def _cutout(x, p, g):
    n, _, h, w = x.shape
    ch, cw = int(h * p.ratio_cutout + 0.5), int(w * p.ratio_cutout + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=g).to(x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=g).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (
        (rows >= ox - ch // 2)
        & (rows < ox - ch // 2 + ch)
        & (cols >= oy - cw // 2)
        & (cols < oy - cw // 2 + cw)
    )
    return x * (~inside).unsqueeze(1).to(x.dtype)


DSA_OPS: dict[str, tuple[Callable, ...]] = {
    "color": (_brightness, _saturation, _contrast),
    "crop": (_crop,),
    "cutout": (_cutout,),
    "flip": (_flip,),
    "scale": (_scale,),
    "rotate": (_rotate,),
}


def dsa(
    x: torch.Tensor, generator: torch.Generator, strategy: str = DSA_STRATEGY, params: DSAParams | None = None
) -> torch.Tensor:
    """One operation of `strategy`, drawn for the batch, with per-image parameters."""
    params = params or DSAParams()
    names = strategy.split("_")
    op = names[int(torch.randint(len(names), (1,), generator=generator))]
    for fn in DSA_OPS[op]:
        x = fn(x, params, generator)
    return x


def real_augmenter(resolution: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """uint8 [n, 3, R, R] -> augmented uint8, each image with its own crop, flip and RandAugment."""
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.RandomResizedCrop(resolution, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandAugment(num_ops=2, magnitude=7),
        ]
    )

    def augment(pixels: torch.Tensor, seed: int) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([transform(img) for img in pixels])

    return augment
