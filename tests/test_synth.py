"""Synthesis: span selection, filters, decontamination, stores, and whole runs on the real SQL env
(scripted models in-process; real litellm mock responses in a subprocess for kill -9 / resume)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from lbi.agent.scripted import ScriptedLLM
from lbi.envs import make_env
from lbi.errors import ConfigError, LbiError
from lbi.synth import backward, export, pipeline
from lbi.synth.config import BudgetConfig, SynthConfig, load_config
from lbi.synth.decontam import Decontaminator
from lbi.synth.export import load_dataset_dir, push_to_hub
from lbi.synth.filter import distractors_for, filter_example
from lbi.synth.pipeline import Synthesis
from lbi.synth.prompts import CHOICE_CRITERIA, IDENTIFIED, parse_judgement, parse_tasks
from lbi.synth.store import JsonlStore
from lbi.synth.taskgen import dedupe, select_documents
from lbi.types import Document, Example, Step, Task, Trajectory

ROOT = Path(__file__).resolve().parents[1]


def _traj(actions: list[str], observations: list[str]) -> Trajectory:
    task = Task(id="t", env="sql", instruction="i", origin="doc", env_args={"db": "pets_1"})
    steps = [Step(observation=o, action=a) for o, a in zip(observations, actions, strict=False)]
    return Trajectory(id="x", task=task, steps=steps, final_observation=observations[-1])


# ---- backward construction ---------------------------------------------------------------------

def test_all_spans_are_enumerated():
    assert len(backward.all_spans(4)) == 10 == 4 * 5 // 2
    assert backward.all_spans(2) == [(0, 1), (0, 2), (1, 2)]


def test_span_selection_is_capped_bucketed_and_deterministic():
    weights = {"short": 1.0, "medium": 1.0, "long": 1.0}
    spans = backward.select_spans(12, 6, weights, "seed")
    assert spans == backward.select_spans(12, 6, weights, "seed")
    assert spans != backward.select_spans(12, 6, weights, "other seed")
    assert len(spans) == 6 and all(0 <= i < j <= 12 for i, j in spans)
    buckets = [backward.bucket_of(j - i) for i, j in spans]
    assert buckets.count("short") == buckets.count("medium") == buckets.count("long") == 2
    assert len(backward.select_spans(3, 100, weights, "s")) == 6  # every span when under the cap
    only_short = backward.select_spans(12, 5, {"short": 1, "medium": 0, "long": 0}, "s")
    assert all(j - i < 5 for i, j in only_short)


def test_spans_through_a_failed_action_are_never_chosen():
    env = make_env("sql")
    env.reset(Task(id="t", env="sql", instruction="x", origin="user", env_args={"db": "pets_1"}))
    actions = ["SELECT count(*) FROM pets", "SELECT nope FROM pets", "SELECT max(weight) FROM pets"]
    observations = ["schema"] + [env.step(a)[0] for a in actions]
    env.close()
    traj = _traj(actions, observations)
    failed = backward.failed_steps(traj, env.check_span)
    assert failed == {1}  # "no such column"
    weights = {"short": 1.0, "medium": 1.0, "long": 1.0}
    assert backward.select_spans(3, 10, weights, "s", failed) == [(0, 1), (2, 3)]


_COUNT = _traj(["SELECT count(*) FROM pets"], ["o0", "count(*)\n3"])
_NAMES = _traj(["SELECT name FROM singer"], ["o0", "name | Joe"])
_PETS = "Show how many pets there are."

TAKEN = [  # (trajectory, the generator's answer, the instruction taken from it)
    (_COUNT, 'To see it, you can use the following task instruction: "Show how many pets there '
             'are."', _PETS),
    (_COUNT, 'To count them, the user could have made the request "Show how many pets there '
             'are."', _PETS),
    (_COUNT, "To count them, the user could have made the request:\nShow how many pets there "
             "are.", _PETS),
    (_COUNT, "To count them, the user could have made the following request:\n\nShow how many "
             "pets there are.\n\nThis request fulfills the sequence of actions that the agent "
             "took.", _PETS),
    (_COUNT, 'To achieve the final observation, the user could have requested the following: '
             '"Show how many pets there are."', _PETS),
    (_NAMES, 'To get this result, the user could have asked: "What are the names of all '
             'singers?" That is what the query returns.', "What are the names of all singers?"),
    # advice: its goal is the request
    (_NAMES, "To list the names of all `singer` rows, you could have used the command:\n```sql\n"
             "SELECT name FROM singer\n```", "List the names of all singer rows."),
    (_NAMES, "To get the five longest singer names, a user could have asked:\n```\nSELECT name "
             "FROM singer ORDER BY length(name) DESC LIMIT 5\n```",
     "Get the five longest singer names."),
    (_NAMES, "To list every singer, including retired ones, use the following query:\n```sql\n"
             "SELECT name FROM singer\n```", "List every singer, including retired ones."),
    # a name in backticks is not code
    (_NAMES, "Show the names in the `singer` table.", "Show the names in the singer table."),
]

REFUSED = [  # (trajectory, the generator's answer, why it is refused)
    (_COUNT, "What can the agent achieve by executing the sequence of actions?", "talks about"),
    (_COUNT, "To count the pets, the user could have made a request that shows how many pets "
             "there are.", "talks about"),
    (_NAMES, "SELECT name FROM singer;", "is an action"),
    (_NAMES, "What request was made to list the singers?", "talks about"),
    (_NAMES, "What is the name in the last observation?", "talks about"),
    (_NAMES, "What singers do you want to see?", "talks about"),
    (_NAMES, "To see them, you could list the singers' names.", "talks about"),
    (_NAMES, "Run `SELECT * FROM singer` to see every singer.", "holds code"),
    (_NAMES, "To get the final output, you could run the query `SELECT name FROM singer`.",
     "talks about"),
]


@pytest.mark.parametrize(("traj", "answer", "instruction"), TAKEN)
def test_the_request_is_taken_out_of_the_generators_answer(traj, answer, instruction):
    example = backward.construct(ScriptedLLM([answer]), traj, (0, 1), "abstraction")
    assert example.instruction == instruction


@pytest.mark.parametrize(("traj", "answer", "why"), REFUSED)
def test_an_answer_that_is_not_a_request_is_refused(traj, answer, why):
    assert why in backward.construct(ScriptedLLM([answer]), traj, (0, 1), "abstraction")


def test_a_page_goal_written_back_is_an_instruction_only_where_the_span_reached_it():
    from lbi.envs.web.env import WebEnv

    page = ("Page goal: Find Clarabelle's email and mark it as important.\n"
            "RootWebArea 'Email Inbox Task'\n\t[47] image ''")
    answer = "Find Clarabelle's email and mark it as important."

    def construct(llm: ScriptedLLM, traj: Trajectory):
        return backward.construct(llm, traj, (0, 1), "abstraction", WebEnv.goal_reached)

    missed = _traj(["click('47')"], [page, page + "\n\nThe task ended (reward 0)."])
    assert "a goal the span did not reach" in construct(ScriptedLLM([answer]), missed)
    reached = _traj(["click('47')"], [page, page + "\n\nThe task ended (reward 1)."])
    assert construct(ScriptedLLM([answer]), reached).instruction == answer
    # without the environment's hook no span counts as reaching it
    assert "did not reach" in backward.construct(ScriptedLLM([answer]), reached, (0, 1),
                                                 "abstraction")
    # a request in its own words about the same page is not a goal written back
    own_words = ScriptedLLM(["Open the first email of the Clarabelle inbox page."])
    assert construct(own_words, missed).instruction


def test_a_sql_span_must_end_on_rows_to_ask_about():
    env = make_env("sql")
    env.reset(Task(id="t", env="sql", instruction="x", origin="user", env_args={"db": "pets_1"}))
    ends = {action: env.step(action)[0] for action in [
        "SELECT count(*) FROM pets", "SELECT PetID FROM pets WHERE 1 = 0",
        "SELECT NULL FROM pets", "CREATE TABLE t (a INT)", "SELECT nope FROM pets"]}
    env.close()
    assert [env.check_span([], end) for end in ends.values()] == [True, False, False, False,
                                                                  False]


def test_a_final_stop_is_not_part_of_any_span():
    cleaned, removed = backward.drop_repeated_steps(_traj(["A", "stop"], ["o0", "o1", "end"]))
    assert removed == 1 and [s.action for s in cleaned.steps] == ["A"]
    assert cleaned.observations == ["o0", "o1"]


def test_repeated_steps_are_dropped():
    traj = _traj(["A", "B", "B", "C"], ["o0", "o1", "o2", "o2", "o3"])  # 2nd B changed nothing
    cleaned, removed = backward.drop_repeated_steps(traj)
    assert removed == 1 and [s.action for s in cleaned.steps] == ["A", "B", "C"]
    assert cleaned.observations == ["o0", "o1", "o2", "o3"]
    same_action_new_result = _traj(["B", "B"], ["o0", "o1", "o2"])
    assert backward.drop_repeated_steps(same_action_new_result)[1] == 0


def test_an_answer_that_echoes_the_trajectory_is_not_an_instruction():
    traj = _traj(["SELECT 1"], ["o0", "o1"])
    echo = ScriptedLLM(["Replicate the following: OBSERVATION 0: o0\nACTION 1: SELECT 1"])
    assert "echoes the trajectory" in backward.construct(echo, traj, (0, 1), "summary")
    fine = ScriptedLLM(["Check that the database answers a trivial SELECT."])
    example = backward.construct(fine, traj, (0, 1), "summary")
    assert example.instruction == ("Replicate the following: Check that the database answers "
                                   "a trivial SELECT.")
    assert example.span == (0, 1) and example.final_observation == "o1"


def test_a_query_rewritten_as_the_instruction_is_refused_a_request_in_words_kept():
    action = ("SELECT T2.Name FROM country AS T1 JOIN city AS T2 ON T1.Code = T2.CountryCode "
              "WHERE T1.Population > 10000000")
    traj = _traj([action], ["Tables: city, country", "Name\nKabul"])
    rewritten = ScriptedLLM(["SELECT Name FROM city WHERE Population > 10000000"])
    assert "is an action" in backward.construct(rewritten, traj, (0, 1), "abstraction")
    request = "Which cities are in countries of more than ten million people?"
    kept = backward.construct(ScriptedLLM([request]), traj, (0, 1), "abstraction")
    assert kept.instruction == request
    command = _traj(["find /workspace -name '*.txt'"], ["A shell", "/workspace/a.txt"])
    short = "Find .txt files in /workspace"  # shares its few words with the command: kept
    assert backward.construct(ScriptedLLM([short]), command, (0, 1),
                              "abstraction").instruction == short


def test_an_instruction_that_names_nothing_of_its_trajectory_is_refused():
    traj = _traj(["SELECT name FROM singer WHERE age > 30"], ["Tables: singer", "name\nJoe"])
    for unrelated in ["What details are required?", "Which ship was lost in the naval battle?"]:
        refused = backward.construct(ScriptedLLM([unrelated]), traj, (0, 1), "abstraction")
        assert "names nothing of the trajectory" in refused
    kept = backward.construct(ScriptedLLM(["Which singers are older than thirty?"]), traj,
                              (0, 1), "abstraction")
    assert kept.instruction == "Which singers are older than thirty?"


# ---- parsing, dedupe, decontamination, stores --------------------------------------------------

def test_task_and_judgement_parsing_is_lenient():
    assert parse_tasks('```json\n{"tasks": ["List all pet types", "Count the students"]}\n```') \
        == ["List all pet types", "Count the students"]
    assert parse_tasks("Here:\n1. List all pet types\n2) Count the students\n- x") == [
        "List all pet types", "Count the students"]
    criteria, reason, _ = parse_judgement(
        'Sure: {"aligned": true, "coherent": "yes", "natural": false, "reason": "odd"}')
    assert criteria == {"aligned": True, "coherent": True, "natural": False,
                        "reasonable": False} and reason == "odd"
    with pytest.raises(ValueError, match="no option letter"):
        parse_judgement('{"answer": "E", "coherent": true}', CHOICE_CRITERIA, "ABCD")
    with pytest.raises(ValueError):
        parse_judgement("looks fine to me")


def _example(trajectory: str, instruction: str, db: str = "pets_1") -> Example:
    return Example(id=f"{trajectory}-{instruction}", instruction=instruction, kind="abstraction",
                   env="sql", trajectory_id=trajectory, span=(0, 1), env_args={"db": db},
                   steps=[Step(observation="Database: pets_1", action="SELECT 1")],
                   final_observation="count(*)\n3")


def test_choice_check_distractors_come_from_other_trajectories_same_setup_first():
    example = _example("t1", "Count the pets")
    pool = [example, _example("t1", "Count the pets again"), _example("t2", "List owners"),
            _example("t3", "Show the singers", db="concert_singer"), _example("t4", "Count cats"),
            _example("t5", "List owners")]
    chosen = distractors_for(example, pool, 3)
    assert set(chosen[:2]) == {"List owners", "Count cats"}  # same db, other trajectories
    assert chosen[2] == "Show the singers" and len(set(chosen)) == 3
    assert distractors_for(example, list(reversed(pool)), 3) == chosen


def test_choice_check_accepts_only_a_judge_that_picks_the_examples_own_instruction():
    example = _example("t1", "Count the pets in the database")
    distractors = ["List the owners", "Show the singers", "Count the cats"]

    def judge_picking(text: str, **criteria: bool):
        def respond(messages):
            letter = re.search(rf"^([A-D])\. {text}$", messages[-1]["content"], re.M).group(1)
            return json.dumps({"answer": letter, **dict.fromkeys(CHOICE_CRITERIA, True),
                               **criteria, "reason": "fine"})
        return ScriptedLLM(respond, name="judge")

    def run(member):
        return filter_example([member], env, example, "unanimous", True, distractors)

    env = make_env("sql")
    right, wrong = run(judge_picking(example.instruction)), run(judge_picking("Count the cats"))
    unnatural = run(judge_picking(example.instruction, natural=False))
    unparsable = run(ScriptedLLM(['{"answer": "Z"}'], name="judge"))
    env.close()
    assert right.accepted and right.votes[0].criteria == {IDENTIFIED: True} | dict.fromkeys(
        CHOICE_CRITERIA, True)
    assert not wrong.accepted and wrong.rejected_by == "committee"
    assert wrong.votes[0].criteria[IDENTIFIED] is False and "picked" in wrong.votes[0].reason
    assert not unnatural.accepted and unnatural.votes[0].criteria[IDENTIFIED] is True
    assert not unparsable.accepted and "unparsable" in unparsable.votes[0].reason


def test_the_docs_sample_grows_by_prefix_and_always_holds_the_included_documents():
    docs = [Document(id=f"{k:02d}", source=f"docs/page{k}.html", title=f"Page {k}", text="x")
            for k in range(40)]
    small, large = select_documents(docs, 5, 0), select_documents(docs, 12, 0)
    assert len(small) == 5 and {d.id for d in small} <= {d.id for d in large}
    chosen = select_documents(docs, 3, 0, include=["*page3?.html", "page 7"])
    assert {"07", "30", "31"} <= {d.id for d in select_documents(docs, 12, 0, ["*page3?.html",
                                                                              "page 7"])}
    assert len(chosen) == 3 and all(d.id in {"07"} or d.source.startswith("docs/page3")
                                    for d in chosen)


def test_near_duplicate_tasks_are_dropped():
    tasks = [Task(id=str(k), env="sql", instruction=text, origin="doc") for k, text in
             enumerate(["Count the pets.", "count the  pets", "List the students."])]
    kept, dropped = dedupe(tasks, 0.85)
    assert [t.id for t in kept] == ["0", "2"] and dropped == 1


def test_decontamination_catches_exact_ngram_and_gold_action():
    gold = Task(id="g", env="sql", origin="benchmark",
                instruction="Find the number of dog pets that are raised by female students.",
                gold="SELECT count(*) FROM student")
    d = Decontaminator([gold], ngram=4, max_overlap=0.5)
    assert d.instruction_reason("find the number of dog pets that are raised by female "
                                "students") == "exact match with an evaluation instruction"
    assert "4-grams" in d.instruction_reason("Please find the number of dog pets that are "
                                             "raised by female students today")
    assert d.instruction_reason("List every museum opened after 2009.") is None
    traj = _traj(["submit select COUNT(*)  from student;"], ["o0", "o1"])
    example = backward.Example(id="e", instruction="Count them all", kind="abstraction",
                               env="sql", trajectory_id="x", span=(0, 1), steps=traj.steps,
                               final_observation="o1")
    assert "gold action" in d.example_reason(example)


def test_store_survives_a_torn_last_line_and_never_duplicates(tmp_path):
    path = tmp_path / "s.jsonl"
    store = JsonlStore(path, Task)
    first = Task(id="a", env="sql", instruction="one", origin="user")
    assert store.append(first) and not store.append(first)
    with open(path, "a") as fh:
        fh.write('{"id": "b", "env": "sql", "instr')  # kill -9 in the middle of a write
    reopened = JsonlStore(path, Task)
    assert [t.id for t in reopened] == ["a"] and reopened.skipped_lines == 1
    reopened.append(Task(id="c", env="sql", instruction="two", origin="user"))
    assert [t.id for t in JsonlStore(path, Task)] == ["a", "c"]


def test_store_skips_undecodable_and_altered_lines(tmp_path):
    path = tmp_path / "s.jsonl"
    store = JsonlStore(path, Task)
    store.append(Task(id="a", env="sql", instruction="naïve café", origin="user"))
    store.append(Task(id="b", env="sql", instruction="second", origin="user"))
    lines = path.read_bytes().splitlines(keepends=True)
    # a torn line ending inside a multi-byte character, then a garbled ASCII byte in a string
    torn = lines[0][: lines[0].index("é".encode()) + 1]
    path.write_bytes(torn + b"\n" + lines[1].replace(b"second", b"secoxd") + b"\xff\xfe\n")
    reopened = JsonlStore(path, Task)  # no UnicodeDecodeError
    assert len(reopened) == 0 and reopened.skipped_lines == 3
    reopened.append(Task(id="a", env="sql", instruction="naïve café", origin="user"))
    assert [t.instruction for t in JsonlStore(path, Task)] == ["naïve café"]
    assert all(json.loads(line)["_sha256"] for line in path.read_text(errors="replace")
               .splitlines()[-1:])


# ---- configs -----------------------------------------------------------------------------------

def test_every_shipped_synthesis_config_validates():
    configs = sorted([*(ROOT / "configs").glob("*.yaml"),
                      *(ROOT / "configs/experiments").glob("*.yaml")])
    assert len(configs) > 8
    for path in configs:
        assert isinstance(load_config(path), SynthConfig)


def test_bad_config_names_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: sql\noutput_dir: out\nrollout: {step_limit: 0, concurency: 2}\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "rollout.step_limit" in str(err.value) and "rollout.concurency" in str(err.value)
    bad.write_text("env: nowhere\noutput_dir: out\n")
    with pytest.raises(ConfigError, match="unknown env"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


# ---- whole runs --------------------------------------------------------------------------------

def _responder(role: str):
    def respond(messages):
        prompt = messages[-1]["content"]
        if role == "generator" and "give 2 different tasks" in prompt:
            title = re.search(r"=== DOCUMENTATION: (.*) ===", prompt).group(1)
            return json.dumps({"tasks": [f"Count the rows of each table ({title})",
                                         f"List the column names of every table ({title})"]})
        if role == "generator":
            kind = "summary" if "In your own words" in prompt else "abstraction"
            return f"A {kind} instruction about sqlite_master in {len(prompt)} characters"
        if role == "agent":
            step = prompt.count("\nACTION: ")
            return ("REASON: look\nACTION: SELECT name FROM sqlite_master" if step == 0 else
                    "REASON: again\nACTION: SELECT count(*) AS n FROM sqlite_master" if step == 1
                    else "REASON: done\nACTION: stop")
        verdict = "Replicate the following" not in prompt  # this judge rejects summaries
        return json.dumps({c: verdict for c in ("aligned", "coherent", "natural", "reasonable")}
                          | {"reason": "ok" if verdict else "too literal"})
    return respond


def _scripted_factory(calls: list[str]):
    def make(config, budget):
        role = config.model.split("/")[1]
        def counted(messages, role=role):
            calls.append(role)
            return _responder(role)(messages)
        return ScriptedLLM(counted, name=config.model, budget=budget)
    return make


def _config(tmp_path) -> SynthConfig:
    return SynthConfig.model_validate({
        "env": "sql", "output_dir": str(tmp_path / "out"),
        "models": {"generator": {"model": "scripted/generator"},
                   "agent": {"model": "scripted/agent"},
                   "committee": [{"model": "scripted/judge"}]},
        "docs": {"max_docs": 3}, "taskgen": {"tasks_per_doc": 2},
        "rollout": {"step_limit": 4, "max_tasks": 4},
        "backward": {"max_spans_per_trajectory": 3},
        "filter": {"choices": 0},  # the choice check has its own tests
    })


def test_yield_counts_the_calls_the_model_answered_not_cache_hits():
    stage = {"input_tokens": 0, "output_tokens": 0, "llm_seconds": 0, "wall_s": 10}
    first = {"wall_s": 1800, "stages": {"backward": {**stage, "calls": 10, "cache_hits": 0}}}
    rebuilt = {"wall_s": 1800, "stages": {"backward": {**stage, "calls": 10, "cache_hits": 10}}}
    written_before_cache_hits_were = {"wall_s": 0, "stages": {"filter": {**stage, "calls": 5}}}
    whole = pipeline.all_runs([first, rebuilt, written_before_cache_hits_were], accepted=5)
    assert whole["calls_per_accepted_example"] == 3.0  # (10 + 0 + 5) / 5
    assert whole["accepted_per_hour"] == 5.0 and whole["stages"]["backward"]["calls"] == 20


def test_pipeline_end_to_end_with_scripted_models_then_resumes_with_no_calls(tmp_path):
    calls: list[str] = []
    config = _config(tmp_path)
    assert Synthesis(config, make_model=_scripted_factory(calls)).run(until="rollouts") is None
    assert set(calls) == {"generator", "agent"} and not (config.output_dir / "dataset").exists()
    path = Synthesis(config, make_model=_scripted_factory(calls)).run()  # resumes after rollouts
    stats = json.loads((config.output_dir / "stats.json").read_text())
    st = stats["stages"]
    assert st["taskgen"]["documents"] == 3 and st["taskgen"]["tasks_generated"] == 6
    assert st["rollouts"]["trajectories"] == 4 and calls.count("agent") == 4 * 3
    assert st["rollouts"]["terminations"] == {"stop": 4}
    assert st["backward"]["spans_selected"] == 12 and st["backward"]["examples_constructed"] == 24
    assert st["filter"]["rejected_committee"] == 12 and st["filter"]["accepted"] == 12
    whole = stats["all_runs"]  # the first run's rollouts are counted in the dataset's cost
    assert whole["invocations"] == 2 and whole["stages"]["rollouts"]["calls"] == 12
    assert whole["calls_per_accepted_example"] == round(len(calls) / 12, 2)

    data = load_dataset_dir(path)
    assert data["trajectories"]["train"].num_rows == 4
    examples = data["examples"]["train"]
    assert examples.num_rows == 12 and set(examples["kind"]) == {"abstraction"}
    assert all(json.loads(v)[0]["accept"] for v in examples["votes"])
    distill = data["distill"]["train"]  # the 4 rollouts with their original tasks, whole
    assert distill.num_rows == 4 and set(distill["kind"]) == {"original"}
    assert sorted(distill["instruction"]) == sorted(data["trajectories"]["train"]["instruction"])
    assert all(r["span_start"] == 0 and r["span_end"] == r["num_steps"] for r in distill)
    assert export.example_from_row(distill[0]).steps[0].action
    sft = data["sft"]["train"]
    assert sft.num_rows == sum(examples["num_steps"])
    messages = sft[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[2]["content"].startswith("REASON: ") and "\nACTION: " in messages[2]["content"]
    card = (path / "README.md").read_text()
    assert "Replicate the following" in card and "scripted/judge" in card and "configs:" in card

    before = len(calls)
    Synthesis(config, make_model=_scripted_factory(calls)).run()
    assert len(calls) == before  # everything was already done

    grown = config.model_copy(update={"docs": config.docs.model_copy(update={"max_docs": 4})})
    Synthesis(grown, make_model=_scripted_factory(calls)).run(until="taskgen")
    assert calls[before:] == ["generator"]  # one more document; the first three are kept
    reseeded = config.model_copy(update={"docs": config.docs.model_copy(update={"seed": 1})})
    with pytest.raises(ConfigError, match="docs.seed=0"):
        Synthesis(reseeded, make_model=_scripted_factory(calls)).run()


def test_a_budget_stops_new_work_and_still_exports_what_finished(tmp_path):
    calls: list[str] = []
    config = _config(tmp_path).model_copy(update={"budget": BudgetConfig(max_calls=12)})
    synthesis = Synthesis(config, make_model=_scripted_factory(calls))
    path = synthesis.run()
    assert len(calls) == 12 and "12/12 calls" in synthesis.stopped_by
    assert synthesis.stats["stopped_by_budget"] == synthesis.stopped_by
    data = load_dataset_dir(path)
    assert data["trajectories"]["train"].num_rows >= 1  # 3 taskgen calls, then 3 per rollout
    assert data["examples"]["train"].num_rows == 0  # backward construction never started


def test_push_to_hub_offline_fails_clearly_and_keeps_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _config(tmp_path)
    path = Synthesis(config, make_model=_scripted_factory([])).run()
    with pytest.raises(LbiError, match="kept at"):
        push_to_hub(path, "someone/lbi-sql")
    assert load_dataset_dir(path)["examples"]["train"].num_rows == 12


def _mock_config(tmp_path: Path, executor: dict | None = None) -> Path:
    def role(text: str, delay: float) -> dict:
        return {"model": "openai/gpt-4o-mini", "extra": {"mock_response": text,
                                                         "mock_delay": delay}}
    config = {
        "env": "sql", "output_dir": str(tmp_path / "out"),
        "models": {
            "generator": role('{"tasks": ["Count the rows of every table in this database", '
                              '"Show the first row of the largest table"]}', 0.02),
            "agent": role("REASON: look\nACTION: SELECT name FROM sqlite_master", 0.05),
            "committee": [role('{"aligned": true, "coherent": true, "natural": true, '
                               '"reasonable": true, "reason": "fine"}', 0.02)],
        },
        "docs": {"max_docs": 6}, "taskgen": {"tasks_per_doc": 2},
        "rollout": {"step_limit": 3, "concurrency": 2},
        "backward": {"max_spans_per_trajectory": 2},
        "filter": {"choices": 0},
        "executor": executor or {},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "mock.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _synth(config: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": "sk-mock", "LBI_CACHE_DIR": str(cache)}
    # SIGINT as in a terminal, even when the tests themselves run in the background (where a
    # shell starts them with SIGINT ignored, and Python then keeps ignoring it).
    return subprocess.Popen(["lbi", "synth", "--config", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _jsonl_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_text().splitlines():
        try:
            ids.append(json.loads(line)["id"])
        except ValueError:
            continue  # a torn line from the kill
    return ids


@pytest.fixture(scope="module")
def clean_mock_run(tmp_path_factory) -> Path:
    """The output folder of one uninterrupted local run of the mock synthesis."""
    root = tmp_path_factory.mktemp("clean")
    assert _synth(_mock_config(root), root / "cache").wait(timeout=300) == 0
    return root / "out"


@pytest.mark.parametrize("executor", [None, {"kind": "ray", "env_workers": 2}],
                         ids=["local", "ray"])
def test_kill_9_at_any_stage_then_resume_loses_nothing_and_duplicates_nothing(tmp_path,
                                                                              executor,
                                                                              clean_mock_run):
    """The driver killed with SIGKILL in every stage (with Ray: its environment actors die with
    it), then rerun: every store matches a clean local run's, without duplicates."""
    if executor:
        pytest.importorskip("ray")
    ref_out = clean_mock_run

    config = _mock_config(tmp_path / "run", executor)
    out = tmp_path / "run" / "out"
    for stage_file in ("taskgen.jsonl", "trajectories.jsonl", "examples.jsonl",
                       "judgements.jsonl"):
        proc = _synth(config, tmp_path / "cache")
        deadline = time.monotonic() + 120
        while not (out / stage_file).exists() and proc.poll() is None:
            assert time.monotonic() < deadline, f"{stage_file} never appeared"
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):  # it may just have finished
            os.killpg(proc.pid, signal.SIGKILL)  # kill -9, mid-stage
        proc.wait()
    final = _synth(config, tmp_path / "cache")
    output = final.communicate(timeout=300)[0]
    assert final.returncode == 0, output

    for name in ("taskgen.jsonl", "trajectories.jsonl", "examples.jsonl", "judgements.jsonl"):
        ids = _jsonl_ids(out / name)
        assert len(ids) == len(set(ids)), f"duplicates in {name}"
        assert set(ids) == set(_jsonl_ids(ref_out / name)), f"{name} differs from a clean run"
    resumed = load_dataset_dir(out / "dataset")
    clean = load_dataset_dir(ref_out / "dataset")
    for name in ("trajectories", "examples", "sft"):
        assert sorted(resumed[name]["train"]["id"]) == sorted(clean[name]["train"]["id"])


