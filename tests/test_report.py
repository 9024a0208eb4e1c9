"""`mdd-bench report` on synthetic result files written here (no training): the long frame, each table's
structure and numbers (mean ± std over seeds, bold best, missing cells), the timing saving, ablations,
the CSV, LaTeX, Markdown and figures, one-line errors, the comparison of a protocol with its variant
(cpu and cpu-frozen), and that two runs of the report write the same bytes.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from mdd_bench.cli import cli
from mdd_bench.errors import MddError
from mdd_bench.evaluation.metrics import METRICS
from mdd_bench.report import parse_formats, write_report
from mdd_bench.report.frame import COLUMNS, TIMING_TRACK, load_frame
from mdd_bench.report.layout import DETERMINISTIC, EXTRAS, FEWER_SEEDS, MISSING, SOURCE, TIED, Cell, Table
from mdd_bench.report.lineage import lineage_groups, lineages, protocol_lineage
from mdd_bench.report.seed_stats import seed_stat, t975
from mdd_bench.report.tables import (
    _bold_best,
    _cell,
    ablation_tables,
    build_tables,
    cross_arch_table,
    protocol_comparison,
    protocol_table,
    retrieval_table,
    timing_tables,
)

PROTOCOL = "syn"
SOURCE_PAIR = ("nfnet_l0", "bert")
PAIRS = [SOURCE_PAIR, ("nf_resnet50", "bert"), ("nfnet_l0", "distilbert"), ("nf_resnet50", "distilbert")]
BASE = {"random": 5.0, "lors": 15.0, "mdm": 22.0, "full-data": 50.0}
METRIC_OFFSET = {m: 2.0 * i for i, m in enumerate(METRICS)}
SEEDS = (0, 1, 2)
COST = {"lors": (5.0, 850, 1000), "mdm": (1.7, 200, 300), "random": (None, None, 0)}


def metric_value(method: str, dataset: str, budget: int, seed: int, pair: int, metric: str) -> float:
    """A known number per cell: seeds 0/1/2 add 0/1/2 (so std over seeds is exactly 1.0)."""
    return BASE[method] + (dataset == "coco") * 3 + budget / 100 + METRIC_OFFSET[metric] - pair + seed


def arch_entry(method: str, dataset: str, budget: int, seed: int, pair: int, with_mean: bool = True) -> dict:
    six = {m: metric_value(method, dataset, budget, seed, pair, m) for m in METRICS}
    mean = dict(six, mean=statistics.fmean(six.values()), rsum=sum(six.values()))
    runs = [{k: v - 0.5 for k, v in mean.items()}, {k: v + 0.5 for k, v in mean.items()}]
    image, text = PAIRS[pair]
    entry: dict[str, Any] = {
        "image_encoder": image,
        "text_encoder": text,
        "source": pair == 0,
        "seeds": [seed * 1000, seed * 1000 + 1],
        "runs": runs,
    }
    if with_mean:
        entry.update(mean=mean, std={k: 0.5 for k in mean})
    return entry


def result(method: str, dataset: str, budget: int, seed: int, **extra: Any) -> dict[str, Any]:
    pairs = range(1) if method == "full-data" else range(len(PAIRS))
    hard = {
        "track": "hard",
        "split": "test",
        "extras_used": [],
        "recipe": {},
        "archs": [arch_entry(method, dataset, budget, seed, p) for p in pairs],
    }
    native = dict(hard, track="native", same_as="hard")
    if method == "lors":
        native = dict(hard, track="native", extras_used=["learned_lr", "similarity"])
    per_iter, best, iterations = COST.get(method, (None, None, 0))
    seconds = (per_iter or 0.01) * (iterations or 1)
    return {
        "schema": 1,
        "method": method,
        "family": "coreset" if method == "random" else "distillation",
        "dataset": dataset,
        "protocol": PROTOCOL,
        "protocol_hash": "abc",
        "budget": budget,
        "seed": seed,
        "distill": {
            "seconds": seconds,
            "iterations": iterations,
            "time_per_iter_s": per_iter,
            "iters_to_best": best,
            "peak_mem_mb": 1000.0 + budget,
            "cuda_peak_mem_mb": None,
            "extra": {},
        },
        "storage_bytes": budget * 3 * 224 * 224 * 4,
        "evaluation": {"hard": hard, "native": native},
        **extra,
    }


def write(runs: Path, folder: str, data: dict[str, Any]) -> Path:
    path = runs / PROTOCOL / data["dataset"] / folder / f"b{data['budget']}-s{data['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def make_runs(runs: Path) -> Path:
    """random/lors/mdm x flickr8k/coco x budgets 100/200 x 3 seeds; mdm at coco/200 never ran; lors on
    coco/200 has only seed 0; a full-data upper bound; a data_init ablation of mdm."""
    for dataset in ("flickr8k", "coco"):
        for budget in (100, 200):
            for method in ("random", "lors", "mdm"):
                for seed in SEEDS:
                    if (method, dataset, budget) == ("mdm", "coco", 200):
                        continue
                    if (method, dataset, budget) == ("lors", "coco", 200) and seed:
                        continue
                    write(runs, method, result(method, dataset, budget, seed))
        for seed in (0, 1):
            write(runs, "full-data", result("full-data", dataset, 0, seed))
    for order, (variant, shift) in enumerate([("noise", -20.0), ("random", -2.0), ("kmeans", 0.0)]):
        for seed in (0, 1):
            data = result("mdm", "flickr8k", 100, seed, ablation={"group": "data_init", "variant": variant})
            data["ablation"]["order"] = order
            for arch in data["evaluation"]["hard"]["archs"]:
                arch["mean"] = {k: v + shift for k, v in arch["mean"].items()}
            write(runs, f"mdm-data_init-{variant}", data)
    # a distilled set's own JSON sits in sets/ and must be ignored
    (runs / PROTOCOL / "flickr8k" / "mdm" / "sets").mkdir(exist_ok=True)
    (runs / PROTOCOL / "flickr8k" / "mdm" / "sets" / "b100-s0.json").write_text('{"not": "a result"}')
    return runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def frame(runs: Path) -> pd.DataFrame:
    return load_frame(runs)


def seed_stats(method: str, dataset: str, budget: int, metric: str, pair: int = 0, seeds=SEEDS):
    values = []
    for s in seeds:
        entry = arch_entry(method, dataset, budget, s, pair)
        values.append(entry["mean"][metric])
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


# ------------------------------------------------------------------------------------------------ frame


def test_frame_is_long_and_complete(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == COLUMNS
    retrieval = frame[frame["track"] == "hard"]
    # random cells and a full-data upper bound: every cell also gets its scores (tests/test_scores.py)
    assert set(retrieval["metric"]) == {*METRICS, "mean", "rsum", "ior", "hlr", "score"}
    row = retrieval[
        (retrieval["method"] == "lors")
        & (retrieval["dataset"] == "coco")
        & (retrieval["budget"] == 100)
        & (retrieval["seed"] == 2)
        & (retrieval["image_encoder"] == "nf_resnet50")
        & (retrieval["text_encoder"] == "distilbert")
        & (retrieval["metric"] == "TR@5")
    ]
    assert len(row) == 1
    assert row["value"].iloc[0] == pytest.approx(metric_value("lors", "coco", 100, 2, 3, "TR@5"))
    assert not row["source"].iloc[0] and row["repetitions"].iloc[0] == 2
    native = frame[(frame["track"] == "native") & (frame["method"] == "lors")]
    assert set(native["extras"]) == {"learned_lr,similarity"}
    timing = frame[frame["track"] == TIMING_TRACK]
    assert set(timing[["image_encoder", "text_encoder"]].itertuples(index=False)) == {SOURCE_PAIR}
    assert "sets" not in " ".join(frame["file"])


def test_seed_value_is_the_mean_over_repetitions(tmp_path: Path) -> None:
    data = result("mdm", "flickr8k", 100, 0)
    for arch in data["evaluation"]["hard"]["archs"]:
        arch.pop("mean")
        arch["runs"] = [{**arch["runs"][0], "IR@1": 10.0}, {**arch["runs"][1], "IR@1": 13.0}]
    write(tmp_path, "mdm", data)
    df = load_frame(tmp_path)
    ir1 = df[(df["track"] == "hard") & df["source"] & (df["metric"] == "IR@1")]["value"]
    assert ir1.tolist() == [11.5]


# ----------------------------------------------------------------------------------------------- tables


def test_retrieval_table_layout_values_and_bold(frame: pd.DataFrame) -> None:
    table = retrieval_table(frame, "hard")
    assert table is not None
    metrics = ["IR@1", "IR@5", "IR@10", "TR@1", "TR@5", "TR@10", "Mean", "IOR", "HLR", "Score"]
    assert table.columns[:2] == [("", "Pairs"), ("", "Method")]
    assert table.columns[2:] == [(d, m) for d in ("Flickr8k", "COCO") for m in metrics]
    labels = [(r[0].text, r[1].text) for r in table.rows]
    assert labels == [
        ("100", "Random"),
        ("", "LoRS"),
        ("", "MDM"),
        ("200", "Random"),
        ("", "LoRS"),
        ("", "MDM"),
        ("all", "Full data"),
    ]
    cell = table.find_row("100", "LoRS")[table.column("Flickr8k", "TR@5")]
    mean, std = seed_stats("lors", "flickr8k", 100, "TR@5")
    assert cell.mean == pytest.approx(mean) and cell.std == pytest.approx(1.0) == pytest.approx(std)
    assert cell.plain() == f"{mean:.1f} ± 1.0"
    # MDM is best everywhere at budget 100; bold marks exactly that row
    for label, bold in (("Random", False), ("LoRS", False), ("MDM", True)):
        row = table.find_row("100", label)
        assert all(c.bold == bold for c in row[2:]), label
    # mdm never ran on coco at 200: shown as missing, not dropped; LoRS best there
    mdm_200 = table.find_row("200", "MDM")
    assert mdm_200[table.column("COCO", "Mean")].plain() == MISSING
    assert mdm_200[table.column("Flickr8k", "Mean")].plain() != MISSING
    assert table.find_row("200", "LoRS")[table.column("COCO", "Mean")].bold
    # one seed only: no std, flagged as fewer seeds
    lors_coco = table.find_row("200", "LoRS")[table.column("COCO", "IR@1")]
    assert lors_coco.std is None or math.isnan(lors_coco.std)
    assert lors_coco.marks and any("Fewer than 3 seeds" in n for n in table.notes)
    full = table.rows[-1][table.column("COCO", "Mean")]
    assert full.mean == pytest.approx(seed_stats("full-data", "coco", 0, "mean", seeds=(0, 1))[0])
    assert not any(c.bold or c.marks for c in table.rows[-1])  # the reference: 2 seeds of its own
    assert any(n.startswith("Full data") and "2 seeds" in n for n in table.notes)
    assert (
        "hard track" in table.caption and "syn" in table.caption and "3 distillation seeds" in table.caption
    )
    assert "2 evaluation repetitions" in table.caption


def test_native_track_marks_methods_that_used_extras(frame: pd.DataFrame) -> None:
    table = retrieval_table(frame, "native")
    assert table is not None
    assert table.find_row("100", "LoRS")[1].marks == EXTRAS
    assert table.find_row("100", "MDM")[1].marks == ""
    assert any(n.startswith(EXTRAS) and "learned_lr, similarity" in n for n in table.notes)
    assert EXTRAS not in "".join(c.marks for r in retrieval_table(frame, "hard").rows for c in r)


def test_cross_architecture_table(frame: pd.DataFrame) -> None:
    table = cross_arch_table(frame, "hard")
    assert table is not None
    assert table.columns[2:7] == [
        ("Flickr8k", "bert", "nfnet_l0"),
        ("Flickr8k", "bert", "nf_resnet50"),
        ("Flickr8k", "distilbert", "nfnet_l0"),
        ("Flickr8k", "distilbert", "nf_resnet50"),
        ("Flickr8k", "", "Mean"),
    ]
    row = table.find_row("100", "MDM")
    source = row[table.columns.index(("Flickr8k", "bert", "nfnet_l0"))]
    assert SOURCE in source.marks and source.plain().startswith(
        f"{seed_stats('mdm', 'flickr8k', 100, 'mean')[0]:.1f}*"
    )
    unseen = statistics.fmean(seed_stats("mdm", "flickr8k", 100, "mean", pair=p)[0] for p in (1, 2, 3))
    assert row[table.columns.index(("Flickr8k", "", "Mean"))].mean == pytest.approx(unseen)
    assert row[table.columns.index(("Flickr8k", "", "Mean"))].bold
    assert table.find_row("200", "MDM")[table.columns.index(("COCO", "", "Mean"))].plain() == MISSING


def test_cross_architecture_mean_of_a_deterministic_method_is_not_missing_seeds(tmp_path: Path) -> None:
    """A coreset that runs one seed by design reads § in the unseen pairs' mean too, like its pair columns."""
    runs = tmp_path / "runs"
    for seed in SEEDS:
        write(runs, "lors", result("lors", "flickr8k", 100, seed))
    write(runs, "herding", {**result("random", "flickr8k", 100, 0, deterministic=True), "method": "herding"})
    table = cross_arch_table(load_frame(runs), "hard")
    row = table.find_row("100", "Herding")
    mean = row[table.columns.index(("Flickr8k", "", "Mean"))]
    unseen = statistics.fmean(arch_entry("random", "flickr8k", 100, 0, p)["mean"]["mean"] for p in (1, 2, 3))
    assert mean.mean == pytest.approx(unseen) and mean.marks == DETERMINISTIC
    assert row[table.columns.index(("Flickr8k", "bert", "nf_resnet50"))].marks == DETERMINISTIC
    assert not any(n.startswith(FEWER_SEEDS) for n in table.notes)


