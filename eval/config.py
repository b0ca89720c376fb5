"""The evaluation configuration (``configs/eval/<env>.yaml``), validated on load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from lbi.agent.llm import LLMConfig
from lbi.agent.retrieval import DEFAULT_EMBEDDER, Source
from lbi.agent.runner import ExecutorConfig
from lbi.config import Strict, load_yaml_config
from lbi.envs.splits import Split
from lbi.tracking import ReportTo


def slug(name: str) -> str:
    """``name`` as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


class RetrievalConfig(Strict):
    """Retrieval-augmented ICL for one agent configuration."""

    corpus: Literal["examples", "distill", "docs"] = "examples"
    """examples: the synthesized dataset (LbI-ICL); distill: the same rollouts with their original
    tasks (data-distill baseline); docs: the environment's documentation (RAG baseline)."""
    sources: list[Source] = ["observation", "model"]
    """How entries are found at each step (the paper's Table 4): observation (BM25, m1), instruction
    (dense, m2), model (dense on an LLM-written query, m2)."""
    m1: int = Field(5, ge=0)
    m2: int = Field(5, ge=0)
    max_tokens: int = Field(2000, ge=1)
    """Budget of the reference block; entries are added in retrieval order while they fit."""
    embedder: str = DEFAULT_EMBEDDER
    """wordllama-l2-128 (a static table, the default), wordllama-l2-256, all-MiniLM-L6-v2, or any
    sentence-transformers model name or folder (docs/retrieval.md)."""
    dataset: Path | None = None
    """The dataset folder this row retrieves from (examples/distill corpora); default: the
    config's ``dataset``. Rows on different datasets (two versions, a reference set) then share
    one table and its paired comparisons."""

    @model_validator(mode="after")
    def _some_source(self) -> RetrievalConfig:
        if not self.sources:
            raise ValueError("give at least one of: observation, instruction, model")
        return self


class AgentSpec(Strict):
    """One row of the results table."""

    name: str
    model: LLMConfig | None = None
    """Defaults to the top-level ``model``; a fine-tuned model is just another model string
    (e.g. ``local/path/to/merged.gguf`` or a vLLM endpoint via ``api_base``)."""
    retrieval: RetrievalConfig | None = None
    """None: no reference block (zero-shot, or a fine-tuned model as in the paper)."""
    compare_with: str | None = None
    """The row this row's paired comparison is made against; default: the table's
    ``reference``. E.g. a 1.5B LbI-ICL row against the 1.5B zero-shot row."""

    @property
    def slug(self) -> str:
        return slug(self.name)


class EvalConfig(Strict):
    """Everything ``lbi eval`` needs; see configs/eval/sql.yaml for a documented example."""

    env: str
    env_args: dict[str, Any] = {}
    output_dir: Path
    dataset: Path | None = None
    """A dataset folder written by ``lbi synth`` (…/dataset); needed by examples/distill rows."""
    split: Split = "test"
    """The benchmark split evaluated (``lbi tasks --env … --split test``): ``test`` for reported
    numbers, ``dev`` for tuning prompts and configs, ``all`` for both."""
    tasks: Literal["all"] | list[str] = "all"
    """Task ids of the split (``lbi tasks --env …``), or all of them."""
    max_tasks: int | None = Field(None, ge=1)
    """Only the first N tasks of the split (the split is in a seeded random order, so they are
    a random sample of it)."""
    reference: str | None = None
    """The row every other row is compared with (paired difference, McNemar); default: the
    row named ``zero-shot``, else the first."""
    model: LLMConfig = LLMConfig(model="local/qwen2.5-coder-0.5b", max_tokens=256)
    """The agent model of every row that does not name its own."""
    step_limit: int = Field(5, ge=1)
    episode_timeout_s: float = Field(600, gt=0)
    concurrency: int | None = Field(None, ge=1)
    """Episodes run at once; default: the slots of a local model's server, else 4."""
    executor: ExecutorConfig = ExecutorConfig()
    """Where the episodes run: this machine's threads, or environment actors on a Ray
    cluster."""
    report_to: ReportTo = "none"
    """``wandb``: a W&B run with the rows and their intervals, the outcome matrix and sample
    trajectories (docs/evaluation.md); results.json links it."""
    agents: list[AgentSpec]

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        from lbi.envs import get_env_info
        from lbi.errors import EnvError

        try:
            get_env_info(self.env)
        except EnvError as exc:
            raise ValueError(str(exc)) from None
        slugs = [a.slug for a in self.agents]
        if len(set(slugs)) != len(slugs):
            raise ValueError("agent names must be distinct (they name the output folders)")
        needs_dataset = [a.name for a in self.agents if a.retrieval and
                         a.retrieval.corpus != "docs" and a.retrieval.dataset is None]
        names = {a.name for a in self.agents}
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not one of the agents")
        for agent in self.agents:
            if agent.compare_with is not None and agent.compare_with not in names - {agent.name}:
                raise ValueError(f"{agent.name}: compare_with {agent.compare_with!r} is not one "
                                 "of the other agents")
        if needs_dataset and self.dataset is None:
            raise ValueError(f"{', '.join(needs_dataset)} retrieve from a synthesized dataset: "
                             "set `dataset` to the folder `lbi synth` wrote (…/dataset)")
        return self

    def model_for(self, agent: AgentSpec) -> LLMConfig:
        return agent.model or self.model

    def dataset_for(self, retrieval: RetrievalConfig) -> Path | None:
        return retrieval.dataset or self.dataset


def load_eval_config(path: Path, overrides: dict[str, Any] | None = None) -> EvalConfig:
    """Read and validate an evaluation config (see ``lbi.config.load_yaml_config``)."""
    return load_yaml_config(path, EvalConfig, overrides)
