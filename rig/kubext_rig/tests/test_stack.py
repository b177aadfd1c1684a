"""The main command's stack as configured: what `up` starts with and without the real node, each
service's config read by that service's own strict loader, and the gpu sample's pod."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubext import config as kconfig
from kubext_deviceplugin import config as deviceplugin_config
from kubext_rig import cluster, node, stack
from kubext_scheduler import config as scheduler_config
from kubext_scheduler import profiles_file


def _with_real_node(root: Path) -> None:
    """What ``node.enabled`` looks for: the host record the real node's `up` writes."""
    (root / "node").mkdir(parents=True)
    (root / "node" / "host.json").write_text("{}")


def test_without_the_real_node_the_scheduler_runs_and_the_device_plugin_does_not(
    tmp_path: Path,
) -> None:
    comps = stack._components(cluster.ClusterInfo(tmp_path), dist=Path("/dist"))
    assert [c.name for c in comps] == ["kubext-webhooks", "kubext-operator", "kubext-scheduler"]
    [sched] = [c for c in comps if c.name == "kubext-scheduler"]
    assert sched.argv[0] == "/dist/kubext-scheduler.pex"
    assert sched.health == f"http://127.0.0.1:{stack.SCHEDULER_HEALTH_PORT}/readyz"
    assert not (tmp_path / "services/deviceplugin.yaml").exists()
    assert "kubext-deviceplugin" not in stack.status(tmp_path)


def test_the_scheduler_config_loads_with_the_seeds_profile(tmp_path: Path) -> None:
    stack._components(cluster.ClusterInfo(tmp_path), dist=None)
    path = tmp_path / "services/scheduler.yaml"
    cfg = kconfig.load(scheduler_config.Config, path=path)
    assert not cfg.extender.enabled and cfg.standalone.enabled
    assert cfg.health.host == "127.0.0.1" and cfg.health.port == stack.SCHEDULER_HEALTH_PORT
    assert cfg.leader_election.enabled
    assert (cfg.leader_election.namespace, cfg.leader_election.name) == (
        stack.NAMESPACE,
        stack.SCHEDULER_NAME,
    )
    loaded = profiles_file.load(cfg.scheduler_config)
    assert list(loaded.frameworks) == [stack.SCHEDULER_NAME] and loaded.warnings == []
    fw = loaded.frameworks[stack.SCHEDULER_NAME]
    # The seed's weights (12.5.2), over the defaults.
    assert {k: fw.score_weights[k] for k in ("NodeResourceFit", "NodeAffinity")} == {
        "NodeResourceFit": 50,
        "NodeAffinity": 30,
    }
    # The samples `up` applies ask for that profile.
    samples = yaml.safe_load_all((stack._repo() / "examples/custom-scheduler.yaml").read_text())
    names = {
        (doc["spec"].get("template", {}).get("spec") or doc["spec"])["schedulerName"]
        for doc in samples
    }
    assert names == {stack.SCHEDULER_NAME}


def test_with_the_real_node_the_device_plugin_serves_simulated_gpus_to_its_kubelet(
    tmp_path: Path,
) -> None:
    _with_real_node(tmp_path)
    comps = stack._components(cluster.ClusterInfo(tmp_path), dist=Path("/dist"))
    assert [c.name for c in comps][-1] == "kubext-deviceplugin"
    cfg = kconfig.load(deviceplugin_config.Config, path=tmp_path / "services/deviceplugin.yaml")
    assert Path(cfg.device_plugin_dir) == node.DEVICE_PLUGINS_DIR
    assert cfg.health.port == stack.DEVICEPLUGIN_HEALTH_PORT
    [res] = cfg.resources
    assert (res.name, res.backend, res.simulated.count) == (
        stack.GPU_RESOURCE,
        "simulated",
        stack.GPU_DEVICES,
    )
    # Listed by status from then on (stopped: nothing runs here).
    assert stack.status(tmp_path)["kubext-deviceplugin"] == "stopped"


def test_a_config_left_by_an_up_with_the_real_node_is_removed_by_one_without(
    tmp_path: Path,
) -> None:
    _with_real_node(tmp_path)
    stack._components(cluster.ClusterInfo(tmp_path), dist=None)
    (tmp_path / "node/host.json").unlink()
    stack._components(cluster.ClusterInfo(tmp_path), dist=None)
    assert "kubext-deviceplugin" not in stack.status(tmp_path)


def test_the_gpu_sample_runs_on_the_real_node_with_one_gpu() -> None:
    pod = stack.gpu_sample_pod()
    spec = pod["spec"]
    assert isinstance(spec, dict)
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": node.NODE_NAME}
    assert [t["key"] for t in spec["tolerations"]] == [node.TAINT_KEY]
    [container] = spec["containers"]
    assert container["image"] == node.image_ref("echo-loop")
    assert container["imagePullPolicy"] == "Never"
    assert container["resources"] == {"limits": {stack.GPU_RESOURCE: "1"}}


