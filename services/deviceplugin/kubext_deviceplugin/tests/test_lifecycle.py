"""The plugin against a fake kubelet over real unix sockets: register, ListAndWatch updates on a
device node removed and re-created, Allocate with its gRPC codes, re-registration after a kubelet
restart (timed), several resources, and a clean shutdown."""

from __future__ import annotations

import gc
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kubext_proto.deviceplugin.v1beta1 import api_pb2

from .. import __main__ as entry
from .. import config, server
from ..core import model
from .fake_kubelet import FakeKubelet

EMPTY = api_pb2.Empty()


@pytest.fixture
def tree() -> Iterator[Path]:
    # Short, so the socket paths stay under the 107-byte unix socket limit.
    root = Path(tempfile.mkdtemp(prefix="dp-", dir="/tmp"))
    (root / "plugins").mkdir()
    (root / "dev").mkdir()
    for name in ("fake0", "fake1", "fakectl"):
        (root / "dev" / name).touch()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _config(tree: Path, **extra: object) -> config.Config:
    generic = {
        "root": str(tree),
        "groups": [
            {
                "name": "fake",
                "paths": [
                    {"path": "/dev/fake[0-9]", "permissions": "rwm"},
                    {"path": "/dev/fakectl"},
                ],
            }
        ],
    }
    return config.Config.model_validate(
        {
            "device_plugin_dir": str(tree / "plugins"),
            "scan_interval": 0.05,
            "resources": [
                {"name": "example.com/fake", "backend": "generic", "generic": generic},
                {"name": "example.com/gpu", "backend": "simulated", "simulated": {"count": 2}},
            ],
            **extra,
        }
    )


class Running:
    def __init__(self, cfg: config.Config) -> None:
        self.stop = threading.Event()
        self.plugins = entry.build_plugins(cfg)
        self.threads = entry.start(self.plugins, self.stop)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)
        for p in self.plugins:
            p.shutdown()
            p.backend.close()


@pytest.fixture
def kubelet(tree: Path) -> Iterator[FakeKubelet]:
    fake = FakeKubelet(tree / "plugins").start()
    yield fake
    fake.stop()


@pytest.fixture
def running(tree: Path, kubelet: FakeKubelet) -> Iterator[Running]:
    plugin = Running(_config(tree))
    yield plugin
    plugin.close()


def _registrations(kubelet: FakeKubelet, n: int) -> dict[str, api_pb2.RegisterRequest]:
    got = [kubelet.next_registration()[1] for _ in range(n)]
    return {r.resource_name: r for r in got}


def test_registers_each_resource_on_its_own_socket(running: Running, kubelet: FakeKubelet) -> None:
    regs = _registrations(kubelet, 2)
    assert sorted(regs) == ["example.com/fake", "example.com/gpu"]
    fake, gpu = regs["example.com/fake"], regs["example.com/gpu"]
    assert fake.version == "v1beta1" and fake.endpoint != gpu.endpoint
    assert fake.endpoint.startswith("kubext-example.com_fake-") and fake.endpoint.endswith(".sock")
    assert fake.options.get_preferred_allocation_available and not fake.options.pre_start_required
    with kubelet.dial(gpu.endpoint) as stub:
        opts = stub.GetDevicePluginOptions(EMPTY, timeout=5)
        assert opts.get_preferred_allocation_available and not opts.pre_start_required
        first = next(stub.ListAndWatch(EMPTY, timeout=5))
        assert [(d.ID, d.health) for d in first.devices] == [
            ("gpu-0", "Healthy"),
            ("gpu-1", "Healthy"),
        ]


