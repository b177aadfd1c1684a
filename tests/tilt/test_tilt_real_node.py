"""The Tilt dev loop with the real tilt (v0.33.21, rig/build.sh tilt) against a rig cluster whose
real node runs the pods.

What runs for real: tilt evaluating the project's Tiltfile; for each of the webhooks, operator and
scheduler, `./pants package services/<svc>:image` (podman) in a scratch copy of the checkout,
tools/tilt/image.sh tagging and pushing it to the real node's registry (distribution), the pinned
helm rendering each chart, tilt applying them to the real API server; the node's containerd
pulling the images, the kubelet running the containers (runc, uid 65532, read-only root) with
tools/tilt/dev_loop.py in front of each pex; tilt's port-forward to a pod's health port; the live
update (tilt's sync through the API server's exec into the container, then the process restart
inside it). Nothing is faked in the Tilt path; the cluster's other nodes are kwok's (no pod of the
dev loop lands there: each is pinned to the real node).

- ``tilt ci`` reaches "SUCCESS. All workloads are healthy"; every pod is Running and Ready on
  kubext-node-0 from an image in the node's registry.
- ``tilt up``, then an edit of a scheduler source in the scratch copy (a metric added): /metrics
  through tilt's port-forward serves it within 30 s, from the same pod and container (same UID,
  container ID and image, no container restart) and with no image built since.

Runs on the real node of the cluster the environment names when it holds the machine's one, else
on a cluster of this file's own (offset 3000), under the real-node machine lock. The checkout is
copied from ``KUBEXT_CHECKOUT`` (``./kubext test`` sets it): the edit never touches it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from kubext_rig import node, real_node_testing, tools
from kubext_rig.testing import free_port, wait_for

CHECKOUT = os.environ.get("KUBEXT_CHECKOUT")
STATE = real_node_testing.state_for(tools.cache_dir() / "rn-tilt")
SERVICES = ["webhooks", "operator", "scheduler"]
NAMESPACE = "kubext-system"  # the Tiltfile's default: the CRD's conversion webhook points there
FORWARD_BASE = 38080  # the scheduler's health: FORWARD_BASE + 20 (its slot in the Tiltfile)
CI_TIMEOUT = "12m"
LIVE_UPDATE_LIMIT_S = 30.0
TIMINGS: dict[str, float] = {}

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="a real kubelet needs root"),
    pytest.mark.skipif(
        not CHECKOUT, reason="run by ./kubext test, which names the checkout in KUBEXT_CHECKOUT"
    ),
]


def _copy_checkout(source: Path, into: Path) -> Path:
    """The files git sees (tracked, and new ones not ignored), as they are in the checkout."""
    listed = subprocess.run(
        ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (p.decode() for p in listed)):
        src = source / rel
        if src.is_file():
            (into / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, into / rel)
    return into


def _tilt_env(work: Path, kubeconfig: Path) -> dict[str, str]:
    helm_dir = tools.binary("helm").parent
    state = {k: str(work / "tilt-state" / k.lower()) for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    return {
        **os.environ,
        **state,
        "TILT_DEV_DIR": str(work / "tilt-state" / "tilt-dev"),
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{helm_dir}{os.pathsep}{os.environ['PATH']}",
        "KUBEXT_REPO": str(work / "repo"),
    }


def _tiltfile_args(registry: str) -> list[str]:
    return [
        *SERVICES,
        "--allow-context=kubext",
        f"--registry={registry}",
        f"--node={node.NODE_NAME}",
        f"--forward-base={FORWARD_BASE}",
    ]


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[real_node_testing.RealNode, Path]]:
    work = tmp_path_factory.mktemp("tilt")
    t0 = time.monotonic()
    _copy_checkout(Path(CHECKOUT or "."), work / "repo")
    TIMINGS["copy"] = time.monotonic() - t0
    with real_node_testing.machine_lock(), real_node_testing.up(STATE) as real_node:
        TIMINGS["rig_up"] = real_node.up_seconds
        try:
            yield real_node, work
        finally:
            tilt = str(tools.binary("tilt", build=False))
            env = _tilt_env(work, real_node.info.kubeconfig)
            subprocess.run(
                [tilt, "down", "--file", "Tiltfile", "--", *_tiltfile_args(real_node.registry)],
                cwd=work / "repo",
                env=env,
                capture_output=True,
                timeout=300,
            )
            _stop_pantsd(work / "repo")
            print("timings (s):", {k: round(v, 1) for k, v in TIMINGS.items()})


def _stop_pantsd(repo: Path) -> None:
    """The scratch copy's Pants daemon (image.sh's `./pants` started one there)."""
    for pidfile in repo.glob(".pids/**/pantsd/pid"):
        with contextlib.suppress(ValueError, ProcessLookupError, FileNotFoundError):
            pid = int(pidfile.read_text().strip())
            if b"pantsd" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)


def _pods(api: client.ApiClient) -> list[client.V1Pod]:
    pods = client.CoreV1Api(api).list_namespaced_pod(NAMESPACE).items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def _all_running_on_the_real_node(api: client.ApiClient, registry: str) -> dict[str, client.V1Pod]:
    """One pod per service, each Running and Ready on the real node from the registry's image."""
    by_service: dict[str, client.V1Pod] = {}
    for p in _pods(api):
        svc = p.metadata.labels.get("app.kubernetes.io/name")
        assert svc not in by_service, f"two pods of {svc}"
        by_service[svc] = p
    assert set(by_service) == set(SERVICES), sorted(by_service)
    for svc, p in by_service.items():
        assert p.spec.node_name == node.NODE_NAME, (svc, p.spec.node_name)
        assert p.status.phase == "Running", (svc, p.status.phase)
        (ours,) = (c for c in p.status.container_statuses if c.name == svc)
        assert ours.ready and ours.container_id.startswith("containerd://"), ours
        assert ours.image.startswith(f"{registry}/kubext_{svc}:tilt-build-"), ours.image
    return by_service


