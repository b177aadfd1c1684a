"""Wiring: credentials, API adapter, leader election, kopf, workers, health server."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping

import kopf

from kubext import health
from kubext_operator import (
    config,
    controller,
    handlers,
    informer,
    kube,
    leader,
    reconciler,
    store,
    supervisor,
)
from kubext_operator.planning import common
from kubext_operator.planning import database as db_plan
from kubext_operator.planning import webapp as wa_plan

log = logging.getLogger("kubext_operator")

MANAGED = f"{common.LABEL_MANAGED_BY}={common.MANAGED_BY}"
CHILD_SELECTORS = {
    "Deployment": MANAGED,
    "StatefulSet": MANAGED,
    "CronJob": MANAGED,
    "Job": MANAGED,  # backup and restore requests; the CronJob's own Jobs carry no such label
    "Service": MANAGED,
    "Secret": MANAGED,
    "PersistentVolumeClaim": MANAGED,
    "Pod": f"{MANAGED},{common.LABEL_NAME}=database",
}
"""The children's watches, with server-side label selectors (only what the operator made)."""


def identity() -> str:
    """Unique per process: a restarted pod must not look like its dead predecessor."""
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{host}_{uuid.uuid4().hex[:8]}"


def in_cluster_server(environ: Mapping[str, str]) -> str | None:
    """The API server as a pod reaches it: ``KUBERNETES_SERVICE_HOST``/``_PORT``, which the
    kubelet sets in every container (client-go's InClusterConfig reads the same); None without.

    kopf's service-account login names ``https://kubernetes.default.svc``, which needs cluster
    DNS: a cluster without it (the rig) left the operator unable to reach its Lease."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def connection(cfg: config.Config) -> kopf.ConnectionInfo:
    """In-cluster service account, else the kubeconfig (``kubeconfig`` key or $KUBECONFIG)."""
    settings = kopf.OperatorSettings()
    if cfg.kubeconfig is None:
        info = kopf.login_with_service_account(settings=settings)
        if info is not None:
            server = in_cluster_server(os.environ)
            return dataclasses.replace(info, server=server) if server else info
    if cfg.kubeconfig is not None:
        os.environ["KUBECONFIG"] = cfg.kubeconfig
    info = kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no credentials: not in a pod, and no kubeconfig found")
    return info


def release_free_memory() -> None:
    """Hand memory freed after a burst (a listing, a wave of events) back to the OS; glibc keeps
    it otherwise, and RSS would show the peak forever. No-op where there is no glibc."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def trim_when_idle(queue_depth: Callable[[], int], *, every: float = 30.0) -> None:
    """After the work queue drains (start-up sync, a burst of changes), release free memory."""
    busy = True
    while True:
        await asyncio.sleep(every)
        idle = queue_depth() == 0
        if idle and busy:
            release_free_memory()
        busy = not idle


class Heartbeat:
    """Liveness: the event loop still turns (a wedged loop fails /healthz)."""

    def __init__(self, limit: float = 30.0) -> None:
        self.limit, self.beat = limit, time.monotonic()

    async def run(self) -> None:
        while True:
            self.beat = time.monotonic()
            await asyncio.sleep(1.0)

    def alive(self) -> bool:
        return time.monotonic() - self.beat < self.limit


