"""The evaluation harness on the real SQL env, real datasets on disk and the real embedder; the
agent is scripted (control flow only): it copies the action of the first retrieved example."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import executed_example

from lbi.agent.scripted import ScriptedLLM
from lbi.envs import make_env, splits
from lbi.errors import ConfigError
from lbi.eval import harness
from lbi.eval.config import EvalConfig, load_eval_config
from lbi.eval.harness import Evaluation
from lbi.synth import export

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["spider-1017", "spider-0999"]
# Not the gold text of spider-1017, but the same answer (dogs raised by female students).
EQUIVALENT = ("submit SELECT count(*) FROM pets WHERE pettype = 'dog' AND petid IN (SELECT petid "
              "FROM has_pet WHERE stuid IN (SELECT stuid FROM student WHERE sex = 'F'))")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, sql_examples) -> Path:
    """A dataset folder as `lbi synth` writes it: the shared examples, one that solves spider-1017
    another way, and one that copies spider-1017's gold query (to be decontaminated)."""
    env = make_env("sql")
    gold = next(t for t in env.benchmark_tasks() if t.id == "spider-1017").gold
    try:
        examples = [*sql_examples,
                    executed_example("Count the dogs kept by girls.", "pets_1", [EQUIVALENT], env),
                    executed_example("Count the pets of the female students.", "pets_1",
                                     [f"submit {gold}"], env)]
        distill = [executed_example("Which dogs do the female students keep?", "pets_1",
                                    ["SELECT * FROM pets"], env, kind="original")]
    finally:
        env.close()
    rows = [export.example_row(e) for e in examples]
    data = export.build_dataset([], rows, [export.example_row(e) for e in distill], [])
    return export.save_dataset(data, "card", tmp_path_factory.mktemp("synth") / "dataset")


def copy_first_example(messages: list[dict]) -> str:
    """The scripted agent: writes a fixed search query, and acts by submitting the first
    retrieved example's action (or stops when nothing was retrieved)."""
    prompt = messages[-1]["content"]
    if "library of solved tasks" in prompt:
        return "QUERY: count dogs of female students"
    match = re.search(r"Step 1 ACTION: (submit .*)", prompt)
    return f"REASON: copy the example\nACTION: {match.group(1) if match else 'stop'}"


def _config(tmp_path: Path, dataset: Path, **retrieval) -> EvalConfig:
    return EvalConfig.model_validate({
        "env": "sql", "output_dir": str(tmp_path / "eval"), "dataset": str(dataset),
        "split": "dev", "tasks": TASKS, "step_limit": 2, "concurrency": 2, "agents": [
            {"name": "zero-shot"},
            {"name": "LbI-ICL", "retrieval": {"corpus": "examples", "m1": 1, "m2": 1,
                                              **retrieval}},
            {"name": "data-distill", "retrieval": {"corpus": "distill",
                                                   "sources": ["instruction"]}},
        ]})


