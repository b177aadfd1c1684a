"""The services on the local control plane, for the main command (`./kubext up`).

With the real node and ``as_releases`` (what `./kubext up` asks for), every service is a Helm
release whose pods run on that node (``install_releases``, values in ``releases``). Otherwise the
operator, the webhooks and the scheduler run as host processes against the rig's API server:
the webhooks on https://127.0.0.1:<port> with their self-managed TLS, registered with url
clientConfigs; the operator and the scheduler (standalone, the seed's `custom-scheduler` profile,
Lease leader election) with the admin kubeconfig. With the real node, the device plugin too
(simulated `example.com/gpu` devices, registered with that node's kubelet), and a pod requesting
one runs there. All are stopped by `down`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from kubext_rig import cluster, images, node, real_node_csi, releases, tools
from kubext_rig import samples as real_samples

WEBHOOKS_PORT = 18443 + cluster.PORT_OFFSET
WEBHOOKS_HEALTH_PORT = 18080 + cluster.PORT_OFFSET
OPERATOR_HEALTH_PORT = 18081 + cluster.PORT_OFFSET
SCHEDULER_HEALTH_PORT = 18082 + cluster.PORT_OFFSET
DEVICEPLUGIN_HEALTH_PORT = 18083 + cluster.PORT_OFFSET
CSI_HEALTH_PORT = 18084 + cluster.PORT_OFFSET
NAMESPACE = "kubext-system"
SERVICES = (
    "kubext-webhooks",
    "kubext-csi",
    "kubext-operator",
    "kubext-scheduler",
    "kubext-deviceplugin",
)
HEALTH = {
    "kubext-webhooks": f"http://127.0.0.1:{WEBHOOKS_HEALTH_PORT}/readyz",
    "kubext-operator": f"http://127.0.0.1:{OPERATOR_HEALTH_PORT}/healthz",
    # Ready once the informers listed / once every resource is registered with the kubelet.
    "kubext-scheduler": f"http://127.0.0.1:{SCHEDULER_HEALTH_PORT}/readyz",
    "kubext-deviceplugin": f"http://127.0.0.1:{DEVICEPLUGIN_HEALTH_PORT}/readyz",
    "kubext-csi": f"http://127.0.0.1:{CSI_HEALTH_PORT}/readyz",
}
WEBAPP_SAMPLE_DIR = "images/webapp-sample"  # `./pants package images/webapp-sample:image`
# The seed's profile name (12.5.2): its sample pod and Deployment (examples/) ask for it.
SCHEDULER_NAME = "custom-scheduler"
GPU_RESOURCE = releases.GPU_RESOURCE
GPU_DEVICES = releases.GPU_DEVICES
GPU_SAMPLE = "gpu-sample"
# Without the real node there is no kubelet for the device plugin: one line says so.
NO_GPU_SAMPLE = (
    "no real node on this cluster: kubext-deviceplugin and kubext-csi not started, the gpu "
    "sample skipped, the WebApp and Database samples on kwok nodes (no container runs)"
)


def _repo() -> Path:
    return tools.repo_root()


def _command(dist: Path | None, service: str) -> list[str]:
    """The service's pex in ``dist``, or (``dist`` None) its package run by this interpreter."""
    if dist is None:
        return [sys.executable, "-m", service.replace("-", "_")]
    return [str(dist / f"{service}.pex")]


