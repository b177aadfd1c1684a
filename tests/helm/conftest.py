"""Fixtures for the chart tests: the rig's cluster (and its pinned helm) and a Helm runner."""

from __future__ import annotations

from typing import Any

import pytest
from helmcharts import Helm  # pants: no-infer-dep

pytest_plugins = ["kubext_rig.pytest_plugin"]


@pytest.fixture(scope="session")
def helm(kube_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(
        binary=kube_cluster.bin("helm"),
        kubeconfig=kube_cluster.kubeconfig,
        work=tmp_path_factory.mktemp("helm"),
    )
