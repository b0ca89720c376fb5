"""Loading YAML configs into strict pydantic models, with ``--set key=value`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from lbi.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """A config section: unknown fields are errors (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid")


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["a.b=3", "c=[x, y]"]`` → ``{"a.b": 3, "c": ["x", "y"]}`` (values are YAML)."""
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {item!r}")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML "
                              f"({str(exc).splitlines()[0]}); quote it") from None
    return overrides


def load_yaml_config(path: Path, model: type[M], overrides: dict[str, Any] | None = None) -> M:
    """Read and validate a YAML config; every problem is reported with its field path."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (not UTF-8)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings (key: value), not a "
                          f"{type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: {'.'.join(parents[:depth + 1])} is a "
                                  f"{type(child).__name__}, not a section with fields")
            node = child
        node[leaf] = value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  {'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"invalid config {path}:\n{problems}") from None