def test_every_configuration_runs_reports_and_resumes_without_new_calls(tmp_path, dataset):
    calls: list[str] = []

    def make_model(config, budget):
        calls.append(config.model)
        return ScriptedLLM(copy_first_example, name=config.model, budget=budget)

    config = _config(tmp_path, dataset)
    results = Evaluation(config, make_model=make_model).run()
    rows = {r["name"]: r for r in results["agents"]}
    assert [r["name"] for r in results["agents"]] == ["zero-shot", "LbI-ICL", "data-distill"]
    assert rows["zero-shot"]["solved"] == 0 and rows["zero-shot"]["retrieved_per_step"] is None
    # The example written another way solves spider-1017; the copy of its gold was dropped.
    assert rows["LbI-ICL"]["solved_tasks"] == ["spider-1017"]
    assert rows["LbI-ICL"]["decontaminated"] == 1 and rows["LbI-ICL"]["corpus_size"] == 6
    assert rows["data-distill"]["corpus_size"] == 1 and rows["data-distill"]["solved"] == 0
    # LLM usage per episode includes the query-writing calls (one per step).
    icl = json.loads((tmp_path / "eval/episodes/LbI-ICL/spider-1017.json").read_text())
    step = icl["steps"][0]
    assert step["retrieval"]["query"] == "count dogs of female students"
    assert 1 <= len(step["retrieval"]["ids"]) <= 2
    assert icl["provenance"]["llm"]["calls"] == 2 * len(icl["steps"])
    assert rows["LbI-ICL"]["calls"] == sum(
        json.loads(p.read_text())["provenance"]["llm"]["calls"]
        for p in (tmp_path / "eval/episodes/LbI-ICL").glob("spider-*.json"))

    table = (tmp_path / "eval/results.md").read_text()
    assert "| LbI-ICL | 50.0% [9.5, 90.5] (1/2) | +50.0 pts [" in table
    assert "| agent | extra | hard |" in table and "| LbI-ICL | 0.0% [0.0, 79.3] (0/1) |" in table
    assert (tmp_path / "eval/results.png").read_bytes()[:4] == b"\x89PNG"
    assert (dataset / "index/examples-wordllama-l2-128/meta.json").exists()

    # Where the row's gain goes: its episodes against zero-shot's, read back by the script.
    diagnosis = subprocess.run(
        [sys.executable, str(ROOT / "scripts/icl_diagnostics.py"), str(tmp_path / "eval"),
         str(dataset)], capture_output=True, text=True, check=True).stdout
    assert "2 tasks both rows ran: LbI-ICL 1, zero-shot 0; difference +50.0 pts" in diagnosis
    assert "| hard | 1 | 1 | 0 | 1 | 0 |" in diagnosis  # spider-1017, solved only with examples

    before = len(calls)
    again = Evaluation(config, make_model=make_model).run()
    assert len(calls) == before  # every episode was read back, none rerun
    assert [r["solved"] for r in again["agents"]] == [r["solved"] for r in results["agents"]]


def test_only_runs_the_named_agent_and_keeps_the_other_rows(tmp_path, dataset):
    config = _config(tmp_path, dataset)
    Evaluation(config, make_model=lambda c, b: ScriptedLLM(copy_first_example, budget=b)).run()
    (tmp_path / "eval/episodes/zero-shot/spider-0999.json").unlink()
    ran: list[str] = []

    def make_model(config, budget):
        ran.append(config.model)
        return ScriptedLLM(copy_first_example, budget=budget)

    results = Evaluation(config, make_model=make_model).run(only=["zero-shot"])
    assert len(ran) == 1 and len(results["agents"]) == 3
    with pytest.raises(ConfigError, match="no agents named"):
        Evaluation(config, make_model=make_model).run(only=["nobody"])


def test_a_changed_configuration_under_the_same_name_is_refused(tmp_path, dataset, monkeypatch):
    def make_model(config, budget):
        return ScriptedLLM(copy_first_example, budget=budget)

    Evaluation(_config(tmp_path, dataset), make_model=make_model).run(only=["LbI-ICL"])
    changed = _config(tmp_path, dataset, max_tokens=50)
    with pytest.raises(ConfigError, match="other settings"):
        Evaluation(changed, make_model=make_model).run(only=["LbI-ICL"])
    # So is another dataset under the same path (grown or redone: other examples to retrieve)…
    data = export.load_dataset_dir(dataset)
    data["examples"]["train"] = data["examples"]["train"].select(range(3))
    smaller = export.save_dataset(data, "card", tmp_path / "smaller")
    with pytest.raises(ConfigError, match="other settings"):
        Evaluation(_config(tmp_path, smaller), make_model=make_model).run(only=["LbI-ICL"])
    # …and a reworded query prompt (its episodes asked the model something else).
    monkeypatch.setattr(harness, "QUERY_PROMPT", harness.QUERY_PROMPT + " Be brief.")
    with pytest.raises(ConfigError, match="other settings"):
        Evaluation(_config(tmp_path, dataset), make_model=make_model).run(only=["LbI-ICL"])