@pytest.mark.parametrize(
    ("env", "ids"),
    [
        (["PATH=/bin", "KUBEXT_DEVICES=gpu-2"], ["gpu-2"]),
        (["KUBEXT_DEVICES=gpu-0,gpu-3"], ["gpu-0", "gpu-3"]),
        (["PATH=/bin"], []),
        (["KUBEXT_DEVICES="], []),
    ],
)
def test_device_ids_come_from_the_containers_env(env: list[str], ids: list[str]) -> None:
    assert stack.device_ids({"process": {"env": env}}) == ids
    assert stack.device_ids({}) == []


def test_with_the_real_node_the_samples_run_there_from_its_registry(tmp_path: Path) -> None:
    """The operator places its pods on the real node and names the pushed PostgreSQL images;
    the CSI driver (with its provisioner) starts before the operator; the pod policy trusts
    the registry the samples' images come from."""
    from kubext_csi import config as csi_config
    from kubext_operator import config as operator_config
    from kubext_webhooks import policy as webhooks_policy

    _with_real_node(tmp_path)
    registry = "127.0.0.1:15000"
    comps = stack._components(cluster.ClusterInfo(tmp_path), dist=Path("/dist"), registry=registry)
    assert [c.name for c in comps] == [
        "kubext-webhooks",
        "kubext-csi",
        "kubext-operator",
        "kubext-scheduler",
        "kubext-deviceplugin",
    ]
    op = kconfig.load(operator_config.Config, path=tmp_path / "services/operator.yaml")
    assert op.pod_placement.node_selector == {"kubernetes.io/hostname": node.NODE_NAME}
    assert [t.key for t in op.pod_placement.tolerations] == [node.TAINT_KEY]
    assert op.database.images["postgresql"] == f"{registry}/kubext/postgres:{{major}}"
    csi = kconfig.load(csi_config.Config, path=tmp_path / "services/csi.yaml")
    assert csi.provisioner.enabled and csi.health.port == stack.CSI_HEALTH_PORT
    policy = yaml.safe_load((tmp_path / "services/policy.yaml").read_text())
    registries = policy["spec"]["rules"]["allowedRegistries"]["registries"]
    assert registries[-2:] == ["localhost", registry] and "docker.io" in registries
    webhooks_policy.PodPolicy.model_validate(policy)  # the webhooks' own loader accepts it


def test_without_the_real_node_no_placement_and_no_csi(tmp_path: Path) -> None:
    from kubext_operator import config as operator_config

    comps = stack._components(cluster.ClusterInfo(tmp_path), dist=None)
    assert "kubext-csi" not in [c.name for c in comps]
    op = kconfig.load(operator_config.Config, path=tmp_path / "services/operator.yaml")
    assert op.pod_placement.node_selector == {} and op.database.images == {}
    policy = yaml.safe_load((tmp_path / "services/policy.yaml").read_text())
    assert policy["spec"]["rules"]["allowedRegistries"]["registries"][-1] == "localhost"


def test_the_samples_name_the_pushed_webapp_image() -> None:
    repo = stack._repo()
    local = stack.webapp_sample_image(repo)
    docs = stack.sample_manifests(repo, {local: "127.0.0.1:15000/kubext/webapp-sample:x"})
    [webapp] = [d for d in docs["items"] if d["kind"] == "WebApp"]
    assert webapp["spec"]["image"] == "127.0.0.1:15000/kubext/webapp-sample:x"
    # Unpushed (no real node): as the example names it, the image `./pants package` builds.
    docs = stack.sample_manifests(repo, {})
    [webapp] = [d for d in docs["items"] if d["kind"] == "WebApp"]
    assert webapp["spec"]["image"] == local
    kinds = sorted(d["kind"] for d in docs["items"])
    assert kinds == ["Database", "Deployment", "Pod", "WebApp"]


