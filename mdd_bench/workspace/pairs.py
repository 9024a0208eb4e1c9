"""Real and distilled pairs as batches of (normalised images, text embeddings), and embedding a split.

A `PairSource` hands out batches by pair index, so one training loop trains on a distilled set (tensors
in memory) or on the real training pairs (uint8 pixel store indexed through the caption-to-image map).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mdd_bench.data.images import normaliser
from mdd_bench.data.pairs import Split
from mdd_bench.models.dual import DualEncoder
from mdd_bench.protocol import Protocol


class PairSource:
    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


@dataclass
class TensorPairs(PairSource):
    images: torch.Tensor  # normalised float [N, 3, R, R]
    texts: torch.Tensor  # [N, D]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[idx].float(), self.texts[idx].float()


class RealPairs(PairSource):
    """The caption-level pairs of a split: pair j = (image caption_image[j], caption j).

    With `augment_seed`, every batch is augmented (crop, flip, RandAugment; see augment.py) with a seed
    drawn from a stream of its own, so a training run reproduces.
    """

    def __init__(
        self, split: Split, text_emb: np.ndarray, protocol: Protocol, augment_seed: int | None = None
    ) -> None:
        self.split = split
        self.texts = torch.from_numpy(np.asarray(text_emb, dtype=np.float32))
        self.normalise = normaliser(protocol)
        self.augment = None
        if augment_seed is not None:
            from mdd_bench.data.augment import real_augmenter

            self.augment = real_augmenter(protocol.data.resolution)
            self._seeds = np.random.default_rng([augment_seed, 17])

    def __len__(self) -> int:
        return self.split.num_captions

    def augment_state(self) -> Any:
        """The augmentation seeds' stream (None without augmentation), for a resumed run."""
        return None if self.augment is None else self._seeds.bit_generator.state

    def set_augment_state(self, state: Any) -> None:
        if self.augment is not None:
            self._seeds.bit_generator.state = state

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.split.images.get(self.split.caption_image[idx.numpy()])
        if self.augment is not None:
            pixels = self.augment(pixels, int(self._seeds.integers(2**62)))
        return self.normalise(pixels), self.texts[idx]


@torch.no_grad()
def embed_images(model: DualEncoder, split: Split, protocol: Protocol, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    norm = normaliser(protocol)
    out = []
    for start in range(0, split.num_images, batch_size):
        idx = np.arange(start, min(start + batch_size, split.num_images))
        out.append(model.encode_images(norm(split.images.get(idx)).to(device)))
    return torch.cat(out)


@torch.no_grad()
def embed_texts(model: DualEncoder, text_emb: np.ndarray, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    texts = torch.from_numpy(np.asarray(text_emb, dtype=np.float32))
    return torch.cat(
        [model.encode_texts(texts[s : s + batch_size].to(device)) for s in range(0, len(texts), batch_size)]
    )
