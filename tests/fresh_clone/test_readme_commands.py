"""The README's main command from a fresh clone, exactly as a new user types it.

What is real: a `git clone` of the checkout's HEAD, its own `./pants` bootstrap and Pants daemon,
the service images Pants builds with podman and the pexes, the rig's real etcd, kube-apiserver,
controller-manager, kube-scheduler and kwok on ports of their own and, when no other cluster holds
it, the machine's real node (containerd, kubelet, kube-proxy, its registry): every service is then
a Helm release whose pods run there from images pulled from that registry, and the samples run
there for real. Fakes: the kwok nodes, which the seed's custom-scheduler pod and Deployment are
bound to (no container runs); without the real node, the services are host processes and every
sample's pod is a kwok fake. The clone shares the machine's caches (~/.cache/kubext, Pants'
caches), as a user's second checkout would. Run by `./kubext test` (which sets KUBEXT_CLONE_FROM) after the other tests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = os.environ.get("KUBEXT_CLONE_FROM")
OFFSET = 2000  # beside `./kubext up`'s cluster (0) and the test cluster (1000)
# The cni release's health and metrics port (kubext_rig.releases.CNI_HEALTH_PORT, plus the
# offset): its pod is on the host network.
CNI_RELEASE_PORT = 18085 + OFFSET
# The rig's and the stack's ports at that offset (rig/kubext_rig/cluster.py, stack.py).
PORTS = {
    p + OFFSET
    for p in (
        12379,
        12380,
        16443,
        17257,
        17259,
        17247,
        18443,
        18080,
        18081,
        18082,
        18083,
        18084,
        18085,
    )
}

pytestmark = pytest.mark.skipif(
    not SOURCE, reason="run through ./kubext test, which names the checkout in KUBEXT_CLONE_FROM"
)


def _listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def _nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    return set(out.stdout.splitlines()) if out.returncode == 0 else set()


def _mounts_under(*roots: Path) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [m for m in lines if any(f" {r}" in m for r in roots)]


def _processes_under(*roots: Path) -> dict[int, str]:
    """Processes whose command line or working directory is inside one of ``roots``."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if any(str(r) in cmdline or cwd.startswith(str(r)) for r in roots):
            found[int(proc.name)] = cmdline.strip()
    return found


