"""Static HTML reports of output folders, rendered with Jinja2 templates (no server, no network).

An evaluation folder (``results.json`` + ``episodes/``) gives the results table with intervals,
the task × row outcome matrix (filterable by difficulty and by "rows disagree") and one page per
episode: every step's observation, reasoning and action, the retrieved examples with the query
that found them, tokens and latency. A synthesis folder (the stores ``lbi synth`` writes) gives
the stage counts, tasks by document, the trajectories, and every example with its span
highlighted in the source trajectory, the committee's votes and reasons, and rejects by cause.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from lbi.errors import ConfigError
from lbi.synth.filter import Judgement
from lbi.synth.pipeline import BackwardFailure, rejects_by_cause
from lbi.synth.store import JsonlStore
from lbi.synth.taskgen import TaskGenRecord
from lbi.types import Document, Example, Task, Trajectory

REPORT_DIR = "report"


def _templates() -> Environment:
    env = Environment(loader=PackageLoader("lbi.view", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x: f"{100 * x:.1f}%"
    return env


def write_report(folder: Path, out: Path | None = None) -> Path:
    """Write the report of ``folder`` (an ``lbi eval`` or ``lbi synth`` output folder) into
    ``out`` (default ``<folder>/report``); returns its index.html."""
    folder = Path(folder)
    out = Path(out) if out else folder / REPORT_DIR
    if (folder / "results.json").exists():
        pages = eval_pages(folder)
    elif (folder / "trajectories.jsonl").exists() or (folder / "tasks.json").exists():
        pages = synth_pages(folder)
    else:
        raise ConfigError(f"{folder} is neither an `lbi eval` output folder (results.json) nor an "
                          "`lbi synth` one (trajectories.jsonl): point `lbi view` at one")
    if out.exists():
        shutil.rmtree(out)  # a report is derived data: rebuilt whole
    templates = _templates()
    for relative, template, context in pages:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        depth = len(Path(relative).parts) - 1
        path.write_text(templates.get_template(template).render(
            root="../" * depth, source=str(folder), **context))
    (out / "style.css").write_text(templates.loader.get_source(templates, "style.css")[0])
    return out / "index.html"


Page = tuple[str, str, dict[str, Any]]
"""(path inside the report, template, context)."""


# ---- evaluation ------------------------------------------------------------------------------
def eval_pages(folder: Path) -> list[Page]:
    """The index (results, by difficulty, outcome matrix) and one page per episode."""
    results = json.loads((folder / "results.json").read_text())
    names = [row["name"] for row in results["agents"]]
    pages: list[Page] = []
    links: dict[tuple[str, str], str] = {}
    for row in results["agents"]:
        episodes = Path(row["episodes_dir"])
        if not episodes.is_dir():  # moved with the folder: look beside results.json
            episodes = folder / "episodes" / episodes.name
        examples = _index_entries(row.get("index_folder"))
        for task_id in results["tasks"]:
            path = episodes / f"{task_id}.json"
            if not path.exists():
                continue
            trajectory = Trajectory.model_validate_json(path.read_text())
            relative = f"episodes/{episodes.name}/{task_id}.html"
            links[task_id, row["name"]] = relative
            pages.append((relative, "episode.html", {
                "title": f"{row['name']} · {task_id}", "row": row["name"],
                "trajectory": trajectory, "steps": _steps(trajectory, examples)}))
    matrix = []
    for task_id in results["tasks"]:
        outcome = results["outcomes"][task_id]
        matrix.append({"id": task_id, "difficulty": results["difficulty"].get(task_id) or "",
                       "disagree": len({outcome[n] for n in names}) > 1,
                       "cells": [(outcome[n], links.get((task_id, n))) for n in names]})
    labels = sorted({t["difficulty"] for t in matrix if t["difficulty"]})
    pages.append(("index.html", "eval.html", {
        "title": f"{results['env']} · {results['split']} · {len(results['tasks'])} tasks",
        "results": results, "names": names, "matrix": matrix, "labels": labels}))
    return pages


def _index_entries(index_folder: str | None) -> dict[str, str]:
    """The text of each retrievable entry of a row's index (what the agent was shown)."""
    if not index_folder or not (Path(index_folder) / "entries.jsonl").exists():
        return {}
    lines = (Path(index_folder) / "entries.jsonl").read_text().splitlines()
    return {entry["id"]: entry["text"] for entry in map(json.loads, lines)}


def _steps(trajectory: Trajectory, examples: dict[str, str]) -> list[dict[str, Any]]:
    return [{"n": k, "step": step,
             "retrieved": [(i, examples.get(i)) for i in step.retrieval.ids]
             if step.retrieval else []}
            for k, step in enumerate(trajectory.steps, start=1)]


# ---- synthesis -------------------------------------------------------------------------------
def synth_pages(folder: Path) -> list[Page]:
    """The index (stages, rejects by cause, tasks by document, trajectories, examples), one page
    per trajectory and one per example (its span highlighted in the source trajectory)."""
    docs = {d.id: d for d in JsonlStore(folder / "docs.jsonl", Document)}
    tasks = ([Task.model_validate(t) for t in json.loads((folder / "tasks.json").read_text())]
             if (folder / "tasks.json").exists() else [])
    trajectories = {t.id: t for t in JsonlStore(folder / "trajectories.jsonl", Trajectory)}
    examples = list(JsonlStore(folder / "examples.jsonl", Example))
    judgements = {j.id: j for j in JsonlStore(folder / "judgements.jsonl", Judgement)}
    failures = list(JsonlStore(folder / "backward_failures.jsonl", BackwardFailure))
    stats = (json.loads((folder / "stats.json").read_text())
             if (folder / "stats.json").exists() else {"stages": {}})
    by_task = {t.task.id: t for t in trajectories.values()}
    from_trajectory: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        from_trajectory[example.trajectory_id].append(example)

    pages: list[Page] = []
    for trajectory in trajectories.values():
        pages.append((f"trajectories/{trajectory.id}.html", "trajectory.html", {
            "title": f"trajectory {trajectory.id}", "trajectory": trajectory,
            "steps": _steps(trajectory, {}), "span": None,
            "examples": [(e, judgements.get(e.id)) for e in from_trajectory[trajectory.id]]}))
    for example in examples:
        source = trajectories.get(example.trajectory_id)
        pages.append((f"examples/{example.id}.html", "example.html", {
            "title": f"example {example.id}", "example": example,
            "judgement": judgements.get(example.id), "trajectory": source,
            "steps": _steps(source, {}) if source else [], "span": example.span}))

    # Every task the generator proposed, by document: kept for rollout or not (near-duplicate,
    # contaminated, beyond max_tasks), with its trajectory where there is one.
    kept = {(t.doc_id, t.instruction): t for t in tasks}
    documents = []
    for record in JsonlStore(folder / "taskgen.jsonl", TaskGenRecord):
        proposed = []
        for instruction in record.tasks:
            task = kept.get((record.id, instruction))
            proposed.append((instruction, task is not None,
                             by_task.get(task.id) if task else None))
        documents.append((docs.get(record.id), record.error, proposed))
    pages.append(("index.html", "synth.html", {
        "title": f"synthesis · {folder.name}", "stages": stats.get("stages", {}),
        # Spending summed over every invocation (a dataset grown over several sessions).
        "usage": stats.get("all_runs", {}).get("stages", stats.get("stages", {})),
        "all_runs": stats.get("all_runs"),
        "documents": documents, "trajectories": list(trajectories.values()),
        "examples": [(e, judgements.get(e.id)) for e in examples],
        "rejects": rejects_by_cause(judgements.values(), failures)}))
    return pages
