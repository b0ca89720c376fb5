"""One call surface for every LLM: litellm for providers and for the embedded models' server.

``LLM(LLMConfig(model=...)).complete(messages)`` works the same for ``anthropic/…``,
``openai/…`` with ``api_base``, ``hosted_vllm/…`` and ``local/qwen2.5-coder-0.5b``. Every call
is recorded (tokens, latency, cost, cache hit, retries) and counted against a shared ``Budget``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

import diskcache  # noqa: E402
import litellm  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from lbi.agent.providers import REJECTED, is_embedded, provider_of  # noqa: E402
from lbi.assets import lbi_home  # noqa: E402
from lbi.errors import BudgetExceeded, ModelError  # noqa: E402
from lbi.protocols import Completion  # noqa: E402
from lbi.types import LLMCall, content_id  # noqa: E402

log = logging.getLogger(__name__)
litellm.suppress_debug_info = True

# Errors that retrying cannot fix, with the provider's message. A bad key or an unknown model
# fails every call (ModelError: the run stops); an over-long or malformed request fails only
# itself (RequestRejected: what needed it ends in an error, the run goes on).
_FATAL = (litellm.AuthenticationError, litellm.NotFoundError, litellm.PermissionDeniedError)
# Request fields that do not change the answer, left out of the cache key.
_NOT_IN_KEY = {"timeout", "mock_response", "max_retries", "num_retries"}


class LLMCallFailed(Exception):
    """The model endpoint failed a call after its retries (outage, rate limit, malformed
    answers). Not a result: whatever needed the call is left unfinished, and a later run
    retries it."""


class RequestRejected(Exception):
    """The endpoint refused this one request (context window exceeded, bad request): retrying
    cannot fix it, other requests may succeed. The episode or item that needed it ends in an
    error, recorded with this message; the run goes on."""


class Endpoint(BaseModel):
    """One server or account of a model behind litellm's Router (``LLMConfig.endpoints``)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    """The litellm model string at this endpoint (default: the config's ``model``)."""
    api_base: str | None = None
    """An OpenAI-compatible server (vLLM, llama-server, …); none for a hosted provider."""
    api_key_env: str | None = None
    """The name of the environment variable that holds this endpoint's key (another account
    or region); default: the provider's usual variable. Never the key itself."""
    max_concurrency: int = Field(8, ge=1)
    """Requests in flight at once to this endpoint from this process (exact: a request waits
    for a free slot); each request goes to the endpoint with the most free slots."""
    rpm: int | None = Field(None, ge=1)
    """Requests per minute this endpoint allows: past it, requests go to the other endpoints
    (or wait) until a minute's requests have left its window."""


class LLMConfig(BaseModel):
    """How to reach one model and how to sample from it."""

    model_config = ConfigDict(extra="forbid")

    model: str = "local/qwen2.5-coder-0.5b"
    """A litellm model string (``anthropic/…``, ``openai/…``, ``hosted_vllm/…``) or
    ``local/<name>``."""
    api_base: str | None = None
    """Endpoint of an OpenAI-compatible server (vLLM, llama.cpp server, …)."""
    temperature: float = 0.0
    max_tokens: int = 512
    timeout_s: float = Field(300.0, gt=0)
    """Limit of one HTTP request."""
    deadline_s: float = Field(900.0, gt=0)
    """Limit of one call, all its attempts and backoff delays together."""
    max_retries: int = Field(3, ge=0)
    """Retries after a failed request (rate limit, connection, 5xx, timeout, malformed
    answer), with exponential backoff: a call sends at most ``max_retries + 1`` requests.
    Authentication, not-found and bad-request errors are not retried."""
    retry_backoff_s: float = Field(1.0, ge=0)
    """First backoff delay; doubles on each retry, capped at 30 s."""
    cache: bool = True
    """Cache responses on disk by (model, messages, params): a rerun costs nothing. Turn off to
    draw fresh samples at temperature > 0."""
    n_ctx: int = Field(8192, gt=0)
    """Context window of each sequence of a local model (llama.cpp)."""
    slots: int = Field(4, ge=1)
    """Local models: sequences the managed llama-server decodes at once (``--parallel``);
    requests to it are bounded by this, not by ``max_concurrency``."""
    threads: int | None = Field(None, ge=1)
    """Local models: llama.cpp threads (default: the cores not busy when the server starts)."""
    max_concurrency: int = Field(8, ge=1)
    """Requests in flight at once to this endpoint (model + api_base), across all threads."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Passed through to ``litellm.completion`` (e.g. ``top_p``). Never put API keys here."""
    endpoints: list[Endpoint] = Field(default_factory=list)
    """Several endpoints serving this model (vLLM servers, llama-servers, keys or regions of a
    provider): litellm's Router sends the requests, each to an endpoint below its concurrency
    and rate limits, and an endpoint that fails is cooled down for 30 s; ``model`` then names
    the group (and is each endpoint's default model string). docs/scaling.md."""


