"""The paper protocol's whole path, offline (issue 33): a generated Flickr8k in the Karpathy layout, read
by the real loader; text features from the BERT-base architecture (768-d, random weights); experts,
distillation (MDM, LoRS) and the random baseline on NFNet-L0 (random weights); evaluation on every encoder
pair of the paper's grid (NFNet-L0, NF-ResNet50, NF-RegNet-B1 x BERT-base, DistilBERT); then the report,
marked as random weights. A `paper-offline` file made small (64 px, 2 iterations, 1 expert, 1 repetition):
about 85 s on 2 idle CPU cores from a fresh cache (140 s on busy ones), so it is in the suite, marked slow.
Its cells run on one torch thread: two threads on 2 shared cores were 30x slower here (contention)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mdd_bench.cli import cli
from mdd_bench.distilled import DistilledSet
from mdd_bench.report.random_weights import NOTE

TINY = """
base = "paper-offline"
name = "paper-offline-tiny"
budgets = [4]
seeds = [0]

[data]
resolution = 64

[text]
max_length = 32

[experts]
num_experts = 1
epochs = 2
keep_epochs = 2
batch_size = 32

[eval]
epochs = 2
lr_decay_epoch = 2
batch_size = 32
repetitions = 1
full_data_epochs = 1
full_data_repetitions = 1

[distill]
max_iterations = 2
eval_every = 1
patience = 2
val_repetitions = 1
rescore_top = 1
rescore_repetitions = 1
"""
# The methods' paper settings made as small as the set (4 pairs, experts of 2 epochs).
SETTINGS = ("lors.syn_steps=2", "lors.syn_batch=4", "mdm.syn_batch=4", "mdm.real_batch=16", "mdm.max_epoch=2",
            "mdm.kmeans_iterations=5")  # fmt: skip
PAIRS = [(image, text) for text in ("bert-base-uncased", "distilbert-base-uncased")
         for image in ("nfnet_l0", "nf_resnet50", "nf_regnet_b1")]  # fmt: skip


def invoke(*args: str | Path) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache, and no hub: what runs here must need no download."""
    monkeypatch.setenv("MDD_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return tmp_path


@pytest.mark.slow
def test_paper_offline_runs_end_to_end_and_reports_as_random_weights(offline: Path) -> None:
    data, runs, out, protocol = (
        offline / "flickr8k",
        offline / "runs",
        offline / "report",
        offline / "tiny.toml",
    )
    protocol.write_text(TINY)
    invoke("data", "generate", "flickr8k", "--out", data, "--images", "48", "--resolution", "64")
    sets = [a for s in SETTINGS for a in ("--set", s)]
    said = invoke("run", "--protocol", protocol, "--methods", "mdm,lors,random", "--dataset", "flickr8k",
                  "--data-root", data, "--archs", "all", "--out", runs, "--cpus-per-task", "1", "--quiet",
                  "--no-report", *sets)  # fmt: skip
    assert "(random weights: cost and plumbing only, not a result)" in said
    cells = runs / "paper-offline-tiny" / "flickr8k"
    for method in ("mdm", "lors", "random"):
        result = json.loads((cells / method / "b4-s0.json").read_text())
        assert result["random_weights"] is True, method
        settings = result["config"]["protocol"]
        assert settings["image"]["pretrained"] == "none" and settings["text"]["weights"] == "random"
        for track in ("hard", "native"):
            archs = result["evaluation"][track]["archs"]
            assert [(a["image_encoder"], a["text_encoder"]) for a in archs] == PAIRS, (method, track)
            assert [a["source"] for a in archs] == [True] + [False] * 5
        texts = DistilledSet.load(result["distilled_set"]).texts
        assert tuple(texts.shape) == (4, 768)  # BERT-base's [CLS]
        if method != "random":
            assert result["distill"]["iterations"] == 2 and result["distill"]["time_per_iter_s"] > 0
    # every training caption of the generated train split (36 images x 5) is a pair of the upper bound
    assert json.loads((cells / "full-data" / "b180-s0.json").read_text())["random_weights"] is True

    invoke("report", "--runs", runs, "--out", out, "--format", "latex,markdown,csv,html", "--no-gallery")
    markdown = (out / "paper-offline-tiny" / "report_hard.md").read_text()
    assert markdown.splitlines()[0].endswith(NOTE)
    assert "LoRS" in markdown and "MDM" in markdown and "Cross-architecture" in markdown
    page = (out / "paper-offline-tiny" / "report.html").read_text()
    assert f"{NOTE}</title>" in page and f'<p class="intro">{NOTE}' in page
