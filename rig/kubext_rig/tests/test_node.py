"""The real node's pure pieces (configuration, images) and its failure messages, without root."""

from __future__ import annotations

import io
import ipaddress
import json
import socket
import sys
import tarfile
import time
import tomllib
from hashlib import sha256
from pathlib import Path

import pytest

from kubext_rig import cluster, node, tools


def test_docker_archive_is_what_ctr_import_reads() -> None:
    archive = node.docker_archive(b"\x7fELF static", path="/pause", ref="kubext.invalid/pause:1")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        (manifest,) = json.loads(tar.extractfile("manifest.json").read())
        config = json.loads(tar.extractfile(manifest["Config"]).read())
        (layer_name,) = manifest["Layers"]
        layer = tar.extractfile(layer_name).read()
    assert manifest["RepoTags"] == ["kubext.invalid/pause:1"]
    assert (
        manifest["Config"]
        == sha256(json.dumps(config, sort_keys=True).encode()).hexdigest() + ".json"
    )
    assert config["rootfs"]["diff_ids"] == [f"sha256:{sha256(layer).hexdigest()}"]
    assert config["config"]["Entrypoint"] == ["/pause"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode) == ("pause", 0o755)
        assert tar.extractfile(member).read() == b"\x7fELF static"


def test_containerd_config_has_the_settings_real_node_md_needed(tmp_path: Path) -> None:
    conf = tomllib.loads(node.containerd_config(tmp_path))
    cri = conf["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["disable_apparmor"] is True and cri["enable_selinux"] is False
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["SystemdCgroup"] is False
    assert cri["sandbox_image"] == node.image_ref("pause")
    # Everything containerd keeps is under the rig's dir.
    for path in (conf["root"], conf["state"], conf["grpc"]["address"], runc["Root"]):
        assert path.startswith(str(tmp_path / "node")), path
    assert cri["cni"]["conf_dir"].startswith(str(tmp_path)) and cri["cni"]["bin_dir"].startswith(
        str(tmp_path)
    )


def test_kubelet_and_kube_proxy_configs(tmp_path: Path) -> None:
    kubelet = node.kubelet_config(tmp_path)
    assert kubelet["failCgroupV1"] is False and kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["failSwapOn"] is False and kubelet["clusterDNS"] == []
    # A busy shared disk does not taint the node disk-pressure (the defaults are 10-15%).
    assert {k: v for k, v in kubelet["evictionHard"].items() if k != "memory.available"} == {
        "nodefs.available": "2%",
        "nodefs.inodesFree": "2%",
        "imagefs.available": "2%",
    }
    # Nor does it delete the images the rig imported (pause is every pod's sandbox).
    assert kubelet["imageGCHighThresholdPercent"] == 100
    assert kubelet["address"] == node.NODE_IP
    assert (
        kubelet["containerRuntimeEndpoint"] == f"unix://{tmp_path}/node/containerd/containerd.sock"
    )
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert [t["key"] for t in kubelet["registerWithTaints"]] == [node.TAINT_KEY]
    proxy = node.kube_proxy_config(tmp_path)
    assert proxy["mode"] == "nftables"
    assert proxy["nodePortAddresses"] == [f"{node.NODE_IP}/32"]
    assert proxy["conntrack"]["maxPerCore"] == 0  # leaves the machine's conntrack sysctls alone


def test_pods_get_kubext_bridge_on_a_range_apart_from_kwoks_ipam_under_the_rig(
    tmp_path: Path,
) -> None:
    conflist = node.cni_conflist(tmp_path)
    bridge, portmap = conflist["plugins"]
    assert bridge["type"] == "kubext-bridge" and bridge["bridge"] == node.POD_BRIDGE
    (((rng,),),) = [bridge["ipam"]["ranges"]]
    pods = ipaddress.ip_network(rng["subnet"])
    assert not pods.overlaps(ipaddress.ip_network("10.244.0.0/16"))
    assert ipaddress.ip_address(node.NODE_IP) not in pods
    assert bridge["ipam"]["type"] == "host-local"
    # host-local keeps one file per reservation in <dataDir>/<network name>/.
    assert Path(bridge["ipam"]["dataDir"]) / conflist["name"] == node.ipam_dir(tmp_path)
    assert node.ipam_dir(tmp_path).is_relative_to(tmp_path)
    assert portmap == {
        "type": "portmap",
        "capabilities": {"portMappings": True},
        "backend": "nftables",
    }
    # The reference plugin, configured the same way (for comparisons).
    reference = node.cni_conflist(tmp_path, plugin="bridge")
    assert {**reference["plugins"][0], "type": "kubext-bridge"} == bridge


def test_the_cni_daemon_installs_the_launcher_where_containerd_looks(tmp_path: Path) -> None:
    cri = tomllib.loads(node.containerd_config(tmp_path))["plugins"]["io.containerd.grpc.v1.cri"]
    daemon = node.cni_daemon_config(tmp_path)
    assert daemon["cni_bin_dir"] == cri["cni"]["bin_dir"]
    assert Path(daemon["socket_path"]) == node.cni_socket(tmp_path)
    assert node.cni_socket(tmp_path).is_relative_to(tmp_path)
    assert len(str(node.cni_socket(tmp_path))) < 100  # a unix socket path has a limit
    assert daemon["health"] == {"host": "127.0.0.1", "port": node.CNI_HEALTH_PORT}
    # Every key is one the service accepts (its config model is strict).
    from kubext_cni import config

    config.Config.model_validate(daemon)
    daemon_proc = node._cni_daemon(tmp_path)
    assert daemon_proc.argv[-2:] == ["--config", str(tmp_path / "node/cni/kubext-cni.yaml")]
    assert str(tools.repo_root() / "services/cni") in daemon_proc.env["PYTHONPATH"].split(":")
    assert daemon_proc.health == f"http://127.0.0.1:{node.CNI_HEALTH_PORT}/readyz"
    order = list(node.COMPONENTS)
    assert order.index("kubext-cni") < order.index("kubelet")  # serves before pods need it
    assert ("inet", "kubext-cni") in node.NFT_TABLES  # down drops the masquerade table


def test_the_pod_network_handed_to_the_cni_release_stays_its_own_until_a_wiping_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node.tools, "binary", lambda name, **_: tmp_path / "bin" / name)
    names = lambda: [c.name for c in node._components(tmp_path)]  # noqa: E731
    assert "kubext-cni" in names() and not node.network_released(tmp_path)
    conf_dir = node.cni_conf_dir(tmp_path)
    conf_dir.mkdir(parents=True)
    (conf_dir / "10-kubext-rig.conflist").write_text("{}")
    node.release_network(tmp_path)
    assert node.network_released(tmp_path)
    # The kubelet starts the release's pod (host network): the node needs no daemon of ours.
    assert names() == ["registry", "containerd", "kubelet", "kube-proxy"]
    with pytest.raises(cluster.RigError, match="the cni release's"):
        node.start_cni_daemon(tmp_path)
    (conf_dir / "10-kubext.conflist").write_text("{}")  # the release's init container's
    node.drop_rig_conflist(tmp_path)
    assert [p.name for p in conf_dir.iterdir()] == ["10-kubext.conflist"]
    node.forget_release(tmp_path)
    assert "kubext-cni" in names() and not node.network_released(tmp_path)


