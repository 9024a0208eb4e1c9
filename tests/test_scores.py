"""Improvement over random (IOR), hard-label recovery (HLR) and the combined score on hand-made result
files: the expected numbers are computed here by hand from the recalls written into the files, never
through `mdd_bench.evaluation.scores`; a missing baseline leaves the row out (never 0)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mdd_bench.errors import MddError
from mdd_bench.evaluation import scores
from mdd_bench.evaluation.metrics import METRICS
from mdd_bench.report import write_report
from mdd_bench.report.frame import load_frame
from mdd_bench.report.layout import TIED, Cell, Table
from mdd_bench.report.tables import _bold_best, retrieval_table

PROTOCOL = "syn"
SOURCE = {"image_encoder": "img", "text_encoder": "txt", "source": True}
UNSEEN = {"image_encoder": "img2", "text_encoder": "txt", "source": False}


def arch(runs: list[float], pair: dict[str, Any] = SOURCE) -> dict[str, Any]:
    """One encoder pair's entry: `runs` are the per-repetition mean recalls (percent); every one of the
    six recalls equals it, so their mean does too."""
    names = (*METRICS, "mean")
    return {
        **pair,
        "seeds": list(range(len(runs))),
        "runs": [dict.fromkeys(names, r) for r in runs],
        "mean": dict.fromkeys(names, statistics.fmean(runs)),
    }


def evaluation(hard: list[float], native: list[float] | None = None, extras=(), baseline=None) -> dict:
    """Hard and native tracks; without `native` the native track is the hard one (no extras)."""
    hard_track = {"track": "hard", "extras_used": [], "archs": [arch(hard), arch([1.0, 1.0], UNSEEN)]}
    if native is None:
        return {"hard": hard_track, "native": dict(hard_track, track="native", same_as="hard")}
    native_track: dict[str, Any] = {"track": "native", "extras_used": list(extras), "archs": [arch(native)]}
    if baseline is not None:
        native_track["random_baseline"] = {
            "pairs_seed": 0,
            "similarity_from": "full-data reference model",
            "extras_used": list(extras),
            "recipe": {},
            "archs": [arch(baseline)],
        }
    return {"hard": hard_track, "native": native_track}


def write(runs: Path, method: str, dataset: str, budget: int, seed: int, ev: dict, **extra: Any) -> None:
    folder = runs / PROTOCOL / dataset / (method + ("-abl" if "ablation" in extra else ""))
    folder.mkdir(parents=True, exist_ok=True)
    record = {"schema": 1, "method": method, "dataset": dataset, "protocol": PROTOCOL, "budget": budget,
              "seed": seed, "evaluation": ev, **extra}  # fmt: skip
    (folder / f"b{budget}-s{seed}.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataset `d`, budget 10: random (2 seeds), full data, LoRS-like sets with extras (one with its
    recorded native random baseline, one without), a set equal to random, an ablation variant; budget 20:
    one random seed; dataset `lone`: a set with neither random cells nor full data."""
    root = tmp_path_factory.mktemp("scores")
    write(root, "random", "d", 10, 0, evaluation([9.0, 11.0]))  # mean 10
    write(root, "random", "d", 10, 1, evaluation([13.0, 15.0]))  # mean 14
    write(root, "full-data", "d", 6000, 0, evaluation([59.0, 61.0]))  # mean 60
    extras = ("learned_lr", "similarity", "loss:wbce")
    write(root, "lors", "d", 10, 0, evaluation([29.0, 31.0], [38.0, 42.0], extras, baseline=[21.0, 23.0]))
    write(root, "lors", "d", 10, 1, evaluation([33.0, 35.0], [44.0, 44.0], extras))  # no baseline
    write(root, "copy", "d", 10, 0, evaluation([11.0, 13.0]))  # mean 12 = random's mean over seeds
    write(root, "copy", "d", 10, 0, evaluation([20.0, 20.0]), ablation={"group": "g", "variant": "v"})
    write(root, "random", "d", 20, 0, evaluation([16.0, 16.0]))  # one seed
    write(root, "mdm", "d", 20, 0, evaluation([26.0, 30.0]))
    write(root, "mdm", "lone", 10, 0, evaluation([30.0, 30.0]))
    return root


@pytest.fixture(scope="module")
def frame(runs: Path) -> pd.DataFrame:
    return load_frame(runs)


def rows(frame: pd.DataFrame, method: str, track: str, budget: int = 10, seed: int = 0, dataset: str = "d",
         ablation: str = "") -> dict[str, tuple[float, float]]:  # fmt: skip
    """metric -> (value, rep_std) of the score rows of one cell and track."""
    part = frame[
        (frame["method"] == method) & (frame["track"] == track) & (frame["budget"] == budget)
        & (frame["seed"] == seed) & (frame["dataset"] == dataset) & (frame["ablation_group"] == ablation)
        & frame["metric"].isin(["ior", "hlr", "score"])
    ]  # fmt: skip
    assert part["source"].all() and set(part["image_encoder"]) <= {"img"}
    assert not part["metric"].duplicated().any()
    return {m: (v, s) for m, v, s in part[["metric", "value", "rep_std"]].itertuples(index=False)}


