"""Metrics of a set of episodes, and the results files: JSON, a markdown table, a bar chart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from lbi.io import atomic_write_text
from lbi.types import Trajectory

COLUMNS = [  # (header, key, format)
    ("agent", "name", "{}"), ("success", "success_text", "{}"), ("mean steps", "mean_steps",
                                                                  "{:.2f}"),
    ("LLM calls", "calls", "{}"), ("tokens in", "input_tokens", "{:,}"),
    ("tokens out", "output_tokens", "{:,}"), ("cost $", "cost", "{:.4f}"),
    ("wall s / task", "wall_s_per_task", "{:.1f}"),
]


def metrics(trajectories: list[Trajectory]) -> dict[str, Any]:
    """Success rate (reward 1 = solved), steps, LLM usage (recorded per episode, query-writing
    calls and format re-asks included), cost and wall time of the episodes."""
    n = len(trajectories)
    solved = sum(1 for t in trajectories if t.reward is not None and t.reward >= 1.0)
    usage = [t.provenance.get("llm", {}) for t in trajectories]

    def total(key: str) -> float:
        return sum(u.get(key, 0) for u in usage)

    walls = [t.provenance.get("wall_s", 0.0) for t in trajectories]
    return {
        "episodes": n, "solved": solved, "success_rate": solved / n if n else 0.0,
        "success_text": f"{100 * solved / n:.1f}% ({solved}/{n})" if n else "—",
        "mean_steps": statistics.mean(len(t.steps) for t in trajectories) if n else 0.0,
        "terminations": {k: sum(t.termination == k for t in trajectories)
                         for k in ("stop", "step_limit", "time_limit", "error")},
        "calls": int(total("calls")), "cache_hits": int(total("cache_hits")),
        "input_tokens": int(total("input_tokens")), "output_tokens": int(total("output_tokens")),
        "cost": round(total("cost"), 6), "llm_seconds": round(total("llm_seconds"), 1),
        "wall_s": round(sum(walls), 1), "wall_s_per_task": sum(walls) / n if n else 0.0,
        "retrieved_per_step": _mean([len(s.retrieval.ids) for t in trajectories for s in t.steps
                                     if s.retrieval]),
        "reference_tokens_per_step": _mean([s.retrieval.tokens for t in trajectories
                                            for s in t.steps if s.retrieval]),
        "solved_tasks": sorted(t.task.id for t in trajectories if (t.reward or 0) >= 1.0),
    }


def _mean(values: list[float]) -> float | None:
    return round(statistics.mean(values), 2) if values else None


def markdown_table(results: dict[str, Any]) -> str:
    """One row per agent configuration, like the paper's tables."""
    lines = ["| " + " | ".join(h for h, _, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in results["agents"]:
        lines.append("| " + " | ".join(fmt.format(row[key]) for _, key, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def bar_chart(results: dict[str, Any], path: Path) -> None:
    """Success rate per configuration, annotated with the solved count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["agents"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(rows) + 2), 3.8), dpi=120)
    rates = [100 * r["success_rate"] for r in rows]
    bars = ax.bar(range(len(rows)), rates, color="#4C72B0")
    for bar, row in zip(bars, rows, strict=True):
        ax.annotate(f"{row['solved']}/{row['episodes']}", (bar.get_x() + bar.get_width() / 2,
                                                           bar.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                    textcoords="offset points")
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=25, ha="right",
                  fontsize=8)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, max([*rates, 10]) * 1.2)
    ax.set_title(f"{results['env']}: {len(results['tasks'])} held-out tasks, "
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
