"""Stage 1: tasks from documentation (self-instruct, docs/method.md)."""

from __future__ import annotations

import difflib
import fnmatch
import json
from collections import Counter

from pydantic import BaseModel

from lbi.agent.prompts import cut_text
from lbi.envs.base import TaskContext
from lbi.protocols import ChatModel, Environment
from lbi.synth.prompts import TASKGEN, TASKS_SCHEMA, json_format, parse_tasks
from lbi.types import Document, LLMCall, Task, content_id


class TaskGenRecord(BaseModel):
    """What the generator proposed for one document (the resume unit of this stage)."""

    id: str
    """The document id."""
    env_args: dict
    raw: str = ""
    tasks: list[str] = []
    error: str | None = None
    llm: LLMCall | None = None


def select_documents(docs: list[Document], max_docs: int | None, seed: int,
                     include: list[str] = ()) -> list[Document]:
    """A deterministic sample of documents (all of them when ``max_docs`` is None), sorted by
    id. The sample is a prefix of one seeded order: a larger ``max_docs`` keeps every document
    a smaller one chose. Documents whose title or source matches an ``include`` pattern
    (fnmatch, case-insensitive) come first in that order, so they are always chosen."""
    def wanted(doc: Document) -> bool:
        return any(fnmatch.fnmatch(text.lower(), pattern.lower())
                   for pattern in include for text in (doc.title, doc.source))

    ranked = sorted(docs, key=lambda d: (not wanted(d), content_id(seed, d.id)))
    return sorted(ranked[:max_docs], key=lambda d: d.id)


def context_for(doc: Document, contexts: list[TaskContext],
                used: Counter[str] | None = None) -> TaskContext | None:
    """The environment set-up a document's tasks target: the one the document is about, else,
    going round the contexts from a stable start given by the document id, the first that the
    fewest documents target so far (``used``: documents per context, keyed by its ``env_args``
    as JSON)."""
    if not contexts:
        return None
    claimed = [c for c in contexts if c.covers(doc.source)]
    if claimed:
        return claimed[0]
    try:
        number = int(doc.id, 16)
    except ValueError:  # an id that is not a content hash (e.g. "calc-guide")
        number = int(content_id(doc.id), 16)
    start = number % len(contexts)
    ring = contexts[start:] + contexts[:start]
    return min(ring, key=lambda c: used[_context_key(c.env_args)]) if used is not None else ring[0]


def _context_key(env_args: dict) -> str:
    return json.dumps(env_args, sort_keys=True)


def plan_contexts(docs: list[Document], contexts: list[TaskContext],
                  done: list[dict]) -> list[tuple[Document, TaskContext | None]]:
    """The context of each document in ``docs`` (in order), spread evenly: ``done`` holds the
    ``env_args`` of documents whose tasks were generated before (a grown or resumed run), so a
    database or file system that chance left with few documents is chosen first. With a hash
    alone, 140 SQL documents over 21 databases gave one database a single task and another 27."""
    used = Counter(_context_key(env_args) for env_args in done)
    planned = []
    for doc in docs:
        context = context_for(doc, contexts, used)
        if context is not None:
            used[_context_key(context.env_args)] += 1
        planned.append((doc, context))
    return planned


def generate_for_document(llm: ChatModel, env: Environment, doc: Document, n: int,
                          context: TaskContext | None, doc_chars: int = 3000) -> TaskGenRecord:
    """Ask the generator for ``n`` tasks based on ``doc``. An unparsable answer is recorded; a
    failed call (LLMCallFailed) is raised, so that nothing is stored and a rerun asks again."""
    prompt = TASKGEN.format(
        env=env.name, title=doc.title, doc=cut_text(doc.text, doc_chars), n=n,
        context=(f"The tasks will be done here:\n{context.description}" if context else ""),
    )
    env_args = context.env_args if context else {}
    out = llm.complete([{"role": "user", "content": prompt}],
                       response_format=json_format(TASKS_SCHEMA))
    tasks = parse_tasks(out.text)[:n]
    return TaskGenRecord(id=doc.id, env_args=env_args, raw=out.text, tasks=tasks, llm=out.call,
                         error=None if tasks else "no task could be parsed")


def dedupe(tasks: list[Task], threshold: float) -> tuple[list[Task], int]:
    """Drop tasks whose instruction is near-identical to an earlier one; returns (kept, dropped)."""
    kept: list[Task] = []
    seen: list[str] = []
    for task in tasks:
        text = " ".join(task.instruction.lower().split())
        matcher = difflib.SequenceMatcher(a=text, autojunk=False)
        duplicate = False
        for other in seen:
            matcher.set_seq2(other)
            if matcher.real_quick_ratio() >= threshold and matcher.ratio() >= threshold:
                duplicate = True
                break
        if not duplicate:
            kept.append(task)
            seen.append(text)
    return kept, len(tasks) - len(kept)


def tasks_from_records(records: list[TaskGenRecord], env_name: str) -> list[Task]:
    """Tasks (origin ``doc``) from the generator's records, in a stable order."""
    tasks = []
    for rec in sorted(records, key=lambda r: r.id):
        for text in rec.tasks:
            tasks.append(Task(id=content_id(rec.id, rec.env_args, text), env=env_name,
                              instruction=text, origin="doc", doc_id=rec.id,
                              env_args=rec.env_args))
    return tasks
