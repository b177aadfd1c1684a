"""A real node beside the kwok ones (``up --real-node``): containerd, the kubelet, kube-proxy,
our CNI node daemon (kubext-cni), whose kubext-bridge plugin gives the pods their network, and a
local image registry on 127.0.0.1 that containerd pulls from over plain HTTP.

Everything lives under ``<state>/node`` (containerd's root, state and socket, the kubelet's root
dir and pod logs, the CNI config and IPAM data) and every packet stays on the machine: the node's
address is on a link the rig creates (``kubext0``, a port-less bridge, 10.255.255.1/32), where the API server
serves too. The recipe and why each setting is needed: ../shared/notes/real-node.md.

What the host had before is recorded in ``<state>/node/host.json`` (sysctls the kubelet changes,
which machine-wide paths and cgroups existed) so that ``down`` removes only what ``up`` made.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from hashlib import sha256
from pathlib import Path

import yaml

from kubext_rig import cluster, pki, tools

NODE_NAME = "kubext-node-0"
NODE_IP = pki.NODE_IP  # a private /32 on a link of our own, routed nowhere
LINK = "kubext0"
# The pods' range (host-local IPAM under kubext-bridge): apart from kwok's 10.244.0.0/16.
POD_CIDR = "10.88.0.0/24"
POD_BRIDGE = "kubext-cni0"
NETWORK = "kubext-rig"  # the conflist's name: host-local keeps its reservations under it
# Pods meant to run for real select the node and tolerate this; nothing else lands there.
TAINT_KEY = "kubext.io/real-node"


def placement() -> dict[str, object]:
    """A pod spec's fragment that selects the real node and tolerates its taint."""
    return {
        "nodeSelector": {"kubernetes.io/hostname": NODE_NAME},
        "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
    }


KUBELET_PORT = 10250 + cluster.PORT_OFFSET
KUBELET_HEALTHZ_PORT = 10248 + cluster.PORT_OFFSET
PROXY_HEALTHZ_PORT = 10256 + cluster.PORT_OFFSET
PROXY_METRICS_PORT = 10249 + cluster.PORT_OFFSET
CNI_HEALTH_PORT = 18090 + cluster.PORT_OFFSET
REGISTRY_PORT = 15000 + cluster.PORT_OFFSET
# Images pushed here are pulled by the node: ``f"{REGISTRY}/name:tag"``.
REGISTRY = f"127.0.0.1:{REGISTRY_PORT}"
PACKAGES = ("containerd", "runc")
# The kubelet sets these at start (real-node.md); saved before, restored by down.
SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops")
# Fixed per machine whatever --root-dir says, so one real node per machine.
DEVICE_PLUGINS_DIR = Path("/var/lib/kubelet/device-plugins")
MACHINE_CLAIM = Path("/run/kubext-rig-real-node")
CGROUP_FS = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")
NFT_TABLES = (
    ("ip", "kube-proxy"),
    ("ip6", "kube-proxy"),
    ("ip", "cni_hostport"),  # portmap's
    ("inet", "kubext-cni"),  # kubext-bridge's masquerade
)
# In start order: the registry before containerd may pull from it, the CNI daemon serves
# before the kubelet can ask for a pod network.
COMPONENTS = ("registry", "containerd", "kubext-cni", "kubelet", "kube-proxy")


def image_ref(name: str) -> str:
    """Images imported with ctr, never pulled (the .invalid domain resolves nowhere)."""
    return f"kubext.invalid/{name}:{tools.versions()['KUBERNETES_VERSION']}"


def _dir(root: Path) -> Path:
    return root / "node"


def enabled(root: Path) -> bool:
    """Whether this state dir's cluster has the real node (``up --real-node`` made it)."""
    return (_dir(root) / "host.json").exists()


def _socket(root: Path) -> Path:
    return _dir(root) / "containerd" / "containerd.sock"


def _log(root: Path, name: str) -> Path:
    return root / "logs" / f"{name}.log"


def cni_socket(root: Path) -> Path:
    """The kubext-cni daemon's plugin socket (its bridge locks live beside it)."""
    return _dir(root) / "cni" / "run" / "plugin.sock"


def ipam_dir(root: Path) -> Path:
    """host-local's reservations for the pod network: one file per pod address."""
    return _dir(root) / "cni" / "ipam" / NETWORK


def cni_bin_dir(root: Path) -> Path:
    """containerd's CNI bin dir: the plugins and the kubext-bridge launcher."""
    return _dir(root) / "cni" / "bin"


