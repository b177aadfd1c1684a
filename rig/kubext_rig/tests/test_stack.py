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
