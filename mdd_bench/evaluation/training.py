"""Training a fresh two-tower model: the recipe shared by evaluation, references and experts.

The loop takes any `PairSource` (`workspace/pairs.py`): a distilled set's tensors or the real training
pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from mdd_bench.data.augment import dsa
from mdd_bench.errors import MddError
from mdd_bench.models.dual import DualEncoder, infonce, soft_infonce, weighted_bce
from mdd_bench.protocol import Protocol
from mdd_bench.workspace.pairs import PairSource


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
