"""Real llama.cpp inference on the embedded models (slow: needs `lbi models pull --all`)."""

from __future__ import annotations

import json
import subprocess

import pytest

from lbi.agent.llm import LLM, LLMConfig
from lbi.agent.local import EMBEDDED, is_verified
from lbi.agent.prompts import RESPONSE_GRAMMAR, parse_response

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _models_present():
    missing = [n for n, m in EMBEDDED.items() if not is_verified(m)]
    assert not missing, f"run `lbi models pull --all` first (missing: {missing})"


def test_smollm_through_the_litellm_surface_records_and_caches(llm_cache):
    llm = LLM(LLMConfig(model="local/smollm2-135m", max_tokens=16))
    messages = [{"role": "user", "content": "Name a colour."}]
    first = llm.complete(messages)
    again = llm.complete(messages)
    assert first.text.strip() and first.call.output_tokens > 0 and first.call.input_tokens > 5
    assert first.call.cost is None and not first.call.cache_hit and first.call.latency_s > 0
    assert again.text == first.text and again.call.cache_hit


def test_grammar_forces_the_agent_format_even_on_a_tiny_model(llm_cache):
    llm = LLM(LLMConfig(model="local/smollm2-135m", max_tokens=120, cache=False))
    out = llm.complete([{"role": "user", "content": "How many rows are in table t?"}],
                       grammar=RESPONSE_GRAMMAR)
    reasoning, action = parse_response(out.text)
    assert out.text.startswith("REASON: ") and action


def test_lbi_run_completes_a_spider_episode_with_qwen_0_5b(tmp_path):
    out = subprocess.run(
        ["lbi", "run", "--env", "sql", "--task", "spider-1017", "--model",
         "local/qwen2.5-coder-0.5b", "--step-limit", "3", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "LBI_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    traj = json.loads((tmp_path / "sql/local_qwen2.5-coder-0.5b/spider-1017.json").read_text())
    assert traj["termination"] in {"stop", "step_limit"} and 1 <= len(traj["steps"]) <= 3
    assert traj["reward"] in {0.0, 1.0}
    first = traj["steps"][0]
    assert first["observation"].startswith("Database: pets_1") and first["action"]
    assert first["llm"]["output_tokens"] > 0 and not first["llm"]["cache_hit"]


@pytest.mark.parametrize(("env", "task", "first_observation"), [
    ("shell", "alfa-5-006", "A new bash shell is ready"),
    ("code", "humaneval-0", "/repo/solution.py holds the function"),
    ("web", "click-button-1000", "Page goal: Click on the"),
])
def test_lbi_run_completes_an_episode_in_every_new_environment(tmp_path, env, task,
                                                              first_observation):
    out = subprocess.run(
        ["lbi", "run", "--env", env, "--task", task, "--model", "local/qwen2.5-coder-0.5b",
         "--step-limit", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
        env={**__import__("os").environ, "LBI_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    traj = json.loads((tmp_path / env / f"local_qwen2.5-coder-0.5b/{task}.json").read_text())
    assert traj["termination"] in {"stop", "step_limit"} and traj["error"] is None
    assert traj["reward"] in {0.0, 1.0}
    assert traj["steps"][0]["observation"].startswith(first_observation)
    assert all(s["action"] for s in traj["steps"])


def test_lbi_eval_with_agentic_retrieval_on_a_real_model(tmp_path, sql_examples):
    """`lbi eval` as a user runs it: a dataset on disk, a real embedded model writing the search
    queries and acting, results files written."""
    import yaml

    from lbi.synth import export

    rows = [export.example_row(e) for e in sql_examples]
    export.save_dataset(export.build_dataset([], rows, rows[:1], []), "card", tmp_path / "ds")
    config = {"env": "sql", "output_dir": str(tmp_path / "eval"), "dataset": str(tmp_path / "ds"),
              "split": "dev", "tasks": ["spider-1017"], "step_limit": 1,
              "model": {"model": "local/smollm2-135m", "max_tokens": 64},
              "agents": [{"name": "zero-shot"},
                         {"name": "LbI-ICL", "retrieval": {"corpus": "examples", "m1": 2,
                                                           "m2": 2, "max_tokens": 600}}]}
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run(["lbi", "eval", "--config", str(tmp_path / "eval.yaml")],
                         capture_output=True, text=True, timeout=900,
                         env={**__import__("os").environ, "LBI_CACHE_DIR": str(tmp_path / "c"),
                              "COLUMNS": "200"})
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "eval/results.json").read_text())
    assert [r["name"] for r in results["agents"]] == ["zero-shot", "LbI-ICL"]
    icl = json.loads((tmp_path / "eval/episodes/LbI-ICL/spider-1017.json").read_text())
    step = icl["steps"][0]
    assert step["retrieval"]["ids"] and 0 < step["retrieval"]["tokens"] <= 600
    assert step["retrieval"]["llm"]["output_tokens"] > 0  # the model wrote a query
    assert icl["provenance"]["llm"]["calls"] >= 2
    assert "| LbI-ICL |" in (tmp_path / "eval/results.md").read_text()


CODE_WORDS = ["apple", "river", "tiger", "violet", "copper", "falcon", "marble", "orchid",
              "canyon", "pepper", "saturn", "walnut", "zephyr", "lemon", "harbor", "quartz"]


def ask_code_words(seed: int, requests: int = 8) -> list[tuple[str, str]]:
    """``requests`` prompts (a long filler, then a code word to repeat) from 4 threads."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    llm = LLM(LLMConfig(model="local/smollm2-135m", max_tokens=12, slots=4, cache=False))

    def ask(k: int) -> tuple[str, str]:
        rng = random.Random(seed * 1000 + k)
        word = rng.choice(CODE_WORDS)
        filler = " ".join(rng.choice(["the", "data", "row", "table", "query", "value"])
                          for _ in range(rng.randint(300, 1200)))
        return word, llm.complete([
            {"role": "system", "content": "You repeat code words."},
            {"role": "user", "content": f"{filler}\n\nThe code word is {word}. Reply with the "
                                        "code word only."}]).text.lower()

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(ask, range(requests)))


def test_every_answer_belongs_to_its_own_prompt_with_more_clients_than_slots(llm_cache):
    """Two processes, 4 threads each (8 clients), on one 4-slot server, two rounds: no answer may
    name another request's code word. (When clients pinned slots, two requests could share one
    and llama-server answered some from the other request's cached context.)"""
    import sys

    code = ("import json, sys; sys.path.insert(0, 'tests'); "
            "from test_embedded_models import ask_code_words; "
            "print(json.dumps(ask_code_words(int(sys.argv[1]))))")
    answers = []
    for _ in range(2):  # the second round meets slots that hold cached prompts
        procs = [subprocess.Popen([sys.executable, "-c", code, str(seed)],
                                  stdout=subprocess.PIPE, text=True) for seed in (1, 2)]
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0
            answers += json.loads(out.splitlines()[-1])
    strays = [(word, text) for word, text in answers
              if any(other in text for other in CODE_WORDS if other != word)]
    assert not strays
    assert sum(word in text for word, text in answers) >= len(answers) // 3  # it does answer
