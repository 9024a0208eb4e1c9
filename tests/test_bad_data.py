"""Bad data gives one clear line (MddError), and `check_dataset` lists every bad image at once."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from PIL import Image

from mdd_bench.data.check import check_dataset
from mdd_bench.data.hub import load_hub
from mdd_bench.data.karpathy import load_karpathy
from mdd_bench.errors import MddError

FILES = {"train": ["a.jpg", "b.jpg"], "val": ["v.jpg"], "test": ["t0.jpg", "t1.jpg", "t2.jpg"]}


def write(root: Path, images: bool = True) -> Path:
    """A small valid Flickr30k BLIP-layout corpus."""
    ann = root / "annotations"
    ann.mkdir(parents=True)
    for split, files in FILES.items():
        if split == "train":
            rows = [{"image": f"flickr30k-images/{f}", "caption": "c", "image_id": f} for f in files]
        else:
            rows = [{"image": f"flickr30k-images/{f}", "caption": ["c"] * 5} for f in files]
        (ann / f"flickr30k_{split}.json").write_text(json.dumps(rows, indent=1))
        for f in files if images else []:
            (root / "flickr30k-images").mkdir(exist_ok=True)
            Image.new("RGB", (9, 9), (1, 2, 3)).save(root / "flickr30k-images" / f)
    return root


def error(call, *args, **kwargs) -> str:
    with pytest.raises(MddError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_missing_data_root(tmp_path: Path) -> None:
    message = error(load_karpathy, "flickr30k", tmp_path / "nope", 8)
    assert message.startswith(f"Data root '{tmp_path / 'nope'}' does not exist.")
    assert "--data-root DIR" in message and "Flickr30k" in message


def test_unknown_dataset(tmp_path: Path) -> None:
    assert "Did you mean 'flickr30k'" in error(load_karpathy, "flikr30k", tmp_path, 8)


def test_missing_annotations_lists_names_and_places(tmp_path: Path) -> None:
    message = error(load_karpathy, "coco", tmp_path, 8)
    assert "coco_karpathy_train.json" in message and "coco_karpathy_test.json" in message
    assert "dataset_coco.json" in message and str(tmp_path / "annotations") in message


def test_incomplete_blip_annotations(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "annotations" / "flickr30k_val.json").unlink()
    message = error(load_karpathy, "flickr30k", tmp_path, 8)
    assert "but not flickr30k_val.json" in message


def test_malformed_json_names_file_and_position(tmp_path: Path) -> None:
    write(tmp_path)
    bad = tmp_path / "annotations" / "flickr30k_test.json"
    bad.write_text('[{"image": "x.jpg", "caption": ["a"]},\n {"image": }]')
    message = error(load_karpathy, "flickr30k", tmp_path, 8)
    assert str(bad) in message and "line 2 column" in message


def test_wrong_entry_names_file_and_entry(tmp_path: Path) -> None:
    write(tmp_path)
    path = tmp_path / "annotations" / "flickr30k_train.json"
    rows = json.loads(path.read_text())
    rows[1]["caption"] = ["not", "a", "string"]
    path.write_text(json.dumps(rows))
    message = error(load_karpathy, "flickr30k", tmp_path, 8)
    assert message.startswith("flickr30k_train.json entry 1: 'caption' must be a string")


def test_wrong_structure_karpathy_layout(tmp_path: Path) -> None:
    images = [
        {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "x"}]},
        {"filename": "b.jpg", "split": "test", "sentences": [{"tokens": []}]},
    ]
    (tmp_path / "dataset_flickr8k.json").write_text(json.dumps({"images": images}))
    message = error(load_karpathy, "flickr8k", tmp_path, 8)
    assert message.startswith("dataset_flickr8k.json entry 1 sentence 0:") and "'raw'" in message
    (tmp_path / "dataset_flickr8k.json").write_text(json.dumps([]))
    assert "'images' list" in error(load_karpathy, "flickr8k", tmp_path, 8)


def test_empty_split(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "annotations" / "flickr30k_val.json").write_text("[]")
    message = error(load_karpathy, "flickr30k", tmp_path, 8)
    assert "'val' split" in message and "flickr30k_val.json" in message


def test_image_folder_not_found(tmp_path: Path) -> None:
    write(tmp_path, images=False)
    message = error(load_karpathy, "flickr30k", tmp_path, 8)
    assert "'flickr30k-images/a.jpg'" in message and str(tmp_path / "images") in message


def test_unreadable_images_found_by_check(tmp_path: Path) -> None:
    write(tmp_path)
    folder = tmp_path / "flickr30k-images"
    (folder / "b.jpg").write_bytes(b"this is not a jpeg")
    (folder / "t2.jpg").write_bytes(b"\x00\x01garbage")
    (folder / "v.jpg").unlink()

    message = error(load_karpathy, "flickr30k", tmp_path, 8)  # a normal, decoding load
    assert "b.jpg" in message and "mdd-bench data check" in message

    report = check_dataset(load_karpathy("flickr30k", tmp_path, 8, decode=False))
    assert not report["ok"] and report["layout"] == "blip"
    assert report["train"]["unreadable"] == ["flickr30k-images/b.jpg"]
    assert report["val"]["unreadable"] == ["flickr30k-images/v.jpg"]
    assert report["test"]["unreadable"] == ["flickr30k-images/t2.jpg"]
    assert report["test"]["images"] == 3
    assert report["test"]["captions_per_image"] == [5, 5]
    assert len(report["problems"]) == 3
    assert all("\n" not in p for p in report["problems"])
    assert any("is missing" in p for p in report["problems"])
    assert report["warnings"] and "1000" in report["warnings"][0]  # not the Karpathy test size


def test_check_clean_dataset_and_explicit_paths(tmp_path: Path) -> None:
    write(tmp_path)
    ds = load_karpathy("flickr30k", tmp_path, 8, decode=False)
    assert check_dataset(ds)["problems"] == []
    paths = {s: [tmp_path / "nowhere" / f for f in files] for s, files in FILES.items()}
    report = check_dataset(ds, image_paths=paths)
    assert len(report["problems"]) == sum(map(len, FILES.values()))


def test_hub_corrupt_image_found_by_check(tmp_path: Path) -> None:
    good = Image.new("RGB", (5, 5), (7, 7, 7))
    parts = {}
    for split in ("train", "validation", "test"):
        images = [good, {"bytes": b"garbage", "path": None}]
        rows = {"image": images, "caption": ["x", "y"]}
        features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
        parts[split] = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "bad"))

    message = error(load_hub, str(tmp_path / "bad"), 8)
    assert "row 1" in message and "cannot be decoded" in message
    report = check_dataset(load_hub(str(tmp_path / "bad"), 8, decode=False))
    assert [report[s]["unreadable"] for s in ("train", "val", "test")] == [
        ["train/1"],
        ["val/1"],
        ["test/1"],
    ]


def test_check_reports_missing_first_image(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "flickr30k-images" / "a.jpg").unlink()
    report = check_dataset(load_karpathy("flickr30k", tmp_path, 8, decode=False))
    assert report["train"]["unreadable"] == ["flickr30k-images/a.jpg"]