def _container(pod: client.V1Pod, svc: str) -> client.V1ContainerStatus:
    (ours,) = (c for c in pod.status.container_statuses if c.name == svc)
    return ours


def _built_images(svc: str) -> set[str]:
    """The tilt builds of ``svc`` in podman's store (image.sh tags each one)."""
    out = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {ref for ref in out if f"/kubext_{svc}:tilt-build-" in ref}


def test_tilt_ci_brings_every_service_up_healthy_on_the_real_node(
    rig: tuple[real_node_testing.RealNode, Path],
) -> None:
    real_node, work = rig
    tilt = str(tools.binary("tilt"))
    t0 = time.monotonic()
    res = subprocess.run(
        [
            tilt,
            "ci",
            "--port",
            "0",
            "--timeout",
            CI_TIMEOUT,
            "--file",
            "Tiltfile",
            "--",
            *_tiltfile_args(real_node.registry),
        ],
        cwd=work / "repo",
        env=_tilt_env(work, real_node.info.kubeconfig),
        capture_output=True,
        text=True,
        timeout=900,
    )
    TIMINGS["tilt_ci"] = time.monotonic() - t0
    output = res.stdout + res.stderr
    assert res.returncode == 0, output[-6000:]
    assert "SUCCESS. All workloads are healthy" in output, output[-3000:]
    with real_node.api_client() as api:
        _all_running_on_the_real_node(api, real_node.registry)


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def test_a_saved_source_reaches_the_running_pod_without_an_image_build(
    rig: tuple[real_node_testing.RealNode, Path],
) -> None:
    real_node, work = rig
    repo = work / "repo"
    tilt, port = str(tools.binary("tilt")), free_port()
    env = _tilt_env(work, real_node.info.kubeconfig)
    log = (work / "tilt-up.log").open("w")
    t0 = time.monotonic()
    up = subprocess.Popen(
        [
            tilt,
            "up",
            "--stream",
            "--port",
            str(port),
            "--file",
            "Tiltfile",
            "--",
            *_tiltfile_args(real_node.registry),
        ],
        cwd=repo,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_tilt_resources(tilt, port, env, up, work / "tilt-up.log")
        waited = subprocess.run(
            [
                tilt,
                "wait",
                "--port",
                str(port),
                "--for=condition=Ready",
                "uiresource",
                "--all",
                "--timeout=600s",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=660,
        )
        assert waited.returncode == 0, waited.stderr + (work / "tilt-up.log").read_text()[-4000:]
        TIMINGS["tilt_up"] = time.monotonic() - t0
        with real_node.api_client() as api:
            before = wait_for(
                "the pods of this tilt up",
                lambda: _settled(api, real_node.registry),
                timeout=120,
            )
            scheduler = before["scheduler"]
            health = FORWARD_BASE + 20
            wait_for("the scheduler's /metrics through tilt", lambda: _metrics(health), timeout=60)
            built = _built_images("scheduler")
            assert built, "no tilt build of the scheduler in podman's store"

            marker = os.urandom(4).hex()
            main = repo / "services/scheduler/kubext_scheduler/__main__.py"
            source = main.read_text()
            assert "from __future__ import annotations\n" in source
            edit = (
                "from __future__ import annotations\n\n"
                "import prometheus_client as _live_update_check\n\n"
                f'_live_update_check.Info("kubext_live_update", "tilt e2e").info({{"m": "{marker}"}})\n'
            )
            t_edit = time.monotonic()
            main.write_text(source.replace("from __future__ import annotations\n", edit, 1))
            wait_for(
                "the edited scheduler serving its new metric",
                lambda: f'kubext_live_update_info{{m="{marker}"}}' in _metrics(health),
                timeout=LIVE_UPDATE_LIMIT_S,
            )
            TIMINGS["live_update"] = time.monotonic() - t_edit

            after = {p.metadata.labels["app.kubernetes.io/name"]: p for p in _pods(api)}
            same = after["scheduler"]
            assert same.metadata.uid == scheduler.metadata.uid  # the same pod
            old, new = _container(scheduler, "scheduler"), _container(same, "scheduler")
            assert (new.container_id, new.image_id) == (old.container_id, old.image_id)
            assert new.restart_count == old.restart_count
            assert _built_images("scheduler") == built  # no image built for the change
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
        log.close()


def _wait_for_tilt_resources(
    tilt: str, port: int, env: dict[str, str], up: subprocess.Popen[bytes], log: Path
) -> None:
    """Until `tilt up`'s API server lists every workload's resource (the Tiltfile loaded): `tilt
    wait` fails at once while there is no server, and `--all` covers only what exists then (the
    "(Tiltfile)" resource alone, Ready, in the first seconds)."""
    wanted = {f"kubext-{svc}" for svc in SERVICES} | {"kubext-dev-loop"}

    def listed() -> bool:
        assert up.poll() is None, f"tilt up exited with {up.returncode}: {log.read_text()[-4000:]}"
        probe = [tilt, "get", "uiresource", "--port", str(port), "-o", "name"]
        res = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
        return res.returncode == 0 and wanted <= {n.rsplit("/", 1)[-1] for n in res.stdout.split()}

    wait_for("tilt up's resources", listed, timeout=180)


def _settled(api: client.ApiClient, registry: str) -> dict[str, client.V1Pod] | None:
    try:
        return _all_running_on_the_real_node(api, registry)
    except AssertionError:
        return None