def cni_conf_dir(root: Path) -> Path:
    """containerd's CNI conf dir: it uses the first network config list in name order."""
    return _dir(root) / "cni" / "net.d"


def _rig_conflist(root: Path) -> Path:
    return cni_conf_dir(root) / "10-kubext-rig.conflist"


def _released_marker(root: Path) -> Path:
    return _dir(root) / "cni" / "released"


def network_released(root: Path) -> bool:
    """Whether the pod network is the cni release's (``release_network``), not the rig's daemon."""
    return _released_marker(root).exists()


def release_network(root: Path) -> None:
    """Hand the pod network to the cni release, as a cluster's CNI DaemonSet owns its nodes':
    its daemon serves the same socket with the same IPAM data (so the pods running now keep
    their addresses and their DEL still works), and its init container writes its own conflist
    (``drop_rig_conflist`` once it is Ready). The rig's daemon stops first (it removes its socket
    as it goes); a pod created until the release's daemon serves gets the launcher's "try again
    later" and the kubelet retries. From then on the node starts without the rig's daemon, until
    ``forget_release`` (a wiping `down`)."""
    _released_marker(root).parent.mkdir(parents=True, exist_ok=True)
    _released_marker(root).write_text("kubext-cni\n")
    _stop(root, "kubext-cni")


def drop_rig_conflist(root: Path) -> None:
    """The rig's own conflist, once the release's is in the conf dir (the same network)."""
    _rig_conflist(root).unlink(missing_ok=True)


def forget_release(root: Path) -> None:
    """The next node start brings the rig's own daemon and conflist again."""
    _released_marker(root).unlink(missing_ok=True)


class _Host:
    """host.json: what the machine had before up, so down restores exactly that."""

    def __init__(self, root: Path):
        self.path = _dir(root) / "host.json"
        self.data: dict[str, object] = (
            json.loads(self.path.read_text()) if self.path.exists() else {}
        )

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2))


# --- pure pieces: configuration files and images --------------------------------------------


def containerd_config(root: Path) -> str:
    d = _dir(root)
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{d / "containerd" / "root"}"
state = "{d / "containerd" / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{_socket(root)}"
[ttrpc]
  address = "{_socket(root)}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "containerd" / "opt"}"

[{cri}]
  sandbox_image = "{image_ref("pause")}"
  # root here cannot lower oom_score_adj: without this every sandbox fails in runc's nsexec.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d / "containerd" / "runc"}"
  [{cri}.cni]
    bin_dir = "{cni_bin_dir(root)}"
    conf_dir = "{cni_conf_dir(root)}"
  # One hosts.toml per registry: the rig's own is plain HTTP (registry_hosts_toml).
  [{cri}.registry]
    config_path = "{registry_hosts_dir(root)}"
"""


def registry_hosts_dir(root: Path) -> Path:
    """containerd's ``config_path``: a ``<host:port>/hosts.toml`` per registry."""
    return _dir(root) / "containerd" / "certs.d"


def registry_hosts_toml() -> str:
    """The rig's registry for containerd: plain HTTP on 127.0.0.1, pull and resolve (and push,
    for ``ctr images push``)."""
    return f"""server = "http://{REGISTRY}"

[host."http://{REGISTRY}"]
  capabilities = ["pull", "resolve", "push"]
"""


def registry_config(root: Path) -> dict[str, object]:
    """distribution's configuration: its storage under the rig's dir, 127.0.0.1 only, no debug
    server, deletes allowed (tests remove what they pushed)."""
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(_dir(root) / "registry" / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": REGISTRY},
    }


def cni_conflist(root: Path, plugin: str = "kubext-bridge") -> dict[str, object]:
    """Our kubext-bridge with portmap chained, as the cni chart installs it (``plugin="bridge"``:
    the reference plugin configured the same way, for comparisons).

    Masquerade is on as in the chart (pods talk to this machine only, so it never applies in
    practice; the tests check its elements come and go), the IPAM data under the rig's dir."""
    return {
        "cniVersion": "1.0.0",  # containerd 1.6's libcni reads up to 1.0.0
        "name": NETWORK,
        "plugins": [
            {
                "type": plugin,
                "bridge": POD_BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir(root).parent),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "backend": "nftables"},
        ],
    }


