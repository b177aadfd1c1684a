"""Configuration of the deviceplugin service (file + KUBEXT_DEVICEPLUGIN_* environment)."""

from __future__ import annotations

from kubext import cli


class Config(cli.ServiceConfig):
    """Every key the deviceplugin service accepts; unknown keys are errors."""
