"""Karpathy-split loader: both annotation layouts, COCO paths, restval, caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdd_bench.cache import cache_dir
from mdd_bench.data import images as images_mod
from mdd_bench.data.karpathy import FileImages, load_karpathy

# split -> [(image file, captions)]; the last train image is `restval` in the Karpathy layout.
CORPUS: dict[str, list[tuple[str, list[str]]]] = {
    "train": [
        ("a.png", ["A dog runs.", "a dog running"]),
        ("b.png", ["Two cats.", "cats sleeping", "  raw caption, kept as is  "]),
        ("c.png", ["A red car."]),
    ],
    "val": [(f"v{k}.png", [f"val {k} caption {j}" for j in range(5)]) for k in range(2)],
    "test": [(f"t{k}.png", [f"test {k} caption {j}" for j in range(5)]) for k in range(3)],
}


def colour(name: str) -> tuple[int, int, int]:
    k = sum(map(ord, name))
    return (k * 7 % 256, k * 13 % 256, k * 29 % 256)


def write_image(path: Path, size: tuple[int, int] = (12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour(path.name)).save(path)


def write_blip(
    root: Path,
    prefix: str = "flickr30k",
    image_dir: str = "flickr30k-images",
    disk_dir: str | None = None,
) -> None:
    """BLIP layout: train one entry per caption, val/test one entry per image.

    Paths in the JSON start with `image_dir`; the files go under `root/disk_dir` (default the same).
    """
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    for split, entries in CORPUS.items():
        rows: list[dict] = []
        for k, (file, caps) in enumerate(entries):
            rel = f"{image_dir}/{file}" if image_dir else file
            write_image(root / (image_dir if disk_dir is None else disk_dir) / file)
            if split == "train":
                rows += [{"image": rel, "caption": c, "image_id": str(k)} for c in caps]
            else:
                rows.append({"image": rel, "caption": caps})
        (ann / f"{prefix}_{split}.json").write_text(json.dumps(rows))


def write_karpathy(root: Path, name: str = "flickr30k", image_dir: str = "flickr30k-images") -> None:
    """Original Karpathy layout; the last train image is `restval`."""
    images = []
    for split, entries in CORPUS.items():
        for k, (file, caps) in enumerate(entries):
            write_image(root / image_dir / file)
            tag = "restval" if split == "train" and k == len(entries) - 1 else split
            sentences = [{"raw": c, "tokens": c.split()} for c in caps]
            images.append({"filename": file, "split": tag, "sentences": sentences})
    (root / f"dataset_{name}.json").write_text(json.dumps({"images": images}))


def expected_pixels(split: str, resolution: int) -> np.ndarray:
    return np.stack(
        [np.broadcast_to(np.array(colour(f), np.uint8)[:, None, None], (3, resolution, resolution))
         for f, _ in CORPUS[split]]
    )  # fmt: skip


def test_blip_layout(tmp_path: Path) -> None:
    write_blip(tmp_path)
    ds = load_karpathy("flickr30k", tmp_path, 8)
    assert ds.layout == "blip" and ds.name == "flickr30k" and ds.root == tmp_path
    train = ds.train
    assert train.num_images == 3 and train.num_captions == 6
    assert train.caption_image.tolist() == [0, 0, 1, 1, 1, 2]
    assert train.captions[4] == "  raw caption, kept as is  "
    assert train.image_names == [
        "flickr30k-images/a.png",
        "flickr30k-images/b.png",
        "flickr30k-images/c.png",
    ]
    assert [len(c) for c in ds.test.image_captions()] == [5, 5, 5]
    assert ds.val.num_images == 2 and ds.val.num_captions == 10
    for split in ("train", "val", "test"):
        pixels = ds.splits[split].images.all().numpy()
        assert pixels.shape == (len(CORPUS[split]), 3, 8, 8) and pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, expected_pixels(split, 8))


def test_both_layouts_agree(tmp_path: Path) -> None:
    write_blip(tmp_path / "blip")
    write_karpathy(tmp_path / "karpathy")
    blip = load_karpathy("flickr30k", tmp_path / "blip", 8)
    karpathy = load_karpathy("flickr30k", tmp_path / "karpathy", 8)
    assert karpathy.layout == "karpathy"
    for split in ("train", "val", "test"):
        a, b = blip.splits[split], karpathy.splits[split]
        assert a.captions == b.captions
        assert a.caption_image.tolist() == b.caption_image.tolist()
        assert [Path(n).name for n in a.image_names] == [Path(n).name for n in b.image_names]
        assert np.array_equal(a.images.all().numpy(), b.images.all().numpy())


def test_restval_counts_as_train(tmp_path: Path) -> None:
    write_karpathy(tmp_path)
    ds = load_karpathy("flickr30k", tmp_path, 8)
    assert [Path(n).name for n in ds.train.image_names] == ["a.png", "b.png", "c.png"]
    assert ds.train.captions[-1] == "A red car."


def test_blip_preferred_when_both_present(tmp_path: Path) -> None:
    write_blip(tmp_path)
    write_karpathy(tmp_path)
    assert load_karpathy("flickr30k", tmp_path, 8).layout == "blip"


def test_coco_filepath(tmp_path: Path) -> None:
    images = []
    for split, entries in CORPUS.items():
        for file, caps in entries:
            folder = "train2014" if split == "train" else "val2014"
            name = f"COCO_{folder}_{file.replace('.png', '.jpg')}"
            path = tmp_path / "images" / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 16), colour(file)).save(path, quality=95)
            sentences = [{"raw": c} for c in caps]
            entry = {"filepath": folder, "filename": name, "split": split, "sentences": sentences}
            images.append(entry)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "dataset_coco.json").write_text(json.dumps({"images": images}))
    ds = load_karpathy("coco", tmp_path, 8)
    assert ds.layout == "karpathy"
    assert ds.test.image_names[0] == "val2014/COCO_val2014_t0.jpg"
    assert ds.train.image_names[0] == "train2014/COCO_train2014_a.jpg"
    pixels = ds.test.images.all().numpy().astype(int)
    assert np.abs(pixels - expected_pixels("test", 8)).max() <= 6  # JPEG is lossy


def test_flickr8k_folder_and_shapes(tmp_path: Path) -> None:
    # Bare file names in the JSON; the files are in a dataset-specific folder found by probing.
    write_blip(tmp_path / "f8k", prefix="flickr8k", image_dir="", disk_dir="Flicker8k_Dataset")
    ds = load_karpathy("Flickr8k", tmp_path / "f8k", 8)
    assert ds.name == "flickr8k" and ds.train.image_names[0] == "a.png"
    write_blip(tmp_path / "shapes", prefix="shapes", image_dir="images/train")
    assert load_karpathy("shapes", tmp_path / "shapes", 8).test.num_captions == 15


@pytest.mark.parametrize("resolution", [4, 16])
def test_resolution(tmp_path: Path, resolution: int) -> None:
    write_blip(tmp_path)
    ds = load_karpathy("flickr30k", tmp_path, resolution)
    assert ds.resolution == resolution
    assert tuple(ds.val.images.all().shape) == (2, 3, resolution, resolution)
    assert ds.val.images.get([1]).shape == (1, 3, resolution, resolution)


def test_second_load_is_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_blip(tmp_path)
    calls: list[Path] = []
    real = images_mod.read_image

    def counting(path: Path, resolution: int) -> np.ndarray:
        calls.append(path)
        return real(path, resolution)

    monkeypatch.setattr(images_mod, "read_image", counting)
    before = set(cache_dir("images").glob("*.npy"))
    first = load_karpathy("flickr30k", tmp_path, 8)
    assert len(calls) == 3 + 2 + 3
    assert len(set(cache_dir("images").glob("*.npy")) - before) == 3
    calls.clear()
    second = load_karpathy("flickr30k", tmp_path, 8)
    assert calls == []
    assert np.array_equal(first.test.images.all().numpy(), second.test.images.all().numpy())


def test_check_mode_reads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_blip(tmp_path)
    monkeypatch.setattr(images_mod, "read_image", lambda *a: pytest.fail("read at load time"))
    ds = load_karpathy("flickr30k", tmp_path, 8, decode=False)
    assert isinstance(ds.test.images, FileImages)
    assert ds.test.images.paths[0] == tmp_path / "flickr30k-images" / "t0.png"
    assert ds.test.images.paths[0].is_absolute()
    assert ds.test.image_names[0] == "flickr30k-images/t0.png"


def test_relative_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_blip(tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    ds = load_karpathy("flickr30k", Path("rel"), 8, decode=False)
    assert ds.root == tmp_path / "rel"
    assert all(p.is_absolute() for p in ds.train.images.paths)