def test_timing_table_saving_against_baseline(frame: pd.DataFrame) -> None:
    timing = {t.name: t for t in build_tables(frame, "hard", baseline="lors")}["timing_flickr8k"]
    headers = [c[0] for c in timing.columns]
    assert headers[:5] == ["# Pairs", "Method", "Time/iter (s)", "# iter till best", "Total (min)"]
    mdm = timing.find_row("100", "MDM")
    total = mdm[timing.column("Total (min)")]
    assert total.mean == pytest.approx(1.7 * 200 / 60)
    assert total.plain() == "5.67 (↓92%)"  # LoRS: 5.0 s x 850 iterations = 70.83 min
    assert mdm[timing.column("# iter till best")].plain() == "200"
    lors = timing.find_row("100", "LoRS")
    assert lors[timing.column("# iter till best")].plain() == "850"
    assert lors[timing.column("Total (min)")].change is None  # the baseline itself
    assert timing.find_row("100", "Random")[timing.column("Time/iter (s)")].plain() == MISSING
    assert "Storage (MB)" in headers


def test_timing_marks_a_deterministic_method_not_as_missing_seeds(tmp_path: Path) -> None:
    """A coreset that runs one seed by design is § in the cost table too, not 'fewer seeds finished'."""
    runs = tmp_path / "runs"
    for seed in SEEDS:
        write(runs, "lors", result("lors", "flickr8k", 100, seed))
    write(runs, "herding", {**result("random", "flickr8k", 100, 0, deterministic=True), "method": "herding"})
    (timing,) = timing_tables(load_frame(runs), None)
    wall = timing.find_row("100", "Herding")[timing.column("Peak mem (MB)")]
    assert (wall.marks, wall.std) == (DETERMINISTIC, None)
    assert timing.find_row("100", "LoRS")[timing.column("Peak mem (MB)")].marks == ""
    assert any(n.startswith(DETERMINISTIC) and "spread" not in n for n in timing.notes)
    assert not any(n.startswith(FEWER_SEEDS) for n in timing.notes)


