"""Configuration of the csi service (file + KUBEXT_CSI_* environment)."""

from __future__ import annotations

from kubext import cli


class Config(cli.ServiceConfig):
    """Every key the csi service accepts; unknown keys are errors."""
