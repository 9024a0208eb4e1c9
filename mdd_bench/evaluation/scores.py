"""Improvement over random (IOR), hard-label recovery (HLR) and their combined score, for retrieval.

DD-Ranking's idea, carried from classification to image-text retrieval: a distilled set is worth what it
adds over N random real pairs trained the same way, and what it still misses of the full data.

- IOR = recall(set) - recall(N random real pairs, same recipe, same kind of extras)
- HLR = recall(full data) - recall(set, hard track)
- Score = (1 + w * IOR - (1 - w) * HLR) / 2, with w = 1/2

Every recall here is the mean of IR@1/5/10 and TR@1/5/10 as a fraction (percent / 100), so IOR and HLR
lie in [-1, 1] and the score in [0, 1]. With w = 1/2 the score is 1/2 + (IOR - HLR) / 4: a set that
trains as well as the full data scores 1/2 + (f - r) / 4, one no better than random 1/2 - (f - r) / 4
(f, r: full-data and random recall), so the spread between the two is the room the task leaves. The
score is DD-Ranking's weighted difference alpha = w * IOR - (1 - w) * HLR mapped onto [0, 1] by the
linear (1 + alpha) / 2. DD-Ranking maps alpha through (e^alpha - e^-1) / (e - e^-1), which is onto
[0, 1] only for alpha in [-1, 1]; with accuracies in percent, as its classification tool reports
them, alpha spans +-100, far outside that range, and the score saturates. On fractions and linear,
equal recall gains count equally wherever they occur.

These are pure functions on floats or numpy arrays (one value per evaluation repetition); NaN, a
missing baseline, passes through as NaN and is never read as 0.
"""

from __future__ import annotations

import math

import numpy as np

from mdd_bench.errors import MddError

WEIGHT = 0.5  # w: IOR and HLR count the same
SCORE_METRICS = ("ior", "hlr", "score")

Number = float | np.ndarray


def _fractions(value: Number, what: str) -> np.ndarray:
    """`value` as an array of fractions; a percentage passed by mistake is a one-line error."""
    array = np.asarray(value, dtype=np.float64)
    finite = array[np.isfinite(array)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        raise MddError(f"{what} must be a recall fraction in [0, 1] (got {finite.max():g}); divide % by 100.")
    return array


def _out(array: np.ndarray) -> Number:
    return float(array) if array.ndim == 0 else array


def ior(set_recall: Number, random_recall: Number) -> Number:
    """Improvement over random: the set's recall minus random pairs' recall under the same recipe."""
    return _out(_fractions(set_recall, "set recall") - _fractions(random_recall, "random recall"))


def hlr(full_recall: Number, hard_recall: Number) -> Number:
    """Hard-label recovery: what the set, trained with identity targets, still misses of the full data."""
    return _out(_fractions(full_recall, "full-data recall") - _fractions(hard_recall, "hard-track recall"))


def combined(ior_value: Number, hlr_value: Number, weight: float = WEIGHT) -> Number:
    """(1 + w * IOR - (1 - w) * HLR) / 2: in [0, 1] for IOR and HLR in [-1, 1]; higher is better."""
    if not 0.0 <= weight <= 1.0 or math.isnan(weight):
        raise MddError(f"The score's weight must lie in [0, 1] (got {weight}).")
    ior_array = np.asarray(ior_value, dtype=np.float64)
    hlr_array = np.asarray(hlr_value, dtype=np.float64)
    return _out((1.0 + weight * ior_array - (1.0 - weight) * hlr_array) / 2.0)
