"""Each service's image, as `./pants package services/<svc>:image` built it, run by podman the way
the charts run it: uid 65532, read-only root filesystem (podman puts a tmpfs on /tmp, as the charts
an emptyDir), no capabilities, no privilege escalation.

What runs for real: podman with runc, the images built by Pants on the base from the Debian
mirror, and each service's process started with a config file: its health server is asked over
the host network. The operator logs in to the rig's real API server (a namespace and Lease of its
own). Nothing here is a kwok fake; nothing else talks to the services (no kubelet, no runtime),
except the cni image's daemon: its compiled launcher, installed by it, is exec'd as a runtime would
exec it, relaying VERSION/STATUS/ADD from the host, and a real ADD and DEL in a privileged
container on a network namespace of its own (the reference host-local as its IPAM).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pytest
import yaml

from kubext_rig.testing import free_port

SERVICES = ["operator", "webhooks", "scheduler", "cni", "csi", "deviceplugin"]
UID = "65532"
# A cold container unpacks its pex into /tmp first: seconds, more under a loaded test run.
START_TIMEOUT_S = 120.0


def version_of(svc: str) -> str:
    return resources.files(f"kubext_{svc}").joinpath("VERSION").read_text().strip()


def image_of(svc: str) -> str:
    return f"localhost/kubext/{svc}:{version_of(svc)}"


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


RESTRICTED = ["--user", f"{UID}:{UID}", "--read-only", "--cap-drop=all"]
RESTRICTED += ["--security-opt=no-new-privileges"]


def logs(name: str) -> str:
    out = podman("logs", name)
    return (out.stdout + out.stderr)[-3000:]


@dataclass
class Start:
    """What one service needs to start: its config, files to mount, the health check to pass."""

    config: dict[str, object]
    mounts: dict[Path, str] = field(default_factory=dict)  # host file or dir -> container path
    path: str = "/readyz"  # the health route that must answer 200


@pytest.mark.parametrize("svc", SERVICES)
def test_image_prints_its_version_as_a_restricted_user(svc: str) -> None:
    result = podman("run", "--rm", "--network=none", *RESTRICTED, image_of(svc), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"kubext-{svc} {version_of(svc)}"


@pytest.mark.parametrize("svc", SERVICES)
def test_image_runs_as_non_root_by_default(svc: str) -> None:
    inspect = podman("image", "inspect", image_of(svc))
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)[0]["Config"]["User"] == f"{UID}:{UID}"
    # And without --user, the process is that user (nothing in the image resets it).
    run = podman("run", "--rm", "--network=none", "--read-only", "--entrypoint=/usr/bin/id",
                 image_of(svc), "-u")  # fmt: skip
    assert run.stdout.strip() == UID, run.stderr


def embedded_kubeconfig(path: str) -> dict[str, object]:
    """The rig's kubeconfig with its certificate files inlined: the container user (65532) may
    not read the rig's root-only key files, and only this file is mounted."""
    kc = yaml.safe_load(Path(path).read_text())
    for section, key in (("clusters", "cluster"), ("users", "user")):
        for entry in kc[section]:
            body = entry[key]
            for name in [k for k in body if k in FILE_KEYS]:
                body[FILE_KEYS[name]] = base64.b64encode(Path(body.pop(name)).read_bytes()).decode()
    return dict(kc)


FILE_KEYS = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
}


