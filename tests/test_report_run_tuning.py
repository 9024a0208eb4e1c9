"""The report's run-length and tuning tables (issue 32) on result files written here (no training): how
each iterative method's distillation loop stopped (iterations, chosen iteration, plateau and still-rising
seeds, the ↗ mark also on the retrieval table's label), and the `mdd-bench tune` provenance behind each
cell's settings (or untuned, or nothing to tune), in the frame, the tables and every written format.
Results that record neither (coresets' stops, files from before the keys) add nothing."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mdd_bench.evaluation.metrics import METRICS
from mdd_bench.report import write_report
from mdd_bench.report.frame import RUN_METRICS, TIMING_TRACK, TUNING_METRICS, load_frame
from mdd_bench.report.html_table import table_section
from mdd_bench.report.latex import cell as latex_cell
from mdd_bench.report.layout import MISSING, STILL_RISING
from mdd_bench.report.markdown import table_md
from mdd_bench.report.tables import (
    NOT_RECORDED,
    NOTHING_TO_TUNE,
    UNTUNED,
    build_tables,
    retrieval_table,
    run_length_table,
    tuning_table,
)

PROTOCOL = "syn"
SOURCE = ("nfnet_l0", "bert")
FAMILY = {"random": "coreset", "herding": "coreset", "lors": "trajectory-matching",
          "tesla": "trajectory-matching", "mdm": "distribution-matching"}  # fmt: skip
# (method, budget) -> per distillation seed: (iterations run, chosen iteration, stop)
STOPS: dict[tuple[str, int], list[tuple[int, int, str]]] = {
    ("tesla", 100): [(300, 200, "plateau"), (500, 400, "plateau"), (1000, 350, "max_iterations")],
    ("lors", 100): [(400, 300, "plateau"), (600, 500, "plateau")],
    ("mdm", 100): [(1000, 400, "max_iterations"), (1000, 701, "max_iterations")],
    ("tesla", 200): [(700, 600, "plateau")],
}
MAX_ITERATIONS = 1000


def provenance(method: str, budget: int, **change: Any) -> dict[str, Any]:
    """A `TunedEntry.provenance()` as a result records it."""
    study = f"{method}-flickr8k-b{budget}"
    entry = {"dataset": "flickr8k", "method": method, "budget": budget, "study": study, "trial": 7,
             "best_val": 27.34, "trials": 16, "complete": 11, "pruned": 4, "failed": 1,
             "cpu_hours": 3.456, "wall_hours": 1.2, "protocol": PROTOCOL, "protocol_hash": "abc",
             "source": "tuned.toml"}  # fmt: skip
    return {**entry, **change}


def evaluation(track: str, mean: float, seed: int) -> dict[str, Any]:
    runs = []
    for offset in (-0.5, 0.5):
        six = {m: mean + offset for m in METRICS}
        runs.append(dict(six, mean=statistics.fmean(six.values()), rsum=sum(six.values())))
    means = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
    arch = {"image_encoder": SOURCE[0], "text_encoder": SOURCE[1], "seeds": [seed * 10, seed * 10 + 1],
            "runs": runs, "source": True, "recipe": {}, "mean": means,
            "std": {k: 0.5 for k in means}}  # fmt: skip
    return {"track": track, "split": "test", "extras_used": [], "recipe": {}, "archs": [arch]}


def result(
    method: str, budget: int, seed: int, stop: tuple[int, int, str] | None = None, **keys: Any
) -> dict:
    """One cell's result file; `stop` gives the loop's (iterations, chosen iteration, stop), `tuning=...`
    the tuning key (left out: a file from before results recorded it)."""
    iterations, best, why = stop or (0, None, None)
    extra: dict[str, Any] = {}
    if why is not None:
        extra = {"stop": why, "still_rising": why == "max_iterations", "max_iterations": MAX_ITERATIONS,
                 "selection": {"hard": {"iteration": best, "val": 20.0, "candidates": []}},
                 "val_curves": {"hard": [[0, 10.0], [best, 20.0]]}}  # fmt: skip
    hard = evaluation("hard", 20.0 + seed, seed)
    return {"schema": 1, "method": method, "family": FAMILY[method], "dataset": "flickr8k",
            "protocol": PROTOCOL, "protocol_hash": "abc", "budget": budget, "seed": seed,
            "distill": {"seconds": 1.0, "iterations": iterations, "time_per_iter_s": 0.1 if why else None,
                        "iters_to_best": best, "peak_mem_mb": 100.0, "cuda_peak_mem_mb": None,
                        "extra": extra},
            "storage_bytes": budget, "evaluation": {"hard": hard, "native": dict(hard, track="native")},
            **keys}  # fmt: skip


def write(runs: Path, data: dict[str, Any]) -> None:
    name = f"b{data['budget']}-s{data['seed']}.json"
    path = runs / PROTOCOL / data["dataset"] / data["method"] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """TESLA tuned (both budgets), LoRS and MDM untuned, two coresets; each records its stop."""
    runs = tmp_path / "runs"
    for (method, budget), stops in STOPS.items():
        for seed, stop in enumerate(stops):
            tuning = provenance(method, budget) if method == "tesla" else None
            write(runs, result(method, budget, seed, stop, tuning=tuning))
    for method in ("random", "herding"):
        for budget in (100, 200):
            for seed in range(2):
                write(runs, result(method, budget, seed, tuning=None))
    return runs


def plain(row: list, table, header: str) -> str:
    return row[table.column(header)].plain()


# ------------------------------------------------------------------------------------------------- frame


def test_frame_rows_say_what_each_result_records(runs: Path, tmp_path: Path) -> None:
    frame = load_frame(runs)
    rows = frame[frame["metric"].isin((*TUNING_METRICS, *RUN_METRICS))]
    assert set(rows["track"]) == {TIMING_TRACK} and rows["source"].all()
    tesla = rows[(rows["method"] == "tesla") & (rows["budget"] == 100) & (rows["seed"] == 0)]
    values = dict(zip(tesla["metric"], tesla["value"], strict=True))
    assert values == {"max_iterations": 1000.0, "plateau": 1.0, "still_rising": 0.0, "tuned": 1.0,
                      "tuning_trials": 16.0, "tuning_complete": 11.0, "tuning_pruned": 4.0,
                      "tuning_failed": 1.0, "tuning_cpu_hours": 3.456, "tuning_wall_hours": 1.2,
                      "tuning_best_val": 27.34, "tuning_trial": 7.0}  # fmt: skip
    mdm = rows[(rows["method"] == "mdm") & (rows["seed"] == 1)]
    assert dict(zip(mdm["metric"], mdm["value"], strict=True)) == {
        "max_iterations": 1000.0, "plateau": 0.0, "still_rising": 1.0, "tuned": 0.0}  # fmt: skip
    coreset = rows[rows["method"] == "random"]
    assert set(coreset["metric"]) == {"tuned", "tuning_trials"} and (coreset["value"] == 0).all()
    # a file from before results recorded either key: no new row at all
    old = tmp_path / "old"
    write(old, result("lors", 100, 0))
    write(old, result("random", 100, 0))
    assert not load_frame(old)["metric"].isin((*TUNING_METRICS, *RUN_METRICS)).any()


# ------------------------------------------------------------------------------------------------ tuning


def test_known_provenance_gives_the_rows_numbers(runs: Path) -> None:
    table = tuning_table(load_frame(runs))
    assert table is not None and table.name == "tuning"
    row = table.find_row("Flickr8k", "100", "TESLA-WBCE")
    shown = {h: plain(row, table, h) for h in ("Trials", "Complete", "Pruned", "Failed", "CPU hours",
                                                 "Best val", "Trial")}  # fmt: skip
    assert shown == {"Trials": "16", "Complete": "11", "Pruned": "4", "Failed": "1", "CPU hours": "3.46",
                     "Best val": "27.3", "Trial": "7"}  # fmt: skip
    assert row[table.column("Trials")].sources == ("syn/flickr8k/tesla/b100-s0.json",
                                                   "syn/flickr8k/tesla/b100-s1.json",
                                                   "syn/flickr8k/tesla/b100-s2.json")  # fmt: skip
    assert "the same for every method: 16 here" in table.caption
    assert "[tuning] objective track" in table.caption and "Seeds tuned differently" not in table.caption


def test_untuned_and_coreset_cells_say_so(runs: Path) -> None:
    table = tuning_table(load_frame(runs))
    for method in ("LoRS", "MDM"):
        row = table.find_row("Flickr8k", "100", method)
        assert plain(row, table, "Trials") == UNTUNED == "untuned"
        assert [c.plain() for c in row[table.column("Complete") :]] == [MISSING] * 6
    for budget in ("100", "200"):
        for method in ("Random", "Herding"):
            row = table.find_row("Flickr8k", budget, method)
            assert plain(row, table, "Trials") == NOTHING_TO_TUNE == "0 (nothing to tune)"
    # every cell of the grid has its row, coresets first, in each budget block
    assert [r[2].text for r in table.rows] == ["Random", "Herding", "TESLA-WBCE", "LoRS", "MDM",
                                               "Random", "Herding", "TESLA-WBCE"]  # fmt: skip


def test_no_tuning_anywhere_gives_no_table(tmp_path: Path) -> None:
    for seed in range(2):
        write(tmp_path, result("lors", 100, seed, (400, 300, "plateau"), tuning=None))
        write(tmp_path, result("random", 100, seed, tuning=None))
        write(tmp_path, result("mdm", 100, seed))  # an old file: no key
    frame = load_frame(tmp_path)
    assert tuning_table(frame) is None
    assert "tuning" not in [t.name for t in build_tables(frame, "hard")]


def test_seeds_tuned_differently_are_named_in_the_caption(tmp_path: Path) -> None:
    write(tmp_path, result("lors", 100, 0, (400, 300, "plateau"), tuning=provenance("lors", 100)))
    other = provenance("lors", 100, study="lors-other", trial=3, best_val=25.0)
    write(tmp_path, result("lors", 100, 1, (400, 300, "plateau"), tuning=other))
    write(tmp_path, result("tesla", 100, 0, (400, 300, "plateau"), tuning=provenance("tesla", 100)))
    write(tmp_path, result("tesla", 100, 1, (400, 300, "plateau")))  # an old file beside a tuned one
    write(tmp_path, result("mdm", 100, 0, (400, 300, "plateau")))
    table = tuning_table(load_frame(tmp_path))
    assert "the lowest seed's shown: Flickr8k 100 TESLA-WBCE; Flickr8k 100 LoRS." in table.caption
    lors = table.find_row("Flickr8k", "100", "LoRS")
    assert plain(lors, table, "Trial") == "7" and plain(lors, table, "Best val") == "27.3"  # seed 0's
    assert plain(table.find_row("Flickr8k", "100", "MDM"), table, "Trials") == NOT_RECORDED


# -------------------------------------------------------------------------------------------- run length


def test_run_length_medians_and_counts(runs: Path) -> None:
    table = run_length_table(load_frame(runs))
    assert table is not None and table.name == "run_length"
    cols = ("Seeds", "Iterations", "Best iteration", "Max iterations", "Plateau", "Still rising")
    shown = {(r[1].text, r[2].plain()): [r[table.column(c)].plain() for c in cols] for r in table.rows}
    assert shown == {
        ("100", f"TESLA-WBCE{STILL_RISING}"): ["3", "500", "350", "1,000", "2/3", "1/3"],
        ("", "LoRS"): ["2", "500", "400", "1,000", "2/2", "0/2"],
        ("", f"MDM{STILL_RISING}"): ["2", "1,000", "550.5", "1,000", "0/2", "2/2"],
        ("200", "TESLA-WBCE"): ["1", "700", "600", "1,000", "1/1", "0/1"],
    }
    for method, budget in (("LoRS", 100), ("TESLA-WBCE", 100), ("MDM", 100)):
        stops = STOPS[({"LoRS": "lors", "TESLA-WBCE": "tesla", "MDM": "mdm"}[method], budget)]
        row = table.find_row("Flickr8k", str(budget), method)
        assert row[table.column("Iterations")].mean == np.median([i for i, _, _ in stops])
        assert row[table.column("Best iteration")].mean == np.median([b for _, b, _ in stops])
    tesla = table.find_row("Flickr8k", "100", "TESLA-WBCE")[table.column("Still rising")]
    assert tesla.mean == pytest.approx(1 / 3)  # what the page sorts by
    assert any(n.startswith(f"{STILL_RISING} The val curve was still rising") for n in table.notes)


def test_still_rising_cells_are_marked_in_the_retrieval_table(runs: Path) -> None:
    for track in ("hard", "native"):
        table = retrieval_table(load_frame(runs), track)
        labels = {(r[0].text, r[1].plain()) for r in table.rows}
        assert ("", f"TESLA-WBCE{STILL_RISING}") in labels and ("", f"MDM{STILL_RISING}") in labels
        assert ("100", "Random") in labels and ("", "LoRS") in labels
        assert ("200", "Random") in labels and ("", "TESLA-WBCE") in labels  # 200: it plateaued
        assert table.find_row("100", "MDM") is not None  # the mark does not hide the row
        assert any("still rising at the maximum" in n for n in table.notes)


def test_results_without_a_stop_get_no_row(runs: Path, tmp_path: Path) -> None:
    table = run_length_table(load_frame(runs))
    for method in ("Random", "Herding"):
        with pytest.raises(KeyError):
            table.find_row("Flickr8k", "100", method)
    old = tmp_path / "old"
    for seed in range(2):
        write(old, result("lors", 100, seed))  # a result file from before the stop rule recorded it
        write(old, result("random", 100, seed, tuning=None))
    frame = load_frame(old)
    assert run_length_table(frame) is None
    names = [t.name for t in build_tables(frame, "hard")]
    assert "run_length" not in names and "tuning" not in names
    retrieval = retrieval_table(frame, "hard")
    assert STILL_RISING not in "".join(c.plain() for r in retrieval.rows for c in r[:2])
    assert not any("still rising" in n for n in retrieval.notes)


# ------------------------------------------------------------------------------------------------ formats


def test_text_cells_render_in_every_format(runs: Path) -> None:
    frame = load_frame(runs)
    tuning, length = tuning_table(frame), run_length_table(frame)
    md = table_md(tuning)
    assert " untuned |" in md and " 0 (nothing to tune) |" in md and " 3.46 |" in md
    assert " 2/3 |" in table_md(length) and f"MDM{STILL_RISING}" in table_md(length)
    row = length.find_row("Flickr8k", "100", "MDM")
    assert latex_cell(row[2]) == r"MDM$^{\nearrow}$" and latex_cell(row[length.column("Plateau")]) == "0/2"
    html = table_section(tuning, {}) + table_section(length, {})
    assert '<td class="num">untuned</td>' in html  # no number: sorts last, like a missing one
    assert '<td class="num" data-v="0.0">0 (nothing to tune)</td>' in html
    assert f'data-v="{2 / 3!r}">2/3</td>' in html


def test_tables_are_in_the_written_reports(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = write_report(runs, out, ["latex", "markdown", "csv"], gallery=False)
    write_report(runs, out, ["latex", "markdown"], track="native", gallery=False)
    folder = out / PROTOCOL
    assert {folder / "tuning.tex", folder / "run_length.tex"} <= set(paths)
    assert r"0 (nothing to tune)" in (folder / "tuning.tex").read_text()
    assert r"TESLA-WBCE$^{\nearrow}$" in (folder / "run_length.tex").read_text()
    for track in ("hard", "native"):
        text = (folder / f"report_{track}.md").read_text()
        assert "## Tuning" in text and "## Run length" in text and " untuned |" in text
        latex = (folder / f"report_{track}.tex").read_text()
        assert r"\input{tuning}" in latex and r"\input{run_length}" in latex
    csv = (out / "results.csv").read_text()
    assert ",tuning_trials,16.0," in csv and ",still_rising,1.0," in csv


@pytest.mark.slow  # draws the page's figures
def test_the_tables_are_on_the_page(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_report(runs, out, ["html"], gallery=False)
    page = (out / PROTOCOL / "report.html").read_text()
    for key, title in (("tuning", "Tuning"), ("run_length", "Run length")):
        assert page.count(f'id="s-{key}"') == 1  # one shared section, not one per track
        assert f"<h2>{title} <small" in page
    assert "0 (nothing to tune)" in page and f"MDM{STILL_RISING}" in page


def test_the_summary_and_the_readme_glance_carry_the_tuning(runs: Path, tmp_path: Path) -> None:
    """The tuning sits beside the retrieval table on the first screen (summary.md, README's block)."""
    from bench_scripts import load_bench

    readme = load_bench("readme_summary")
    write_report(runs, tmp_path / "out", ["markdown"], gallery=False)
    summary = (tmp_path / "out" / PROTOCOL / "summary.md").read_text()
    assert summary.index("### Retrieval at a glance") < summary.index("### Tuning")
    glance = readme.glance(tmp_path / "out" / PROTOCOL)
    assert (
        glance.startswith("### Retrieval at a glance") and "### Tuning" in glance and " untuned |" in glance
    )
    assert "### Distillation cost" not in glance
    untuned = tmp_path / "untuned"
    for seed in range(2):
        write(untuned, result("lors", 100, seed, (400, 300, "plateau"), tuning=None))
    write_report(untuned, tmp_path / "plain", ["markdown"], gallery=False)
    assert "### Tuning" not in readme.glance(tmp_path / "plain" / PROTOCOL)
