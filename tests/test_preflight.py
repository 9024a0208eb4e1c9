"""The grid's pre-flight check: missing data, a malformed annotation file, a budget larger than the
training pairs and uncached hub weights each stop `mdd-bench run` with one line before any cell starts,
and nothing is written. Nothing here trains: every refusal comes before the first cell."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from huggingface_hub import constants as hub_constants

from mdd_bench.cli import cli
from mdd_bench.errors import MddError
from mdd_bench.models import hub_cache
from mdd_bench.protocol import load_protocol
from mdd_bench.run.config import RunConfig
from mdd_bench.run.grid import plan_grid
from mdd_bench.run.preflight import hub_files, preflight

SPLITS = {"train": 3, "val": 1, "test": 1}  # images; five captions each, so 15 training pairs


def write_flickr8k(root: Path) -> Path:
    """A Karpathy-layout Flickr8k whose image files are not images: counting pairs must decode none."""
    (root / "Images").mkdir(parents=True)
    entries = []
    for split, count in SPLITS.items():
        for i in range(count):
            (root / "Images" / f"{split}{i}.jpg").write_bytes(b"not an image")
            sentences = [{"raw": f"a caption {k}"} for k in range(5)]
            entries.append({"filename": f"{split}{i}.jpg", "split": split, "sentences": sentences})
    (root / "dataset_flickr8k.json").write_text(json.dumps({"images": entries}))
    return root


def refused(*args: str | Path) -> str:
    """The one `Error:` line of a run stopped by the pre-flight check; its --out holds no file."""
    out = Path(args[args.index("--out") + 1])
    result: Result = CliRunner().invoke(cli, ["run", *map(str, args)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and not result.stdout.strip(), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
    return lines[0]


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, with an empty Hugging Face cache. huggingface_hub reads HF_HUB_CACHE when imported, so
    the constant the loaders and the check read is patched beside the variable."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


def cache_files(cache: Path, repo: str, *names: str) -> None:
    """Files as huggingface_hub caches them: refs/main names the snapshot that holds them."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("0" * 40)
    for name in names:
        (folder / "snapshots" / ("0" * 40)).mkdir(parents=True, exist_ok=True)
        (folder / "snapshots" / ("0" * 40) / name).write_bytes(b"")


def test_missing_coco_stops_the_grid_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDD_BENCH_DATA", str(tmp_path / "data"))
    line = refused("--methods", "mdm,lors", "--dataset", "coco", "--out", tmp_path / "runs")
    assert f"Data root '{tmp_path / 'data' / 'coco'}' does not exist." in line
    assert "dataset_coco.json" in line and "--data-root DIR" in line and "cell" not in line
    assert "`mdd-bench data generate coco --out DIR`" in line  # the offline stand-in


def test_flickr8k_without_annotations(tmp_path: Path) -> None:
    (tmp_path / "f8k").mkdir()
    args = ("--methods", "mdm", "--dataset", "flickr8k", "--data-root", tmp_path / "f8k")
    line = refused(*args, "--out", tmp_path / "runs")
    assert "No Flickr8k annotations" in line and "dataset_flickr8k.json" in line and "--data-root" in line


def test_malformed_annotation_file_is_named(tmp_path: Path) -> None:
    root = write_flickr8k(tmp_path / "f8k")
    (root / "dataset_flickr8k.json").write_text('{"images": [{"filename": }')
    args = ("--methods", "mdm", "--dataset", "flickr8k", "--data-root", root, "--out", tmp_path / "runs")
    line = refused(*args)
    assert f"'{root / 'dataset_flickr8k.json'}' is not valid JSON" in line


def test_budget_larger_than_the_training_pairs(tmp_path: Path) -> None:
    args = ("--methods", "mdm,lors", "--protocol", "smoke", "--budgets", "10,100000")
    line = refused(*args, "--out", tmp_path / "runs")
    assert line == (
        "Error: Budget 100000 is larger than the 600 training pairs of shapes. Use a smaller --budgets value."
    )


