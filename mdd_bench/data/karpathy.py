"""Flickr8k / Flickr30k / COCO (Karpathy splits) and the generated `shapes` corpus.

Two annotation layouts are read, because users have one or the other:

* BLIP/LoRS (preferred when both are present): `flickr30k_{train,val,test}.json`,
  `coco_karpathy_{train,val,test}.json`, `flickr8k_{train,val,test}.json`, `shapes_{split}.json`.
  Train is one entry per caption (`{"image", "caption": str, "image_id"}`); val/test are one entry
  per image (`{"image", "caption": [5 str]}`).
* original Karpathy: `dataset_{flickr8k,flickr30k,coco}.json` with every image's `split`;
  `restval` counts as train, as in BLIP's 113k-image COCO train split.

Files are looked for in `data_root` and `data_root/annotations`. Captions are kept raw.

Check mode (`decode=False`): each split's images are a `FileImages` store that reads nothing at
load time and exposes the absolute `paths`, so `mdd-bench data check` can read every file and list
all the unreadable ones instead of failing on the first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mdd_bench.data.images import ImageStore, LazyImages, file_images, read_image
from mdd_bench.data.pairs import SPLITS, PairDataset, Split
from mdd_bench.errors import MddError, unknown


@dataclass(frozen=True)
class KarpathySpec:
    """Where one dataset's annotations and images are usually found."""

    title: str
    blip: str  # file name pattern with `{split}`
    karpathy: str | None  # the original Karpathy file, if the dataset has one
    image_folders: tuple[str, ...] = ()


DATASETS: dict[str, KarpathySpec] = {
    "flickr8k": KarpathySpec(
        "Flickr8k",
        "flickr8k_{split}.json",
        "dataset_flickr8k.json",
        ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images"),
    ),
    "flickr30k": KarpathySpec(
        "Flickr30k",
        "flickr30k_{split}.json",
        "dataset_flickr30k.json",
        ("flickr30k-images", "flickr30k_images"),
    ),
    "coco": KarpathySpec("COCO", "coco_karpathy_{split}.json", "dataset_coco.json", ("coco",)),
    "shapes": KarpathySpec("shapes", "shapes_{split}.json", None),
}

# (images, captions) of the Karpathy test split, as every paper reports them; documentation and
# a sanity check for `mdd-bench data check`, not enforced at load time.
EXPECTED_TEST_SIZES: dict[str, tuple[int, int]] = {
    "flickr8k": (1000, 5000),
    "flickr30k": (1000, 5000),
    "coco": (5000, 25000),
}

# A split as read from the annotations: (image path relative to the image folder, its captions).
RawSplit = list[tuple[str, list[str]]]


class FileImages(LazyImages):
    """Image files read on access (check mode); `paths` are absolute so a checker can name them."""

    def __init__(self, paths: Sequence[Path], resolution: int) -> None:
        self.paths = list(paths)
        super().__init__(len(self.paths), lambda i: read_image(self.paths[i], resolution), resolution)


def load_karpathy(name: str, data_root: Path, resolution: int, decode: bool = True) -> PairDataset:
    """Load one Karpathy-split dataset; `decode=False` defers every image read (check mode)."""
    key = name.lower()
    if key not in DATASETS:
        raise unknown("dataset", name, DATASETS)
    spec = DATASETS[key]
    root = Path(data_root).expanduser().absolute()  # absolute: cache keys and checks name files
    if not root.is_dir():
        what = (
            "Generate the shapes corpus there"
            if key == "shapes"
            else f"Put the {spec.title} images and Karpathy annotations ({_annotation_names(key)}) there"
        )
        stand_in = "" if key == "shapes" else f" (paper-offline: `mdd-bench data generate {key} --out DIR`)"
        raise MddError(f"Data root '{root}' does not exist. {what} or pass --data-root DIR{stand_in}.")
    if not os.access(root, os.R_OK | os.X_OK):
        raise MddError(
            f"Data root '{root}' is not readable (permission denied). Fix its permissions or pass "
            "--data-root DIR."
        )
    layout, raw = read_annotations(key, root)
    folder = _image_folder(key, root, raw)
    splits = {s: _build_split(key, s, raw[s], folder, resolution, decode) for s in SPLITS}
    return PairDataset(name=key, splits=splits, resolution=resolution, root=root, layout=layout)


def read_annotations(name: str, root: Path) -> tuple[str, dict[str, RawSplit]]:
    """Find and parse the annotation files; returns the layout ("blip" | "karpathy") and splits."""
    spec = DATASETS[name]
    dirs = [root, root / "annotations"]
    blip_names = [spec.blip.format(split=s) for s in SPLITS]
    for d in dirs:
        if all((d / f).is_file() for f in blip_names):
            raw = {s: _read_blip(d / f, s) for s, f in zip(SPLITS, blip_names, strict=True)}
            return "blip", _non_empty(name, raw, [d / f for f in blip_names])
    if spec.karpathy:
        for d in dirs:
            if (d / spec.karpathy).is_file():
                path = d / spec.karpathy
                return "karpathy", _non_empty(name, _read_karpathy(path), [path] * len(SPLITS))
    raise MddError(_missing_annotations(name, root, blip_names))


def _missing_annotations(name: str, root: Path, blip_names: list[str]) -> str:
    spec = DATASETS[name]
    where = f"'{root}' or '{root / 'annotations'}'"
    found = [f for f in blip_names if (root / f).is_file() or (root / "annotations" / f).is_file()]
    if found:
        missing = [f for f in blip_names if f not in found]
        return (
            f"Incomplete {spec.title} annotations in {where}: found {', '.join(found)} "
            f"but not {', '.join(missing)}. Add the missing files."
        )
    wanted = ", ".join(blip_names) + " (BLIP layout)"
    if spec.karpathy:
        wanted += f" or {spec.karpathy} (Karpathy layout)"
    fix = "Put them there or pass --data-root DIR."
    return f"No {spec.title} annotations in {where}: looked for {wanted}. {fix}"


