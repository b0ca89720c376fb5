"""Errors a user can cause. The CLI prints their message (the problem and the fix) and exits 1."""


class LbiError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class ConfigError(LbiError):
    """A configuration value is invalid or missing."""


class ModelError(LbiError):
    """Unknown model, missing API key, missing or corrupt model package."""


class AssetError(LbiError):
    """A data or model package could not be fetched or verified."""


class BudgetExceeded(LbiError):
    """A budget (calls, cost) ran out; the run stops cleanly with finished work kept."""


class EnvError(LbiError):
    """An environment cannot start (missing dependency, unknown task)."""