@pytest.fixture
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert SOURCE is not None
    root = tmp_path_factory.mktemp("fresh") / "kubext"
    subprocess.run(["git", "clone", "--quiet", SOURCE, str(root)], check=True, timeout=120)
    commit = os.environ.get("KUBEXT_CLONE_COMMIT")
    if commit:  # the commit ./kubext test named (and Pants keyed this test's result by)
        subprocess.run(["git", "-C", str(root), "checkout", "--quiet", commit], check=True)
    yield root
    # The clone's Pants daemon is the build tool's, which outlives a command by design: stop it
    # with the checkout it serves.
    for pid in _pants_processes(_processes_under(root)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _pants_processes(processes: dict[int, str]) -> set[int]:
    # pantsd renames itself to "pantsd [<buildroot>]"; the client runs from the Pants venv.
    return {
        pid
        for pid, cmdline in processes.items()
        if cmdline.startswith("pantsd ") or "pants-venv" in cmdline
    }


def _kubext(
    clone: Path, env: dict[str, str], *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        ["./kubext", *args], cwd=clone, env=env, capture_output=True, text=True, timeout=timeout
    )
    print(
        f"./kubext {' '.join(args)}: exit {done.returncode} in {time.monotonic() - started:.0f} s"
    )
    return done


def test_the_main_command_works_from_a_fresh_clone_and_down_leaves_nothing(clone: Path) -> None:
    # A fixed state directory: a run that was killed (a timeout) is stopped by the next one.
    cache = Path(os.environ.get("KUBEXT_CACHE") or Path.home() / ".cache" / "kubext")
    state = cache / "fresh-clone-cluster"
    env = {
        "HOME": os.environ["HOME"],
        "PATH": os.environ["PATH"],
        # Its own cluster: state directory and ports apart from the other clusters on the machine.
        "KUBEXT_RIG_DIR": str(state),
        "KUBEXT_RIG_PORT_OFFSET": str(OFFSET),
    }
    if os.environ.get("KUBEXT_CACHE"):
        env["KUBEXT_CACHE"] = os.environ["KUBEXT_CACHE"]
    _stop_leftovers(state)
    links, tables, loops = _links(), _nft_tables(), _loop_devices()
    assert not PORTS & _listening_ports(), "the fresh-clone cluster's ports are taken already"
    owner = _real_node_owner()

    up = _kubext(clone, env, "up", timeout=1800)
    try:
        assert up.returncode == 0, f"./kubext up failed:\n{up.stdout[-2000:]}\n{up.stderr[-5000:]}"
        if owner:
            # One real node per machine: the other cluster keeps it, this one says so in a line.
            said = [line for line in up.stderr.splitlines() if "without a real node" in line]
            assert len(said) == 1 and owner in said[0], up.stderr[-3000:]
        exports = re.findall(r"^export KUBECONFIG=(\S+)$", up.stdout, re.MULTILINE)
        assert exports == [str(state / "admin.kubeconfig")], up.stdout[-2000:]
        kubectl = _kubectl(exports[0])

        # The samples converge through the operator and the admission webhooks.
        for kind, name in (("webapp", "hello"), ("database", "orders")):
            _wait(
                f"{kind} {name} Running",
                lambda k=kind, n=name: kubectl("get", k, n, "-o", "jsonpath={.status.phase}")
                == "Running",
                timeout=180,
            )

        # `status` is truthful: every component healthy, with the processes really there...
        st = _kubext(clone, env, "status", timeout=120)
        states = json.loads(st.stdout)
        assert st.returncode == 0, st.stdout
        for name in ("etcd", "kube-apiserver", "kwok"):
            assert states.get(name) == "healthy", states
        # Host processes without the real node; with it, Helm releases (and the rig's own CNI
        # daemon, kubext-cni, has handed the pod network to the cni release).
        services = ["webhooks", "operator", "scheduler"]
        if owner:
            assert "without a real node" in states["real-node"] and "kubelet" not in states
            # No kubelet for the device plugin: not started, the gpu sample skipped (one line).
            assert "kubext-deviceplugin" not in states, states
            assert up.stderr.count("kubext-deviceplugin and kubext-csi not started") == 1
            assert up.stderr.count("the services run as host processes, not as Helm releases") == 1
            keys = [f"kubext-{svc}" for svc in services]
        else:
            services += ["csi", "deviceplugin", "cni"]
            keys = [f"release/kubext-{svc}" for svc in services]
            assert "kubext-cni" not in states, states
        for key in keys:
            assert states.get(key) == "healthy", (key, states)
        if not owner:
            assert "gpu sample Running on kubext-node-0" in up.stderr, up.stderr[-3000:]
            # The samples ran for real: the status table's rows, and the cluster agrees.
            table = _table(up.stderr)
            # Every service a Helm release, its pods Ready on the real node from its registry.
            for svc in ("webhooks", "csi", "deviceplugin", "operator", "scheduler", "cni"):
                row = table.get(f"release kubext-{svc}", "")
                assert row.startswith("yes") and "Ready on kubext-node-0" in row, (svc, row)
                assert f"/kubext/{svc}@sha256:" in row, row  # pinned to what was pushed
            # No service runs as a host process, the rig's CNI daemon included.
            hosted = ("webhooks", "csi", "deviceplugin", "operator", "scheduler", "cni")
            assert [s for s in hosted if (state / "pids" / f"kubext-{s}.pid").exists()] == []
            # The pod network is the cni release's: its conflist alone in containerd's conf
            # dir, and its daemon served an ADD for every pod on the node's pod network.
            conf_dir = state / "node" / "cni" / "net.d"
            assert sorted(p.name for p in conf_dir.iterdir()) == ["10-kubext.conflist"]
            networked = kubectl(
                "get", "pods", "-A", "--field-selector", "spec.nodeName=kubext-node-0",
                "-o",
                "jsonpath={range .items[?(@.status.podIP)]}{.metadata.name}={.spec.hostNetwork} {end}",
            ).split()  # fmt: skip
            pod_network = [p for p in networked if not p.endswith("=true")]
            assert len(pod_network) >= 10, networked  # the samples and the releases' pods
            assert _cni_adds_served(CNI_RELEASE_PORT) >= len(pod_network)
            for row in (
                "webapp default/hello",
                "database default/orders",
                "pod kubext-system/gpu-sample",
                "pod default/web-custom-scheduled",
                "backup default/orders",
            ):
                assert table.get(row, "").startswith("yes"), (row, up.stderr[-4000:])
            assert ": 200 'kubext WebApp sample'" in table["webapp default/hello"]
            assert "backup: wrote /backup/orders-" in table["backup default/orders"]
            for selector in ("app.kubernetes.io/name=webapp", "app.kubernetes.io/name=database"):
                nodes = kubectl(
                    "get", "pods", "-l", selector, "-o", "jsonpath={.items[*].spec.nodeName}"
                )
                assert nodes and set(nodes.split()) == {"kubext-node-0"}, (selector, nodes)
            drivers = kubectl("get", "pv", "-o", "jsonpath={.items[*].spec.csi.driver}").split()
            assert len(drivers) == 3 and set(drivers) == {
                "csi.kubext.io"
            }, drivers  # data x2, backup
        # The seed's custom-scheduler pod is bound by our scheduler.
        _wait(
            "test-custom-scheduler bound",
            lambda: kubectl(
                "get", "pod", "test-custom-scheduler", "-o", "jsonpath={.spec.nodeName}"
            )
            != "",
            timeout=120,
        )
        # ... and a component that died is reported as stopped, with a non-zero exit: the host
        # process killed, or the release's Deployment scaled to nothing.
        if owner:
            pid = int((state / "pids" / "kubext-operator.pid").read_text().split()[0])
            os.killpg(pid, signal.SIGKILL)
            _wait("the operator gone", lambda: not _alive(pid), timeout=30)
        else:
            kubectl("-n", "kubext-system", "scale", "deployment/kubext-operator", "--replicas=0")
            _wait(
                "the operator's pods gone",
                lambda: kubectl(
                    "-n", "kubext-system", "get", "pods", "-o", "name",
                    "-l", "app.kubernetes.io/instance=kubext-operator",
                ).strip() == "",
                timeout=120,
            )  # fmt: skip
        st = _kubext(clone, env, "status", timeout=120)
        operator_key = "kubext-operator" if owner else "release/kubext-operator"
        assert st.returncode == 3 and json.loads(st.stdout)[operator_key] == "stopped", st.stdout
    finally:
        down = _kubext(clone, env, "down", timeout=300)
    assert down.returncode == 0, down.stderr[-3000:]

    # Nothing of ours is left: processes, ports, mounts, network devices, nft tables.
    processes = _processes_under(clone, state)
    leftovers = {
        pid: cmd for pid, cmd in processes.items() if pid not in _pants_processes(processes)
    }
    assert leftovers == {}
    assert PORTS & _listening_ports() == set()
    assert _mounts_under(clone, state) == []
    assert _links() - links == set()
    assert _nft_tables() - tables == set()
    assert _loop_devices_under(state) == []
    assert _loop_devices() - loops == set()
    st = _kubext(clone, env, "status", timeout=120)
    assert st.returncode == 3 and set(json.loads(st.stdout).values()) == {"stopped"}, st.stdout


def _cni_adds_served(port: int) -> float:
    """kubext_cni_requests_total{command="ADD",code="0"} of the daemon serving on ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = [
        float(value)
        for labels, value in re.findall(r"^kubext_cni_requests_total\{(.*)\} (\S+)$", text, re.M)
        if set(labels.split(",")) == {'command="ADD"', 'code="0"'}
    ]
    assert len(found) == 1, text[-3000:]
    return found[0]


def _table(stderr: str) -> dict[str, str]:
    """The status table `up` ends with: row name -> "yes|NO  detail"."""
    rows = {}
    for line in stderr.splitlines():
        m = re.match(r"^  (\S+ \S+)\s+(yes|NO)\s+(.*)$", line)
        if m:
            rows[m.group(1)] = f"{m.group(2)}  {m.group(3)}"
    return rows


def _loop_devices() -> set[tuple[str, int]]:
    """Every attached loop device with its backing inode: a device the CSI driver's pod attached
    names its file by a path of the pod's mount, which no path check under the state dir sees."""
    out = subprocess.run(
        ["losetup", "--list", "--json", "--output", "NAME,BACK-INO"], capture_output=True, text=True
    )
    devices = json.loads(out.stdout or "{}").get("loopdevices", [])
    return {(d["name"], d.get("back-ino") or 0) for d in devices}


def _loop_devices_under(root: Path) -> list[str]:
    out = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
    )
    return [
        line for line in out.stdout.splitlines() if f" {root}/" in f" {line.split(None, 1)[-1]}"
    ]


def _stop_leftovers(state: Path) -> None:
    """What a killed earlier run left (its PID files), so that the clone's `up` is its first
    command and finds its ports free."""
    for pid_file in (state / "pids").glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid, started = pid_file.read_text().split()[:2]
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if stat[19] == started:  # the very process, not a reused PID
                os.killpg(int(pid), signal.SIGKILL)
    shutil.rmtree(state, ignore_errors=True)


def _real_node_owner() -> str | None:
    """The state dir of the cluster whose real node runs on this machine (the rig's claim file,
    and that cluster's kubelet alive by its PID file), if one runs: the test cluster's, under
    `./kubext test`."""
    claim = Path("/run/kubext-rig-real-node")
    try:
        owner = claim.read_text().strip()
        pid = int((Path(owner) / "pids" / "kubelet.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return owner if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _kubectl(kubeconfig: str):  # type: ignore[no-untyped-def]
    cache = Path(os.environ.get("KUBEXT_CACHE") or Path.home() / ".cache" / "kubext")
    binaries = sorted((cache / "bin").glob("kubernetes-*/kubectl"))
    assert binaries, f"no kubectl under {cache}/bin"

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(binaries[-1]), "--kubeconfig", kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    return run


def _wait(what: str, probe, *, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
