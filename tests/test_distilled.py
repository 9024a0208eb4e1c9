"""`DistilledSet`: safetensors + JSON round trip (never a pickle), extras, storage size, validation."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch

from mdd_bench.distilled import EXTRA_KEYS, DistilledSet
from mdd_bench.errors import MddError

N, D, R = 6, 12, 8


def pairs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, 3, R, R, generator=g), torch.randn(N, D, generator=g)


def low_rank(rank: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "sim_diag": torch.rand(N, generator=g) + 0.5,
        "sim_left": torch.randn(N, rank, generator=g),
        "sim_right": torch.randn(N, rank, generator=g),
        "sim_alpha": torch.tensor(3.0),
    }


PROVENANCE = {"method": "lors", "budget": N, "protocol": "smoke", "args": {"lr": 0.1, "rank": [2]}}


def assert_same(a: DistilledSet, b: DistilledSet) -> None:
    assert torch.equal(a.images, b.images) and torch.equal(a.texts, b.texts)
    assert a.extras.keys() == b.extras.keys()
    for key in a.extras:
        assert a.extras[key].dtype == b.extras[key].dtype and torch.equal(a.extras[key], b.extras[key]), key
    assert a.provenance == b.provenance


def test_round_trip_without_extras(tmp_path: Path) -> None:
    images, texts = pairs()
    ds = DistilledSet(images, texts, provenance=PROVENANCE)
    written = ds.save(tmp_path / "set")
    assert written == tmp_path / "set.safetensors" and written.is_file()
    sidecar = json.loads((tmp_path / "set.json").read_text())
    assert sidecar["provenance"] == PROVENANCE and sidecar["size"] == N and sidecar["extras"] == []
    back = DistilledSet.load(tmp_path / "set")
    assert_same(ds, back)
    assert back.extras == {} and back.similarity() is None and back.learned_lrs() is None
    assert back.size == N
    # Either file's path names the set.
    assert_same(ds, DistilledSet.load(written))
    assert_same(ds, DistilledSet.load(tmp_path / "set.json"))


def test_dotted_names_do_not_collide(tmp_path: Path) -> None:
    a, b = DistilledSet(*pairs(0)), DistilledSet(*pairs(1))
    assert a.save(tmp_path / "lors_lr0.1") == tmp_path / "lors_lr0.1.safetensors"
    b.save(tmp_path / "lors_lr0.5")
    assert_same(a, DistilledSet.load(tmp_path / "lors_lr0.1"))
    assert_same(b, DistilledSet.load(tmp_path / "lors_lr0.5.json"))
    assert len(list(tmp_path.iterdir())) == 4


@pytest.mark.parametrize(
    "extras",
    [
        {"similarity": torch.randn(N, N)},
        low_rank(),
        {"lr_img": torch.tensor(0.01), "lr_txt": torch.tensor(0.2)},
        {**low_rank(3), "lr_img": torch.tensor(0.05), "lr_txt": torch.tensor(0.5)},
    ],
    ids=["full", "low-rank", "lrs", "low-rank+lrs"],
)
def test_round_trip_with_extras(tmp_path: Path, extras: dict[str, torch.Tensor]) -> None:
    ds = DistilledSet(*pairs(), extras=extras, provenance=PROVENANCE)
    ds.save(tmp_path / "set.safetensors")
    back = DistilledSet.load(tmp_path / "set.safetensors")
    assert_same(ds, back)
    assert json.loads((tmp_path / "set.json").read_text())["extras"] == sorted(extras)
    if "lr_img" in extras:
        assert back.learned_lrs() == pytest.approx((float(extras["lr_img"]), float(extras["lr_txt"])))
    sim = back.similarity()
    if "similarity" in extras or "sim_diag" in extras:
        assert sim is not None and sim.shape == (N, N)
        torch.testing.assert_close(sim, ds.similarity())
    else:
        assert sim is None


def test_storage_bytes(tmp_path: Path) -> None:
    images, texts = pairs()
    plain = DistilledSet(images, texts)
    assert plain.storage_bytes == N * 3 * R * R * 4 + N * D * 4
    half = DistilledSet(images.half(), texts)
    assert half.storage_bytes == N * 3 * R * R * 2 + N * D * 4
    extras = {**low_rank(2), "lr_img": torch.tensor(0.1), "lr_txt": torch.tensor(0.1)}
    full = DistilledSet(images, texts, extras=extras)
    tensors = [images, texts, *extras.values()]
    assert full.storage_bytes == sum(t.numel() * t.element_size() for t in tensors)
    assert full.storage_bytes == plain.storage_bytes + (N + 2 * N * 2 + 3) * 4
    assert DistilledSet.load(full.save(tmp_path / "s")).storage_bytes == full.storage_bytes


def test_low_rank_similarity_formula() -> None:
    extras = low_rank(rank=2)
    ds = DistilledSet(*pairs(), extras=extras)
    a, left, right = extras["sim_diag"], extras["sim_left"], extras["sim_right"]
    expected = torch.diag(a) + 3.0 / 2 * left @ right.T
    torch.testing.assert_close(ds.similarity(), expected)
    # Entry by entry, to pin the convention (L R^T, not R L^T; alpha / rank, not alpha).
    i, j = 1, 4
    entry = 1.5 * sum(float(left[i, k] * right[j, k]) for k in range(2))
    assert float(ds.similarity()[i, j]) == pytest.approx(entry, rel=1e-5)
    assert float(ds.similarity()[i, i]) == pytest.approx(
        float(a[i]) + 1.5 * float(left[i] @ right[i]), rel=1e-5
    )


def test_full_similarity_wins() -> None:
    sim = torch.randn(N, N)
    ds = DistilledSet(*pairs(), extras={"similarity": sim})
    assert ds.similarity() is sim


def test_file_is_safetensors_not_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = DistilledSet(*pairs(), extras=low_rank(), provenance=PROVENANCE)
    path = ds.save(tmp_path / "set")
    blob = path.read_bytes()
    assert not blob.startswith(b"\x80")  # every pickle (protocol >= 2) starts with PROTO
    assert not blob.startswith(b"PK")  # nor is it torch.save's zip archive
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + header_len])
    assert set(header) - {"__metadata__"} == {"images", "texts", *low_rank()}
    assert header["images"]["shape"] == [N, 3, R, R] and header["images"]["dtype"] == "F32"

    def refuse(*args, **kwargs):
        raise AssertionError("loading a distilled set must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert_same(ds, DistilledSet.load(path))


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(MddError, match="is missing"):
        DistilledSet.load(tmp_path / "nothing")
    DistilledSet(*pairs()).save(tmp_path / "half")
    (tmp_path / "half.json").unlink()
    with pytest.raises(MddError, match="half.json"):
        DistilledSet.load(tmp_path / "half")


def test_corrupt_file_is_mdd_error(tmp_path: Path) -> None:
    path = DistilledSet(*pairs()).save(tmp_path / "bad")
    path.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(MddError, match="cannot be read"):
        DistilledSet.load(path)


def test_validation() -> None:
    images, texts = pairs()
    with pytest.raises(ValueError, match="pairs must match"):
        DistilledSet(images, texts[:-1])
    with pytest.raises(ValueError, match="images must be"):
        DistilledSet(images[:, 0], texts)
    with pytest.raises(ValueError, match="unknown extra 'temperature'"):
        DistilledSet(images, texts, extras={"temperature": torch.tensor(0.07)})
    partial = low_rank()
    del partial["sim_alpha"]
    with pytest.raises(ValueError, match="low-rank"):
        DistilledSet(images, texts, extras=partial)
    assert set(EXTRA_KEYS) == {"similarity", "lr_img", "lr_txt", *low_rank()}
