"""The synthesized data as Hugging Face datasets, with a dataset card, optionally on the Hub.

Four configs, each a ``DatasetDict`` with a ``train`` split, saved under ``<output>/dataset``:
- ``trajectories``: every rollout (steps as a list of {observation, action, reasoning, target});
- ``examples``: accepted examples (instruction, kind, span, steps, votes as a JSON string);
- ``distill``: the data-distill baseline: each trajectory with its original task (kind
  ``original``), no backward construction and no committee, same columns as ``examples``;
- ``sft``: step-level conversations as OpenAI-style ``messages`` (ready for TRL's SFTTrainer).
Nested records that vary in shape (LLM records, votes, env args) are JSON strings, so the Arrow
schema stays simple and stable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lbi.errors import LbiError
from lbi.io import atomic_write_text
from lbi.types import Example, Step, Trajectory

CONFIGS = ("trajectories", "examples", "distill", "sft")


def _steps(steps: list[Step]) -> list[dict[str, str | None]]:
    return [{"observation": s.observation, "action": s.action, "reasoning": s.reasoning,
             "target": s.target} for s in steps]


def trajectory_row(t: Trajectory) -> dict[str, Any]:
    return {
        "id": t.id, "env": t.task.env, "task_id": t.task.id, "instruction": t.task.instruction,
        "origin": t.task.origin, "doc_id": t.task.doc_id or "",
        "env_args": json.dumps(t.task.env_args), "steps": _steps(t.steps),
        "final_observation": t.final_observation, "termination": t.termination or "",
        "reward": t.reward, "error": t.error or "",
        "llm_calls": json.dumps([s.llm.model_dump() if s.llm else None for s in t.steps]),
        "provenance": json.dumps(t.provenance), "action_space": t.action_space,
    }


def example_row(e: Example) -> dict[str, Any]:
    return {
        "id": e.id, "env": e.env, "instruction": e.instruction, "kind": e.kind,
        "trajectory_id": e.trajectory_id, "span_start": e.span[0], "span_end": e.span[1],
        "num_steps": len(e.steps), "env_args": json.dumps(e.env_args), "steps": _steps(e.steps),
        "final_observation": e.final_observation,
        "votes": json.dumps([v.model_dump() for v in e.votes]),
        "provenance": json.dumps(e.provenance), "action_space": e.action_space,
    }


def example_from_row(row: dict[str, Any]) -> Example:
    """The Example behind an ``examples`` / ``distill`` row (the inverse of ``example_row``)."""
    try:
        return Example(
            id=row["id"], instruction=row["instruction"], kind=row["kind"], env=row["env"],
            trajectory_id=row["trajectory_id"], span=(row["span_start"], row["span_end"]),
            env_args=json.loads(row["env_args"] or "{}"),
            steps=[Step(**s) for s in row["steps"]], final_observation=row["final_observation"],
            votes=json.loads(row["votes"] or "[]"),
            provenance=json.loads(row["provenance"] or "{}"),
            action_space=row.get("action_space") or "",
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LbiError(f"dataset row {row.get('id', '?')!r} is not a valid example: "
                       f"{type(exc).__name__}: {exc}") from None


def features() -> dict:
    """The fixed schema of each config (an empty config still has its columns)."""
    from datasets import Features, Value

    text = Value("string")
    steps = [{"observation": text, "action": text, "reasoning": text, "target": text}]
    examples = Features({
        "id": text, "env": text, "instruction": text, "kind": text, "trajectory_id": text,
        "span_start": Value("int32"), "span_end": Value("int32"), "num_steps": Value("int32"),
        "env_args": text, "steps": steps, "final_observation": text, "votes": text,
        "provenance": text, "action_space": text})
    return {
        "trajectories": Features({
            "id": text, "env": text, "task_id": text, "instruction": text, "origin": text,
            "doc_id": text, "env_args": text, "steps": steps, "final_observation": text,
            "termination": text, "reward": Value("float64"), "error": text, "llm_calls": text,
            "provenance": text, "action_space": text}),
        "examples": examples,
        "distill": examples,
        "sft": Features({"id": text, "example_id": text, "kind": text,
                         "messages": [{"role": text, "content": text}]}),
    }


def build_dataset(trajectories: list[dict], examples: list[dict], distill: list[dict],
                  sft: list[dict]) -> dict:
    """{config name: DatasetDict} from rows."""
    from datasets import Dataset, DatasetDict

    def table(rows: list[dict], schema) -> Dataset:
        if not rows:  # from_list([]) would drop the columns
            return Dataset.from_dict({k: [] for k in schema}, features=schema)
        return Dataset.from_list(rows, features=schema)

    schema = features()
    return {name: DatasetDict({"train": table(rows, schema[name])})
            for name, rows in zip(CONFIGS, (trajectories, examples, distill, sft), strict=True)}


def save_dataset(dataset: dict, card: str, out: Path) -> Path:
    """Every config as one Parquet file per split (``<config>/<split>-00000-of-00001.parquet``,
    the Hub's layout) and the card as README.md: the folder loads with
    ``datasets.load_dataset(str(out), config)`` or ``load_dataset("parquet", data_files=…)``,
    is small enough to commit, and uploads as it is."""
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # small and fast; the pipeline shows its own progress
    out.mkdir(parents=True, exist_ok=True)
    for name, dd in dataset.items():
        folder = out / name
        folder.mkdir(exist_ok=True)
        for split, table in dd.items():
            target = folder / f"{split}-00000-of-00001.parquet"
            partial = target.with_suffix(".parquet.partial")
            table.to_parquet(str(partial))
            partial.replace(target)
    atomic_write_text(out / "README.md", card)
    return out


def load_dataset_dir(out: Path) -> dict:
    """{config: DatasetDict} of a folder written by ``save_dataset``, schema as ``features``."""
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    schema = features()
    loaded = {}
    for name in CONFIGS:
        files = sorted((out / name).glob("*-00000-of-00001.parquet"))
        if files:  # read whole (a few MB at most): no cache folder, empty splits keep columns
            loaded[name] = DatasetDict({
                f.name.split("-")[0]: Dataset.from_dict(pq.read_table(f).to_pydict(),
                                                        features=schema[name])
                for f in files})
    return loaded


def push_to_hub(dataset_dir: Path, repo_id: str, private: bool = False) -> str:
    """Upload every config and the card. Offline or unauthorized: one clear error, and the local
    dataset stays where it is."""
    try:
        from huggingface_hub import HfApi

        for name, dd in load_dataset_dir(dataset_dir).items():
            dd.push_to_hub(repo_id, config_name=name, private=private)
        HfApi().upload_file(path_or_fileobj=str(dataset_dir / "README.md"),
                            path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")
    except Exception as exc:  # network, auth, offline mode: all end the same way for the user
        raise LbiError(
            f"push to the Hub as {repo_id} failed: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}\nThe dataset is kept at "
            f"{dataset_dir}. Fix: log in (huggingface-cli login or HF_TOKEN), make sure the "
            "Hub is reachable and HF_HUB_OFFLINE is unset, then run lbi synth again with "
            "--push-to-hub (finished stages are not redone)."
        ) from None
    return f"https://huggingface.co/datasets/{repo_id}"