def default_concurrency(config: LLMConfig) -> int:
    """Episodes to run at once against ``config`` when a run does not say: the slots of a
    local model's server (one episode per slot keeps its prompt cache warm), else 4."""
    return config.slots if is_embedded(config.model) else 4


class Budget:
    """Limits shared by every LLM of a run: BudgetExceeded before a call past them."""

    def __init__(self, max_calls: int | None = None, max_cost: float | None = None,
                 parent: Budget | None = None) -> None:
        self.max_calls = max_calls
        self.max_cost = max_cost
        self.parent = parent
        """Usage is also counted, and limits also checked, on the parent (a run-wide budget)."""
        self.calls = self.cache_hits = self.retries = self.failures = 0
        self.input_tokens = self.output_tokens = 0
        self.cost = 0.0
        self.llm_seconds = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        if self.parent is not None:
            self.parent.check()
        with self._lock:
            if self.max_calls is not None and self.calls >= self.max_calls:
                raise BudgetExceeded(f"call budget used up ({self.calls}/{self.max_calls} calls). "
                                     "Finished work is saved; raise max_calls to go on.")
            if self.max_cost is not None and self.cost >= self.max_cost:
                raise BudgetExceeded(f"cost budget used up (${self.cost:.4f} of "
                                     f"${self.max_cost:.4f}). Finished work is saved; raise "
                                     "max_cost to go on.")

    def record_failure(self) -> None:
        if self.parent is not None:
            self.parent.record_failure()
        with self._lock:
            self.failures += 1

    def record_retry(self) -> None:
        if self.parent is not None:
            self.parent.record_retry()
        with self._lock:
            self.retries += 1

    def add(self, call: LLMCall) -> None:
        if self.parent is not None:
            self.parent.add(call)
        with self._lock:
            self.calls += 1
            self.cache_hits += call.cache_hit
            self.input_tokens += call.input_tokens
            self.output_tokens += call.output_tokens
            self.cost += call.cost or 0.0
            self.llm_seconds += call.latency_s

    def add_usage(self, usage: dict[str, Any]) -> None:
        """Add usage counted elsewhere (a ``summary()`` difference from a remote worker)."""
        if self.parent is not None:
            self.parent.add_usage(usage)
        with self._lock:
            for key in ("calls", "cache_hits", "retries", "failures", "input_tokens",
                        "output_tokens", "cost", "llm_seconds"):
                setattr(self, key, getattr(self, key) + usage.get(key, 0))

    def summary(self) -> dict[str, Any]:
        return {"calls": self.calls, "cache_hits": self.cache_hits, "retries": self.retries,
                "failures": self.failures, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost": round(self.cost, 6),
                "llm_seconds": round(self.llm_seconds, 2)}


def cache_dir() -> Path:
    return Path(os.environ.get("LBI_CACHE_DIR", lbi_home() / "llm-cache"))


