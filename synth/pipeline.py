"""``lbi synth``: docs → tasks → rollouts → backward construction → filter → dataset.

Every stage appends its results to a JSONL store in ``output_dir`` keyed by a content hash and
skips what is already there, so a run killed at any moment resumes without losing or repeating
finished work. Budgets (calls, cost, wall time) stop a run cleanly; progress bars per stage; a
final stats table (also in ``stats.json`` and the dataset card).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from rich.console import Console

from lbi.agent.llm import LLM, Budget, LLMConfig, default_concurrency
from lbi.agent.loop import Agent, AgentConfig
from lbi.agent.runner import StageModels, Work, make_executor
from lbi.envs import splits
from lbi.envs.base import check_infrastructure
from lbi.errors import BudgetExceeded, ConfigError
from lbi.io import lock_dir
from lbi.protocols import ChatModel, Environment
from lbi.redact import redact_rows
from lbi.synth import backward, export, taskgen, work
from lbi.synth.card import dataset_card
from lbi.synth.config import SynthConfig
from lbi.synth.decontam import Decontaminator
from lbi.synth.filter import Judgement, distractors_for
from lbi.synth.sft import step_conversations
from lbi.synth.store import JsonlStore, write_json
from lbi.tracking import WandbRun, start_run
from lbi.types import Document, Example, Task, Trajectory, content_id, utc_now

T = TypeVar("T")

STAGES = ("docs", "taskgen", "rollouts", "backward", "filter", "export")
"""In order; each resumes from the stores of the ones before it."""


class BackwardFailure(BaseModel):
    """A span whose instruction could not be written (kept so that reruns skip it)."""

    id: str
    error: str


def rejects_by_cause(judgements: Iterable[Judgement],
                     failures: Iterable[BackwardFailure]) -> list[tuple[str, int]]:
    """How many candidates each cause removed, most first: backward construction's refusals (by
    the reason's first words), then the filter's decontamination, environment check and
    committee."""
    causes: Counter[str] = Counter()
    for failure in failures:
        causes[f"backward: {failure.error.split(':')[0]}"] += 1
    for judgement in judgements:
        if not judgement.accepted:
            causes[f"filter: {judgement.rejected_by or 'committee'}"] += 1
    return causes.most_common()


class Synthesis:
    """One synthesis run over ``config``; call ``run()``."""

    def __init__(self, config: SynthConfig, console: Console | None = None,
                 make_model: Callable[[LLMConfig, Budget], ChatModel] = LLM) -> None:
        """``make_model`` builds each role's model (tests pass scripted ones)."""
        self.config = config
        self.make_model = make_model
        self.out = config.output_dir
        self.console = console or Console()
        self.budget = Budget(config.budget.max_calls, config.budget.max_cost)
        self.deadline = (time.monotonic() + config.budget.max_wall_s
                         if config.budget.max_wall_s else None)
        self.executor = make_executor(
            config.executor, config.env, config.env_args,
            config.rollout.concurrency or default_concurrency(config.models.agent), make_model)
        self.stats: dict[str, Any] = {"stages": {}}
        self.stopped_by: str | None = None
        """Why the run stopped early (a budget, a failing endpoint), if it did."""
        self.lost: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        """Items per stage whose model request was refused (e.g. too long): skipped, counted."""
        """Items per stage left unfinished because their model call failed (retried on the
        next run); a run with any is incomplete and exports nothing."""
        self.started = time.perf_counter()

    # ---- helpers ------------------------------------------------------------------------------
    def env(self) -> Environment:
        """This thread's environment instance (environments are not shared between threads)."""
        return self.executor.env()

    def _check_time(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BudgetExceeded(f"time budget used up ({self.config.budget.max_wall_s:g}s). "
                                 "Finished work is saved; rerun (or raise max_wall_s) to go on.")

    def _map(self, items: list[T], work: Work, on_result: Callable[[T, Any], object],
             models: StageModels, description: str) -> None:
        """``work`` over ``items`` on the executor, ``on_result`` storing each result. When a
        budget runs out or the endpoint keeps failing, no new item starts (in this or a later
        stage); what finished is kept and the later stages still collect and export it."""
        if not items or self.stopped_by:
            return
        outcome = self.executor.map(items, work, on_result, description=description,
                                    models=models,
                                    console=self.console, before=self._check_time)
        for count, failures in ((outcome.lost, self.lost), (outcome.rejected, self.rejected)):
            if count:
                failures[description] = failures.get(description, 0) + count
        self.stopped_by = outcome.stopped_by

    def _stage(self, name: str, budget: Budget, started: float, **counts: Any) -> None:
        self.stats["stages"][name] = {**counts, **budget.summary(),
                                      "wall_s": round(time.perf_counter() - started, 1)}

    # ---- stages -------------------------------------------------------------------------------
    def documents(self) -> list[Document]:
        """The chosen documents (a larger max_docs on a rerun adds documents, keeps the rest)."""
        store = JsonlStore(self.out / "docs.jsonl", Document)
        done = self.out / "docs.done"
        seed = self.config.docs.seed
        if done.exists() and (before := json.loads(done.read_text())).get("seed") != seed:
            raise ConfigError(f"{self.out} was started with docs.seed={before.get('seed')}; "
                              "use a new output_dir or restore it.")
        with self.console.status("reading the documentation…"):
            chosen = taskgen.select_documents(list(self.env().docs()),
                                              self.config.docs.max_docs, seed,
                                              self.config.docs.include)
        for doc in chosen:
            if doc.id not in store:
                store.append(doc)
        done.write_text(self.config.docs.model_dump_json())
        return chosen

    def tasks(self, docs: list[Document], decontam: Decontaminator) -> list[Task]:
        started, budget = time.perf_counter(), Budget(parent=self.budget)
        store = JsonlStore(self.out / "taskgen.jsonl", taskgen.TaskGenRecord)
        contexts = self.env().task_contexts()
        tc = self.config.taskgen
        done = [record.env_args for d in docs if (record := store.get(d.id))]
        self._map(taskgen.plan_contexts([d for d in docs if d.id not in store], contexts, done),
                  partial(work.generate_tasks, generator=self.config.models.generator,
                          n=tc.tasks_per_doc, doc_chars=tc.doc_chars),
                  lambda _, record: store.append(record), StageModels(self.make_model, budget),
                  "tasks from docs")
        records = [store.get(d.id) for d in docs if d.id in store]
        generated = taskgen.tasks_from_records([r for r in records if r], self.config.env)
        unique, duplicates = taskgen.dedupe(generated, self.config.taskgen.dedup_similarity)
        clean = [t for t in unique if not decontam.instruction_reason(t.instruction)]
        # A seeded hash order: raising max_tasks adds tasks and keeps every one chosen before,
        # so a dataset grows by rerunning with a larger limit.
        ranked = sorted(clean, key=lambda t: content_id(self.config.docs.seed, t.id))
        chosen = sorted(ranked[:self.config.rollout.max_tasks], key=lambda t: t.id)
        write_json(self.out / "tasks.json", [t.model_dump() for t in chosen])
        self._stage("taskgen", budget, started, documents=len(docs),
                    failed_documents=sum(1 for r in records if r and r.error),
                    tasks_generated=len(generated), near_duplicates=duplicates,
                    contaminated=len(unique) - len(clean), tasks_kept=len(chosen))
        return chosen

    def rollouts(self, tasks: list[Task]) -> list[Trajectory]:
        started, budget = time.perf_counter(), Budget(parent=self.budget)
        store = JsonlStore(self.out / "trajectories.jsonl", Trajectory)
        rc, agent = self.config.rollout, self.config.models.agent
        models = StageModels(self.make_model, budget)
        ids = {t.id: Agent.trajectory_id(t, models(agent).name, self.config.env) for t in tasks}
        self._map([t for t in tasks if ids[t.id] not in store],
                  partial(work.roll_out, agent=agent, limits=AgentConfig(
                      step_limit=rc.step_limit, episode_timeout_s=rc.episode_timeout_s)),
                  lambda _, traj: store.append(traj), models, "rollouts")
        trajectories = [store.get(ids[t.id]) for t in tasks if ids[t.id] in store]
        done = [t for t in trajectories if t is not None]
        self._stage("rollouts", budget, started, trajectories=len(done),
                    steps=sum(len(t.steps) for t in done),
                    terminations=dict(Counter(t.termination for t in done)),
                    scored=sum(t.reward is not None for t in done),
                    solved=sum(t.solved for t in done))
        return done

    def examples(self, trajectories: list[Trajectory]) -> list[Example]:
        started, budget = time.perf_counter(), Budget(parent=self.budget)
        store = JsonlStore(self.out / "examples.jsonl", Example)
        failures = JsonlStore(self.out / "backward_failures.jsonl", BackwardFailure)
        bc = self.config.backward
        jobs: list[tuple[Trajectory, tuple[int, int], Any, str]] = []
        repeated = spans = 0
        for traj in sorted(trajectories, key=lambda t: t.id):
            cleaned, removed = backward.drop_repeated_steps(traj)
            repeated += removed
            failed = (backward.failed_steps(cleaned, self.env().check_span)
                      if bc.skip_failed_steps else frozenset())
            chosen = backward.select_spans(len(cleaned.steps), bc.max_spans_per_trajectory,
                                           bc.bucket_weights, f"{bc.seed}:{traj.id}", failed)
            spans += len(chosen)
            for span in chosen:
                for kind in bc.kinds:
                    key = backward.example_id(cleaned, span, kind)
                    jobs.append((cleaned, span, kind, key))

        def keep(job: tuple[Trajectory, tuple[int, int], Any, str],
                 result: Example | str) -> None:
            if isinstance(result, str):
                failures.append(BackwardFailure(id=job[3], error=result))
            else:
                store.append(result)

        todo = [j for j in jobs if j[3] not in store and j[3] not in failures]
        self._map(todo, partial(work.construct, generator=self.config.models.generator), keep,
                  StageModels(self.make_model, budget), "backward construction")
        examples = [e for j in jobs if (e := store.get(j[3])) is not None]
        self._stage("backward", budget, started, repeated_steps_removed=repeated,
                    spans_selected=spans, examples_constructed=len(examples),
                    failed=sum(1 for j in jobs if j[3] in failures))
        return examples

    def judgements(self, examples: list[Example],
                   decontam: Decontaminator) -> dict[str, Judgement]:
        started, budget = time.perf_counter(), Budget(parent=self.budget)
        store = JsonlStore(self.out / "judgements.jsonl", Judgement)
        fc = self.config.filter
        todo = []
        for example in (e for e in examples if e.id not in store):
            if reason := decontam.example_reason(example):
                store.append(Judgement(id=example.id, accepted=False, votes=[],
                                       rejected_by="decontamination", reason=reason))
            else:
                todo.append((example, distractors_for(example, examples, fc.choices - 1)
                             if fc.choices >= 2 else []))
        self._map(todo, partial(work.judge, committee=self.config.models.committee,
                                rule=fc.rule, use_env_check=fc.use_env_check),
                  lambda _, judgement: store.append(judgement),
                  StageModels(self.make_model, budget), "committee filter")
        result = {e.id: j for e in examples if (j := store.get(e.id)) is not None}
        rejected = Counter(j.rejected_by for j in result.values() if not j.accepted)
        failed = Counter(name for j in result.values() for v in j.votes
                         for name, ok in v.criteria.items() if not ok)
        self._stage("filter", budget, started, judged=len(result),
                    accepted=sum(j.accepted for j in result.values()),
                    rejected_decontamination=rejected["decontamination"],
                    rejected_env_check=rejected["env_check"],
                    rejected_committee=rejected["committee"],
                    votes_failing_each_criterion=dict(sorted(failed.items())))
        return result

    def export(self, trajectories: list[Trajectory], examples: list[Example],
               judgements: dict[str, Judgement], decontam: Decontaminator) -> Path:
        # Rollouts stored before trajectories kept their action description get the
        # environment's current one.
        current = self.env().action_space
        trajectories = [t if t.action_space else t.model_copy(update={"action_space": current})
                        for t in trajectories]
        accepted = [e.model_copy(update={"votes": judgements[e.id].votes,
                                         "action_space": e.action_space or current})
                    for e in examples if e.id in judgements and judgements[e.id].accepted]
        sft_rows = [{"id": f"{e.id}-{k}", "example_id": e.id, "kind": e.kind, "messages": m}
                    for e in accepted for k, m in enumerate(step_conversations(e))]
        # The data-distill baseline: the same rollouts with their original tasks (repeated
        # steps removed as for every example; no backward construction, no committee).
        originals = [backward.original_example(backward.drop_repeated_steps(t)[0])
                     for t in sorted(trajectories, key=lambda t: t.id) if t.steps]
        distill = [e for e in originals if not decontam.example_reason(e)]
        counts = {"trajectories": len(trajectories), "examples": len(accepted),
                  "distill": len(distill), "distill_contaminated": len(originals) - len(distill),
                  "sft": len(sft_rows)}
        tables = [[export.trajectory_row(t) for t in trajectories],
                  [export.example_row(e) for e in accepted],
                  [export.example_row(e) for e in distill], sft_rows]
        # The last line of defence: credentials that reached the data any other way.
        redacted = [redact_rows(rows) for rows in tables]
        counts["redacted_secrets"] = sum(n for _, n in redacted)
        self._summarize(counts)
        dataset = export.build_dataset(*(rows for rows, _ in redacted))
        card = dataset_card(self.config, self.stats, counts,
                            run_link=self.tracker.link if self.tracker else None)
        return export.save_dataset(dataset, card, self.config.dataset_dir or self.out / "dataset")

    # ---- the run ------------------------------------------------------------------------------
    def plan(self, num_docs: int) -> dict[str, int]:
        """Upper bounds on the LLM calls of each stage, known before any call is made."""
        c = self.config
        tasks = num_docs * c.taskgen.tasks_per_doc
        if c.rollout.max_tasks is not None:
            tasks = min(tasks, c.rollout.max_tasks)
        examples = tasks * c.backward.max_spans_per_trajectory * len(c.backward.kinds)
        return {"taskgen": num_docs, "rollouts": tasks * c.rollout.step_limit,
                "backward": examples, "filter": examples * len(c.models.committee)}

    def run(self, until: str = "export") -> Path | None:
        """The stages up to and including ``until`` (one of STAGES); returns the dataset folder
        when the export ran (also when a budget stopped the run early)."""
        if until not in STAGES:
            raise ConfigError(f"unknown stage {until!r}; stages: {', '.join(STAGES)}")
        lock = lock_dir(self.out, "lbi synth")
        self.tracker = None
        try:
            self.tracker = start_run(self.config.report_to, "synth", self.config, self.out)
            if until not in ("docs", "taskgen"):
                check_infrastructure(self.env())
            eval_tasks = self.env().benchmark_tasks()  # both splits: dev and test
            split_of = splits.assign_splits(eval_tasks)
            self.stats["decontaminated_against"] = {
                "dev": sum(s == "dev" for s in split_of.values()),
                "test": sum(s == "test" for s in split_of.values())}
            decontam = Decontaminator(eval_tasks, self.config.decontam.ngram,
                                      self.config.decontam.max_overlap)
            docs = self.documents()
            plan = self.plan(len(docs))
            self.stats["planned_max_calls"] = plan | {"total": sum(plan.values())}
            self.console.print(f"plan: at most {sum(plan.values())} LLM calls ({plan}; rollouts "
                               "count one call per step, format re-asks excluded)")
            if until == "docs":
                return None
            tasks = self.tasks(docs, decontam)
            if until == "taskgen":
                return None
            trajectories = self.rollouts(tasks)
            if until == "rollouts":
                return None
            examples = self.examples(trajectories)
            if until == "backward":
                return None
            judgements = self.judgements(examples, decontam)
            if until == "filter" or self.lost:
                return None
            return self.export(trajectories, examples, judgements, decontam)
        finally:
            self.stats.setdefault("stopped_by_budget", self.stopped_by)
            self.stats["lost_to_endpoint_failures"] = dict(self.lost)
            self.stats["requests_rejected"] = dict(self.rejected)
            self.stats["wall_s"] = round(time.perf_counter() - self.started, 1)
            write_json(self.out / "stats.json", self.stats)
            with (self.out / RUNS_FILE).open("a") as runs:
                runs.write(json.dumps(self._run_record()) + "\n")
            if self.tracker:
                self._track(self.tracker)
            self.executor.close()
            lock.close()

    def _track(self, tracker: WandbRun) -> None:
        """The run's stats, stages, rejects by cause and a sample of examples with their
        votes, to W&B."""
        tracker.summary(self.stats)
        stages = self.stats.get("all_runs", {}).get("stages", {})
        tracker.table("stages", ["stage", "counts", "calls", "cache_hits", "input_tokens",
                                 "output_tokens", "llm_seconds", "wall_s (all runs)"],
                      [[name, json.dumps(counts, default=str),
                        *(stages.get(name, counts).get(k, 0) for k in _COUNTED)]
                       for name, counts in self.stats.get("stages", {}).items()])
        judgements = {j.id: j for j in JsonlStore(self.out / "judgements.jsonl", Judgement)}
        failures = JsonlStore(self.out / "backward_failures.jsonl", BackwardFailure)
        tracker.table("rejects_by_cause", ["cause", "candidates"],
                      [list(r) for r in rejects_by_cause(judgements.values(), failures)])
        sample = list(JsonlStore(self.out / "examples.jsonl", Example))[:100]
        tracker.table("examples", ["id", "instruction", "kind", "steps", "decision", "votes"], [
            [e.id, e.instruction, e.kind, e.span[1] - e.span[0],
             ("accepted" if judgements[e.id].accepted else
              f"rejected: {judgements[e.id].rejected_by or 'committee'}")
             if e.id in judgements else "not judged",
             "; ".join(f"{'yes' if v.accept else 'no'}: {v.reason}"
                       for v in (judgements[e.id].votes if e.id in judgements else []))]
            for e in sample])
        tracker.finish()

    def _summarize(self, counts: dict[str, int]) -> None:
        wall = time.perf_counter() - self.started
        total = self.budget.summary()
        self.stats.update({
            "stopped_by_budget": self.stopped_by,
            "counts": counts, "llm_total": total, "wall_s": round(wall, 1),
            "calls_per_accepted_example": (
                round((total["calls"] - total["cache_hits"]) / counts["examples"], 2)
                if counts["examples"] else None),
            "llm_wait_share": round(total["llm_seconds"] / wall, 3) if wall else None,
        })
        self.stats["all_runs"] = all_runs(
            [*_read_runs(self.out / RUNS_FILE), self._run_record()], counts["examples"])

    def _run_record(self) -> dict[str, Any]:
        """What this invocation spent, per stage (appended to RUNS_FILE when it ends, also when
        it is stopped: the spend of a stage that did not finish is counted as ``unfinished``)."""
        wall = round(time.perf_counter() - self.started, 1)
        stages = {name: {k: values.get(k, 0) for k in _COUNTED}
                  for name, values in self.stats["stages"].items()}
        spent = self.budget.summary()
        unfinished = {k: round(spent[k] - sum(s[k] for s in stages.values()), 2)
                      for k in _COUNTED if k != "wall_s"}
        if unfinished["calls"] > 0:
            unfinished["wall_s"] = round(wall - sum(s["wall_s"] for s in stages.values()), 1)
            stages["unfinished"] = unfinished
        return {"finished": utc_now(), "wall_s": wall, "stages": stages}


RUNS_FILE = "runs.jsonl"
"""One line per invocation of a synthesis run: a dataset grown over several sessions is
accounted for as a whole."""
_COUNTED = ("calls", "cache_hits", "input_tokens", "output_tokens", "llm_seconds", "wall_s")


def _read_runs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def all_runs(runs: list[dict[str, Any]], accepted: int) -> dict[str, Any]:
    """Every invocation's spending summed per stage, with the yield of the whole dataset:
    accepted examples per hour of wall time and LLM calls per accepted example (calls the model
    answered: a pass that rebuilds a stage from the response cache costs none)."""
    stages: dict[str, dict[str, float]] = {}
    for run in runs:
        for name, values in run["stages"].items():
            into = stages.setdefault(name, dict.fromkeys(_COUNTED, 0))
            for key in _COUNTED:
                into[key] = round(into[key] + values.get(key, 0), 2)
    wall = sum(run["wall_s"] for run in runs)
    calls = sum(values["calls"] - values["cache_hits"] for values in stages.values())
    return {"invocations": len(runs), "wall_s": round(wall, 1), "stages": stages,
            "accepted_examples": accepted,
            "accepted_per_hour": round(accepted * 3600 / wall, 1) if wall else None,
            "calls_per_accepted_example": round(calls / accepted, 2) if accepted else None}


def stats_rows(stats: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(metric, value) rows for the final table."""
    for stage, values in stats.get("stages", {}).items():
        for key, value in values.items():
            yield f"{stage}.{key}", str(value)
    for key in ("stopped_by_budget", "planned_max_calls", "counts", "llm_total",
                "calls_per_accepted_example", "llm_wait_share", "wall_s", "all_runs"):
        if key in stats:
            yield key, str(stats[key])
