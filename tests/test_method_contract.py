"""Every registered method, built-in or plugin, honours the same contract on `smoke` (future methods are
picked up automatically): output size, finite tensors at the protocol's resolution and text dimension,
JSON provenance, determinism by seed; and everything the context hands a method is on its device."""

from __future__ import annotations

import json

import pytest
import torch

from mdd_bench.api import DistillContext
from mdd_bench.registry import list_methods

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

BUDGET = 10


@pytest.mark.parametrize("name", sorted(list_methods()))
def test_method_contract(name: str, smoke) -> None:
    protocol, dataset = smoke
    cls = list_methods()[name]
    method = cls.for_protocol(protocol)
    ctx = DistillContext(protocol, dataset, seed=0, progress=False)
    ctx.prepare(cls.artifacts)
    out = method.distill(ctx, BUDGET)
    res = protocol.data.resolution
    assert out.size == BUDGET
    assert tuple(out.images.shape) == (BUDGET, 3, res, res)
    assert tuple(out.texts.shape) == (BUDGET, ctx.text_embeddings("train").shape[1])
    for tensor in (out.images, out.texts, *out.extras.values()):
        assert torch.isfinite(tensor).all() and tensor.device.type == "cpu"
    json.dumps(out.provenance)  # provenance is plain data, stored as JSON
    again = cls.for_protocol(protocol).distill(
        DistillContext(protocol, dataset, seed=0, progress=False), BUDGET
    )
    assert torch.equal(out.images, again.images) and torch.equal(out.texts, again.texts)


def test_context_hands_every_tensor_on_its_device(smoke) -> None:
    protocol, dataset = smoke
    ctx = DistillContext(protocol, dataset, seed=0, progress=False)
    ctx.text_embeddings("train")
    # A stand-in for a GPU: tensors moved to "meta" keep shapes but no data, so any tensor a method
    # receives from the context that is not moved to ctx.device shows up as a CPU tensor here.
    fake = torch.device("meta")
    ctx.device = ctx.workspace.device = fake
    images, texts = ctx.real_pairs([0, 1, 2])
    assert images.device == fake and texts.device == fake
    assert all(p.device == fake for p in ctx.image_encoder().parameters())
    assert all(p.device == fake for p in ctx.fresh_model().parameters())