def cni_daemon_config(root: Path) -> dict[str, object]:
    """kubext-cni as the chart configures it, with its socket and launcher under the rig's dir:
    it installs the launcher into containerd's CNI bin dir when it starts."""
    host_python = Path("/usr/bin/python3")
    return {
        "health": {"host": "127.0.0.1", "port": CNI_HEALTH_PORT},
        "socket_path": str(cni_socket(root)),
        "cni_bin_dir": str(cni_bin_dir(root)),
        # The launcher's shebang: the host's python3 (stdlib only, run with -SI).
        "plugin_python": str(host_python if host_python.exists() else Path(sys.executable)),
    }


def kubelet_config(root: Path) -> dict[str, object]:
    d = _dir(root)
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # 1.35 refuses cgroup v1 otherwise; these machines are v1
        "cgroupDriver": "cgroupfs",  # no systemd here
        "failSwapOn": False,
        # A development node on the machine's one busy disk: the kubelet's defaults
        # (imagefs.available 15%, nodefs.available 10%) tainted it disk-pressure at 14% free
        # and nothing was scheduled there; kind turns them off, this keeps 2% for the machine.
        # Setting any of them drops the defaults of the others: memory's is restated.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "2%",
            "nodefs.inodesFree": "2%",
            "imagefs.available": "2%",
        },
        # No image GC: at the default 85% it removed the imported pause image (the sandbox of
        # every pod, never pullable) when a cold run beside the warm caches filled the disk to
        # 89% as the kubelet counts it (this disk reserves most of its blocks). `down` removes
        # every image with containerd's state.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "containerRuntimeEndpoint": f"unix://{_socket(root)}",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(root / "pki" / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [],  # no DNS runs in the rig
        "clusterDomain": "cluster.local",
        "podCIDR": POD_CIDR,
        "podLogsDir": str(d / "pod-logs"),
        "serializeImagePulls": False,
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "nodeStatusReportFrequency": "10s",
        # Volume stats (CSI NodeGetVolumeStats, /stats/summary) every 10 s instead of 1 min.
        "volumeStatsAggPeriod": "10s",
    }


def kube_proxy_config(root: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(root / "kube-proxy.kubeconfig")},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": f"127.0.0.1:{PROXY_METRICS_PORT}",
        "clusterCIDR": POD_CIDR,
        "nodePortAddresses": [f"{NODE_IP}/32"],  # never the machine's own interfaces
        # Zeros: kube-proxy leaves the machine's conntrack sysctls alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def docker_archive(binary: bytes, *, path: str, ref: str) -> bytes:
    """A one-layer image holding ``binary`` at ``path`` as its entrypoint, in the docker-archive
    format that ``ctr images import`` reads (manifest.json, config, layer tar)."""

    def tar_of(files: dict[str, bytes], mode: int) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, 0
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    layer = tar_of({path.lstrip("/"): binary}, 0o755)
    layer_id = sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [path]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        },
        sort_keys=True,
    ).encode()
    config_name = f"{sha256(config).hexdigest()}.json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{layer_id}/layer.tar"]}]
    ).encode()
    return tar_of(
        {"manifest.json": manifest, config_name: config, f"{layer_id}/layer.tar": layer}, 0o644
    )


# --- host preparation (before the control plane starts: the API server binds NODE_IP) -------


