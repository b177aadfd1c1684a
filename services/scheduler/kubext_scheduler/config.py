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
    # Count the pods the cluster cache sees on each node (needs the API server); off: kube-
    # scheduler's nodes are seen empty.
    cache: bool = True


class StandaloneSettings(config.StrictModel):
    # Schedule the pending pods whose spec.schedulerName names a profile, and bind them.
    enabled: bool = True
    # Threads running binding cycles (the API calls), so that the next cycle need not wait.
    bind_workers: int = pydantic.Field(8, ge=1, le=256)


class Config(cli.ServiceConfig):
    """Every key the scheduler service accepts; unknown keys are errors."""

    # A KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1); none means one
    # profile, kubext-scheduler, with the default plugin set.
    scheduler_config: str | None = None
    # The cluster: a kubeconfig file; none means in-cluster credentials, else $KUBECONFIG.
    kubeconfig: str | None = None
    extender: ExtenderSettings = ExtenderSettings()
    standalone: StandaloneSettings = StandaloneSettings()
