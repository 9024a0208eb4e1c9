"""Random weights (issue 33): the paper's architectures built with seeded random weights, offline, for cost
and plumbing; and nothing made with them can pass for a result. The encoders reproduce and leave the
caller's RNG alone, their caption embeddings never share a cache entry with real ones, the protocols say
which they are, and a report of such results says so on every caption and page and refuses to mix them
with real ones. (The whole path, run end to end, is tests/test_paper_offline.py.)"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mdd_bench.cli import cli
from mdd_bench.errors import MddError
from mdd_bench.models import create_text_encoder, text_feature_dim
from mdd_bench.models.text import known_fingerprint, weights_stamp
from mdd_bench.protocol import load_protocol
from mdd_bench.report import write_report
from mdd_bench.report.frame import load_frame
from mdd_bench.report.random_weights import NOTE
from mdd_bench.report.tables import build_tables

# ------------------------------------------------------------------------------------------------ protocols


def test_paper_offline_is_paper_with_random_encoders_and_only_it_says_so() -> None:
    paper, offline = load_protocol("paper"), load_protocol("paper-offline")
    assert offline.lineage == ("paper-offline", "paper")
    assert offline.random_weights and offline.image.pretrained == "none" and offline.text.weights == "random"
    assert (offline.image.source, offline.image.unseen) == (paper.image.source, paper.image.unseen)
    assert (offline.text.source, offline.text.unseen) == (paper.text.source, paper.text.unseen)
    assert offline.data.dataset == "flickr8k" and offline.data.resolution == paper.data.resolution == 224
    assert offline.experts == paper.experts and offline.eval == paper.eval
    for name in ("cpu", "smoke", "paper", "paper-frozen", "cpu-frozen"):
        protocol = load_protocol(name)
        assert not protocol.random_weights
        # the default is left out of the settings, so every protocol keeps the hash its results carry
        assert "weights" not in protocol.to_dict()["text"]
    assert offline.to_dict()["text"]["weights"] == "random" and offline.hash != paper.hash


def test_a_file_based_on_paper_offline_inherits_what_it_inherits_from_paper(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('base = "paper-offline"\nname = "mine"\n\n[data]\nresolution = 64\n')
    mine = load_protocol(path)
    assert mine.lineage == ("mine", "paper-offline", "paper")
    assert mine.data.resolution == 64 and mine.data.dataset == "flickr8k"
    assert mine.image.source == "nfnet_l0" and mine.image.pretrained == "none"
    assert mine.text.weights == "random" and mine.text.max_length == 512
    assert mine.experts.num_experts == 20 and mine.eval.dsa  # paper's, through paper-offline


# ------------------------------------------------------------------------------------------------ encoders


def test_random_bert_is_bert_base_with_the_packaged_wordpiece_and_reproduces() -> None:
    from transformers import BertConfig, BertModel

    state = torch.get_rng_state()
    encoder = create_text_encoder("bert-base-uncased", max_length=32, random_weights=True)
    assert torch.equal(torch.get_rng_state(), state)  # built under its own seed, the caller's left alone
    assert isinstance(encoder.model, BertModel) and encoder.dim == 768 and encoder.random_weights
    config, default = encoder.model.config, BertConfig()
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        assert getattr(config, key) == getattr(default, key), key
    assert len(encoder.tokenizer) == 30522  # bert-base-uncased's WordPiece vocabulary
    assert encoder.tokenizer("A red circle")["input_ids"] == [101, 1037, 2417, 4418, 102]
    captions = ["a red circle on the left", "two shapes: blue and green"]
    first = encoder.embed(captions, progress=False)
    again = create_text_encoder("bert-base-uncased", max_length=32, random_weights=True)
    assert np.array_equal(first, again.embed(captions, progress=False))
    assert text_feature_dim("bert-base-uncased", random_weights=True) == 768  # from the config, offline


def test_random_distilbert_is_distilbert_base() -> None:
    from transformers import DistilBertModel

    encoder = create_text_encoder("distilbert-base-uncased", max_length=32, random_weights=True)
    assert isinstance(encoder.model, DistilBertModel) and encoder.model.config.n_layers == 6
    assert encoder.dim == 768 == text_feature_dim("distilbert-base-uncased", random_weights=True)
    assert encoder.embed(["a star"], progress=False).shape == (1, 768)


def test_random_image_encoder_is_one_seeded_draw_per_name(smoke) -> None:
    from mdd_bench.pretrained.anchors import pretrained_image_encoder

    protocol = smoke[0]
    protocol = dataclasses.replace(protocol, image=dataclasses.replace(protocol.image, pretrained="none"))
    assert protocol.random_weights
    torch.manual_seed(5)
    state = torch.get_rng_state()
    first = pretrained_image_encoder("test_nfnet", protocol, progress=False).state_dict()
    second = pretrained_image_encoder("test_nfnet", protocol, progress=False).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_random_and_real_caption_embeddings_never_share_an_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    from mdd_bench.cache import cache_dir
    from mdd_bench.models import text as text_models
    from mdd_bench.pretrained.text_features import caption_embeddings

    captions = ["random weights test one", "random weights test two"]
    real = caption_embeddings(captions, "minilm", max_length=32)
    random = caption_embeddings(captions, "minilm", max_length=32, random_weights=True)
    assert np.abs(real - random).max() > 1e-2
    files = [p.name for p in cache_dir("text").glob("minilm-*.npy")]
    random_files = [n for n in files if n.startswith("minilm-random-")]
    assert random_files and len(files) > len(random_files)  # one entry each, the random one named so
    assert weights_stamp("minilm", random_weights=True) != weights_stamp("minilm")
    assert known_fingerprint("minilm", random_weights=True) != known_fingerprint("minilm")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cached lookup loaded the model")

    monkeypatch.setattr(text_models, "create_text_encoder", fail)  # both hit by name, neither loads
    assert np.array_equal(caption_embeddings(captions, "minilm", 32, random_weights=True), random)
    assert np.array_equal(caption_embeddings(captions, "minilm", 32), real)


def test_experts_of_random_encoders_are_kept_apart(smoke) -> None:
    from mdd_bench.artifacts.experts import ExpertConfig, experts_folder
    from mdd_bench.workspace import Workspace

    protocol, dataset = smoke
    random_text = dataclasses.replace(protocol, text=dataclasses.replace(protocol.text, weights="random"))
    random_image = dataclasses.replace(protocol, image=dataclasses.replace(protocol.image, pretrained="none"))
    folders = {
        experts_folder(Workspace(p, dataset, progress=False), ExpertConfig.from_protocol(p))
        for p in (protocol, random_text, random_image)
    }
    assert len(folders) == 3


# ------------------------------------------------------------------------------------------------ report

PROTOCOL = "offline-fake"


def fake_result(method: str, seed: int, mean: float, random_weights: bool | None) -> dict[str, Any]:
    runs = [dict.fromkeys(("ir1", "ir5", "ir10", "tr1", "tr5", "tr10", "mean"), mean + o) for o in (-1, 1)]
    for run in runs:
        run["rsum"] = 6 * run["mean"]
    arch = {"image_encoder": "nfnet_l0", "text_encoder": "bert-base-uncased", "seeds": [1, 2], "runs": runs,
            "source": True, "recipe": {}, "mean": {k: mean for k in runs[0]}, "std": {}}  # fmt: skip
    hard = {"track": "hard", "split": "test", "extras_used": [], "recipe": {}, "archs": [arch]}
    out = {"schema": 1, "method": method, "family": "distillation", "dataset": "flickr8k",
           "protocol": PROTOCOL, "protocol_hash": "abc", "budget": 100, "seed": seed,
           "distill": {"seconds": 2.0, "iterations": 2, "time_per_iter_s": 1.0, "peak_mem_mb": 10.0},
           "storage_bytes": 100,
           "evaluation": {"hard": hard, "native": dict(hard, track="native")}}  # fmt: skip
    if random_weights is not None:  # None: a file written before the field existed
        out["random_weights"] = random_weights
    return out


def write_runs(runs: Path, random_weights: bool | None, methods: tuple[str, ...] = ("lors", "mdm")) -> None:
    for method in (*methods, "random"):
        for seed in range(2):
            path = runs / PROTOCOL / "flickr8k" / method / f"b100-s{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(fake_result(method, seed, 20.0 + seed + len(method), random_weights)))


def test_a_random_weight_report_says_so_on_every_caption_and_page(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "report"
    write_runs(runs, True)
    frame = load_frame(runs)
    tables = build_tables(frame, "hard")
    assert tables and all(t.caption.startswith(NOTE) for t in tables)
    write_report(runs, out, ["latex", "markdown", "csv", "html"], gallery=False)
    folder = out / PROTOCOL
    markdown = (folder / "report_hard.md").read_text()
    assert markdown.splitlines()[0].endswith(NOTE)  # the title
    assert markdown.count(NOTE) == len(tables) + 1
    latex = "".join(p.read_text() for p in sorted(folder.glob("*.tex")))
    assert all(c.startswith(NOTE) for c in latex.split(r"\caption{")[1:])
    summary = (folder / "summary.md").read_text()
    assert summary.count(NOTE) == summary.count("###") >= 1
    page = (folder / "report.html").read_text()
    assert f"<title>mdd-bench report: protocol {PROTOCOL}. {NOTE}</title>" in page
    assert f'<p class="intro">{NOTE} ' in page
    captions = page.split('<p class="caption">')[1:]
    assert captions and all(c.startswith(NOTE) for c in captions if not c.startswith("Synthetic"))
    csv = (out / "results.csv").read_text().splitlines()
    assert csv[0].endswith(",random_weights") and all(line.endswith(",True") for line in csv[1:])


def test_a_real_report_carries_no_mark(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "report"
    write_runs(runs, None)  # older files: no field, real
    write_report(runs, out, ["markdown", "csv", "html"], gallery=False)
    for path in (out / PROTOCOL / "report_hard.md", out / PROTOCOL / "report.html", out / "results.csv"):
        text = path.read_text()
        assert NOTE not in text and "random_weights" not in text, path


def test_report_refuses_to_mix_random_weight_and_real_results(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_runs(runs, False, methods=("lors",))
    mixed = runs / PROTOCOL / "flickr8k" / "mdm" / "b100-s0.json"
    mixed.parent.mkdir(parents=True)
    mixed.write_text(json.dumps(fake_result("mdm", 0, 25.0, True)))
    with pytest.raises(MddError, match="mixes results made with random weights"):
        load_frame(runs)
    result = CliRunner().invoke(cli, ["report", "--runs", str(runs), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(mixed) in lines[0], result.stderr
    assert not (tmp_path / "out").exists()
