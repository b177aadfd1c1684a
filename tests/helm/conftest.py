"""Fixtures for the chart tests: a Helm runner over built charts (the rig's pinned helm; no
cluster needed to lint or render), and the same runner pointed at the rig's cluster."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from helmcharts import Helm  # pants: no-infer-dep

from kubext_rig import tools

pytest_plugins = ["kubext_rig.pytest_plugin"]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm.with_built_charts(
        binary=str(tools.binary("helm")), work=tmp_path_factory.mktemp("helm")
    )


@pytest.fixture(scope="session")
def helm_on_cluster(helm: Helm, kube_cluster: Any) -> Helm:
    return dataclasses.replace(helm, kubeconfig=kube_cluster.kubeconfig)
