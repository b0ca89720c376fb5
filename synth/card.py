"""The dataset card: format, generation config, models, counts, cost, prompts and licences."""

from __future__ import annotations

import json
from typing import Any

import yaml

from lbi.agent.prompts import SYSTEM_TEMPLATE, HistoryPolicy
from lbi.envs import get_env_info
from lbi.redact import redact_config
from lbi.synth import prompts
from lbi.synth.config import SynthConfig
from lbi.synth.export import CONFIGS


def _public_config(config: SynthConfig) -> dict[str, Any]:
    """The config as plain data, without anything that looks like a credential."""
    return redact_config(json.loads(config.model_dump_json()))


def dataset_card(config: SynthConfig, stats: dict[str, Any], counts: dict[str, int],
                 run_link: str | None = None) -> str:
    """A README.md for the dataset, with the YAML header the Hub reads; ``run_link``: the W&B
    run that made it."""
    header = {
        "license": "other",
        "tags": ["learn-by-interact", "agents", "synthetic", config.env],
        "configs": [{"config_name": name, "data_files": [{"split": "train",
                                                          "path": f"{name}/train-*.parquet"}]}
                    for name in CONFIGS],
    }
    policy = HistoryPolicy()
    models = config.models
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
        f"# Learn-by-interact data for the `{config.env}` environment", "",
        "Synthesized with the learn-by-interact toolkit "
        "(`lbi synth`), following Su et al., *Learn-by-interact* (ICLR 2025): tasks generated "
        "from the environment's documentation, rolled out by an agent in the real environment, "
        "relabelled by backward construction, filtered by an LLM committee.", "",
        *([f"W&B run: {run_link}", ""] if run_link else []),
        "## Configs", "",
        f"- `trajectories` ({counts['trajectories']} rows): every rollout; `steps` is a list of "
        "{observation, action, reasoning}, where `observation` is what the agent saw before "
        "taking `action`.",
        f"- `examples` ({counts['examples']} rows): accepted (instruction, sub-trajectory) pairs; "
        "`kind` is `abstraction` or `summary`; `span_start`/`span_end` index the source "
        "trajectory (the final observation o_j is `final_observation`); `votes` is JSON.",
        f"- `distill` ({counts['distill']} rows): the data-distill baseline — each trajectory "
        "with the task it was given (`kind` `original`), no backward construction, no "
        f"committee; {counts['distill_contaminated']} dropped by decontamination.",
        f"- `sft` ({counts['sft']} rows): step-level action prediction as chat `messages` "
        "(system, user, assistant), in the same prompt the agent uses at inference.", "",
        "## Decontamination", "",
        "Generated tasks and examples were checked against every benchmark task of the "
        "environment, both splits ("
        + ", ".join(f"{n} {split}" for split, n in stats.get("decontaminated_against",
                                                            {}).items())
        + "): an instruction equal to one, or sharing most of its word n-grams with one, and an "
        "example containing a gold action were dropped.", "",
        "## Credentials", "",
        "Observations are scanned for credentials (values of the generating process's "
        "secret-looking environment variables and common API-key formats) as they are "
        "recorded, and every row again at export: "
        f"{counts.get('redacted_secrets', 0)} value(s) were replaced by `<redacted>` at export.",
        "",
        "## Models", "",
        f"- generator (tasks, backward construction): `{models.generator.model}` "
        f"(temperature {models.generator.temperature})",
        f"- agent (rollouts): `{models.agent.model}` (temperature {models.agent.temperature})",
        "- committee: " + ", ".join(f"`{m.model}`" for m in models.committee) +
        f" — rule: {config.filter.rule}; environment check: {config.filter.use_env_check}", "",
        "## Counts and cost", "",
        "```json", json.dumps(stats, indent=2, default=str), "```", "",
        "## History policy", "",
        f"Each prompt shows the objective, the interaction history and the current observation. "
        f"Past observations are cut to {policy.observation_chars} characters and the oldest "
        f"steps are dropped beyond {policy.max_chars} characters of history (both marked in "
        "the text). The same policy is used for `sft` rows and at inference.", "",
        "## Prompts", "",
        "Agent system message (`{action_space}` is the environment's action description):",
        "```", SYSTEM_TEMPLATE, "```",
        "Task generation:", "```", prompts.TASKGEN, "```",
        "Backward construction, abstraction:", "```", prompts.ABSTRACTION, "```",
        "Backward construction, summary (the answer is prefixed with "
        f"`{prompts.SUMMARY_PREFIX}`):", "```", prompts.SUMMARY, "```",
        ("Committee, with the choice check (the example's instruction among "
         f"{config.filter.choices - 1} written for other trajectories):"
         if config.filter.choices >= 2 else "Committee:"),
        "```", prompts.JUDGE_CHOICE if config.filter.choices >= 2 else prompts.JUDGE, "```", "",
        "## Generation config", "",
        "```yaml", yaml.safe_dump(_public_config(config), sort_keys=False).strip(),
        "```", "",
        "## Licence of the sources", "",
        get_env_info(config.env).licence or "Not declared by the environment (EnvInfo.licence).",
        "The synthesized text was written by the models above; check their terms of use.", "",
    ]
    return "\n".join(lines)