def test_ablation_table(frame: pd.DataFrame) -> None:
    (table,) = ablation_tables(frame, "hard")
    assert table.name == "ablation_data_init_hard"
    assert [c[0] for c in table.columns] == ["Variant", "IR", "TR", "Mean"]
    assert [r[0].text for r in table.rows] == ["noise", "random", "kmeans"]  # the files' order
    ir = statistics.fmean(
        statistics.fmean(arch_entry("mdm", "flickr8k", 100, s, 0)["mean"][m] for m in METRICS[:3])
        for s in (0, 1)
    )
    kmeans = table.find_row("kmeans")
    assert kmeans[1].mean == pytest.approx(ir) and kmeans[1].std == pytest.approx(math.sqrt(0.5))
    assert table.find_row("noise")[3].mean == pytest.approx(
        seed_stats("mdm", "flickr8k", 100, "mean", seeds=(0, 1))[0] - 20
    )
    # kmeans beats random by 2 points with 2 seeds (95% interval ±6.4): a tie, not a win; noise is far off
    random_row, noise_row = table.find_row("random"), table.find_row("noise")
    assert not any(c.bold for row in (kmeans, random_row, noise_row) for c in row[1:])
    assert all(TIED in c.marks for c in kmeans[1:] + random_row[1:])
    assert not any(TIED in c.marks for c in noise_row[1:])
    assert any(n.startswith(TIED) for n in table.notes)
    assert "Flickr8k with 100 pairs" in table.caption


