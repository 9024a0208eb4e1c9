"""The trajectory core against independent computations: plain training loops, a first-order unroll
through autograd, finite differences, the full similarity matrix."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mdd_bench.distill.similarity import Similarity, low_rank_block, low_rank_matrix
from mdd_bench.distill.student import FunctionalStudent
from mdd_bench.distill.synthetic import SyntheticSet
from mdd_bench.distill.trajectory import BatchSchedule, match_distance, tesla_backward, unroll
from mdd_bench.errors import MddError
from mdd_bench.models.dual import DualEncoder, infonce, weighted_bce
from mdd_bench.workspace import flatten

N, TEXT_DIM = 6, 5


class TinyEncoder(nn.Module):
    num_features = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))


def _setup(seed: int = 0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = DualEncoder(TinyEncoder(), TEXT_DIM).to(dtype)
    student = FunctionalStudent(model)
    start = {m: v.to(dtype) for m, v in student.initial().items()}
    gen = torch.Generator().manual_seed(seed + 1)
    target = {m: v + 0.05 * torch.randn(v.shape, generator=gen, dtype=dtype) for m, v in start.items()}
    images = torch.randn(N, 3, 6, 6, generator=gen, dtype=dtype, requires_grad=True)
    texts = torch.randn(N, TEXT_DIM, generator=gen, dtype=dtype, requires_grad=True)
    return model, student, start, target, images, texts


BATCHES = [torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 0, 1]), torch.tensor([2, 3, 4, 5])]


def _loss_at(student, images, texts, target_block=None, loss="wbce"):
    def loss_at(theta, k):
        idx = BATCHES[k % len(BATCHES)]
        logits = student.logits(theta, images[idx], texts[idx])
        if loss == "infonce":
            return infonce(logits)
        block = torch.eye(len(idx), dtype=logits.dtype) if target_block is None else target_block(idx)
        return weighted_bce(logits, block)

    return loss_at


def test_unrolled_student_matches_a_plain_training_loop() -> None:
    model, student, start, _, images, texts = _setup()
    model.eval()  # no dropout, so both runs see identical steps
    lrs = {"image": 0.3, "text": 0.05}
    loss_at = _loss_at(student, images, texts)
    detached = unroll(loss_at, start, lrs, steps=5, create_graph=False)
    graph = unroll(loss_at, start, lrs, steps=5, create_graph=True)

    plain = copy.deepcopy(model)
    for p in plain.parameters():
        p.requires_grad_(True)
    optimiser = torch.optim.SGD(
        [
            {"params": list(plain.image_encoder.parameters()), "lr": lrs["image"]},
            {"params": list(plain.text_projection.parameters()), "lr": lrs["text"]},
        ]
    )
    for k in range(5):
        idx = BATCHES[k % len(BATCHES)]
        loss = weighted_bce(
            plain.logits(images[idx].detach(), texts[idx].detach()), torch.eye(4, dtype=torch.float64)
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    for m in ("image", "text"):
        expected = flatten(plain, m).double()
        assert torch.allclose(detached[m], expected, atol=1e-12)
        assert torch.allclose(graph[m].detach(), expected, atol=1e-12)
        assert not torch.allclose(expected, start[m])  # the loop did move


def _first_order_reference(loss_at, start, target, lrs, steps, normaliser):
    """Independent computation: theta_K = theta_0 - eta sum_k g_k(sg(theta_k), data) through autograd."""
    theta = {m: v.detach().clone() for m, v in start.items()}
    total = {m: 0.0 for m in start}
    for k in range(steps):
        live = {m: theta[m].detach().requires_grad_(True) for m in theta}
        grads = torch.autograd.grad(loss_at(live, k), [live[m] for m in live], create_graph=True)
        for m, g in zip(live, grads, strict=True):
            total[m] = total[m] + g
        theta = {
            m: live[m].detach() - float(lrs[m].detach()) * g.detach()
            for m, g in zip(live, grads, strict=True)
        }
    final = {m: start[m] - lrs[m] * total[m] for m in start}
    return match_distance(final, start, target, normaliser)


@pytest.mark.parametrize("normaliser", ["per-modality", "shared"])
@pytest.mark.parametrize("dropout", [False, True])
def test_tesla_gradient_equals_first_order_autograd(normaliser: str, dropout: bool) -> None:
    model, student, start, target, images, texts = _setup()
    model.train(dropout)  # with dropout on, pass 2 must replay pass 1's masks to agree
    syn_diag = torch.rand(N, dtype=torch.float64).add(0.5).requires_grad_(True)
    left = torch.randn(N, 2, dtype=torch.float64, requires_grad=True)
    right = (0.1 * torch.randn(N, 2, dtype=torch.float64)).requires_grad_(True)

    def block(idx):
        return low_rank_block(syn_diag, left, right, 1.0, idx)

    loss_at = _loss_at(student, images, texts, block)
    leaves = [images, texts, syn_diag, left, right]
    lrs = {m: torch.tensor(0.2, dtype=torch.float64, requires_grad=True) for m in ("image", "text")}

    torch.manual_seed(11)
    expected_loss = _first_order_reference(loss_at, start, target, lrs, 4, normaliser)
    expected = torch.autograd.grad(expected_loss, leaves + list(lrs.values()))

    torch.manual_seed(11)
    result = tesla_backward(loss_at, start, target, lrs, 4, leaves, normaliser)
    got = [t.grad for t in leaves + list(lrs.values())]
    assert result.loss == pytest.approx(float(expected_loss), rel=1e-10)
    for e, g in zip(expected, got, strict=True):
        assert g is not None and e.abs().sum() > 0
        assert torch.allclose(g, e, rtol=1e-7, atol=1e-12)


def test_unroll_gradient_matches_finite_differences() -> None:
    """MTT-VL's full back-propagation (second-order terms included) against central differences."""
    model, student, start, target, images, texts = _setup()
    model.eval()
    loss_at = _loss_at(student, images, texts, loss="infonce")
    lr = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    lrs = {"image": lr, "text": torch.tensor(0.1, dtype=torch.float64)}
    loss = match_distance(unroll(loss_at, start, lrs, 3), start, target)
    grad_image, grad_lr = torch.autograd.grad(loss, [images, lr])

    def value(eps_img: torch.Tensor | None = None, lr_value: float = 0.4) -> float:
        with torch.no_grad():
            shifted = images + (eps_img if eps_img is not None else 0)
        f = _loss_at(student, shifted, texts.detach(), loss="infonce")
        final = unroll(f, start, {"image": lr_value, "text": 0.1}, 3, create_graph=False)
        return float(match_distance(final, start, target))

    h = 1e-6
    assert float(grad_lr) == pytest.approx(
        (value(lr_value=0.4 + h) - value(lr_value=0.4 - h)) / (2 * h), rel=1e-5
    )
    direction = torch.zeros_like(images)
    direction[1, 0, 2, 3] = 1.0
    numeric = (value(h * direction) - value(-h * direction)) / (2 * h)
    assert float(grad_image[1, 0, 2, 3]) == pytest.approx(numeric, rel=1e-5)


