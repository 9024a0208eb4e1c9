"""Importing the references' distilled sets and exporting ours (smoke protocol, tiny files built here)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mdd_bench.cli import cli
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError
from mdd_bench.interop import SOURCES, export_set, import_set
from mdd_bench.interop.hf import read_metadata
from mdd_bench.interop.pixels import CLIP_MEAN, CLIP_STD
from mdd_bench.models.text import text_feature_dim
from mdd_bench.protocol import load_protocol

N, RANK = 6, 2


@pytest.fixture(scope="module")
def protocol():
    return load_protocol("smoke")


@pytest.fixture(scope="module")
def dim(protocol):
    return text_feature_dim(protocol.text.source)


def low_rank(seed: int = 0, alpha: float = 3.0, zero_right: bool = False):
    g = torch.Generator().manual_seed(seed)
    a = 1 + 0.1 * torch.randn(N, generator=g)
    left = torch.randn(N, RANK, generator=g)
    right = torch.zeros(N, RANK) if zero_right else 0.2 * torch.randn(N, RANK, generator=g)
    return a, left, right, torch.diag(a) + alpha / RANK * left @ right.T


def lors_file(path: Path, dim: int, res: int = 32, **change) -> Path:
    """A file as LoRS's `distill_tesla_lors.py` saves it (low-rank similarity)."""
    g = torch.Generator().manual_seed(1)
    a, left, right, sim = low_rank()
    obj = {
        "image": torch.randn(N, 3, res, res, generator=g),
        "text": torch.randn(N, dim, generator=g),
        "similarity_params": [a, left, right],
        "similarity_mat": sim,
        "syn_lr_img": torch.tensor(0.05),
        "syn_lr_txt": torch.tensor(0.2),
    }
    obj.update(change)
    obj = {k: v for k, v in obj.items() if v is not None}
    torch.save(obj, path)
    return path


def test_sources_match_the_cli_choices():
    command = cli.commands["import"]
    choice = next(p for p in command.params if p.name == "source").type
    assert tuple(choice.choices) == SOURCES


def test_lors_low_rank_set_keeps_every_extra(tmp_path, protocol, dim):
    path = lors_file(tmp_path / "distilled_100.pt", dim)
    raw = torch.load(path, weights_only=True)
    got = import_set(path, "lors", protocol, dim)
    assert torch.equal(got.images, raw["image"]) and torch.equal(got.texts, raw["text"])
    assert sorted(got.extras) == ["lr_img", "lr_txt", "sim_alpha", "sim_diag", "sim_left", "sim_right"]
    assert float(got.extras["sim_alpha"]) == pytest.approx(3.0, rel=1e-5)  # recovered, LoRS stores none
    assert torch.allclose(got.similarity(), raw["similarity_mat"], atol=1e-5)
    assert got.learned_lrs() == pytest.approx((0.05, 0.2))
    prov = got.provenance
    assert prov["eval_loss"] == "wbce" and prov["protocol"] == "smoke" and prov["budget"] == N
    assert prov["eval_dsa"] is False  # LoRS's own evaluation has no DSA: its native track neither
    assert prov["imported"]["from"] == "lors" and len(prov["imported"]["sha256"]) == 64
    got.save(tmp_path / "set")
    again = DistilledSet.load(tmp_path / "set")
    assert torch.equal(again.images, got.images) and again.extras.keys() == got.extras.keys()


