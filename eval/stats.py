"""Statistics of evaluation results: how sure a success rate is, and whether two rows differ.

Outcomes are per task, 1 (solved) or 0, over the same task list for every row, so rows are
compared as paired samples:
- a row's success rate gets a Wilson score interval (sound at 0 % and 100 % and for small n);
- a row against a reference row gets the paired difference of success rates with a percentile
  bootstrap interval over tasks (fixed seed) and the exact McNemar test (a two-sided binomial
  test on the tasks where exactly one of the two rows succeeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest, bootstrap

CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 0


def wilson_interval(solved: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of ``solved / n`` ((0, 1) when n is 0: nothing is known)."""
    if n == 0:
        return 0.0, 1.0
    ci = binomtest(solved, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return a.mean(axis=axis) - b.mean(axis=axis)


def paired_difference(row: Sequence[int], reference: Sequence[int],
                      confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                      seed: int = SEED) -> tuple[float, float, float]:
    """(difference of success rates, low, high): ``row`` minus ``reference`` on the same tasks,
    with a percentile bootstrap interval that resamples tasks (pairs kept together)."""
    if len(row) != len(reference):
        raise ValueError("paired outcomes need the same tasks")
    a, b = np.asarray(row, dtype=float), np.asarray(reference, dtype=float)
    if len(a) == 0:
        return 0.0, -1.0, 1.0
    difference = float(a.mean() - b.mean())
    if np.array_equal(a, b):  # every resample has difference 0
        return difference, 0.0, 0.0
    result = bootstrap((a, b), _mean_difference, paired=True, vectorized=True,
                       confidence_level=confidence, n_resamples=resamples, method="percentile",
                       rng=np.random.default_rng(seed))
    return difference, float(result.confidence_interval.low), float(
        result.confidence_interval.high)


def mcnemar_exact(row: Sequence[int], reference: Sequence[int]) -> tuple[int, int, float]:
    """(tasks only ``row`` solved, tasks only ``reference`` solved, exact two-sided p-value)."""
    if len(row) != len(reference):
        raise ValueError("paired outcomes need the same tasks")
    only_row = sum(1 for a, b in zip(row, reference, strict=True) if a and not b)
    only_ref = sum(1 for a, b in zip(row, reference, strict=True) if b and not a)
    if only_row + only_ref == 0:
        return 0, 0, 1.0
    return only_row, only_ref, float(binomtest(only_row, only_row + only_ref, 0.5).pvalue)


def compare(row: Sequence[int], reference: Sequence[int]) -> dict[str, Any]:
    """The paired comparison of a row with the reference row, as stored in results.json."""
    difference, low, high = paired_difference(row, reference)
    only_row, only_ref, p_value = mcnemar_exact(row, reference)
    return {"difference": difference, "low": low, "high": high, "only_this_row": only_row,
            "only_reference": only_ref, "p_value": p_value}
