"""``lbi eval``: every agent configuration over the held-out tasks, resumable, one results table.

Each episode is saved as ``<output_dir>/episodes/<agent>/<task>.json`` as it runs; a rerun skips
the finished ones (so a killed evaluation loses at most the episodes in flight). An agent's
settings are recorded beside its episodes, and a changed configuration under the same name is an
error rather than a silently mixed row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from lbi.agent.llm import LLM, Budget, LLMConfig, default_concurrency, validate_model
from lbi.agent.retrieval import QUERY_PROMPT
from lbi.agent.runner import Executor, StageModels, finished_episode, make_executor
from lbi.envs import splits
from lbi.envs.base import check_infrastructure
from lbi.errors import ConfigError, EndpointFailed, ModelError
from lbi.eval import report, work
from lbi.eval.config import AgentSpec, EvalConfig, RetrievalConfig
from lbi.eval.corpora import Corpus, check_dataset, open_corpus
from lbi.io import atomic_write_text, lock_dir
from lbi.protocols import ChatModel, Environment
from lbi.redact import redact_config
from lbi.tracking import start_run
from lbi.types import Task, Trajectory, content_id

ModelFactory = Callable[[LLMConfig, Budget], ChatModel]


class Evaluation:
    """One evaluation run over ``config``; call ``run()``."""

    def __init__(self, config: EvalConfig, console: Console | None = None,
                 make_model: ModelFactory = LLM) -> None:
        self.config = config
        self.console = console or Console()
        self.make_model = make_model
        self.executor: Executor | None = None
        self._corpora: dict[tuple[str, str, Path | None], Corpus] = {}
        self.lost: dict[str, int] = {}
        """Episodes per agent left unfinished because the model endpoint failed."""

    def env(self) -> Environment:
        """An environment for the driver's own questions (tasks, docs)."""
        if self.executor is None:
            self.executor = make_executor(self.config.executor, self.config.env,
                                          self.config.env_args, self._workers(), self.make_model)
        return self.executor.env()

    def _workers(self) -> int:
        return self.config.concurrency or max(default_concurrency(self.config.model_for(a))
                                              for a in self.config.agents)

    def held_out_tasks(self) -> list[Task]:
        """The evaluated tasks: the config's split, its task ids, its first ``max_tasks``."""
        c = self.config
        kept = self.env().benchmark_tasks()
        tasks = splits.select(kept, c.split)
        # e.g. a shell task whose golds need a program this host lacks
        if absent := splits.not_kept(c.env, kept, c.split):
            self.console.print(f"[yellow]{len(absent)} task(s) of the {c.split!r} split are not "
                               f"usable on this machine ({', '.join(absent[:5])}"
                               f"{'…' if len(absent) > 5 else ''}): rows run "
                               "here are not comparable with rows run on all of them[/]")
        if c.tasks != "all":
            by_id = {t.id: t for t in tasks}
            unknown = [t for t in c.tasks if t not in by_id]
            if unknown:
                raise ConfigError(f"task ids {unknown} are not in the {c.split!r} split of env "
                                  f"{c.env}; `lbi tasks --env {c.env} --split {c.split}` lists "
                                  "them")
            tasks = [by_id[t] for t in c.tasks]
        return tasks[: c.max_tasks]

    def corpus(self, retrieval: RetrievalConfig, held_out: list[Task]) -> Corpus:
        dataset = self.config.dataset_for(retrieval)
        key = (retrieval.corpus, retrieval.embedder, dataset)
        if key not in self._corpora:
            with self.console.status(f"loading the embedder {retrieval.embedder}…"):
                embedder = work.embedder(retrieval.embedder)  # the one the episodes use
            self._corpora[key] = open_corpus(
                retrieval.corpus, dataset=dataset,
                cache_root=self.config.output_dir, env=self.env(), held_out=held_out,
                embedder=embedder, console=self.console)
        return self._corpora[key]

    def run(self, only: list[str] | None = None) -> dict[str, Any]:
        """Run the missing episodes of every agent (or of those named in ``only``); write
        results.json, results.md and results.png; return the results."""
        agents = self.config.agents
        if only:
            unknown = set(only) - {a.name for a in agents}
            if unknown:
                raise ConfigError(f"no agents named {sorted(unknown)} in the config; "
                                  f"there are: {', '.join(a.name for a in agents)}")
            agents = [a for a in agents if a.name in only]
        lock = tracker = None
        try:
            # Infrastructure first: without it no row can run, whatever the models.
            check_infrastructure(self.env())
            self.check_models(agents)
            lock = lock_dir(self.config.output_dir, "lbi eval")
            tracker = start_run(self.config.report_to, "eval", self.config,
                                self.config.output_dir)
            tasks = self.held_out_tasks()
            for agent in agents:
                if agent.retrieval:
                    check_dataset(agent.retrieval.corpus,
                                  self.config.dataset_for(agent.retrieval))
            for agent in agents:
                self.run_agent(agent, tasks)
        finally:
            if self.executor is not None:
                self.executor.close()
            if lock is not None:
                lock.close()
        results = report.summarize(self.config.env, self.config.split, tasks,
                                   self.saved_rows(tasks), self.reference(),
                                   self.config.step_limit,
                                   {a.name: a.compare_with for a in self.config.agents
                                    if a.compare_with})
        if tracker:
            results["wandb_run"] = tracker.link
            report.track(tracker, results)
        report.write(results, self.config.output_dir)
        if self.lost:
            raise EndpointFailed(self.lost, "episode(s)", " and their rows were not written")
        return results

    def saved_rows(self, tasks: list[Task]) -> list[dict[str, Any]]:
        """The rows of every configured agent with a complete result on exactly ``tasks`` (from
        this or earlier runs). A row saved for another task list is left out, with a note:
        rows are compared only on the same tasks."""
        rows = []
        for agent in self.config.agents:
            path = self._folder(agent) / "row.json"
            if not path.exists():
                continue
            row = json.loads(path.read_text())
            if row["tasks"] != [t.id for t in tasks]:
                self.console.print(f"[yellow]row {agent.name!r} left out:[/] it was run on "
                                   f"another task list ({len(row['tasks'])} tasks); rerun it "
                                   f"with --only {agent.name!r} to compare it on these")
                continue
            rows.append(row)
        return rows

    def reference(self) -> str | None:
        """The row the others are compared with: the configured one, else ``zero-shot``."""
        names = [a.name for a in self.config.agents]
        return self.config.reference or ("zero-shot" if "zero-shot" in names else None)

    def check_models(self, agents: list[AgentSpec]) -> None:
        """Fail before any episode if a row's model cannot run: a local model file missing
        (e.g. not trained yet), an unknown model, a missing API key."""
        for spec in agents:
            try:
                validate_model(self.config.model_for(spec))
            except ModelError as exc:
                raise ConfigError(f"agent {spec.name!r}: {exc}\nRun the other rows with "
                                  "--only NAME, or produce the model first.") from None

    def run_agent(self, spec: AgentSpec, tasks: list[Task]) -> dict[str, Any] | None:
        """All episodes of one agent configuration (finished ones are read back, not rerun).
        Returns its row, or None when episodes were left unfinished by a failing endpoint."""
        folder = self._folder(spec)
        # Decontaminated against the whole evaluated split, not only the tasks this run takes:
        # no example may hold a task the row is scored on, while another split's golds may
        # serve as examples (the upper-bound rows; synthesis keeps its data off every split).
        held_out = splits.select(self.env().benchmark_tasks(), self.config.split)
        corpus = self.corpus(spec.retrieval, held_out) if spec.retrieval else None
        settings = self._settings(spec, corpus)
        self._claim(folder, settings)
        (folder / "row.json").unlink(missing_ok=True)
        done = {t.id: traj for t in tasks
                if (traj := finished_episode(folder / f"{t.id}.json"))}
        todo = [t for t in tasks if t.id not in done]

        def keep(task: Task, traj: Trajectory) -> None:
            atomic_write_text(folder / f"{task.id}.json", traj.model_dump_json(indent=2))
            done[task.id] = traj

        local = self.config.executor.kind == "local"
        work_fn = partial(work.episode, name=spec.name, model=self.config.model_for(spec),
                          make_model=self.make_model, retrieval=spec.retrieval,
                          index_folder=str(corpus.folder) if corpus else None,
                          step_limit=self.config.step_limit,
                          episode_timeout_s=self.config.episode_timeout_s,
                          save_steps_to=str(folder) if local else None)
        self.env()  # the executor exists
        assert self.executor is not None
        # An episode makes its own model (its usage is recorded with it): no stage models.
        outcome = self.executor.map(todo, work_fn, keep, models=StageModels(self.make_model,
                                                                           Budget()),
                                    description=spec.name, console=self.console)
        if outcome.stopped_by:
            self.console.print(f"[yellow]{spec.name}: stopped early:[/] {outcome.stopped_by}")
        if len(done) < len(tasks):  # the endpoint failed: unfinished, rerun later
            self.lost[spec.name] = len(tasks) - len(done)
            return None
        trajectories = [done[t.id] for t in tasks]
        row = {"name": spec.name, **settings, "tasks": [t.id for t in tasks],
               "episodes_dir": str(folder),
               "decontaminated": corpus.decontaminated if corpus else None,
               "corpus_size": len(corpus.index.entries) if corpus else None,
               "index_folder": str(corpus.folder) if corpus else None,
               **report.metrics(trajectories)}
        atomic_write_text(folder / "row.json", json.dumps(row, indent=2, default=str))
        return row

    def _folder(self, spec: AgentSpec) -> Path:
        return self.config.output_dir / "episodes" / spec.slug

    def _settings(self, spec: AgentSpec, corpus: Corpus | None) -> dict[str, Any]:
        """What defines an agent's results: its model and retrieval (with what it retrieves
        from), plus the episode limits."""
        model = self.config.model_for(spec).model_dump(exclude={
            "timeout_s", "max_concurrency", "cache", "max_retries", "retry_backoff_s"})
        # the dataset is known by its content (the corpus fingerprint), not by its folder
        retrieval = spec.retrieval.model_dump(exclude={"dataset"}) if spec.retrieval else None
        if retrieval and corpus:  # a grown or redone dataset is another agent
            retrieval["corpus_fingerprint"] = corpus.fingerprint
        if retrieval and "model" in retrieval["sources"]:  # so is a reworded query prompt
            retrieval["query_prompt"] = content_id(QUERY_PROMPT)
        return {"model": redact_config(model), "retrieval": retrieval,
                "step_limit": self.config.step_limit, "env_args": self.config.env_args}

    @staticmethod
    def _claim(folder: Path, settings: dict[str, Any]) -> None:
        marker = folder / "agent.json"
        text = json.dumps(settings, indent=2, sort_keys=True, default=str)
        if marker.exists() and not _same_settings(json.loads(marker.read_text()),
                                                  json.loads(text)):
            raise ConfigError(f"the agent in {folder} was run with other settings "
                              f"(see {marker}); give the changed configuration a new name or "
                              "delete that folder")
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, text)


def _same_settings(stored: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether an agent's stored settings are its current ones. A model setting added to
    ``LLMConfig`` after the row ran is absent from the stored ones: it matches at its default."""
    defaults = {name: field.get_default(call_default_factory=True)
                for name, field in LLMConfig.model_fields.items()}
    model = {**{k: v for k, v in current["model"].items()
                if k not in stored.get("model", {}) and v == defaults.get(k, object())},
             **stored.get("model", {})}
    return {**stored, "model": model} == current
