"""Statistics over distillation seeds, shared by every table: the mean, the sample spread and the 95%
t-interval of the mean, with a single seed's interval taken from its evaluation repetitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Two-sided 95% t-quantiles by degrees of freedom; 1.96 beyond the table.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip


def t975(dof: int) -> float:
    if dof < 1:
        return math.nan
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int
    ci: float = math.nan  # half-width of the 95% interval of the mean
    deterministic: bool = False


def seed_stat(
    values: np.ndarray, rep_std: float = math.nan, reps: int = 0, deterministic: bool = False
) -> Stat:
    """Seed statistics; a single seed takes its interval (and, when deterministic, its spread) from the
    evaluation repetitions."""
    values = values[~np.isnan(values)]
    if not len(values):
        return Stat(math.nan, math.nan, 0)
    mean = float(np.mean(values))
    if len(values) > 1:
        std = float(np.std(values, ddof=1))
        return Stat(mean, std, len(values), t975(len(values) - 1) * std / math.sqrt(len(values)))
    # One seed: the evaluation repetitions are the only noise estimate left (a lower bound for a seeded
    # method, whose spread over seeds is unknown and so not shown).
    ci = t975(reps - 1) * rep_std / math.sqrt(reps) if reps > 1 and not math.isnan(rep_std) else math.nan
    return Stat(mean, rep_std if deterministic else math.nan, 1, ci, deterministic)
