"""`mdd-bench data generate` (issue 33): a generated image-caption set written as a Karpathy folder is read
back by the real loader (`load_dataset`) with its splits, counts and captions as written: Flickr's image
folder, COCO's train2014/val2014 through `filepath` and its restval images counted as train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mdd_bench.cli import cli
from mdd_bench.data import load_dataset
from mdd_bench.data.generated_karpathy import MARKER, split_sizes, write_karpathy
from mdd_bench.errors import MddError
from mdd_bench.protocol import load_protocol


def annotation_captions(path: Path, splits: tuple[str, ...]) -> list[str]:
    entries = json.loads(path.read_text())["images"]
    return [s["raw"] for e in entries if e["split"] in splits for s in e["sentences"]]


@pytest.mark.parametrize(("dataset", "folder"), [("flickr8k", "Flicker8k_Dataset"), ("coco", "train2014")])
def test_the_real_loader_reads_a_generated_folder_back(tmp_path: Path, dataset: str, folder: str) -> None:
    made = write_karpathy(tmp_path, dataset, images=40, resolution=48, seed=3, progress=False)
    train, val, test = split_sizes(dataset, 40)
    assert made.splits == {"train": train, "val": val, "test": test} and train + val + test == 40
    protocol = load_protocol("paper-offline").with_dataset(dataset)
    loaded = load_dataset(dataset, protocol, data_root=tmp_path, progress=False)
    assert loaded.layout == "karpathy"
    annotations = tmp_path / f"dataset_{dataset}.json"
    for split, count in made.splits.items():
        part = loaded.splits[split]
        assert part.num_images == count and part.num_captions == 5 * count
        read_as = ("train", "restval") if split == "train" else (split,)
        assert list(part.captions) == annotation_captions(annotations, read_as)
    assert tuple(loaded.train.images.get([0]).shape) == (1, 3, 224, 224)  # read at the protocol's size
    assert (tmp_path / folder).is_dir() and json.loads((tmp_path / MARKER).read_text())["seed"] == 3
    if dataset == "coco":
        entries = json.loads(annotations.read_text())["images"]
        restval = [e for e in entries if e["split"] == "restval"]
        assert len(restval) == made.restval > 0 and {e["filepath"] for e in restval} == {"val2014"}
        assert {e["filepath"] for e in entries if e["split"] == "train"} == {"train2014"}


def test_a_seed_gives_the_same_set_and_another_seed_another(tmp_path: Path) -> None:
    protocol = load_protocol("paper-offline")
    first, again, other = (tmp_path / n for n in ("a", "b", "c"))
    for out, seed in ((first, 0), (again, 0), (other, 1)):
        write_karpathy(out, "flickr8k", images=12, resolution=32, seed=seed, progress=False)
    captions = [
        load_dataset("flickr8k", protocol, out, progress=False).train.captions
        for out in (first, again, other)
    ]
    assert captions[0] == captions[1] != captions[2]
    image = "Flicker8k_Dataset/0000000000_generated.jpg"
    assert (first / image).read_bytes() == (again / image).read_bytes()


def test_cli_writes_a_folder_and_refuses_to_overwrite_one(tmp_path: Path) -> None:
    args = ["data", "generate", "flickr30k", "--out", str(tmp_path), "--images", "6", "--resolution", "32"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "--dataset flickr30k --data-root" in result.stdout
    assert (tmp_path / "dataset_flickr30k.json").is_file() and (tmp_path / "flickr30k-images").is_dir()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0 and "Traceback" not in again.output
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "already exists" in lines[0]
    with pytest.raises(MddError, match="at least 3 images"):
        write_karpathy(tmp_path / "small", "coco", images=2, progress=False)
