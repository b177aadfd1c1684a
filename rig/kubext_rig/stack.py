"""The services on the local control plane, for the main command (`./kubext up`).

The operator, the webhooks and the scheduler run as host processes against the rig's API server:
the webhooks on https://127.0.0.1:<port> with their self-managed TLS, registered with url
clientConfigs; the operator and the scheduler (standalone, the seed's `custom-scheduler` profile,
Lease leader election) with the admin kubeconfig. With the real node, the device plugin too
(simulated `example.com/gpu` devices, registered with that node's kubelet), and a pod requesting
one runs there. All are stopped by `down`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from kubext_rig import cluster, node, tools

WEBHOOKS_PORT = 18443 + cluster.PORT_OFFSET
WEBHOOKS_HEALTH_PORT = 18080 + cluster.PORT_OFFSET
OPERATOR_HEALTH_PORT = 18081 + cluster.PORT_OFFSET
SCHEDULER_HEALTH_PORT = 18082 + cluster.PORT_OFFSET
DEVICEPLUGIN_HEALTH_PORT = 18083 + cluster.PORT_OFFSET
NAMESPACE = "kubext-system"
SERVICES = ("kubext-webhooks", "kubext-operator", "kubext-scheduler", "kubext-deviceplugin")
HEALTH = {
    "kubext-webhooks": f"http://127.0.0.1:{WEBHOOKS_HEALTH_PORT}/readyz",
    "kubext-operator": f"http://127.0.0.1:{OPERATOR_HEALTH_PORT}/healthz",
    # Ready once the informers listed / once every resource is registered with the kubelet.
    "kubext-scheduler": f"http://127.0.0.1:{SCHEDULER_HEALTH_PORT}/readyz",
    "kubext-deviceplugin": f"http://127.0.0.1:{DEVICEPLUGIN_HEALTH_PORT}/readyz",
}
# The seed's profile name (12.5.2): its sample pod and Deployment (examples/) ask for it.
SCHEDULER_NAME = "custom-scheduler"
GPU_RESOURCE = "example.com/gpu"
GPU_DEVICES = 4  # simulated: gpu-0 .. gpu-3, each a container's KUBEXT_DEVICES, no device node
GPU_SAMPLE = "gpu-sample"
# Without the real node there is no kubelet for the device plugin: one line says so.
NO_GPU_SAMPLE = (
    "no real node on this cluster: kubext-deviceplugin not started, the gpu sample skipped"
)


def _repo() -> Path:
    return tools.repo_root()


def _command(dist: Path | None, service: str) -> list[str]:
    """The service's pex in ``dist``, or (``dist`` None) its package run by this interpreter."""
    if dist is None:
        return [sys.executable, "-m", service.replace("-", "_")]
    return [str(dist / f"{service}.pex")]


def _components(info: cluster.ClusterInfo, dist: Path | None) -> list[cluster.Component]:
    configs = info.root / "services"
    configs.mkdir(exist_ok=True)
    webhooks = {
        "host": "127.0.0.1",
        "port": WEBHOOKS_PORT,
        "namespace": NAMESPACE,
        "kubeconfig": info.kubeconfig,
        "health": {"host": "127.0.0.1", "port": WEBHOOKS_HEALTH_PORT},
        "policy": {"path": str(_repo() / "services/webhooks/deploy/policy.yaml")},
        # Checked every few seconds so the caBundle lands right after the configurations do.
        "tls": {
            "dns_names": ["localhost"],
            "ip_addresses": ["127.0.0.1"],
            "check_interval_seconds": 3,
        },
    }
    operator = {
        "kubeconfig": info.kubeconfig,
        "health": {"host": "127.0.0.1", "port": OPERATOR_HEALTH_PORT},
        "leader_election": {"namespace": NAMESPACE},
    }
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
    extra = []
    if node.enabled(info.root):
        extra.append(deviceplugin_component(info, dist))
    else:  # a config left by an earlier up with the real node would show it as stopped
        (configs / "deviceplugin.yaml").unlink(missing_ok=True)
    return [
        cluster.Component(
            "kubext-webhooks",
            [*_command(dist, "kubext-webhooks"), "--config", str(configs / "webhooks.yaml")],
            HEALTH["kubext-webhooks"],
        ),
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
        *extra,
    ]


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
            "nodeSelector": {"kubernetes.io/hostname": node.NODE_NAME},
            "tolerations": [{"key": node.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
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


def up(info: cluster.ClusterInfo, *, dist: Path | None, samples: bool = True) -> None:
    """Install CRDs and admission configuration, start both services, apply the samples.

    ``dist`` holds the services' pexes; None runs them from source (PYTHONPATH must reach them)."""
    repo = _repo()
    url = f"https://127.0.0.1:{WEBHOOKS_PORT}"
    _apply_crds(info, repo / "services/operator/deploy/crds", url)
    cluster.kubectl(info, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    cluster.kubectl(info, "apply", "-f", "-", stdin=json.dumps(ns))
    for comp in _components(info, dist):
        start(info, comp)
        if comp.name == "kubext-webhooks":
            # Registered only once the server answers: failurePolicy Fail would block pods before.
            _register_webhooks(info, dist, url)
    if not node.enabled(info.root):
        cluster.say(NO_GPU_SAMPLE)
    if samples:
        _ensure_volumes(info)
        cluster.kubectl(info, "apply", "-f", str(repo / "examples"))
        cluster.say("samples applied: kubectl get webapps,databases,pods -A")
        if node.enabled(info.root):
            run_gpu_sample(info)


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


def _apply_crds(info: cluster.ClusterInfo, directory: Path, url: str) -> None:
    """The operator's CRDs, with conversion pointed at the host's webhook server (it keeps the
    caBundle current); server-side apply keeps the caBundle field the service owns."""
    crds = [yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yaml"))]
    for crd in crds:
        webhook = crd["spec"].get("conversion", {}).get("webhook")
        if webhook:
            webhook["clientConfig"] = {"url": f"{url}/convert"}
            _point_conversion_at(info, crd["metadata"]["name"], f"{url}/convert")
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


def _point_conversion_at(info: cluster.ClusterInfo, name: str, url: str) -> None:
    """An existing CRD whose conversion ``service`` another manager set (the operator chart,
    ``kubectl apply`` of the CRD file) would keep it under our apply, beside our ``url``: invalid
    ("exactly one of url or service"). A merge patch swaps them first (the caBundle stays)."""
    patch = {"spec": {"conversion": {"webhook": {"clientConfig": {"service": None, "url": url}}}}}
    try:
        cluster.kubectl(info, "patch", "crd", name, "--type=merge", "-p", json.dumps(patch))
    except cluster.RigError as exc:
        if "NotFound" not in str(exc) and "not found" not in str(exc):
            raise


def status(root: Path) -> dict[str, str]:
    """The services' states, as ``cluster.status`` gives the control plane's: for a cluster that
    ``up --services`` set up (their configs exist) or that still has a service's PID file."""
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
    """Unregister the admission webhooks before their server stops: fail-closed configurations
    left pointing at a dead port would block every pod on a cluster that keeps its data."""
    if cluster.running_pid(info.root, "kube-apiserver") is None:
        return
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        try:
            cluster.kubectl(info, "delete", kind, "kubext-webhooks", "--ignore-not-found")
        except cluster.RigError as exc:
            cluster.say(f"could not delete {kind} kubext-webhooks: {exc}")
