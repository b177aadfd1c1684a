"""Configuration of the webhooks service (file + KUBEXT_WEBHOOKS_* environment)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Literal

import pydantic

from kubext import cli, config
from kubext_webhooks import certs
from kubext_webhooks import databases as databases_
from kubext_webhooks import mutation as mutation_

DAY = 86400.0
_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class PolicySettings(config.StrictModel):
    # A PodPolicy file (see README); none means the built-in policy (the seed's rules).
    path: str | None = None
    reload_interval_seconds: float = pydantic.Field(5.0, gt=0)


class InjectSettings(config.StrictModel):
    """The objects whose clientConfig.caBundle this service keeps current (self-managed mode)."""

    validating_webhook_configurations: list[str] = ["kubext-webhooks"]
    mutating_webhook_configurations: list[str] = ["kubext-webhooks"]
    custom_resource_definitions: list[str] = ["databases.db.example.com"]


class TLSSettings(config.StrictModel):
    # self-managed: CA + serving certificate in `secret_name`, renewed and injected by us.
    # cert-manager: serve cert_dir/tls.crt + tls.key (a mounted Certificate Secret), reloaded
    # when they change; cert-manager's cainjector fills the caBundles.
    mode: Literal["self-managed", "cert-manager"] = "self-managed"
    secret_name: str = "kubext-webhooks-tls"
    cert_dir: str = "/etc/kubext-webhooks/tls"
    # SANs; empty dns_names means <service>.<namespace>.svc and its cluster.local form.
    dns_names: list[str] = []
    ip_addresses: list[str] = []
    ca_validity_seconds: float = pydantic.Field(365 * DAY, gt=0)
    serving_validity_seconds: float = pydantic.Field(150 * DAY, gt=0)
    ca_renew_before_seconds: float = pydantic.Field(30 * DAY, ge=0)
    serving_renew_before_seconds: float = pydantic.Field(15 * DAY, ge=0)
    # How long a new CA sits in the caBundle before the serving certificate moves to it.
    ca_propagation_seconds: float = pydantic.Field(60.0, ge=0)
    # How often the Secret (self-managed) or the files (cert-manager) are checked.
    check_interval_seconds: float = pydantic.Field(60.0, gt=0)
    inject: InjectSettings = InjectSettings()

    @pydantic.model_validator(mode="after")
    def _renewal_fits(self) -> TLSSettings:
        if self.serving_renew_before_seconds >= self.serving_validity_seconds:
            raise ValueError("serving_renew_before_seconds must be below serving_validity_seconds")
        if self.ca_renew_before_seconds >= self.ca_validity_seconds:
            raise ValueError("ca_renew_before_seconds must be below ca_validity_seconds")
        return self


class Config(cli.ServiceConfig):
    """Every key the webhooks service accepts; unknown keys are errors."""

    host: str = "0.0.0.0"
    port: int = pydantic.Field(8443, ge=0, le=65535)
    # Where this service runs; default: $POD_NAMESPACE, the service account's, kubext-system.
    namespace: str = ""
    service_name: str = "kubext-webhooks"
    kubeconfig: str | None = None
    max_body_bytes: int = pydantic.Field(8 * 1024 * 1024, gt=0)
    namespace_cache_ttl_seconds: float = pydantic.Field(30.0, ge=0)
    policy: PolicySettings = PolicySettings()
    # Field names shadow the modules inside the class body, hence the module aliases.
    mutation: mutation_.MutationSettings = mutation_.MutationSettings()
    databases: databases_.DatabaseSettings = databases_.DatabaseSettings()
    tls: TLSSettings = TLSSettings()

    def effective_namespace(self) -> str:
        if self.namespace:
            return self.namespace
        if os.environ.get("POD_NAMESPACE"):
            return os.environ["POD_NAMESPACE"]
        try:
            with open(_SA_NAMESPACE) as handle:
                return handle.read().strip()
        except OSError:
            return "kubext-system"

    def cert_settings(self) -> certs.Settings:
        tls = self.tls
        namespace = self.effective_namespace()
        dns = tls.dns_names or [
            f"{self.service_name}.{namespace}.svc",
            f"{self.service_name}.{namespace}.svc.cluster.local",
        ]
        seconds = dt.timedelta(seconds=1)
        return certs.Settings(
            dns_names=tuple(dns),
            ip_addresses=tuple(tls.ip_addresses),
            ca_validity=tls.ca_validity_seconds * seconds,
            serving_validity=tls.serving_validity_seconds * seconds,
            ca_renew_before=tls.ca_renew_before_seconds * seconds,
            serving_renew_before=tls.serving_renew_before_seconds * seconds,
            ca_propagation=tls.ca_propagation_seconds * seconds,
        )
