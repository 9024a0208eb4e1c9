"""`mdd-bench data check`: counts per split and every problem at once, not just the first.

Load the dataset in check mode (`load_karpathy(..., decode=False)` / `load_hub(..., decode=False)`)
so loading reads no image; `check_dataset` then reads every image itself and collects the
missing/unreadable ones. Images are read from `image_paths` when given, else from the absolute
paths of a Karpathy `FileImages` store, else through the split's own image store (hub datasets).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mdd_bench.data.images import read_image
from mdd_bench.data.karpathy import EXPECTED_TEST_SIZES, FileImages
from mdd_bench.data.pairs import PairDataset, Split
from mdd_bench.errors import MddError


def check_dataset(ds: PairDataset, image_paths: dict[str, list[Path]] | None = None) -> dict[str, Any]:
    """Like `PairDataset.summary()` (one key per split, with `unreadable` image names added) plus
    `problems` (one line each, must fix), `warnings` (worth knowing) and `ok`."""
    report: dict[str, Any] = {
        "dataset": ds.name,
        "layout": ds.layout,
        "root": str(ds.root) if ds.root is not None else None,
        "resolution": ds.resolution,
        "problems": [],
        "warnings": _size_warnings(ds),
    }
    for name, split in ds.splits.items():
        paths = (image_paths or {}).get(name)
        if paths is None and isinstance(split.images, FileImages):
            paths = split.images.paths
        report[name], problems = _check_split(split, _reader(split, paths, ds.resolution))
        report["problems"] += problems
    report["ok"] = not report["problems"]
    return report


def _reader(split: Split, paths: list[Path] | None, resolution: int) -> Callable[[int], Any]:
    if paths is None:
        return lambda i: split.images.get([i])
    if len(paths) != split.num_images:
        raise ValueError(f"{split.name}: {len(paths)} image paths for {split.num_images} images")
    return lambda i: read_image(paths[i], resolution)


def _check_split(split: Split, read: Callable[[int], Any]) -> tuple[dict[str, Any], list[str]]:
    n = split.num_images
    problems = _caption_problems(split)
    bad: list[str] = []
    for i in tqdm(range(n), desc=f"check {split.name}", unit="img", disable=n < 500, leave=False):
        try:
            read(i)
        except MddError as exc:
            name = split.image_names[i] if i < len(split.image_names) else f"#{i}"
            bad.append(name)
            problems.append(f"{split.name} image {i} ({name}): {exc}")
    valid = split.caption_image[(split.caption_image >= 0) & (split.caption_image < n)]
    per_image = np.bincount(valid, minlength=n) if n else np.zeros(1, dtype=np.int64)
    summary = {
        "images": n,
        "captions": split.num_captions,
        "captions_per_image": [int(per_image.min()), int(per_image.max())],
        "unreadable": bad,
    }
    return summary, problems


def _caption_problems(split: Split) -> list[str]:
    n, out = split.num_images, []
    if n == 0 or split.num_captions == 0:
        out.append(f"{split.name}: {n} images and {split.num_captions} captions; both must be > 0.")
    ci = split.caption_image
    if len(ci) and (ci.min() < 0 or ci.max() >= n):
        out.append(f"{split.name}: some captions point at an image index outside 0..{n - 1}.")
    if n and len(ci):
        lonely = int(n - np.unique(ci[(ci >= 0) & (ci < n)]).size)
        if lonely:
            out.append(f"{split.name}: {lonely} images have no caption.")
    blank = sum(1 for c in split.captions if not c.strip())
    if blank:
        out.append(f"{split.name}: {blank} captions are empty.")
    return out


def _size_warnings(ds: PairDataset) -> list[str]:
    """A Karpathy test split of another size gives numbers that are not comparable with papers."""
    expected = EXPECTED_TEST_SIZES.get(ds.name)
    test = ds.splits.get("test")
    if expected is None or test is None:
        return []
    got = (test.num_images, test.num_captions)
    if got == expected:
        return []
    return [
        f"test split has {got[0]} images / {got[1]} captions; the Karpathy {ds.name} test split "
        f"has {expected[0]} / {expected[1]}, so results are not comparable with published ones."
    ]
