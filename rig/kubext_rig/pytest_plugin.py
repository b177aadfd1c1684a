"""pytest fixtures over the shared local control plane.

Enable with ``pytest_plugins = ["kubext_rig.pytest_plugin"]`` in a conftest. The cluster is started
once (file-locked, shared by every test process) and left running; the test command stops it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from kubext_rig import cluster


@pytest.fixture(scope="session")
def kube_cluster() -> cluster.ClusterInfo:
    nodes = int(os.environ.get("KUBEXT_RIG_NODES", "3"))
    return cluster.up(nodes=nodes)


@pytest.fixture(scope="session")
def kube_api(kube_cluster: cluster.ClusterInfo) -> Iterator[client.ApiClient]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=kube_cluster.kubeconfig, client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        yield api


@pytest.fixture
def namespace(kube_api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (without waiting) afterwards."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