def test_a_row_can_retrieve_from_its_own_dataset(tmp_path, dataset):
    """Two datasets in one table (e.g. two versions, or a reference set beside the synthesized
    one); a row is known by what its dataset holds, not by the folder's path."""
    def make_model(config, budget):
        return ScriptedLLM(copy_first_example, budget=budget)

    data = export.load_dataset_dir(dataset)
    data["examples"]["train"] = data["examples"]["train"].select(range(3))
    smaller = export.save_dataset(data, "card", tmp_path / "smaller")
    rows = [{"name": "LbI-ICL", "retrieval": {"corpus": "examples", "m1": 1, "m2": 1}},
            {"name": "ICL (smaller)", "retrieval": {"corpus": "examples", "m1": 1, "m2": 1,
                                                    "dataset": str(smaller)}}]
    config = EvalConfig.model_validate({
        "env": "sql", "output_dir": str(tmp_path / "eval"), "dataset": str(dataset),
        "split": "dev", "tasks": TASKS, "step_limit": 2, "agents": rows})
    results = Evaluation(config, make_model=make_model).run()
    sizes = {r["name"]: r["corpus_size"] for r in results["agents"]}
    assert sizes == {"LbI-ICL": 6, "ICL (smaller)": 3}
    # no top-level dataset is needed when the row names its own
    EvalConfig.model_validate({**config.model_dump(mode="json"), "dataset": None,
                               "agents": rows[1:]})
    moved = shutil.copytree(smaller, tmp_path / "moved")
    rows[1]["retrieval"]["dataset"] = str(moved)
    again = EvalConfig.model_validate({**config.model_dump(mode="json"), "agents": rows})
    ran: list[str] = []
    Evaluation(again, make_model=lambda c, b: ran.append(c.model) or make_model(c, b)).run()
    assert not ran  # the same content elsewhere: the same row, read back


def test_a_reference_dataset_of_gold_solutions_loads_as_examples(tmp_path):
    out = tmp_path / "golds"
    subprocess.run([sys.executable, str(ROOT / "scripts/gold_examples.py"), "--env", "sql",
                    "--split", "dev", "--max-tasks", "3", "--out", str(out)], check=True,
                   capture_output=True)
    env = make_env("sql")
    try:
        tasks = splits.select(env.benchmark_tasks(), "dev")[:3]
    finally:
        env.close()
    rows = export.load_dataset_dir(out)["examples"]["train"]
    examples = [export.example_from_row(r) for r in rows]
    assert [(e.instruction, e.steps[0].action) for e in examples] == [
        (t.instruction, t.gold) for t in tasks]
    assert all(e.final_observation and "error" not in e.final_observation.lower()
               for e in examples)
    # the dev split's golds are examples for a row scored on test, never on dev; Spider asks
    # some questions twice in other words, and spider-0784's twin (spider-0364) is in test
    row = {"name": "ICL (dev golds)", "retrieval": {"corpus": "examples", "dataset": str(out)}}
    config = {"env": "sql", "output_dir": str(tmp_path / "eval"), "split": "test",
              "max_tasks": 1, "step_limit": 1, "agents": [row]}
    results = Evaluation(EvalConfig.model_validate(config),
                         make_model=lambda c, b: ScriptedLLM(copy_first_example, budget=b)).run()
    assert (results["agents"][0]["corpus_size"], results["agents"][0]["decontaminated"]) == (2, 1)
    on_dev = EvalConfig.model_validate({**config, "split": "dev",
                                        "output_dir": str(tmp_path / "on-dev")})
    with pytest.raises(ConfigError, match="empty"):
        Evaluation(on_dev, make_model=lambda c, b: ScriptedLLM(copy_first_example, budget=b)).run()


def test_a_row_run_before_a_model_setting_existed_is_still_its_own(tmp_path, dataset):
    def make_model(config, budget):
        return ScriptedLLM(copy_first_example, budget=budget)

    config = _config(tmp_path, dataset)
    Evaluation(config, make_model=make_model).run(only=["zero-shot"])
    marker = tmp_path / "eval/episodes/zero-shot/agent.json"
    settings = json.loads(marker.read_text())
    del settings["model"]["endpoints"]  # as written before LLMConfig had `endpoints`
    marker.write_text(json.dumps(settings))
    Evaluation(config, make_model=make_model).run(only=["zero-shot"])
    assert "endpoints" in json.loads(marker.read_text())["model"]
    settings["model"]["deadline_s"] = 1.0  # a setting that did change is still refused
    marker.write_text(json.dumps(settings))
    with pytest.raises(ConfigError, match="other settings"):
        Evaluation(config, make_model=make_model).run(only=["zero-shot"])


