"""A generated image-caption set written as a Karpathy folder, so the real loaders read it without the data.

The paper protocol reads Flickr8k, Flickr30k and COCO from Karpathy folders; proving that path (loader,
image folders, splits, restval) and timing the paper's networks needs none of the real pictures. This writes
the shapes generator's scenes and captions (`shapes.py`) at any resolution, as JPEG files like the
originals, with the original annotation file `dataset_<name>.json`: one entry per image with `filename`,
`split`, `imgid`, `sentids` and `sentences` (`raw`, `tokens`, `imgid`, `sentid`). The layouts follow the
real ones where the loader looks: Flickr images in the dataset's usual folder (`Flicker8k_Dataset`,
`flickr30k-images`), COCO's in `train2014/` and `val2014/` named through each entry's `filepath`, with part of
the training images in the `restval` split from `val2014`, as Karpathy's COCO file has them. Splits keep the
real set's proportions. A `generated.json` beside the annotations says what made the folder.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mdd_bench.cache import atomic_write_json
from mdd_bench.data.karpathy import DATASETS
from mdd_bench.data.pairs import SPLITS
from mdd_bench.data.shapes import GENERATOR_VERSION, render, sample_scene, write_captions
from mdd_bench.errors import MddError, unknown

# The real sets' (train, val, test) images in Karpathy's splits; COCO's train counts restval.
REAL_SPLITS: dict[str, tuple[int, int, int]] = {
    "flickr8k": (6000, 1000, 1000),
    "flickr30k": (29000, 1014, 1000),
    "coco": (113287, 5000, 5000),
}
# COCO's Karpathy train split: 82783 train2014 images and 30504 val2014 ones marked restval.
COCO_RESTVAL = 30504 / 113287
MARKER = "generated.json"
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class GeneratedKarpathy:
    """What `write_karpathy` wrote: the settings (also in `generated.json`) and the images per split."""

    dataset: str
    images: int
    resolution: int
    seed: int
    splits: dict[str, int]
    restval: int
    annotations: str
    generator_version: int = GENERATOR_VERSION


def split_sizes(dataset: str, images: int) -> tuple[int, int, int]:
    """(train, val, test) images of a generated set of `images`, in the real set's proportions (one each
    at least)."""
    real = REAL_SPLITS[dataset]
    if images < 3:
        raise MddError(f"--images {images}: a Karpathy set needs at least 3 images (train, val, test).")
    val, test = (max(1, round(images * n / sum(real))) for n in real[1:])
    return images - val - test, val, test


def _tokens(raw: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", raw.lower())


def _entry(dataset: str, image_id: int, split: str, folder: str, captions: list[str], first_sentence: int):
    """The annotation entry of one image, as Karpathy's files write it."""
    sentids = list(range(first_sentence, first_sentence + len(captions)))
    sentences = [
        {"tokens": _tokens(raw), "raw": raw, "imgid": image_id, "sentid": sid}
        for raw, sid in zip(captions, sentids, strict=True)
    ]
    entry: dict[str, Any] = {"sentids": sentids, "imgid": image_id, "sentences": sentences, "split": split}
    if dataset == "coco":
        entry.update(filepath=folder, cocoid=image_id, filename=f"COCO_{folder}_{image_id:012d}.jpg")
    else:
        entry["filename"] = f"{image_id:010d}_generated.jpg"
    return entry


def write_karpathy(
    out: Path, dataset: str, images: int, resolution: int = 224, seed: int = 0, progress: bool = True
) -> GeneratedKarpathy:
    """Write a generated `dataset` (flickr8k, flickr30k, coco) of `images` images at `resolution` under
    `out` in the Karpathy layout; the annotation file is written last, so an interrupted run leaves a
    folder the loader does not take for a whole one."""
    if dataset not in REAL_SPLITS:
        raise unknown("dataset to generate", dataset, REAL_SPLITS)
    out = Path(out).expanduser()
    annotations = out / str(DATASETS[dataset].karpathy)
    if annotations.exists():
        raise MddError(f"'{annotations}' already exists. Pick another --out or remove the folder first.")
    sizes = dict(zip(SPLITS, split_sizes(dataset, images), strict=True))
    restval = round(sizes["train"] * COCO_RESTVAL) if dataset == "coco" else 0
    image_folder = DATASETS[dataset].image_folders[0] if dataset != "coco" else ""
    entries: list[dict[str, Any]] = []
    sentences = 0
    bar = tqdm(total=images, desc=f"{dataset}: generating", unit="img", disable=not progress)
    for split in SPLITS:
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split], GENERATOR_VERSION, 8])
        for i in range(sizes[split]):
            # COCO: train from train2014 (its last `restval` images from val2014, split restval), val and
            # test from val2014.
            mark = "restval" if split == "train" and i >= sizes["train"] - restval else split
            folder = "train2014" if mark == "train" else "val2014"
            scene = sample_scene(rng)
            pixels = render(scene, resolution, rng)
            entry = _entry(dataset, len(entries), mark, folder, write_captions(scene, rng), sentences)
            sentences += len(entry["sentences"])
            path = out / (entry.get("filepath") or image_folder) / entry["filename"]
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels.save(path, quality=95)
            entries.append(entry)
            bar.update(1)
    bar.close()
    made = GeneratedKarpathy(dataset, images, resolution, seed, sizes, restval, annotations.name)
    atomic_write_json(out / MARKER, asdict(made))
    atomic_write_json(annotations, {"images": entries, "dataset": dataset})
    return made
