"""The factor table (issue 34) on result files written here (no training): each switch's change is the
flipped run minus the as-configured run of the same seed, with the 95% t-interval of the mean change
(checked against scipy); unpaired seeds drop out; the mark names the largest change whose interval
excludes 0, and nothing is marked from one seed or from changes that straddle 0."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from mdd_bench.evaluation.metrics import METRICS
from mdd_bench.registry import get_method
from mdd_bench.report import write_report
from mdd_bench.report.factors import CARRIES, CONFIGURED, FACTORS_GROUP, factor_table
from mdd_bench.report.frame import load_frame
from mdd_bench.report.layout import MISSING
from mdd_bench.report.tables import ablation_tables, build_tables

PROTOCOL = "syn"
# method -> variant -> mean recall per seed (None: that seed of that variant did not run)
CELLS: dict[str, dict[str, list[float | None]]] = {
    "tesla": {
        CONFIGURED: [20.0, 22.0, 21.0],
        "Gradient: full unroll": [20.5, 21.0, 22.0],  # changes +0.5, -1, +1: straddles 0
        "Student loss: InfoNCE": [26.0, 29.0, 27.5],  # +6, +7, +6.5: carries the most
        "Towers: frozen backbone + heads": [18.0, 19.5, 19.0],  # -2, -2.5, -2: matters, smaller
    },
    "lors": {
        CONFIGURED: [25.0, 26.0, None],
        "Similarity: identity": [24.0, 23.0, 30.0],  # seed 2 has no as-configured run: left out
        "Gradient: full unroll": [25.0, None, None],  # one paired seed: no interval
    },
}


def arch(mean: float, seed: int) -> dict[str, Any]:
    runs = [dict({m: mean + o for m in METRICS}, mean=mean + o) for o in (-0.5, 0.5)]
    means = {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}
    return {"image_encoder": "nfnet_l0", "text_encoder": "bert", "source": True, "recipe": {},
            "seeds": [seed * 1000, seed * 1000 + 1], "runs": runs, "mean": means}  # fmt: skip


def result(method: str, seed: int, mean: float, variant: str | None, order: int = 0) -> dict[str, Any]:
    hard = {"track": "hard", "split": "test", "extras_used": [], "recipe": {}, "archs": [arch(mean, seed)]}
    data = {"schema": 1, "method": method, "family": "distillation", "dataset": "flickr8k",
            "protocol": PROTOCOL, "protocol_hash": "abc", "budget": 100, "seed": seed,
            "distill": {"seconds": 1.0, "iterations": 10, "time_per_iter_s": 0.1, "iters_to_best": 5,
                        "peak_mem_mb": 100.0, "cuda_peak_mem_mb": None, "extra": {}},
            "storage_bytes": 100, "evaluation": {"hard": hard}}  # fmt: skip
    if variant is not None:
        data["ablation"] = {"group": FACTORS_GROUP, "variant": variant, "order": order}
    return data


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for method, variants in CELLS.items():
        for order, (variant, means) in enumerate(variants.items()):
            slug = "".join(c if c.isalnum() else "_" for c in variant)
            for seed, mean in enumerate(means):
                if mean is None:
                    continue
                path = runs / PROTOCOL / "flickr8k" / method / FACTORS_GROUP / slug / f"b100-s{seed}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(result(method, seed, mean, variant, order)))
    return runs


def changes(method: str, variant: str) -> list[float]:
    base, flipped = CELLS[method][CONFIGURED], CELLS[method][variant]
    return [f - b for f, b in zip(flipped, base, strict=True) if f is not None and b is not None]


def scipy_interval(differences: list[float]) -> float:
    low, high = stats.t.interval(0.95, len(differences) - 1, loc=0.0, scale=stats.sem(differences))
    return (high - low) / 2


def test_changes_are_paired_by_seed_with_the_t_interval(runs: Path) -> None:
    table = factor_table(load_frame(runs), "hard")
    assert table is not None and table.name == "factors_hard"
    change, paired, recall = (table.column(h) for h in ("Change", "Seeds", "Mean recall"))
    row = table.find_row("TESLA-WBCE", "Student loss → InfoNCE")
    assert row[change].mean == pytest.approx(np.mean(changes("tesla", "Student loss: InfoNCE")))
    assert row[change].std == pytest.approx(
        scipy_interval(changes("tesla", "Student loss: InfoNCE")), rel=1e-3
    )
    assert row[change].plain().startswith("+6.5 ± ") and row[paired].plain() == "3"
    assert row[recall].mean == pytest.approx(np.mean(CELLS["tesla"]["Student loss: InfoNCE"]))
    configured = table.find_row("TESLA-WBCE", CONFIGURED)
    assert configured[recall].mean == pytest.approx(21.0) and configured[change].plain() == ""
    assert configured[paired].plain() == "3" and table.find_row("LoRS", CONFIGURED)[paired].plain() == "2"
    # LoRS seed 2 has no as-configured run: the identity flip pairs seeds 0 and 1 only
    lors = table.find_row("LoRS", "Similarity → identity")
    assert lors[change].mean == pytest.approx(-2.0) and lors[paired].plain() == "2"
    assert lors[recall].mean == pytest.approx(np.mean([24.0, 23.0, 30.0]))  # its own runs, all three


def test_the_mark_needs_an_interval_that_excludes_zero(runs: Path) -> None:
    table = factor_table(load_frame(runs), "hard")
    change = table.column("Change")
    marked = [(r[0].text, r[1].text) for r in table.rows if CARRIES in r[change].marks]
    # TESLA's largest significant change only: not the flip that straddles 0, nor the smaller one
    assert len(marked) == 1 and marked[0][1] == "Student loss → InfoNCE"
    assert CARRIES not in table.find_row("TESLA-WBCE", "Gradient → full unroll")[change].marks
    assert CARRIES not in table.find_row("TESLA-WBCE", "Towers → frozen backbone + heads")[change].marks
    # LoRS: identity's changes -1 and -3 give -2 ± 12.7 (straddles 0); one paired seed gives no interval
    assert table.find_row("LoRS", "Similarity → identity")[change].plain() == "-2.0 ± 12.7"
    one = table.find_row("LoRS", "Gradient → full unroll")[change]
    assert one.plain() == "0.0" and "±" not in one.plain()
    assert any(CARRIES in n for n in table.notes)


def test_methods_in_paper_order_with_configured_first(runs: Path) -> None:
    table = factor_table(load_frame(runs), "hard")
    assert [(r[0].text, r[1].text) for r in table.rows] == [
        ("TESLA-WBCE", CONFIGURED),
        ("", "Gradient → full unroll"),
        ("", "Student loss → InfoNCE"),
        ("", "Towers → frozen backbone + heads"),
        ("LoRS", CONFIGURED),
        ("", "Similarity → identity"),
        ("", "Gradient → full unroll"),
    ]


def test_no_as_configured_run_leaves_every_change_missing(tmp_path: Path) -> None:
    for seed in range(2):
        path = tmp_path / PROTOCOL / "flickr8k" / "tesla" / FACTORS_GROUP / "g" / f"b100-s{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result("tesla", seed, 20.0, "Gradient: full unroll")))
    table = factor_table(load_frame(tmp_path), "hard")
    row = table.find_row("TESLA-WBCE", "Gradient → full unroll")
    assert row[table.column("Change")].plain() == MISSING and row[table.column("Mean recall")].mean == 20.0


def test_factors_leave_the_generic_ablation_tables(runs: Path) -> None:
    frame = load_frame(runs)
    assert ablation_tables(frame, "hard") == []
    names = [t.name for t in build_tables(frame, "hard")]
    assert "factors_hard" in names and not any(n.startswith("ablation_factors") for n in names)
    assert factor_table(frame, "native") is None  # the ablation ran the hard track only


@pytest.mark.parametrize("method", ["mtt-vl", "tesla", "lors", "repblend"])
def test_the_report_reads_what_the_methods_declare(method: str) -> None:
    variants = get_method(method).ablations[FACTORS_GROUP]
    assert next(iter(variants)) == CONFIGURED and variants[CONFIGURED] == {}
    assert all(":" in v for v in list(variants)[1:])  # "Switch: value", the table's "Switch → value"


@pytest.mark.slow  # draws the page's figures
def test_the_table_is_in_every_written_format(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = write_report(runs, out, ["latex", "markdown", "html"], gallery=False)
    folder = out / PROTOCOL
    assert folder / "factors_hard.tex" in paths
    assert "Student loss → InfoNCE" in (folder / "report_hard.md").read_text()
    assert 'id="s-factors"' in (folder / "report.html").read_text()


def test_findings_quote_the_report_table(runs: Path) -> None:
    from bench_scripts import load_bench

    numbers = load_bench("findings_numbers")
    frame = load_frame(runs)
    text = numbers.factor_section(frame, PROTOCOL, "hard")
    assert text.startswith("### Factors of the trajectory family (hard track)")
    assert "| TESLA-WBCE | As configured " in text and "+6.5 ± " in text and CARRIES in text
    assert numbers.factor_section(frame, PROTOCOL, "native") == ""  # no factors there: no section
    assert numbers.factor_section(frame, "other", "hard") == ""
    assert "factors" not in numbers.ablation_section(frame, PROTOCOL, "hard")


def test_a_track_with_only_the_as_configured_run_has_no_factor_rows(runs: Path) -> None:
    """The as-configured run is often evaluated on both tracks while the flips ran the hard one: the
    native track then has nothing to compare, and neither the report nor FINDINGS lists it."""
    from bench_scripts import load_bench

    numbers = load_bench("findings_numbers")
    for path in (runs / PROTOCOL / "flickr8k" / "tesla" / FACTORS_GROUP).glob("As_configured/*.json"):
        data = json.loads(path.read_text())
        data["evaluation"]["native"] = dict(data["evaluation"]["hard"], track="native")
        path.write_text(json.dumps(data))
    frame = load_frame(runs)
    assert set(frame[frame["track"] == "native"]["ablation_variant"]) == {CONFIGURED}
    assert factor_table(frame, "native") is None
    assert numbers.factor_section(frame, PROTOCOL, "native") == ""
    assert factor_table(frame, "hard") is not None