def test_every_shipped_eval_config_validates():
    paths = sorted((ROOT / "configs/eval").glob("*.yaml"))
    assert paths
    for path in paths:
        config = load_eval_config(path)
        assert {"zero-shot", "LbI-ICL"} <= {a.name for a in config.agents}


def test_config_errors_name_the_problem(tmp_path, dataset):
    with pytest.raises(ValueError, match="retrieve from a synthesized dataset"):
        EvalConfig.model_validate({"env": "sql", "output_dir": "o", "agents": [
            {"name": "icl", "retrieval": {"corpus": "examples"}}]})
    with pytest.raises(ValueError, match="distinct"):
        EvalConfig.model_validate({"env": "sql", "output_dir": "o",
                                   "agents": [{"name": "a"}, {"name": "a"}]})
    for against in ("a", "c"):
        with pytest.raises(ValueError, match="compare_with .* is not one of the other agents"):
            EvalConfig.model_validate({"env": "sql", "output_dir": "o", "agents": [
                {"name": "a", "compare_with": against}, {"name": "b"}]})
    config = _config(tmp_path, dataset).model_copy(update={"tasks": ["spider-99"]})
    with pytest.raises(ConfigError, match="not in the 'dev' split"):
        Evaluation(config, make_model=lambda c, b: ScriptedLLM([])).run()
    missing = _config(tmp_path, tmp_path / "no-dataset")
    with pytest.raises(ConfigError, match="no `examples` config"):
        Evaluation(missing, make_model=lambda c, b: ScriptedLLM(copy_first_example)).run()


def test_a_fine_tuned_row_whose_model_file_is_missing_stops_before_any_episode(tmp_path,
                                                                                dataset):
    config = EvalConfig.model_validate({
        "env": "sql", "output_dir": str(tmp_path / "eval"), "split": "dev", "tasks": TASKS,
        "agents": [
            {"name": "zero-shot"},
            {"name": "fine-tuned", "model": {"model": f"local/{tmp_path}/untrained.gguf"}}]})
    ran: list[str] = []

    def make_model(config, budget):
        ran.append(config.model)
        return ScriptedLLM(copy_first_example, budget=budget)

    with pytest.raises(ConfigError, match="agent 'fine-tuned': no GGUF file at .*untrained"):
        Evaluation(config, make_model=make_model).run()
    assert ran == [] and not (tmp_path / "eval" / "episodes").exists()


def test_a_missing_dataset_stops_before_any_episode(tmp_path):
    config = _config(tmp_path, tmp_path / "not-synthesized-yet" / "dataset")
    ran: list[str] = []

    def make_model(config, budget):
        ran.append(config.model)
        return ScriptedLLM(copy_first_example, budget=budget)

    with pytest.raises(ConfigError, match="no `examples` config in the dataset folder"):
        Evaluation(config, make_model=make_model).run()
    assert ran == [] and not (tmp_path / "eval" / "episodes").exists()


def test_a_row_of_another_task_list_is_left_out_not_compared(tmp_path, dataset):
    from rich.console import Console

    def make_model(config, budget):
        return ScriptedLLM(copy_first_example, budget=budget)

    Evaluation(_config(tmp_path, dataset), make_model=make_model).run()
    fewer = _config(tmp_path, dataset).model_copy(update={"tasks": TASKS[:1]})
    console = Console(record=True, width=200)
    results = Evaluation(fewer, console=console, make_model=make_model).run(only=["zero-shot"])
    assert [r["name"] for r in results["agents"]] == ["zero-shot"]
    assert results["tasks"] == TASKS[:1] and results["reference"] == "zero-shot"
    assert "row 'LbI-ICL' left out: it was run on another task list (2 tasks)" in (
        console.export_text())


def test_a_listed_task_this_machine_does_not_keep_is_named(tmp_path, dataset, monkeypatch):
    from rich.console import Console

    listed = splits.pinned_splits("sql") | {"spider-gone": "test"}
    monkeypatch.setattr(splits, "pinned_splits", lambda env: listed)
    console = Console(record=True, width=200)
    config = _config(tmp_path, dataset).model_copy(update={"split": "test", "tasks": "all"})
    tasks = Evaluation(config, console=console).held_out_tasks()
    assert "spider-gone" not in {t.id for t in tasks}
    assert "1 task(s) of the 'test' split are not usable on this machine (spider-gone)" in (
        console.export_text())
