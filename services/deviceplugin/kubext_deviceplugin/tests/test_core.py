"""The pure core: ID checks, Allocate responses, NUMA-aware preferred allocation and the CDI spec."""

from __future__ import annotations

import pytest

from ..core import allocation, cdi, model
from ..core.errors import Code, PluginError

CTL = model.DeviceNode("/dev/ctl", "/dev/ctl", "rw")


def gpu(i: int, *, numa: int | None = 0, healthy: bool = True) -> model.Device:
    node = model.DeviceNode(f"/dev/gpu{i}", f"/dev/gpu{i}", "rwm")
    return model.Device(f"gpu-{i}", healthy=healthy, numa_node=numa, nodes=(node, CTL))


INVENTORY = model.Inventory.of(
    [gpu(0, numa=0), gpu(1, numa=0), gpu(2, numa=1), gpu(3, numa=1), gpu(4, numa=1),
     gpu(5, numa=1, healthy=False)]
)  # fmt: skip


def test_allocate_gives_nodes_envs_and_keeps_devices_healthy() -> None:
    before = INVENTORY
    got = allocation.allocate(INVENTORY, ["gpu-1", "gpu-0"], allocation.AllocateOptions())
    assert got.envs == {"KUBEXT_DEVICES": "gpu-1,gpu-0"}
    # The shared control node is listed once.
    assert [n.host_path for n in got.devices] == ["/dev/gpu1", "/dev/ctl", "/dev/gpu0"]
    assert got.devices[0].permissions == "rwm" and got.cdi_devices == ()
    # The seed marked allocated devices Unhealthy; they stay Healthy.
    assert before == INVENTORY and all(d.healthy for d in INVENTORY.devices[:5])


def test_allocate_with_cdi_names_devices_instead_of_specs() -> None:
    opts = allocation.AllocateOptions(
        ids_env="X", envs={"A": "1"}, annotations={"k": "v"}, cdi_kind="example.com/gpu"
    )
    got = allocation.allocate(INVENTORY, ["gpu-2"], opts)
    assert got.cdi_devices == ("example.com/gpu=gpu-2",) and got.devices == ()
    assert got.envs == {"A": "1", "X": "gpu-2"} and got.annotations == {"k": "v"}


@pytest.mark.parametrize(
    ("ids", "code", "named"),
    [
        pytest.param([], Code.INVALID_ARGUMENT, "no device", id="empty"),
        pytest.param(["gpu-0", "gpu-0"], Code.INVALID_ARGUMENT, "gpu-0", id="repeated"),
        pytest.param(["gpu-0", "nope", "gone"], Code.NOT_FOUND, "nope, gone", id="unknown"),
        pytest.param(["gpu-0", "gpu-5"], Code.FAILED_PRECONDITION, "gpu-5", id="unhealthy"),
    ],
)
def test_bad_ids_are_refused_by_name(ids: list[str], code: Code, named: str) -> None:
    with pytest.raises(PluginError) as err:
        allocation.allocate(INVENTORY, ids, allocation.AllocateOptions())
    assert err.value.code == code and named in err.value.message


ALL = [d.id for d in INVENTORY.devices]


@pytest.mark.parametrize(
    ("available", "must", "size", "want"),
    [
        pytest.param(ALL, [], 2, ["gpu-0", "gpu-1"], id="tightest-node-that-fits"),
        pytest.param(ALL, [], 3, ["gpu-2", "gpu-3", "gpu-4"], id="only-node-1-fits-3"),
        pytest.param(ALL, [], 4, ["gpu-2", "gpu-3", "gpu-4", "gpu-0"], id="spill-from-fullest"),
        pytest.param(ALL, ["gpu-3"], 2, ["gpu-3", "gpu-2"], id="must-include-pulls-its-node"),
        pytest.param(["gpu-5", "gpu-0"], [], 2, ["gpu-0"], id="never-unhealthy"),
        pytest.param(["gpu-0", "zz"], [], 1, ["gpu-0"], id="never-unknown"),
    ],
)
def test_preferred_packs_numa_nodes(
    available: list[str], must: list[str], size: int, want: list[str]
) -> None:
    assert allocation.preferred(INVENTORY, available, must, size) == want


def test_ids_over_63_characters_or_odd_characters_are_named() -> None:
    assert model.id_problem("a" * 63) is None
    assert "longer than 63" in (model.id_problem("a" * 64) or "")
    assert model.id_problem("gpu 0") is not None
    with pytest.raises(ValueError, match="gpu-0"):
        model.Inventory.of([gpu(0), gpu(0)])


def test_cdi_spec_lists_each_device_with_its_edits() -> None:
    mount = model.Mount("/opt/lib", "/usr/lib/x", read_only=True)
    inv = model.Inventory.of(
        [model.Device("d0", nodes=(CTL,), mounts=(mount,), envs=(("A", "1"),))]
    )
    got = cdi.spec("example.com/gpu", inv)
    assert got["kind"] == "example.com/gpu" and got["cdiVersion"] == cdi.CDI_VERSION
    assert got["devices"] == [
        {
            "name": "d0",
            "containerEdits": {
                "deviceNodes": [{"path": "/dev/ctl", "hostPath": "/dev/ctl", "permissions": "rw"}],
                "mounts": [
                    {
                        "hostPath": "/opt/lib",
                        "containerPath": "/usr/lib/x",
                        "options": ["bind", "ro"],
                    }
                ],
                "env": ["A=1"],
            },
        }
    ]
    assert cdi.file_name("example.com/gpu") == "kubext-example.com_gpu.json"
