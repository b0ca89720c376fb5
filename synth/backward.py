"""Stage 3: backward construction (docs/method.md).

For spans 0 <= i < j <= n of a trajectory, the sub-trajectory (o_i, a_{i+1}, ..., a_j, o_j)
gets new instructions: an *abstraction* (a task it accomplishes) and a *summary*
("Replicate the following: ..."). All n(n+1)/2 spans are enumerated; a deterministic, bucketed
subsample keeps the cost known before the run.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from difflib import SequenceMatcher
from typing import Literal

from lbi.protocols import ChatModel
from lbi.synth.prompts import (
    ABSTRACTION,
    SUMMARY,
    SUMMARY_PREFIX,
    parse_instruction,
    render_trajectory,
)
from lbi.types import Example, Step, Trajectory, content_id

Bucket = Literal["short", "medium", "long"]
_ECHO = re.compile(r"\b(OBSERVATION|ACTION) \d+:", re.I)
_TOKEN = re.compile(r"[a-z0-9_]+")
BUCKETS: tuple[Bucket, ...] = ("short", "medium", "long")


def bucket_of(length: int) -> Bucket:
    """short (<5 steps), medium (5-9), long (>=10): the paper's Table 5 buckets."""
    return "short" if length < 5 else "medium" if length < 10 else "long"


def all_spans(n: int) -> list[tuple[int, int]]:
    """Every (i, j) with 0 <= i < j <= n: n(n+1)/2 spans."""
    return [(i, j) for i in range(n) for j in range(i + 1, n + 1)]


def select_spans(n: int, cap: int, weights: dict[Bucket, float], seed: str,
                 failed: frozenset[int] = frozenset()) -> list[tuple[int, int]]:
    """At most ``cap`` spans of a trajectory with ``n`` steps, spread over the length buckets in
    proportion to ``weights``; the same arguments always give the same spans. Spans holding a
    step in ``failed`` (indexes of actions that failed) are never chosen."""
    rng = random.Random(seed)
    pools: dict[Bucket, list[tuple[int, int]]] = {b: [] for b in BUCKETS}
    for span in all_spans(n):
        if not failed.intersection(range(*span)):
            pools[bucket_of(span[1] - span[0])].append(span)
    for pool in pools.values():
        rng.shuffle(pool)
    chosen: list[tuple[int, int]] = []
    credit = dict.fromkeys(BUCKETS, 0.0)
    active = [b for b in BUCKETS if pools[b] and weights.get(b, 0) > 0]
    while len(chosen) < cap and active:
        for b in active:
            credit[b] += weights[b]
        best = max(active, key=lambda b: credit[b])
        credit[best] -= sum(weights[b] for b in active)
        chosen.append(pools[best].pop())
        active = [b for b in active if pools[b]]
    return sorted(chosen)


def drop_repeated_steps(traj: Trajectory) -> tuple[Trajectory, int]:
    """Remove each step whose (action, resulting observation) repeats the previous step's
    (docs/method.md: an invalid action or one with no effect), and a final ``stop`` (it ends
    the episode and does nothing). Returns (trajectory, removed)."""
    obs = traj.observations
    kept: list[Step] = []
    removed = 0
    for k, step in enumerate(traj.steps):
        if k > 0 and step.action == traj.steps[k - 1].action and obs[k + 1] == obs[k]:
            removed += 1
            continue
        kept.append(step)
    final = traj.final_observation
    if kept and kept[-1].action.strip().lower() == "stop":
        final = kept.pop().observation  # o_n becomes the observation the stop answered
        removed += 1
    return traj.model_copy(update={"steps": kept, "final_observation": final}), removed


_LABEL = re.compile(r"^[A-Za-z ]{1,20}:\s*")


def _restates_an_unreached_goal(instruction: str, first_observation: str, reached: bool) -> bool:
    """Whether the instruction is a line of the span's first observation written back (the goal a
    page states, "Page goal: Find Clarabelle's email and make it important.") while the span does
    not reach it: the generator read the page, not the actions (in the first web run, 36 of 89
    examples, of which 29 ended without the page's reward)."""
    said = _normalized(instruction)
    if len(said.split()) < 4 or reached:
        return False
    lines = (_normalized(_LABEL.sub("", line)) for line in first_observation.splitlines())
    return any(SequenceMatcher(None, said, line).ratio() >= 0.8 for line in lines
               if len(line.split()) >= 4)


