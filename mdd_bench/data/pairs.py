"""The one dataset object every loader produces and every method consumes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mdd_bench.data.images import ImageStore

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Images and their captions; caption `j` describes image `caption_image[j]`.

    On the train split every caption is one training pair (image, caption), as in the references.
    """

    name: str
    images: ImageStore
    captions: list[str]
    caption_image: np.ndarray
    image_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.caption_image = np.asarray(self.caption_image, dtype=np.int64)
        if len(self.captions) != len(self.caption_image):
            raise ValueError("captions and caption_image must have the same length")

    @property
    def num_images(self) -> int:
        return len(self.images)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    def image_captions(self) -> list[list[int]]:
        """Caption indices of each image (five per image on Flickr/COCO test)."""
        out: list[list[int]] = [[] for _ in range(self.num_images)]
        for j, i in enumerate(self.caption_image.tolist()):
            out[i].append(j)
        return out


@dataclass
class PairDataset:
    name: str
    splits: dict[str, Split]
    resolution: int
    root: Path | None = None
    layout: str = ""

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]

    @property
    def test(self) -> Split:
        return self.splits["test"]

    def fingerprint(self) -> str:
        """Identifies the content (captions, pairing, image names), so caches follow the data."""
        digest = hashlib.sha256(f"{self.name}|{self.resolution}".encode())
        for name in sorted(self.splits):
            split = self.splits[name]
            digest.update(json.dumps([name, split.captions, split.image_names]).encode())
            digest.update(split.caption_image.tobytes())
        return digest.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        rows: dict[str, Any] = {"dataset": self.name, "layout": self.layout, "root": str(self.root)}
        for name, split in self.splits.items():
            per_image = np.bincount(split.caption_image, minlength=split.num_images)
            rows[name] = {
                "images": split.num_images,
                "captions": split.num_captions,
                "captions_per_image": [int(per_image.min()), int(per_image.max())]
                if split.num_images
                else [0, 0],
            }
        return rows


def random_indices(num_pairs: int, budget: int, seed: int) -> np.ndarray:
    """`budget` of `num_pairs` pair indices drawn uniformly without replacement, sorted.

    The one random draw of the project: the `random` cell of seed s and every method initialised from
    random pairs at seed s (`data_init = "random"`) start from exactly these pairs, so a method's gain
    over random is a paired difference.
    """
    if not 0 <= budget <= num_pairs:
        raise ValueError(f"cannot draw {budget} of {num_pairs} pairs")
    return np.sort(np.random.default_rng(seed).choice(num_pairs, size=budget, replace=False))
