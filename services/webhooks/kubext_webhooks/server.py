"""The running service: uvicorn over the reloadable TLS context, plus the background loops.

Loops: the policy file is re-read every ``policy.reload_interval_seconds``; the certificate
is kept current every ``tls.check_interval_seconds`` (self-managed: plan, store in the Secret,
inject caBundles, reload; cert-manager: reload the mounted files when they change).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import prometheus_client as prom
import uvicorn
from kubernetes import client

from kubext import health as kubext_health
from kubext import httpserve, kubeclient
from kubext_webhooks import app, certs, config, kube, policy, policy_store, ports, tlsctx

log = logging.getLogger(__name__)


@dataclass
class CertKeeper:
    """Self-managed PKI: one :meth:`sync` plans, stores, injects and reloads."""

    api: client.ApiClient
    store: kube.SecretStore
    settings: certs.Settings
    targets: list[kube.InjectTarget]
    tls: tlsctx.ReloadableContext
    ctx: app.Context
    injected: dict[kube.InjectTarget, bytes] = field(default_factory=dict)

    async def sync(self) -> certs.Bundle:
        bundle = None
        for _ in range(5):  # conflicts with other replicas: re-read and re-plan
            stored = await asyncio.to_thread(self.store.read)
            bundle = certs.plan(stored, self.settings, kube.utcnow())
            if not bundle.changes:
                break
            if await asyncio.to_thread(self.store.write, bundle):
                for what in bundle.changes:
                    if what in ("ca", "serving"):
                        self.ctx.metrics.cert_rotations.labels(what).inc()
                log.info("certificates renewed", extra={"changes": list(bundle.changes)})
                break
        else:
            raise ports.KubeError("the TLS Secret kept changing under us (5 conflicts)")
        assert bundle is not None
        for target in self.targets:
            try:
                if await asyncio.to_thread(
                    kube.inject_ca_bundle, self.api, target, bundle.ca_bundle
                ):
                    log.info(
                        "caBundle injected", extra={"kind": target.kind, "object": target.name}
                    )
                self.injected[target] = bundle.ca_bundle
            except ports.KubeError as exc:
                self.injected.pop(target, None)
                log.warning("caBundle injection failed; will retry", extra={"error": str(exc)})
        if self.tls.load_pem(bundle.serving.cert_pem, bundle.serving.key_pem):
            log.info(
                "serving certificate in use",
                extra={"not_after": bundle.serving.not_after.isoformat()},
            )
        self.ctx.metrics.cert_not_after.labels("serving").set(bundle.serving.not_after.timestamp())
        self.ctx.metrics.cert_not_after.labels("ca").set(bundle.signer.not_after.timestamp())
        return bundle


def _targets(cfg: config.Config) -> list[kube.InjectTarget]:
    inject = cfg.tls.inject
    return (
        [
            kube.InjectTarget("ValidatingWebhookConfiguration", n)
            for n in inject.validating_webhook_configurations
        ]
        + [
            kube.InjectTarget("MutatingWebhookConfiguration", n)
            for n in inject.mutating_webhook_configurations
        ]
        + [
            kube.InjectTarget("CustomResourceDefinition", n)
            for n in inject.custom_resource_definitions
        ]
    )


async def _every(seconds: float, step: Any, what: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
        except Exception as exc:  # keep looping: the next round may succeed
            log.warning("%s failed", what, extra={"error": str(exc)})


async def run(
    cfg: config.Config,
    *,
    registry: prom.CollectorRegistry = prom.REGISTRY,
    on_server: Callable[[uvicorn.Server], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; ``on_server`` sees the uvicorn server first (tests stop it)."""
    try:
        store = policy_store.PolicyStore.open(cfg.policy.path)
    except policy.PolicyError as exc:
        log.error("invalid pod policy", extra={"error": str(exc)})
        return 2
    api: client.ApiClient | None
    try:
        api = kubeclient.api_client(kubeconfig=cfg.kubeconfig)
    except kubeclient.KubeConfigError as exc:
        if cfg.tls.mode == "self-managed":
            log.error("self-managed TLS needs the API server", extra={"error": str(exc)})
            return 2
        log.warning(
            "no API server: sidecar injection by namespace label is off", extra={"error": str(exc)}
        )
        api = None
    tls = tlsctx.ReloadableContext()
    ctx = app.Context(
        policies=store,
        mutation=cfg.mutation,
        databases=cfg.databases,
        registry=registry,
        max_body_bytes=cfg.max_body_bytes,
        ready=lambda: tls.loaded,
    )
    store.on_reload = lambda result: ctx.metrics.policy_reloads.labels(result).inc()
    if api is not None:
        ctx.namespaces = kube.NamespaceLabels(
            api,
            ttl=cfg.namespace_cache_ttl_seconds,
            on_lookup=lambda result: ctx.metrics.namespace_lookups.labels(result).inc(),
        )

    if cfg.tls.mode == "self-managed":
        assert api is not None
        keeper = CertKeeper(
            api=api,
            store=kube.SecretStore(api, cfg.effective_namespace(), cfg.tls.secret_name),
            settings=cfg.cert_settings(),
            targets=_targets(cfg),
            tls=tls,
            ctx=ctx,
        )
        cert_step = keeper.sync
    else:
        cert_file = os.path.join(cfg.tls.cert_dir, "tls.crt")
        key_file = os.path.join(cfg.tls.cert_dir, "tls.key")

        async def cert_step() -> None:
            if tls.load_files(cert_file, key_file):
                log.info("serving certificate reloaded from files", extra={"dir": cfg.tls.cert_dir})

    # Serve only with a certificate: retry the first load until it works.
    delay = 1.0
    while True:
        try:
            await cert_step()
            break
        except (ports.KubeError, OSError, ssl.SSLError, certs.CertError) as exc:
            log.warning(
                "no serving certificate yet; retrying", extra={"error": str(exc), "in_s": delay}
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    server = uvicorn.Server(
        uvicorn.Config(
            app.create_app(ctx),
            host=cfg.host,
            port=cfg.port,
            ssl_context_factory=lambda *_: tls.context,
            http=httpserve.httptools_protocol(),  # one TLS record and send per response
            loop="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # nothing proxies the API server's calls: skip its middleware
            timeout_keep_alive=30,
        )
    )

    async def reload_policy() -> None:
        store.maybe_reload()

    if on_server is not None:
        on_server(server)
    # Everything imported so far (the kubernetes client alone is ~70k objects) lives for the
    # whole process: move it out of the collector's reach. Otherwise each full collection
    # walks it, a ~35 ms pause every few hundred reviews, which was the whole p99.
    gc.collect()
    gc.freeze()
    health = kubext_health.HealthServer(
        host=cfg.health.host, port=cfg.health.port, ready=ctx.ready, registry=registry
    ).start()
    log.info(
        "serving",
        extra={"port": cfg.port, "health_port": health.port, "tls_mode": cfg.tls.mode},
    )
    loops = [
        asyncio.create_task(
            _every(cfg.policy.reload_interval_seconds, reload_policy, "policy reload")
        ),
        asyncio.create_task(_every(cfg.tls.check_interval_seconds, cert_step, "certificate check")),
    ]
    try:
        await server.serve()
    finally:
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        health.stop()
    return 0


def main(cfg: config.Config) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] ships it
        return asyncio.run(run(cfg))
    return uvloop.run(run(cfg))