def _without_preamble(text: str) -> str:
    """The request itself when the answer introduces it ("… could have asked: "…""): what is
    quoted in the paragraph after the preamble, else that paragraph (small models go on with a
    comment on the request after a blank line)."""
    stripped = _PREAMBLE.sub("", text, count=1)
    if stripped == text:
        return text
    request = stripped.strip().split("\n\n")[0]
    return quoted.group(1) if (quoted := _QUOTED.search(request)) else request


def _request_of(answer: str) -> str:
    """The request in an answer: the one it states after a preamble ("… could have asked: …"),
    unless that is code; else the goal of advice ("To X, you could run …" asks to X); else the
    answer itself."""
    stated = _without_preamble(answer)
    if stated != answer and "```" not in stated:
        return stated
    return _without_preamble(_goal_of_advice(answer))


def _normalized(text: str) -> str:
    return " ".join(text.lower().replace(";", " ").split())


def _repeats_an_action(instruction: str, steps: list[Step]) -> bool:
    """An instruction that contains one of the span's actions (or is contained in one), or
    whose words are mostly words of one action (a query rewritten, a command with other
    arguments: "SELECT Name FROM city WHERE Population > 1e7"), is an action written back, not
    a request. Requests in words share few tokens with the actions that fulfil them."""
    said = _normalized(instruction)
    words = set(_TOKEN.findall(said))
    for step in steps:
        action = _normalized(step.action)
        if len(action) >= 8 and (action in said or (len(said) >= 8 and said in action)):
            return True
        # Six words at least: a short request shares its few words with a command legitimately
        # ("Find .txt files in /workspace" for find /workspace -name '*.txt').
        if len(words) >= 6 and len(words & set(_TOKEN.findall(action))) > len(words) / 2:
            return True
    return False


_WORD = re.compile(r"[a-z0-9]{4,}")
_GENERIC = frozenset((
    "what", "which", "where", "when", "with", "that", "this", "these", "those", "from", "have",
    "many", "much", "list", "show", "find", "give", "return", "each", "every", "their", "there",
    "them", "they", "about", "would", "could", "should", "like", "know", "want", "need",
    "details", "information", "required", "specific", "please", "into", "than", "then", "also",
    "only", "some", "more", "most", "least", "total", "number", "numbers", "name", "names",
    "value", "values", "does", "make", "sure", "using", "used"))


def _grounded(instruction: str, steps: list[Step], final_observation: str) -> bool:
    """Whether the instruction names at least one thing of the span: a word of four letters or
    more, beyond question words and filler, that starts a word of the span's actions or
    observations (its first five letters, so plurals and inflections match). A request that
    shares no such word with what was done ("What details are required?") is not about it."""
    span_text = " ".join([*(s.observation + " " + s.action for s in steps), final_observation])
    stems = {word[:5] for word in _WORD.findall(span_text.lower())}
    return any(word[:5] in stems for word in _WORD.findall(instruction.lower())
               if word not in _GENERIC)


def failed_steps(traj: Trajectory, check: Callable[[list[Step], str], bool | None]
                 ) -> frozenset[int]:
    """Indexes of the steps whose action the environment's span check rejects on its own (an
    error, a failed command): a span through one is a detour, not a demonstration."""
    observations = traj.observations
    return frozenset(k for k, step in enumerate(traj.steps)
                     if check([step], observations[k + 1]) is False)


_META = re.compile(r"\b(the agent|the user|sequence of (actions|observations)|trajectory|"
                   r"(action|observation)s? \d|the (above|following) (actions|steps)|"
                   r"you (could|can|would|should|might)|did you|do you|"
                   r"what (command|action|request)s?|(last|final|previous) observation|"
                   r"the output of the command)\b", re.I)
"""An answer about the session ("What request was made …", "… in the last observation"), a
question to the user, or advice on how to do it: not a request."""
_PREAMBLE = re.compile(r"^.{0,240}?(?:(?:(?:following|this) (?:task )?(?:instruction|request)"
                       r"(?: is)?|could have (?:asked|requested)(?: the following)?)\s*:"
                       r"|could have (?:made|given|written|issued) (?:the|a|this)(?: following)? "
                       r"(?:request|instruction)(?:\s*:|(?=\s*[\"“])))\s*", re.I | re.S)
