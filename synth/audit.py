"""Auditing a synthesis run: read a sample by hand, replay it, measure the committee.

``lbi audit --run <output_dir>`` draws a seeded sample of accepted and committee-rejected
examples, replays each one's source actions in a fresh environment (do the stored observations
come back?), and writes ``audit/sheet.md`` (each example rendered for reading) and
``audit/labels.yaml`` (one entry per example for the reader's verdict: does the instruction
match what the trajectory does?). Run it again once the labels are filled in: it reports the
committee against the reader (precision of what it accepted, the share of its rejections that
were good) beside the replay results, in ``audit/report.json``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import yaml

from lbi.protocols import Environment
from lbi.synth.filter import Judgement
from lbi.synth.prompts import render_trajectory
from lbi.synth.store import JsonlStore, write_json
from lbi.types import Example, Trajectory

Verdict = Literal["yes", "partly", "no"]
"""Does the instruction match what the trajectory does (``partly``: it does part of it, or
more)."""
VERDICTS: tuple[str, ...] = ("yes", "partly", "no")


def sample(out: Path, accepted: int, rejected: int,
           seed: int = 0) -> list[tuple[Example, Judgement]]:
    """Up to ``accepted`` accepted and ``rejected`` committee-rejected examples of a run."""
    examples = {e.id: e for e in JsonlStore(out / "examples.jsonl", Example)}
    judged = [j for j in JsonlStore(out / "judgements.jsonl", Judgement) if j.id in examples]
    rng = random.Random(seed)
    picked: list[Judgement] = []
    for wanted, group in ((accepted, [j for j in judged if j.accepted]),
                          (rejected, [j for j in judged if j.rejected_by == "committee"])):
        group.sort(key=lambda j: j.id)
        picked += rng.sample(group, min(wanted, len(group)))
    return [(examples[j.id], j) for j in picked]


def replay(env: Environment, trajectory: Trajectory, end: int) -> bool:
    """Whether the first ``end`` actions of ``trajectory``, replayed from a fresh reset, give
    back the stored observations o_0 .. o_end (whitespace at the ends ignored)."""
    stored = trajectory.observations
    seen = [env.reset(trajectory.task)]
    for step in trajectory.steps[:end]:
        seen.append(env.step(step.action)[0])
    return all(a.strip() == b.strip() for a, b in zip(seen, stored[:end + 1], strict=True))


def write_sheet(out: Path, env: Environment, items: list[tuple[Example, Judgement]]) -> Path:
    """Replay each sampled example and write the sheet and the labels template; returns the
    audit folder."""
    trajectories = JsonlStore(out / "trajectories.jsonl", Trajectory)
    folder = out / "audit"
    folder.mkdir(exist_ok=True)
    lines = [f"# Audit sample of {out}", "",
             "For each example: does the instruction match what the trajectory does? Write the "
             "verdict (yes / partly / no) and a note in labels.yaml.", ""]
    replays: dict[str, bool | None] = {}
    labels_path = folder / "labels.yaml"
    labels = _read_labels(labels_path)
    for k, (example, judgement) in enumerate(items, 1):
        source = trajectories.get(example.trajectory_id)
        replays[example.id] = replay(env, source, example.span[1]) if source else None
        votes = "; ".join(f"{'yes' if v.accept else 'no'} ({v.reason})" for v in judgement.votes)
        decision = "accepted" if judgement.accepted else "rejected"
        lines += [f"## {k}. `{example.id}` — committee {decision}", "",
                  f"**Instruction:** {example.instruction}", "",
                  f"Source task: {example.provenance.get('source_task', '?')} "
                  f"(span {example.span[0]}..{example.span[1]}, set-up {example.env_args}); "
                  f"replay reproduces the observations: {replays[example.id]}", "",
                  "```", render_trajectory(example.steps, example.final_observation, 600), "```",
                  "", f"Votes: {votes}", ""]
        labels.setdefault(example.id, {"verdict": None, "note": ""})
    (folder / "sheet.md").write_text("\n".join(lines))
    labels_path.write_text(yaml.safe_dump(labels, sort_keys=False, allow_unicode=True,
                                          width=100))
    write_json(folder / "replays.json", replays)
    return folder


def _read_labels(path: Path) -> dict[str, dict[str, Any]]:
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


def report(out: Path, items: list[tuple[Example, Judgement]]) -> dict[str, Any]:
    """The committee against the reader's labels, and the replay results, of a labelled sample
    (written to ``audit/report.json``)."""
    folder = out / "audit"
    labels = _read_labels(folder / "labels.yaml")
    replays = json.loads((folder / "replays.json").read_text())
    result: dict[str, Any] = {}
    for name, accepted in (("accepted", True), ("rejected", False)):
        group = [e.id for e, j in items if j.accepted == accepted]
        verdicts = Counter(str(labels.get(i, {}).get("verdict")) for i in group)
        labelled = sum(verdicts[v] for v in VERDICTS)
        result[name] = {"sampled": len(group), "labelled": labelled,
                        "verdicts": {v: verdicts[v] for v in VERDICTS},
                        "share_matching": round(verdicts["yes"] / labelled, 3) if labelled
                        else None,
                        "replay_reproduced": sum(replays.get(i) is True for i in group)}
    result["note"] = ("accepted.share_matching is the committee's precision against the reader; "
                      "rejected.share_matching is the share of its rejections the reader would "
                      "have kept")
    write_json(folder / "report.json", result)
    return result
