"""Training a fresh two-tower model: the recipe shared by evaluation, references and experts.

A `PairSource` hands out batches of (normalised images, text embeddings) by pair index, so the same
loop trains on a distilled set (tensors in memory) or on the real training pairs (uint8 pixel store
indexed through the caption-to-image map).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .augment import dsa
from .data.pairs import Split
from .errors import MddError
from .models.dual import DualEncoder, infonce, soft_infonce, weighted_bce
from .protocol import Protocol


def normaliser(protocol: Protocol) -> Callable[[torch.Tensor], torch.Tensor]:
    mean = torch.tensor(protocol.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(protocol.data.std).view(1, 3, 1, 1)
    return lambda pixels: (pixels.float() / 255.0 - mean) / std


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
            from .augment import real_augmenter

            self.augment = real_augmenter(protocol.data.resolution)
            self._seeds = np.random.default_rng([augment_seed, 17])

    def __len__(self) -> int:
        return self.split.num_captions

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.split.images.get(self.split.caption_image[idx.numpy()])
        if self.augment is not None:
            pixels = self.augment(pixels, int(self._seeds.integers(2**62)))
        return self.normalise(pixels), self.texts[idx]


@dataclass(frozen=True)
class Recipe:
    """Optimisation settings of one training run (from the protocol's [eval] or [experts])."""

    epochs: int
    lr_img: float
    lr_txt: float
    batch_size: int
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay_epoch: int | None = None
    lr_decay: float = 0.1
    loss: str = "infonce"  # "infonce" (soft targets when a similarity is given) or "wbce"
    dsa: bool = False  # differentiable siamese augmentation of every batch (augment.py)
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"

    @classmethod
    def from_eval(
        cls, protocol: Protocol, image: str | None = None, text: str | None = None, **overrides
    ) -> Recipe:
        """The evaluation recipe of an encoder pair (the source pair by default), then `overrides`.

        The step decay sits at the same fraction of training when a pair trains for other epochs.
        """
        ev = protocol.eval
        if ev.optimizer != "sgd":
            raise MddError(f"Protocol '{protocol.name}': only optimizer = \"sgd\" is supported.")
        pair = ev.pair_recipe(image or protocol.image.source, text or protocol.text.source)
        decay = ev.lr_decay_epoch
        if decay and pair["epochs"] != ev.epochs:
            decay = max(1, round(decay * pair["epochs"] / ev.epochs))
        values = dict(
            epochs=pair["epochs"],
            lr_img=pair["lr_img"],
            lr_txt=pair["lr_txt"],
            batch_size=ev.batch_size,
            momentum=ev.momentum,
            weight_decay=ev.weight_decay,
            lr_decay_epoch=decay,
            lr_decay=ev.lr_decay,
            dsa=pair["dsa"],
            dsa_strategy=ev.dsa_strategy,
        )
        values.update(overrides)
        return cls(**values)


def batch_loss(logits: torch.Tensor, loss: str, targets: torch.Tensor | None) -> torch.Tensor:
    if loss == "wbce":
        eye = torch.eye(logits.shape[0], device=logits.device)
        return weighted_bce(logits, eye if targets is None else targets)
    if loss == "infonce":
        return infonce(logits) if targets is None else soft_infonce(logits, targets)
    raise MddError(f"Unknown loss '{loss}'. Use 'infonce' or 'wbce'.")


EpochHook = Callable[[int, DualEncoder], None]


def train_dual(
    model: DualEncoder,
    source: PairSource,
    recipe: Recipe,
    seed: int,
    similarity: torch.Tensor | None = None,
    on_epoch_end: EpochHook | None = None,
    progress: bool = False,
    desc: str = "train",
) -> DualEncoder:
    """SGD with two parameter groups (what the image and the text tower train: the image encoder, or
    with a frozen backbone the image head; the text head), step decay, shuffled batches.

    Runs on the model's device (batches are moved there). A last batch of one pair is dropped:
    contrastive losses need at least two pairs.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    dsa_generator = torch.Generator().manual_seed(seed + 7919) if recipe.dsa else None
    optimiser = torch.optim.SGD(
        [
            {"params": [p for _, p in model.trained_parameters("image")], "lr": recipe.lr_img},
            {"params": [p for _, p in model.trained_parameters("text")], "lr": recipe.lr_txt},
        ],
        lr=recipe.lr_img,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )
    milestones = [recipe.lr_decay_epoch] if recipe.lr_decay_epoch else []
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones, recipe.lr_decay)
    n = len(source)
    if n < 2:
        raise MddError("Training needs at least two pairs.")
    batches = math.ceil(n / recipe.batch_size)
    bar = tqdm(total=recipe.epochs * batches, desc=desc, unit="step", disable=not progress, leave=False)
    model.train()
    for epoch in range(recipe.epochs):
        order = torch.randperm(n, generator=generator)
        bar.set_postfix(epoch=f"{epoch + 1}/{recipe.epochs}")
        for start in range(0, n, recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            if len(idx) < 2:
                continue
            images, texts = (t.to(device, non_blocking=True) for t in source.batch(idx))
            if dsa_generator is not None:
                images = dsa(images, dsa_generator, recipe.dsa_strategy)
            targets = None if similarity is None else similarity[idx][:, idx].float().to(device)
            loss = batch_loss(model.logits(images, texts), recipe.loss, targets)
            if not torch.isfinite(loss):
                raise MddError(
                    f"Training loss became {loss.item()} at epoch {epoch}. Lower the learning rate "
                    f"(lr_img={recipe.lr_img}, lr_txt={recipe.lr_txt}) or check the distilled set."
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            bar.update(1)
        scheduler.step()
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
            model.train()
    bar.close()
    model.eval()
    return model


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
