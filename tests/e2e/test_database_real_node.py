"""The Database sample for real on the rig's real node, with the pieces `./kubext up` uses
(``kubext_rig.samples``): a PostgreSQL Database whose pod runs PostgreSQL 15 on a volume our CSI
driver provisioned, backed up and restored by the operator's on-demand Jobs.

What is real: the pinned kubelet, containerd and runc running the images images/postgres/build.sh
builds from Debian's packages (PostgreSQL 15 and prometheus-postgres-exporter 0.11), pulled by
containerd from the rig's registry (pushed there with podman); kube-scheduler binding the pods
(WaitForFirstConsumer) and the PV controller; our CSI driver (a root host process from source,
registered through the kubelet's plugins_registry) whose built-in provisioner creates the data
and backup volumes and their PVs, staged and published by the kubelet; the operator (a host
process from source, its config from ``samples.database_operator_config``: the registry's images,
the pods placed on the real node) planning the StatefulSet, Services, backup Job and restore Job;
kube-proxy's ClusterIP for the -rw Service the Jobs reach; pg_dumpall, psql, the exporter.
Not real: the kwok node beside it (nothing runs there); no webhooks run (no admission, no
conversion: the Database is created as v1, its stored version); no cluster DNS (the Jobs reach
the Service by its environment variable). The real node is the shared test cluster's when it
holds the machine's one (everything here then in a namespace of its own, removed, and the
StorageClass not made the default), else a cluster of this test's own (offset 3000); one
kubelet per machine: the real-node lock."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubext_csi import system
from kubext_rig import cluster, node, real_node_csi, real_node_testing, samples, tools
from kubext_rig.testing import gone, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="a real kubelet and loop devices need root"
)

STATE = real_node_testing.state_for(tools.cache_dir() / "real-node-database")
GROUP, VERSION, PLURAL = "db.example.com", "v1", "databases"
DB = "orders"
ROW = "crème brûlée on the real node"
BACKUP_NOW = "db.example.com/backup-now"
RESTORE_FROM = "db.example.com/restore-from"


class Process:
    """A service of this checkout as a host process, its log in one file."""

    def __init__(self, module: str, cfg: dict[str, Any], workdir: Path, env: dict[str, str]):
        self.log_path = workdir / f"{module}.log"
        cfg_path = workdir / f"{module}.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, "--config", str(cfg_path)],
                env=env,
                stderr=log,
                preexec_fn=real_node_testing.die_with_parent,
            )

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@contextlib.contextmanager
def csi_driver(real: real_node_testing.RealNode, workdir: Path) -> Iterator[Process]:
    """Our driver on the real node as `./kubext up` configures it (provisioner on); its state
    is this test's, and nothing of it outlives the block."""
    csi_dir = real_node_csi.csi_dir(real.state)
    system.release_under(csi_dir)
    shutil.rmtree(csi_dir / "state", ignore_errors=True)
    csi_dir.mkdir(parents=True, exist_ok=True)
    cfg = samples.csi_driver_config(real.state, kubeconfig=str(real.info.kubeconfig))
    driver = Process("kubext_csi", cfg, workdir, real.env())
    try:
        yield driver
    finally:
        rc = driver.stop()
        system.release_under(csi_dir)
        assert rc == 0, driver.tail()


def _database(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Database",
        "metadata": {"name": DB, "namespace": namespace},
        "spec": {
            "type": "postgresql",
            "version": "15.20.0",  # the operator's template maps it to :15 (major)
            "replicas": 1,
            "storage": {"size": "256Mi", "storageClass": samples.STORAGE_CLASS},
            "backup": {"enabled": True, "schedule": "0 2 * * *", "retention": 3},
            "monitoring": {"enabled": True, "metrics": ["connections", "disk"]},
            "deletionPolicy": "Delete",
        },
    }


