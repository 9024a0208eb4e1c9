"""Hugging Face `datasets` loader on a tiny `save_to_disk` folder built here."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from mdd_bench.data import hub
from mdd_bench.data.hub import load_hub
from mdd_bench.errors import MddError

COLOURS = {"train": [(255, 0, 0), (0, 255, 0), (0, 0, 255)], "validation": [(9, 9, 9)]}
COLOURS["test"] = [(200, 100, 50), (50, 100, 200)]


def captions_for(split: str, k: int, single: bool) -> str | list[str]:
    return f"{split} {k}" if single else [f"{split} {k} #{j}" for j in range(k + 1)]


def save(
    tmp_path: Path,
    single: bool = False,
    splits: tuple[str, ...] = tuple(COLOURS),
    folder: str | None = None,
) -> Path:
    """A DatasetDict with an Image column and a caption column (list or one string per row).

    The pixel cache is keyed by folder name + content fingerprint, so equal content in a folder of
    the same name is (rightly) a cache hit across tests; pass `folder` to get a fresh key.
    """
    column = "caption" if single else "captions"
    value = datasets.Value("string")
    features = datasets.Features(
        {"image": datasets.Image(), column: value if single else datasets.Sequence(value)}
    )
    parts = {}
    for split in splits:
        rows = {
            "image": [Image.new("RGB", (10, 12), c) for c in COLOURS[split]],
            column: [captions_for(split, k, single) for k in range(len(COLOURS[split]))],
        }
        parts[split] = datasets.Dataset.from_dict(rows, features=features)
    path = tmp_path / (folder or ("single" if single else "multi"))
    datasets.DatasetDict(parts).save_to_disk(str(path))
    return path


def pixels(split: str, resolution: int) -> np.ndarray:
    rgb = np.array(COLOURS[split], np.uint8)[:, :, None, None]
    return np.broadcast_to(rgb, (len(COLOURS[split]), 3, resolution, resolution))


def test_list_of_captions(tmp_path: Path) -> None:
    path = save(tmp_path)
    ds = load_hub(str(path), 8)
    assert ds.name == "multi" and ds.layout == "hf" and ds.root == path.resolve()
    assert set(ds.splits) == {"train", "val", "test"}
    assert ds.train.num_images == 3 and ds.train.num_captions == 1 + 2 + 3
    assert ds.train.caption_image.tolist() == [0, 1, 1, 2, 2, 2]
    assert ds.train.captions[:2] == ["train 0 #0", "train 1 #0"]
    assert ds.train.image_names == ["train/0", "train/1", "train/2"]
    for ours, theirs in (("train", "train"), ("val", "validation"), ("test", "test")):
        np.testing.assert_array_equal(ds.splits[ours].images.all().numpy(), pixels(theirs, 8))


def test_single_string_captions(tmp_path: Path) -> None:
    ds = load_hub(str(save(tmp_path, single=True)), 4)
    assert ds.test.captions == ["test 0", "test 1"]
    assert ds.test.caption_image.tolist() == [0, 1]
    assert ds.test.images.get([1]).shape == (1, 3, 4, 4)


def test_second_load_is_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(tmp_path, folder="cache-hit")
    calls: list[object] = []
    real = hub.read_image

    def counting(source: object, resolution: int) -> np.ndarray:
        calls.append(source)
        return real(source, resolution)  # type: ignore[arg-type]

    monkeypatch.setattr(hub, "read_image", counting)
    load_hub(str(path), 8)
    assert len(calls) == 3 + 1 + 2
    calls.clear()
    again = load_hub(str(path), 8)
    assert calls == []
    np.testing.assert_array_equal(again.test.images.all().numpy(), pixels("test", 8))


def test_path_column_and_explicit_columns(tmp_path: Path) -> None:
    """A column of file paths; relative ones are taken from the saved folder."""
    folder = tmp_path / "paths"
    parts = {}
    for split, colours in COLOURS.items():
        files = [f"img/{split}{k}.png" for k in range(len(colours))]
        if split == "test":  # absolute paths work too
            files = [str(folder / f) for f in files]
        rows = {"file": files, "text": ["x"] * len(files)}
        parts[split] = datasets.Dataset.from_dict(rows)
    datasets.DatasetDict(parts).save_to_disk(str(folder))
    for split, colours in COLOURS.items():
        for k, c in enumerate(colours):
            write = folder / "img" / f"{split}{k}.png"
            write.parent.mkdir(exist_ok=True)
            Image.new("RGB", (6, 6), c).save(write)
    ds = load_hub(str(folder), 8, image_column="file", caption_column="text")
    assert ds.val.image_names == ["img/validation0.png"]
    np.testing.assert_array_equal(ds.train.images.all().numpy(), pixels("train", 8))
    np.testing.assert_array_equal(ds.test.images.all().numpy(), pixels("test", 8))


def test_missing_split_names_found_splits(tmp_path: Path) -> None:
    path = save(tmp_path, splits=("train", "test"))
    with pytest.raises(MddError, match="no 'val' split.*found: train, test"):
        load_hub(str(path), 8)


def test_unknown_column(tmp_path: Path) -> None:
    with pytest.raises(MddError, match="Did you mean 'captions'"):
        load_hub(str(save(tmp_path)), 8, caption_column="captionz")


def test_offline_hub_name_is_clear() -> None:
    with pytest.raises(MddError, match="Cannot load the Hugging Face dataset 'nobody/no-such'") as e:
        load_hub("nobody/no-such", 8)
    assert "\n" not in str(e.value)
