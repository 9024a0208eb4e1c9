"""The fair re-run's comparison script (issue 32's note): the tie verdict reads the Welch interval, and the
gain over the initial set is the one-sample t-interval."""

import math

import numpy as np
import pandas as pd
from bench_scripts import load_bench
from scipy import stats

fair = load_bench("fair_rerun")


def frame(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """Result rows as `load_frame` gives them: (method, metric) -> one value per seed, hard track."""
    rows = [
        {"protocol": "cpu", "track": "hard", "metric": metric, "source": True, "ablation_group": None,
         "method": method, "budget": 100, "seed": seed, "value": v, "rep_std": 0.5, "repetitions": 5,
         "deterministic": False}
        for (method, metric), vs in values.items() for seed, v in enumerate(vs)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_tie_holds_only_inside_the_interval() -> None:
    close = frame({("mdm", "mean"): [21.0, 22.0, 20.5], ("lors", "mean"): [20.0, 22.0, 21.0]})
    apart = frame({("mdm", "mean"): [27.0, 28.0, 26.0], ("lors", "mean"): [20.0, 22.0, 21.0]})
    assert "| mdm ≈ lors |" in fair.orderings(close, "cpu", "hard", 100)
    assert (
        fair.orderings(close, "cpu", "hard", 100)
        .split("| mdm ≈ lors |")[1]
        .split("\n")[0]
        .endswith("holds |")
    )
    assert "does not hold |" in fair.orderings(apart, "cpu", "hard", 100)
    assert "| lors > tesla | -- | not run yet |" in fair.orderings(apart, "cpu", "hard", 100)


def test_initial_gain_is_the_one_sample_t_interval() -> None:
    gains = [2.0, 3.5, 1.0]
    f = frame({("mdm", "initial_gain"): gains, ("mdm", "initial_mean"): [20.0, 21.0, 22.0]})
    ci = stats.ttest_1samp(gains, 0.0).confidence_interval(0.95)
    text = fair.initial_gains(f, "cpu", 100)
    mean, half = np.mean(gains), (ci.high - ci.low) / 2
    assert f"| mdm | 21.0 ± 1.0 | {mean:+.1f} ± {half:.1f} (n=3) |" in text
    assert not math.isnan(half)


def test_ranks_move_and_kendall_tau() -> None:
    before = frame(
        {("lors", "mean"): [20.0, 21.0], ("tesla", "mean"): [15.0, 16.0], ("mdm", "mean"): [27.0, 26.0]}
    )
    after = frame(
        {("lors", "mean"): [28.0, 29.0], ("tesla", "mean"): [16.0, 17.0], ("mdm", "mean"): [26.0, 27.0]}
    )
    text = fair.ranks(before, after, "cpu", "hard", 100)
    assert "| lors | 20.5 (2) | 28.5 (1) | +1 |" in text and "| mdm | 26.5 (1) | 26.5 (2) | -1 |" in text
    assert "| tesla | 15.5 (3) | 16.5 (3) | +0 |" in text
    assert "tau before/after +0.33, 2 places moved" in text  # one swapped pair of three
    assert "fewer than 2 methods" in fair.ranks(before, frame({("lors", "mean"): [1.0]}), "cpu", "hard", 100)


def test_findings_holds_the_fair_tables_per_budget(tmp_path) -> None:
    findings = load_bench("findings")
    before = frame({("lors", "mean"): [20.0, 21.0], ("mdm", "mean"): [27.0, 26.0]})
    after = frame(
        {("lors", "mean"): [28.0, 29.0], ("mdm", "mean"): [26.0, 27.0], ("random", "mean"): [17.0, 18.0],
         ("lors", "initial_gain"): [8.0, 9.0], ("lors", "initial_mean"): [20.0, 20.0]}
    )  # fmt: skip
    summary = tmp_path / "summary.json"
    summary.write_text(
        '{"studies": [{"method": "lors", "budget": 100, "complete": 9, "pruned": 6, "failed": 1,'
        ' "best_val": 30.25, "best_trial": 4, "cpu_hours": 2.5}]}'
    )
    text = "\n\n".join(findings.fair_sections(after, before, summary))
    assert "### Tuning, 100 pairs" in text and "| lors | 9 / 6 / 1 | 30.25 (trial 4) | 2.50 |" in text
    assert "| lors | 20.5 (2) | 28.5 (1) | +1 |" in text  # the ranks, hard track
    assert "### Ranks, native track, 100 pairs: fewer than 2 methods" in text  # no native rows here
    assert "| lors | 20.0 ± 0.0 | +8.5 ± 6.4 (n=2) |" in text  # the gain over its own initial set
    assert "| lors > tesla | -- | not run yet |" in text
    # a budget only a coreset ran gets no section: the fair tables are the iterative methods'
    coreset_only = pd.concat([after, frame({("random", "mean"): [17.0, 18.0]}).assign(budget=200)])
    assert "200 pairs" not in "\n\n".join(findings.fair_sections(coreset_only, before, summary))
    without = "\n\n".join(findings.fair_sections(after, None, None))
    assert "### Ranks" not in without and "### Tuning" not in without and "initial set" in without