def test_the_database_sample_runs_backs_up_and_restores_on_the_real_node(
    tmp_path: Path,
) -> None:
    t0 = time.monotonic()
    with real_node_testing.machine_lock(), real_node_testing.up(STATE) as real:
        print(f"database: real node up in {real.up_seconds:.1f} s")
        with real.api_client() as api:
            core = client.CoreV1Api(api)
            storage = client.StorageV1Api(api)
            custom = client.CustomObjectsApi(api)
            batch = client.BatchV1Api(api)
            had_class = _has_storage_class(storage)
            samples.build_postgres_images(say=print)
            t1 = time.monotonic()
            pushed = samples.push_local_images(real.registry, samples.POSTGRES_IMAGES, say=print)
            print(f"database: images pushed in {time.monotonic() - t1:.1f} s: {pushed}")
            _ensure_crds(real)
            # The shared cluster's other tests make class-less claims: no default class there.
            samples.ensure_storage(real.info, default=not real.shared)
            try:
                with (
                    csi_driver(real, tmp_path) as driver,
                    real_node_testing.namespace(core, "database") as ns,
                ):
                    wait_for("CSINode lists the driver", lambda: real_node_csi.registered(storage))
                    operator_cfg = {
                        "kubeconfig": str(real.info.kubeconfig),
                        "namespaces": [ns],
                        "health": {"host": "127.0.0.1", "port": 0},
                        "leader_election": {"enabled": False},
                        **samples.database_operator_config(real.registry),
                    }
                    operator = Process("kubext_operator", operator_cfg, tmp_path, real.env())
                    try:
                        _run_the_sample(real, core, custom, batch, ns, driver, operator)
                    finally:
                        with contextlib.suppress(client.ApiException):
                            custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, DB)
                        _wait_database_gone(custom, ns, operator)
                        assert operator.stop() == 0, operator.tail()
                    # Delete policy: the provisioner deletes the PVs with their claims (the
                    # namespace goes on the way out); the driver must outlive that.
                    _wait_pvs_gone(core, ns, driver)
            finally:
                if real.shared and not had_class:
                    with contextlib.suppress(client.ApiException):
                        storage.delete_storage_class(samples.STORAGE_CLASS)
    print(f"database: the whole test {time.monotonic() - t0:.1f} s")


