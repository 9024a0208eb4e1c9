"""The shared distillation layer against independent computations: kernel energy, Model-Stock merge,
K-means selection, the loop's bookkeeping and the per-iteration teacher sampler."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdd_bench.artifacts.experts import ensure_experts
from mdd_bench.data import load_dataset
from mdd_bench.distill import (
    ExpertBank,
    TeacherSampler,
    initial_pairs,
    kernel_energy,
    kmeans_nearest,
    model_stock_merge,
    model_stock_ratio,
)
from mdd_bench.distill.merge import merge_flat
from mdd_bench.errors import MddError
from mdd_bench.protocol import load_protocol
from mdd_bench.workspace import Workspace, flatten

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

# ------------------------------------------------------------------------------------------- kernel


def _direct_mmd2(x: torch.Tensor, y: torch.Tensor, sigma: float, statistic: str) -> float:
    """Loops over pairs with math.acos: an independent computation of the estimator."""
    x, y = F.normalize(x.double(), dim=1), F.normalize(y.double(), dim=1)

    def k(a, b):
        cos = min(max(float(a @ b), -1 + 1e-6), 1 - 1e-6)
        return math.exp(-(math.acos(cos) ** 2) / (2 * sigma**2))

    def within(s):
        pairs = [(i, j) for i in range(len(s)) for j in range(len(s)) if statistic == "v" or i != j]
        return sum(k(s[i], s[j]) for i, j in pairs) / len(pairs)

    cross = sum(k(a, b) for a, b in itertools.product(x, y)) / (len(x) * len(y))
    return within(x) + within(y) - 2 * cross


@pytest.mark.parametrize("statistic", ["v", "u"])
def test_kernel_energy_matches_direct_formula(statistic: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 4, generator=gen), torch.randn(7, 4, generator=gen) + 0.5
    got = kernel_energy(x, y, 0.5, statistic, sqrt=False)
    assert float(got) == pytest.approx(_direct_mmd2(x, y, 0.5, statistic), rel=1e-5, abs=1e-7)
    rooted = kernel_energy(x, y, 0.5, statistic, sqrt=True)
    assert float(rooted) == pytest.approx(math.sqrt(max(float(got), 0) + 1e-12), rel=1e-5)


def test_kernel_energy_zero_for_identical_sets_positive_otherwise() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 8, generator=gen)
    # V-statistic: exactly the same set gives zero (up to the clamp on the diagonal).
    assert float(kernel_energy(x, x.clone(), 0.5, "v", sqrt=False)) == pytest.approx(0, abs=1e-6)
    far = torch.randn(6, 8, generator=gen) + 3
    for statistic in ("v", "u"):
        assert float(kernel_energy(x, far, 0.5, statistic, sqrt=False)) > 0.05
    # Kernel choice matters: chordal and geodesic differ on the same features (spec section 12).
    geo = kernel_energy(x, far, 0.5, "v", sqrt=False, kind="geodesic")
    chord = kernel_energy(x, far, 0.5, "v", sqrt=False, kind="chordal")
    assert abs(float(geo) - float(chord)) > 1e-3
    with pytest.raises(MddError, match="at least two"):
        kernel_energy(x[:1], far, 0.5, "u")


def test_kernel_energy_gradient_pulls_sets_together() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(8, 4, generator=gen).requires_grad_(True)
    y = torch.randn(32, 4, generator=gen) + torch.tensor([2.0, 0, 0, 0])
    before = float(kernel_energy(x, y).detach())
    opt = torch.optim.SGD([x], lr=2.0)
    for _ in range(200):
        opt.zero_grad()
        kernel_energy(x, y).backward()
        opt.step()
    assert float(kernel_energy(x, y).detach()) < 0.25 * before


# ------------------------------------------------------------------------------------------- merge


def test_model_stock_ratio_on_known_angles() -> None:
    assert float(model_stock_ratio(1.0)) == pytest.approx(1.0)
    assert float(model_stock_ratio(0.0)) == pytest.approx(0.0)
    assert float(model_stock_ratio(0.5)) == pytest.approx(2 * 0.5 / 1.5)
    assert float(model_stock_ratio(-0.2)) == pytest.approx(-0.4 / 0.8)  # disagreement moves away
    assert float(model_stock_ratio(-0.5)) == -1.0  # floored: the reference diverges as cos -> -1
    assert float(model_stock_ratio(-1.0)) == -1.0
    assert float(model_stock_ratio(3.0)) == pytest.approx(1.0)  # clamped


def test_merge_on_hand_made_tensors() -> None:
    anchor = {"a": torch.zeros(2), "b": torch.ones(2), "n": torch.tensor([3]), "s": torch.zeros(3)}
    w1 = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([2.0, 1.0]), "n": torch.tensor([9]),
          "s": torch.zeros(4), "extra": torch.ones(1)}  # fmt: skip
    w2 = {
        "a": torch.tensor([0.0, 1.0]),
        "b": torch.tensor([3.0, 1.0]),
        "n": torch.tensor([9]),
        "s": torch.zeros(4),
    }
    out = model_stock_merge(anchor, w1, w2, alpha=1.0)
    assert set(out) == set(anchor)  # keys absent from the anchor are dropped
    # "a": orthogonal deltas -> cos 0 -> t 0 -> stays at the anchor.
    assert torch.allclose(out["a"], torch.zeros(2))
    # "b": parallel deltas (1,0) and (2,0) -> cos 1 -> t 1 -> the experts' average (2.5, 1).
    assert torch.allclose(out["b"], torch.tensor([2.5, 1.0]))
    assert torch.equal(out["n"], anchor["n"]) and torch.equal(out["s"], anchor["s"])  # int / shape mismatch
    half = model_stock_merge(anchor, w1, w2, alpha=0.5)
    assert torch.allclose(half["b"], torch.tensor([1.75, 1.0]))
    # 60 degrees apart: cos 0.5, t = 2/3.
    w1 = {"a": torch.tensor([1.0, 0.0])}
    w2 = {"a": torch.tensor([0.5, math.sqrt(3) / 2])}
    got = model_stock_merge({"a": torch.zeros(2)}, w1, w2)["a"]
    assert torch.allclose(got, (2 / 3) * (w1["a"] + w2["a"]) / 2, atol=1e-6)


def test_flat_merge_equals_per_tensor_merge() -> None:
    gen = torch.Generator().manual_seed(3)
    shapes = {"x": (3, 4), "y": (5,), "z": (2, 2, 2)}
    states = [{k: torch.randn(*s, generator=gen) for k, s in shapes.items()} for _ in range(3)]
    states[2]["y"] = states[0]["y"] - 0.3 * (states[1]["y"] - states[0]["y"])  # opposite deltas
    states[2]["z"] = states[0]["z"] + 0.1 * torch.randn(2, 2, 2, generator=gen)
    want = model_stock_merge(*states, alpha=0.7)
    flat = [torch.cat([s[k].reshape(-1) for k in shapes]) for s in states]
    sizes = [int(np.prod(s)) for s in shapes.values()]
    got = merge_flat(*flat, sizes, alpha=0.7)
    assert torch.isfinite(got).all() and got.abs().max() < 10
    assert torch.allclose(got, torch.cat([want[k].reshape(-1) for k in shapes]), atol=1e-6)


# ------------------------------------------------------------------------------------------- k-means


def test_kmeans_picks_one_member_per_separable_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(6, 16) * 10
    labels = np.repeat(np.arange(6), 40)
    x = centres[labels] + rng.normal(0, 0.3, (len(labels), 16))
    perm = rng.permutation(len(x))
    x, labels = x[perm], labels[perm]
    chosen = kmeans_nearest(x.astype(np.float32), 6, seed=0)
    assert len(set(chosen.tolist())) == 6
    assert sorted(labels[chosen].tolist()) == list(range(6))
    # Each pick is its cluster's member nearest the (normalised) cluster mean.
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for i in chosen:
        members = unit[labels == labels[i]]
        mean = members.mean(0) / np.linalg.norm(members.mean(0))
        assert unit[i] @ mean >= (members @ mean).max() - 1e-5


def test_kmeans_distinct_even_with_duplicates_and_rejects_nan() -> None:
    x = np.ones((10, 4), dtype=np.float32)  # every point identical: empty clusters get fallbacks
    chosen = kmeans_nearest(x, 4, seed=0)
    assert len(set(chosen.tolist())) == 4
    x[3, 1] = np.nan
    with pytest.raises(MddError, match="NaN"):
        kmeans_nearest(x, 4, seed=0)
    with pytest.raises(MddError, match="clusters"):
        kmeans_nearest(np.ones((3, 2), dtype=np.float32), 5, seed=0)


# The loop (val checks, per-track selection, plateau, re-score, NaN): tests/test_selection.py.


# ------------------------------------------------------------------------------------------- teachers


@pytest.fixture(scope="module")
def smoke_bank():
    protocol = load_protocol("smoke")
    ws = Workspace(protocol, load_dataset("shapes", protocol, progress=False), progress=False)
    return ws, ExpertBank(ensure_experts(ws, progress=False), ws.device)


def test_teacher_modes_build_what_they_name(smoke_bank) -> None:
    ws, bank = smoke_bank
    anchor_encoder = flatten(ws.fresh_model(0), "image")
    tuned = TeacherSampler(ws, bank, "fine-tuned", seed=0)
    model = tuned.sample()
    (e, p) = tuned.last["checkpoints"][0]
    assert torch.equal(flatten(model, "image"), bank.get(e, p)[0])
    assert torch.equal(flatten(model, "text"), bank.get(e, p)[1])
    pre = TeacherSampler(ws, bank, "pretrained", seed=0).sample()
    assert torch.equal(flatten(pre, "image"), anchor_encoder)  # projection_dim 0: encoder only
    mix = TeacherSampler(ws, bank, "weighted-sum", seed=0)
    model = mix.sample()
    (e, p), r = mix.last["checkpoints"][0], mix.last["r"]
    assert 0.1 <= r <= 0.9
    want = r * bank.get(e, p)[0] + (1 - r) * anchor_encoder
    assert torch.allclose(flatten(model, "image"), want, atol=1e-6)
    merged = TeacherSampler(ws, bank, "interpolation", alpha=0.5, seed=0)
    model = merged.sample()
    (e1, p1), (e2, p2) = merged.last["checkpoints"]
    assert (e1, p1) != (e2, p2) and p1 > 0 and p2 > 0
    sizes = bank.segment_sizes("image")
    want = merge_flat(anchor_encoder, bank.get(e1, p1)[0], bank.get(e2, p2)[0], sizes, 0.5)
    assert torch.allclose(flatten(model, "image"), want, atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(MddError, match="Unknown model init"):
        TeacherSampler(ws, bank, "average")


def test_data_inits_differ_and_are_reproducible(smoke_bank) -> None:
    ws, bank = smoke_bank
    model = TeacherSampler(ws, bank, "interpolation", seed=1).sample().eval()
    picks = {how: initial_pairs(ws, 8, how, 0, model, 10) for how in ("joint", "image", "text", "random")}
    indices = {how: tuple(p[2]) for how, p in picks.items()}
    assert len(set(indices.values())) == 4
    assert all(len(set(ix)) == 8 for ix in indices.values())
    again = initial_pairs(ws, 8, "joint", 0, model, 10)
    assert tuple(again[2]) == indices["joint"]
    images, texts, chosen = initial_pairs(ws, 8, "noise", 0)
    assert chosen is None and images.shape == (8, 3, 32, 32) and texts.shape[0] == 8
    real_images, _ = ws.real_pairs("train").batch(torch.arange(8))
    assert not torch.equal(images, real_images)
    with pytest.raises(MddError, match="exceeds"):
        initial_pairs(ws, 10**6, "random", 0)