def test_an_ablation_with_one_variant_on_a_track_has_no_table_there(tmp_path: Path) -> None:
    """Ablation variants are evaluated on the hard track; only the main variant's cell has a native
    track too. A one-row native table would read as a result: it is left out, the hard one stays."""
    runs = tmp_path / "runs"
    for variant in ("random", "kmeans"):
        for seed in (0, 1):
            data = result("mdm", "flickr8k", 100, seed, ablation={"group": "data_init", "variant": variant})
            if variant != "kmeans":
                del data["evaluation"]["native"]
            write(runs, f"mdm-data_init-{variant}", data)
    frame = load_frame(runs)
    assert set(frame[frame["track"] == "native"]["ablation_variant"]) == {"kmeans"}
    (hard,) = ablation_tables(frame, "hard")
    assert [r[0].text for r in hard.rows] == ["kmeans", "random"]
    assert ablation_tables(frame, "native") == []


def test_cells_name_the_result_files_behind_them(frame: pd.DataFrame) -> None:
    """The HTML page links each number to its files: every seed of that cell, nothing else."""
    table = retrieval_table(frame, "hard")
    mdm = table.find_row("100", "MDM")[table.column("COCO", "Mean")]
    assert mdm.sources == tuple(f"syn/coco/mdm/b100-s{s}.json" for s in SEEDS)
    lors = table.find_row("200", "LoRS")[table.column("COCO", "IR@1")]
    assert lors.sources == ("syn/coco/lors/b200-s0.json",)
    assert table.find_row("200", "MDM")[table.column("COCO", "IR@1")].sources == ()  # never ran
    assert table.find_row("all", "Full data")[table.column("Flickr8k", "Mean")].sources == (
        "syn/flickr8k/full-data/b0-s0.json",
        "syn/flickr8k/full-data/b0-s1.json",
    )
    cross = cross_arch_table(frame, "hard")
    assert cross.find_row("100", "Random")[-1].sources == tuple(
        f"syn/coco/random/b100-s{s}.json" for s in SEEDS
    )
    (timing,) = [t for t in timing_tables(frame, None) if t.name == "timing_flickr8k"]
    assert timing.find_row("200", "LoRS")[2].sources == tuple(
        f"syn/flickr8k/lors/b200-s{s}.json" for s in SEEDS
    )
    (ablation,) = ablation_tables(frame, "hard")
    assert ablation.find_row("kmeans")[1].sources == (
        "syn/flickr8k/mdm-data_init-kmeans/b100-s0.json",
        "syn/flickr8k/mdm-data_init-kmeans/b100-s1.json",
    )


def test_ablation_cells_stay_out_of_the_main_tables(frame: pd.DataFrame) -> None:
    table = retrieval_table(frame, "hard")
    cell = table.find_row("100", "MDM")[table.column("Flickr8k", "Mean")]
    assert cell.mean == pytest.approx(seed_stats("mdm", "flickr8k", 100, "mean")[0])


