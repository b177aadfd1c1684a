"""Configuration of the webhooks service (file + KUBEXT_WEBHOOKS_* environment)."""

from __future__ import annotations

from kubext import cli


class Config(cli.ServiceConfig):
    """Every key the webhooks service accepts; unknown keys are errors."""