def _run(
    argv: list[str], *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess:
    """``argv``'s result; with ``check``, a failure is a one-line RigError naming the command."""
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise cluster.RigError(
            f"real node: {' '.join(argv[:4])} exited {res.returncode}: "
            f"{detail[-1] if detail else 'no output'}"
        )
    return res


def _ensure_packages(root: Path) -> None:
    missing = [p for p in PACKAGES if shutil.which(p) is None]
    if not missing:
        return
    log = _log(root, "apt-get")
    cluster.say(f"real node: installing Debian packages {' '.join(missing)} (log: {log})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(log, "ab") as out:
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            res = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
            if res.returncode != 0:
                raise cluster.RigError(
                    f"real node: cannot install Debian packages {' '.join(missing)} "
                    f"({' '.join(argv[:2])} exited {res.returncode}); see {log}"
                )


@contextlib.contextmanager
def _machine_lock():
    with open(MACHINE_CLAIM.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _live_owner() -> Path | None:
    """The state dir whose real node runs on this machine (the claim, if any of its node's
    processes still runs); call under ``_machine_lock``."""
    if not MACHINE_CLAIM.exists():
        return None
    owner = Path(MACHINE_CLAIM.read_text().strip())
    return owner if any(cluster.running_pid(owner, n) is not None for n in COMPONENTS) else None


def machine_owner() -> Path | None:
    """The state dir of the cluster whose real node runs on this machine, if one runs."""
    with _machine_lock():
        return _live_owner()


def taken_elsewhere(root: Path) -> Path | None:
    """Another cluster's state dir when that one holds the machine's real node."""
    owner = machine_owner()
    return owner if owner is not None and owner.resolve() != root.resolve() else None


def without_real_node(owner: Path) -> str:
    """The one line a cluster that comes up without a real node says (and ``status`` shows)."""
    return (
        f"without a real node: the machine's one (the kubelet's device-plugin dir is fixed) "
        f"is {owner}'s"
    )


def _claim(root: Path, *, required: bool = True) -> bool:
    """One real node per machine (the device-plugin dir is fixed): another's running one wins;
    ``required`` refuses then, else this cluster goes without (False)."""
    with _machine_lock():
        owner = _live_owner()
        if owner is not None and owner.resolve() != root.resolve():
            if not required:
                return False
            raise cluster.RigError(
                f"real node: another cluster's real node runs on this machine ({owner}); "
                "one per machine (the kubelet's device-plugin dir is fixed): "
                "start this cluster without --real-node, or stop that one first"
            )
        MACHINE_CLAIM.write_text(str(root))
    return True


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def prepare_host(root: Path, *, required: bool = True) -> bool:
    """Packages, the machine claim, the dummy link with NODE_IP, the host's state saved; False
    (nothing done) when another cluster holds the machine's real node and not ``required``."""
    (root / "logs").mkdir(parents=True, exist_ok=True)
    if not _claim(root, required=required):
        return False
    _ensure_packages(root)
    host = _Host(root)
    if "sysctls" not in host.data:  # first up: what the machine had before any kubelet of ours
        host.data["sysctls"] = {k: _sysctl(k) for k in SYSCTLS}
        host.data["existed"] = {
            str(p): p.exists()
            for p in (
                DEVICE_PLUGINS_DIR.parent,
                DEVICE_PLUGINS_DIR,
                Path("/var/log/containers"),
                Path("/run/containerd"),
                NETNS_DIR,
                *(c / "kubepods" for c in _cgroup_controllers()),
            )
        }
        host.save()
    _share_netns_dir(host)
    if not _link_exists(LINK):
        # A bridge without ports serves as the dummy link: these kernels have no dummy driver.
        _run(["ip", "link", "add", LINK, "type", "bridge"])
    _run(["ip", "addr", "replace", f"{NODE_IP}/32", "dev", LINK])
    _run(["ip", "link", "set", LINK, "up"])
    return True


def _share_netns_dir(host: _Host) -> None:
    """/run/netns as a shared mount of its own, as `ip netns add` makes it: the cni release's
    pod mounts it HostToContainer to see the pods' namespaces containerd mounts there, which
    containerd refuses under a private mount (this machine's / is one). Undone by down."""
    NETNS_DIR.mkdir(exist_ok=True)
    # Not os.path.ismount: a directory bound onto itself has its device and inode, and binding
    # a shared mount again doubles it (8,192 stacked mounts after 13 `up`s: ENOSPC for mounts).
    if str(NETNS_DIR) not in mount_points():
        _run(["mount", "--bind", str(NETNS_DIR), str(NETNS_DIR)])
        host.data["netns_mount"] = True
        host.save()
    _run(["mount", "--make-shared", str(NETNS_DIR)])


def _sysctl(key: str) -> str:
    return Path("/proc/sys", *key.split(".")).read_text().strip()


def _cgroup_controllers() -> list[Path]:
    return sorted(p for p in CGROUP_FS.iterdir() if p.is_dir() and not p.is_symlink())


# --- the node's processes -------------------------------------------------------------------


def _write_configs(root: Path) -> None:
    d = _dir(root)
    for sub in ("containerd", "cni/net.d", "cni/bin", "cni/ipam", "kubelet", "pod-logs", "images"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "containerd" / "config.toml").write_text(containerd_config(root))
    hosts = registry_hosts_dir(root) / REGISTRY
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(registry_hosts_toml())
    (d / "registry" / "data").mkdir(parents=True, exist_ok=True)
    (d / "registry" / "config.yaml").write_text(yaml.safe_dump(registry_config(root)))
    # The plugins kubext-bridge delegates to or is chained with (the reference bridge too, for
    # comparisons); the daemon writes the kubext-bridge launcher beside them when it starts.
    # Real files, not links into the rig's cache: the cni release's daemon, in a container with
    # only this dir mounted, finds host-local here as containerd does.
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        target = cni_bin_dir(root) / plugin
        target.unlink(missing_ok=True)
        try:
            os.link(tools.binary(plugin), target)
        except OSError:  # another filesystem
            shutil.copy2(tools.binary(plugin), target)
    if not network_released(root):  # else the release's conflist and launcher stay as they are
        conf = _rig_conflist(root)
        for other in cni_conf_dir(root).iterdir():  # a release's, from before a wiping down
            if other != conf:
                other.unlink()
        # As the chart's init container does it: write, then rename (containerd watches the dir).
        tmp = conf.with_name(f".{conf.name}.tmp")
        tmp.write_text(json.dumps(cni_conflist(root), indent=2))
        tmp.replace(conf)
        (d / "cni" / "kubext-cni.yaml").write_text(yaml.safe_dump(cni_daemon_config(root)))
    (d / "kubelet-config.yaml").write_text(yaml.safe_dump(kubelet_config(root)))
    (d / "kube-proxy-config.yaml").write_text(yaml.safe_dump(kube_proxy_config(root)))
    p = root / "pki"
    server = f"https://{NODE_IP}:{cluster.APISERVER_PORT}"
    for stem, cn, org in (
        ("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
        ("kube-proxy", "system:kube-proxy", None),
    ):
        if not (p / f"{stem}.crt").exists():
            pki.issue(p, stem, cn, org)
        (root / f"{stem}.kubeconfig").write_text(pki.kubeconfig(server=server, pki=p, user=stem))


def _components(root: Path) -> list[cluster.Component]:
    """In start order; without the rig's CNI daemon once the network is the release's (the
    kubelet starts that DaemonSet's pod on the host network, which needs no CNI)."""
    d = _dir(root)
    cni = [] if network_released(root) else [_cni_daemon(root)]
    return [
        _registry(root),
        cluster.Component(
            "containerd",
            ["containerd", f"--config={d / 'containerd' / 'config.toml'}", "--log-level=warn"],
            f"unix://{_socket(root)}",
        ),
        *cni,
        cluster.Component(
            "kubelet",
            [
                str(tools.binary("kubelet")),
                f"--config={d / 'kubelet-config.yaml'}",
                f"--kubeconfig={root / 'kubelet.kubeconfig'}",
                f"--root-dir={d / 'kubelet'}",
                f"--cert-dir={d / 'kubelet' / 'pki'}",  # else /var/lib/kubelet/pki
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--node-labels=type=real",
                "--v=1",
            ],
            f"http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz",
        ),
        cluster.Component(
            "kube-proxy",
            [str(tools.binary("kube-proxy")), f"--config={d / 'kube-proxy-config.yaml'}", "--v=1"],
            f"http://127.0.0.1:{PROXY_HEALTHZ_PORT}/healthz",
        ),
    ]


def _registry(root: Path) -> cluster.Component:
    config = _dir(root) / "registry" / "config.yaml"
    binary = tools.binary_dir("registry") / "registry"  # built by up before the node starts
    return cluster.Component(
        "registry", [str(binary), "serve", str(config)], f"http://{REGISTRY}/v2/"
    )


def _cni_daemon(root: Path) -> cluster.Component:
    """kubext-cni from this checkout's source, with this interpreter (its requirements are
    this process's: the rig's tests run with the repository's resolve)."""
    repo = tools.repo_root()
    path = [str(repo / "services" / "cni"), str(repo / "libs"), *(p for p in sys.path if p)]
    return cluster.Component(
        "kubext-cni",
        [
            sys.executable,
            "-m",
            "kubext_cni",
            "--config",
            str(_dir(root) / "cni" / "kubext-cni.yaml"),
        ],
        f"http://127.0.0.1:{CNI_HEALTH_PORT}/readyz",
        env={"PYTHONPATH": os.pathsep.join(path)},
    )


def start_cni_daemon(root: Path, timeout: float = 60) -> int:
    """(Re)start kubext-cni alone, as a DaemonSet would after it died; its PID."""
    if network_released(root):
        raise cluster.RigError(
            "real node: the pod network is the cni release's (kubext-cni in kubext-system); "
            "restart its pod instead of the rig's daemon"
        )
    comp = _cni_daemon(root)
    pid = cluster.running_pid(root, comp.name)
    if pid is None:
        pid = cluster.start_process(root, comp)
    _wait(root, comp, timeout=timeout)
    return pid


def restart_kubelet(info: cluster.ClusterInfo, *, timeout: float = 60) -> int:
    """Stop the running kubelet (SIGTERM, as systemd restarts it) and start it again, alone:
    containerd and the pods keep running. Returns its new PID once it is healthy and has
    reported the Node Ready again (a heartbeat after the restart, not the old status).

    Call it where ``KUBEXT_RIG_PORT_OFFSET`` is the cluster's (the health port follows it)."""
    root = info.root
    comp = next(c for c in _components(root) if c.name == "kubelet")
    if cluster.running_pid(root, comp.name) is None:
        raise cluster.RigError(
            f"real node: no kubelet runs in {root} to restart (`up --real-node` first)"
        )
    _stop(root, comp.name)
    since = int(time.time())  # heartbeats are whole seconds
    pid = cluster.start_process(root, comp)
    _wait(root, comp, timeout=timeout)
    _wait_ready(info, timeout, heartbeat_since=since)
    return pid


def _ctr(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["ctr", f"--address={_socket(root)}", *args], check=check, timeout=120)


def _healthy(root: Path, comp: cluster.Component) -> bool:
    if comp.health.startswith("unix://"):
        return _socket(root).exists() and _ctr(root, "version", check=False).returncode == 0
    try:
        with urllib.request.urlopen(comp.health, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait(root: Path, comp: cluster.Component, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(root, comp):
            return
        if cluster.running_pid(root, comp.name) is None:
            raise cluster.RigError(
                f"real node: {comp.name} exited during start; see {_log(root, comp.name)}"
            )
        time.sleep(0.3)
    raise cluster.RigError(
        f"real node: {comp.name} not healthy after {timeout:.0f} s; see {_log(root, comp.name)}"
    )


def _import_images(root: Path) -> None:
    for name in ("pause", "echo-loop", "tcp-echo", "write-read"):
        tarball = _dir(root) / "images" / f"{name}.tar"
        tarball.write_bytes(
            docker_archive(tools.binary(name).read_bytes(), path=f"/{name}", ref=image_ref(name))
        )
        try:
            _ctr(root, "-n", "k8s.io", "images", "import", "--all-platforms", str(tarball))
        except cluster.RigError as exc:
            raise cluster.RigError(f"{exc}; see {_log(root, 'containerd')}") from exc


def _busy_ports() -> list[int]:
    ports = (
        KUBELET_PORT,
        KUBELET_HEALTHZ_PORT,
        PROXY_HEALTHZ_PORT,
        PROXY_METRICS_PORT,
        CNI_HEALTH_PORT,
        REGISTRY_PORT,
    )
    return [p for p in ports if not cluster._port_free(p, NODE_IP) or not cluster._port_free(p)]


def start(info: cluster.ClusterInfo, *, ready_timeout: float = 120) -> None:
    """containerd (images imported), kubelet, kube-proxy; wait until the Node is Ready."""
    root = info.root
    t0 = time.monotonic()
    comps = _components(root)
    if all(cluster.running_pid(root, c.name) is not None for c in comps) and all(
        _healthy(root, c) for c in comps
    ):
        cluster.say(f"real node {NODE_NAME} already running")
        return
    stop(root)
    # The kubelet's image pull records (KubeletEnsureSecretPulledImages) outlive a run: one left
    # by a pull of an image with the ID of an imported one (a registry copy of echo-loop) made
    # the kubelet refuse that image to every pod with pullPolicy Never ("not present"). The
    # images are imported afresh below, so their records start afresh too.
    shutil.rmtree(_dir(root) / "kubelet" / "image_manager", ignore_errors=True)
    busy = _busy_ports()
    if busy:
        raise cluster.RigError(
            f"real node: port(s) {', '.join(map(str, busy))} already in use by another process "
            "(kubelet/kube-proxy/registry ports); stop it (ss -ltnp) and retry"
        )
    _write_configs(root)
    _share_kubelet_dir(root)
    for comp in comps:
        t = time.monotonic()
        pid = cluster.start_process(root, comp)
        _wait(root, comp, timeout=60)
        cluster.say(f"{comp.name} healthy (pid {pid}, {time.monotonic() - t:.1f} s)")
        if comp.name == "containerd":
            _import_images(root)
    _wait_ready(info, ready_timeout)
    cluster.say(f"real node {NODE_NAME} Ready in {time.monotonic() - t0:.1f} s")


def _share_kubelet_dir(root: Path) -> None:
    """The kubelet's root as a shared mount of its own, as on a systemd host (whose / is
    shared): containerd refuses a Bidirectional hostPath under a private mount, and a CSI node
    plugin's pod (the csi chart) mounts the kubelet's pods and plugins dirs so. Made before the
    kubelet starts, so every mount it makes lands inside; ``_unmount`` takes it down last."""
    kubelet = str((_dir(root) / "kubelet").resolve())
    if kubelet not in our_mounts(root):
        _run(["mount", "--bind", kubelet, kubelet])
    _run(["mount", "--make-shared", kubelet])


def _wait_ready(
    info: cluster.ClusterInfo, timeout: float, *, heartbeat_since: int | None = None
) -> None:
    """Until the Node is Ready; with ``heartbeat_since`` (epoch seconds), Ready as reported at
    or after then (a restarted kubelet's own report, not the one before it stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(cluster.RigError):
            node = json.loads(cluster.kubectl(info, "get", "node", NODE_NAME, "-o", "json"))
            conditions = node.get("status", {}).get("conditions", [])
            if any(
                c["type"] == "Ready"
                and c["status"] == "True"
                and (heartbeat_since is None or _epoch(c["lastHeartbeatTime"]) >= heartbeat_since)
                for c in conditions
            ):
                return
        if cluster.running_pid(info.root, "kubelet") is None:
            break
        time.sleep(1)
    raise cluster.RigError(
        f"real node: kubelet: Node {NODE_NAME} not Ready after {timeout:.0f} s; "
        f"see {_log(info.root, 'kubelet')}"
    )


def _epoch(timestamp: str) -> int:
    """An API timestamp (RFC 3339, UTC, ``2026-12-02T03:50:53Z``) as epoch seconds."""
    return int(datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())


def status(root: Path) -> dict[str, str]:
    if not enabled(root):
        return {}
    out = {}
    for comp in _components(root):
        if cluster.running_pid(root, comp.name) is None:
            out[comp.name] = "stopped"
        else:
            out[comp.name] = "healthy" if _healthy(root, comp) else "unhealthy"
    return out


# --- down: everything up made, in order -----------------------------------------------------


def stop(root: Path) -> None:
    """Stop kubelet and kube-proxy (its nft tables too), every containerd task and container,
    then containerd and the CNI daemon; unmount and remove what they made (the pods' veths go
    with their namespaces; the bridge, masquerade table and IP reservations here). Safe to
    repeat."""
    for name in ("kubelet", "kube-proxy"):
        _stop(root, name)
    proxy = tools.binary_dir("kube-proxy") / "kube-proxy"
    if proxy.exists():
        _run([str(proxy), "--cleanup", "--v=0"], check=False)
    if cluster.running_pid(root, "containerd") is not None:
        _remove_containers(root)
    _stop(root, "containerd")
    _stop(root, "kubext-cni")  # after containerd: nothing calls the plugin any more
    _stop(root, "registry")  # nothing pulls from it any more
    _kill_shims(root)
    _unmount(root)
    for family, table in NFT_TABLES:
        _run(["nft", "delete", "table", family, table], check=False)
    if _link_exists(POD_BRIDGE):
        _run(["ip", "link", "delete", POD_BRIDGE], check=False)
    shutil.rmtree(_dir(root) / "cni" / "ipam", ignore_errors=True)


def _stop(root: Path, name: str) -> None:
    pid = cluster.running_pid(root, name)
    if pid is not None:
        cluster._stop_pid(pid, name)
        cluster.say(f"stopped {name} (pid {pid})")
    (root / "pids" / f"{name}.pid").unlink(missing_ok=True)


def _remove_containers(root: Path) -> None:
    for ns in _ctr(root, "namespaces", "ls", "-q", check=False).stdout.split():
        tasks = _ctr(root, "-n", ns, "tasks", "ls", "-q", check=False).stdout.split()
        for task in tasks:
            _ctr(root, "-n", ns, "tasks", "kill", "-s", "SIGKILL", task, check=False)
        for task in tasks:
            _ctr(root, "-n", ns, "tasks", "delete", "-f", task, check=False)
        for c in _ctr(root, "-n", ns, "containers", "ls", "-q", check=False).stdout.split():
            _ctr(root, "-n", ns, "containers", "delete", c, check=False)


def _kill_shims(root: Path) -> None:
    """Shims run in their own process groups: stop those serving our containerd by PID."""
    sock = str(_socket(root)).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock in argv:
            cluster._stop_pid(int(proc.name), "containerd-shim", timeout=5)


def mount_points(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Every mount's mount point, in mount order (one per mount: a stacked one repeats)."""
    return [
        line.split()[4].encode().decode("unicode_escape")
        for line in mountinfo.read_text().splitlines()
    ]


def our_mounts(root: Path) -> list[str]:
    """Mount points under the node's dir or in /run/netns/cni-*, deepest first."""
    base = str(_dir(root).resolve())
    points = [
        point
        for point in mount_points()
        if point == base or point.startswith(base + "/") or point.startswith(f"{NETNS_DIR}/cni-")
    ]
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def _unmount(root: Path) -> None:
    for point in our_mounts(root):
        if _run(["umount", point], check=False).returncode != 0:
            _run(["umount", "-l", point], check=False)
    # Loop devices the CSI driver attached to volume images under our state dir: the kubelet
    # went down without unstaging them.
    for device in our_loop_devices(root):
        _run(["losetup", "-d", device], check=False)
    if NETNS_DIR.is_dir():
        for ns in NETNS_DIR.glob("cni-*"):
            ns.unlink(missing_ok=True)


def our_loop_devices(root: Path) -> list[str]:
    """Loop devices whose backing file is under ``root``: by its path, or by its inode, since a
    device the CSI driver attached in a container names its file by a path of the container's
    mount ("/volumes/<id>.img"), which a restarted container and the host cannot reach."""
    out = _run(
        ["losetup", "--list", "--json", "--output", "NAME,BACK-INO,BACK-MAJ:MIN,BACK-FILE"],
        check=False,
    )
    files = _file_identities(root)
    found = []
    for dev in json.loads(out.stdout or "{}").get("loopdevices", []):
        major, _, minor = str(dev.get("back-maj:min") or "").strip().partition(":")
        inode = dev.get("back-ino")
        identity = None
        if major.isdigit() and minor.isdigit() and isinstance(inode, int):
            identity = (os.makedev(int(major), int(minor)), inode)
        if str(dev.get("back-file") or "").startswith(f"{root}/") or identity in files:
            found.append(str(dev["name"]))
    return found


def _file_identities(root: Path) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the regular files below ``root``, not descending into mounts."""
    found = set()
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(directory, d))]
        for name in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(directory, name))
                if stat.S_ISREG(st.st_mode):
                    found.add((st.st_dev, st.st_ino))
    return found


def release_host(root: Path) -> None:
    """After ``stop`` and the control plane (the API server's own client dials NODE_IP until it
    exits): the node's link, cgroups, machine-wide dirs we made, sysctls, the machine claim."""
    if not enabled(root):
        return
    stop(root)
    host = _Host(root)
    if _link_exists(LINK):
        _run(["ip", "link", "delete", LINK], check=False)
    existed = host.data.get("existed", {})
    assert isinstance(existed, dict)
    for c in _cgroup_controllers():
        if not existed.get(str(c / "kubepods"), False):
            _remove_cgroup_tree(c / "kubepods")
    logs = Path("/var/log/containers")
    if logs.is_dir():
        pod_logs = str(_dir(root) / "pod-logs")
        for link in logs.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(pod_logs):
                link.unlink()
    for path in (DEVICE_PLUGINS_DIR, DEVICE_PLUGINS_DIR.parent, logs, Path("/run/containerd")):
        if not existed.get(str(path), True) and path.exists():
            shutil.rmtree(path, ignore_errors=True)
    if host.data.get("netns_mount") and str(NETNS_DIR) in mount_points():
        _run(["umount", str(NETNS_DIR)], check=False)
    if (
        not existed.get(str(NETNS_DIR), True)
        and NETNS_DIR.is_dir()
        and not any(NETNS_DIR.iterdir())
    ):
        NETNS_DIR.rmdir()
    sysctls = host.data.get("sysctls", {})
    assert isinstance(sysctls, dict)
    for key, value in sysctls.items():
        if _sysctl(key) != value:
            Path("/proc/sys", *key.split(".")).write_text(value)
    with _machine_lock():
        if MACHINE_CLAIM.exists() and Path(MACHINE_CLAIM.read_text().strip()) == root:
            MACHINE_CLAIM.unlink()
    host.path.unlink()
    cluster.say(f"real node {NODE_NAME} removed; sysctls restored")


def _remove_cgroup_tree(top: Path) -> None:
    if not top.is_dir():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()
