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
        ["lbi", "run", "--env", "sql", "--task", "spider-01", "--model",
         "local/qwen2.5-coder-0.5b", "--step-limit", "3", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "LBI_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    traj = json.loads((tmp_path / "sql/local_qwen2.5-coder-0.5b/spider-01.json").read_text())
    assert traj["termination"] in {"stop", "step_limit"} and 1 <= len(traj["steps"]) <= 3
    assert traj["reward"] in {0.0, 1.0}
    first = traj["steps"][0]
    assert first["observation"].startswith("Database: pets_1") and first["action"]
    assert first["llm"]["output_tokens"] > 0 and not first["llm"]["cache_hit"]
