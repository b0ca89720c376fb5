"""WebArena through BrowserGym (the accessibility tree, BrowserGym's action language) on sites
the user hosts, scored by webarena-verified from the agent's final response and the episode's
network trace.

Observation: the page's accessibility tree (elements carry BrowserGym ids), the open URL and the
last action's error. Actions: BrowserGym element actions plus ``goto('<url>')`` restricted to the
configured sites, and the final ``send_msg_to_user('<JSON response>')`` in webarena-verified's
format. Every request the browser makes is recorded (HAR) and handed to the evaluator, which
checks the response (retrieve tasks) and the network events (navigate / mutate tasks).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import playwright.sync_api
from browsergym.core.task import AbstractBrowserTask

from lbi.envs import infra
from lbi.envs.base import TaskContext
from lbi.envs.web.browser import (
    ALLOWED_ACTIONS,
    ActionRejected,
    check_action,
    chromium_path,
    parse_call,
    rejected,
    use_system_chromium,
)
from lbi.envs.web.env import in_browser_thread, render_axtree
from lbi.envs.webarena import package_problems
from lbi.envs.webarena import tasks as wa_tasks
from lbi.errors import EnvError
from lbi.types import Document, Step, Task

GUIDE = "README.md, section 'WebArena' (host the sites with webarena-verified's containers)"
ACTION_SPACE = (
    "You operate a website in a browser. The observation is the page's accessibility tree: each "
    "element has an id in brackets, e.g. [12] link 'Orders'. Each ACTION is exactly one call:\n"
    "- click('12'), fill('15', 'text'), select_option('7', 'Red'), press('15', 'Enter'), "
    "hover('12'), scroll(0, 300), noop(1000);\n"
    "- goto('<url>'): open a URL of this website; go_back(); go_forward();\n"
    "- send_msg_to_user('<response>'): finish, with the response as one JSON object: "
    '{"task_type": "RETRIEVE" | "NAVIGATE" | "MUTATE", "status": "SUCCESS" | '
    '"NOT_FOUND_ERROR" | "ACTION_NOT_ALLOWED_ERROR" | "PERMISSION_DENIED_ERROR" | '
    '"DATA_VALIDATION_ERROR" | "UNKNOWN_ERROR", "retrieved_data": [<answers, for RETRIEVE>] or '
    'null, "error_details": null or "<why it failed>"}.'
)
WEBARENA_ACTIONS = ALLOWED_ACTIONS | {"goto", "go_back", "go_forward", "send_msg_to_user"}


def site_urls_from_environment() -> dict[str, str]:
    """Site URLs from the ``WA_<SITE>`` variables (BrowserGym's convention)."""
    return {site: os.environ[f"WA_{site.upper()}"] for site in wa_tasks.SITES
            if os.environ.get(f"WA_{site.upper()}")}


@dataclass
class WebArenaConfig:
    """Where the WebArena sites are, and what the adapter may do."""

    sites: dict[str, str] = field(default_factory=site_urls_from_environment)
    """Site name → base URL, e.g. {"shopping": "http://host:7770"}."""
    storage_state: str | None = None
    """Playwright storage state (cookies of logged-in accounts), as written by WebArena's
    auto-login script; without it the agent starts logged out."""
    task_ids: list[int] | None = None
    """Benchmark subset (default: every task whose sites are configured)."""
    max_chars: int = 8000
    headless: bool = True
    docs_dir: str | None = None
    doc_urls: list[str] | None = None
    trace_dir: str | None = None
    """Keep each episode's HAR and response here (default: a temporary folder)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sites) - set(wa_tasks.SITES))
        if unknown:
            raise EnvError(f"unknown WebArena sites {unknown}; sites are {wa_tasks.SITES}")
        by_url: dict[str, list[str]] = {}
        for site, url in self.sites.items():
            by_url.setdefault(url.rstrip("/"), []).append(site)
        shared = [names for names in by_url.values() if len(names) > 1]
        if shared:  # the evaluator maps URLs in the trace back to sites
            raise EnvError(f"WebArena sites {shared[0]} share one URL; each site needs its own")


class WebArenaEnv:
    """WebArena tasks in Chromium (BrowserGym), evaluated by webarena-verified."""

    name = "webarena"
    action_space = ACTION_SPACE

    def __init__(self, config: WebArenaConfig | None = None) -> None:
        self.config = config or WebArenaConfig()
        self.task: Task | None = None
        self.gym: Any = None
        self.har_path: Path | None = None
        self.response: str | None = None
        self.page = ""
        """The page as last shown to the agent."""

    # ---- episode ------------------------------------------------------------------------------
    def reset(self, task: Task) -> str:
        self.close()
        sites = task.env_args.get("sites") or []
        self.check_infrastructure(sites)
        self.task, self.response = task, None
        folder = Path(self.config.trace_dir or tempfile.mkdtemp(prefix="lbi-webarena-"))
        folder.mkdir(parents=True, exist_ok=True)
        self.har_path = folder / f"{task.id}.har"
        start_urls = [wa_tasks.fill_urls(u, self.config.sites)
                      for u in task.env_args.get("start_urls") or []]
        self.gym = in_browser_thread(_make_gym, start_urls, task.instruction, self.har_path,
                                     self.config)
        observation, _ = in_browser_thread(self.gym.reset)
        self.page = self._render(observation)
        return self.page

    def step(self, action: str) -> tuple[str, bool]:
        if self.gym is None:
            raise EnvError("step() before reset()")
        try:
            call = self.translate(action)
        except ActionRejected as exc:
            return rejected(exc, self.page), False
        name, args = parse_call(call)
        if name == "send_msg_to_user":
            self.response = args[0]
            return "Response recorded; the episode is over.", True
        observation, _, terminated, truncated, _ = in_browser_thread(self.gym.step, call)
        self.page = self._render(observation)
        return self.page, bool(terminated or truncated)

    def translate(self, action: str) -> str:
        """The BrowserGym call for ``action``, or ActionRejected (the agent's observation)."""
        name, args = parse_call(action)
        if name in ("goto", "send_msg_to_user") and not (args and isinstance(args[0], str)):
            raise ActionRejected(f"Error: {name}() takes one quoted string, e.g. "
                                 "send_msg_to_user('{\"task_type\": \"RETRIEVE\", ...}').")
        if name == "goto" and not self.allowed(args[0]):
            raise ActionRejected(f"Error: {args[0]} is not one of this task's websites.")
        return check_action(action, WEBARENA_ACTIONS)

    def allowed(self, url: str) -> bool:
        """Whether ``url`` is on one of the configured sites."""
        host = urllib.parse.urlparse(url).netloc
        return bool(host) and host in {urllib.parse.urlparse(u).netloc
                                       for u in self.config.sites.values()}

    def evaluate(self) -> float | None:
        """webarena-verified's score (the browser is closed first so that the HAR is written)."""
        if self.task is None or self.task.origin != "benchmark" or self.har_path is None:
            return None
        in_browser_thread(_settle, self.gym)
        self._close_gym()
        response = self.response if self.response is not None else "null"
        return wa_tasks.evaluate(int(self.task.env_args["task_id"]), response,
                                 str(self.har_path), self.config.sites)

    def close(self) -> None:
        self._close_gym()

    # ---- corpus and tasks ---------------------------------------------------------------------
    def docs(self) -> Iterable[Document]:
        from lbi.envs.docs import configured_corpus

        return configured_corpus("WebArena", self.config.docs_dir, self.config.doc_urls)

    def benchmark_tasks(self) -> list[Task]:
        only = list(self.config.sites) if self.config.sites and not self.config.task_ids else None
        return wa_tasks.load_tasks(self.config.task_ids, sites=only)

    def task_contexts(self) -> list[TaskContext]:
        return [TaskContext({"sites": [site], "start_urls": [f"__{site.upper()}__"]},
                            f"The {site} website of WebArena.")
                for site in self.config.sites if site != "homepage"]

    def check_span(self, steps: list[Step], final_observation: str) -> bool | None:
        return not (final_observation.startswith("Error") or
                    "\nLast action failed:" in final_observation)

    def check_infrastructure(self, sites: Iterable[str] | None = None) -> None:
        """Fail fast, naming every missing piece: Chromium, BrowserGym, webarena-verified, the
        URLs of ``sites`` (default: every configured site)."""
        sites = list(self.config.sites if sites is None else sites)
        infra.require("WebArena", [
            None if sites else "the WebArena sites (env_args.sites or WA_<SITE> variables)",
            None if chromium_path() else "Chromium (apt-get install chromium)",
            *package_problems(),
            *(infra.url_problem(f"the WebArena site {s!r}", self.config.sites.get(s))
              for s in sites),
            infra.path_problem("the storage state", self.config.storage_state,
                               "run WebArena's auto-login") if self.config.storage_state else None,
        ], GUIDE)

    # ---- helpers ------------------------------------------------------------------------------
    def _render(self, observation: dict[str, Any]) -> str:
        parts = [f"URL: {observation.get('url', '')}",
                 render_axtree(observation, self.config.max_chars)]
        if observation.get("last_action_error"):
            parts.append(f"Last action failed: {observation['last_action_error'][:500]}")
        return "\n".join(parts)

    def _close_gym(self) -> None:
        if self.gym is not None:
            in_browser_thread(self.gym.close)
            self.gym = None


class StartPagesTask(AbstractBrowserTask):
    """A BrowserGym task that opens the start URLs; scoring happens after the episode."""

    def __init__(self, seed: int, start_urls: list[str], goal: str) -> None:
        super().__init__(seed)
        self.start_urls, self.goal = start_urls, goal
        self.timeout = 30000

    @classmethod
    def get_task_id(cls) -> str:
        return "lbi.webarena"

    def setup(self, page: playwright.sync_api.Page) -> tuple[str, dict]:
        for k, url in enumerate(self.start_urls):
            if k:
                page = page.context.new_page()
            page.goto(url)
        return self.goal, {}

    def validate(self, page: playwright.sync_api.Page,
                 chat_messages: list[Any]) -> tuple[float, bool, str, dict]:
        return 0.0, False, "", {}


def _settle(gym: Any, timeout_ms: int = 10000) -> None:
    """Let the page's requests finish so that the trace holds their responses (a navigation or
    form post still in flight would be missing from the HAR); sites that never go idle are given
    ``timeout_ms``."""
    if gym is None:
        return
    for page in gym.context.pages:
        with contextlib.suppress(playwright.sync_api.Error):
            page.wait_for_load_state("networkidle", timeout=timeout_ms)


def _make_gym(start_urls: list[str], goal: str, har_path: Path, config: WebArenaConfig) -> Any:
    from browsergym.core.action.highlevel import HighLevelActionSet
    from browsergym.core.env import BrowserEnv

    use_system_chromium(chromium_path() or "chromium", offline=False)
    context: dict[str, Any] = {"record_har_path": str(har_path), "record_har_content": "embed"}
    if config.storage_state:
        context["storage_state"] = str(Path(config.storage_state).expanduser())
    actions = HighLevelActionSet(subsets=["bid", "nav"], strict=True, multiaction=False)
    return BrowserEnv(task_entrypoint=StartPagesTask,
                      task_kwargs={"start_urls": start_urls, "goal": goal},
                      headless=config.headless, action_mapping=actions.to_python_code,
                      pw_context_kwargs=context, wait_for_user_message=False)


__all__ = ["WebArenaConfig", "WebArenaEnv"]
