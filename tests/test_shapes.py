"""The generated `shapes` corpus: deterministic, well-formed, cached, and readable by the Karpathy loader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdd_bench.data import load_dataset
from mdd_bench.data import shapes as shapes_mod
from mdd_bench.data.karpathy import load_karpathy
from mdd_bench.data.shapes import COLOURS, ShapesConfig, ensure_shapes, generate_shapes, shapes_root
from mdd_bench.protocol import load_protocol

CONFIG = ShapesConfig(train=20, val=5, test=5, seed=0, resolution=32)
SPLITS = ("train", "val", "test")
COLOUR_WORDS = sorted({w for _, words in COLOURS.values() for w in words})
COLOUR_RE = re.compile(r"\b(" + "|".join(COLOUR_WORDS) + r")\b")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, generated = ensure_shapes(tmp_path_factory.mktemp("shapes"), CONFIG, progress=False)
    assert generated
    return root


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "shapes_meta.json"
    }


def annotations(root: Path, split: str) -> list[dict]:
    return json.loads((root / "annotations" / f"shapes_{split}.json").read_text())


def captions_by_image(root: Path) -> list[list[str]]:
    out: dict[str, list[str]] = {}
    for entry in annotations(root, "train"):
        out.setdefault(entry["image"], []).append(entry["caption"])
    groups = list(out.values())
    for split in ("val", "test"):
        groups += [entry["caption"] for entry in annotations(root, split)]
    return groups


def test_layout(corpus: Path) -> None:
    assert corpus == shapes_root(corpus.parents[1], CONFIG)
    for split in SPLITS:
        pngs = sorted((corpus / "images" / split).glob("*.png"))
        assert len(pngs) == getattr(CONFIG, split)
        with Image.open(pngs[0]) as img:
            assert img.mode == "RGB" and img.size == (32, 32)
    meta = json.loads((corpus / "shapes_meta.json").read_text())
    assert meta["train"] == 20 and meta["seed"] == 0 and meta["resolution"] == 32


def test_annotation_entries(corpus: Path) -> None:
    train = annotations(corpus, "train")
    assert len(train) == 5 * CONFIG.train
    for k, entry in enumerate(train):
        assert set(entry) == {"image", "caption", "image_id"}
        assert isinstance(entry["caption"], str)
        assert entry["image"] == f"images/train/train_{k // 5:06d}.png" and entry["image_id"] == str(k // 5)
        assert (corpus / entry["image"]).is_file()
    for split in ("val", "test"):
        entries = annotations(corpus, split)
        assert len(entries) == getattr(CONFIG, split)
        for k, entry in enumerate(entries):
            assert (
                set(entry) == {"image", "caption"} and entry["image"] == f"images/{split}/{split}_{k:06d}.png"
            )
            assert isinstance(entry["caption"], list) and len(entry["caption"]) == 5
            assert all(isinstance(c, str) for c in entry["caption"])


def test_captions(corpus: Path) -> None:
    groups = captions_by_image(corpus)
    assert len(groups) == 30 and all(len(g) == 5 for g in groups)
    for caps in groups:
        assert len(set(caps)) > 1
        for caption in caps:
            assert COLOUR_RE.search(caption), caption
    every = [c for g in groups for c in g]
    assert len(set(every)) > 0.8 * len(every)  # templated, yet varied


def test_grammar(corpus: Path) -> None:
    for caption in (c for g in captions_by_image(corpus) for c in g):
        assert caption == caption.strip() and "  " not in caption, caption
        assert not re.search(r"\ba [aeiou]", caption), caption  # "a orange" -> "an orange"
        assert not re.search(r"\ban [^aeiou]", caption), caption
        assert not re.search(r"\b(a|an) (a|an)\b", caption), caption
        assert not re.search(r"\bthere is (two|three)\b", caption), caption


def test_grammar_fixes_vowels() -> None:
    assert shapes_mod._grammar("a orange circle") == "an orange circle"
    assert shapes_mod._grammar("there is two shapes") == "there are two shapes"
    assert shapes_mod._grammar("a white star") == "a white star"


def test_same_seed_same_bytes(corpus: Path, tmp_path: Path) -> None:
    again = generate_shapes(tmp_path / "again", CONFIG, progress=False)
    first, second = files(corpus), files(again)
    assert len(first) == 3 + 30 and first.keys() == second.keys()
    assert first == second


def test_different_seed_differs(corpus: Path, tmp_path: Path) -> None:
    other = ShapesConfig(train=20, val=5, test=5, seed=1, resolution=32)
    root, generated = ensure_shapes(tmp_path, other, progress=False)
    assert generated and root != corpus
    for split in SPLITS:
        assert annotations(root, split) != annotations(corpus, split)
    png = "images/test/test_000000.png"
    assert (root / png).read_bytes() != (corpus / png).read_bytes()


def test_second_ensure_is_noop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ShapesConfig(train=4, val=2, test=2, seed=3, resolution=16)
    root, generated = ensure_shapes(tmp_path, config, progress=False)
    assert generated
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    monkeypatch.setattr(shapes_mod, "generate_shapes", lambda *a, **k: pytest.fail("regenerated"))
    again, generated = ensure_shapes(tmp_path, config, progress=False)
    assert again == root and not generated
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_missing_meta_regenerates(tmp_path: Path) -> None:
    config = ShapesConfig(train=4, val=2, test=2, seed=3, resolution=16)
    root, _ = ensure_shapes(tmp_path, config, progress=False)
    reference = files(root)
    (root / "shapes_meta.json").unlink()
    (root / "annotations" / "shapes_test.json").write_text("[half a fi")  # an interrupted run
    (root / "images" / "val" / "val_000001.png").unlink()
    again, generated = ensure_shapes(tmp_path, config, progress=False)
    assert again == root and generated
    assert (root / "shapes_meta.json").is_file() and files(root) == reference


def test_other_config_gets_its_own_folder(tmp_path: Path) -> None:
    a, _ = ensure_shapes(tmp_path, ShapesConfig(4, 2, 2, 3, 16), progress=False)
    b, generated = ensure_shapes(tmp_path, ShapesConfig(4, 2, 2, 3, 8), progress=False)
    assert generated and a != b and a.is_dir()
    with Image.open(b / "images" / "train" / "train_000000.png") as img:
        assert img.size == (8, 8)


def test_karpathy_loader_reads_it(corpus: Path) -> None:
    ds = load_karpathy("shapes", corpus, 32)
    assert ds.name == "shapes" and ds.layout == "blip" and ds.resolution == 32
    for split in SPLITS:
        n = getattr(CONFIG, split)
        s = ds.splits[split]
        assert s.num_images == n and s.num_captions == 5 * n
        assert [len(c) for c in s.image_captions()] == [5] * n
    train = annotations(corpus, "train")
    assert ds.train.captions == [e["caption"] for e in train]
    assert ds.test.captions[:5] == annotations(corpus, "test")[0]["caption"]
    pixels = ds.test.images.all().numpy()
    assert pixels.shape == (5, 3, 32, 32) and pixels.dtype == np.uint8
    with Image.open(corpus / "images" / "test" / "test_000004.png") as img:
        np.testing.assert_array_equal(pixels[4], np.asarray(img).transpose(2, 0, 1))


def test_load_dataset_generates_smoke(tmp_path: Path) -> None:
    protocol = load_protocol("smoke")
    ds = load_dataset("shapes", protocol, tmp_path, progress=False)
    sizes = protocol.data.shapes
    expected = {"train": sizes.train, "val": sizes.val, "test": sizes.test}
    assert expected == {"train": 120, "val": 30, "test": 30}
    assert ds.root == shapes_root(tmp_path, ShapesConfig.from_sizes(sizes, 32))
    for split, n in expected.items():
        assert ds.splits[split].num_images == n and ds.splits[split].num_captions == 5 * n
    assert tuple(ds.val.images.all().shape) == (30, 3, 32, 32)
