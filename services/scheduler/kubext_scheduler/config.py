"""Configuration of the scheduler service (file + KUBEXT_SCHEDULER_* environment)."""

from __future__ import annotations

from kubext import cli


class Config(cli.ServiceConfig):
    """Every key the scheduler service accepts; unknown keys are errors."""