def test_a_package_that_cannot_be_installed_is_one_line_naming_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(
        "#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n"
    )
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    (tmp_path / "logs").mkdir()
    with pytest.raises(cluster.RigError) as err:
        node._ensure_packages(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "containerd runc" in message and str(tmp_path / "logs" / "apt-get.log") in message
    assert "Unable to locate package" in (tmp_path / "logs" / "apt-get.log").read_text()


def test_a_kubelet_that_never_gets_ready_is_one_line_naming_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    monkeypatch.setattr(cluster, "kubectl", lambda *a, **k: json.dumps(not_ready))
    monkeypatch.setattr(cluster, "running_pid", lambda root, name: 4242)
    with pytest.raises(cluster.RigError) as err:
        node._wait_ready(cluster.ClusterInfo(tmp_path), timeout=0.5)
    message = str(err.value)
    assert "\n" not in message
    assert "kubelet" in message and str(tmp_path / "logs" / "kubelet.log") in message


def test_a_second_real_node_on_the_machine_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = tmp_path / "claim"
    monkeypatch.setattr(node, "MACHINE_CLAIM", claim)
    other, mine = tmp_path / "other", tmp_path / "mine"
    claim.write_text(str(other))
    running = {other: True}
    monkeypatch.setattr(
        cluster, "running_pid", lambda root, name: 4242 if running.get(root) else None
    )
    with pytest.raises(cluster.RigError, match="another cluster's real node runs"):
        node._claim(mine)
    assert claim.read_text() == str(other)
    running[other] = False  # that one is gone: the claim passes to us
    node._claim(mine)
    assert claim.read_text() == str(mine)


def test_containerd_pulls_from_the_rigs_registry_over_plain_http(tmp_path: Path) -> None:
    cri = tomllib.loads(node.containerd_config(tmp_path))["plugins"]["io.containerd.grpc.v1.cri"]
    hosts_dir = Path(cri["registry"]["config_path"])
    assert hosts_dir == node.registry_hosts_dir(tmp_path) and hosts_dir.is_relative_to(tmp_path)
    hosts = tomllib.loads(node.registry_hosts_toml())
    assert f"127.0.0.1:{node.REGISTRY_PORT}" == node.REGISTRY
    assert hosts["server"] == f"http://{node.REGISTRY}"
    assert hosts["host"][f"http://{node.REGISTRY}"]["capabilities"] == ["pull", "resolve", "push"]


def test_the_registry_serves_on_127_0_0_1_from_storage_under_the_rig(tmp_path: Path) -> None:
    conf = node.registry_config(tmp_path)
    assert conf["http"] == {"addr": node.REGISTRY}
    storage = conf["storage"]
    assert Path(storage["filesystem"]["rootdirectory"]).is_relative_to(tmp_path / "node")
    assert storage["delete"] == {"enabled": True}
    # Its port moves with the offset and is apart from every other port of the rig.
    others = {
        cluster.ETCD_PORT, cluster.ETCD_PEER_PORT, cluster.APISERVER_PORT,
        cluster.CONTROLLER_MANAGER_PORT, cluster.SCHEDULER_PORT, cluster.KWOK_PORT,
        node.KUBELET_PORT, node.KUBELET_HEALTHZ_PORT, node.PROXY_HEALTHZ_PORT,
        node.PROXY_METRICS_PORT, node.CNI_HEALTH_PORT,
    }  # fmt: skip
    assert node.REGISTRY_PORT not in others
    registry = node._registry(tmp_path)
    assert registry.argv[1:] == ["serve", str(tmp_path / "node/registry/config.yaml")]
    assert registry.health == f"http://{node.REGISTRY}/v2/"
    order = list(node.COMPONENTS)
    assert order.index("registry") < order.index("containerd")


def test_restart_kubelet_starts_a_new_process_and_waits_for_a_fresh_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in kubelet: a real process serving the health URL (python's http.server).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = cluster.Component(
        "kubelet",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        f"http://127.0.0.1:{port}/",
    )
    monkeypatch.setattr(node, "_components", lambda root: [fake])
    for sub in ("logs", "pids"):
        (tmp_path / sub).mkdir()
    info = cluster.ClusterInfo(tmp_path)
    with pytest.raises(cluster.RigError, match="no kubelet runs"):
        node.restart_kubelet(info)
    old = cluster.start_process(tmp_path, fake)
    node._wait(tmp_path, fake, timeout=30)
    # The Node's status as the old kubelet left it: Ready, but reported before the restart.
    heartbeat = {"at": "2026-01-01T00:00:00Z"}

    def kubectl(*args: object, **kwargs: object) -> str:
        ready = {"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat["at"]}
        return json.dumps({"status": {"conditions": [ready]}})

    monkeypatch.setattr(cluster, "kubectl", kubectl)
    try:
        with pytest.raises(cluster.RigError, match="not Ready after"):
            node.restart_kubelet(info, timeout=8)
        assert not Path(f"/proc/{old}").exists() or cluster._is_zombie(old)
        second = cluster.running_pid(tmp_path, "kubelet")
        assert second is not None and second != old
        heartbeat["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 5))
        new = node.restart_kubelet(info, timeout=30)
        assert new not in (old, second) and cluster.running_pid(tmp_path, "kubelet") == new
        assert not Path(f"/proc/{second}").exists() or cluster._is_zombie(second)
    finally:
        pid = cluster.running_pid(tmp_path, "kubelet")
        if pid is not None:
            cluster._stop_pid(pid, "kubelet")
