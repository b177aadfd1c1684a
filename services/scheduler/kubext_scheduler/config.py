"""Configuration of the scheduler service (file + KUBEXT_SCHEDULER_* environment)."""

from __future__ import annotations

import pydantic

from kubext import cli, config


class ExtenderSettings(config.StrictModel):
    # Serve the kube-scheduler extender API (/filter, /prioritize, /bind) on host:port.
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = pydantic.Field(8888, ge=0, le=65535)
    # The profile (schedulerName) whose plugins answer; empty means the first profile.
    profile: str = ""


class Config(cli.ServiceConfig):
    """Every key the scheduler service accepts; unknown keys are errors."""

    # A KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1); none means one
    # profile, kubext-scheduler, with the default plugin set.
    scheduler_config: str | None = None
    extender: ExtenderSettings = ExtenderSettings()
