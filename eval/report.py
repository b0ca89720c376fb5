"""Metrics of a set of episodes, and the results files: JSON, a markdown table, a bar chart.

Success means one thing everywhere (``lbi run``, ``lbi eval``, ``lbi synth``'s rollouts, the
chart): ``Trajectory.solved``, reward ≥ 1; the success rate is solved episodes over all
episodes (an episode that ended in an error counts as not solved).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from lbi.eval import stats
from lbi.io import atomic_write_text
from lbi.tracking import WandbRun
from lbi.types import Task, Trajectory

COLUMNS = [  # (header, key, format)
    ("agent", "name", "{}"), ("success [95% CI]", "success_text", "{}"),
    ("vs reference [95% CI]", "comparison_text", "{}"), ("McNemar p", "p_text", "{}"),
    ("errors", "errors", "{}"), ("mean steps", "mean_steps", "{:.2f}"),
    ("LLM calls", "calls", "{}"),
    ("tokens in", "input_tokens", "{:,}"), ("tokens out", "output_tokens", "{:,}"),
    ("cost $", "cost", "{:.4f}"), ("wall s / task", "wall_s_per_task", "{:.1f}"),
]


def success_text(k: int, n: int) -> str:
    """``12.3% [9.1, 16.2] (55/447)``: the rate, its Wilson interval and the counts."""
    if not n:
        return "—"
    low, high = stats.wilson_interval(k, n)
    return f"{100 * k / n:.1f}% [{100 * low:.1f}, {100 * high:.1f}] ({k}/{n})"


def metrics(trajectories: list[Trajectory]) -> dict[str, Any]:
    """Success rate with its interval, steps, LLM usage (recorded per episode, query-writing
    calls and format re-asks included), cost and wall time of the episodes."""
    n = len(trajectories)
    k = sum(t.solved for t in trajectories)
    low, high = stats.wilson_interval(k, n)
    usage = [t.provenance.get("llm", {}) for t in trajectories]

    def total(key: str) -> float:
        return sum(u.get(key, 0) for u in usage)

    walls = [t.provenance.get("wall_s", 0.0) for t in trajectories]
    return {
        "episodes": n, "scored": sum(t.reward is not None for t in trajectories), "solved": k,
        "success_rate": k / n if n else 0.0, "success_low": low, "success_high": high,
        "success_text": success_text(k, n),
        "mean_steps": statistics.mean(len(t.steps) for t in trajectories) if n else 0.0,
        "terminations": {key: sum(t.termination == key for t in trajectories)
                         for key in ("stop", "step_limit", "time_limit", "error", "budget")},
        "calls": int(total("calls")), "cache_hits": int(total("cache_hits")),
        "input_tokens": int(total("input_tokens")), "output_tokens": int(total("output_tokens")),
        "cost": round(total("cost"), 6), "llm_seconds": round(total("llm_seconds"), 1),
        "wall_s": round(sum(walls), 1), "wall_s_per_task": sum(walls) / n if n else 0.0,
        "retrieved_per_step": _mean([len(s.retrieval.ids) for t in trajectories for s in t.steps
                                     if s.retrieval]),
        "reference_tokens_per_step": _mean([s.retrieval.tokens for t in trajectories
                                            for s in t.steps if s.retrieval]),
        "solved_tasks": sorted(t.task.id for t in trajectories if t.solved),
        "errors": sum(t.termination == "error" for t in trajectories),
        "error_tasks": sorted(t.task.id for t in trajectories if t.termination == "error"),
    }


def _mean(values: list[float]) -> float | None:
    return round(statistics.mean(values), 2) if values else None


def summarize(env: str, split: str, tasks: list[Task], rows: list[dict[str, Any]],
              reference: str | None, step_limit: int,
              compare_with: dict[str, str] | None = None) -> dict[str, Any]:
    """The results of an evaluation: every row (run on exactly ``tasks``) with its interval,
    its paired comparison with the ``reference`` row (default: the first) or with the row
    ``compare_with`` names for it, the breakdown by difficulty, and the outcome matrix
    {task: {row: 0/1}}."""
    ids = [t.id for t in tasks]
    for row in rows:
        if row["tasks"] != ids:
            raise ValueError(f"row {row['name']!r} was run on another task list; rows are only "
                             "compared on the same tasks")
    outcomes = {row["name"]: [int(t in set(row["solved_tasks"])) for t in ids] for row in rows}
    names = [row["name"] for row in rows]
    if reference not in names:
        reference = names[0] if names else None
    labels = {t.id: t.difficulty for t in tasks}
    out_rows = []
    for row in rows:
        row = dict(row)
        k, n = sum(outcomes[row["name"]]), len(ids)
        row["success_low"], row["success_high"] = stats.wilson_interval(k, n)
        row["success_text"] = success_text(k, n)
        row["by_difficulty"] = _by_difficulty(outcomes[row["name"]], ids, labels)
        against = (compare_with or {}).get(row["name"], reference)
        if against in outcomes and row["name"] != against:
            row["comparison"] = {**stats.compare(outcomes[row["name"]], outcomes[against]),
                                 "against": against}
        else:
            row["comparison"] = None
        out_rows.append(_with_texts(row, reference))
    return {"env": env, "split": split, "tasks": ids, "difficulty": labels,
            "step_limit": step_limit, "reference": reference, "agents": out_rows,
            "outcomes": {t: {name: outcomes[name][k] for name in names}
                         for k, t in enumerate(ids)}}


def _by_difficulty(outcome: list[int], ids: list[str],
                   labels: dict[str, str | None]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for task_id, value in zip(ids, outcome, strict=True):
        groups[labels[task_id] or "unlabelled"].append(value)
    if set(groups) == {"unlabelled"}:
        return {}
    breakdown = {}
    for label, values in sorted(groups.items()):
        k, n = sum(values), len(values)
        low, high = stats.wilson_interval(k, n)
        breakdown[label] = {"solved": k, "n": n, "rate": k / n, "low": low, "high": high,
                            "text": success_text(k, n)}
    return breakdown


def _with_texts(row: dict[str, Any], reference: str | None) -> dict[str, Any]:
    c = row["comparison"]
    if c is None:
        row["comparison_text"], row["p_text"] = "reference", "—"
    else:
        row["comparison_text"] = (f"{100 * c['difference']:+.1f} pts [{100 * c['low']:+.1f}, "
                                  f"{100 * c['high']:+.1f}]")
        if c["against"] != reference:
            row["comparison_text"] += f" vs {c['against']}"
        row["p_text"] = (f"{c['p_value']:.3g} ({c['only_this_row']}+/{c['only_reference']}-)")
    return row


def markdown_table(results: dict[str, Any]) -> str:
    """One row per agent configuration, like the paper's tables, then the success rate by
    difficulty."""
    lines = [f"{results['env']}, split `{results['split']}`: {len(results['tasks'])} tasks, "
             f"step limit {results['step_limit']}, reference row `{results['reference']}` "
             "(paired bootstrap interval of the difference; exact McNemar test, with the "
             "tasks only this row / only the reference solved; a row compared with another "
             "row names it after its difference).", "",
             "| " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in results["agents"]:
        lines.append("| " + " | ".join(fmt.format(row[key]) for _, key, fmt in COLUMNS) + " |")
    labels = sorted({label for row in results["agents"] for label in row["by_difficulty"]})
    if labels:
        lines += ["", "| agent | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for row in results["agents"]:
            cells = [row["by_difficulty"].get(label, {}).get("text", "—") for label in labels]
            lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(results: dict[str, Any], path: Path) -> None:
    """Success rate per configuration with its 95 % Wilson interval, annotated with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["agents"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(rows) + 2), 3.8), dpi=120)
    rates = [100 * r["success_rate"] for r in rows]
    errors = [[rate - 100 * r["success_low"] for rate, r in zip(rates, rows, strict=True)],
              [100 * r["success_high"] - rate for rate, r in zip(rates, rows, strict=True)]]
    bars = ax.bar(range(len(rows)), rates, yerr=errors, capsize=4, color="#4C72B0",
                  ecolor="#333333")
    for bar, row in zip(bars, rows, strict=True):
        ax.annotate(f"{row['solved']}/{row['episodes']}",
                    (bar.get_x() + bar.get_width() / 2, 100 * row["success_high"]),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                    textcoords="offset points")
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=25, ha="right",
                  fontsize=8)
    ax.set_ylabel("success rate (%), 95% CI")
    ax.set_ylim(0, min(105, max([100 * r["success_high"] for r in rows] + [10]) * 1.15))
    ax.set_title(f"{results['env']} ({results['split']}): {len(results['tasks'])} tasks, "
                 f"step limit {results['step_limit']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """results.json, results.md and results.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md",
             "chart": out / "results.png"}
    atomic_write_text(paths["json"], json.dumps(results, indent=2, default=str))
    atomic_write_text(paths["markdown"], markdown_table(results) + "\n")
    bar_chart(results, paths["chart"])
    return paths


