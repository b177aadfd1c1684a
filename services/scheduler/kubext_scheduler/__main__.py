"""Entry point: ``kubext-scheduler [--config PATH] [--log-level L]``."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubext import cli, health, lease
from kubext_scheduler import config, leader, profiles_file
from kubext_scheduler.cache import ClusterCache
from kubext_scheduler.framework import profiles
from kubext_scheduler.queue import SchedulingQueue
from kubext_scheduler.scheduler import Scheduler

log = logging.getLogger("kubext_scheduler")
# The threads the extender's /bind runs on at most (Starlette's run_in_threadpool: anyio's
# default thread limiter).
EXTENDER_BIND_THREADS = 40


def serve(cfg: config.Config) -> int:
    try:
        loaded = profiles_file.load(cfg.scheduler_config)
        name = cfg.extender.profile or next(iter(loaded.frameworks))
        if name not in loaded.frameworks:
            raise profiles.ProfileError(
                f"extender.profile: no profile is named {name!r} "
                f"(profiles: {', '.join(loaded.frameworks)})"
            )
    except profiles.ProfileError as exc:
        print(f"kubext-scheduler: scheduler config error: {exc}", file=sys.stderr)
        return 2
    for warning in loaded.warnings:
        log.warning(warning, extra={"file": cfg.scheduler_config})
    log.info("profiles loaded", extra={"profiles": list(loaded.frameworks)})
    stop = cli.stop_event()
    cache = ClusterCache()
    scheduler = informers = binder = None
    if cfg.standalone.enabled or (cfg.extender.enabled and cfg.extender.cache):
        from kubext import kubeclient
        from kubext_scheduler import cluster  # the API client only when the cluster is used

        try:
            # A connection each for the 7 watches, the binding threads (bind, then the Event),
            # leader election and the extender's binds: with fewer kept open, requests beyond
            # them opened (and TLS-handshook) a connection each, a third of a binding's time.
            # The extender binds on Starlette's thread pool (anyio's default: 40 threads):
            # without room for them the full bench logged 110 "Connection pool is full".
            extender_binds = EXTENDER_BIND_THREADS if cfg.extender.enabled else 0
            api = kubeclient.api_client(
                kubeconfig=cfg.kubeconfig,
                pool_maxsize=16 + cfg.standalone.bind_workers + extender_binds,
            )
        except kubeclient.KubeConfigError as exc:
            print(f"kubext-scheduler: {exc}", file=sys.stderr)
            return 2
        first = next(iter(loaded.frameworks.values()))
        queue = SchedulingQueue(
            first.less,
            initial_backoff_s=loaded.config.podInitialBackoffSeconds,
            max_backoff_s=loaded.config.podMaxBackoffSeconds,
        )
        binder = cluster.KubeBinder(
            api, component=next(iter(loaded.frameworks)), instance=socket.gethostname()
        )
        executor = ThreadPoolExecutor(cfg.standalone.bind_workers, thread_name_prefix="bind")
        # Without standalone mode the scheduler only keeps the cache (nothing is queued).
        scheduler = Scheduler(
            loaded.frameworks,
            binder,
            cache=cache,
            queue=queue,
            executor=executor,
            schedule_pods=cfg.standalone.enabled,
            volume_api=cluster.KubeVolumes(api),
        )
        informers = [
            cluster.Informer(api, "nodes", scheduler.nodes_listed, scheduler.node_event, stop=stop),
            cluster.Informer(api, "pods", scheduler.pods_listed, scheduler.pod_event, stop=stop),
            # namespaceSelector's labels (InterPodAffinity) and PDBs (DefaultPreemption).
            cluster.Informer(
                api,
                "namespaces",
                scheduler.namespaces_listed,
                scheduler.namespace_event,
                stop=stop,
            ),
            cluster.Informer(
                api,
                "poddisruptionbudgets",
                scheduler.pdbs_listed,
                scheduler.pdb_event,
                stop=stop,
            ),
            # VolumeBinding's claims, volumes and classes.
            cluster.Informer(
                api,
                "persistentvolumeclaims",
                scheduler.claims_listed,
                scheduler.claim_event,
                stop=stop,
            ),
            cluster.Informer(
                api,
                "persistentvolumes",
                scheduler.volumes_listed,
                scheduler.volume_event,
                stop=stop,
            ),
            cluster.Informer(
                api,
                "storageclasses",
                scheduler.storage_classes_listed,
                scheduler.storage_class_event,
                stop=stop,
            ),
        ]
        for informer in informers:
            informer.start()

    def ready() -> bool:
        if informers is not None and not all(i.synced.is_set() for i in informers):
            waiting = [i.kind for i in informers if not i.synced.is_set()]
            raise health.Unhealthy(f"the {', '.join(waiting)} caches have not listed yet")
        return True

    def live() -> bool:
        if informers is not None and not all(i.alive() for i in informers):
            raise health.Unhealthy("an informer thread died")
        return True

    server = health.HealthServer(
        host=cfg.health.host, port=cfg.health.port, live=live, ready=ready
    ).start()
    log.info("health server listening", extra={"port": server.port})
    extender_server = None
    if cfg.extender.enabled:
        import uvicorn  # the HTTP edge only when it is served

        from kubext_scheduler import extender

        # With the cluster: nodes and pods from the informer cache (nodeCacheCapable), and
        # pods/binding for the bind verb; without it, only full nodes seen empty.
        with_cluster = informers is not None
        served = extender.Extender(
            loaded.frameworks[name],
            cache=cache if with_cluster else None,
            binder=binder if with_cluster else None,
            synced=lambda: all(i.synced.is_set() for i in informers or ()),
        )
        app = extender.app(served)
        extender_server = uvicorn.Server(
            extender.server_config(app, host=cfg.extender.host, port=cfg.extender.port)
        )
        thread = threading.Thread(target=extender_server.run, name="extender", daemon=True)
        thread.start()
        while not extender_server.started and thread.is_alive():
            time.sleep(0.05)
        if not extender_server.started:  # uvicorn logged why (the port is taken, ...)
            server.stop()
            return 1
        log.info("extender listening", extra={"port": cfg.extender.port, "profile": name})
    elector = None
    lost = threading.Event()
    if scheduler is not None and cfg.standalone.enabled:
        if cfg.leader_election.enabled:
            elector = leader.LeaderElector(
                cluster.KubeLease(
                    api, namespace=cfg.leader_election.namespace, name=cfg.leader_election.name
                ),
                identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
                timing=lease.Timing(
                    lease_duration=cfg.leader_election.lease_duration_seconds,
                    renew_deadline=cfg.leader_election.renew_deadline_seconds,
                    retry_period=cfg.leader_election.retry_period_seconds,
                ),
            )
        threading.Thread(
            target=_schedule,
            args=(scheduler, informers or [], elector, stop, lost),
            name="scheduler",
            daemon=True,
        ).start()
    stop.wait()
    if elector is not None:
        elector.release()
    if scheduler is not None:
        scheduler.queue.close()
    if extender_server is not None:
        extender_server.should_exit = True
        thread.join(timeout=10)
    server.stop()
    return 1 if lost.is_set() else 0


def _schedule(
    scheduler: Scheduler,
    informers: list[Any],
    elector: leader.LeaderElector | None,
    stop: threading.Event,
    lost: threading.Event,
) -> None:
    """The standalone loop, run only while this replica leads; a lost Lease stops the process
    (it restarts as a candidate) before a standby may take over."""
    for informer in informers:
        while not informer.synced.wait(0.5) and not stop.is_set():
            pass  # schedule from a full cache only, or nodes would look empty
    if elector is not None and not elector.acquire(stop.wait):
        return
    log.info("scheduling", extra={"profiles": list(scheduler.frameworks)})
    if elector is None:
        scheduler.run(stop.is_set)
        return
    loop = threading.Thread(
        target=scheduler.run,
        args=(lambda: stop.is_set() or not elector.leading,),
        name="scheduling-loop",
        daemon=True,
    )
    loop.start()
    if not elector.keep(stop.wait):
        lost.set()
        stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(
        name="scheduler",
        package="kubext_scheduler",
        description="kubext scheduler: the scheduling framework and its plugins, run as a "
        "scheduler of its own (pods naming a profile's schedulerName) and served as a "
        "kube-scheduler extender.",
        model=config.Config,
        main=serve,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
