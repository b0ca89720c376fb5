"""The managed llama-server (real llama.cpp, the 135M test model): shared by processes, outlives
a killed client, restarted after a crash, gone when no client is left; grammar and JSON schema
reach it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lbi.agent import server
from lbi.agent.llm import LLM, LLMConfig
from lbi.agent.local import resolve_gguf
from lbi.agent.prompts import RESPONSE_GRAMMAR, parse_response

MODEL = "local/smollm2-135m"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Servers of this test only (their state under a private folder), stopped at the end."""
    models = resolve_gguf(MODEL)
    monkeypatch.setattr(server, "state_dir", lambda spec: tmp_path / "servers" / spec.key)
    monkeypatch.setenv("LBI_SERVER_IDLE_S", "2")
    spec = server.ServerSpec(model=str(models), slots=2, ctx_per_slot=2048, threads=1)
    yield spec
    state = server._read_state(server.state_dir(spec))
    if state:
        os.kill(state["supervisor_pid"], signal.SIGTERM)


def _client(spec: server.ServerSpec, folder, code: str) -> subprocess.Popen:
    """Another process that uses the same server."""
    program = ("import json, sys, time; from pathlib import Path; from lbi.agent import server\n"
               f"server.state_dir = lambda spec: Path({str(folder)!r})\n"
               f"spec = server.ServerSpec(**json.loads({json.dumps(json.dumps(spec.__dict__))}))\n"
               f"{code}\n")
    return subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)


def test_processes_share_one_server_that_outlives_a_killed_client_and_survives_a_crash(home):
    spec, folder = home, server.state_dir(home)
    url = server.ensure_server(spec)
    other = _client(spec, folder, "print(server.ensure_server(spec), flush=True); "
                                  "time.sleep(600)")
    assert other.stdout.readline().strip() == url  # the same server, not a second one
    state = server._read_state(folder)
    other.kill()  # kill -9 of a client
    other.wait()
    assert server.healthy(url)

    os.kill(state["server_pid"], signal.SIGKILL)  # llama-server crashes
    deadline = time.monotonic() + 60
    while not (server.healthy(url) and server._read_state(folder)["server_pid"] !=
               state["server_pid"]):
        assert time.monotonic() < deadline, "not restarted"
        time.sleep(0.2)
    log = (folder / "server.log").read_text()
    assert log.count("[lbi] llama-server exited with code") == 1


def test_the_server_stops_when_no_client_is_left(home):
    spec, folder = home, server.state_dir(home)
    client = _client(spec, folder, "print(server.ensure_server(spec), flush=True)")
    url = client.stdout.readline().strip()
    client.wait()
    state = server._read_state(folder)
    deadline = time.monotonic() + 30
    while server.pid_alive(state["supervisor_pid"]) or server.pid_alive(state["server_pid"]):
        assert time.monotonic() < deadline, "still running with no client"
        time.sleep(0.2)
    assert not server.healthy(url) and not (folder / "state.json").exists()


def test_grammar_and_json_schema_are_enforced_through_the_server(home, monkeypatch):
    monkeypatch.setattr(server, "default_threads", lambda: 1)
    llm = LLM(LLMConfig(model=MODEL, slots=2, n_ctx=2048, max_tokens=48, cache=False))
    messages = [{"role": "user", "content": "Say hello."}]
    out = llm.complete(messages, grammar=RESPONSE_GRAMMAR)
    reasoning, action = parse_response(out.text)  # the 135M model obeys only under the grammar
    assert action
    schema = {"type": "object", "properties": {"tasks": {"type": "array", "items": {
        "type": "string"}, "minItems": 2, "maxItems": 2}}, "required": ["tasks"]}
    out = llm.complete([{"role": "user", "content": "Give two tasks."}],
                       response_format={"type": "json_object", "schema": schema})
    tasks = json.loads(out.text)["tasks"]
    assert len(tasks) == 2 and all(isinstance(t, str) for t in tasks)


def test_only_the_chosen_cpu_variants_are_built(tmp_path):
    cmake = tmp_path / "CMakeLists.txt"
    cmake.write_text("".join(f"        ggml_add_cpu_backend_variant({v} AVX)\n" for v in [
        "x64", "sse42", "haswell", "icelake", "sapphirerapids", "zen4"])
        + "            ggml_add_cpu_backend_variant(armv8.0_1)\n")
    server._keep_variants(cmake, server.CPU_VARIANTS)
    kept = [line.split("(")[1].split()[0].rstrip(")") for line in cmake.read_text().splitlines()]
    assert kept == ["x64", "haswell", "icelake", "zen4", "armv8.0_1"]


def test_a_missing_server_binary_is_one_clear_error(monkeypatch):
    from lbi.errors import ModelError

    monkeypatch.setenv("LBI_LLAMA_SERVER", "/nonexistent/llama-server")
    with pytest.raises(ModelError, match="lbi serve --build"):
        LLM(LLMConfig(model=MODEL))


def test_free_cores_is_between_one_and_the_affinity_mask():
    assert 1 <= server.free_cores(0.05) <= len(os.sched_getaffinity(0))


def test_a_client_whose_server_went_away_starts_a_new_one_on_retry(home, monkeypatch):
    from lbi.agent import providers

    monkeypatch.setattr(server, "default_threads", lambda: 1)
    monkeypatch.setattr(providers, "_HEALTH_TTL_S", 3600.0)  # the URL is trusted, not re-checked
    monkeypatch.setattr(providers.EMBEDDED, "_endpoints", {})  # not an earlier test's server
    llm = LLM(LLMConfig(model=MODEL, slots=2, n_ctx=2048, max_tokens=4, cache=False,
                        max_retries=1, retry_backoff_s=0.1))
    messages = [{"role": "user", "content": "Say hello."}]
    llm.complete(messages)
    first = server.running_state(home)
    assert server.stop_server(home)  # stopped (e.g. `lbi serve --stop`) between two requests
    out = llm.complete(messages)  # the failed request marks the server unseen; the retry
    second = server.running_state(home)  # starts a new one
    assert second and second["supervisor_pid"] != first["supervisor_pid"]
    assert out.call.retries == 1
