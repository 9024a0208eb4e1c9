"""`FunctionalStudent.params` splits each flat vector once (issue 32, trajectory step speed). Checked bit for
bit against the per-tensor slices it replaced: the views, a loss, MTT-VL's unrolled gradient and TESLA's
two-pass gradient must not move by one ulp."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mdd_bench.distill.student import Flat, FunctionalStudent
from mdd_bench.distill.trajectory import match_distance, tesla_backward, unroll
from mdd_bench.errors import MddError
from mdd_bench.models.dual import DualEncoder, weighted_bce

N, TEXT_DIM = 6, 5
BATCHES = [torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 0, 1]), torch.tensor([2, 3, 4, 5])]


class TinyEncoder(nn.Module):
    num_features = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))


class SlicedStudent(FunctionalStudent):
    """The implementation before the split: one slice of the flat vector per tensor."""

    def params(self, theta: Flat) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for modality, entries in self.entries.items():
            flat, offset = theta[modality], 0
            for name, shape in entries:
                out[name] = flat[offset : offset + shape.numel()].view(shape)
                offset += shape.numel()
        return out


def _gradients(student_class, dtype: torch.dtype, gradient: str) -> list[torch.Tensor]:
    """Loss and data/step-size gradients of one matching step (dropout on, its masks seeded)."""
    torch.manual_seed(0)
    model = DualEncoder(TinyEncoder(), TEXT_DIM).to(dtype).train()
    student = student_class(model)
    start = student.initial()
    gen = torch.Generator().manual_seed(1)
    target = {m: v + 0.05 * torch.randn(v.shape, generator=gen, dtype=dtype) for m, v in start.items()}
    images = torch.randn(N, 3, 6, 6, generator=gen, dtype=dtype, requires_grad=True)
    texts = torch.randn(N, TEXT_DIM, generator=gen, dtype=dtype, requires_grad=True)
    lrs = {m: torch.tensor(0.2, dtype=dtype, requires_grad=True) for m in start}

    def loss_at(theta, k):
        idx = BATCHES[k % len(BATCHES)]
        logits = student.logits(theta, images[idx], texts[idx])
        return weighted_bce(logits, torch.eye(len(idx), dtype=dtype))

    torch.manual_seed(5)
    if gradient == "unroll":
        final = unroll(loss_at, start, lrs, 4, create_graph=True)
        loss = match_distance(final, start, target)
        loss.backward()
        value = loss.detach()
    else:
        value = torch.tensor(tesla_backward(loss_at, start, target, lrs, 4, [images, texts]).loss)
    return [value, images.grad, texts.grad, *(lr.grad for lr in lrs.values())]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gradient", ["unroll", "tesla"])
def test_split_params_give_the_slices_results_bit_for_bit(dtype: torch.dtype, gradient: str) -> None:
    split = _gradients(FunctionalStudent, dtype, gradient)
    sliced = _gradients(SlicedStudent, dtype, gradient)
    for a, b in zip(split, sliced, strict=True):
        assert a is not None and b is not None and a.abs().sum() > 0
        assert torch.equal(a, b)


def test_params_are_views_of_the_flat_vectors_and_check_their_size() -> None:
    torch.manual_seed(0)
    student = FunctionalStudent(DualEncoder(TinyEncoder(), TEXT_DIM))
    theta = student.initial()
    params = student.params(theta)
    expected = SlicedStudent(student.model).params(theta)
    assert list(params) == list(expected)
    for name, tensor in params.items():
        assert torch.equal(tensor, expected[name]) and tensor.shape == expected[name].shape
        assert tensor.untyped_storage().data_ptr() == expected[name].untyped_storage().data_ptr()
    with pytest.raises(MddError, match="the model needs"):
        student.params({**theta, "text": theta["text"][:-1]})