async def run(
    cfg: config.Config,
    *,
    ready: threading.Event,
    stop: asyncio.Event,
    tasks: supervisor.Supervisor,
) -> int:
    """Lead (or wait to), then reconcile until ``stop`` or lost leadership; the background
    tasks run under ``tasks``, which the probes watch."""
    info = connection(cfg)
    api = kube.Api(
        info, qps=cfg.client.qps, burst=cfg.client.burst, timeout=cfg.client.timeout_seconds
    )
    me = identity()
    cache = store.Store()
    placement = common.Placement(
        node_selector=dict(cfg.pod_placement.node_selector),
        tolerations=tuple(t.manifest() for t in cfg.pod_placement.tolerations),
    )
    reconcile = reconciler.Reconciler(
        api=api,
        cache=cache,
        webapp_defaults=wa_plan.Defaults(
            cpu=cfg.webapp_defaults.cpu,
            memory=cfg.webapp_defaults.memory,
            pod_labels=dict(cfg.pod_labels),
            placement=placement,
        ),
        database_settings=db_plan.Settings(
            registry=cfg.database.image_registry,
            images=dict(cfg.database.images),
            exporter_images=dict(cfg.database.exporter_images),
            pod_labels=dict(cfg.pod_labels),
            placement=placement,
        ),
        identity=me,
        status_settle=cfg.status_settle_seconds,
    )
    work = controller.Controller(cache=cache, reconcile=reconcile, workers=cfg.workers)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, work)

    @kopf.on.login(registry=registry)
    def login(**_: object) -> kopf.ConnectionInfo:
        return info

    settings = kopf.OperatorSettings()
    handlers.configure(
        settings,
        server_timeout=cfg.watching.server_timeout_seconds,
        client_timeout=cfg.watching.client_timeout_seconds,
        connect_timeout=cfg.watching.connect_timeout_seconds,
        list_page_size=cfg.watching.list_page_size,
        object_workers=cfg.watching.object_workers,
    )
    reflectors = [
        informer.Reflector(
            api=api,
            kind=kind,
            namespace=namespace,
            selector=selector,
            upsert=work.child_upsert,
            delete=work.child_delete,
            known=cache.child_names,
            server_timeout=cfg.watching.server_timeout_seconds,
            client_timeout=cfg.watching.client_timeout_seconds,
            page_size=cfg.watching.list_page_size,
        )
        for kind, selector in CHILD_SELECTORS.items()
        for namespace in (cfg.namespaces or [None])
    ]
    elector = None
    flag: asyncio.Future[None] | None = None
    try:
        if cfg.leader_election.enabled:
            le = cfg.leader_election
            elector = leader.LeaderElector(
                api=api,
                namespace=le.namespace,
                name=le.name,
                identity=me,
                timing=leader.Timing(
                    le.lease_duration_seconds, le.renew_deadline_seconds, le.retry_period_seconds
                ),
            )
            ready.set()  # a standby is ready: it serves probes and waits its turn
            acquiring = asyncio.create_task(elector.acquire())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                acquiring.cancel()
                return 0
            stopping.cancel()
        for r in reflectors:
            tasks.start(f"reflect-{r.kind}" + (f"-{r.namespace}" if r.namespace else ""), r.run)
        # Reconcile only from complete caches: a half-listed cache would look like missing
        # children and cause needless writes.
        synced = asyncio.gather(*(r.synced.wait() for r in reflectors))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({synced, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            synced.cancel()
            return 0
        stopping.cancel()
        log.info("caches synced", extra={"children": len(cache)})
        release_free_memory()
        work.start()
        tasks.start("trim-when-idle", lambda: trim_when_idle(lambda: len(work.queue)))
        if cfg.resync_period_seconds > 0:
            tasks.start("resync", lambda: work.resync(cfg.resync_period_seconds))
        lost = asyncio.Event()
        if elector is not None:

            async def keep() -> None:
                await elector.keep()
                await work.stop()  # stop acting at once; kopf's shutdown can take a while
                lost.set()

            tasks.start("lease-renewal", keep)
        kopf_ready = asyncio.Event()
        flag = asyncio.ensure_future(first_of(stop, lost))
        tasks.start("mark-ready", lambda: _mark_ready(kopf_ready, ready))
        await kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=not cfg.namespaces,
            namespaces=cfg.namespaces,
            stop_flag=flag,
            ready_flag=kopf_ready,
        )
        if lost.is_set():
            log.error("leadership lost; exiting so that a fresh process competes again")
            return 1
        return 0
    finally:
        if flag is not None:
            flag.cancel()
        await tasks.stop()
        await work.stop()
        await reconcile.events.drain(timeout=5.0)
        if elector is not None:
            with contextlib.suppress(Exception):
                await elector.release()
        await api.close()


async def first_of(*events: asyncio.Event) -> None:
    """Return once any of ``events`` is set; the waits on the others do not outlive it."""
    waits = {asyncio.create_task(e.wait()) for e in events}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _mark_ready(kopf_ready: asyncio.Event, ready: threading.Event) -> None:
    await kopf_ready.wait()
    ready.set()


class _KopfExtras(logging.Filter):
    """kopf attaches its settings and object references to records; keep the JSON lines small."""

    def filter(self, record: logging.LogRecord) -> bool:
        for attr in ("settings", "k8s_skip", "k8s_ref"):
            record.__dict__.pop(attr, None)
        return True


def quiet_kopf(level: str) -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(_KopfExtras())
    if level != "debug":
        # One line per watch event ("Handler ... succeeded") is noise at 1,000 objects.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def serve(cfg: config.Config) -> int:
    """Run until SIGTERM/SIGINT; /healthz, /readyz and /metrics on ``health.host:port``."""
    quiet_kopf(cfg.log_level)
    ready = threading.Event()
    heartbeat = Heartbeat()
    tasks = supervisor.Supervisor()
    server = health.HealthServer(
        host=cfg.health.host,
        port=cfg.health.port,
        live=lambda: heartbeat.alive() and tasks.check(),
        ready=lambda: ready.is_set() and tasks.check(),
    ).start()
    log.info("health server listening", extra={"port": server.port})

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        beat = asyncio.create_task(heartbeat.run())
        try:
            return await run(cfg, ready=ready, stop=stop, tasks=tasks)
        finally:
            beat.cancel()

    try:
        code = asyncio.run(main())
        log.info("stopped", extra={"exit_code": code})
        return code
    finally:
        server.stop()