def test_karpathy_pairs_come_from_the_annotations(tmp_path: Path) -> None:
    root = write_flickr8k(tmp_path / "f8k")
    protocol = load_protocol("cpu")

    def check(budget: int) -> None:
        config = RunConfig(["random"], ["flickr8k"], [budget], data_root=root, out=tmp_path / "runs")
        preflight(protocol, config, plan_grid(protocol, config, log=lambda _: None))

    check(15)  # every training pair, no image decoded (the files are not images)
    with pytest.raises(MddError, match="Budget 16 is larger than the 15 training pairs of flickr8k"):
        check(16)


def test_uncached_hub_weights_offline(tmp_path: Path, empty_hub: Path) -> None:
    root = write_flickr8k(tmp_path / "f8k")
    args = ("--protocol", "paper", "--methods", "mdm", "--dataset", "flickr8k", "--data-root", root)
    line = refused(*args, "--budgets", "10", "--out", tmp_path / "runs")
    assert "Image encoder 'nfnet_l0' (ImageNet weights) is not cached" in line
    assert "timm/nfnet_l0.ra2_in1k" in line and str(empty_hub) in line and "HF_HUB_OFFLINE" in line
    cache_files(empty_hub, "timm/nfnet_l0.ra2_in1k", "model.safetensors")
    line = refused(*args, "--budgets", "10", "--out", tmp_path / "runs")
    assert "Text encoder 'bert-base-uncased' is not cached" in line and "config.json" in line
    cache_files(empty_hub, "bert-base-uncased", "config.json", "pytorch_model.bin")
    protocol = load_protocol("paper")
    config = RunConfig(["mdm"], ["flickr8k"], [10], data_root=root, out=tmp_path / "runs")
    preflight(protocol, config, plan_grid(protocol, config, log=lambda _: None))  # everything cached
    config.archs = "all"
    with pytest.raises(MddError, match="Image encoder 'nf_resnet50'"):
        preflight(protocol, config, plan_grid(protocol, config, log=lambda _: None))


def test_online_means_reachable(empty_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_cache, "offline", lambda: False)
    files = hub_cache.text_files("bert-base-uncased")
    assert files is not None
    monkeypatch.setattr(hub_cache, "unreachable", lambda repo, names: None)
    assert hub_cache.hub_problem(files) is None
    monkeypatch.setattr(hub_cache, "unreachable", lambda repo, names: "ConnectError: no route")
    message = hub_cache.hub_problem(files)
    assert message and "ConnectError: no route" in message and "\n" not in message


def test_random_and_local_weights_need_no_hub(empty_hub: Path) -> None:
    paper = load_protocol("paper")
    names = [f.repo for f in hub_files(paper, "all")]
    assert names == [
        "timm/nfnet_l0.ra2_in1k",
        "timm/nf_resnet50.ra2_in1k",
        "timm/nf_regnet_b1.ra2_in1k",
        "bert-base-uncased",
        "distilbert-base-uncased",
    ]
    random_images = dataclasses.replace(paper, image=dataclasses.replace(paper.image, pretrained="none"))
    assert [f.repo for f in hub_files(random_images, "all")] == [
        "bert-base-uncased",
        "distilbert-base-uncased",
    ]
    for name in ("smoke", "cpu"):  # anchors, the packaged MiniLM and its trained cut
        assert hub_files(load_protocol(name), "all") == []


def test_smoke_grid_passes_and_dry_run_shows_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    protocol = load_protocol("smoke")
    config = RunConfig.from_options(protocol, ["mdm", "lors"], out=tmp_path / "runs")
    preflight(protocol, config, plan_grid(protocol, config, log=lambda _: None))
    monkeypatch.setenv("MDD_BENCH_DATA", str(tmp_path / "data"))
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        cli, ["run", "--methods", "mdm", "--dataset", "coco", "--out", str(out), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("pre-flight:"))
    assert f"Data root '{tmp_path / 'data' / 'coco'}' does not exist." in line
    assert not out.exists()
