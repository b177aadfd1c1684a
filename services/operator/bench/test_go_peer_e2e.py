"""The benchmark's controller-runtime peer does the same work as ours, on a rig cluster of its own.

What runs for real: the peer (bench/go-peer, built by bench/build-go-peer.sh), etcd, the API
server, controller-manager and scheduler (a cluster of this test's own: own state dir and ports,
one kwok node). What is a kwok fake: the node and the pod, whose Ready is kwok's. Checked: one
WebApp gets the children ours makes (Deployment and Service owned by the WebApp, applied by the
field manager kubext-operator, the spec hash annotation), the same status fields and Ready
condition, the finalizer, one Event, 4 object writes (finalizer, Deployment, Service, status) as
ours makes, and no write on a restart with nothing changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CRD = REPO / "services/operator/deploy/crds/webapps.example.com.yaml"
OFFSET = "340"  # beside the operator bench's own cluster (300)


def _rig_env(state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "KUBEXT_RIG_DIR": str(state),
        "KUBEXT_RIG_PORT_OFFSET": OFFSET,
    }


def _rig(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubext_rig", *args],
        env=_rig_env(state),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def peer_binary() -> Path:
    done = subprocess.run(
        ["bash", str(HERE / "build-go-peer.sh")], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("go-peer-rig")
    started = _rig(state, "up", "--nodes", "1", "--no-real-node")
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        yield str(state / "admin.kubeconfig")
    finally:
        _rig(state, "down")


def _kubectl(kubeconfig: str, *args: str) -> str:
    from kubext_rig import tools

    argv = [str(tools.binary("kubectl")), f"--kubeconfig={kubeconfig}", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _metrics(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _object_writes(port: int) -> float:
    return sum(
        v
        for k, v in _metrics(port).items()
        if k.startswith("kubext_operator_api_writes_total{") and 'resource="events"' not in k
    )


def _start(
    binary: Path, kubeconfig: str, namespace: str, log: Path
) -> tuple[subprocess.Popen, int]:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--namespaces={namespace}",
            f"--metrics-addr=127.0.0.1:{port}",
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            pass
        assert time.monotonic() < deadline, "the go peer did not serve /healthz"
        time.sleep(0.2)


def _wait(what: str, check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_peer_reconciles_one_webapp_to_ready(
    peer_binary: Path, kubeconfig: str, tmp_path: Path
) -> None:
    namespace = "go-peer"
    _kubectl(kubeconfig, "apply", "-f", str(CRD))
    _kubectl(kubeconfig, "wait", "--for=condition=Established", "crd/webapps.example.com")
    _kubectl(kubeconfig, "create", "ns", namespace)
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    api = client.ApiClient(cfg)
    custom, apps, core = client.CustomObjectsApi(api), client.AppsV1Api(api), client.CoreV1Api(api)
    log = tmp_path / "go-peer.log"
    proc, port = _start(peer_binary, kubeconfig, namespace, log)
    try:
        body = {
            "apiVersion": "example.com/v1",
            "kind": "WebApp",
            "metadata": {"name": "shop"},
            "spec": {"replicas": 1, "image": "nginx:1.21", "port": 8080},
        }
        made = custom.create_namespaced_custom_object(
            "example.com", "v1", namespace, "webapps", body
        )
        uid = made["metadata"]["uid"]

        def ready() -> dict | None:
            wa = custom.get_namespaced_custom_object(
                "example.com", "v1", namespace, "webapps", "shop"
            )
            conds = (wa.get("status") or {}).get("conditions") or []
            return (
                wa if any(c["type"] == "Ready" and c["status"] == "True" for c in conds) else None
            )

        wa = _wait("the WebApp Ready", ready, timeout=60)
        status = wa["status"]
        assert status["phase"] == "Running"
        assert status["replicas"] == 1 and status["readyReplicas"] == 1
        assert status["selector"] == "app.kubernetes.io/instance=shop,app.kubernetes.io/name=webapp"
        assert status["observedGeneration"] == 1
        (cond,) = status["conditions"]
        assert (cond["type"], cond["reason"], cond["message"]) == (
            "Ready",
            "DeploymentReady",
            "Ready replicas: 1/1",
        )
        assert cond["observedGeneration"] == 1
        assert wa["metadata"]["finalizers"] == ["webapp.example.com/finalizer"]

        deployment = apps.read_namespaced_deployment("shop", namespace)
        service = core.read_namespaced_service("shop", namespace)
        for child in (deployment, service):
            (ref,) = child.metadata.owner_references
            assert (ref.kind, ref.name, ref.uid, ref.controller) == ("WebApp", "shop", uid, True)
            assert child.metadata.labels["app.kubernetes.io/managed-by"] == "kubext-operator"
            assert child.metadata.annotations["kubext.example.com/spec-hash"]
            managers = {(m.manager, m.operation) for m in child.metadata.managed_fields}
            assert ("kubext-operator", "Apply") in managers
        (container,) = deployment.spec.template.spec.containers
        assert (container.name, container.image, container.ports[0].container_port) == (
            "web",
            "nginx:1.21",
            8080,
        )
        assert container.resources.requests == {"cpu": "100m", "memory": "128Mi"}
        assert container.resources.limits == container.resources.requests
        labels = deployment.spec.template.metadata.labels
        assert (labels["app"], labels["version"], labels["environment"]) == (
            "shop",
            "1.21",
            "production",
        )
        assert (service.spec.ports[0].port, service.spec.ports[0].target_port) == (80, 8080)

        time.sleep(2)  # anything a second event would cause
        assert _object_writes(port) == 4, _metrics_lines(port)
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=shop")
        created = [e for e in events.items if e.reason == "Created"]
        assert len(created) == 1, [e.reason for e in events.items]
        assert "created Deployment shop" in created[0].message
    finally:
        _stop(proc)

    # Restarted with everything in place: it lists, reconciles, and writes nothing.
    proc, port = _start(peer_binary, kubeconfig, namespace, log)
    try:
        _wait(
            "a reconcile of the WebApp",
            lambda: sum(
                v
                for k, v in _metrics(port).items()
                if k.startswith('controller_runtime_reconcile_total{controller="webapp"')
            )
            >= 1,
        )
        time.sleep(2)
        assert _object_writes(port) == 0, _metrics_lines(port)
    finally:
        _stop(proc)


def _metrics_lines(port: int) -> str:
    return "\n".join(
        f"{k} {v}" for k, v in _metrics(port).items() if k.startswith("kubext_operator_api")
    )