def test_pixels_move_into_the_protocols_normalisation(tmp_path, protocol, dim):
    other = dataclasses.replace(
        protocol, data=dataclasses.replace(protocol.data, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    )
    path = lors_file(tmp_path / "d.pt", dim)
    raw = torch.load(path, weights_only=True)["image"].double()
    got = import_set(path, "lors", other, dim).images.double()
    clip = raw * torch.tensor(CLIP_STD).view(1, 3, 1, 1) + torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    ours = got * torch.tensor([0.25, 0.5, 1.0]).view(1, 3, 1, 1) + 0.5
    assert torch.allclose(clip, ours, atol=1e-5)  # the same pixels, in the other space
    assert not torch.allclose(raw, got, atol=1e-2)


def test_lors_full_and_inconsistent_and_identity_start_similarities(tmp_path, protocol, dim):
    _, _, _, sim = low_rank()
    full = import_set(lors_file(tmp_path / "f.pt", dim, similarity_params=[sim]), "lors", protocol, dim)
    assert list(full.extras) == ["similarity", "lr_img", "lr_txt"]
    assert torch.equal(full.extras["similarity"], sim)
    # Factors that do not rebuild the stored matrix: the matrix (what LoRS evaluates with) is kept.
    a, left, right, _ = low_rank(seed=5)
    odd = import_set(lors_file(tmp_path / "o.pt", dim, similarity_params=[a, left, right]), "lors",
                     protocol, dim)  # fmt: skip
    assert "similarity" in odd.extras and "sim_diag" not in odd.extras
    assert any("do not rebuild" in n for n in odd.provenance["imported"]["notes"])
    # TESLA-like R = 0: alpha cannot be recovered and does not matter.
    a, left, right, sim = low_rank(zero_right=True)
    flat = import_set(lors_file(tmp_path / "z.pt", dim, similarity_params=[a, left, right],
                                similarity_mat=sim), "lors", protocol, dim)  # fmt: skip
    assert torch.allclose(flat.similarity(), torch.diag(a)) and float(flat.extras["sim_alpha"]) == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"similarity_mat": None}, "lacks key 'similarity_mat'"),
        ({"syn_lr_txt": None}, "has syn_lr_img but not syn_lr_txt"),
        ({"text": torch.randn(N + 1, 384)}, "pairs must match"),
        ({"image": torch.full((N, 3, 32, 32), float("nan"))}, "NaN"),
        ({"similarity_params": [torch.ones(N), torch.ones(N, 2)]}, "should be [a, L, R]"),
    ],
)
def test_bad_lors_files_are_one_line_errors(tmp_path, protocol, dim, change, message):
    with pytest.raises(MddError) as err:
        import_set(lors_file(tmp_path / "bad.pt", dim, **change), "lors", protocol, dim)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_resolution_text_dim_and_format_are_checked(tmp_path, protocol, dim):
    with pytest.raises(MddError, match=r"224x224 but protocol 'smoke' uses 32x32.*--protocol paper"):
        import_set(lors_file(tmp_path / "big.pt", dim, res=224), "lors", protocol, dim)
    with pytest.raises(MddError, match=r"texts are 768-d but .*'minilm' gives 384-d"):
        import_set(lors_file(tmp_path / "bert.pt", 768), "lors", protocol, dim)
    with pytest.raises(MddError, match="Unknown reference format"):
        import_set(lors_file(tmp_path / "x.pt", dim), "tesla", protocol, dim)
    torch.save(torch.zeros(2), tmp_path / "bare.pt")
    with pytest.raises(MddError, match="holds a Tensor, not the dict of a lors save"):
        import_set(tmp_path / "bare.pt", "lors", protocol, dim)
    with pytest.raises(MddError, match="does not exist"):
        import_set(tmp_path / "nope.pt", "lors", protocol, dim)


