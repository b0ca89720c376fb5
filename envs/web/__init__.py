"""Web environment (MiniWoB++ through BrowserGym, in Debian's Chromium)."""

from __future__ import annotations

import importlib.util
from typing import Any

from lbi.envs.web.browser import chromium_path
from lbi.envs.web.env import WebConfig, WebEnv


def make_env(**kwargs: Any) -> WebEnv:
    return WebEnv(WebConfig(**kwargs))


def missing_dependencies() -> list[str]:
    missing = []
    if chromium_path() is None:
        missing.append("Chromium (apt-get install chromium; never `playwright install`)")
    if importlib.util.find_spec("browsergym") is None or \
            importlib.util.find_spec("browsergym.miniwob") is None:
        missing.append("BrowserGym (pip install 'learn-by-interact[web]')")
    return missing


__all__ = ["WebConfig", "WebEnv", "make_env", "missing_dependencies"]
