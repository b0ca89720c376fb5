"""Test set-up: everything offline, caches in a per-session LBI_HOME shared with the real one."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest  # noqa: E402


@pytest.fixture
def llm_cache(tmp_path, monkeypatch):
    """A private, empty LLM response cache for one test."""
    monkeypatch.setenv("LBI_CACHE_DIR", str(tmp_path / "llm-cache"))
    return tmp_path / "llm-cache"