"""What introduces the request in an answer: "the following request is:", "could have asked:",
"could have made the request "…"" (a colon or a quote must follow, so that "could have made a
request that …" is not taken for one)."""
_QUOTED = re.compile(r"[\"“]([^\"”]{15,})[\"”]")
_HOW_TO = re.compile(
    r"to ((?:(?!\b(?:observation|outcome|result|output)s?\b).)+?),\s+"
    r"(?:(?:you|(?:the|a) user|one|we)\s+(?:could|can|would|should|might|may)(?:\s+have)?\s+)?"
    r"(?:used?|run|ran|issued?|typed?|tried|try|executed?|enter(?:ed)?|ask(?:ed)?|"
    r"request(?:ed)?|made the following request)\b.*", re.I | re.S)
"""Advice on how to do something ("To list the files in /tmp, you could run ls /tmp"; "To
list all files, including hidden ones, use the following command:"): the request is its goal."""
_NAME = re.compile(r"`([^`\s]+)`")
"""Inline code around one word (a path, a file name) marks a name, not code."""


def _goal_of_advice(text: str) -> str:
    """The request in an answer that is advice on how to do it (small generators often answer
    so): "To list all files in /workspace, you could have used the command `ls`" asks to "List
    all files in /workspace." An answer that quotes a request keeps it (``_without_preamble``)."""
    if _QUOTED.search(text) or not (advice := _HOW_TO.fullmatch(text)):
        return text
    goal = advice.group(1).strip()
    return goal[0].upper() + goal[1:] + "."


def example_id(traj: Trajectory, span: tuple[int, int], kind: str) -> str:
    return content_id(traj.id, span, kind)


def original_example(traj: Trajectory) -> Example:
    """The data-distill baseline's example: the task it was given and the whole trajectory, with
    no backward construction (docs/method.md: the data-distill ablation)."""
    span = (0, len(traj.steps))
    return Example(
        id=example_id(traj, span, "original"), instruction=traj.task.instruction,
        kind="original", env=traj.task.env, trajectory_id=traj.id, span=span,
        env_args=traj.task.env_args, steps=traj.steps, final_observation=traj.final_observation,
        action_space=traj.action_space,
        provenance={"source_task_id": traj.task.id, "reward": traj.reward,
                    "termination": traj.termination},
    )


def construct(llm: ChatModel, traj: Trajectory, span: tuple[int, int],
              kind: Literal["abstraction", "summary"],
              goal_reached: Callable[[str], bool] | None = None) -> Example | str:
    """One example for a span, or why the generator's answer is unusable (a failed call is
    raised: it is not a result). ``goal_reached`` is the environment's optional hook: whether a
    final observation reports the goal its first observation states as reached."""
    steps, final = traj.span(*span)
    rendered = render_trajectory(steps, final)
    template = ABSTRACTION if kind == "abstraction" else SUMMARY
    prompt = template.format(env=traj.task.env, trajectory=rendered,
                             max_sentences=2 * len(steps) + 1)
    out = llm.complete([{"role": "user", "content": prompt}])
    instruction = parse_instruction(_request_of(out.text.strip()))
    instruction = _NAME.sub(r"\1", instruction)
    if len(instruction) < 10:
        return f"unusable instruction: {out.text[:200]!r}"
    if _ECHO.search(instruction):  # small models sometimes copy the rendered trajectory back
        return f"the answer echoes the trajectory: {out.text[:200]!r}"
    if kind == "abstraction" and _META.search(instruction):  # about the agent, not a task
        return f"the answer talks about the trajectory, not a task: {out.text[:200]!r}"
    if kind == "abstraction" and "`" in instruction:
        return f"the answer holds code, not a request: {out.text[:200]!r}"
    if kind == "abstraction" and _repeats_an_action(instruction, steps):
        return f"the answer is an action, not a request: {out.text[:200]!r}"
    if not _grounded(instruction, steps, final):
        return f"the answer names nothing of the trajectory: {out.text[:200]!r}"
    reached = goal_reached is not None and goal_reached(final)
    if _restates_an_unreached_goal(instruction, steps[0].observation, reached):
        return f"the answer restates a goal the span did not reach: {out.text[:200]!r}"
    if kind == "summary":
        instruction = SUMMARY_PREFIX + instruction
    return Example(
        id=example_id(traj, span, kind), instruction=instruction, kind=kind,
        env=traj.task.env, trajectory_id=traj.id, span=span, env_args=traj.task.env_args,
        steps=steps, final_observation=final, action_space=traj.action_space,
        provenance={"generator": llm.name, "source_task": traj.task.instruction,
                    "source_task_id": traj.task.id, "llm": out.call.model_dump()},
    )