def self_signed(directory: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=kubext-webhooks", "-addext",
         "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(directory / "tls.key"),
         "-out", str(directory / "tls.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    for f in directory.iterdir():
        f.chmod(0o644)  # readable by the container's user


def start_for(svc: str, port: int, tmp: Path, request: pytest.FixtureRequest) -> Start:
    health = {"host": "127.0.0.1", "port": port}
    if svc == "operator":
        cluster = request.getfixturevalue("kube_cluster")
        ns = request.getfixturevalue("namespace")
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(embedded_kubeconfig(cluster.kubeconfig)))
        kubeconfig.chmod(0o644)
        return Start(
            {
                "health": health,
                "kubeconfig": "/etc/kubext/kubeconfig",
                "namespaces": [ns],
                "leader_election": {"namespace": ns, "name": "images-test"},
            },
            mounts={kubeconfig: "/etc/kubext/kubeconfig"},
            # Liveness: the loop turns and the tasks live after login; readiness would also
            # need the CRDs, which this shared cluster's other tests own.
            path="/healthz",
        )
    if svc == "webhooks":
        tls = tmp / "tls"
        tls.mkdir()
        self_signed(tls)
        return Start(
            {
                "health": health,
                "host": "127.0.0.1",
                "port": free_port(),
                # Certificates from files, as cert-manager mounts them: no API server needed.
                "tls": {"mode": "cert-manager", "cert_dir": "/etc/kubext/tls"},
            },
            mounts={tls: "/etc/kubext/tls"},
        )
    if svc == "scheduler":
        # The extender without its informer cache: it filters and scores what it is sent.
        return Start(
            {
                "health": health,
                "extender": {"host": "127.0.0.1", "port": free_port(), "cache": False},
                "standalone": {"enabled": False},
            }
        )
    if svc == "cni":
        # The node daemon without installing the launcher (no CNI bin dir here).
        return Start({"health": health, "socket_path": "/tmp/plugin.sock"})
    if svc == "csi":
        return Start(
            {
                "health": health,
                "endpoint": "unix:///tmp/csi.sock",
                "state_dir": "/tmp/state",
                "node_id": "images-test",
            }
        )
    if svc == "deviceplugin":
        # No kubelet to register with: alive, and not ready for that reason (checked below).
        return Start(
            {"health": health, "device_plugin_dir": "/tmp/device-plugins"}, path="/healthz"
        )
    raise AssertionError(svc)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def container() -> Iterator[Callable[..., str]]:
    names: list[str] = []

    def run(*args: str) -> str:
        name = f"kubext-images-test-{uuid.uuid4().hex[:8]}"
        result = podman("run", "-d", "--name", name, *args)
        assert result.returncode == 0, result.stderr
        names.append(name)
        return name

    yield run
    for name in names:
        podman("rm", "--force", "--time=2", name)


@pytest.mark.parametrize("svc", SERVICES)
def test_image_starts_with_a_config_and_its_health_endpoint_answers(
    svc: str, tmp_path: Path, request: pytest.FixtureRequest, container: Callable[..., str]
) -> None:
    port = free_port()
    start = start_for(svc, port, tmp_path, request)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(start.config))
    config.chmod(0o644)
    mounts = [f"--volume={config}:/etc/kubext/config.yaml:ro"]
    mounts += [f"--volume={host}:{inside}:ro" for host, inside in start.mounts.items()]
    name = container(
        "--network=host", *RESTRICTED, *mounts, image_of(svc), "--config", "/etc/kubext/config.yaml"
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    answer: tuple[int, str] | None = None
    while time.monotonic() < deadline:
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        assert state == "running", f"{svc} stopped: {logs(name)}"
        try:
            answer = get(port, start.path)
        except OSError:  # not listening yet
            answer = None
        if answer is not None and answer[0] == 200:
            break
        time.sleep(0.5)
    assert (
        answer is not None and answer[0] == 200
    ), f"{svc} {start.path}: {answer}; logs: {logs(name)}"
    if svc == "deviceplugin":
        status, body = get(port, "/readyz")
        assert status == 503 and "not registered with the kubelet: example.com/gpu" in body


def cni_call(
    launcher: Path, command: str, conf: dict[str, object]
) -> tuple[int, dict[str, object]]:
    """The launcher run on the host as a runtime runs it (exec, CNI_* env, config on stdin)."""
    env = {"CNI_COMMAND": command, "CNI_PATH": "/nonexistent", "PATH": "/usr/bin:/bin"}
    if command == "ADD":
        env.update(CNI_CONTAINERID="images-test", CNI_NETNS="/proc/1/ns/net", CNI_IFNAME="eth0")
    done = subprocess.run(
        [str(launcher)], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=30
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}


def test_cni_image_installs_its_compiled_launcher_which_relays_to_the_daemon(
    tmp_path: Path, container: Callable[..., str]
) -> None:
    """The image's daemon installs the compiled launcher it ships (not the Python one) into a
    CNI bin dir, and that launcher, run on the host, answers VERSION itself and relays STATUS
    and ADD to the daemon in the container over the shared socket (a real ADD needs the
    DaemonSet's privileges, which this restricted container has not: ADD is answered by the
    daemon's config check); once the daemon is gone the same STATUS gets error 11."""
    from kubext_cni import golauncher

    shipped = subprocess.run(
        ["podman", "run", "--rm", "--network=none", "--entrypoint=/bin/cat",
         image_of("cni"), golauncher.SHIPPED],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert shipped.returncode == 0, shipped.stderr
    assert shipped.stdout.startswith(b"\x7fELF"), "the image's launcher is not a compiled binary"
    # The socket dir at the same path inside and out, as the chart's hostPath mount does it.
    sock_dir = Path("/run") / f"kubext-images-test-{uuid.uuid4().hex[:8]}"
    bin_dir = tmp_path / "bin"
    for d in (sock_dir, bin_dir):
        d.mkdir()
        d.chmod(0o777)  # writable by the container's user
    try:
        port = free_port()
        socket_path = f"{sock_dir}/plugin.sock"
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "health": {"host": "127.0.0.1", "port": port},
                    "socket_path": socket_path,
                    "cni_bin_dir": "/host/opt/cni/bin",
                }
            )
        )
        config.chmod(0o644)
        name = container(
            "--network=host", *RESTRICTED, f"--volume={config}:/etc/kubext/config.yaml:ro",
            f"--volume={bin_dir}:/host/opt/cni/bin", f"--volume={sock_dir}:{sock_dir}",
            image_of("cni"), "--config", "/etc/kubext/config.yaml",
        )  # fmt: skip
        launcher = bin_dir / golauncher.BINARY_NAME
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state == "running", f"cni stopped: {logs(name)}"
            with contextlib.suppress(OSError):
                if get(port, "/readyz")[0] == 200 and launcher.exists():
                    break
            time.sleep(0.5)
        assert launcher.exists(), f"no launcher installed; logs: {logs(name)}"
        assert launcher.read_bytes() == golauncher.patched(shipped.stdout, socket_path)

        code, out = cni_call(launcher, "VERSION", {"cniVersion": "1.1.0"})
        assert code == 0 and "1.1.0" in out["supportedVersions"]  # type: ignore[operator]
        conf = {"cniVersion": "1.1.0", "name": "images-test", "type": "kubext-bridge"}
        assert cni_call(launcher, "STATUS", conf) == (0, {})
        code, out = cni_call(launcher, "ADD", {"cniVersion": "1.1.0", "type": "kubext-bridge"})
        assert (code, out.get("code"), out.get("msg")) == (1, 7, "missing network name"), out

        podman("stop", "--time=10", name)
        code, out = cni_call(launcher, "STATUS", conf)
        assert (code, out.get("code")) == (1, 11), out
        assert out.get("msg") == "kubext-cni daemon not reachable"
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_cni_image_daemon_serves_a_real_add_and_del_through_its_compiled_launcher(
    tmp_path: Path, container: Callable[..., str]
) -> None:
    """As the DaemonSet runs it (root, privileged) but in a network namespace of its own (podman's
    --network=none: the host's network is not touched): the daemon installs the image's compiled
    launcher, and that launcher, exec'd in the daemon's namespace as a runtime on that node
    would, relays a real ADD (bridge, veth, eth0 in a pod namespace, host-local's store) and
    DEL to it. The IPAM plugin is the reference host-local (rig/build.sh cni-plugins)."""
    from kubext_rig import tools

    reference = tools.binary("host-local").parent
    config = {
        "health": {"host": "127.0.0.1", "port": 18090},
        "socket_path": "/run/kubext-cni/plugin.sock",
        "cni_bin_dir": "/opt/cni/bin",
    }
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    name = container(
        "--network=none", "--privileged", "--user=0", "--read-only",
        f"--volume={config_file}:/etc/kubext/config.yaml:ro",
        f"--volume={reference}:/opt/reference:ro", "--tmpfs=/opt/cni/bin:exec",
        image_of("cni"), "--config", "/etc/kubext/config.yaml",
    )  # fmt: skip

    def sh(script: str, stdin: bytes = b"", *env: str) -> subprocess.CompletedProcess[bytes]:
        argv = ["podman", "exec", "-i", *(f"--env={e}" for e in env), name, "sh", "-c", script]
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=60)

    deadline = time.monotonic() + START_TIMEOUT_S
    while sh("test -x /opt/cni/bin/kubext-bridge").returncode != 0:
        assert time.monotonic() < deadline, f"no launcher installed; logs: {logs(name)}"
        time.sleep(0.5)
    installed = sh("cat /opt/cni/bin/kubext-bridge").stdout
    assert installed[:4] == b"\x7fELF", "the daemon installed the Python launcher"
    # The pod: a process in a network namespace of its own (unshare execs sleep in it).
    started = subprocess.run(
        ["podman", "exec", "-d", name, "sh", "-c", "echo $$ > /tmp/pod.pid; exec unshare --net sleep 600"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    pid = ""
    while not pid.isdigit():
        assert time.monotonic() < deadline, "the pod process did not start"
        pid = sh("cat /tmp/pod.pid 2>/dev/null").stdout.decode().strip()
    conf = {
        "cniVersion": "1.1.0",
        "name": "images-test",
        "type": "kubext-bridge",
        "bridge": "kxi0",
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.199.0.0/24", "dataDir": "/tmp/ipam"},
    }
    env = [f"CNI_NETNS=/proc/{pid}/ns/net", "CNI_CONTAINERID=images-test", "CNI_IFNAME=eth0"]
    env += ["CNI_PATH=/opt/reference"]

    def cni(command: str) -> subprocess.CompletedProcess[bytes]:
        stdin = json.dumps(conf).encode()
        return sh("/opt/cni/bin/kubext-bridge", stdin, f"CNI_COMMAND={command}", *env)

    added = cni("ADD")
    assert added.returncode == 0, (added.stdout, added.stderr, logs(name))
    result = json.loads(added.stdout)
    assert [ip["address"] for ip in result["ips"]] == ["10.199.0.2/24"], result
    assert result["interfaces"][0]["name"] == "kxi0"  # the bridge, in the daemon's namespace
    pod_links = sh(f"cat /proc/{pid}/net/dev").stdout.decode()
    assert "eth0:" in pod_links, pod_links
    assert "10.199.0.2" in sh(f"cat /proc/{pid}/net/fib_trie").stdout.decode()
    assert sh("cat /tmp/ipam/images-test/10.199.0.2").returncode == 0  # host-local's reservation

    deleted = cni("DEL")
    assert deleted.returncode == 0, (deleted.stdout, deleted.stderr)
    assert "eth0:" not in sh(f"cat /proc/{pid}/net/dev").stdout.decode()
    assert sh("test -e /tmp/ipam/images-test/10.199.0.2").returncode == 1
