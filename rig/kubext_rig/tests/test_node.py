"""The real node's pure pieces (configuration, images) and its failure messages, without root."""

from __future__ import annotations

import io
import ipaddress
import json
import tarfile
import tomllib
from hashlib import sha256
from pathlib import Path

import pytest

from kubext_rig import cluster, node


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


def test_pod_range_is_apart_from_kwoks_and_ipam_stays_under_the_rig(tmp_path: Path) -> None:
    conflist = node.cni_conflist(tmp_path)
    bridge, portmap = conflist["plugins"]
    (((rng,),),) = [bridge["ipam"]["ranges"]]
    pods = ipaddress.ip_network(rng["subnet"])
    assert not pods.overlaps(ipaddress.ip_network("10.244.0.0/16"))
    assert ipaddress.ip_address(node.NODE_IP) not in pods
    assert bridge["ipMasq"] is False  # nothing leaves the machine
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))
    assert portmap["type"] == "portmap"


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
