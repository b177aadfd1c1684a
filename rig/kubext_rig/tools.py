"""Where the rig's pinned upstream binaries live, and building the missing ones (rig/build.sh)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

RIG_DIR = Path(__file__).resolve().parent.parent
# Which component (and versions.env key) ships each binary, as laid out by build.sh.
_COMPONENTS = {
    "etcd": ("etcd", "ETCD_VERSION", "etcd"),
    "kube-apiserver": ("kubernetes", "KUBERNETES_VERSION", "kubernetes"),
    "kube-controller-manager": ("kubernetes", "KUBERNETES_VERSION", "kubernetes"),
    "kube-scheduler": ("kubernetes", "KUBERNETES_VERSION", "kubernetes"),
    "kubectl": ("kubernetes", "KUBERNETES_VERSION", "kubernetes"),
    "kubelet": ("kubernetes-node", "KUBERNETES_VERSION", "kubernetes-node"),
    "kube-proxy": ("kubernetes-node", "KUBERNETES_VERSION", "kubernetes-node"),
    "pause": ("node-images", "KUBERNETES_VERSION", "node-images"),
    "echo-loop": ("node-images", "KUBERNETES_VERSION", "node-images"),
    "tcp-echo": ("node-images", "KUBERNETES_VERSION", "node-images"),
    "write-read": ("node-images", "KUBERNETES_VERSION", "node-images"),
    "stub-kubelet": ("stub-kubelet", "KUBERNETES_VERSION", "stub-kubelet"),
    "sample-device-plugin": ("sample-device-plugin", "KUBERNETES_VERSION", "sample-device-plugin"),
    "registry": ("registry", "REGISTRY_VERSION", "registry"),
    "kwok": ("kwok", "KWOK_VERSION", "kwok"),
    "helm": ("helm", "HELM_VERSION", "helm"),
    "csi-sanity": ("csi-test", "CSI_TEST_VERSION", "csi-sanity"),
    "cnitool": ("cni", "CNI_VERSION", "cnitool"),
    "bridge": ("cni-plugins", "CNI_PLUGINS_VERSION", "cni-plugins"),
    "host-local": ("cni-plugins", "CNI_PLUGINS_VERSION", "cni-plugins"),
    "portmap": ("cni-plugins", "CNI_PLUGINS_VERSION", "cni-plugins"),
    "loopback": ("cni-plugins", "CNI_PLUGINS_VERSION", "cni-plugins"),
    "kube-score": ("kube-score", "KUBE_SCORE_VERSION", "kube-score"),
    "tilt": ("tilt", "TILT_VERSION", "tilt"),  # the dev loop's (not in build.sh's default set)
}


def repo_root() -> Path:
    """The checkout, as an absolute path: ``KUBEXT_REPO`` (which ``./kubext`` sets), else the tree
    this package sits in when that holds the rig (a source run or a test sandbox's copy).

    Never the working directory: under ``pants run`` the package lives in a pex without the
    checkout's files, and the services run with their state directory as working directory."""
    explicit = os.environ.get("KUBEXT_REPO")
    if explicit:
        root = Path(explicit).resolve()
        if not (root / "rig" / "versions.env").is_file():
            raise FileNotFoundError(f"KUBEXT_REPO={explicit}: no rig/versions.env under {root}")
        return root
    if (RIG_DIR / "versions.env").is_file():
        return RIG_DIR.parent
    raise FileNotFoundError(
        f"rig/versions.env not found beside {RIG_DIR}; set KUBEXT_REPO to the repository root"
    )


def _repo_rig_dir() -> Path:
    return repo_root() / "rig"


def versions() -> dict[str, str]:
    """The pins of rig/versions.env."""
    out = {}
    for line in (_repo_rig_dir() / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("KUBEXT_CACHE") or Path.home() / ".cache" / "kubext")


# Components built from this checkout's own Go sources: their cache dir also names a hash of the
# sources (the same as build.sh's), so an edit rebuilds them.
_OWN_GO_SOURCES = {"stub-kubelet": "services/deviceplugin/stubkubelet"}


def _own_sources_hash(name: str) -> str:
    src = repo_root() / _OWN_GO_SOURCES[name]
    files = [src / "go.mod", src / "go.sum", *sorted(src.glob("*.go"))]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]


def binary_dir(name: str) -> Path:
    prefix, version_key, _ = _COMPONENTS[name]
    version = versions()[version_key]
    if name in _OWN_GO_SOURCES:
        version = f"{version}-{_own_sources_hash(name)}"
    return cache_dir() / "bin" / f"{prefix}-{version}"


def binary(name: str, *, build: bool = True) -> Path:
    """The path of an upstream binary; builds its component first when missing and ``build``."""
    path = binary_dir(name) / name
    if not path.exists() and build:
        ensure_built([_COMPONENTS[name][2]])
    if not path.exists():
        raise FileNotFoundError(f"{name} is not built: run rig/build.sh {_COMPONENTS[name][2]}")
    return path


def kwok_stages_dir() -> Path:
    return cache_dir() / f"kwok-stages-{versions()['KWOK_VERSION']}"


def ensure_built(components: list[str] | None = None) -> None:
    """Run rig/build.sh (cached: builds only what is missing), streaming its progress."""
    subprocess.run(["bash", str(_repo_rig_dir() / "build.sh"), *(components or [])], check=True)
