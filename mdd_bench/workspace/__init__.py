"""The shared layer: one object per (protocol, dataset, device) that every consumer builds on.

The evaluator, the full-data reference, the experts and the distillation context all need the same
things: cached caption embeddings, real pairs as tensors, a fresh two-tower model on the right device,
a model loaded from a state dict or from flat per-modality vectors (`params.py`); batches of pairs
and embeddings of a split are in `pairs.py`, scoring in `evaluation/metrics.py`. They get
them here, so none of them imports another to get at data, and the device is decided once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mdd_bench.data.pairs import PairDataset
from mdd_bench.errors import MddError
from mdd_bench.models.dual import BACKBONE, DualEncoder
from mdd_bench.pretrained.anchors import pretrained_image_encoder
from mdd_bench.pretrained.text_features import split_embeddings
from mdd_bench.protocol import Protocol
from mdd_bench.workspace.pairs import RealPairs
from mdd_bench.workspace.params import MODALITIES, flatten, layout, named_parameters, unflatten

__all__ = ["MODALITIES", "Workspace", "flatten", "layout", "named_parameters", "resolve_device", "unflatten"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` is the first GPU when there is one, else the CPU; anything else must exist."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise MddError(f"Unknown device '{device}'. Use cpu, cuda, cuda:N or auto.") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise MddError(f"Device '{device}' asked for, but torch sees no GPU. Use --device cpu.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise MddError(
                f"Device '{device}' does not exist: torch sees {torch.cuda.device_count()} GPU(s)."
            )
    elif resolved.type != "cpu":
        raise MddError(f"Unsupported device '{device}'. Use cpu, cuda, cuda:N or auto.")
    return resolved


class Workspace:
    def __init__(
        self,
        protocol: Protocol,
        dataset: PairDataset,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> None:
        self.protocol = protocol
        self.dataset = dataset
        self.device = resolve_device(device)
        self.progress = progress
        self._text: dict[tuple[str, str], np.ndarray] = {}

    # ---------------------------------------------------------------------------------- data
    def text_embeddings(self, split: str = "train", encoder: str | None = None) -> np.ndarray:
        """Frozen caption embeddings of a split (the source text encoder unless named), cached."""
        encoder = encoder or self.protocol.text.source
        key = (split, encoder)
        if key not in self._text:
            embs = split_embeddings(self.dataset, self.protocol.text, encoder, (split,), self.progress)
            self._text[key] = embs[split]
        return self._text[key]

    @property
    def text_dim(self) -> int:
        return int(self.text_embeddings("train").shape[1])

    def real_pairs(self, split: str = "train", augment_seed: int | None = None) -> RealPairs:
        """The caption-level pairs of a split as a batch source (CPU tensors; loops move batches)."""
        return RealPairs(self.dataset.splits[split], self.text_embeddings(split), self.protocol, augment_seed)

    # ---------------------------------------------------------------------------------- models
    def image_encoder(self, name: str | None = None) -> nn.Module:
        """A fresh copy of the protocol's pretrained image encoder (the anchor under `cpu`)."""
        name = name or self.protocol.image.source
        return pretrained_image_encoder(name, self.protocol, self.progress, self.device)

    def fresh_model(
        self,
        seed: int,
        image_encoder: str | None = None,
        text_dim: int | None = None,
        towers: str = BACKBONE,
    ) -> DualEncoder:
        """A new two-tower model on the workspace's device; the heads' random init is drawn from `seed`.

        `towers` defaults to the layout the methods distil with and the experts train; the evaluation
        passes the protocol's (`[eval] towers`).
        """
        encoder = self.image_encoder(image_encoder)
        torch.manual_seed(seed)
        model = DualEncoder(
            encoder,
            text_dim or self.text_dim,
            self.protocol.model.temperature,
            self.protocol.model.projection_dim,
            towers,
        )
        return model.to(self.device)

    def load_model(
        self, state: dict[str, torch.Tensor], image_encoder: str | None = None, towers: str = BACKBONE
    ) -> DualEncoder:
        """A model with the given state dict, in eval mode, on the device.

        A frozen backbone is not part of what trains, so a state without its parameters (an expert
        snapshot of the heads) takes them from the pretrained encoder.
        """
        model = self.fresh_model(seed=0, image_encoder=image_encoder, towers=towers)
        if model.towers != BACKBONE:
            fixed = {f"image_encoder.{k}": v for k, v in model.image_encoder.state_dict().items()}
            state = {**fixed, **state}
        model.load_state_dict(state)
        return model.eval()

    def model_from_flat(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        image_layout: Sequence[Sequence[Any]],
        text_layout: Sequence[Sequence[Any]],
        buffers: dict[str, torch.Tensor] | None = None,
        image_encoder: str | None = None,
        towers: str = BACKBONE,
    ) -> DualEncoder:
        """A model from flat per-modality vectors (expert checkpoints, merges of them)."""
        state = {**unflatten(image, image_layout), **unflatten(text, text_layout)}
        state.update(buffers or {})
        return self.load_model(state, image_encoder, towers)