# ---------------------------------------------------------------------------------------------- outputs


@pytest.mark.slow
def test_write_report_writes_every_format(runs: Path, tmp_path: Path) -> None:
    paths = write_report(runs, tmp_path, track="hard", baseline="lors")
    names = {p.relative_to(tmp_path).as_posix() for p in paths}
    for name in (
        "results.csv",
        "syn/retrieval_hard.tex",
        "syn/cross_arch_hard.tex",
        "syn/timing_flickr8k.tex",
        "syn/timing_coco.tex",
        "syn/ablation_data_init_hard.tex",
        "syn/report_hard.tex",
        "syn/report_hard.md",
        "syn/report.html",
    ):
        assert name in names, name
    assert not [n for n in names if "protocols_" in n]  # one protocol of its lineage: nothing to compare
    csv = pd.read_csv(tmp_path / "results.csv")
    assert tuple(csv.columns) == COLUMNS and len(csv) == len(load_frame(runs))
    for stem in ("recall_vs_budget_hard", "time_vs_recall_hard", "cross_arch_hard"):
        png, pdf = tmp_path / "syn" / f"{stem}.png", tmp_path / "syn" / f"{stem}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000
    tex = (tmp_path / "syn" / "retrieval_hard.tex").read_text()
    assert r"\toprule" in tex and r"\cmidrule(lr){3-12}" in tex and r"\textbf{" in tex and "$\\pm$" in tex
    assert r"\multicolumn{10}{c}{Flickr8k}" in tex and " -- " in tex
    timing_tex = (tmp_path / "syn" / "timing_flickr8k.tex").read_text()
    assert r"5.67 ($\downarrow$\,92\%)" in timing_tex
    for tex_path in (tmp_path / "syn").glob("*.tex"):  # pdflatex without extra packages: marks as macros
        assert tex_path.read_text().isascii(), tex_path.name
    assert r"$^{\approx}$" in tex or r"\textsuperscript{\S}" in tex
    wrapper = (tmp_path / "syn" / "report_hard.tex").read_text()
    assert r"\documentclass" in wrapper and r"\input{retrieval_hard}" in wrapper
    assert "recall_vs_budget_hard.pdf" in wrapper
    md = (tmp_path / "syn" / "report_hard.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Pairs"))
    assert [c.strip() for c in header.split("|")[1:4]] == ["Pairs", "Method", "Flickr8k IR@1"]
    assert "![" in md and "–" in md


def test_formats_are_chosen(runs: Path, tmp_path: Path) -> None:
    paths = write_report(runs, tmp_path, formats=["csv"], track="native")
    assert [p.name for p in paths] == ["results.csv"]
    assert parse_formats("latex, markdown") == ["latex", "markdown"]
    with pytest.raises(MddError, match="Unknown format 'pdf'"):
        parse_formats("latex,pdf")


def test_missing_track_is_an_error(tmp_path: Path) -> None:
    data = result("mdm", "flickr8k", 100, 0)
    del data["evaluation"]["native"]
    write(tmp_path / "runs", "mdm", data)
    with pytest.raises(MddError, match="No 'native' track results .*tracks there: hard"):
        write_report(tmp_path / "runs", tmp_path / "out", formats=["csv"], track="native")


def test_unknown_baseline_is_an_error(runs: Path, tmp_path: Path) -> None:
    with pytest.raises(MddError, match="Did you mean 'lors'"):
        write_report(runs, tmp_path, formats=["csv"], baseline="lros")


# ------------------------------------------------------------------------------------------------- CLI


def cli_error(*args: str | Path) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_cli_empty_runs_folder(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    line = cli_error("report", "--runs", tmp_path / "runs", "--out", tmp_path / "out")
    assert "No result files under" in line and "mdd-bench run" in line


def test_cli_corrupt_result_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "mdm", result("mdm", "flickr8k", 100, 0))
    path.write_text('{"schema": 1, "method": ')
    line = cli_error("report", "--runs", tmp_path, "--out", tmp_path / "out")
    assert str(path) in line and "corrupt" in line


def test_cli_report_writes_and_lists_files(runs: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["report", "--runs", str(runs), "--out", str(tmp_path), "--format", "markdown,csv"]
    )
    assert result.exit_code == 0, result.output
    assert "results.csv" in result.stdout and "report_hard.md" in result.stdout
    assert not (tmp_path / "syn" / "retrieval_hard.tex").exists()


