"""Credentials of the host never reach data: not through the sandbox, an agent's answer, a
config header or a URL. Every file a synthesis or an evaluation writes is searched."""

from __future__ import annotations

from pathlib import Path

import pytest
from standin import StandIn, role

from lbi.agent.scripted import ScriptedLLM
from lbi.eval.config import EvalConfig
from lbi.eval.harness import Evaluation
from lbi.redact import redact_config, redact_text
from lbi.synth.config import SynthConfig
from lbi.synth.pipeline import Synthesis

FAKE = {"ANTHROPIC_API_KEY": "sk-ant-fake0123456789abcdefXYZ",
        "OPENAI_API_KEY": "sk-fakeOPENAI0123456789abcdef",
        "HF_TOKEN": "hf_fakeHFtoken0123456789abcdefgh",
        "MY_SERVICE_SECRET": "plain-looking-value-42"}


@pytest.fixture
def fake_keys(monkeypatch):
    for name, value in FAKE.items():
        monkeypatch.setenv(name, value)
    return FAKE


def _leaks(folder: Path) -> list[str]:
    """Files under ``folder`` (arrow files and stores included) that hold a fake value."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {name}" for name, value in FAKE.items()
                      if value.encode() in data]
    return found


def _scripted(config, budget):
    def agent(messages):
        return ("REASON: look around (my key is sk-fakeOPENAI0123456789abcdef)\n"
                "ACTION: cat /proc/1/environ; env; echo $HF_TOKEN; printenv MY_SERVICE_SECRET")

    answers = {"generator": lambda m: ('{"tasks": ["Show the environment"]}'
                                       if "JSON" in m[0]["content"] else
                                       "Print the environment variables of the shell."),
               "agent": agent,
               "judge": lambda m: ('{"aligned": true, "coherent": true, "natural": true, '
                                   '"reasonable": true, "reason": "ok"}')}
    name = config.model.split("/")[-1]
    return ScriptedLLM(answers[name], name=name, budget=budget)


def test_a_shell_synthesis_whose_agent_dumps_the_environment_keeps_no_secret(fake_keys,
                                                                             tmp_path):
    config = SynthConfig.model_validate({
        "env": "shell", "output_dir": str(tmp_path / "out"),
        "models": {"generator": {"model": "scripted/generator"},
                   "agent": {"model": "scripted/agent"},
                   "committee": [{"model": "scripted/judge"}]},
        "docs": {"max_docs": 1}, "taskgen": {"tasks_per_doc": 1},
        "rollout": {"step_limit": 2}, "backward": {"max_spans_per_trajectory": 2},
        "filter": {"use_env_check": False}})
    path = Synthesis(config, make_model=_scripted).run()
    assert path is not None
    assert _leaks(tmp_path) == []
    card = (path / "README.md").read_text()
    count = int(card.split("at export: ")[1].split()[0])
    assert count >= 1  # the agent's reasoning quoted a key: caught at export


def test_eval_outputs_hide_headers_url_passwords_and_keys(fake_keys, tmp_path):
    secret_header = "Bearer abcdefghijklmnopqrstuvwxyz0123"
    with StandIn() as server:
        url = server.url.replace("http://", "http://user:hunter2password@")
        config = EvalConfig.model_validate({
            "env": "sql", "output_dir": str(tmp_path / "eval"), "split": "dev",
            "tasks": ["spider-1017"],
            "step_limit": 1,
            "model": role("agent", url, extra={"extra_headers": {
                "Authorization": secret_header, "X-Api-Key": FAKE["OPENAI_API_KEY"]}}),
            "agents": [{"name": "zero-shot"}]})
        Evaluation(config).run()
    assert _leaks(tmp_path) == []
    for path in (tmp_path / "eval").rglob("*.json"):
        text = path.read_text()
        assert "hunter2password" not in text and "abcdefghijklmnopqrstuvwxyz0123" not in text


def test_redaction_by_value_pattern_and_key():
    text, n = redact_text("token=hf_abcdefghijklmnopqrstuvwx and AKIAABCDEFGHIJKLMNOP; "
                          "https://bob:pw123@host/v1 Authorization: Bearer abc.def-ghi_jkl012345")
    assert n == 4 and "hf_abc" not in text and "AKIA" not in text and "pw123" not in text
    assert "abc.def" not in text
    assert redact_config({"api_key": "x", "max_tokens": 5, "extra": {"extra_headers": {
        "Authorization": "t"}}}) == {"api_key": "<redacted>", "max_tokens": 5,
                                     "extra": {"extra_headers": {"Authorization": "<redacted>"}}}
