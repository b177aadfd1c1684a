"""Discovery: simulated devices, a fake device tree for the generic backend, a fake NVML."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .. import backends, config
from ..backends import generic, nvidia, simulated
from ..core import allocation, model
from ..core.errors import Code, PluginError
from . import fake_nvml


def test_simulated_is_the_seeds_devices() -> None:
    inv = simulated.Simulated(config.SimulatedConfig(count=3)).scan()
    assert [(d.id, d.health, d.nodes) for d in inv.devices] == [
        ("gpu-0", "Healthy", ()),
        ("gpu-1", "Healthy", ()),
        ("gpu-2", "Healthy", ()),
    ]


def _generic(root: Path, *groups: dict) -> generic.Generic:
    cfg = config.GenericConfig.model_validate({"root": str(root), "groups": list(groups)})
    return generic.Generic(cfg)


def test_generic_glob_each_match_a_device_with_shared_paths(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    for name in ("fpga1", "fpga0", "fpgactl"):
        (tmp_path / "dev" / name).touch()
    backend = _generic(
        tmp_path,
        {
            "name": "fpga",
            "paths": [
                {"path": "/dev/fpga[0-9]", "permissions": "rwm"},
                {"path": "/dev/fpgactl"},
                {
                    "path": "/opt/fpga-lib",
                    "type": "mount",
                    "mount_path": "/lib/x",
                    "optional": True,
                },
            ],
        },
    )
    inv = backend.scan()
    assert [d.id for d in inv.devices] == ["fpga0", "fpga1"]
    first = inv.devices[0]
    assert [(n.host_path, n.permissions) for n in first.nodes] == [
        ("/dev/fpga0", "rwm"),
        ("/dev/fpgactl", "rw"),
    ]
    assert first.healthy and first.mounts == ()  # the optional lib dir is absent: still healthy
    (tmp_path / "opt" / "fpga-lib").mkdir(parents=True)
    assert [(m.host_path, m.container_path) for m in backend.scan().devices[0].mounts] == [
        ("/opt/fpga-lib", "/lib/x")
    ]


def test_generic_unplug_and_replug(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    for name in ("tty0", "tty1", "fuse"):
        (tmp_path / "dev" / name).touch()
    backend = _generic(
        tmp_path,
        {"name": "tty", "paths": [{"path": "/dev/tty*"}]},
        {"name": "fuse", "paths": [{"path": "/dev/fuse"}], "count": 3},
    )
    assert [d.id for d in backend.scan().devices] == [
        "fuse0-0", "fuse0-1", "fuse0-2", "tty0", "tty1",
    ]  # fmt: skip
    (tmp_path / "dev" / "tty1").unlink()
    (tmp_path / "dev" / "fuse").unlink()
    inv = backend.scan()
    # A glob match unplugged is gone; a literal path gone stays listed, Unhealthy.
    assert [(d.id, d.health) for d in inv.devices] == [
        ("fuse0-0", "Unhealthy"), ("fuse0-1", "Unhealthy"), ("fuse0-2", "Unhealthy"),
        ("tty0", "Healthy"),
    ]  # fmt: skip
    (tmp_path / "dev" / "tty1").touch()
    (tmp_path / "dev" / "fuse").touch()
    assert all(d.healthy for d in backend.scan().devices) and len(backend.scan().devices) == 5
    assert backend.missing_patterns() == []
    assert _generic(tmp_path, {"name": "x", "paths": [{"path": "/dev/nope*"}]}).missing_patterns()


def test_generic_ids_are_stable_across_unplug_and_replug(tmp_path: Path) -> None:
    """An ID names the device it is: unplugging fake1 of fake0..2 leaves fake0 and fake2 (not a
    shifted fake0, fake1 where fake1 would be /dev/fake2), and a replug brings fake1 back."""
    (tmp_path / "dev").mkdir()
    for name in ("fake0", "fake1", "fake2"):
        (tmp_path / "dev" / name).touch()
    backend = _generic(tmp_path, {"name": "fake", "paths": [{"path": "/dev/fake[0-9]"}]})
    before = {d.id: [n.host_path for n in d.nodes] for d in backend.scan().devices}
    assert before == {"fake0": ["/dev/fake0"], "fake1": ["/dev/fake1"], "fake2": ["/dev/fake2"]}
    (tmp_path / "dev" / "fake1").unlink()
    inv = backend.scan()
    assert [d.id for d in inv.devices] == ["fake0", "fake2"]
    got = allocation.allocate(inv, ["fake2"], allocation.AllocateOptions())
    assert [n.host_path for n in got.devices] == ["/dev/fake2"]
    with pytest.raises(PluginError) as err:  # the unplugged ID is gone, not re-used
        allocation.allocate(inv, ["fake1"], allocation.AllocateOptions())
    assert err.value.code == Code.NOT_FOUND
    (tmp_path / "dev" / "fake1").touch()
    assert {d.id: [n.host_path for n in d.nodes] for d in backend.scan().devices} == before


def test_generic_replicas_keep_their_device_and_suffix(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    for name in ("card0", "card1", "card2"):
        (tmp_path / "dev" / name).touch()
    backend = _generic(tmp_path, {"name": "gpu", "paths": [{"path": "/dev/card*"}], "count": 2})
    (tmp_path / "dev" / "card0").unlink()
    assert [(d.id, d.nodes[0].host_path) for d in backend.scan().devices] == [
        ("gpu1-0", "/dev/card1"), ("gpu1-1", "/dev/card1"),
        ("gpu2-0", "/dev/card2"), ("gpu2-1", "/dev/card2"),
    ]  # fmt: skip


def test_generic_ids_from_odd_or_long_paths_are_valid_distinct_and_stable(tmp_path: Path) -> None:
    """Paths outside the ID alphabet, or too long, get a hash of the path: valid (<= 63, the
    kubelet's alphabet), distinct from each other and the same on every scan."""
    for rel in ("1/2", "1/2_3", "1/2.3", "1.2/3", "a b/c", "x" * 80 + "/y", "x" * 81 + "/y"):
        (tmp_path / "dev/bus" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "dev/bus" / rel).touch()
    backend = _generic(tmp_path, {"name": "usb", "paths": [{"path": "/dev/bus/*/*"}], "count": 3})
    first = backend.scan().devices
    ids = [d.id for d in first]
    assert len(set(ids)) == len(ids) == 7 * 3
    assert [model.id_problem(i) for i in ids] == [None] * len(ids)
    by_path = {d.nodes[0].host_path: d.id for d in first if d.id.endswith("-0")}
    assert by_path["/dev/bus/1/2"] == "usb1.2-0" and by_path["/dev/bus/1/2_3"] == "usb1.2_3-0"
    hashed = by_path["/dev/bus/1.2/3"]  # '.' is what '/' becomes: such a path is hashed
    assert hashed.startswith("usb1.2_3-") and len(hashed) == len("usb1.2_3-") + 10 + 2
    assert by_path["/dev/bus/a b/c"].startswith("usba_b_c-")
    assert len(by_path["/dev/bus/" + "x" * 80 + "/y"]) == 63
    (tmp_path / "dev/bus/1/2").unlink()
    assert [d.id for d in backend.scan().devices] == [i for i in ids if not i.startswith("usb1.2-")]


def test_generic_ids_colliding_across_groups_are_resolved_by_group_order(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    for name in ("tty10", "ttyS0"):
        (tmp_path / "dev" / name).touch()
    backend = _generic(
        tmp_path,
        {"name": "tty", "paths": [{"path": "/dev/tty[0-9]*"}]},  # /dev/tty10 -> tty + 10
        {"name": "tty1", "paths": [{"path": "/dev/ttyS*"}]},  # /dev/ttyS0 -> tty1 + 0
    )
    got = {d.nodes[0].host_path: d.id for d in backend.scan().devices}
    assert got["/dev/tty10"] == "tty10"  # the first group keeps the plain ID
    assert got["/dev/ttyS0"].startswith("tty10-") and model.id_problem(got["/dev/ttyS0"]) is None
    assert {d.nodes[0].host_path: d.id for d in backend.scan().devices} == got


GPUS = [
    fake_nvml.Gpu("GPU-aaaa", 0, "00000000:3B:00.0"),
    fake_nvml.Gpu("GPU-bbbb", 1, "00000000:AF:00.0"),
]


def _sysfs(tmp_path: Path) -> str:
    for bus, numa in (("0000:3b:00.0", "0"), ("0000:af:00.0", "1")):
        d = tmp_path / "sys/bus/pci/devices" / bus
        d.mkdir(parents=True)
        (d / "numa_node").write_text(numa + "\n")
    return str(tmp_path / "sys")


def test_nvidia_uuids_numa_and_nodes(tmp_path: Path) -> None:
    nvml = fake_nvml.fake(GPUS)
    backend = nvidia.Nvidia(
        config.NvidiaConfig(driver_root=str(tmp_path)), nvml=nvml, sysfs=_sysfs(tmp_path)
    )
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/nvidiactl").touch()
    try:
        inv = backend.scan()
        assert [(d.id, d.numa_node, d.healthy) for d in inv.devices] == [
            ("GPU-aaaa", 0, True),
            ("GPU-bbbb", 1, True),
        ]
        assert [n.host_path for n in inv.devices[1].nodes] == ["/dev/nvidia1", "/dev/nvidiactl"]
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("xid", "on", "unhealthy"),
    [
        pytest.param(43, 0, [], id="application-xid-skipped"),
        pytest.param(79, 1, ["GPU-bbbb"], id="fallen-off-the-bus"),
        pytest.param(48, None, ["GPU-aaaa", "GPU-bbbb"], id="no-device-means-all"),
    ],
)
def test_nvidia_critical_xid_policy(
    tmp_path: Path, xid: int, on: int | None, unhealthy: list[str]
) -> None:
    nvml = fake_nvml.fake(GPUS)
    backend = nvidia.Nvidia(config.NvidiaConfig(), nvml=nvml, sysfs=_sysfs(tmp_path), start=False)
    device = None if on is None else GPUS[on]
    backend.handle_event(fake_nvml.Event(nvml.nvmlEventTypeXidCriticalError, xid, device))
    assert [d.id for d in backend.scan().devices if not d.healthy] == unhealthy


def test_nvidia_event_watcher_marks_the_gpu_within_a_second(tmp_path: Path) -> None:
    nvml = fake_nvml.fake(GPUS)
    backend = nvidia.Nvidia(config.NvidiaConfig(), nvml=nvml, sysfs=_sysfs(tmp_path))
    try:
        nvml.events.put(fake_nvml.Event(nvml.nvmlEventTypeXidCriticalError, 79, GPUS[0]))
        deadline = time.monotonic() + 1
        while backend.scan().devices[0].healthy and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [d.id for d in backend.scan().devices if not d.healthy] == ["GPU-aaaa"]
    finally:
        backend.close()


def test_nvidia_lists_mig_devices_when_enabled(tmp_path: Path) -> None:
    gpus = [fake_nvml.Gpu("GPU-aaaa", 0, "00000000:3B:00.0", mig=["MIG-1", "MIG-2"])]
    sysfs = _sysfs(tmp_path)
    on = nvidia.Nvidia(config.NvidiaConfig(), nvml=fake_nvml.fake(gpus), sysfs=sysfs, start=False)
    off = nvidia.Nvidia(
        config.NvidiaConfig(mig=False), nvml=fake_nvml.fake(gpus), sysfs=sysfs, start=False
    )
    assert [(d.id, d.numa_node) for d in on.scan().devices] == [("MIG-1", 0), ("MIG-2", 0)]
    assert [d.id for d in off.scan().devices] == ["GPU-aaaa"]


def test_nvidia_without_the_binding_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    with pytest.raises(nvidia.NvmlMissing, match="nvidia-ml-py"):
        backends.build(config.ResourceConfig(backend="nvidia"))