def test_list_and_watch_follows_a_device_node_removed_and_back(
    tree: Path, running: Running, kubelet: FakeKubelet
) -> None:
    endpoint = _registrations(kubelet, 2)["example.com/fake"].endpoint
    with kubelet.dial(endpoint) as stub:
        stream = stub.ListAndWatch(EMPTY, timeout=10)
        assert [d.ID for d in next(stream).devices] == ["fake0", "fake1"]
        removed = time.monotonic()
        (tree / "dev" / "fake1").unlink()
        assert [d.ID for d in next(stream).devices] == ["fake0"]
        seen_removed = time.monotonic() - removed
        (tree / "dev" / "fake1").touch()
        assert [d.ID for d in next(stream).devices] == ["fake0", "fake1"]
        (tree / "dev" / "fakectl").unlink()  # the shared node gone: every device Unhealthy
        assert {d.health for d in next(stream).devices} == {"Unhealthy"}
        stream.cancel()
    assert seen_removed < 1.0


def test_unplugging_a_device_keeps_the_others_ids_and_no_kept_answer_outlives_it(
    tree: Path, running: Running, kubelet: FakeKubelet
) -> None:
    endpoint = _registrations(kubelet, 2)["example.com/fake"].endpoint
    fake0 = api_pb2.AllocateRequest(
        container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=["fake0"])]
    )
    with kubelet.dial(endpoint) as stub:
        stream = stub.ListAndWatch(EMPTY, timeout=10)
        assert [d.ID for d in next(stream).devices] == ["fake0", "fake1"]
        # Answered (and kept) before the unplug: the kept answer must not outlive the device.
        assert [
            d.host_path for d in stub.Allocate(fake0, timeout=5).container_responses[0].devices
        ] == ["/dev/fake0", "/dev/fakectl"]
        (tree / "dev" / "fake0").unlink()
        assert [d.ID for d in next(stream).devices] == ["fake1"]
        request = api_pb2.AllocateRequest(
            container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=["fake1"])]
        )
        resp = stub.Allocate(request, timeout=5).container_responses[0]
        assert [d.host_path for d in resp.devices] == ["/dev/fake1", "/dev/fakectl"]
        with pytest.raises(grpc.RpcError) as err:  # the unplugged ID names no other device
            stub.Allocate(fake0, timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        (tree / "dev" / "fakectl").unlink()  # the shared node gone: fake1 Unhealthy, refused
        assert {d.health for d in next(stream).devices} == {"Unhealthy"}
        with pytest.raises(grpc.RpcError) as err:
            stub.Allocate(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        stream.cancel()


def test_allocate_answers_specs_and_refuses_bad_ids_with_codes(
    running: Running, kubelet: FakeKubelet
) -> None:
    endpoint = _registrations(kubelet, 2)["example.com/fake"].endpoint
    with kubelet.dial(endpoint) as stub:
        request = api_pb2.AllocateRequest(
            container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=["fake1", "fake0"])]
        )
        resp = stub.Allocate(request, timeout=5).container_responses[0]
        assert dict(resp.envs) == {"KUBEXT_DEVICES": "fake1,fake0"}
        assert [(d.host_path, d.container_path, d.permissions) for d in resp.devices] == [
            ("/dev/fake1", "/dev/fake1", "rwm"),
            ("/dev/fakectl", "/dev/fakectl", "rw"),
            ("/dev/fake0", "/dev/fake0", "rwm"),
        ]
        for ids, code, named in (
            (["fake0", "gpu-9"], grpc.StatusCode.NOT_FOUND, "gpu-9"),
            ([], grpc.StatusCode.INVALID_ARGUMENT, "no device"),
        ):
            bad = api_pb2.AllocateRequest(
                container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=ids)]
            )
            with pytest.raises(grpc.RpcError) as err:
                stub.Allocate(bad, timeout=5)
            assert err.value.code() == code and named in err.value.details()
        # Allocating does not change health (the seed marked allocated devices Unhealthy).
        stream = stub.ListAndWatch(EMPTY, timeout=5)
        assert {d.health for d in next(stream).devices} == {"Healthy"}
        stream.cancel()
        preferred = stub.GetPreferredAllocation(
            api_pb2.PreferredAllocationRequest(
                container_requests=[
                    api_pb2.ContainerPreferredAllocationRequest(
                        available_deviceIDs=["fake1", "fake0"], allocation_size=1
                    )
                ]
            ),
            timeout=5,
        )
        assert list(preferred.container_responses[0].deviceIDs) == ["fake0"]


