"""Losses of the two-tower model against hand computation; the projection head and unit-norm embeddings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mdd_bench.models.dual import LOSSES, DualEncoder, ProjectionHead, infonce, soft_infonce, weighted_bce

LOGITS = [[2.0, 0.5, -1.0], [0.3, 1.5, 0.2], [-0.4, 0.9, 0.7]]


def log_softmax_at(row: list[float], k: int) -> float:
    top = max(row)
    return row[k] - (top + math.log(sum(math.exp(v - top) for v in row)))


def hand_infonce(z: list[list[float]]) -> float:
    n = len(z)
    rows = -sum(log_softmax_at(z[i], i) for i in range(n)) / n
    columns = [[z[i][j] for i in range(n)] for j in range(n)]
    cols = -sum(log_softmax_at(columns[j], j) for j in range(n)) / n
    return 0.5 * (rows + cols)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bce(z: float, y: float) -> float:
    return -y * math.log(sigmoid(z)) - (1 - y) * math.log(1 - sigmoid(z))


def test_infonce_by_hand() -> None:
    z = torch.tensor(LOGITS, dtype=torch.float64)
    assert infonce(z).item() == pytest.approx(hand_infonce(LOGITS), rel=1e-12)
    two = [[1.0, -2.0], [0.5, 3.0]]
    # rows: -log(e^1/(e^1+e^-2)), -log(e^3/(e^.5+e^3)); columns: -log(e^1/(e^1+e^.5)), -log(e^3/(e^-2+e^3))
    by_hand = 0.5 * (
        0.5 * (math.log1p(math.exp(-3)) + math.log1p(math.exp(-2.5)))
        + 0.5 * (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-5)))
    )
    assert infonce(torch.tensor(two, dtype=torch.float64)).item() == pytest.approx(by_hand, rel=1e-12)


def test_infonce_is_symmetric_not_row_only() -> None:
    z = torch.tensor(LOGITS, dtype=torch.float64)
    rows_only = torch.nn.functional.cross_entropy(z, torch.arange(3)).item()
    assert infonce(z).item() != pytest.approx(rows_only)
    assert infonce(z.T).item() == pytest.approx(infonce(z).item())


def test_soft_infonce_with_identity_is_infonce() -> None:
    z = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert soft_infonce(z, torch.eye(6, dtype=torch.float64)).item() == pytest.approx(infonce(z).item())
    assert LOSSES["infonce"] is soft_infonce and LOSSES["wbce"] is weighted_bce


def test_soft_infonce_by_hand() -> None:
    y = [[0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [0.0, 0.3, 1.0]]  # rows not normalised, as in LoRS
    n = 3
    columns = [[LOGITS[i][j] for i in range(n)] for j in range(n)]
    rows = -sum(y[i][j] * log_softmax_at(LOGITS[i], j) for i in range(n) for j in range(n)) / n
    cols = -sum(y[i][j] * log_softmax_at(columns[j], i) for i in range(n) for j in range(n)) / n
    got = soft_infonce(torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    assert got.item() == pytest.approx(0.5 * (rows + cols), rel=1e-12)


def test_weighted_bce_by_hand() -> None:
    z = [[2.0, -1.0], [0.5, 1.0]]
    pos = (bce(2.0, 1) + bce(1.0, 1)) / 2
    neg = (bce(-1.0, 0) + bce(0.5, 0)) / 2
    got = weighted_bce(torch.tensor(z, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    assert got.item() == pytest.approx(0.5 * (pos + neg), abs=1e-5)


def test_weighted_bce_class_balance() -> None:
    # 1 positive and 3 negatives: the positive alone carries half the loss.
    z = torch.tensor([[0.0, -3.0], [-3.0, -3.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    expected = 0.5 * (bce(0.0, 1) + bce(-3.0, 0))
    plain_mean = (bce(0.0, 1) + 3 * bce(-3.0, 0)) / 4
    got = weighted_bce(z, y).item()
    assert got == pytest.approx(expected, abs=1e-5) and got != pytest.approx(plain_mean, abs=1e-3)


def test_weighted_bce_soft_target_above_half_is_positive() -> None:
    z = [[2.0, 0.4], [-1.0, 1.0]]
    y = [[1.0, 0.7], [0.0, 1.0]]
    positives = [bce(2.0, 1.0), bce(0.4, 0.7), bce(1.0, 1.0)]
    pos = sum(positives) / 3
    neg = bce(-1.0, 0.0)
    got = weighted_bce(torch.tensor(z, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    assert got.item() == pytest.approx(0.5 * (pos + neg), abs=1e-5)
    as_negative = 0.5 * ((positives[0] + positives[2]) / 2 + (neg + positives[1]) / 2)
    assert got.item() != pytest.approx(as_negative, abs=1e-3)


def test_losses_have_gradients() -> None:
    z = torch.tensor(LOGITS, requires_grad=True)
    for loss in (infonce(z), soft_infonce(z, torch.eye(3)), weighted_bce(z, torch.eye(3))):
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_projection_head_shape() -> None:
    head = ProjectionHead(24, 10).eval()
    out = head(torch.randn(5, 24))
    assert out.shape == (5, 10)
    # Ends in a LayerNorm: every row has mean 0 and unit variance (default affine parameters).
    assert torch.allclose(out.mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(out.var(1, unbiased=False), torch.ones(5), atol=1e-3)


class TinyImageEncoder(nn.Module):
    num_features = 10

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, self.num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_dual_encoder_unit_norm_and_logits() -> None:
    torch.manual_seed(0)
    model = DualEncoder(TinyImageEncoder(), text_dim=24).eval()
    images, texts = 5 * torch.randn(4, 3, 8, 8), 3 * torch.randn(6, 24)
    img, txt = model.encode_images(images), model.encode_texts(texts)
    assert img.shape == (4, 10) and txt.shape == (6, 10)
    assert torch.allclose(img.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(txt.norm(dim=1), torch.ones(6), atol=1e-5)
    logits = model.logits(images, texts)
    assert model.logit_scale == pytest.approx(1 / 0.07)
    assert logits.shape == (4, 6) and torch.allclose(logits, img @ txt.T / 0.07, atol=1e-4)
    assert logits.abs().max() <= 1 / 0.07 + 1e-4
