"""Configuration of the operator service (file + KUBEXT_OPERATOR_* environment)."""

from __future__ import annotations

from kubext import cli


class Config(cli.ServiceConfig):
    """Every key the operator service accepts; unknown keys are errors."""