_caches: dict[Path, diskcache.Cache] = {}
_slots: dict[tuple[str, str | None], threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _endpoint_slots(config: LLMConfig) -> threading.BoundedSemaphore:
    """The semaphore that bounds concurrent requests to one endpoint (or router group)."""
    key = (config.model, config.api_base, *(e.model_dump_json() for e in config.endpoints))
    with _slots_lock:
        if key not in _slots:
            _slots[key] = threading.BoundedSemaphore(
                provider_of(config).capacity(config))
        return _slots[key]


def _cache() -> diskcache.Cache:
    """The response cache (diskcache: SQLite-backed, safe across threads and processes)."""
    path = cache_dir()
    if path not in _caches:
        _caches[path] = diskcache.Cache(str(path))
    return _caches[path]


def _cache_op(op: Callable[[diskcache.Cache], Any]) -> Any:
    """A cache read or write; a cache folder deleted or damaged mid-run is reopened once, and
    if that fails too the call goes on uncached (a cache is never worth a failed run)."""
    for attempt in range(2):
        try:
            return op(_cache())
        except (sqlite3.Error, OSError) as exc:
            _caches.pop(cache_dir(), None)
            if attempt:
                log.warning("LLM cache unusable (%s); going on without it", exc)
    return None


def validate_model(config: LLMConfig) -> None:
    """Fail early, with the fix, on an unknown model, a missing API key or a missing model file."""
    provider_of(config).validate(config)


class LLM:
    """A configured model with call recording, caching, retries and a budget."""

    def __init__(self, config: LLMConfig, budget: Budget | None = None) -> None:
        self.provider = provider_of(config)
        self.provider.validate(config)
        self.config = config
        self.budget = budget or Budget()
        self._slots = _endpoint_slots(config)

    @property
    def name(self) -> str:
        return self.config.model

    def _kwargs(self, messages: list[dict[str, Any]], overrides: dict[str, Any]) -> dict[str, Any]:
        c = self.config
        return {
            "model": c.model, "messages": messages, "temperature": c.temperature,
            "max_tokens": c.max_tokens, "timeout": c.timeout_s, **c.extra,
            # One retry layer, ours: the provider SDKs (OpenAI's retries twice by default) and
            # litellm's own wrapper are told not to retry.
            "max_retries": 0, "num_retries": 0, **overrides,
        }

    def _cache_key(self, kwargs: dict[str, Any]) -> str | None:
        if not self.config.cache:
            return None
        fields = {k: v for k, v in kwargs.items() if k not in _NOT_IN_KEY and k != "api_key"}
        fields["model"] = self.provider.cache_model(self.config)
        return content_id(fields)

    def _cached(self, key: str | None) -> Completion | None:
        hit = _cache_op(lambda cache: cache.get(key)) if key else None
        if hit is None:
            return None
        call = LLMCall(model=self.config.model, input_tokens=hit["input_tokens"],
                       output_tokens=hit["output_tokens"], cache_hit=True)
        self.budget.add(call)
        return Completion(text=hit["text"], call=call, truncated=hit.get("truncated", False))

    def _record(self, response: Any, text: str, started: float, retries: int,
                key: str | None) -> Completion:
        truncated = getattr(response.choices[0], "finish_reason", None) == "length"
        usage = getattr(response, "usage", None)
        cost = self.provider.cost(response)
        call = LLMCall(
            model=self.config.model,
            input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            output_tokens=getattr(usage, "completion_tokens", 0) or 0,
            cost=cost, latency_s=round(time.perf_counter() - started, 3), retries=retries,
        )
        self.budget.add(call)
        if key:
            value = {"text": text, "input_tokens": call.input_tokens,
                     "output_tokens": call.output_tokens, "truncated": truncated}
            _cache_op(lambda cache: cache.set(key, value))
        return Completion(text=text, call=call, truncated=truncated)

    def _retry_delay(self, exc: Exception, attempt: int, deadline: float) -> float:
        """The backoff before the next attempt. Raises when the error is fatal (ModelError), the
        request was refused (RequestRejected), or no attempt is left within ``max_retries`` and
        the call's deadline (LLMCallFailed)."""
        if isinstance(exc, _FATAL):
            raise ModelError(f"{self.config.model}: {exc}") from exc
        if isinstance(exc, REJECTED):
            self.budget.record_failure()
            raise RequestRejected(f"{self.config.model}: {type(exc).__name__}: "
                                  f"{str(exc)[:500]}") from exc
        delay = min(self.config.retry_backoff_s * 2.0**attempt, 30.0)
        if attempt >= self.config.max_retries or time.monotonic() + delay >= deadline:
            self.budget.record_failure()
            raise LLMCallFailed(f"{self.config.model} failed after {attempt + 1} request(s): "
                                f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        log.warning("%s: %s; retry %d/%d in %.1fs", self.config.model, type(exc).__name__,
                    attempt + 1, self.config.max_retries, delay)
        self.budget.record_retry()
        return delay

    def complete(self, messages: list[dict[str, Any]], **overrides: Any) -> Completion:
        """One chat completion (blocking). ``overrides`` go to litellm (``grammar``: local only).

        At most ``max_retries + 1`` requests, all within ``deadline_s`` (counted from the
        first request, not from the wait for a free connection slot)."""
        kwargs = self._kwargs(messages, overrides)
        key = self._cache_key(kwargs)
        deadline: float | None = None
        for attempt in range(self.config.max_retries + 1):
            self.budget.check()
            if hit := self._cached(key):
                return hit
            try:
                with self._slots:
                    started = time.perf_counter()
                    if deadline is None:
                        deadline = time.monotonic() + self.config.deadline_s
                    kwargs["timeout"] = max(0.1, min(self.config.timeout_s,
                                                     deadline - time.monotonic()))
                    response = self.provider.send(self.config, dict(kwargs))
                    text = response.choices[0].message.content or ""  # malformed: retried
                return self._record(response, text, started, attempt, key)
            except Exception as exc:
                self.provider.failed(self.config)  # e.g. check the server before the next try
                time.sleep(self._retry_delay(exc, attempt, deadline or time.monotonic()))
        raise AssertionError("unreachable")
