"""Reading the KubeSchedulerConfiguration file and building its profiles with our plugins."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubext_scheduler.framework import profiles
from kubext_scheduler.plugins import registry


def load(path: str | None) -> profiles.Loaded:
    """Raises profiles.ProfileError: ``FILE: profiles[0].plugins.filter.enabled[1].name: ...``."""
    if path is None:
        data: object = {"apiVersion": profiles.V1, "kind": "KubeSchedulerConfiguration"}
    else:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise profiles.ProfileError(f"{path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise profiles.ProfileError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise profiles.ProfileError(f"{path}: expected a KubeSchedulerConfiguration mapping")
    try:
        return profiles.load(data, registry.REGISTRY, registry.DEFAULTS)
    except profiles.ProfileError as exc:
        raise profiles.ProfileError(f"{path or 'built-in profile'}: {exc}") from None
