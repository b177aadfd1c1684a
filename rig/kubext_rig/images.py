"""The services' images onto the real node: each image `./pants package services/<svc>:image` built
(``localhost/kubext/<svc>:<VERSION>``) tagged for the rig's registry and pushed there with podman,
so the node's containerd pulls it as a real cluster's node pulls from its registry.

``python -m kubext_rig images push [SVC ...]`` (every service when none is named) pushes to the
registry of the cluster the environment names (``KUBEXT_RIG_PORT_OFFSET``); ``push`` is the same
for callers (the tests, Tilt) that name the registry themselves. The refs are pure functions."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from kubext_rig import cluster, tools

SERVICES = ("operator", "webhooks", "scheduler", "cni", "csi", "deviceplugin")
REGISTRY_BASE_PORT = 15000  # plus the cluster's port offset (node.REGISTRY_PORT at offset 0)
REPOSITORY_PREFIX = "kubext"  # the docker_image targets' repository is kubext/<svc>
PUSH_TIMEOUT_S = 300.0


class ImageError(cluster.RigError):
    """An image cannot be pushed; the message says why and what to run."""


def registry_for(offset: int) -> str:
    """The registry of the cluster at port offset ``offset`` (``host:port``)."""
    return f"127.0.0.1:{REGISTRY_BASE_PORT + offset}"


def repository(registry: str, svc: str) -> str:
    """What a chart's ``image.repository`` is for ``svc``'s image in ``registry``."""
    return f"{registry}/{REPOSITORY_PREFIX}/{svc}"


def local_ref(svc: str, version: str) -> str:
    """The image `./pants package services/<svc>:image` builds (podman's local store)."""
    return f"localhost/{REPOSITORY_PREFIX}/{svc}:{version}"


def remote_ref(registry: str, svc: str, version: str) -> str:
    return f"{repository(registry, svc)}:{version}"


def package_command(svc: str) -> str:
    return f"./pants package services/{svc}:image"


def chosen(names: Sequence[str]) -> list[str]:
    """The services named (all when none), in the order given; an unknown name is an error."""
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise ImageError(f"unknown service {', '.join(unknown)}: one of {', '.join(SERVICES)}")
    return list(dict.fromkeys(names)) or list(SERVICES)


def version_of(svc: str, repo: Path | None = None) -> str:
    """The service's VERSION, which its image is tagged with."""
    root = repo or tools.repo_root()
    return (root / "services" / svc / f"kubext_{svc}" / "VERSION").read_text().strip()


def _quiet(_: str) -> None:
    pass


def _podman(*args: str, timeout: float = PUSH_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ImageError("podman not found: the images are built and pushed with podman") from None


def check_registry(registry: str) -> None:
    """The registry answers its API root, else one line saying it is down and how to start it."""
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=5) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageError(
            f"the registry at {registry} does not answer ({reason}): it runs with the real node "
            "(python -m kubext_rig up --real-node, at the same KUBEXT_RIG_PORT_OFFSET)"
        ) from None


def push(
    services: Sequence[str] = (),
    *,
    registry: str,
    repo: Path | None = None,
    say: Callable[[str], None] = _quiet,
) -> dict[str, str]:
    """Tag and push each service's built image to ``registry``; returns svc -> pushed ref.

    Every image is checked to be built before anything is pushed, so a missing one fails at once
    naming the `./pants package` command."""
    names = chosen(services)
    check_registry(registry)
    refs = {svc: version_of(svc, repo) for svc in names}
    missing = [s for s, v in refs.items() if not image_exists(local_ref(s, v))]
    if missing:
        built_by = "; ".join(package_command(s) for s in missing)
        images = ", ".join(local_ref(s, refs[s]) for s in missing)
        raise ImageError(f"not built: {images} (run {built_by})")
    pushed = {}
    for svc, version in refs.items():
        source, target = local_ref(svc, version), remote_ref(registry, svc, version)
        t0 = time.monotonic()
        say(f"pushing {source} -> {target}")
        tag_and_push(source, target)
        say(f"pushed {target} ({time.monotonic() - t0:.1f} s)")
        pushed[svc] = target
    return pushed


def image_exists(ref: str) -> bool:
    """Whether podman's local store holds ``ref``."""
    return _podman("image", "exists", ref).returncode == 0


def tag_and_push(source: str, target: str) -> None:
    """``podman tag SOURCE TARGET`` and push TARGET over plain HTTP (the rig's registry)."""
    for args in (("tag", source, target), ("push", "--tls-verify=false", target)):
        res = _podman(*args)
        if res.returncode != 0:
            detail = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise ImageError(f"podman {args[0]} {target} failed: {detail}")


MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


def remote_digest(ref: str) -> str:
    """The digest (``sha256:...``) the registry serves ``ref`` (``host:port/path:tag``) under: a
    release pinned to it rolls its pods when a rebuilt image is pushed under the same tag."""
    host, _, rest = ref.partition("/")
    path, _, tag = rest.rpartition(":")
    request = urllib.request.Request(
        f"http://{host}/v2/{path}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            digest = resp.headers.get("Docker-Content-Digest", "")
    except (urllib.error.URLError, OSError) as exc:
        raise ImageError(f"the registry has no manifest for {ref}: {exc}") from None
    if not digest.startswith("sha256:"):
        raise ImageError(f"the registry gave no digest for {ref}")
    return digest