def test_reader_and_runner_share_one_record(tmp_path: Path) -> None:
    from mdd_bench import record
    from mdd_bench.record import SCHEMA, DistillCost, ResultRecord, read_record
    from mdd_bench.report import frame
    from mdd_bench.run import cell, full_data

    assert frame.read_result is record.read_result
    assert cell.ResultRecord is full_data.ResultRecord is ResultRecord
    made = ResultRecord("m", "coreset", "shapes", "smoke", "h", 10, 0, {"hard": {}}, {}, {})
    data = made.to_dict()
    assert data["schema"] == SCHEMA and "ablation" not in data and data["distill"]["iterations"] == 0
    path = tmp_path / "b10-s0.json"
    path.write_text(json.dumps({**data, "distill": {"seconds": 1.5, "iterations": 3, "later_key": 1}}))
    typed = read_record(path)  # the typed read path: a record back, keys it does not know dropped
    assert isinstance(typed.distill, DistillCost) and typed.distill.iterations == 3
    assert (typed.method, typed.budget, typed.evaluation) == ("m", 10, {"hard": {}})


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("[]", "not an mdd-bench result file"),
        ('{"schema": 99}', "reads up to"),
        ('{"schema": 1, "method": "m"}', "lacks dataset"),
        (
            '{"schema": 1, "method": "m", "dataset": "d", "protocol": "p", "budget": 1, "seed": 0, '
            '"evaluation": {}, "ablation": {"group": "g"}}',
            "without 'group' and 'variant'",
        ),
        ("{not json", "is corrupt"),
    ],
)
def test_every_bad_result_file_is_one_line_naming_it(tmp_path: Path, content: str, says: str) -> None:
    from mdd_bench.record import read_record

    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(MddError) as err:
        read_record(path)
    assert says in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------------------- noise-aware bold


def _column(*cells: tuple[float, float | None]) -> Table:
    table = Table("t", "t", "", [("Method",), ("Mean",)], labels=1)
    for i, (mean, ci) in enumerate(cells):
        table.add_row([Cell(text=f"m{i}"), Cell(mean=mean, ci=ci)])
    return table


def test_bold_needs_a_gap_beyond_the_runner_ups_interval() -> None:
    clear = _column((30.0, 1.0), (25.0, 1.0), (10.0, 1.0))
    _bold_best(clear, [0, 1, 2], [1])
    assert [r[1].bold for r in clear.rows] == [True, False, False]
    assert not any(r[1].marks for r in clear.rows)
    # 13.4 vs 12.5 with an interval of 1.2: the poster-style bold would mislead; both are tied
    close = _column((13.4, 1.5), (12.5, 1.2), (5.0, 0.5))
    _bold_best(close, [0, 1, 2], [1])
    assert [r[1].bold for r in close.rows] == [False, False, False]
    assert [TIED in r[1].marks for r in close.rows] == [True, True, False]
    # exact tie of the means
    even = _column((20.0, 0.1), (20.0, 0.1))
    _bold_best(even, [0, 1], [1])
    assert all(TIED in r[1].marks and not r[1].bold for r in even.rows)


def test_bold_without_a_noise_estimate_claims_only_visible_differences() -> None:
    single = _column((20.04, None), (20.01, None), (3.0, None))
    _bold_best(single, [0, 1, 2], [1])
    assert [TIED in r[1].marks for r in single.rows] == [True, True, False]
    apart = _column((21.0, math.nan), (20.0, math.nan))
    _bold_best(apart, [0, 1], [1])
    assert apart.rows[0][1].bold and not apart.rows[1][1].bold


def test_interval_statistics() -> None:
    stat = seed_stat(pd.Series([10.0, 12.0, 14.0]).to_numpy())
    assert stat.std == pytest.approx(2.0)  # ddof=1
    assert stat.ci == pytest.approx(4.303 * 2.0 / math.sqrt(3))
    assert t975(1) == pytest.approx(12.706) and t975(1000) == pytest.approx(1.96) and math.isnan(t975(0))
    # one seed of a deterministic method: spread and interval from its 5 evaluation repetitions
    det = seed_stat(pd.Series([13.0]).to_numpy(), rep_std=1.0, reps=5, deterministic=True)
    assert det.std == 1.0 and det.ci == pytest.approx(2.776 / math.sqrt(5))
    cell = _cell(det, n_max=3)
    assert cell.marks == DETERMINISTIC and cell.std == 1.0
    assert _cell(det, n_max=3, interval="ci95").std == pytest.approx(det.ci)
    # one seed of a seeded method: no spread shown (it is over seeds), the repetitions still bound the noise
    lone = seed_stat(pd.Series([13.0]).to_numpy(), rep_std=1.0, reps=5)
    assert math.isnan(lone.std) and lone.ci == pytest.approx(2.776 / math.sqrt(5))
    assert math.isnan(seed_stat(pd.Series([13.0]).to_numpy()).ci)  # no repetitions: no estimate


