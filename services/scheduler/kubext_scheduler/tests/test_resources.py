"""Pod requests as kube-scheduler computes them (resource.PodRequests), by hand-computed tables."""

from __future__ import annotations

import pytest

from kubext_scheduler.framework import resources
from kubext_scheduler.tests.objects import container, pod

SIDECAR = {"restartPolicy": "Always"}


@pytest.mark.parametrize(
    ("spec", "cpu", "memory"),
    [
        pytest.param(
            pod(containers=[container(cpu="100m", memory="128Mi")]), 100, 128 << 20, id="one"
        ),
        pytest.param(
            pod(containers=[container("a", cpu="100m"), container("b", cpu="250m")]),
            350,
            0,
            id="containers-summed",
        ),
        pytest.param(
            pod(containers=[container(cpu="100m")], init=[container("i", cpu="500m")]),
            500,
            0,
            id="init-by-max",
        ),
        pytest.param(
            pod(
                containers=[container(cpu="300m")],
                init=[container("i1", cpu="200m"), container("i2", cpu="100m")],
            ),
            300,
            0,
            id="init-below-containers",
        ),
        pytest.param(
            # The sidecar runs beside the app (100m + 50m) and beside i2 (50m + 200m).
            pod(
                containers=[container(cpu="100m")],
                init=[{**container("side", cpu="50m"), **SIDECAR}, container("i2", cpu="200m")],
            ),
            250,
            0,
            id="sidecar-added-to-later-init",
        ),
        pytest.param(
            pod(
                containers=[container(cpu="100m")],
                init=[container("i1", cpu="120m"), {**container("side", cpu="50m"), **SIDECAR}],
            ),
            150,
            0,
            id="init-before-sidecar-runs-alone",
        ),
        pytest.param(
            pod(
                containers=[container(cpu="100m", memory="1Gi")],
                overhead={"cpu": "250m", "memory": "120Mi"},
            ),
            350,
            (1 << 30) + (120 << 20),
            id="overhead-added",
        ),
        pytest.param(
            pod(containers=[container(cpu="0.5m"), container("b", cpu="0.5m")]),
            1,
            0,
            id="summed-exactly-then-rounded-up",
        ),
        pytest.param(
            pod(
                containers=[container(cpu="1"), container("b", cpu="1")],
                resources={"requests": {"cpu": "1500m"}},
            ),
            1500,
            0,
            id="pod-level-requests-win",
        ),
    ],
)
def test_pod_requests(spec: dict, cpu: int, memory: int) -> None:
    got = resources.pod_requests(spec)
    assert (got.milli_cpu, got.memory) == (cpu, memory)


def test_extended_resources_and_storage() -> None:
    got = resources.pod_requests(
        pod(containers=[container(ephemeral_storage="1Gi", **{"example.com/gpu": "2"})])
    )
    assert got.ephemeral_storage == 1 << 30
    assert got.scalar == {"example.com/gpu": 2}


def test_non_missing_defaults_only_for_containers_that_name_none() -> None:
    spec = pod(containers=[container("a"), container("b", cpu="0", memory="0")])
    got = resources.pod_requests(spec, non_missing=True)
    assert (got.milli_cpu, got.memory) == (100, 200 << 20)


def test_an_invalid_quantity_names_the_field() -> None:
    with pytest.raises(
        resources.InvalidObject, match=r"spec\.initContainers\[0\]\.resources\.requests\.cpu"
    ):
        resources.pod_requests(pod(init=[container(cpu="lots")]))


def test_a_node_without_allocatable_has_room_for_nothing() -> None:
    alloc = resources.node_allocatable({"metadata": {"name": "n"}, "status": {}})
    assert alloc.allowed_pods == 0 and alloc.resources.is_zero()
