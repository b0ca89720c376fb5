"""W&B runs of synthesis and evaluation (offline mode): the tables are written, the dataset card
and results.json link the run, and no credential reaches it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_eval import _config as eval_config
from test_eval import copy_first_example, dataset  # noqa: F401  (a fixture)
from test_synth import _config as synth_config
from test_synth import _scripted_factory

from lbi.agent.scripted import ScriptedLLM
from lbi.errors import ConfigError
from lbi.eval.harness import Evaluation
from lbi.synth.pipeline import Synthesis

SECRET = "sk-proj-TESTONLY0123456789abcdefghijklmnopqrstuv"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


def _tables(run_dir: Path) -> dict[str, dict]:
    """{name: table json} of an offline run folder."""
    files = (run_dir / "files" / "media" / "table").glob("*.table.json")
    return {p.name.rsplit("_", 2)[0]: json.loads(p.read_text()) for p in files}


def _run_dir(output_dir: Path) -> Path:
    [run_dir] = (output_dir / "wandb").glob("offline-run-*")
    text = "".join(p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file())
    assert SECRET not in text  # the key of the process never reaches the run
    return run_dir


def test_a_synthesis_run_logs_stages_rejects_and_examples_and_the_card_links_it(tmp_path,
                                                                               offline):
    config = synth_config(tmp_path).model_copy(update={"report_to": "wandb"})
    path = Synthesis(config, make_model=_scripted_factory([])).run()
    run_dir = _run_dir(config.output_dir)
    tables = _tables(run_dir)
    assert set(tables) == {"stages", "rejects_by_cause", "examples"}
    assert [row[0] for row in tables["stages"]["data"]] == ["taskgen", "rollouts", "backward",
                                                           "filter"]
    assert tables["rejects_by_cause"]["data"] == [["filter: committee", 12]]
    assert len(tables["examples"]["data"]) == 24
    # Offline, the summary lives only in the run's record file.
    assert b"stages/filter/accepted" in next(run_dir.glob("run-*.wandb")).read_bytes()
    assert f"W&B run: {run_dir}" in (path / "README.md").read_text()


def test_an_eval_run_logs_rows_outcomes_and_trajectories_and_results_link_it(tmp_path, dataset,  # noqa: F811
                                                                             offline):
    def make_model(config, budget):
        return ScriptedLLM(copy_first_example, name=config.model, budget=budget)

    config = eval_config(tmp_path, dataset).model_copy(update={"report_to": "wandb"})
    results = Evaluation(config, make_model=make_model).run()
    run_dir = _run_dir(config.output_dir)
    assert results["wandb_run"] == str(run_dir)
    assert json.loads((config.output_dir / "results.json").read_text())["wandb_run"] == str(run_dir)
    tables = _tables(run_dir)
    rows = {row[0]: dict(zip(tables["rows"]["columns"], row, strict=True))
            for row in tables["rows"]["data"]}
    assert rows["LbI-ICL"]["solved"] == 1 and rows["LbI-ICL"]["success_rate"] == 0.5
    assert rows["LbI-ICL"]["vs_reference_difference"] == 0.5
    assert rows["zero-shot"]["vs_reference_p_value"] is None
    assert tables["outcomes"]["columns"] == ["task", "difficulty", "zero-shot", "LbI-ICL",
                                             "data-distill"]
    assert ["spider-1017", "hard", 0, 1, 0] in tables["outcomes"]["data"]
    assert len(tables["trajectories"]["data"]) == 3 * 2


def test_wandb_online_without_a_key_stops_before_any_episode(tmp_path, dataset, monkeypatch):  # noqa: F811
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    config = eval_config(tmp_path, dataset).model_copy(update={"report_to": "wandb"})
    with pytest.raises(ConfigError, match="WANDB_API_KEY"):
        Evaluation(config, make_model=lambda c, b: pytest.fail("no model is built")).run()
    assert not list((config.output_dir / "episodes").glob("*/*.json"))
