"""The operator as a subprocess against the rig's real control plane, one namespace per test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubext_rig import testing
from kubext_rig.testing import wait_for

pytest_plugins = ["kubext_rig.pytest_plugin"]

CRD_DIR = Path(__file__).resolve().parents[3] / "deploy" / "crds"


class Operator:
    """One operator process; its JSON logs go to a file, /metrics is read over HTTP."""

    def __init__(self, *, kubeconfig: str, namespace: str, log_dir: Path, **env: str) -> None:
        self.port = testing.free_port()
        self.log_path = log_dir / f"operator-{self.port}.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "KUBEXT_OPERATOR_KUBECONFIG": kubeconfig,
            "KUBEXT_OPERATOR_NAMESPACES": f"[{namespace}]",
            "KUBEXT_OPERATOR_LEADER_ELECTION__NAMESPACE": namespace,
            "KUBEXT_OPERATOR_HEALTH__HOST": "127.0.0.1",
            "KUBEXT_OPERATOR_HEALTH__PORT": str(self.port),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        code = "import sys; from kubext_operator.__main__ import main; sys.exit(main())"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], env=self.env, stdout=log, stderr=log
        )
        wait_for("operator /healthz", lambda: self.healthy(), timeout=30)
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited {self.proc.returncode}: {self.logs()[-3000:]}")
        url = f"http://127.0.0.1:{self.port}/healthz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
        return False

    def metrics(self) -> dict[str, float]:
        """Samples by their full name with labels, e.g. ``rest_client_requests_total{...}``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def writes(self, *, leases: bool = False) -> float:
        """API writes this process made, by kubext_operator_api_writes_total (without the Lease
        renewals unless ``leases``)."""
        return sum(
            v
            for k, v in self.metrics().items()
            if k.startswith("kubext_operator_api_writes_total{")
            and (leases or 'resource="leases"' not in k)
        )

    def reconciles(self, controller: str) -> float:
        """Reconciles ``controller`` (webapp, database) has finished, whatever their result."""
        prefix = f'controller_runtime_reconcile_total{{controller="{controller}",'
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def idle(self) -> bool:
        """Nothing in the work queue and no reconcile running."""
        samples = self.metrics()
        return samples.get('workqueue_depth{name="kubext-operator"}', 0.0) == 0 and not any(
            v for k, v in samples.items() if k.startswith("controller_runtime_active_workers{")
        )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def crds(kube_cluster: Any) -> None:
    """The generated CRDs. The cluster is shared: where a CRD exists already, only its versions
    and names are brought up to date, so the conversion webhook that the webhooks tests point
    it at (clientConfig url, caBundle) is left alone."""
    kubectl = [kube_cluster.bin("kubectl"), f"--kubeconfig={kube_cluster.kubeconfig}"]
    for path in sorted(CRD_DIR.glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        name = manifest["metadata"]["name"]
        exists = subprocess.run([*kubectl, "get", "crd", name], capture_output=True).returncode == 0
        if exists:
            patch = {
                "spec": {
                    "versions": manifest["spec"]["versions"],
                    "names": manifest["spec"]["names"],
                }
            }
            argv = [*kubectl, "patch", "crd", name, "--type=merge", "-p", json.dumps(patch)]
        else:
            argv = [*kubectl, "create", "-f", str(path)]
        done = subprocess.run(argv, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        subprocess.run(
            [*kubectl, "wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s"],
            check=True,
            capture_output=True,
        )


@pytest.fixture
def kubectl(kube_cluster: Any, namespace: str) -> Callable[..., str]:
    def run(*args: str) -> str:
        argv = [
            kube_cluster.bin("kubectl"),
            f"--kubeconfig={kube_cluster.kubeconfig}",
            "-n",
            namespace,
        ]
        done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


@pytest.fixture
def custom(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


def delete_all_custom(custom: client.CustomObjectsApi, namespace: str) -> None:
    """Delete every WebApp and Database and wait until they are gone (their finalizers ran)."""
    kinds = [("example.com", "webapps"), ("db.example.com", "databases")]
    for group, plural in kinds:
        for item in custom.list_namespaced_custom_object(group, "v1", namespace, plural)["items"]:
            with contextlib.suppress(client.ApiException):
                custom.delete_namespaced_custom_object(
                    group, "v1", namespace, plural, item["metadata"]["name"]
                )

    def gone() -> bool:
        return all(
            not custom.list_namespaced_custom_object(g, "v1", namespace, p)["items"]
            for g, p in kinds
        )

    wait_for("custom resources to be finalized", gone, timeout=60)


@pytest.fixture
def operator_factory(
    kube_cluster: Any, crds: None, namespace: str, custom: client.CustomObjectsApi, tmp_path: Path
) -> Iterator[Callable[..., Operator]]:
    """Start operators scoped to the test namespace; on teardown the custom resources are
    deleted while an operator still runs (so finalizers never strand the namespace)."""
    started: list[Operator] = []

    def make(**env: str) -> Operator:
        op = Operator(
            kubeconfig=kube_cluster.kubeconfig, namespace=namespace, log_dir=tmp_path, **env
        )
        started.append(op)
        return op

    yield make
    live = [op for op in started if op.proc is not None and op.proc.poll() is None]
    if not live:
        live = [make().start()]
    try:
        delete_all_custom(custom, namespace)
    finally:
        for op in started:
            op.stop()


@pytest.fixture
def operator(operator_factory: Callable[..., Operator]) -> Operator:
    return operator_factory().start()
