"""W&B runs of synthesis and evaluation (``report_to: wandb`` in their configs).

A run records the config (credentials masked), the counts and spending of every stage, and
tables (eval: the rows with their intervals, the task × row outcome matrix, sample trajectories;
synth: the stages, rejects by cause, sample examples with the committee's votes). With
``WANDB_MODE=offline`` it is written under the output folder, for ``wandb sync`` later; online,
the key comes from the environment (``WANDB_API_KEY``) or ``wandb login``, never a config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from lbi.errors import ConfigError
from lbi.redact import redact_config, redact_text

ReportTo = Literal["none", "wandb"]
DEFAULT_PROJECT = "learn-by-interact"


class WandbRun:
    """One W&B run; ``link`` is its URL, or its local folder when offline."""

    def __init__(self, job_type: str, config: BaseModel, output_dir: Path) -> None:
        import wandb

        mode = os.environ.get("WANDB_MODE", "online")
        if mode not in ("offline", "disabled") and not (
                os.environ.get("WANDB_API_KEY") or wandb.api.api_key):
            raise ConfigError("report_to: wandb needs a W&B key: set WANDB_API_KEY (or run "
                              "`wandb login`), or WANDB_MODE=offline to record the run locally")
        output_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT), job_type=job_type,
            dir=str(output_dir), reinit="create_new",
            config=redact_config(json.loads(config.model_dump_json())))
        self.link = self.run.url or str(Path(self.run.dir).parent)

    def table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        """Log a wandb.Table (cells are masked for credentials like every record)."""
        import wandb

        clean = [[redact_text(c)[0] if isinstance(c, str) else c for c in row] for row in rows]
        self.run.log({name: wandb.Table(columns=columns, data=clean)})

    def summary(self, values: dict[str, Any]) -> None:
        """Scalars shown beside the run (nested dicts become ``a/b`` keys)."""
        self.run.summary.update(_flatten(values))

    def finish(self) -> None:
        self.run.finish()


def start_run(report_to: ReportTo, job_type: str, config: BaseModel,
              output_dir: Path) -> WandbRun | None:
    """A W&B run when the config asks for one, else None."""
    return WandbRun(job_type, config, output_dir) if report_to == "wandb" else None


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}/")
        elif isinstance(value, int | float | str | bool) or value is None:
            flat[f"{prefix}{key}"] = value
    return flat
