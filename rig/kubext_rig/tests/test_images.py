"""The image refs and registry address the push uses, and what it refuses before pushing
(podman replaced by a recorder: nothing is built or pushed here)."""

from __future__ import annotations

import http.server
import subprocess
import threading

import pytest

from kubext_rig import cluster, images, node, real_node_testing, tools


def test_the_registry_is_the_real_nodes_at_every_offset() -> None:
    assert images.registry_for(cluster.PORT_OFFSET) == node.REGISTRY
    assert images.registry_for(3000) == "127.0.0.1:18000"
    # The harness's registry for a node of a test's own (offset 3000) is the same address.
    assert node.REGISTRY_PORT - cluster.PORT_OFFSET + real_node_testing.OFFSET == 18000


def test_refs_name_the_built_image_and_its_registry_copy() -> None:
    assert images.local_ref("csi", "1.2.3") == "localhost/kubext/csi:1.2.3"
    assert (
        images.remote_ref("127.0.0.1:16000", "csi", "1.2.3") == "127.0.0.1:16000/kubext/csi:1.2.3"
    )
    assert images.repository("127.0.0.1:16000", "csi") == "127.0.0.1:16000/kubext/csi"
    assert images.package_command("csi") == "./pants package services/csi:image"


def test_every_service_has_a_version_and_unknown_names_are_refused() -> None:
    assert images.chosen([]) == list(images.SERVICES)
    assert images.chosen(["csi", "operator", "csi"]) == ["csi", "operator"]
    for svc in images.SERVICES:
        assert images.version_of(svc, tools.repo_root())
    with pytest.raises(images.ImageError, match="unknown service opertor: one of operator"):
        images.chosen(["opertor"])


def test_a_missing_image_fails_before_any_push_naming_the_package_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, ...]] = []

    def podman(*args: str, timeout: float = 0) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        built = args[:2] == ("image", "exists") and "operator" in args[2]
        return subprocess.CompletedProcess(args, 0 if built else 1, "", "")

    monkeypatch.setattr(images, "_podman", podman)
    monkeypatch.setattr(images, "check_registry", lambda registry: None)
    with pytest.raises(images.ImageError) as refused:
        images.push(["operator", "csi"], registry="127.0.0.1:16000")
    version = images.version_of("csi")
    assert str(refused.value) == (
        f"not built: localhost/kubext/csi:{version} (run ./pants package services/csi:image)"
    )
    assert [c[0] for c in calls] == ["image", "image"]  # nothing tagged or pushed


def test_a_registry_that_is_down_is_one_line_naming_it() -> None:
    with pytest.raises(images.ImageError, match=r"^the registry at 127.0.0.1:1 does not answer"):
        images.check_registry("127.0.0.1:1")


class _Registry(http.server.BaseHTTPRequestHandler):
    """A registry's manifest endpoint: one image, served under its digest."""

    seen: list[tuple[str, str, str]] = []

    def do_HEAD(self) -> None:
        type(self).seen.append((self.command, self.path, self.headers.get("Accept", "")))
        if self.path == "/v2/kubext/operator/manifests/0.1.0":
            self.send_response(200)
            self.send_header("Docker-Content-Digest", "sha256:" + "ab" * 32)
        else:
            self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_digest_is_what_the_registry_serves_the_tag_under() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        assert images.remote_digest(f"{host}/kubext/operator:0.1.0") == "sha256:" + "ab" * 32
        method, path, accept = _Registry.seen[-1]
        assert (method, path) == ("HEAD", "/v2/kubext/operator/manifests/0.1.0")
        assert "application/vnd.oci.image.manifest.v1+json" in accept  # what podman pushes
        with pytest.raises(images.ImageError, match="no manifest for .*/kubext/csi:0.1.0"):
            images.remote_digest(f"{host}/kubext/csi:0.1.0")
    finally:
        server.shutdown()
