"""Typed configuration from a YAML/JSON file and the environment, with errors that name the culprit."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

T = TypeVar("T", bound=pydantic.BaseModel)


class ConfigError(Exception):
    """Configuration that cannot be used; the message is one line naming the file and key."""


class StrictModel(pydantic.BaseModel):
    """Base for config models: unknown keys are errors, values are validated on assignment."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(
            f"{path}: not valid YAML/JSON{line}: {getattr(exc, 'problem', exc)}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(data).__name__}")
    return data


def _env_overrides(prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """``PREFIX_A__B=v`` becomes ``{"a": {"b": v}}``; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(prefix):
            continue
        path = key[len(prefix) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            node[path[-1]] = raw
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validation_problems(
    exc: pydantic.ValidationError, *, root: str = "", unknown: str = "unknown key"
) -> list[str]:
    """Each error as ``key.path: problem``, the path under ``root`` (e.g. ``spec``) if given.

    An unknown key reads ``unknown`` (a config says "key", a Kubernetes object "field"), and a
    validator's message loses pydantic's "Value error, " prefix."""
    out = []
    for error in exc.errors():
        key = ".".join([*([root] if root else []), *(str(p) for p in error["loc"])])
        message = unknown if error["type"] == "extra_forbidden" else error["msg"]
        out.append(f"{key or '(top level)'}: {message.removeprefix('Value error, ')}")
    return out


def describe_validation_error(exc: pydantic.ValidationError, *, source: str) -> str:
    """One line: ``source: key.path: problem`` for the first error (and a count of the rest)."""
    first, *rest = validation_problems(exc)
    more = f" (and {len(rest)} more)" if rest else ""
    return f"{source}: {first}{more}"


def load(
    model: type[T],
    *,
    path: str | os.PathLike[str] | None = None,
    env_prefix: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Build ``model`` from defaults, then the file at ``path``, then ``env_prefix`` variables."""
    data: dict[str, Any] = _read_file(Path(path)) if path else {}
    source = str(path) if path else "config"
    if env_prefix:
        env = _env_overrides(env_prefix, os.environ if environ is None else environ)
        if env:
            data = _merge(data, env)
            source = f"{source} (+ {env_prefix}* environment)"
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source=source)) from None