def _run_the_sample(
    real: real_node_testing.RealNode,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    ns: str,
    driver: Process,
    operator: Process,
) -> None:
    t0 = time.monotonic()
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _database(ns))
    pod_name = f"{DB}-0"

    def ready() -> client.V1Pod | None:
        assert operator.proc.poll() is None, f"operator exited: {operator.tail()}"
        pod = core.read_namespaced_pod(pod_name, ns)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return pod if conditions.get("Ready") == "True" else None

    try:
        pod = wait_for(f"{pod_name} Ready", ready, timeout=420, every=2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_diagnostics(core, ns, driver, operator)}") from None
    print(f"database: {pod_name} Ready {time.monotonic() - t0:.1f} s after the Database")
    assert pod.spec.node_name == node.NODE_NAME
    statuses = {s.name: s for s in pod.status.container_statuses}
    assert set(statuses) == {"database", "exporter"}
    assert all(s.ready and s.state.running for s in statuses.values()), statuses
    assert statuses["database"].image == f"{real.registry}/kubext/postgres:15"

    # The data volume: provisioned by our driver, and PGDATA on the kubelet's CSI mount of it.
    claim = core.read_namespaced_persistent_volume_claim(f"data-{pod_name}", ns)
    assert claim.status.phase == "Bound"
    pv = core.read_persistent_volume(claim.spec.volume_name)
    assert pv.spec.csi.driver == real_node_csi.DRIVER
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == real_node_csi.DRIVER
    kubelet = real_node_csi.kubelet_dir(real.state)
    mount = kubelet / "pods" / pod.metadata.uid / "volumes" / "kubernetes.io~csi" / pv.metadata.name
    mount = mount / "mount"
    assert str(mount) in real_node_testing.mount_points(), "the kubelet's CSI publish mount"
    assert (mount / "pgdata" / "PG_VERSION").read_text().strip() == "15"
    in_pod = _exec(real, ns, pod_name, "cat", "/var/lib/postgresql/data/pgdata/PG_VERSION")
    assert in_pod.strip() == "15"

    password = _password(core, ns)
    psql = ["env", f"PGPASSWORD={password}", "psql", "-h", "127.0.0.1", "-U", "postgres"]
    psql += ["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc"]
    version = _exec(real, ns, pod_name, *psql, "SELECT version()")
    assert version.startswith("PostgreSQL 15."), version
    _exec(
        real,
        ns,
        pod_name,
        *psql,
        f"CREATE TABLE menu (item text); INSERT INTO menu VALUES ('{ROW}')",
    )
    assert _exec(real, ns, pod_name, *psql, "SELECT item FROM menu").strip() == ROW

    # The exporter sidecar, scraped from the host at the pod's address.
    def scraped() -> str | None:
        with urllib.request.urlopen(f"http://{pod.status.pod_ip}:9187/metrics", timeout=5) as r:
            body = r.read().decode()
        return body if "pg_up 1" in body else None

    metrics = wait_for("the exporter reports pg_up 1", _none_on_oserror(scraped), timeout=60)
    assert "pg_database_size_bytes{" in metrics  # the disk group's collector

    # An on-demand backup: its Job succeeds and the dump on the backup volume has the row.
    t1 = time.monotonic()
    _annotate(custom, ns, BACKUP_NOW, str(int(time.time())))
    _wait_condition(custom, ns, "OnDemandBackupSucceeded", core, driver, operator)
    print(f"database: backup Job done in {time.monotonic() - t1:.1f} s")
    jobs = batch.list_namespaced_job(ns).items
    backups = [j for j in jobs if j.metadata.name.startswith(f"{DB}-backup-")]
    assert len(backups) == 1 and backups[0].status.succeeded == 1, [j.status for j in jobs]
    backup_pv = core.read_persistent_volume(
        core.read_namespaced_persistent_volume_claim(f"{DB}-backup", ns).spec.volume_name
    )
    assert backup_pv.spec.csi.driver == real_node_csi.DRIVER
    dump = _read_dumps(real, core, ns)
    assert "PostgreSQL database cluster dump" in dump
    assert "CREATE TABLE public.menu" in dump and ROW in dump

    _exec(real, ns, pod_name, *psql, "DROP TABLE menu")
    dropped = subprocess.run(
        [real.info.bin("kubectl"), f"--kubeconfig={real.info.kubeconfig}", "exec", "-n", ns,
         pod_name, "-c", "database", "--", *psql, "SELECT item FROM menu"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert dropped.returncode != 0 and 'relation "menu" does not exist' in dropped.stderr, dropped

    # An on-demand restore of the newest dump: the row is back.
    t2 = time.monotonic()
    _annotate(custom, ns, RESTORE_FROM, "latest")
    _wait_condition(custom, ns, "RestoreSucceeded", core, driver, operator)
    print(f"database: restore Job done in {time.monotonic() - t2:.1f} s")
    assert _exec(real, ns, pod_name, *psql, "SELECT item FROM menu").strip() == ROW


# --- helpers -----------------------------------------------------------------------------------


def _none_on_oserror(probe: Any) -> Any:
    def quiet() -> Any:
        try:
            return probe()
        except OSError:
            return None

    return quiet


def _exec(real: real_node_testing.RealNode, ns: str, pod: str, *argv: str) -> str:
    return cluster.kubectl(real.info, "exec", "-n", ns, pod, "-c", "database", "--", *argv)


def _password(core: client.CoreV1Api, ns: str) -> str:
    import base64

    secret = core.read_namespaced_secret(f"{DB}-credentials", ns)
    return base64.b64decode(secret.data["password"]).decode()


def _annotate(custom: client.CustomObjectsApi, ns: str, key: str, value: str) -> None:
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, DB, {"metadata": {"annotations": {key: value}}}
    )


def _wait_condition(
    custom: client.CustomObjectsApi,
    ns: str,
    type_: str,
    core: client.CoreV1Api,
    driver: Process,
    operator: Process,
) -> None:
    """The Database's request condition True (its Job completed); a False one fails at once."""

    def done() -> bool:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, DB)
        cond = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        found = cond.get(type_) or {}
        assert found.get("status") != "False", f"{found}\n{_job_logs(core, ns)}"
        return found.get("status") == "True"

    try:
        wait_for(f"{type_} True", done, timeout=300, every=2)
    except AssertionError as exc:
        detail = _diagnostics(core, ns, driver, operator)
        raise AssertionError(f"{exc}\n{_job_logs(core, ns)}\n{detail}") from None