class Touch:
    """Unpickling this creates a file: proof of code run while loading."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_file_that_needs_full_unpickling_is_refused_unrun(tmp_path, protocol, dim):
    marker = tmp_path / "ran"
    torch.save({"image": torch.zeros(1), "text": Touch(marker)}, tmp_path / "evil.pt")
    with pytest.raises(MddError, match=r"needs full unpickling \(it references \w.*refuses it"):
        import_set(tmp_path / "evil.pt", "lors", protocol, dim)
    assert not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(MddError, match="not a readable torch.save file"):
        import_set(tmp_path / "junk.pt", "mdm", protocol, dim)


def test_mttvl_dict_and_images_labels_layouts(tmp_path, protocol, dim):
    images, texts = torch.randn(N, 3, 32, 32), torch.randn(N, dim)
    torch.save({"image": images, "text": texts, "syn_lr_img": torch.tensor(0.3),
                "syn_lr_txt": torch.tensor(0.1)}, tmp_path / "mtt.pt")  # fmt: skip
    got = import_set(tmp_path / "mtt.pt", "mtt-vl", protocol, dim)
    assert got.learned_lrs() == pytest.approx((0.3, 0.1)) and got.provenance["eval_loss"] == "infonce"
    assert got.provenance["eval_dsa"] is False  # MTT-VL's evaluation has no DSA
    torch.save(images, tmp_path / "images_2000.pt")
    torch.save(texts, tmp_path / "labels_2000.pt")
    pair = import_set(tmp_path / "images_2000.pt", "mtt-vl", protocol, dim)
    assert torch.equal(pair.texts, texts) and pair.extras == {}
    torch.save(images, tmp_path / "other.pt")
    with pytest.raises(MddError, match="images_<it>.pt with labels_<it>.pt"):
        import_set(tmp_path / "other.pt", "mtt-vl", protocol, dim)


def test_mdm_keeps_no_extras_and_refuses_a_learned_similarity(tmp_path, protocol, dim):
    base = {"image": torch.randn(N, 3, 32, 32), "text": torch.randn(N, dim)}
    torch.save({**base, "similarity_mat": torch.eye(N), "syn_lr_img": torch.tensor(0.1),
                "syn_lr_txt": torch.tensor(0.1)}, tmp_path / "mdm.pt")  # fmt: skip
    got = import_set(tmp_path / "mdm.pt", "mdm", protocol, dim)
    assert got.extras == {} and got.provenance["file_eval_lrs"] == pytest.approx(
        {"syn_lr_img": 0.1, "syn_lr_txt": 0.1}
    )
    torch.save({**base, "similarity_mat": low_rank()[3]}, tmp_path / "lors_really.pt")
    with pytest.raises(MddError, match="not the 6x6 identity.*--from lors"):
        import_set(tmp_path / "lors_really.pt", "mdm", protocol, dim)


def lors_like_set(alpha: float = 0.5) -> DistilledSet:
    g = torch.Generator().manual_seed(3)
    a, left, right, _ = low_rank(seed=2)
    extras = {"sim_diag": a, "sim_left": left, "sim_right": right, "sim_alpha": torch.tensor(alpha),
              "lr_img": torch.tensor(0.07), "lr_txt": torch.tensor(0.4)}  # fmt: skip
    return DistilledSet(torch.randn(N, 3, 32, 32, generator=g), torch.randn(N, 384, generator=g), extras,
                        {"method": "lors", "budget": N})  # fmt: skip


def test_export_to_lors_then_import_round_trips(tmp_path, protocol, dim):
    original = lors_like_set()
    path, notes = export_set(original, "lors", tmp_path / "out.pt", protocol)
    assert notes == []
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["image", "text", "similarity_params", "similarity_mat", "syn_lr_img", "syn_lr_txt"]
    back = import_set(path, "lors", protocol, dim)
    assert torch.equal(back.images, original.images) and torch.equal(back.texts, original.texts)
    assert back.extras.keys() == original.extras.keys()
    for key, value in original.extras.items():
        assert torch.allclose(back.extras[key], value, rtol=1e-5, atol=1e-6), key
    # A set with no extras gets the identity and the protocol's lrs (LoRS's evaluation needs both).
    plain = DistilledSet(original.images, original.texts)
    path, notes = export_set(plain, "lors", tmp_path, protocol)
    assert path == tmp_path / "distilled.pt" and len(notes) == 2
    again = import_set(path, "lors", protocol, dim)
    assert torch.equal(again.similarity(), torch.eye(N)) and again.learned_lrs() == pytest.approx((0.1, 0.1))


def test_export_hf_reads_back_with_datasets(tmp_path, protocol):
    import datasets

    original = lors_like_set()
    original.images[0, :, 0, 0] = 50.0  # far outside [0, 1] after de-normalising: clipped in the PNG
    folder = export_set(original, "hf", tmp_path / "hf", protocol)[0]
    table = datasets.load_from_disk(str(folder))
    assert len(table) == N and {"image", "text_embedding", "sim_diag", "sim_left"} <= set(table.column_names)
    mean = torch.tensor(protocol.data.mean, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(protocol.data.std, dtype=torch.float64).view(3, 1, 1)
    pixels = (original.images[1].double() * std + mean).clamp(0, 1)
    expected = (pixels * 255).round().permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(table[1]["image"]), expected.astype(np.uint8))
    assert np.allclose(np.asarray(table["text_embedding"]), original.texts.numpy())
    assert np.allclose(np.asarray(table["sim_left"]), original.extras["sim_left"].numpy())
    meta = read_metadata(folder)
    assert meta["scalar_extras"] == pytest.approx({"sim_alpha": 0.5, "lr_img": 0.07, "lr_txt": 0.4})
    assert meta["provenance"] == {"method": "lors", "budget": N} and 0 < meta["png_clipped_fraction"] < 1
    export_set(original, "hf", folder, protocol)  # a second export replaces the first
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(MddError, match="not an earlier export"):
        export_set(original, "hf", tmp_path / "mine", protocol)


def test_export_checks_the_protocol_and_needs_datasets(tmp_path, protocol, monkeypatch):
    imported = DistilledSet(torch.zeros(N, 3, 32, 32), torch.zeros(N, 384), {}, {"protocol": "paper"})
    with pytest.raises(MddError, match="made for protocol 'paper'.*--protocol paper"):
        export_set(imported, "lors", tmp_path / "x.pt", protocol)
    big = DistilledSet(torch.zeros(N, 3, 64, 64), torch.zeros(N, 384))
    with pytest.raises(MddError, match="uses 3x32x32"):
        export_set(big, "hf", tmp_path / "y", protocol)
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails
    with pytest.raises(MddError, match=r"pip install 'datasets>=2.18'"):
        export_set(lors_like_set(), "hf", tmp_path / "z", protocol)


def test_cli_import_prints_the_eval_command_that_then_scores_it(tmp_path, dim):
    path = lors_file(tmp_path / "distilled_50.pt", dim)
    out = tmp_path / "imported" / "lors50"
    result = CliRunner().invoke(cli, ["import", str(path), "--from", "lors", "--protocol", "smoke",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    command = f"mdd-bench eval {out} --protocol smoke"
    assert command in result.output and f"{command} --track native" in result.output
    assert (tmp_path / "imported" / "lors50.safetensors").is_file()
    args = command.split()[1:] + ["--track", "native", "--repetitions", "1"]
    scored = CliRunner().invoke(cli, args)
    assert scored.exit_code == 0, scored.output
    assert "extras used: learned_lr, similarity, loss:wbce" in scored.output and "TR@10" in scored.output


def test_cli_import_errors_and_export(tmp_path, dim):
    bad = CliRunner().invoke(cli, ["import", str(tmp_path / "x.pt"), "--from", "tesla", "--out", "o"])
    assert bad.exit_code != 0 and "'tesla' is not one of" in bad.output
    missing = CliRunner().invoke(cli, ["import", str(tmp_path / "x.pt"), "--from", "lors", "--protocol",
                                       "smoke", "--out", str(tmp_path / "o")])  # fmt: skip
    assert missing.exit_code != 0 and "does not exist" in missing.output and "Traceback" not in missing.output
    lors_like_set().save(tmp_path / "set")
    for fmt, out in (("lors", tmp_path / "e.pt"), ("hf", tmp_path / "e_hf")):
        result = CliRunner().invoke(cli, ["export", str(tmp_path / "set"), "--format", fmt, "--out", str(out),
                                          "--protocol", "smoke"])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert out.exists() and f"wrote {N} pairs as {fmt}" in result.output
