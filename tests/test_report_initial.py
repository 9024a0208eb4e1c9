"""The report's gain over the initial set (issue 32 item 4) on result files written here (no training):
each iterative method's hard-track mean recall minus its own iteration-0 set's, paired by distillation
seed, with the 95% t-interval of the mean gain (checked against scipy), in the frame, the table and
every written format."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from mdd_bench.evaluation.metrics import METRICS
from mdd_bench.report import write_report
from mdd_bench.report.frame import INITIAL_METRICS, load_frame
from mdd_bench.report.layout import MISSING
from mdd_bench.report.tables import build_tables, initial_gain_table

PROTOCOL = "syn"
SOURCE = ("nfnet_l0", "bert")
UNSEEN = ("nf_resnet50", "bert")
# (method, dataset, budget) -> per distillation seed: (final mean recall, initial set's mean recall)
CELLS: dict[tuple[str, str, int], list[tuple[float, float]]] = {
    ("lors", "flickr8k", 100): [(20.0, 18.0), (23.0, 19.0), (21.0, 20.5)],
    ("mdm", "flickr8k", 100): [(30.0, 25.0), (31.5, 24.0)],
    ("lors", "coco", 100): [(12.0, 11.0)],  # one seed: no interval
    ("tesla", "flickr8k", 200): [(15.0, 16.0), (14.0, 16.5), (15.5, 15.0), (16.0, 15.5)],
}
REP_OFFSETS = (-0.5, 0.5)  # two evaluation repetitions around each mean
INITIAL_OFFSETS = (-0.25, 0.25)


def arch(mean: float, image: str, text: str, source: bool, seed: int, offsets=REP_OFFSETS) -> dict[str, Any]:
    runs = []
    for offset in offsets:
        six = {m: mean + offset for m in METRICS}
        runs.append(dict(six, mean=statistics.fmean(six.values()), rsum=sum(six.values())))
    means = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
    seeds = [seed * 1000 + r for r in range(len(runs))]
    return {"image_encoder": image, "text_encoder": text, "seeds": seeds, "runs": runs, "source": source,
            "recipe": {}, "mean": means, "std": {k: 0.5 for k in means}}  # fmt: skip


def evaluation(track: str, mean: float, seed: int, offsets=REP_OFFSETS) -> dict[str, Any]:
    archs = [arch(mean, *SOURCE, True, seed, offsets), arch(mean - 3, *UNSEEN, False, seed, offsets)]
    return {"track": track, "split": "test", "extras_used": [], "recipe": {}, "archs": archs}


def result(method: str, dataset: str, budget: int, seed: int, final: float, initial: float | None) -> dict:
    hard = evaluation("hard", final, seed)
    if initial is not None:
        hard["initial"] = evaluation("hard", initial, seed, INITIAL_OFFSETS)
        hard["initial"]["archs"] = hard["initial"]["archs"][:1]  # the source encoders only
    native = dict(hard, track="native", same_as="hard")
    native.pop("initial", None)
    return {"schema": 1, "method": method, "family": "distillation", "dataset": dataset,
            "protocol": PROTOCOL, "protocol_hash": "abc", "budget": budget, "seed": seed,
            "distill": {"seconds": 1.0, "iterations": 10, "time_per_iter_s": 0.1, "iters_to_best": 5,
                        "peak_mem_mb": 100.0, "cuda_peak_mem_mb": None, "extra": {}},
            "storage_bytes": budget, "evaluation": {"hard": hard, "native": native}}  # fmt: skip


def write(runs: Path, data: dict[str, Any]) -> None:
    path = runs / PROTOCOL / data["dataset"] / data["method"] / f"b{data['budget']}-s{data['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for (method, dataset, budget), seeds in CELLS.items():
        for seed, (final, initial) in enumerate(seeds):
            write(runs, result(method, dataset, budget, seed, final, initial))
    for seed in range(3):  # a coreset has no initial set, nor a method run before the key existed
        write(runs, result("random", "flickr8k", 100, seed, 10.0 + seed, None))
        write(runs, result("mtt-vl", "flickr8k", 100, seed, 19.0 + seed, None))
    return runs


def scipy_interval(differences: list[float]) -> float:
    """Half-width of the 95% t-interval of the mean, computed independently."""
    low, high = stats.t.interval(0.95, len(differences) - 1, loc=0.0, scale=stats.sem(differences))
    return (high - low) / 2


def test_frame_rows_are_the_paired_seed_differences(runs: Path) -> None:
    frame = load_frame(runs)
    rows = frame[frame["metric"].isin(INITIAL_METRICS)]
    assert set(rows["track"]) == {"hard"} and rows["source"].all()
    assert set(zip(rows["image_encoder"], rows["text_encoder"], strict=True)) == {SOURCE}
    assert not (rows["method"].isin(["random", "mtt-vl"])).any()  # no initial set: no row
    lors = rows[(rows["method"] == "lors") & (rows["dataset"] == "flickr8k")].set_index(["metric", "seed"])
    for seed, (final, initial) in enumerate(CELLS[("lors", "flickr8k", 100)]):
        assert lors.loc[("initial_gain", seed), "value"] == pytest.approx(final - initial)
        assert lors.loc[("initial_mean", seed), "value"] == pytest.approx(initial)
        # repetitions pair by seed: (final + o) - (initial + o') over the two repetitions
        differences = np.subtract(REP_OFFSETS, INITIAL_OFFSETS)
        assert lors.loc[("initial_gain", seed), "rep_std"] == pytest.approx(np.std(differences, ddof=1))
    # the track rows are untouched: the initial set is not an encoder pair of the hard track
    hard = frame[(frame["track"] == "hard") & (frame["metric"] == "mean")]
    assert len(hard) == 2 * (sum(len(s) for s in CELLS.values()) + 6)


def test_known_numbers_give_the_known_gain_and_interval(runs: Path) -> None:
    table = initial_gain_table(load_frame(runs))
    assert table is not None and table.name == "initial_gain"
    gain, seeds, start = (table.column("Flickr8k", h) for h in ("Gain", "Seeds", "Iteration 0"))
    for method, name in (("lors", "LoRS"), ("mdm", "MDM")):
        cells = CELLS[(method, "flickr8k", 100)]
        differences = [f - i for f, i in cells]
        row = table.find_row("100", name)
        assert row[gain].mean == pytest.approx(np.mean(differences))
        assert row[gain].std == pytest.approx(scipy_interval(differences), rel=1e-3)  # the t-table's digits
        assert row[gain].ci == row[gain].std and row[gain].signed
        assert row[seeds].mean == len(cells) and row[seeds].plain() == str(len(cells))
        assert row[start].mean == pytest.approx(np.mean([i for _, i in cells]))
        assert row[start].std is None  # the iteration-0 mean alone
    # lors, flickr8k: gains 2, 4, 0.5 -> mean 2.1667 +- 4.303 * 1.7559 / sqrt(3)
    assert table.find_row("100", "LoRS")[gain].plain() == "+2.2 ± 4.4"
    tesla = table.find_row("200", "TESLA-WBCE")[gain]  # a loss: negative gain
    assert tesla.mean == pytest.approx(np.mean([-1.0, -2.5, 0.5, 0.5])) and tesla.plain().startswith("-0.6 ±")
    assert tesla.std == pytest.approx(scipy_interval([-1.0, -2.5, 0.5, 0.5]), rel=1e-3)


def test_one_seed_shows_no_interval(runs: Path) -> None:
    table = initial_gain_table(load_frame(runs))
    row = table.find_row("100", "LoRS")
    cell = row[table.column("COCO", "Gain")]
    assert cell.mean == pytest.approx(1.0) and cell.plain() == "+1.0" and "±" not in cell.plain()
    assert row[table.column("COCO", "Seeds")].plain() == "1"
    # MDM ran no COCO cell: missing there, its Flickr8k numbers still shown
    mdm = table.find_row("100", "MDM")
    assert [mdm[table.column("COCO", h)].plain() for h in ("Gain", "Seeds", "Iteration 0")] == [MISSING] * 3


def test_results_without_an_initial_set_get_no_row(runs: Path, tmp_path: Path) -> None:
    table = initial_gain_table(load_frame(runs))
    for name in ("Random", "MTT-VL"):
        with pytest.raises(KeyError):
            table.find_row("100", name)
    assert [r[1].text for r in table.rows] == ["LoRS", "MDM", "TESLA-WBCE"]
    # no result with an initial set: no table at all
    bare = tmp_path / "bare"
    for seed in range(2):
        write(bare, result("lors", "flickr8k", 100, seed, 20.0, None))
    frame = load_frame(bare)
    assert initial_gain_table(frame) is None
    assert "initial_gain" not in [t.name for t in build_tables(frame, "hard")]
    assert not frame["metric"].isin(INITIAL_METRICS).any()


def test_unpaired_repetitions_give_no_repetition_spread(tmp_path: Path) -> None:
    data = result("lors", "flickr8k", 100, 0, 20.0, 18.0)
    data["evaluation"]["hard"]["initial"]["archs"][0]["seeds"] = [7, 8]  # not the cell's seeds
    write(tmp_path, data)
    rows = load_frame(tmp_path).set_index("metric")
    assert rows.loc["initial_gain", "value"] == pytest.approx(2.0)
    assert math.isnan(rows.loc["initial_gain", "rep_std"])


@pytest.mark.slow  # draws the page's figures
def test_the_table_is_in_every_written_format(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = write_report(runs, out, ["latex", "markdown", "csv", "html"], gallery=False)
    write_report(runs, out, ["latex", "markdown"], track="native", gallery=False)
    folder = out / PROTOCOL
    assert folder / "initial_gain.tex" in paths
    assert r"+2.2 $\pm$ 4.4" in (folder / "initial_gain.tex").read_text()
    for track in ("hard", "native"):  # track-independent, like the cost tables
        text = (folder / f"report_{track}.md").read_text()
        assert "## Gain over the initial set" in text and "+2.2 ± 4.4" in text
        assert r"\input{initial_gain}" in (folder / f"report_{track}.tex").read_text()
    page = (folder / "report.html").read_text()
    assert 'id="s-initial_gain"' in page and "Gain over the initial set" in page
    assert page.count('id="s-initial_gain"') == 1  # one shared section, not one per track
    csv = (out / "results.csv").read_text()
    assert "initial_gain" in csv and "initial_mean" in csv
