"""DSA (evaluation-time augmentation of distilled sets) and the real-image augmentation."""

from __future__ import annotations

import pytest
import torch

from mdd_bench.data.augment import DSA_OPS, DSA_STRATEGY, DSAParams, dsa, real_augmenter


def batch(n: int = 6, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=g)


def test_dsa_is_reproducible_by_generator_and_keeps_shape() -> None:
    x = batch()
    a = dsa(x, torch.Generator().manual_seed(1))
    b = dsa(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    outs = [dsa(x, torch.Generator().manual_seed(s)) for s in range(8)]
    assert any(not torch.equal(o, outs[0]) for o in outs[1:])


@pytest.mark.parametrize("op", sorted(DSA_OPS))
def test_each_dsa_op_changes_the_batch_and_is_differentiable(op: str) -> None:
    x = batch().requires_grad_(True)
    params = DSAParams(prob_flip=1.0) if op == "flip" else None
    y = dsa(x, torch.Generator().manual_seed(3), strategy=op, params=params)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_dsa_ops_do_what_they_name() -> None:
    x = batch()
    g = torch.Generator().manual_seed(0)
    flipped = dsa(x, g, "flip", DSAParams(prob_flip=1.0))
    assert torch.equal(flipped, x.flip(3))
    cut = dsa(x, torch.Generator().manual_seed(0), "cutout")
    zeroed = (cut == 0).all(1)  # whole-pixel zeros, a square per image
    assert all(0 < int(zeroed[i].sum()) <= 8 * 8 for i in range(len(x)))
    shifted = dsa(x, torch.Generator().manual_seed(0), "crop")
    # a translation keeps values (moved) and pads with zeros: no value is invented
    for i in range(len(x)):
        kept = shifted[i][shifted[i] != 0]
        assert torch.isin(kept, x[i]).all()
    # colour ops keep geometry: a constant image stays spatially constant
    const = torch.ones(4, 3, 8, 8) * torch.tensor([0.2, -0.4, 0.9]).view(1, 3, 1, 1)
    coloured = dsa(const, torch.Generator().manual_seed(0), "color")
    assert torch.allclose(coloured, coloured[:, :, :1, :1].expand_as(coloured))


def test_dsa_strategy_draws_one_op_per_batch() -> None:
    assert DSA_STRATEGY.split("_") == ["color", "crop", "cutout", "flip", "scale", "rotate"]


def test_real_augmenter_is_seeded_uint8_per_image() -> None:
    pixels = (torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    augment = real_augmenter(32)
    a, b, c = augment(pixels, 7), augment(pixels, 7), augment(pixels, 8)
    assert a.dtype == torch.uint8 and a.shape == pixels.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, pixels)
    # images get their own parameters: two copies of one image come out different
    same = pixels[:1].repeat(4, 1, 1, 1)
    out = augment(same, 3)
    assert any(not torch.equal(out[0], out[i]) for i in range(1, 4))
