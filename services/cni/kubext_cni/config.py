"""Configuration of the cni service (file + KUBEXT_CNI_* environment)."""

from __future__ import annotations

from kubext import cli


class Config(cli.ServiceConfig):
    """Every key the cni service accepts; unknown keys are errors."""