def test_match_distance_normalisers() -> None:
    start = {"image": torch.zeros(2), "text": torch.zeros(1)}
    target = {"image": torch.tensor([3.0, 4.0]), "text": torch.tensor([1.0])}
    final = {"image": torch.tensor([3.0, 0.0]), "text": torch.tensor([0.0])}
    # per modality: 16 / 25 + 1 / 1; shared: (16 + 1) / (25 + 1)
    assert float(match_distance(final, start, target)) == pytest.approx(16 / 25 + 1)
    assert float(match_distance(final, start, target, "shared")) == pytest.approx(17 / 26)
    with pytest.raises(MddError, match="identical"):
        match_distance(final, start, start)


def test_low_rank_similarity_starts_at_identity_and_blocks_match_the_matrix() -> None:
    syn = SyntheticSet(torch.zeros(7, 3, 2, 2), torch.zeros(7, 4), "cpu")
    sim = Similarity(syn, "low-rank", rank=3, alpha=2.0, generator=torch.Generator().manual_seed(0))
    full = low_rank_matrix(sim.diag, sim.left, sim.right, sim.alpha)
    assert torch.equal(full, torch.eye(7))
    with torch.no_grad():
        sim.right.normal_()
        sim.diag.uniform_(0.5, 1.5)
    full = low_rank_matrix(sim.diag, sim.left, sim.right, sim.alpha)
    idx = torch.tensor([5, 1, 3])
    assert torch.allclose(sim.block(idx), full[idx][:, idx], atol=1e-6)
    assert not torch.allclose(full, torch.eye(7))
    # the stored extras rebuild the same matrix in the evaluator
    distilled = SyntheticSet.distilled(syn.state())
    assert torch.allclose(distilled.similarity(), full.detach(), atol=1e-6)
    assert sim.stored_bytes == (7 + 2 * 7 * 3) * 4
    assert Similarity(syn, "identity").block(idx) is None
    with pytest.raises(MddError, match="Unknown similarity"):
        Similarity(syn, "diagonal")


def test_identity_similarity_gives_left_factor_no_gradient() -> None:
    """A spec fact: with R = 0 the gradient reaching L is exactly zero while a and R get gradients."""
    syn = SyntheticSet(torch.zeros(5, 3, 2, 2), torch.zeros(5, 4), "cpu")
    sim = Similarity(syn, "low-rank", rank=2, alpha=1.0, generator=torch.Generator().manual_seed(0))
    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(1)) * 3
    weighted_bce(logits, sim.block(torch.arange(5))).backward()
    assert torch.count_nonzero(sim.left.grad) == 0
    assert sim.diag.grad.abs().sum() > 0 and sim.right.grad.abs().sum() > 0


def test_batch_schedule_cycles_without_repeats() -> None:
    schedule = BatchSchedule(10, 4, "cycle", seed=0)
    first = torch.cat(schedule.steps(2))
    assert len(set(first.tolist())) == 8  # one permutation's first two chunks
    assert len(schedule.next()) == 4  # two left over: a new permutation starts
    fresh = BatchSchedule(10, 4, "fresh", seed=0)
    assert all(len(set(b.tolist())) == 4 for b in fresh.steps(5))
    assert len(BatchSchedule(3, 8, "cycle", 0).next()) == 3