def _read_dumps(real: real_node_testing.RealNode, core: client.CoreV1Api, ns: str) -> str:
    """The dumps on the backup volume, as a pod on the real node mounting it reads them."""
    name = "read-backups"
    spec = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            **node.placement(),
            "containers": [
                {
                    "name": "read",
                    "image": f"{real.registry}/kubext/postgres:15",
                    "command": ["bash", "-c", "ls -1 /backup/*.dump.gz; zcat /backup/*.dump.gz"],
                    "volumeMounts": [{"name": "backup", "mountPath": "/backup"}],
                }
            ],
            "volumes": [{"name": "backup", "persistentVolumeClaim": {"claimName": f"{DB}-backup"}}],
        },
    }
    core.create_namespaced_pod(ns, spec)

    def finished() -> str | None:
        phase = core.read_namespaced_pod(name, ns).status.phase
        assert phase != "Failed", core.read_namespaced_pod_log(name, ns)
        return phase if phase == "Succeeded" else None

    wait_for(f"{name} Succeeded", finished, timeout=120, every=1)
    listing, _, _ = core.read_namespaced_pod_log(name, ns).partition("\n")
    assert listing.startswith(f"/backup/{DB}-") and listing.endswith(".dump.gz"), listing
    text = core.read_namespaced_pod_log(name, ns)  # zcat's: a dump that is no gzip fails the pod
    core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
    return text


def _job_logs(core: client.CoreV1Api, ns: str) -> str:
    out = []
    for pod in core.list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/name=database-job"
    ).items:
        with contextlib.suppress(client.ApiException):
            log = core.read_namespaced_pod_log(pod.metadata.name, ns, tail_lines=20)
            out.append(f"--- {pod.metadata.name} ({pod.status.phase}):\n{log}")
    return "\n".join(out)


def _diagnostics(core: client.CoreV1Api, ns: str, driver: Process, operator: Process) -> str:
    lines = []
    for pod in core.list_namespaced_pod(ns).items:
        lines.append(f"pod {pod.metadata.name}: {pod.status.phase} on {pod.spec.node_name}")
        for s in pod.status.container_statuses or []:
            lines.append(f"  {s.name}: ready={s.ready} state={s.state}")
    for claim in core.list_namespaced_persistent_volume_claim(ns).items:
        lines.append(f"claim {claim.metadata.name}: {claim.status.phase}")
    for event in core.list_namespaced_event(ns).items[-25:]:
        obj = event.involved_object
        lines.append(f"event {obj.kind}/{obj.name} {event.reason}: {event.message}")
    lines += ["operator log:", operator.tail(), "driver log:", driver.tail(15)]
    return "\n".join(lines)


def _has_storage_class(storage: client.StorageV1Api) -> bool:
    try:
        storage.read_storage_class(samples.STORAGE_CLASS)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _ensure_crds(real: real_node_testing.RealNode) -> None:
    """The operator's CRDs, unless the cluster has them (the shared one's point their
    conversion at its webhooks: left as they are)."""
    listed = cluster.kubectl(real.info, "get", "crd", "-o", "name")
    if "databases.db.example.com" not in listed:
        crds = tools.repo_root() / "services/operator/deploy/crds"
        cluster.kubectl(real.info, "apply", "-f", str(crds))
    cluster.kubectl(
        real.info, "wait", "--for=condition=Established", "crd/databases.db.example.com",
        "crd/webapps.example.com", "--timeout=60s",
    )  # fmt: skip


def _wait_database_gone(custom: client.CustomObjectsApi, ns: str, operator: Process) -> None:
    deleted = gone(lambda: custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, DB))
    try:
        wait_for("the Database gone (its finalizer done)", deleted, timeout=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{operator.tail()}") from None


def _wait_pvs_gone(core: client.CoreV1Api, ns: str, driver: Process) -> None:
    def ours() -> list[str]:
        return [
            pv.metadata.name
            for pv in core.list_persistent_volume().items
            if pv.spec.claim_ref and pv.spec.claim_ref.namespace == ns
        ]

    try:
        wait_for("the claims' PVs deleted by the provisioner", lambda: not ours(), timeout=180)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {ours()}\n{driver.tail()}") from None
    print(f"database: the PVs of {ns} deleted by the provisioner")
