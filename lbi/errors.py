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


class EndpointFailed(LbiError):
    """Work left unfinished because the model endpoint failed after its retries; nothing of it
    was stored, and a rerun does it."""

    def __init__(self, lost: dict[str, int], unit: str, consequence: str = "") -> None:
        parts = ", ".join(f"{n} {unit} of {name!r}" for name, n in lost.items())
        super().__init__(f"the model endpoint failed (after retries) for {parts}; nothing was "
                         f"stored for them{consequence}. Rerun the same command when the "
                         "endpoint is back: finished work is kept.")
