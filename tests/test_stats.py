"""Statistics of the results against independent computations, and the report built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from lbi.eval import report, stats
from lbi.types import Task

# 40 tasks: the row solves 14, the reference 8; 9 only the row, 3 only the reference.
ROW = [1] * 5 + [1] * 9 + [0] * 3 + [0] * 23
REF = [1] * 5 + [0] * 9 + [1] * 3 + [0] * 23


def test_wilson_interval_matches_the_closed_form():
    k, n, z = 14, 40, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = stats.wilson_interval(k, n)
    assert low == pytest.approx(centre - half, abs=1e-9)
    assert high == pytest.approx(centre + half, abs=1e-9)
    assert stats.wilson_interval(0, 40)[0] == 0.0 and 0.08 < stats.wilson_interval(0, 40)[1] < 0.09
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_tasks():
    only_row, only_ref, p = stats.mcnemar_exact(ROW, REF)
    assert (only_row, only_ref) == (9, 3)
    assert p == pytest.approx(binomtest(9, 12, 0.5).pvalue)
    assert p == pytest.approx(2 * sum(math.comb(12, k) for k in range(4)) / 2**12)
    assert stats.mcnemar_exact(REF, REF) == (0, 0, 1.0)


def test_paired_bootstrap_matches_a_hand_written_resampling():
    difference, low, high = stats.paired_difference(ROW, REF)
    assert difference == pytest.approx(6 / 40)
    # The same percentile bootstrap written out: resample tasks (pairs together), 10,000 times.
    a, b = np.array(ROW), np.array(REF)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 40, size=(10_000, 40))
    diffs = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    assert low == pytest.approx(np.percentile(diffs, 2.5), abs=0.02)
    assert high == pytest.approx(np.percentile(diffs, 97.5), abs=0.02)
    assert low < 0.15 < high and low > -0.05
    assert stats.paired_difference(ROW, REF) == (difference, low, high)  # fixed seed
    assert stats.paired_difference(REF, REF) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same tasks"):
        stats.paired_difference(ROW, REF[:-1])


def _row(name: str, tasks: list[Task], outcome: list[int]) -> dict:
    return {"name": name, "tasks": [t.id for t in tasks], "episodes": len(tasks),
            "solved": sum(outcome), "success_rate": sum(outcome) / len(tasks),
            "solved_tasks": [t.id for t, o in zip(tasks, outcome, strict=True) if o],
            "errors": 0, "mean_steps": 1.0, "calls": 1, "input_tokens": 1, "output_tokens": 1,
            "cost": 0.0, "wall_s_per_task": 1.0}


def test_the_report_compares_rows_on_the_same_tasks_and_breaks_down_by_difficulty(tmp_path):
    tasks = [Task(id=f"t{k}", env="x", instruction="?", origin="benchmark",
                  difficulty="easy" if k < 20 else "hard") for k in range(40)]
    rows = [_row("zero-shot", tasks, REF), _row("LbI-ICL", tasks, ROW)]
    results = report.summarize("x", "test", tasks, rows, "zero-shot", 3)
    zero, icl = results["agents"]
    assert zero["comparison"] is None
    assert icl["comparison"]["p_value"] == pytest.approx(binomtest(9, 12, 0.5).pvalue)
    assert icl["comparison"]["only_this_row"] == 9 and icl["success_text"].startswith("35.0% [")
    assert icl["by_difficulty"]["easy"]["solved"] == 14 and icl["by_difficulty"]["hard"]["n"] == 20
    assert results["outcomes"]["t5"] == {"zero-shot": 0, "LbI-ICL": 1}
    report.write(results, tmp_path)
    table = (tmp_path / "results.md").read_text()
    assert "| LbI-ICL | 35.0% [" in table and "+15.0 pts [" in table and "(9+/3-)" in table
    assert "| agent | easy | hard |" in table
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    pair = report.summarize("x", "test", tasks, [*rows, _row("LbI-ICL (1.5B)", tasks, ROW)],
                            "zero-shot", 3, {"LbI-ICL (1.5B)": "LbI-ICL"})
    icl_large = pair["agents"][2]
    assert icl_large["comparison"]["against"] == "LbI-ICL"
    assert icl_large["comparison"]["difference"] == 0 and icl_large["comparison"]["p_value"] == 1
    assert icl_large["comparison_text"] == "+0.0 pts [+0.0, +0.0] vs LbI-ICL"
    assert pair["agents"][1]["comparison_text"] == icl["comparison_text"]  # the default
    other = _row("RAG", tasks[:39], ROW[:39])
    with pytest.raises(ValueError, match="another task list"):
        report.summarize("x", "test", tasks, [*rows, other], "zero-shot", 3)
