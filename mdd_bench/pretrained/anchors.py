"""Pretrained anchors for the offline protocols.

The paper protocol starts every image encoder from ImageNet weights. The `cpu` and `smoke` protocols
need the same notion without a download: each image encoder is pretrained once on a generated
classification corpus (one object per image, label = shape x colour) drawn with another seed than the
`shapes` retrieval data, and the weights are cached content-addressed. Evaluation, experts and MDM's
anchor all start from these weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from mdd_bench.cache import atomic_write, cache_dir, stable_hash
from mdd_bench.data.images import normaliser
from mdd_bench.data.shapes import (
    COLOURS,
    GENERATOR_VERSION,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    render,
    sample_scene,
)
from mdd_bench.digests import note_artifact
from mdd_bench.locks import build_once
from mdd_bench.models import create_image_encoder
from mdd_bench.models.random_init import seeded_init
from mdd_bench.protocol import Protocol

ANCHOR_VERSION = 1
NUM_CLASSES = len(SHAPES) * len(COLOURS)


def classification_corpus(count: int, resolution: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [n, 3, R, R] of one object each, and its shape x colour label."""
    rng = np.random.default_rng([seed, 7, GENERATOR_VERSION])
    images = np.empty((count, 3, resolution, resolution), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    shapes, colours = list(SHAPES), list(COLOURS)
    for i in range(count):
        backdrop = sample_scene(rng)
        shape, colour = int(rng.integers(len(shapes))), int(rng.integers(len(colours)))
        size = str(rng.choice(list(SIZES)))
        radius = SIZES[size][0] / 2
        x, y = rng.uniform(radius, 1 - radius, size=2)
        obj = SceneObject(shapes[shape], colours[colour], size, float(x), float(y))
        scene = Scene((obj,), backdrop.background, backdrop.bg_colours, backdrop.noise)
        images[i] = np.asarray(render(scene, resolution, rng)).transpose(2, 0, 1)
        labels[i] = shape * len(colours) + colour
    return torch.from_numpy(images), torch.from_numpy(labels)


def anchor_key(name: str, protocol: Protocol) -> str:
    spec = protocol.image
    return stable_hash(
        [name, protocol.data.resolution, protocol.data.mean, protocol.data.std, spec.anchor_images,
         spec.anchor_epochs, spec.anchor_seed, GENERATOR_VERSION, ANCHOR_VERSION, timm.__version__]
    )  # fmt: skip


def anchor_path(name: str, protocol: Protocol) -> Path:
    return cache_dir("anchors") / f"{name}-{anchor_key(name, protocol)}.safetensors"


def train_anchor(
    name: str, protocol: Protocol, progress: bool = True, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    spec = protocol.image
    resolution = protocol.data.resolution
    torch.manual_seed(spec.anchor_seed)
    encoder = create_image_encoder(name, "none", resolution=resolution)
    head = nn.Linear(int(encoder.num_features), NUM_CLASSES)
    encoder, head = encoder.to(device), head.to(device)
    pixels, labels = classification_corpus(spec.anchor_images, resolution, spec.anchor_seed)
    normalise = normaliser(protocol)
    params = list(encoder.parameters()) + list(head.parameters())
    optimiser = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    batch = min(128, len(labels))
    per_epoch = len(labels) // batch
    steps = spec.anchor_epochs * per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(spec.anchor_seed)
    encoder.train()
    bar = tqdm(total=steps, desc=f"anchor {name}", unit="step", disable=not progress, leave=False)
    for _ in range(spec.anchor_epochs):
        order = torch.randperm(len(labels), generator=generator)
        for b in range(per_epoch):
            idx = order[b * batch : (b + 1) * batch]
            x = normalise(pixels[idx])
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x).to(device)
            loss = F.cross_entropy(head(encoder(x)), labels[idx].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}


def ensure_anchor(
    name: str, protocol: Protocol, progress: bool = True, device: str | torch.device = "cpu"
) -> Path:
    """Path of the cached anchor weights of image encoder `name`, training them on first need (once, even
    when several processes ask at the same time: the others wait for the file)."""
    path = anchor_path(name, protocol)

    def build() -> None:
        state = train_anchor(name, protocol, progress, device)
        atomic_write(path, lambda p: save_file(state, str(p)))

    build_once(path, path.exists, build)
    note_artifact(path)
    return path


def pretrained_image_encoder(
    name: str, protocol: Protocol, progress: bool = True, device: str | torch.device = "cpu"
) -> nn.Module:
    """The protocol's notion of a pretrained encoder: ImageNet weights, our anchor, or random.

    Returned on the CPU; `device` is where an anchor trains on first need. Random ("none") is the same
    seeded draw on every call, as a checkpoint would be (`models/random_init.py`).
    """
    mode = protocol.image.pretrained
    resolution = protocol.data.resolution
    if mode == "anchor":
        weights = ensure_anchor(name, protocol, progress, device)
        return create_image_encoder(name, "anchor", weights=weights, resolution=resolution)
    if mode == "none":
        with seeded_init(name):
            return create_image_encoder(name, mode, resolution=resolution)
    return create_image_encoder(name, mode, resolution=resolution)
