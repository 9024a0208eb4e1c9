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
