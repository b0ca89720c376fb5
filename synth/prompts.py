"""Every prompt the synthesis pipeline sends, and the lenient parsing of the answers.

The dataset card reproduces these templates, so a user can see exactly what produced the data.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lbi.types import Step

TASKGEN = """Here is a page of the documentation of the {env} environment.

=== DOCUMENTATION: {title} ===
{doc}
=== END OF DOCUMENTATION ===

{context}

Based on the documentation, give {n} different tasks that users frequently perform in this \
environment. Each task must be a concrete, self-contained request that can be completed here \
(refer only to files, tables, pages or values that exist there, as shown above), written \
in plain English as a user \
would ask it: a goal, not a command, query or code.
Answer with JSON only, in this format: {{"tasks": ["<task 1>", "<task 2>", ...]}}"""

ABSTRACTION = """Below is a sequence of observations and actions of an agent in the {env} \
environment.

{trajectory}

Write the one request a user could have made that this sequence of actions fulfils, so that \
the final observation is its answer or result. Say what to achieve, not which actions to \
take; refer only to things that appear above; do not mention the agent, the actions or the \
observations. Answer with the request only, in plain English: no code, command or query."""

SUMMARY = """Below is a sequence of observations and actions of an agent in the {env} \
environment.

{trajectory}

In your own words, describe in order what the agent looked at and what each action achieved, \
as steps someone could follow to do the same (e.g. "First look up which tables exist, then \
count the rows of the singer table."). Use at most {max_sentences} short sentences; do not copy \
the OBSERVATION or ACTION lines. Answer with the description only."""

SUMMARY_PREFIX = "Replicate the following: "

JUDGE = """You review training data for an agent in the {env} environment. Here is a \
trajectory the agent followed:

{trajectory}

INSTRUCTION: {instruction}

Judge the instruction and the trajectory on four criteria:
- aligned: the trajectory accomplishes the instruction;
- coherent: the actions are logical and do not contradict each other;
- natural: a human user might plausibly give this instruction and act this way;
- reasonable: the trajectory is neither over- nor under-complicated for the instruction, with no \
going back and forth.
Answer with JSON only: {{"aligned": true/false, "coherent": true/false, "natural": true/false, \
"reasonable": true/false, "reason": "<one sentence>"}}"""

CRITERIA = ("aligned", "coherent", "natural", "reasonable")

JUDGE_CHOICE = """You review training data for an agent in the {env} environment. Here is a \
trajectory the agent followed:

{trajectory}

Which one of these instructions does the trajectory accomplish?
{options}

Then judge the trajectory with the instruction you chose:
- coherent: the actions are logical and do not contradict each other;
- natural: a human user might plausibly give this instruction and act this way;
- reasonable: the trajectory is neither over- nor under-complicated for the instruction, with no \
going back and forth.
Answer with JSON only: {{"answer": "<letter>", "coherent": true/false, "natural": true/false, \
"reasonable": true/false, "reason": "<one sentence>"}}"""
"""The judge with the choice check (``filter.choices`` >= 2): 'aligned' becomes 'identified',
the judge picking the example's own instruction among instructions of other trajectories."""

CHOICE_CRITERIA = ("coherent", "natural", "reasonable")
IDENTIFIED = "identified"
"""The criterion of the choice check: the judge picked the example's own instruction."""

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {**{c: {"type": "boolean"} for c in CRITERIA}, "reason": {"type": "string"}},
    "required": [*CRITERIA, "reason"],
}
TASKS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tasks": {"type": "array", "items": {"type": "string"}}},
    "required": ["tasks"],
}


def judge_choice_schema(letters: str) -> dict[str, Any]:
    return {"type": "object",
            "properties": {"answer": {"type": "string", "enum": list(letters)},
                           **{c: {"type": "boolean"} for c in CHOICE_CRITERIA},
                           "reason": {"type": "string"}},
            "required": ["answer", *CHOICE_CRITERIA, "reason"]}


def json_format(schema: dict[str, Any]) -> dict[str, Any]:
    """``response_format`` asking for JSON of a schema (llama.cpp enforces it with a grammar)."""
    return {"type": "json_object", "schema": schema}


def render_trajectory(steps: list[Step], final_observation: str, obs_chars: int = 800) -> str:
    """A (sub-)trajectory as alternating OBSERVATION / ACTION lines, the final observation last."""
    def cut(text: str) -> str:
        return text if len(text) <= obs_chars else text[:obs_chars] + " …[cut]"

    lines = []
    for k, step in enumerate(steps):
        lines += [f"OBSERVATION {k}: {cut(step.observation)}",
                  f"ACTION {k + 1}: {step.described_action}"]
    lines.append(f"OBSERVATION {len(steps)}: {cut(final_observation)}")
    return "\n".join(lines)


def extract_json(text: str) -> Any:
    """The first JSON value in ``text`` (also inside code fences); ValueError if there is none."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(text)
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start, char in enumerate(candidate):
            if char in "{[":
                try:
                    return decoder.raw_decode(candidate[start:])[0]
                except json.JSONDecodeError:
                    continue
    raise ValueError(f"no JSON found in {text[:200]!r}")


def parse_tasks(text: str) -> list[str]:
    """Task strings from the generator's answer: JSON first, then a numbered or bulleted list."""
    try:
        data = extract_json(text)
        items = data.get("tasks", []) if isinstance(data, dict) else data
        tasks = [str(t).strip() for t in items if isinstance(t, str | int | float)]
    except ValueError:
        tasks = [m.group(1).strip() for m in
                 re.finditer(r"^\s*(?:\d+[.)]|[-*•])\s+(.+)$", text, re.M)]
    return [t for t in tasks if len(t) >= 10]


def parse_instruction(text: str) -> str:
    """A single instruction from an answer that may carry a label, quotes or a code fence."""
    text = re.sub(r"```\w*", "", text).strip()
    text = re.sub(r"^(task\s+)?(instruction|task|summary)\s*:\s*", "", text, flags=re.I)
    return text.strip().strip('"').strip()


def parse_judgement(text: str, names: tuple[str, ...] = CRITERIA,
                    letters: str = "") -> tuple[dict[str, bool], str, str]:
    """(criteria, reason, chosen letter); a criterion that is missing or not clearly true counts
    as false. With ``letters``, the answer must name one of them (ValueError otherwise)."""
    data = extract_json(text)
    if not isinstance(data, dict):
        raise ValueError("the judgement is not a JSON object")
    criteria = {c: data.get(c) is True or str(data.get(c)).lower() in {"true", "yes"}
                for c in names}
    letter = str(data.get("answer", "")).strip()[:1].upper()
    if letters and letter not in letters:
        raise ValueError(f"no option letter in {text[:100]!r}")
    return criteria, str(data.get("reason", "")).strip(), letter
