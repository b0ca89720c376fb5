"""The synthesis configuration (``configs/<env>.yaml``), validated on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from lbi.agent.llm import LLMConfig
from lbi.agent.runner import ExecutorConfig
from lbi.config import Strict as _Strict
from lbi.config import load_yaml_config
from lbi.tracking import ReportTo


class ModelsConfig(_Strict):
    """Which model plays which role."""

    generator: LLMConfig = Field(default_factory=lambda: LLMConfig(
        model="local/qwen2.5-coder-1.5b", temperature=0.7, max_tokens=400))
    """Writes tasks from docs and instructions for trajectory spans (backward construction)."""
    agent: LLMConfig = Field(default_factory=lambda: LLMConfig(model="local/qwen2.5-coder-1.5b"))
    """Acts in the environment during rollouts."""
    committee: list[LLMConfig] = Field(default_factory=lambda: [LLMConfig(
        model="local/qwen2.5-coder-1.5b", max_tokens=200)])
    """Judges each example on the four criteria."""


class DocsConfig(_Strict):
    max_docs: int | None = Field(20, ge=1)
    """Use at most this many documents (a seeded order: raising it keeps the documents chosen
    before); None: all."""
    include: list[str] = []
    """Documents whose title or source matches one of these patterns (fnmatch, e.g.
    ``"*schema*"``) are always among the chosen ones."""
    seed: int = 0


class TaskGenConfig(_Strict):
    tasks_per_doc: int = Field(3, ge=1, le=20)
    """N in the paper: tasks the generator proposes per document."""
    doc_chars: int = Field(3000, ge=200)
    """A document is cut to this many characters in the prompt (the prompt's size is what a
    CPU pays for)."""
    dedup_similarity: float = Field(0.85, ge=0, le=1)
    """Tasks at least this similar (difflib ratio, lower-cased) to an earlier one are dropped."""


class RolloutConfig(_Strict):
    step_limit: int = Field(8, ge=1)
    episode_timeout_s: float = Field(300, gt=0)
    """An episode still running after this long ends (termination ``time_limit``)."""
    concurrency: int | None = Field(None, ge=1)
    """Items (episodes, backward and committee calls) run at once, each episode with its own
    environment instance; default: the slots of a local agent model's server, else 4."""
    max_tasks: int | None = Field(None, ge=1)
    """Roll out at most this many generated tasks (a seeded order: raising it keeps the tasks
    chosen before, so a dataset grows by rerunning with a larger limit); None: all."""


class BackwardConfig(_Strict):
    kinds: list[Literal["abstraction", "summary"]] = ["abstraction", "summary"]
    max_spans_per_trajectory: int = Field(6, ge=1)
    """Spans kept per trajectory; with both kinds, each span gives two examples."""
    bucket_weights: dict[Literal["short", "medium", "long"], float] = {
        "short": 1.0, "medium": 1.0, "long": 1.0}
    """Share of the kept spans from each length bucket: short (<5 steps), medium (5-9),
    long (>=10). Spans are drawn round-robin over the buckets in proportion to these."""
    skip_failed_steps: bool = True
    """Only spans whose every action the environment's check accepts (no error, no failed
    command): a span through a failed action is a detour, and the committee rejected nearly all
    of them; skipping them saves their backward and committee calls."""
    seed: int = 0


class FilterConfig(_Strict):
    rule: Literal["unanimous", "majority"] = "unanimous"
    use_env_check: bool = True
    """Also require the environment's own check of the span (e.g. its last query ran)."""
    choices: int = Field(4, ge=0, le=10)
    """Options of the choice check (the example's own instruction and choices - 1 written for
    other trajectories, same set-up first); below 2 turns the check off."""


class DecontamConfig(_Strict):
    ngram: int = Field(8, ge=2)
    """Word n-gram size for the overlap check against evaluation tasks."""
    max_overlap: float = Field(0.5, ge=0, le=1)
    """Drop a synthesized instruction when this share of its n-grams occurs in an eval task."""


class BudgetConfig(_Strict):
    max_calls: int | None = Field(3000, ge=0)
    max_cost: float | None = Field(None, ge=0)
    """USD, for priced providers."""
    max_wall_s: float | None = Field(None, gt=0)
    """Stop starting new work after this many seconds; what finished is kept."""


class SynthConfig(_Strict):
    """Everything ``lbi synth`` needs; see configs/sql.yaml for a documented example."""

    env: str
    env_args: dict[str, Any] = {}
    """Passed to the environment's constructor."""
    output_dir: Path
    """The resumable stores of every stage (JSONL) and stats.json."""
    dataset_dir: Path | None = None
    """Where the dataset is exported; default ``<output_dir>/dataset``."""
    models: ModelsConfig = ModelsConfig()
    docs: DocsConfig = DocsConfig()
    taskgen: TaskGenConfig = TaskGenConfig()
    rollout: RolloutConfig = RolloutConfig()
    backward: BackwardConfig = BackwardConfig()
    filter: FilterConfig = FilterConfig()
    decontam: DecontamConfig = DecontamConfig()
    budget: BudgetConfig = BudgetConfig()
    executor: ExecutorConfig = ExecutorConfig()
    """Where the items run: this machine's threads, or environment actors on a Ray cluster."""
    report_to: ReportTo = "none"
    """``wandb``: a W&B run with the stage counts, spending and sample examples (docs/synthesis.md);
    the dataset card links it."""

    @model_validator(mode="after")
    def _known_env(self) -> SynthConfig:
        from lbi.envs import get_env_info
        from lbi.errors import EnvError

        try:
            get_env_info(self.env)
        except EnvError as exc:
            raise ValueError(str(exc)) from None
        return self


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> SynthConfig:
    """Read and validate a synthesis config (see ``lbi.config.load_yaml_config``)."""
    return load_yaml_config(path, SynthConfig, overrides)
