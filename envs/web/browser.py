"""Chromium for BrowserGym: Debian's ``/usr/bin/chromium`` (never ``playwright install``),
offline, with the agent's actions checked before they run.

BrowserGym launches Playwright's bundled browser, and its chat window launches a second one
without the caller's arguments; ``use_system_chromium`` makes every launch of the shared
Playwright instance use the system binary with flags that keep it offline and quiet.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

ALLOWED_ACTIONS = {"click", "dblclick", "fill", "select_option", "hover", "press", "focus",
                   "clear", "scroll", "noop"}
"""BrowserGym's element actions, without ``upload_file`` (reads host files), ``goto`` and tab
actions (leave the task page) and ``drag_and_drop``."""
MAX_WAIT_MS = 3000
CHROMIUM_FLAGS = ["--disable-gpu", "--disable-quic", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage"]
OFFLINE_FLAGS = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
"""Every request that is not a local file goes to a closed port."""
CHROMIUM_CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium"]


def chromium_path() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def use_system_chromium(executable: str, *, offline: bool = True) -> None:
    """Route every Chromium launch of BrowserGym's Playwright instance to ``executable``;
    ``offline`` keeps it from reaching anything but local files."""
    from browsergym.core import env as browsergym_env

    chromium = browsergym_env._get_global_playwright().chromium
    launch: Callable[..., Any] = chromium.launch
    flags = CHROMIUM_FLAGS + (OFFLINE_FLAGS if offline else [])
    if getattr(launch, "lbi_system_chromium", None) == (executable, offline):
        return
    original = getattr(launch, "lbi_original", launch)

    def system_launch(*args: Any, **kwargs: Any) -> Any:
        kwargs["executable_path"] = executable
        kwargs["args"] = [*(kwargs.get("args") or []), *flags]
        return original(*args, **kwargs)

    system_launch.lbi_system_chromium = (executable, offline)  # type: ignore[attr-defined]
    system_launch.lbi_original = original  # type: ignore[attr-defined]
    chromium.launch = system_launch


class ActionRejected(ValueError):
    """An action outside the allowed set (the message is the agent's observation)."""


def rejected(error: ActionRejected, page: str) -> str:
    """The observation after a rejected action: why, then the page again (nothing happened on
    it), so the agent can act on it at once rather than find it in its history."""
    return f"{error}\nThe page has not changed:\n{page}"


def parse_call(action: str) -> tuple[str, list[Any]]:
    """(name, arguments) of one BrowserGym call with literal arguments (its strict parser);
    ActionRejected otherwise."""
    from browsergym.core.action.parsers import highlevel_action_parser

    try:
        calls = highlevel_action_parser.parse_string(action, parse_all=True).as_list()
    except Exception as exc:
        raise ActionRejected(
            f"Error: not a valid action ({type(exc).__name__}). Write one call with literal "
            "arguments, e.g. click('12') or fill('15', 'hello').") from None
    if len(calls) != 1:
        raise ActionRejected("Error: give exactly one action per step.")
    (name, args), = calls
    return name, args


def check_action(action: str, allowed: set[str] = ALLOWED_ACTIONS) -> str:
    """``action`` if it is one ``allowed`` BrowserGym call with literal arguments; long waits
    are shortened. Raises ActionRejected otherwise."""
    name, args = parse_call(action)
    if name not in allowed:
        raise ActionRejected(f"Error: {name}() is not available here; use one of: "
                             f"{', '.join(sorted(allowed))}.")
    if name == "noop":
        wait = args[0] if args and isinstance(args[0], int | float) else 1000
        return f"noop({max(0, min(wait, MAX_WAIT_MS))})"
    return action.strip()