def test_report_interval_option_changes_the_caption(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "ci"
    args = ["report", "--runs", str(runs), "--out", str(out), "--format", "markdown", "--interval", "ci95"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    text = (out / PROTOCOL / "report_hard.md").read_text()
    assert "Mean ± 95% interval over 3 distillation seeds" in text


def test_csv_values_are_rounded(runs: Path, tmp_path: Path) -> None:
    write_report(runs, tmp_path / "csv", ["csv"])
    lines = (tmp_path / "csv" / "results.csv").read_text().splitlines()[1:]
    assert lines and all(len(v.split(".")[-1]) <= 6 for line in lines for v in line.split(",") if "." in v
                         and v.replace(".", "").replace("-", "").isdigit())  # fmt: skip


# ------------------------------------------------------------------------------------ protocols compared

FROZEN_SHIFT = -4.0  # every number of the cpu-frozen cells: the cpu cell's plus this


def shifted(data: dict[str, Any], shift: float) -> dict[str, Any]:
    """A copy of a result with every recall (seed mean and repetitions, both tracks) moved by `shift`."""
    data = json.loads(json.dumps(data))  # the native track shares the hard track's archs: copy them apart
    for evaluation in data["evaluation"].values():
        for arch in evaluation["archs"]:
            arch["mean"] = {k: v + shift for k, v in arch["mean"].items()}
            arch["runs"] = [{k: v + shift for k, v in run.items()} for run in arch["runs"]]
    return data


def make_lineage_runs(runs: Path) -> Path:
    """cpu and its variant cpu-frozen: random and mdm x budgets 100/200 x seeds 0/1/2 on shapes (mdm at
    200 ran under cpu only), a full-data cell under each; cpu-frozen's numbers are cpu's + FROZEN_SHIFT."""
    for protocol, shift in (("cpu", 0.0), ("cpu-frozen", FROZEN_SHIFT)):
        cells = [(m, b, s) for m in ("random", "mdm") for b in (100, 200) for s in SEEDS]
        cells = [c for c in cells if protocol == "cpu" or c[:2] != ("mdm", 200)]
        for method, budget, seed in [*cells, ("full-data", 0, 0)]:
            data = shifted(result(method, "shapes", budget, seed, protocol=protocol), shift)
            path = runs / protocol / "shapes" / method / f"b{budget}-s{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))
    return runs


@pytest.fixture(scope="module")
def lineage_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lineage_runs(tmp_path_factory.mktemp("lineage") / "runs")


def test_protocols_of_one_lineage_are_grouped() -> None:
    assert protocol_lineage("cpu-frozen") == ("cpu-frozen", "cpu")
    assert protocol_lineage("cpu") == ("cpu",) and protocol_lineage(PROTOCOL) == (PROTOCOL,)
    groups = lineage_groups(["cpu-frozen", PROTOCOL, "smoke", "cpu", "paper-frozen"])
    assert groups == {"cpu": ["cpu", "cpu-frozen"]}  # smoke and paper-frozen are alone in theirs


def test_protocol_table_puts_the_protocols_side_by_side(lineage_runs: Path) -> None:
    frame = load_frame(lineage_runs)
    protocols = ("cpu", "cpu-frozen")
    table = protocol_table(frame, protocols, "hard")
    assert table is not None and table.name == "protocols_hard"
    assert table.columns[2:] == [("Shapes", "cpu"), ("Shapes", "cpu-frozen"), ("Shapes", "Δ cpu-frozen")]
    cpu, frozen, delta = (table.column("Shapes", h) for h in ("cpu", "cpu-frozen", "Δ cpu-frozen"))
    mean, std = seed_stats("mdm", "shapes", 100, "mean")
    row = table.find_row("100", "MDM")
    assert row[cpu].plain() == f"{mean:.1f} ± {std:.1f}"
    assert row[frozen].plain() == f"{mean + FROZEN_SHIFT:.1f} ± {std:.1f}"
    assert row[delta].mean == pytest.approx(FROZEN_SHIFT) and row[delta].plain() == f"{FROZEN_SHIFT:+.1f}"
    row = table.find_row("200", "MDM")  # ran under cpu only
    assert row[cpu].plain() != MISSING and row[frozen].plain() == MISSING and row[delta].plain() == MISSING
    # Every cell links the result files behind it; a difference, those of both protocols.
    assert set(row[cpu].sources) == {f"cpu/shapes/mdm/b200-s{s}.json" for s in SEEDS}
    sources = table.find_row("100", "Random")[delta].sources
    assert {f.split("/")[0] for f in sources} == {"cpu", "cpu-frozen"} and len(sources) == 2 * len(SEEDS)
    full = table.find_row("all", "Full data")
    assert full[delta].mean == pytest.approx(FROZEN_SHIFT)
    assert FEWER_SEEDS not in full[cpu].marks + full[frozen].marks  # its one seed is all there is
    assert any(note.startswith("cpu-frozen: cpu with the frozen image encoder") for note in table.notes)
    assert "cpu: nfnet_l0 + bert; cpu-frozen: nfnet_l0 + bert" in table.caption
    # The native track too; nothing to compare with one protocol.
    assert protocol_table(frame, protocols, "native") is not None
    assert protocol_table(frame[frame["protocol"] == "cpu"], protocols, "hard") is None
    assert protocol_table(frame, ("cpu",), "hard") is None
    # The tables of a protocol get it last only when it has a lineage among the results.
    found = lineages(frame)
    lineage = found["cpu-frozen"]
    assert lineage.protocols == protocols and found["cpu"] is lineage and set(found) == set(protocols)
    part = frame[frame["protocol"] == "cpu-frozen"]
    assert build_tables(part, "hard", lineage=lineage)[-1].name == "protocols_hard"
    assert "protocols_hard" not in [t.name for t in build_tables(part, "hard")]
    # Its CSV: one row per protocol and cell, the difference on the variant's.
    rows = protocol_comparison(frame, protocols, "hard")
    assert rows is not None
    mdm = rows[(rows["method"] == "mdm") & (rows["budget"] == "100")].set_index("protocol")
    assert mdm.loc["cpu", "mean"] == pytest.approx(mean) and mdm.loc["cpu", "std"] == pytest.approx(std)
    assert math.isnan(mdm.loc["cpu", "difference"]) and mdm.loc["cpu-frozen", "seeds"] == len(SEEDS)
    assert mdm.loc["cpu-frozen", "difference"] == pytest.approx(FROZEN_SHIFT)
    assert set(rows["budget"]) == {"100", "200", "all"}


@pytest.mark.slow
def test_report_writes_the_comparison_beside_each_protocol(lineage_runs: Path, tmp_path: Path) -> None:
    write_report(lineage_runs, tmp_path, formats=["csv", "latex", "markdown", "html"])
    for protocol in ("cpu", "cpu-frozen"):
        folder = tmp_path / protocol
        assert r"\input{protocols_hard}" in (folder / "report_hard.tex").read_text()
        assert r"$\Delta$ cpu-frozen" in (folder / "protocols_hard.tex").read_text()
        assert "## Protocols compared (cpu, cpu-frozen)" in (folder / "report_hard.md").read_text()
        page = (folder / "report.html").read_text()
        assert 'id="t-protocols_hard"' in page and 'id="t-protocols_native"' in page
        # The page's provenance lists the other protocol's result files too (its cells link them).
        data = page.split('id="mdd-sources">')[1].split("</script>")[0]
        files = {s["file"] for s in json.loads(data.replace("<\\/", "</"))}
        assert {"cpu/shapes/mdm/b100-s0.json", "cpu-frozen/shapes/mdm/b100-s0.json"} <= files
        csv = pd.read_csv(folder / "protocols_hard.csv")
        frozen = csv[(csv["protocol"] == "cpu-frozen") & (csv["method"] == "random")]
        assert list(frozen["difference"]) == pytest.approx([FROZEN_SHIFT] * 2)


# ----------------------------------------------------------------------------------------- determinism


def _report_in_a_fresh_process(runs: Path, out: Path, hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    command = [sys.executable, "-m", "mdd_bench.cli", "report", "--runs", str(runs), "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_report_regenerates_byte_for_byte(tmp_path: Path) -> None:
    """Two runs of `mdd-bench report` on the same result files, in processes with different hash seeds
    (so any order taken from a set of strings shows), write the same files with the same bytes: every
    format, two protocols of one lineage and one alone."""
    runs = make_lineage_runs(make_runs(tmp_path / "runs"))
    outputs = [tmp_path / "a", tmp_path / "b"]  # siblings: the page's relative links to the runs agree
    for out, hash_seed in zip(outputs, ("1", "2"), strict=True):
        _report_in_a_fresh_process(runs, out, hash_seed)
    files = [sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) for out in outputs]
    assert files[0] == files[1]
    suffixes = {Path(f).suffix for f in files[0]}
    assert {".csv", ".tex", ".md", ".png", ".pdf", ".html"} <= suffixes
    assert "cpu-frozen/protocols_hard.csv" in files[0] and "syn/recall_vs_budget_hard.pdf" in files[0]
    differ = [f for f in files[0] if (outputs[0] / f).read_bytes() != (outputs[1] / f).read_bytes()]
    assert differ == []


def test_summary_repeats_the_full_tables_numbers(runs: Path, frame: pd.DataFrame, tmp_path: Path) -> None:
    """README's first screen: both tracks' mean recall per budget and the cost, the same numbers as the
    full tables (an independent mean over the fixture's known seed values), coresets out of the cost."""
    from mdd_bench.report.summary import summary_cost, summary_retrieval

    write_report(runs, tmp_path, formats=["markdown"], track="hard")
    text = (tmp_path / "syn" / "summary.md").read_text()
    assert text.startswith("### Retrieval at a glance") and "### Distillation cost at a glance" in text
    table = summary_retrieval(frame)
    assert [c[-1] for c in table.columns] == ["Dataset", "Method", *["Hard", "Native"] * 2]
    row = table.find_row("Flickr8k", "MDM")
    expected = statistics.fmean(
        statistics.fmean(metric_value("mdm", "flickr8k", 100, s, 0, m) for m in METRICS) for s in SEEDS
    )
    assert row[2].mean == pytest.approx(expected) and row[2].std == pytest.approx(1.0)
    assert row[3].mean == pytest.approx(expected)  # its native track is the hard one (same_as)
    retrieval = retrieval_table(frame, "hard")
    assert retrieval.find_row("100", "MDM")[retrieval.column("Flickr8k", "Mean")].mean == pytest.approx(
        expected
    )
    assert table.find_row("COCO", "MDM")[4].missing  # coco, 200 pairs: never ran
    assert row[2].bold  # mdm is 7 points above lors with std 1 over 3 seeds
    cost = summary_cost(frame)
    methods = [r[1].plain() for r in cost.rows]
    assert "Random" not in methods and "MDM" in methods
    mdm = cost.find_row("Flickr8k", "MDM")
    assert mdm[2].plain() == "1.70" and mdm[3].mean == pytest.approx(1.7 * 200 / 60)
