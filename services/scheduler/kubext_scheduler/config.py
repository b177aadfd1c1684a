"""Configuration of the scheduler service (file + KUBEXT_SCHEDULER_* environment)."""

from __future__ import annotations

import pydantic

from kubext import cli, config


class ExtenderSettings(config.StrictModel):
    # Serve the kube-scheduler extender API (/filter, /prioritize, /bind, /preempt) on host:port.
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = pydantic.Field(8888, ge=0, le=65535)
    # The profile (schedulerName) whose plugins answer; empty means the first profile.
    profile: str = ""
    # Keep the informer cache of nodes and pods (needs the API server): nodeCacheCapable, bind and
    # preempt need it; off: only full nodes are read, seen empty.
    cache: bool = True


class StandaloneSettings(config.StrictModel):
    # Schedule the pending pods whose spec.schedulerName names a profile, and bind them.
    enabled: bool = True
    # Threads running binding cycles (the API calls), so that the next cycle need not wait.
    bind_workers: int = pydantic.Field(16, ge=1, le=256)


class LeaderElectionSettings(config.StrictModel):
    # Schedule only while holding this Lease, so that two replicas never both bind (standalone
    # mode; the extender, which binds only what kube-scheduler asks it to, is served by every
    # replica). client-go's timings.
    enabled: bool = True
    namespace: str = "kube-system"
    name: str = "kubext-scheduler"
    lease_duration_seconds: float = pydantic.Field(15.0, gt=0)
    renew_deadline_seconds: float = pydantic.Field(10.0, gt=0)
    retry_period_seconds: float = pydantic.Field(2.0, gt=0)

    @pydantic.model_validator(mode="after")
    def _timings_make_sense(self) -> LeaderElectionSettings:
        if not (
            self.retry_period_seconds < self.renew_deadline_seconds < self.lease_duration_seconds
        ):
            raise ValueError("retry_period < renew_deadline < lease_duration must hold")
        return self


class Config(cli.ServiceConfig):
    """Every key the scheduler service accepts; unknown keys are errors."""

    # A KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1); none means one
    # profile, kubext-scheduler, with the default plugin set.
    scheduler_config: str | None = None
    # The cluster: a kubeconfig file; none means in-cluster credentials, else $KUBECONFIG.
    kubeconfig: str | None = None
    extender: ExtenderSettings = ExtenderSettings()
    standalone: StandaloneSettings = StandaloneSettings()
    leader_election: LeaderElectionSettings = LeaderElectionSettings()