def test_concurrent_allocates_all_answer(running: Running, kubelet: FakeKubelet) -> None:
    endpoint = _registrations(kubelet, 2)["example.com/gpu"].endpoint
    results: list[str] = []
    with kubelet.dial(endpoint) as stub:

        def one(i: int) -> None:
            req = api_pb2.AllocateRequest(
                container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=[f"gpu-{i % 2}"])]
            )
            results.append(
                stub.Allocate(req, timeout=5).container_responses[0].envs["KUBEXT_DEVICES"]
            )

        threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == ["gpu-0"] * 8 + ["gpu-1"] * 8


def test_reregisters_within_a_second_of_a_kubelet_restart(
    tree: Path, running: Running, kubelet: FakeKubelet
) -> None:
    before = _registrations(kubelet, 2)
    back = kubelet.restart()
    after = {}
    for _ in range(2):
        at, req = kubelet.next_registration()
        after[req.resource_name] = req
        assert at - back < 1.0, f"re-registered {at - back:.2f} s after kubelet.sock came back"
    for name, req in after.items():
        assert req.endpoint != before[name].endpoint  # a new socket per start
        assert (tree / "plugins" / req.endpoint).exists()
        with kubelet.dial(req.endpoint) as stub:
            assert next(stub.ListAndWatch(EMPTY, timeout=5)).devices


def test_our_socket_removed_means_serve_and_register_again(
    tree: Path, running: Running, kubelet: FakeKubelet
) -> None:
    first = _registrations(kubelet, 2)["example.com/gpu"].endpoint
    removed = time.monotonic()
    (tree / "plugins" / first).unlink()
    at, again = kubelet.next_registration()
    assert again.resource_name == "example.com/gpu" and again.endpoint != first
    assert at - removed < 1.0


def test_clean_shutdown_removes_our_sockets(tree: Path, kubelet: FakeKubelet) -> None:
    plugin = Running(_config(tree))
    regs = _registrations(kubelet, 2)
    assert all((tree / "plugins" / r.endpoint).exists() for r in regs.values())
    plugin.close()
    assert sorted(p.name for p in (tree / "plugins").iterdir()) == ["kubelet.sock"]


def test_start_freezes_what_start_up_made(tree: Path, kubelet: FakeKubelet) -> None:
    gc.unfreeze()  # whatever an earlier test in this process froze
    assert gc.get_freeze_count() == 0
    plugin = Running(_config(tree))
    try:
        # The start-up objects are out of the collector's generations: a full collection
        # (the tail of an Allocate that waits behind it) no longer walks them.
        assert gc.get_freeze_count() > 10_000
    finally:
        plugin.close()
        gc.unfreeze()


def test_registration_waits_for_the_kubelet(tree: Path) -> None:
    plugin = Running(_config(tree))
    try:
        time.sleep(0.3)
        assert not any(p.registered.is_set() for p in plugin.plugins)
        kubelet = FakeKubelet(tree / "plugins").start()
        try:
            assert sorted(_registrations(kubelet, 2)) == ["example.com/fake", "example.com/gpu"]
        finally:
            kubelet.stop()
    finally:
        plugin.close()


def test_a_watch_ends_when_its_server_stops_not_at_its_next_wake() -> None:
    # A kubelet restart stops the server: its ListAndWatch streams must end at once, or the
    # stop's grace is spent waiting for them before the plugin can register again.
    state, stopping = server.ResourceState(), threading.Event()
    state.update(model.Inventory())
    seen = state.wait(0, 0)[1]
    returned = threading.Event()

    def watch() -> None:
        state.wait(seen, 60.0, stopping)
        returned.set()

    waiter = threading.Thread(target=watch, daemon=True)
    waiter.start()
    assert not returned.wait(0.3)  # nothing changed: it waits
    stopping.set()
    state.wake()
    assert returned.wait(10), "the watch waited on after wake()"