def _components(
    info: cluster.ClusterInfo, dist: Path | None, *, registry: str | None = None
) -> list[cluster.Component]:
    """The services, configured for this cluster; with ``registry`` (the real node's), the
    samples' pods run there, from images in that registry, on volumes of our CSI driver."""
    configs = info.root / "services"
    configs.mkdir(exist_ok=True)
    policy = configs / "policy.yaml"
    policy.write_text(yaml.safe_dump(pod_policy(registry)))
    webhooks = {
        "host": "127.0.0.1",
        "port": WEBHOOKS_PORT,
        "namespace": NAMESPACE,
        "kubeconfig": info.kubeconfig,
        "health": {"host": "127.0.0.1", "port": WEBHOOKS_HEALTH_PORT},
        "policy": {"path": str(policy)},
        # Checked every few seconds so the caBundle lands right after the configurations do.
        "tls": {
            "dns_names": ["localhost"],
            "ip_addresses": ["127.0.0.1"],
            "check_interval_seconds": 3,
        },
    }
    operator: dict[str, object] = {
        "kubeconfig": info.kubeconfig,
        "health": {"host": "127.0.0.1", "port": OPERATOR_HEALTH_PORT},
        "leader_election": {"namespace": NAMESPACE},
    }
    if registry is not None:
        operator = real_samples.operator_config(registry, operator)
    scheduler = {
        "kubeconfig": info.kubeconfig,
        "scheduler_config": str(_repo() / "services/scheduler/deploy/custom-scheduler.yaml"),
        "health": {"host": "127.0.0.1", "port": SCHEDULER_HEALTH_PORT},
        "extender": {"enabled": False},  # standalone only: no kube-scheduler calls it here
        "leader_election": {"namespace": NAMESPACE, "name": SCHEDULER_NAME},
    }
    (configs / "webhooks.yaml").write_text(yaml.safe_dump(webhooks))
    (configs / "operator.yaml").write_text(yaml.safe_dump(operator))
    (configs / "scheduler.yaml").write_text(yaml.safe_dump(scheduler))
    node_side = []
    if node.enabled(info.root):
        csi = real_samples.csi_driver_config(
            info.root, kubeconfig=info.kubeconfig, health_port=CSI_HEALTH_PORT
        )
        (configs / "csi.yaml").write_text(yaml.safe_dump(csi))
        node_side.append(
            cluster.Component(
                "kubext-csi",
                [*_command(dist, "kubext-csi"), "--config", str(configs / "csi.yaml")],
                HEALTH["kubext-csi"],
            )
        )
    else:  # configs left by an earlier up with the real node would show them as stopped
        for name in ("deviceplugin", "csi"):
            (configs / f"{name}.yaml").unlink(missing_ok=True)
    return [
        cluster.Component(
            "kubext-webhooks",
            [*_command(dist, "kubext-webhooks"), "--config", str(configs / "webhooks.yaml")],
            HEALTH["kubext-webhooks"],
        ),
        *node_side,
        cluster.Component(
            "kubext-operator",
            [*_command(dist, "kubext-operator"), "--config", str(configs / "operator.yaml")],
            HEALTH["kubext-operator"],
        ),
        cluster.Component(
            "kubext-scheduler",
            [*_command(dist, "kubext-scheduler"), "--config", str(configs / "scheduler.yaml")],
            HEALTH["kubext-scheduler"],
        ),
        *([deviceplugin_component(info, dist)] if node.enabled(info.root) else []),
    ]


def pod_policy(registry: str | None) -> dict[str, object]:
    """The webhooks' pod policy trusting the samples' registries (``releases.pod_policy``)."""
    return releases.pod_policy(_repo(), registry)


def deviceplugin_component(info: cluster.ClusterInfo, dist: Path | None) -> cluster.Component:
    """The device plugin for the real node's kubelet (its config written under the state dir)."""
    path = info.root / "services" / "deviceplugin.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(deviceplugin_config()))
    return cluster.Component(
        "kubext-deviceplugin",
        [*_command(dist, "kubext-deviceplugin"), "--config", str(path)],
        HEALTH["kubext-deviceplugin"],
    )


def deviceplugin_config() -> dict[str, object]:
    """The device plugin on the real node: simulated GPUs, in the kubelet's device-plugin dir
    (fixed per machine: the rig's kubelet uses it whatever its root dir)."""
    return {
        "device_plugin_dir": str(node.DEVICE_PLUGINS_DIR),
        "health": {"host": "127.0.0.1", "port": DEVICEPLUGIN_HEALTH_PORT},
        "resources": [
            {"name": GPU_RESOURCE, "backend": "simulated", "simulated": {"count": GPU_DEVICES}}
        ],
    }


def gpu_sample_pod(namespace: str = NAMESPACE) -> dict[str, object]:
    """A pod that runs for real on the real node with one simulated GPU: it tolerates the node's
    taint and selects it, runs the rig's static echo-loop image (never pulled), and lives in our
    namespace, which the webhooks leave out (the pod policy allows no kubext.invalid image)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": GPU_SAMPLE, "namespace": namespace, "labels": {"app": GPU_SAMPLE}},
        "spec": {
            **node.placement(),
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "app",
                    "image": node.image_ref("echo-loop"),
                    "imagePullPolicy": "Never",
                    "args": [f"a pod with one {GPU_RESOURCE}: its ID is in KUBEXT_DEVICES"],
                    "resources": {"limits": {GPU_RESOURCE: "1"}},
                }
            ],
        },
    }


def device_ids(oci_spec: dict[str, object]) -> list[str]:
    """The device IDs the device plugin allocated, from a container's OCI spec (KUBEXT_DEVICES:
    the kubelet passes Allocate's envs to the runtime, not into the pod spec)."""
    process = oci_spec.get("process")
    env = process.get("env", []) if isinstance(process, dict) else []
    for entry in env:
        key, _, value = str(entry).partition("=")
        if key == "KUBEXT_DEVICES":
            return value.split(",") if value else []
    return []