def _annotation_names(name: str) -> str:
    """The annotation files a user can put in the data root, for an error message."""
    spec = DATASETS[name]
    blip = spec.blip.format(split="{train,val,test}")
    return f"{spec.karpathy} or {blip}" if spec.karpathy else blip


def _non_empty(name: str, raw: dict[str, RawSplit], files: list[Path]) -> dict[str, RawSplit]:
    for (split, entries), path in zip(raw.items(), files, strict=True):
        if not entries:
            raise MddError(
                f"The {name} '{split}' split in '{path}' has no images or captions. "
                "Check the annotation file is complete."
            )
    return raw


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MddError(f"Annotation file '{path}' is not UTF-8 text ({exc.reason}).") from None
    except OSError as exc:
        raise MddError(f"Annotation file '{path}' cannot be read ({exc.strerror}).") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MddError(
            f"Annotation file '{path}' is not valid JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno}). Re-download it."
        ) from None


def _structure_error(path: Path, where: str, what: str) -> MddError:
    return MddError(f"{path.name} {where}: {what} (in '{path}').")


def _string(path: Path, where: str, entry: dict, key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise _structure_error(path, where, f"'{key}' must be a non-empty string")
    return value


def _read_blip(path: Path, split: str) -> RawSplit:
    """Train: one entry per caption, grouped by image in order of first appearance."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise _structure_error(path, "top level", f"expected a list of entries, got {_kind(data)}")
    grouped: dict[str, list[str]] = {}
    for i, entry in enumerate(data):
        where = f"entry {i}"
        if not isinstance(entry, dict):
            raise _structure_error(path, where, f"expected an object, got {_kind(entry)}")
        image = _string(path, where, entry, "image")
        grouped.setdefault(image, []).extend(_captions(path, where, entry, split))
    return list(grouped.items())


def _captions(path: Path, where: str, entry: dict, split: str) -> list[str]:
    value = entry.get("caption")
    if split == "train":
        if not isinstance(value, str):
            raise _structure_error(path, where, "'caption' must be a string")
        return [value]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise _structure_error(path, where, "'caption' must be a non-empty list of strings")
    return list(value)


def _read_karpathy(path: Path) -> dict[str, RawSplit]:
    data = _load_json(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise _structure_error(path, "top level", "expected an object with an 'images' list")
    raw: dict[str, RawSplit] = {s: [] for s in SPLITS}
    for i, entry in enumerate(images):
        where = f"entry {i}"
        if not isinstance(entry, dict):
            raise _structure_error(path, where, f"expected an object, got {_kind(entry)}")
        split = entry.get("split")
        split = "train" if split == "restval" else split
        if not isinstance(split, str) or split not in raw:
            raise _structure_error(path, where, "'split' must be train, restval, val or test")
        filename = _string(path, where, entry, "filename")
        filepath = entry.get("filepath")
        if filepath is not None and not isinstance(filepath, str):
            raise _structure_error(path, where, "'filepath' must be a string")
        rel = f"{filepath}/{filename}" if filepath else filename
        raw[split].append((rel, _sentences(path, where, entry)))
    return raw


def _sentences(path: Path, where: str, entry: dict) -> list[str]:
    sentences = entry.get("sentences")
    if not isinstance(sentences, list) or not sentences:
        raise _structure_error(path, where, "'sentences' must be a non-empty list")
    out = []
    for k, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        if not isinstance(raw, str):
            raise _structure_error(path, f"{where} sentence {k}", "expected an object with a 'raw' string")
        out.append(raw)
    return out


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def _image_folder(name: str, root: Path, raw: dict[str, RawSplit]) -> Path:
    """The folder the annotation paths are relative to, found by probing the first images.

    The first two images of each split are probed, so one missing file is reported by the checker
    as missing rather than making the whole folder look absent.
    """
    probes = [rel for s in SPLITS for rel, _ in raw[s][:2]]
    first = probes[0]
    candidates = [root, root / "images"]
    for sub in DATASETS[name].image_folders:
        candidates += [root / sub, root / "images" / sub]
    for folder in candidates:
        if any((folder / rel).is_file() for rel in probes):
            return folder
    tried = ", ".join(f"'{c}'" for c in candidates)
    raise MddError(
        f"Cannot find the {DATASETS[name].title} images: the first image '{first}' is in none of "
        f"{tried}. Put the images in one of them or pass --data-root DIR."
    )


def _build_split(name: str, split: str, raw: RawSplit, folder: Path, resolution: int, decode: bool) -> Split:
    names = [rel for rel, _ in raw]
    captions = [c for _, caps in raw for c in caps]
    caption_image = np.repeat(np.arange(len(raw)), [len(caps) for _, caps in raw])
    paths = [folder / rel for rel in names]
    images = _decoded(paths, resolution, f"{name} {split}") if decode else FileImages(paths, resolution)
    return Split(split, images, captions, caption_image, image_names=names)


def _decoded(paths: list[Path], resolution: int, desc: str) -> ImageStore:
    """A bad image stops a decoding load; point at the checker that lists all of them at once."""
    try:
        return file_images(paths, resolution, desc=desc)
    except MddError as exc:
        raise MddError(f"{exc} Run `mdd-bench data check` to list every bad image.") from None
