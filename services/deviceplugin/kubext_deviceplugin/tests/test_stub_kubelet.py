"""Our plugin, and the upstream sample device plugin, against the Go stub kubelet.

What is real: the stub is a Go program on the upstream ``k8s.io/kubelet`` device-plugin API
package (its generated gRPC client and server at the rig's Kubernetes pin), speaking gRPC over
unix sockets to our plugin as the kubelet's device manager does: Registration on kubelet.sock,
then it dials the plugin's endpoint for GetDevicePluginOptions, ListAndWatch,
GetPreferredAllocation and Allocate, and restarts as the kubelet does (every socket in the dir
removed, kubelet.sock served again). Our plugin runs in this process (its real gRPC edge and
lifecycle) over a fake device tree in a temp dir; the sample plugin is the upstream binary, built
from the rig's wrapper module, in a mount namespace of its own. No kubelet, container or GPU."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .. import __main__ as entry
from .. import config
from . import stub_kubelet
from .stub_kubelet import StubError, StubKubelet

FAKE, GPU, CDI = "example.com/fake", "example.com/gpu", "example.com/cdi"


@pytest.fixture
def tree() -> Iterator[Path]:
    # Short, so the socket paths stay under the 107-byte unix socket limit.
    root = Path(tempfile.mkdtemp(prefix="dps-", dir="/tmp"))
    for d in ("plugins", "dev", "lib/fake", "cdi"):
        (root / d).mkdir(parents=True)
    for name in ("fake0", "fake1", "fake2", "fakectl"):
        (root / "dev" / name).touch()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def plugin_config(tree: Path) -> config.Config:
    generic = {
        "root": str(tree),
        "groups": [
            {
                "name": "fake",
                "paths": [
                    {"path": "/dev/fake[0-9]", "permissions": "rwm"},
                    {"path": "/dev/fakectl"},
                    {"path": "/lib/fake", "type": "mount", "mount_path": "/usr/lib/fake"},
                ],
            }
        ],
    }
    return config.Config.model_validate(
        {
            "device_plugin_dir": str(tree / "plugins"),
            "resources": [
                {"name": FAKE, "backend": "generic", "generic": generic},
                {
                    "name": GPU,
                    "simulated": {"count": 2},
                    "envs": {"KUBEXT_DEMO": "yes"},
                    "annotations": {"example.com/owner": "kubext"},
                },
                {
                    "name": CDI,
                    "simulated": {"count": 2},
                    "cdi": {"enabled": True, "dir": str(tree / "cdi")},
                },
            ],
        }
    )


@pytest.fixture
def stub(tree: Path) -> Iterator[StubKubelet]:
    kubelet = StubKubelet(tree / "plugins").start()
    yield kubelet
    kubelet.close()


@pytest.fixture
def ours(tree: Path, stub: StubKubelet) -> Iterator[dict[str, dict]]:
    """Our plugin serving three resources; yields their first registrations by resource."""
    stop = threading.Event()
    plugins = entry.build_plugins(plugin_config(tree))
    threads = entry.start(plugins, stop)
    try:
        yield stub.registrations(3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        for p in plugins:
            p.shutdown()
            p.backend.close()


def test_registration_options_and_first_list(ours: dict[str, dict], stub: StubKubelet) -> None:
    assert sorted(ours) == [CDI, FAKE, GPU]
    endpoints = {r["endpoint"] for r in ours.values()}
    assert len(endpoints) == 3 and all(e.startswith("kubext-example.com_") for e in endpoints)
    for reg in ours.values():
        assert reg["version"] == "v1beta1"
        assert reg["options"] == {
            "pre_start_required": False,
            "get_preferred_allocation_available": True,
        }
    assert stub.call("options", resource=GPU)["options"]["get_preferred_allocation_available"]
    first = stub.update(GPU)
    assert first["endpoint"] == ours[GPU]["endpoint"]
    assert [(d["id"], d["health"]) for d in first["devices"]] == [
        ("gpu-0", "Healthy"),
        ("gpu-1", "Healthy"),
    ]
    assert [d["id"] for d in stub.update(FAKE)["devices"]] == ["fake0", "fake1", "fake2"]


def test_allocate_envs_devices_mounts_annotations_and_cdi(
    tree: Path, ours: dict[str, dict], stub: StubKubelet
) -> None:
    two = stub.allocate(FAKE, ["fake2"], ["fake0", "fake1"])
    assert [c["envs"] for c in two] == [
        {"KUBEXT_DEVICES": "fake2"},
        {"KUBEXT_DEVICES": "fake0,fake1"},
    ]
    # Host paths are the host's (generic.root is where this process sees the host's /).
    assert [(d["host_path"], d["container_path"], d["permissions"]) for d in two[0]["devices"]] == [
        ("/dev/fake2", "/dev/fake2", "rwm"),
        ("/dev/fakectl", "/dev/fakectl", "rw"),
    ]
    assert two[0]["mounts"] == [
        {"container_path": "/usr/lib/fake", "host_path": "/lib/fake", "read_only": True}
    ]
    (gpu,) = stub.allocate(GPU, ["gpu-1"])
    assert gpu["envs"] == {"KUBEXT_DEVICES": "gpu-1", "KUBEXT_DEMO": "yes"}
    assert gpu["annotations"] == {"example.com/owner": "kubext"} and gpu["devices"] == []
    (cdi,) = stub.allocate(CDI, ["gpu-0", "gpu-1"])
    assert cdi["cdi_devices"] == [f"{CDI}=gpu-0", f"{CDI}=gpu-1"] and cdi["devices"] == []
    spec = json.loads((tree / "cdi" / "kubext-example.com_cdi.json").read_text())
    assert spec["kind"] == CDI and [d["name"] for d in spec["devices"]] == ["gpu-0", "gpu-1"]
    with pytest.raises(StubError) as err:
        stub.allocate(FAKE, ["fake0", "fake7"])
    assert (
        err.value.answer["error"]["code"] == "NotFound"
        and "fake7" in err.value.answer["error"]["message"]
    )


def test_preferred_allocation(ours: dict[str, dict], stub: StubKubelet) -> None:
    got = stub.call(
        "preferred",
        resource=FAKE,
        available=["fake2", "fake0", "fake1"],
        must_include=["fake1"],
        size=2,
    )
    assert got["device_ids"] == ["fake1", "fake0"]


def test_a_health_change_reaches_the_stub_within_a_second(
    tree: Path, ours: dict[str, dict], stub: StubKubelet
) -> None:
    seen = stub.update(FAKE)["seq"]
    changed = time.monotonic_ns()
    (tree / "dev" / "fakectl").unlink()  # the group's shared node gone: every device Unhealthy
    update = stub.update(FAKE, after=seen)
    assert {d["health"] for d in update["devices"]} == {"Unhealthy"}
    assert (update["mono_ns"] - changed) / 1e9 < 1.0
    (tree / "dev" / "fakectl").touch()
    back = stub.update(FAKE, after=update["seq"])
    assert {d["health"] for d in back["devices"]} == {"Healthy"}
    (tree / "dev" / "fake1").unlink()  # hot unplug: exactly that ID goes, the others keep theirs
    unplugged = stub.update(FAKE, after=back["seq"])
    assert [d["id"] for d in unplugged["devices"]] == ["fake0", "fake2"]
    (fake2,) = stub.allocate(FAKE, ["fake2"])
    assert fake2["devices"][0]["host_path"] == "/dev/fake2"
    (tree / "dev" / "fake1").touch()  # replug: the same ID is back
    replugged = stub.update(FAKE, after=unplugged["seq"])
    assert [d["id"] for d in replugged["devices"]] == ["fake0", "fake1", "fake2"]


def test_a_kubelet_restart_reregisters_each_resource_within_a_second(
    tree: Path, ours: dict[str, dict], stub: StubKubelet
) -> None:
    before = {name: stub.update(name)["seq"] for name in ours}
    restart = stub.call("restart", resources=sorted(ours), timeout=5)
    assert sorted(restart["removed"]) == sorted(r["endpoint"] for r in ours.values())
    for name, seconds in restart["reregistered_after_s"].items():
        assert seconds < 1.0, f"{name} registered again {seconds:.2f} s after kubelet.sock was back"
    for name in ours:
        again = stub.update(name, after=before[name])
        assert again["endpoint"] != ours[name]["endpoint"]  # a new socket per start
        assert (tree / "plugins" / again["endpoint"]).exists() and again["devices"]
    (gpu,) = stub.allocate(GPU, ["gpu-0"])
    assert gpu["envs"]["KUBEXT_DEVICES"] == "gpu-0"


@pytest.mark.skipif(
    bool(stub_kubelet.sample_plugin_unavailable()),
    reason=str(stub_kubelet.sample_plugin_unavailable()),
)
def test_the_stub_against_the_upstream_sample_plugin(tree: Path, stub: StubKubelet) -> None:
    sample = stub_kubelet.start_sample_plugin(tree / "plugins", tree / "sample.log")
    try:
        reg = stub.registration(timeout=15)
        assert reg["resource"] == stub_kubelet.SAMPLE_RESOURCE and reg["version"] == "v1beta1"
        assert reg["endpoint"].startswith("dp.")
        assert reg["options"] == {
            "pre_start_required": False,
            "get_preferred_allocation_available": False,
        }
        devices = stub.update(stub_kubelet.SAMPLE_RESOURCE)["devices"]
        assert [(d["id"], d["health"]) for d in devices] == [
            ("Dev-1", "Healthy"),
            ("Dev-2", "Healthy"),
        ]
        (got,) = stub.allocate(stub_kubelet.SAMPLE_RESOURCE, ["Dev-1", "Dev-2"])
        assert got["mounts"] == [
            {"container_path": "/tmp/Dev-1", "host_path": "/tmp/Dev-1", "read_only": False},
            {"container_path": "/tmp/Dev-2", "host_path": "/tmp/Dev-2", "read_only": False},
        ]
        with pytest.raises(StubError) as err:
            stub.allocate(stub_kubelet.SAMPLE_RESOURCE, ["Dev-9"])
        assert "Dev-9" in err.value.answer["error"]["message"]
    finally:
        stub_kubelet.stop(sample)