def test_ctrl_c_stops_promptly_and_keeps_what_finished(tmp_path):
    """SIGINT drops the queued items (hours with a slow model) instead of running them all."""
    config = yaml.safe_load(_mock_config(tmp_path).read_text())
    config["models"]["agent"]["extra"]["mock_delay"] = 1.0  # 3 steps: ~3 s per rollout
    config["docs"]["max_docs"] = 10
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = _synth(path, tmp_path / "cache")
    store = tmp_path / "out" / "trajectories.jsonl"
    deadline = time.monotonic() + 120
    while not (store.exists() and store.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    stopped = time.monotonic()
    output = proc.communicate(timeout=60)[0]
    # the 2 rollouts in flight finish (≤ 3 s); the queue (≈ 20 rollouts, 30 s more) does not
    assert time.monotonic() - stopped < 15, "waited for the queue"
    assert proc.returncode != 0 and "Traceback" not in output
    kept = _jsonl_ids(store)
    assert 2 <= len(kept) < 20 and len(kept) == len(set(kept))
    final = _synth(path, tmp_path / "cache")
    assert final.wait(timeout=300) == 0
    assert set(kept) <= set(_jsonl_ids(store))


def test_documents_are_spread_evenly_over_the_contexts_as_a_run_grows():
    from collections import Counter

    from lbi.envs.base import TaskContext
    from lbi.synth.taskgen import plan_contexts
    from lbi.types import Document, content_id

    contexts = [TaskContext({"db": f"db{k}"}, f"Database: db{k}") for k in range(7)]
    docs = [Document(id=content_id(k), title=f"doc {k}", text="x", source=f"page{k}")
            for k in range(40)]
    first = plan_contexts(docs[:21], contexts, done=[])
    assert set(Counter(c.env_args["db"] for _, c in first).values()) == {3}
    assert plan_contexts(docs[:21], contexts, done=[]) == first  # stable
    # A grown run whose first documents all went to db0: the new ones go elsewhere first.
    grown = plan_contexts(docs[21:33], contexts, done=[{"db": "db0"}] * 3)
    counts = Counter(c.env_args["db"] for _, c in grown)
    assert "db0" not in counts and set(counts.values()) == {2}
