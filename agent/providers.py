"""Where a model's requests go, chosen by the model string's prefix in one place.

- ``local/<name or path.gguf>``: an embedded model, served by the managed llama.cpp server of
  ``agent/server.py`` (one per model file, slots and context); the server gives each request
  the idle slot whose cached prompt best matches it, so an episode's growing history reuses its
  cache; GBNF grammars and JSON schemas reach the server; no cost.
- anything else: litellm's providers (``anthropic/…``, ``openai/…`` with ``api_base``,
  ``hosted_vllm/…``, …), priced by litellm where it knows the price; grammars and schemas only
  reach OpenAI-compatible servers named by ``api_base``;
- a config with ``endpoints``: litellm's Router over them, each request sent to the endpoint
  EndpointPicker chooses (exact per-endpoint concurrency caps, rate limits, cooldown of a
  failing endpoint).

``LLM`` (agent/llm.py) asks the provider to validate a config, to bound its concurrency, to
route and send each request and to name the model in the cache key; nothing else tests a
prefix.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import litellm
from litellm.types.router import CustomRoutingStrategyBase

from lbi.agent import local, server
from lbi.errors import ModelError

if TYPE_CHECKING:
    from lbi.agent.llm import LLMConfig

REJECTED = (litellm.ContextWindowExceededError, litellm.BadRequestError)
"""Errors of one request that retrying cannot fix (over-long, malformed): the request's fault,
not the endpoint's."""
_HEALTH_TTL_S = 10.0
"""A server seen healthy this recently is trusted without a /health request."""