def test_pod_problems_say_why_a_pod_is_not_ready() -> None:
    def pod(name: str, node_name: str | None, **status: object) -> dict[str, object]:
        return {"metadata": {"name": name}, "spec": {"nodeName": node_name}, "status": status}

    ready = pod("a", "n", phase="Running", containerStatuses=[{"name": "c", "ready": True}])
    assert stack.pod_problems([ready], "n") == []
    pulling = pod(
        "b",
        "n",
        containerStatuses=[
            {"name": "c", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no"}}}
        ],
    )
    pending = pod(
        "c",
        None,
        conditions=[{"type": "PodScheduled", "status": "False", "message": "0/4 nodes"}],
    )
    assert stack.pod_problems([ready, pulling, pending], "n") == [
        "b/c: ImagePullBackOff no",
        "c on no node: 0/4 nodes",
    ]
    rows = [stack.Row("webapp default/hello", True, "3/3"), stack.Row("x", False, "why")]
    assert stack.table(rows).splitlines()[1:] == [
        "  webapp default/hello  yes    3/3",
        "  x                     NO     why",
    ]


def test_the_custom_scheduled_sample_asks_our_scheduler_for_the_real_node() -> None:
    pod = stack.custom_scheduled_pod("127.0.0.1:15000/kubext/webapp-sample:0.1.0")
    spec = pod["spec"]
    assert isinstance(spec, dict)
    assert spec["schedulerName"] == stack.SCHEDULER_NAME
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": node.NODE_NAME}
    assert [t["key"] for t in spec["tolerations"]] == [node.TAINT_KEY]
    # What the webhooks' pod policy requires of a pod in default.
    meta = pod["metadata"]
    assert isinstance(meta, dict) and {"app", "version", "environment"} <= set(meta["labels"])
    [c] = spec["containers"]
    assert set(c["resources"]) == {"requests", "limits"}


def test_the_backup_row_uses_the_operators_annotation_and_condition() -> None:
    from kubext.crds import database as crd
    from kubext_operator.planning import database as plan

    assert stack.BACKUP_NOW == plan.BACKUP_NOW
    spec = crd.DatabaseSpec.model_validate(
        {
            "type": "postgresql",
            "version": "15.20.0",
            "storage": {"size": "1Gi"},
            "backup": {"enabled": True, "schedule": "0 2 * * *", "retention": 3},
        }
    )
    [req] = plan.requests("orders", spec, {plan.BACKUP_NOW: "1"})
    assert req.condition == stack.BACKUP_CONDITION


def _ready_pod(name: str) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {"nodeName": node.NODE_NAME},
        "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": True}]},
    }


def _fake_cluster(
    monkeypatch: pytest.MonkeyPatch, objects: dict[tuple[str, ...], dict[str, object]]
) -> list[tuple[str, ...]]:
    """``stack._get_json`` answering from ``objects`` (keyed by kind, name or selector)."""
    asked: list[tuple[str, ...]] = []

    def get_json(_info: cluster.ClusterInfo, *args: str) -> dict[str, object]:
        asked.append(args)
        key = (args[0], args[-1]) if args[0] == "pods" else (args[0], args[1])
        return objects.get(key, {"error": f"{key} not found"})

    monkeypatch.setattr(stack, "_get_json", get_json)
    return asked


def test_database_row_counts_the_data_claims_and_says_why_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    info = cluster.ClusterInfo(tmp_path)
    selector = "app.kubernetes.io/name=database,app.kubernetes.io/instance=orders"
    claim = lambda name, phase: {  # noqa: E731
        "metadata": {"name": name},
        "spec": {"storageClassName": "kubext-local"},
        "status": {"phase": phase},
    }
    objects: dict[tuple[str, ...], dict[str, object]] = {
        ("database", "orders"): {"spec": {"replicas": 2}, "status": {"phase": "Running"}},
        ("pods", selector): {"items": [_ready_pod("orders-0"), _ready_pod("orders-1")]},
        ("pvc", "-n"): {
            "items": [
                claim("data-orders-0", "Bound"),
                claim("data-orders-1", "Bound"),
                claim("orders-backup", "Pending"),  # binds on a backup's first use
            ]
        },
    }
    _fake_cluster(monkeypatch, objects)
    row = stack.database_row(info, "default", "orders")
    assert row.ready, row
    assert (
        "2/2 PostgreSQL pods Ready" in row.detail
        and "2 claims Bound (class kubext-local)" in row.detail
    )
    crashing = _ready_pod("orders-1")
    crashing["status"] = {
        "containerStatuses": [
            {"name": "database", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        ]
    }
    objects[("pods", selector)] = {"items": [_ready_pod("orders-0"), crashing]}
    row = stack.database_row(info, "default", "orders")
    assert not row.ready and "orders-1/database: CrashLoopBackOff" in row.detail, row


def test_webapp_row_fetches_the_page_through_the_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><title>kubext WebApp sample</title></html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    selector = "app.kubernetes.io/name=webapp,app.kubernetes.io/instance=hello"
    objects: dict[tuple[str, ...], dict[str, object]] = {
        ("webapp", "hello"): {
            "spec": {"replicas": 2},
            "status": {"phase": "Running", "readyReplicas": 2},
        },
        ("pods", selector): {"items": [_ready_pod("hello-a"), _ready_pod("hello-b")]},
        # The Service's address: here the test's server.
        ("service", "hello"): {"spec": {"clusterIP": f"127.0.0.1:{server.server_port}"}},
    }
    _fake_cluster(monkeypatch, objects)
    try:
        row = stack.webapp_row(cluster.ClusterInfo(tmp_path), "default", "hello")
        assert row.ready and ": 200 'kubext WebApp sample'" in row.detail, row
        server.shutdown()
        server.server_close()
        row = stack.webapp_row(cluster.ClusterInfo(tmp_path), "default", "hello")
        assert not row.ready and "does not answer" in row.detail, row
    finally:
        server.server_close()