def track(tracker: WandbRun, results: dict[str, Any], samples_per_row: int = 5) -> None:
    """The results to W&B: the rows with their intervals and paired comparisons, the task × row
    outcome matrix, and a few trajectories per row (tasks where the rows disagree first)."""
    rows = results["agents"]
    names = [row["name"] for row in rows]
    tracker.summary({row["name"]: {"success_rate": row["success_rate"],
                                   "success_low": row["success_low"],
                                   "success_high": row["success_high"]} for row in rows})
    comparison_keys = ("difference", "low", "high", "p_value")
    tracker.table("rows", ["row", "success_rate", "success_low", "success_high", "solved",
                           "episodes", "compared_with",
                           *(f"vs_reference_{k}" for k in comparison_keys),
                           "errors", "calls", "input_tokens", "output_tokens", "cost",
                           "wall_s_per_task"],
                  [[row["name"], row["success_rate"], row["success_low"], row["success_high"],
                    row["solved"], row["episodes"], (row["comparison"] or {}).get("against"),
                    *((row["comparison"] or {}).get(k) for k in comparison_keys),
                    row["errors"], row["calls"], row["input_tokens"], row["output_tokens"],
                    row["cost"], row["wall_s_per_task"]] for row in rows])
    outcomes = results["outcomes"]
    tracker.table("outcomes", ["task", "difficulty", *names],
                  [[task, results["difficulty"].get(task), *(outcomes[task][n] for n in names)]
                   for task in results["tasks"]])
    disagree = [t for t in results["tasks"] if len(set(outcomes[t].values())) > 1]
    chosen = (disagree + [t for t in results["tasks"] if t not in disagree])[:samples_per_row]
    samples = []
    for row in rows:
        for task in chosen:
            path = Path(row["episodes_dir"]) / f"{task}.json"
            if path.exists():
                trajectory = Trajectory.model_validate_json(path.read_text())
                samples.append([row["name"], task, trajectory.solved, trajectory.task.instruction,
                                "\n".join(f"{k}. {s.action}"
                                          for k, s in enumerate(trajectory.steps, 1)),
                                trajectory.final_observation[:2000]])
    tracker.table("trajectories", ["row", "task", "solved", "instruction", "actions",
                                   "final_observation"], samples)
    tracker.finish()