class Provider(Protocol):
    def validate(self, config: LLMConfig) -> None:
        """Fail with the fix on an unknown model, a missing key or a missing model file."""

    def capacity(self, config: LLMConfig) -> int:
        """Requests in flight at once to the endpoint, across all threads."""

    def route(self, config: LLMConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The litellm keyword arguments of one request, as sent."""

    def send(self, config: LLMConfig, kwargs: dict[str, Any]) -> Any:
        """One request (no retries: ``LLM`` has the one retry layer); the litellm response."""

    def cache_model(self, config: LLMConfig) -> str:
        """The model's identity in the response cache key."""

    def cost(self, response: Any) -> float | None:
        """USD of a response, None when the price is unknown."""

    def failed(self, config: LLMConfig) -> None:
        """A request failed: forget what may be stale before the next attempt."""


class _Direct:
    """A provider whose requests go straight to ``litellm.completion``."""

    def route(self, config: LLMConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, config: LLMConfig, kwargs: dict[str, Any]) -> Any:
        return litellm.completion(**self.route(config, kwargs))


class LitellmProvider(_Direct):
    """Hosted providers and OpenAI-compatible servers, through litellm."""

    def validate(self, config: LLMConfig) -> None:
        self.check_model(config)
        env = litellm.validate_environment(model=config.model, api_base=config.api_base)
        if not env["keys_in_environment"] and config.api_base is None:
            keys = ", ".join(env["missing_keys"]) or "the provider's API key"
            raise ModelError(f"missing API key for {config.model}: set {keys} in the "
                             "environment (keys are read from the environment only).")

    @staticmethod
    def check_model(config: LLMConfig) -> None:
        """Fail on a model string whose provider litellm cannot tell."""
        try:
            litellm.get_llm_provider(config.model, api_base=config.api_base)
        except Exception as exc:
            raise ModelError(
                f"unknown model {config.model!r}: litellm cannot tell its provider. Use a "
                "provider prefix (anthropic/…, openai/…, gemini/…, hosted_vllm/… with api_base) "
                "or local/<embedded model>; `lbi models` lists the embedded ones."
            ) from exc

    def capacity(self, config: LLMConfig) -> int:
        return config.max_concurrency

    def route(self, config: LLMConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
        if config.api_base:
            kwargs["api_base"] = config.api_base
            if config.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
                kwargs["api_key"] = "EMPTY"  # local OpenAI-compatible servers need no key
        else:  # a hosted provider: GBNF and JSON schemas are llama.cpp features
            kwargs.pop("grammar", None)
            fmt = kwargs.get("response_format")
            if isinstance(fmt, dict) and fmt.get("type") == "json_object" and "schema" in fmt:
                kwargs["response_format"] = {"type": "json_object"}
        return _grammar_in_body(kwargs)

    def cache_model(self, config: LLMConfig) -> str:
        return config.model

    def cost(self, response: Any) -> float | None:
        try:
            return litellm.completion_cost(completion_response=response)
        except Exception:  # unknown price: None, not a made-up number
            return None

    def failed(self, config: LLMConfig) -> None:
        pass


class EmbeddedProvider(_Direct):
    """``local/…`` models on their managed llama-server."""

    prefix = local.LOCAL_PREFIX

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, tuple[str, float]] = {}
        """Server key -> (URL, when it was last seen healthy)."""

    @staticmethod
    def spec(config: LLMConfig) -> server.ServerSpec:
        return server.ServerSpec(model=str(local.resolve_gguf(config.model)),
                                 slots=config.slots, ctx_per_slot=config.n_ctx,
                                 threads=config.threads)

    def validate(self, config: LLMConfig) -> None:
        local.resolve_gguf(config.model)
        server.server_binary()

    def capacity(self, config: LLMConfig) -> int:
        return config.slots

    def route(self, config: LLMConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
        url = self._endpoint(self.spec(config))
        kwargs.update(model="openai/" + config.model.removeprefix(self.prefix),
                      api_base=f"{url}/v1", api_key="EMPTY")
        kwargs = _grammar_in_body(kwargs)
        # No id_slot: the server gives each request an idle slot, the one whose cached prompt
        # shares the longest prefix with it (an episode's growing history finds its own).
        # Pinning slots let two requests target one slot when more clients than slots were
        # active (other processes, thread pools over several stages), and llama-server then
        # answered from the other request's cached context (tests/test_embedded_models.py).
        kwargs["extra_body"] = {**kwargs.get("extra_body", {}), "cache_prompt": True}
        return kwargs

    def _endpoint(self, spec: server.ServerSpec) -> str:
        """The server's URL. Its health is checked at most every few seconds, and again after
        a failed request (a crashed server is restarted by its supervisor, or started anew
        here)."""
        with self._lock:
            url, seen = self._endpoints.get(spec.key, ("", 0.0))
            now = time.monotonic()
            if not url or now - seen > _HEALTH_TTL_S:
                if not (url and server.healthy(url, timeout=0.5)):
                    url = server.ensure_server(spec)
                self._endpoints[spec.key] = (url, now)
            return url

    def cache_model(self, config: LLMConfig) -> str:
        # A model file replaced under the same name (re-training into the same path) must not
        # return the old model's answers: the key holds the file's content hash.
        return local.fingerprint(config.model)

    def cost(self, response: Any) -> float | None:
        return None

    def failed(self, config: LLMConfig) -> None:
        with self._lock:
            self._endpoints.pop(self.spec(config).key, None)


def _grammar_in_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A GBNF grammar travels in the request body, where llama.cpp servers read it."""
    if "grammar" in kwargs:
        kwargs["extra_body"] = {**(kwargs.get("extra_body") or {}),
                                "grammar": kwargs.pop("grammar")}
    return kwargs


class EndpointPicker(CustomRoutingStrategyBase):
    """The Router's choice of endpoint with exact per-endpoint caps (a custom routing strategy).

    The router's own least-busy counts are settled by logging callbacks a moment after each
    answer, so on the synchronous path an endpoint can briefly receive more than its cap (two
    stand-ins with a cap of 2 held 3); litellm's own per-deployment cap holds only on its async
    path, and there a request to a full endpoint fails with a 429 instead of waiting. Here each
    request waits for a free slot of an endpoint that is neither cooling down (it failed within
    ``cooldown_s``) nor at its ``rpm`` in the last minute, and takes the one with the most free
    slots. If every endpoint is cooling down or at its rate, they are all candidates again
    (a call then meets the error, and LLM's retries back off), so no request waits forever.
    The counts are exact because the slot is taken here and given back by ``release`` when the
    request ends, which RouterProvider.send does in ``finally``. They are a process's counts:
    Ray actors each hold their own (docs/scaling.md)."""

    def __init__(self, deployments: list[dict[str, Any]], caps: list[int],
                 rpms: list[int | None], cooldown_s: float) -> None:
        self.deployments, self.caps, self.rpms = deployments, caps, rpms
        self.cooldown_s = cooldown_s
        self.in_flight = [0] * len(caps)
        self._cool_until = [0.0] * len(caps)
        self._sent: list[deque[float]] = [deque() for _ in caps]
        self._taken: dict[str, int] = {}
        self._turn = random.randrange(len(caps))
        self._changed = threading.Condition()

    def _candidates(self, now: float) -> list[int]:
        for sent in self._sent:
            while sent and sent[0] <= now - 60.0:
                sent.popleft()
        usable = [i for i, rpm in enumerate(self.rpms) if self._cool_until[i] <= now
                  and (rpm is None or len(self._sent[i]) < rpm)]
        return usable or list(range(len(self.caps)))

    def _next_change(self, now: float) -> float:
        """Seconds until a cooldown ends or a minute's request leaves a rate window."""
        times = [t for t in self._cool_until if t > now]
        times += [sent[0] + 60.0 for sent in self._sent if sent]
        return max(0.01, min(times) - now) if times else 1.0

    def take(self, request_id: str) -> dict[str, Any]:
        """Wait for a free slot, take it for ``request_id``; the endpoint's deployment."""
        with self._changed:
            while True:
                now = time.monotonic()
                free = [i for i in self._candidates(now) if self.in_flight[i] < self.caps[i]]
                if free:
                    break
                self._changed.wait(self._next_change(now))
            # The most free slots; ties in turn, so that processes that each see only their
            # own requests (Ray actors) still spread them.
            self._turn = (self._turn + 1) % len(self.caps)
            chosen = max(free, key=lambda i: (self.caps[i] - self.in_flight[i],
                                              -((i - self._turn) % len(self.caps))))
            self.in_flight[chosen] += 1
            self._sent[chosen].append(now)
            self._taken[request_id] = chosen
        return self.deployments[chosen]

    def release(self, request_id: str, endpoint_failed: bool) -> None:
        """Give back the slot of ``request_id``; cool its endpoint down if it failed."""
        with self._changed:
            chosen = self._taken.pop(request_id, None)
            if chosen is None:  # the router failed before it picked an endpoint
                return
            self.in_flight[chosen] -= 1
            if endpoint_failed:
                self._cool_until[chosen] = time.monotonic() + self.cooldown_s
            self._changed.notify_all()

    def get_available_deployment(self, model: str, messages: list[dict[str, str]] | None = None,
                                 input: str | list[object] | None = None,  # noqa: A002
                                 specific_deployment: bool | None = False,
                                 request_kwargs: dict[str, object] | None = None) -> Any:
        metadata: Any = (request_kwargs or {}).get("metadata") or {}
        return self.take(metadata[_REQUEST_ID])

    async def async_get_available_deployment(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the pipeline calls the router synchronously")


_REQUEST_ID = "lbi_request_id"
"""The metadata key that ties a request's endpoint slot to the request."""
_COOLDOWN_S = 30.0


class RouterProvider:
    """A model served by several endpoints, through one litellm Router per config (shared by
    every thread, so an endpoint's cooldown and concurrency count hold for the whole run); the
    Router sends each request where EndpointPicker says."""

    def __init__(self, config: LLMConfig) -> None:
        if config.model.startswith(EMBEDDED.prefix):
            raise ModelError(f"{config.model}: an embedded model has one managed server; list "
                             "llama-servers you run yourself as endpoints with openai/<name> "
                             "and their api_base")
        self.config = config
        deployments = []
        for number, endpoint in enumerate(config.endpoints):
            params: dict[str, Any] = {"model": endpoint.model or config.model}
            if endpoint.api_base:
                params["api_base"] = endpoint.api_base
            if endpoint.api_key_env:
                params["api_key"] = os.environ.get(endpoint.api_key_env, "")
            elif endpoint.api_base and not os.environ.get("OPENAI_API_KEY"):
                params["api_key"] = "EMPTY"  # local OpenAI-compatible servers need no key
            deployments.append({"model_name": config.model, "litellm_params": params,
                                "model_info": {"id": f"{config.model}#{number}"}})
        # No retries here: LLM retries the call, and each attempt is routed afresh.
        self.router = litellm.Router(model_list=deployments, num_retries=0)
        self.picker = EndpointPicker(
            deployments, [e.max_concurrency for e in config.endpoints],
            [e.rpm for e in config.endpoints], cooldown_s=_COOLDOWN_S)
        self.router.set_custom_routing_strategy(self.picker)

    def validate(self, config: LLMConfig) -> None:
        for endpoint in config.endpoints:
            single = config.model_copy(update={"model": endpoint.model or config.model,
                                               "api_base": endpoint.api_base, "endpoints": []})
            if not endpoint.api_key_env:
                LITELLM.validate(single)  # the provider's usual key, unless a server
            elif os.environ.get(endpoint.api_key_env):
                LITELLM.check_model(single)
            else:
                raise ModelError(f"missing API key for an endpoint of {config.model}: set "
                                 f"{endpoint.api_key_env} in the environment (keys are read "
                                 "from the environment only).")

    def capacity(self, config: LLMConfig) -> int:
        return sum(endpoint.max_concurrency for endpoint in config.endpoints)

    def route(self, config: LLMConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
        return _grammar_in_body(kwargs)

    def send(self, config: LLMConfig, kwargs: dict[str, Any]) -> Any:
        request_id = uuid.uuid4().hex
        kwargs = self.route(config, kwargs)
        kwargs["metadata"] = {**(kwargs.get("metadata") or {}), _REQUEST_ID: request_id}
        endpoint_failed = True
        try:
            response = self.router.completion(**kwargs)
            endpoint_failed = False
            return response
        except REJECTED:
            endpoint_failed = False
            raise
        finally:
            self.picker.release(request_id, endpoint_failed)

    def cache_model(self, config: LLMConfig) -> str:
        return f"router:{config.model}"

    def cost(self, response: Any) -> float | None:
        return LITELLM.cost(response)

    def failed(self, config: LLMConfig) -> None:
        pass


EMBEDDED = EmbeddedProvider()
LITELLM = LitellmProvider()
_routers: dict[str, RouterProvider] = {}
_routers_lock = threading.Lock()


def provider_for(model: str) -> Provider:
    """The provider of a model string."""
    return EMBEDDED if model.startswith(EMBEDDED.prefix) else LITELLM


def provider_of(config: LLMConfig) -> Provider:
    """The provider of a config: the router of its endpoints, else that of its model string."""
    if not config.endpoints:
        return provider_for(config.model)
    key = config.model_dump_json(include={"model", "endpoints"})
    with _routers_lock:
        if key not in _routers:
            _routers[key] = RouterProvider(config)
        return _routers[key]


def is_embedded(model: str) -> bool:
    """Whether ``model`` is served by the embedded llama.cpp path."""
    return provider_for(model) is EMBEDDED