def up(
    info: cluster.ClusterInfo,
    *,
    dist: Path | None,
    samples: bool = True,
    as_releases: bool = False,
) -> None:
    """Install CRDs and admission configuration, start the services, apply the samples.

    ``dist`` holds the services' pexes; None runs them from source (PYTHONPATH must reach them).
    With ``as_releases`` and the real node, every service is a Helm release whose pods run on
    that node from the images `./pants package services/<svc>:image` built (``releases``); else
    they run as host processes. With the real node the samples run there for real (their images
    pushed to its registry, the Database on our CSI driver's volumes), and ``up`` waits for them;
    a sample that does not become Ready fails it, after the status table says why."""
    repo = _repo()
    real = node.enabled(info.root)
    registry = images.registry_for(cluster.PORT_OFFSET) if real else None
    if as_releases and not real:
        cluster.say("no real node: the services run as host processes, not as Helm releases")
    as_releases = as_releases and real
    pushed: dict[str, str] = {}
    if real and samples:
        assert registry is not None
        real_samples.build_postgres_images(repo, say=cluster.say)
        local = [webapp_sample_image(repo), *real_samples.POSTGRES_IMAGES]
        pushed = real_samples.push_local_images(registry, local, say=cluster.say)
    url = f"https://127.0.0.1:{WEBHOOKS_PORT}"
    # As releases the CRD's conversion goes to the webhooks' Service (as in the file).
    _apply_crds(info, repo / "services/operator/deploy/crds", None if as_releases else url)
    cluster.kubectl(info, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    cluster.kubectl(info, "apply", "-f", "-", stdin=json.dumps(ns))
    if as_releases:
        assert registry is not None
        install_releases(info, registry)
    else:
        releases.mark_installed(info.root, [])
        for comp in _components(info, dist, registry=registry):
            start(info, comp)
            if comp.name == "kubext-webhooks":
                # Registered only once the server answers: failurePolicy Fail would block pods
                # before.
                _register_webhooks(info, dist, url)
            elif comp.name == "kubext-csi":
                real_samples.ensure_storage(info)
    if not real:
        cluster.say(NO_GPU_SAMPLE)
    if not samples:
        return
    if not real:
        _ensure_volumes(info)
    docs = sample_manifests(repo, pushed)
    cluster.kubectl(info, "apply", "-f", "-", stdin=json.dumps(docs))
    cluster.say("samples applied: kubectl get webapps,databases,pods -A")
    if not real:
        return
    rows = [run_gpu_sample_row(info)]
    cluster.kubectl(
        info, "apply", "-f", "-", stdin=json.dumps(custom_scheduled_pod(pushed[local[0]]))
    )
    rows += wait_for_samples(info)
    if all(r.ready for r in rows):
        rows.append(backup_row(info, "default", "orders"))
    print_table([*service_rows(info.root), *rows])
    failed = [r for r in rows if not r.ready]
    if failed:
        raise cluster.RigError(
            f"not Ready after {SAMPLE_TIMEOUT_S:.0f} s: {', '.join(r.name for r in failed)} "
            "(the table above says why)"
        )


@dataclasses.dataclass(frozen=True)
class Row:
    """A line of the status table `up` ends with: a service or a sample, Ready or why not."""

    name: str
    ready: bool
    detail: str


def table(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'':2}{'NAME':<{width}}  {'READY':<5}  DETAIL"]
    for r in rows:
        lines.append(f"{'':2}{r.name:<{width}}  {'yes' if r.ready else 'NO':<5}  {r.detail}")
    return "\n".join(lines)


def service_rows(root: Path) -> list[Row]:
    installed = releases.installed(root)
    if installed:
        states = release_states(cluster.ClusterInfo(root), installed)
        return [
            Row(f"release {releases.release_name(svc)}", st.healthy, st.detail)
            for svc, st in states.items()
        ]
    return [
        Row(name, state == "healthy", f"host process, {state}")
        for name, state in status(root).items()
    ]


def install_releases(info: cluster.ClusterInfo, registry: str) -> None:
    """Each service's chart as a Helm release on the real node (``releases``), in order, each
    waited for; host-process configs of an earlier `up` removed (they would show as stopped)."""
    repo = _repo()
    for name in SERVICES:
        (info.root / "services" / f"{name.removeprefix('kubext-')}.yaml").unlink(missing_ok=True)
    pushed = images.push(list(releases.ORDER), registry=registry, say=cluster.say)
    releases.mark_installed(info.root, list(releases.ORDER))
    for svc in releases.ORDER:
        if svc == "csi":
            _drop_unmanaged_storage(info)
        if svc == "cni":
            node.release_network(info.root)  # the rig's daemon stops; the release's serves
        chart_values = releases.values(
            svc,
            image=pushed[svc],
            digest=images.remote_digest(pushed[svc]),
            root=info.root,
            registry=registry,
            repo=repo,
        )
        cluster.say(f"installing release {releases.release_name(svc)} (helm/{svc})")
        t = time.monotonic()
        try:
            releases.install(info, svc, chart_values, repo)
            # helm's --wait can pass a DaemonSet before its controller has counted the node.
            _wait_release_healthy(info, svc)
        except cluster.RigError as exc:
            state = release_states(info, [svc])[svc]
            raise cluster.RigError(f"{exc}\n{releases.release_name(svc)}: {state.detail}") from None
        seconds = time.monotonic() - t
        if svc == "cni":
            node.drop_rig_conflist(info.root)  # the release's conflist is the node's now
        if svc == "webhooks":
            # Until the pods have injected their CA the API server cannot call them, and the
            # fail-closed webhooks refuse what they cover.
            _wait_ca_bundles(info)
        cluster.say(f"release {releases.release_name(svc)} Ready ({seconds:.0f} s)")


def _wait_release_healthy(info: cluster.ClusterInfo, svc: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not release_states(info, [svc])[svc].healthy:
        if time.monotonic() > deadline:
            raise cluster.RigError(
                f"release {releases.release_name(svc)} not Ready after {timeout:.0f} s"
            )
        time.sleep(1)


def _drop_unmanaged_storage(info: cluster.ClusterInfo) -> None:
    """The CSIDriver and StorageClass a host-process `up` applied on this cluster (its data kept)
    are the csi release's to own: helm refuses objects it did not make."""
    for kind, name in (
        ("csidriver", real_node_csi.DRIVER),
        ("storageclass", real_samples.STORAGE_CLASS),
    ):
        found = _get_json(info, kind, name)
        labels = (found.get("metadata") or {}).get("labels") or {}
        if "error" not in found and labels.get("app.kubernetes.io/managed-by") != "Helm":
            cluster.kubectl(info, "delete", kind, name, "--ignore-not-found")


def release_states(
    info: cluster.ClusterInfo, services: list[str]
) -> dict[str, releases.ReleaseState]:
    """Each release's pods and workloads as the API server has them (one kubectl call)."""
    names = ",".join(releases.release_name(svc) for svc in services)
    found = _get_json(
        info, "deployments,daemonsets,pods", "-n", releases.NAMESPACE,
        "-l", f"app.kubernetes.io/instance in ({names})",
    ).get("items", [])  # fmt: skip
    out = {}
    for svc in services:
        mine = [
            o for o in found
            if ((o.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/instance")
            == releases.release_name(svc)
        ]  # fmt: skip
        workloads = [o for o in mine if o.get("kind") in ("Deployment", "DaemonSet")]
        pods = [o for o in mine if o.get("kind") == "Pod"]
        out[svc] = releases.release_state(svc, workloads, pods, pod_problems(pods, node.NODE_NAME))
    return out


CUSTOM_SCHEDULED = "web-custom-scheduled"


def custom_scheduled_pod(image: str) -> dict[str, object]:
    """The WebApp sample's web server in a pod for ``custom-scheduler`` that tolerates and
    selects the real node: our scheduler binds it there and it runs for real (the seed's
    custom-scheduler samples land on kwok nodes)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": CUSTOM_SCHEDULED,
            "namespace": "default",
            "labels": {"app": CUSTOM_SCHEDULED, "version": "sample", "environment": "sample"},
        },
        "spec": {
            "schedulerName": SCHEDULER_NAME,
            **node.placement(),
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "200m", "memory": "128Mi"},
                    },
                }
            ],
        },
    }


def custom_scheduled_row(info: cluster.ClusterInfo) -> Row:
    """The pod bound by our scheduler (its Scheduled Event's source) and Ready on the real node."""
    label = f"pod default/{CUSTOM_SCHEDULED}"
    pod = _get_json(info, "pod", CUSTOM_SCHEDULED, "-n", "default")
    if "error" in pod:
        return Row(label, False, pod["error"])
    problems = pod_problems([pod], node.NODE_NAME)
    if problems:
        return Row(label, False, "; ".join(problems))
    events = _get_json(
        info,
        "events",
        "-n",
        "default",
        "--field-selector",
        f"involvedObject.name={CUSTOM_SCHEDULED},reason=Scheduled",
    ).get("items", [])
    by = sorted(
        {
            (e.get("reportingComponent") or (e.get("source") or {}).get("component") or "?")
            for e in events
        }
    )
    ip = (pod.get("status") or {}).get("podIP")
    return Row(
        label,
        by == [SCHEDULER_NAME],
        f"Ready on {node.NODE_NAME} ({ip}, kubext-bridge), bound by {', '.join(by) or 'nobody'}",
    )


def run_gpu_sample_row(info: cluster.ClusterInfo) -> Row:
    name = f"pod {NAMESPACE}/{GPU_SAMPLE}"
    try:
        ids = run_gpu_sample(info)
    except cluster.RigError as exc:
        return Row(name, False, str(exc))
    return Row(name, True, f"Running on {node.NODE_NAME} with {GPU_RESOURCE} {','.join(ids)}")


def pod_problems(pods: list[dict[str, Any]], node_name: str) -> list[str]:
    """Why the pods are not all Ready on ``node_name``, in a few words each (none: they are)."""
    problems = []
    for pod in pods:
        meta, st = pod["metadata"], pod.get("status") or {}
        where = (pod.get("spec") or {}).get("nodeName")
        name = meta["name"]
        if where != node_name:
            unscheduled = [
                c.get("message", "")
                for c in st.get("conditions") or []
                if c.get("type") == "PodScheduled" and c.get("status") != "True"
            ]
            problems.append(
                f"{name} on {where or 'no node'}{': ' if unscheduled else ''}"
                f"{(unscheduled or [''])[0][:160]}"
            )
            continue
        for c in st.get("containerStatuses") or []:
            waiting = (c.get("state") or {}).get("waiting")
            if waiting:
                problems.append(
                    f"{name}/{c['name']}: {waiting.get('reason')} "
                    f"{(waiting.get('message') or '')[:160]}".rstrip()
                )
            elif not c.get("ready"):
                problems.append(f"{name}/{c['name']}: not ready")
        if not st.get("containerStatuses"):
            problems.append(f"{name}: {st.get('phase', 'Pending')}")
    return problems


def _get_json(info: cluster.ClusterInfo, *args: str) -> dict[str, Any]:
    try:
        return dict(json.loads(cluster.kubectl(info, "get", *args, "-o", "json")))
    except cluster.RigError as exc:
        return {"error": str(exc)}


def _sample_state(
    info: cluster.ClusterInfo, kind: str, namespace: str, name: str
) -> tuple[dict[str, Any], Any, list[dict[str, Any]], list[str]]:
    """A WebApp's or Database's status, wanted replicas, its pods (the operator's name and
    instance labels) and why they are not all Ready on the real node."""
    obj = _get_json(info, kind, name, "-n", namespace)
    selector = f"app.kubernetes.io/name={kind},app.kubernetes.io/instance={name}"
    pods = _get_json(info, "pods", "-n", namespace, "-l", selector).get("items", [])
    want = (obj.get("spec") or {}).get("replicas")
    return obj.get("status") or {}, want, pods, pod_problems(pods, node.NODE_NAME)


def webapp_row(info: cluster.ClusterInfo, namespace: str, name: str) -> Row:
    """The WebApp Running, its pods Ready on the real node, and its Service answering HTTP."""
    label = f"webapp {namespace}/{name}"
    st, want, pods, problems = _sample_state(info, "webapp", namespace, name)
    counts = f"{st.get('readyReplicas') or 0}/{want} ready"
    if st.get("phase") != "Running" or problems or len(pods) != want:
        return Row(
            label, False, f"{st.get('phase') or 'no status'}, {counts}; {'; '.join(problems)}"
        )
    svc = _get_json(info, "service", name, "-n", namespace)
    ip = (svc.get("spec") or {}).get("clusterIP")
    try:
        with urllib.request.urlopen(f"http://{ip}/", timeout=5) as resp:
            code, body = resp.status, resp.read(4096).decode(errors="replace")
    except OSError as exc:
        return Row(label, False, f"{counts}; its Service http://{ip}/ does not answer: {exc}")
    title = re.search(r"<title>(.*?)</title>", body)
    return Row(
        label,
        code == 200,
        f"{counts} on {node.NODE_NAME}; http://{ip}/ (Service {name}): {code} "
        f"{title.group(1) if title else body[:60]!r}",
    )


def database_row(info: cluster.ClusterInfo, namespace: str, name: str) -> Row:
    """The Database Running, its PostgreSQL pods Ready on the real node, on our driver's PVs."""
    label = f"database {namespace}/{name}"
    st, want, pods, problems = _sample_state(info, "database", namespace, name)
    claims = _get_json(info, "pvc", "-n", namespace).get("items", [])
    # The data claims (the backup claim binds when a backup Job's pod first uses it).
    ours = [c for c in claims if c["metadata"]["name"].startswith(f"data-{name}-")]
    unbound = [
        c["metadata"]["name"] for c in ours if (c.get("status") or {}).get("phase") != "Bound"
    ]
    if unbound:
        problems.append(f"claims not Bound: {', '.join(unbound)}")
    if st.get("phase") != "Running" or problems or len(pods) != want:
        return Row(label, False, f"{st.get('phase') or 'no status'}; {'; '.join(problems)}")
    classes = sorted({(c.get("spec") or {}).get("storageClassName") or "" for c in ours})
    return Row(
        label,
        True,
        f"{len(pods)}/{want} PostgreSQL pods Ready on {node.NODE_NAME}; "
        f"{len(ours)} claims Bound (class {', '.join(classes)}); Service {name}-rw",
    )


SAMPLE_TIMEOUT_S = 300.0
SAMPLE_ROWS = (("webapp", "default", "hello"), ("database", "default", "orders"))


def wait_for_samples(info: cluster.ClusterInfo, timeout: float = SAMPLE_TIMEOUT_S) -> list[Row]:
    """The examples' WebApp and Database on the real node, once each is Ready or at the
    deadline (then each says why not)."""
    t = time.monotonic()
    probes = {"webapp": webapp_row, "database": database_row}
    while True:
        rows = [probes[kind](info, ns, name) for kind, ns, name in SAMPLE_ROWS]
        rows.append(custom_scheduled_row(info))
        if all(r.ready for r in rows) or time.monotonic() - t > timeout:
            break
        time.sleep(2)
    for r in rows:
        if r.ready:
            cluster.say(f"{r.name} Ready ({time.monotonic() - t:.0f} s): {r.detail}")
    return rows


# The operator's on-demand backup: the annotation and the condition it reports on
# (kubext_operator.planning.database.BACKUP_NOW, Request.condition).
BACKUP_NOW = "db.example.com/backup-now"
BACKUP_CONDITION = "OnDemandBackupSucceeded"
BACKUP_TIMEOUT_S = 180.0


def backup_row(
    info: cluster.ClusterInfo, namespace: str, name: str, timeout: float = BACKUP_TIMEOUT_S
) -> Row:
    """A backup now, by the operator's annotation: its Job runs the backup CronJob's script
    (pg_dumpall into the backup volume, provisioned by our driver on first use)."""
    label = f"backup {namespace}/{name}"
    t = time.monotonic()
    cluster.kubectl(
        info, "annotate", "--overwrite", "database", name, "-n", namespace,
        f"{BACKUP_NOW}=kubext-up-{int(time.time())}",
    )  # fmt: skip
    condition: dict[str, Any] = {}
    while time.monotonic() - t < timeout:
        obj = _get_json(info, "database", name, "-n", namespace)
        conditions = (obj.get("status") or {}).get("conditions") or []
        condition = next((c for c in conditions if c.get("type") == BACKUP_CONDITION), {})
        if condition.get("status") in ("True", "False"):
            break
        time.sleep(2)
    if condition.get("status") != "True":
        return Row(label, False, condition.get("message") or f"no result in {timeout:.0f} s")
    job = re.search(r"Job (\S+)", condition.get("message", ""))
    wrote = ""
    if job:
        try:
            log = cluster.kubectl(info, "logs", f"job/{job.group(1)}", "-n", namespace)
            wrote = next((line for line in log.splitlines() if "backup: wrote" in line), "")
        except cluster.RigError:
            pass
    detail = f"Job {job.group(1) if job else '?'} completed in {time.monotonic() - t:.0f} s"
    cluster.say(f"{label}: {detail}: {wrote}")
    return Row(label, True, f"{detail}; {wrote}" if wrote else detail)


def print_table(rows: list[Row]) -> None:
    print(table(rows), file=sys.stderr, flush=True)


def webapp_sample_image(repo: Path) -> str:
    """The WebApp sample's image as `./pants package images/webapp-sample:image` tags it."""
    version = (repo / WEBAPP_SAMPLE_DIR / "VERSION").read_text().strip()
    return f"localhost/{images.REPOSITORY_PREFIX}/webapp-sample:{version}"


def sample_manifests(repo: Path, pushed: dict[str, str]) -> dict[str, object]:
    """examples/*.yaml as one List, each WebApp's image replaced by where ``pushed`` (local ref
    -> the registry's ref) put it: the examples name images as they are built here."""
    items = []
    for path in sorted((repo / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc.get("kind") == "WebApp":
                image = doc["spec"]["image"]
                doc["spec"]["image"] = pushed.get(image, image)
            items.append(doc)
    return {"apiVersion": "v1", "kind": "List", "items": items}


def start(info: cluster.ClusterInfo, comp: cluster.Component) -> None:
    """Start a service unless it runs already, and wait until it is healthy."""
    if cluster.running_pid(info.root, comp.name) is not None:
        cluster.say(f"{comp.name} already running")
        return
    t = time.monotonic()
    pid = cluster.start_process(info.root, comp)
    cluster.wait_healthy(info.root, comp, timeout=120)
    cluster.say(f"{comp.name} ready (pid {pid}, {time.monotonic() - t:.1f} s)")


def run_gpu_sample(
    info: cluster.ClusterInfo, namespace: str = NAMESPACE, timeout: float = 90
) -> list[str]:
    """Apply the gpu sample and wait until it runs on the real node; say and return the device
    IDs its container got."""
    t = time.monotonic()
    earlier = _get_json(info, "pod", GPU_SAMPLE, "-n", namespace)
    if (earlier.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
        # A bare pod stays Failed for good: after a restart of the node the kubelet re-admits
        # its pods before the device plugin has registered again ("UnexpectedAdmissionError",
        # as upstream's kubelet does), so it is made anew.
        cluster.kubectl(info, "delete", "pod", GPU_SAMPLE, "-n", namespace, "--wait=true")
    cluster.kubectl(info, "apply", "-f", "-", stdin=json.dumps(gpu_sample_pod(namespace)))
    deadline = time.monotonic() + timeout
    while True:
        pod = json.loads(
            cluster.kubectl(info, "get", "pod", GPU_SAMPLE, "-n", namespace, "-o", "json")
        )
        st = pod.get("status") or {}
        statuses = st.get("containerStatuses") or []
        if st.get("phase") == "Running" and statuses and statuses[0].get("containerID"):
            break
        if time.monotonic() > deadline:
            raise cluster.RigError(
                f"the gpu sample ({namespace}/{GPU_SAMPLE}) not Running after {timeout:.0f} s: "
                f"{st.get('phase')} {json.dumps(st.get('conditions') or [])[:500]}"
            )
        time.sleep(0.5)
    container = statuses[0]["containerID"].removeprefix("containerd://")
    info_json = node._ctr(info.root, "-n", "k8s.io", "containers", "info", container).stdout
    ids = device_ids(json.loads(info_json).get("Spec") or {})
    cluster.say(
        f"gpu sample Running on {node.NODE_NAME} in {time.monotonic() - t:.1f} s with "
        f"KUBEXT_DEVICES={','.join(ids)} (kubectl -n {namespace} get pod {GPU_SAMPLE})"
    )
    return ids


def _ensure_volumes(info: cluster.ClusterInfo, count: int = 12) -> None:
    """Class-less PersistentVolumes for the samples' claims: kwok nodes have no provisioner."""
    pvs = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"kubext-local-{i}", "labels": {"kubext.io/local": "true"}},
            "spec": {
                "capacity": {"storage": "100Gi"},
                "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "",
                "hostPath": {"path": f"/tmp/kubext-local-pv/{i}"},
            },
        }
        for i in range(count)
    ]
    cluster.kubectl(
        info,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": pvs}),
    )


def _register_webhooks(info: cluster.ClusterInfo, dist: Path | None, url: str) -> None:
    # The service's own generator (PEX_MODULE runs another module of the same pex).
    argv = _command(dist, "kubext-webhooks.manifests" if dist is None else "kubext-webhooks")
    docs = subprocess.run(
        [*argv, "--namespace", NAMESPACE, "--url", url],
        env={**os.environ, "PEX_MODULE": "kubext_webhooks.manifests"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    cluster.kubectl(info, "apply", "-f", "-", stdin=docs)
    _wait_ca_bundles(info)


def _wait_ca_bundles(info: cluster.ClusterInfo, timeout: float = 60) -> None:
    """Until the service has injected its CA into every webhook and the CRD conversion: before
    that the API server cannot call it, and fail-closed webhooks refuse everything."""
    queries = [
        (
            "validatingwebhookconfiguration",
            "kubext-webhooks",
            "{.webhooks[*].clientConfig.caBundle}",
        ),
        ("mutatingwebhookconfiguration", "kubext-webhooks", "{.webhooks[*].clientConfig.caBundle}"),
        ("crd", "databases.db.example.com", "{.spec.conversion.webhook.clientConfig.caBundle}"),
    ]
    deadline = time.monotonic() + timeout
    for kind, name, path in queries:
        count = (
            1
            if kind == "crd"
            else len(
                cluster.kubectl(
                    info, "get", kind, name, "-o", "jsonpath={.webhooks[*].name}"
                ).split()
            )
        )
        while (
            len(cluster.kubectl(info, "get", kind, name, "-o", f"jsonpath={path}").split()) < count
        ):
            if time.monotonic() > deadline:
                raise cluster.RigError(f"no caBundle in {kind} {name} after {timeout:.0f} s")
            time.sleep(0.5)
    time.sleep(1)  # the API server's webhook informers pick the change up within a moment


def _apply_crds(info: cluster.ClusterInfo, directory: Path, url: str | None) -> None:
    """The operator's CRDs, with conversion pointed at the host's webhook server at ``url`` (None:
    at the webhooks' Service, as in the files); the service keeps the caBundle current, and
    server-side apply keeps that field of the service's."""
    crds = [yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yaml"))]
    for crd in crds:
        webhook = crd["spec"].get("conversion", {}).get("webhook")
        if webhook:
            if url is not None:
                webhook["clientConfig"] = {"url": f"{url}/convert"}
            _point_conversion_at(info, crd["metadata"]["name"], webhook["clientConfig"])
    cluster.kubectl(
        info,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=kubext-up",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": crds}),
    )


def _point_conversion_at(
    info: cluster.ClusterInfo, name: str, client_config: dict[str, Any]
) -> None:
    """An existing CRD whose conversion ``service`` (or ``url``) another manager set (the operator
    chart, ``kubectl apply`` of the CRD file, a host-process `up`) would keep it under our apply,
    beside ours: invalid ("exactly one of url or service"). A merge patch swaps them first (the
    caBundle stays)."""
    other = "service" if "url" in client_config else "url"
    wanted = {other: None, **{k: v for k, v in client_config.items() if k in ("url", "service")}}
    patch = {"spec": {"conversion": {"webhook": {"clientConfig": wanted}}}}
    try:
        cluster.kubectl(info, "patch", "crd", name, "--type=merge", "-p", json.dumps(patch))
    except cluster.RigError as exc:
        if "NotFound" not in str(exc) and "not found" not in str(exc):
            raise


def status(root: Path) -> dict[str, str]:
    """The services' states, as ``cluster.status`` gives the control plane's: for a cluster that
    ``up --services`` set up (their configs exist) or that still has a service's PID file; as
    releases, from their pods (stopped with the API server)."""
    installed = releases.installed(root)
    if installed:
        if cluster.running_pid(root, "kube-apiserver") is None:
            return {releases.status_key(svc): "stopped" for svc in installed}
        states = release_states(cluster.ClusterInfo(root), installed)
        return {releases.status_key(svc): st.state for svc, st in states.items()}
    out = {}
    for name in SERVICES:
        config = root / "services" / f"{name.removeprefix('kubext-')}.yaml"
        if not config.exists() and not (root / "pids" / f"{name}.pid").exists():
            continue
        if cluster.running_pid(root, name) is None:
            out[name] = "stopped"
        else:
            out[name] = "healthy" if cluster.healthy(root, HEALTH[name]) else "unhealthy"
    return out


def down(info: cluster.ClusterInfo) -> None:
    """Unregister the host process's admission webhooks before it stops: fail-closed
    configurations left pointing at a dead port would block every pod on a cluster that keeps
    its data. As releases they stay: their pods come back with the node (kubext-system is never
    sent to them), as on any cluster that restarts, and the release keeps its objects."""
    if cluster.running_pid(info.root, "kube-apiserver") is None or releases.installed(info.root):
        return
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        try:
            cluster.kubectl(info, "delete", kind, "kubext-webhooks", "--ignore-not-found")
        except cluster.RigError as exc:
            cluster.say(f"could not delete {kind} kubext-webhooks: {exc}")