def std2(a: float, b: float) -> float:
    """Sample std of two numbers: |a - b| / sqrt(2)."""
    return abs(a - b) / math.sqrt(2)


# --------------------------------------------------------------------------------------------- formulas


def test_formulas_on_fractions() -> None:
    assert scores.ior(0.30, 0.12) == pytest.approx(0.18)
    assert scores.hlr(0.60, 0.30) == pytest.approx(0.30)
    assert scores.combined(0.18, 0.30) == pytest.approx((1 + 0.09 - 0.15) / 2)
    # the extremes of IOR, HLR in [-1, 1] land on the ends of [0, 1]; equal IOR and HLR on 1/2
    assert scores.combined(1.0, -1.0) == 1.0 and scores.combined(-1.0, 1.0) == 0.0
    assert scores.combined(0.2, 0.2) == 0.5
    assert scores.combined(1.0, 0.0, weight=1.0) == 1.0 and scores.combined(0.0, 1.0, weight=0.0) == 0.0
    assert math.isnan(scores.ior(0.3, math.nan)) and math.isnan(scores.combined(math.nan, 0.1))
    per_rep = scores.ior([0.3, 0.5], [0.1, 0.2])
    assert per_rep.tolist() == pytest.approx([0.2, 0.3])


def test_percentages_and_bad_weights_are_one_line_errors() -> None:
    with pytest.raises(MddError, match=r"recall fraction in \[0, 1\] \(got 35.2\); divide % by 100"):
        scores.ior(35.2, 0.1)
    with pytest.raises(MddError, match="full-data recall"):
        scores.hlr(60.0, 0.3)
    with pytest.raises(MddError, match=r"weight must lie in \[0, 1\]"):
        scores.combined(0.1, 0.1, weight=1.5)


# ------------------------------------------------------------------------------------ rows of the frame


def test_hard_track_against_the_random_cells_and_full_data(frame: pd.DataFrame) -> None:
    got = rows(frame, "lors", "hard")
    random_mean = (10.0 + 14.0) / 2 / 100  # mean over the random cells' seeds
    ior, hlr = 0.30 - random_mean, 0.60 - 0.30
    assert got["ior"][0] == pytest.approx(ior) and got["hlr"][0] == pytest.approx(hlr)
    assert got["score"][0] == pytest.approx((1 + ior / 2 - hlr / 2) / 2)  # 0.47
    # the baselines are constants, so the spread over repetitions is the set's own (29, 31)
    assert got["ior"][1] == pytest.approx(std2(0.29, 0.31)) and got["hlr"][1] == pytest.approx(
        std2(0.29, 0.31)
    )
    assert got["score"][1] == pytest.approx(std2(0.29, 0.31) / 2)


def test_native_track_against_its_own_recorded_baseline(frame: pd.DataFrame) -> None:
    got = rows(frame, "lors", "native")
    ior, hlr = 0.40 - 0.22, 0.60 - 0.30  # native minus its random pairs; HLR from the hard track
    assert got["ior"][0] == pytest.approx(ior) and got["hlr"][0] == pytest.approx(hlr)
    assert got["score"][0] == pytest.approx((1 + ior / 2 - hlr / 2) / 2)
    # repetition r of the set against repetition r of its baseline (the same seeds)
    assert got["ior"][1] == pytest.approx(std2(0.38 - 0.21, 0.42 - 0.23))
    score_runs = [
        (1 + (n - b) / 2 - (0.60 - h) / 2) / 2 for n, b, h in ((0.38, 0.21, 0.29), (0.42, 0.23, 0.31))
    ]
    assert got["score"][1] == pytest.approx(std2(*score_runs))
    extras = frame[(frame["method"] == "lors") & (frame["track"] == "native") & (frame["metric"] == "ior")]
    assert set(extras["extras"]) == {"learned_lr,similarity,loss:wbce"}


def test_a_missing_baseline_leaves_the_row_out_never_zero(frame: pd.DataFrame) -> None:
    # seed 1 used extras but recorded no random baseline: no native IOR and no score, HLR still there
    got = rows(frame, "lors", "native", seed=1)
    assert set(got) == {"hlr"} and got["hlr"][0] == pytest.approx(0.60 - 0.34)
    assert set(rows(frame, "lors", "hard", seed=1)) == {"ior", "hlr", "score"}
    # no random cells and no full data for this dataset: nothing at all
    assert rows(frame, "mdm", "hard", dataset="lone") == {}
    assert rows(frame, "mdm", "native", dataset="lone") == {}
    # the upper bound itself gets none
    assert frame[(frame["method"] == "full-data") & frame["metric"].isin(["ior", "hlr", "score"])].empty


