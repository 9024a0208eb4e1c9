"""Flat per-modality parameter vectors of a two-tower model: what experts store and merges average."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mdd_bench.errors import MddError
from mdd_bench.models.dual import BACKBONE, TRAINED_PARTS, DualEncoder

# The modalities of a flat parameter vector: the image tower (encoder + optional image head) and the
# text head. Expert snapshots and merged models use this split; with a frozen backbone the image vector
# is the image head alone (`TRAINED_PARTS`, by the model's `towers`).
MODALITIES = TRAINED_PARTS[BACKBONE]


def named_parameters(model: DualEncoder, modality: str) -> list[tuple[str, nn.Parameter]]:
    """The parameters one modality trains, with their `DualEncoder` state-dict names, in a fixed order."""
    return model.trained_parameters(modality)


def flatten(model: DualEncoder, modality: str) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).float() for _, p in named_parameters(model, modality)])


def layout(model: DualEncoder, modality: str) -> list[list[Any]]:
    return [[name, list(p.shape)] for name, p in named_parameters(model, modality)]


def unflatten(flat: torch.Tensor, entries: Sequence[Sequence[Any]]) -> dict[str, torch.Tensor]:
    """A flat vector back to named tensors, by a layout of (name, shape)."""
    sizes = [int(torch.Size(shape).numel()) for _, shape in entries]
    if sum(sizes) != flat.numel():
        raise MddError(
            f"A flat parameter vector has {flat.numel()} values but its layout needs {sum(sizes)}."
        )
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for (name, shape), numel in zip(entries, sizes, strict=True):
        out[str(name)] = flat[offset : offset + numel].view(shape)
        offset += numel
    return out