def test_a_set_equal_to_random_has_zero_improvement(frame: pd.DataFrame) -> None:
    for track in ("hard", "native"):  # without extras the native baseline is the random cells too
        got = rows(frame, "copy", track)
        assert got["ior"][0] == pytest.approx(0.0, abs=1e-12)
        assert got["score"][0] == pytest.approx((1 - (0.60 - 0.12) / 2) / 2)
    # random's own IOR is its spread around its mean: the two seeds' values cancel
    ior = [rows(frame, "random", "hard", seed=s)["ior"][0] for s in (0, 1)]
    assert ior == pytest.approx([-0.02, 0.02]) and sum(ior) == pytest.approx(0.0, abs=1e-12)


def test_one_random_seed_and_ablation_cells(frame: pd.DataFrame) -> None:
    got = rows(frame, "mdm", "hard", budget=20)
    assert got["ior"][0] == pytest.approx(0.28 - 0.16) and got["ior"][1] == pytest.approx(std2(0.26, 0.30))
    # an ablation variant is scored against the ordinary random cells, which it never joins
    assert rows(frame, "copy", "hard", ablation="g")["ior"][0] == pytest.approx(0.20 - 0.12)
    assert rows(frame, "random", "hard", budget=20)["ior"][0] == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------- the report


def test_retrieval_table_columns_and_lower_is_better_hlr(frame: pd.DataFrame) -> None:
    table = retrieval_table(frame, "hard")
    assert table is not None
    assert [c[-1] for c in table.columns[-4:]] == ["Mean", "IOR", "HLR", "Score"]
    hlr = table.column("d", "HLR")
    assert table.lower_better == {hlr, table.column("lone", "HLR")}  # one HLR column per dataset
    lors = table.find_row("10", "LoRS")
    mean_ior = statistics.fmean([0.30 - 0.12, 0.34 - 0.12])
    assert lors[table.column("d", "IOR")].mean == pytest.approx(mean_ior)
    assert lors[table.column("d", "IOR")].plain().startswith(f"{mean_ior:.3f} ± ")
    # HLR: the smallest is the best (LoRS, 0.28, against 0.48 twice), bold or tied, never the others
    assert lors[hlr].bold or TIED in lors[hlr].marks
    assert not table.find_row("10", "Random")[hlr].bold and not table.find_row("10", "copy")[hlr].bold
    assert table.find_row("10", "copy")[table.column("d", "IOR")].plain().startswith("0.000")
    assert table.rows[-1][hlr].missing  # the full-data row
    assert (
        "IOR: improvement over random" in table.caption and "Score = (1 + IOR/2 - HLR/2)/2" in table.caption
    )
    native = retrieval_table(frame, "native")
    assert native.find_row("10", "LoRS")[native.column("d", "IOR")].mean == pytest.approx(0.18)  # seed 0 only


def test_bold_goes_to_the_smallest_in_a_lower_is_better_column() -> None:
    table = Table("t", "t", "", [("Method",), ("IOR",), ("HLR",)], labels=1, lower_better={2})
    for name, ior, hlr in (("a", 0.30, 0.20), ("b", 0.10, 0.50), ("c", 0.05, 0.52)):
        table.add_row([Cell(text=name), Cell(mean=ior, ci=0.01), Cell(mean=hlr, ci=0.01)])
    _bold_best(table, [0, 1, 2], [1, 2])
    assert [r[1].bold for r in table.rows] == [True, False, False]
    assert [r[2].bold for r in table.rows] == [True, False, False]  # 0.20 is the best HLR
    close = Table("t", "t", "", [("Method",), ("HLR",)], labels=1, lower_better={1})
    for name, hlr in (("a", 0.20), ("b", 0.205), ("c", 0.6)):
        close.add_row([Cell(text=name), Cell(mean=hlr, ci=0.01)])
    _bold_best(close, [0, 1, 2], [1])
    assert [TIED in r[1].marks for r in close.rows] == [True, True, False]
    assert not any(r[1].bold for r in close.rows)


def test_scores_are_rows_of_the_csv(runs: Path, tmp_path: Path) -> None:
    write_report(runs, tmp_path, ["csv"])
    csv = pd.read_csv(tmp_path / "results.csv")
    ior = csv[(csv["metric"] == "ior") & (csv["method"] == "lors") & (csv["track"] == "hard")]
    assert sorted(ior["value"]) == pytest.approx([0.18, 0.22])


def test_without_any_baseline_the_table_has_no_score_columns(tmp_path: Path) -> None:
    write(tmp_path, "mdm", "d", 10, 0, evaluation([30.0, 32.0]))
    frame = load_frame(tmp_path)
    assert not frame["metric"].isin(["ior", "hlr", "score"]).any()
    table = retrieval_table(frame, "hard")
    assert table is not None and table.columns[-1] == ("d", "Mean") and not table.lower_better
