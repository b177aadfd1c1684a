"""The Database sample's pieces for the real node: the refs, the operator's config fragment (as the
operator's own config model and planning read it), the storage manifests, and what the push and
the build refuse (podman and the build script replaced by recorders: nothing built or pushed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubext.crds import database
from kubext_operator import config as operator_config
from kubext_operator.planning import common
from kubext_operator.planning import database as db_plan
from kubext_rig import images, node, real_node_csi, samples

REGISTRY = "127.0.0.1:18000"


def test_local_images_go_to_the_same_path_and_tag_in_the_registry() -> None:
    assert samples.remote_ref(REGISTRY, samples.POSTGRES_IMAGE) == f"{REGISTRY}/kubext/postgres:15"
    assert (
        samples.remote_ref(REGISTRY, samples.EXPORTER_IMAGE)
        == f"{REGISTRY}/kubext/postgres-exporter:0.11.1"
    )
    with pytest.raises(images.ImageError, match="no local image reference"):
        samples.remote_ref(REGISTRY, "postgres")


def _planned_pod(fragment: dict[str, object], version: str = "15.20.0") -> dict[str, object]:
    """The StatefulSet's pod template the operator plans for a monitored PostgreSQL Database,
    its settings built from ``fragment`` as the operator's app builds them from its config."""
    cfg = operator_config.Config.model_validate(fragment)
    settings = db_plan.Settings(
        images=dict(cfg.database.images),
        exporter_images=dict(cfg.database.exporter_images),
        placement=common.Placement(
            node_selector=dict(cfg.pod_placement.node_selector),
            tolerations=tuple(t.manifest() for t in cfg.pod_placement.tolerations),
        ),
    )
    spec = database.DatabaseSpec.model_validate(
        {
            "type": "postgresql",
            "version": version,
            "storage": {"size": "1Gi"},
            "monitoring": {"enabled": True, "metrics": ["connections", "disk"]},
        }
    )
    owner = common.Owner(
        api_version="db.example.com/v1", kind="Database", name="orders", namespace="default",
        uid="u1", generation=1,
    )  # fmt: skip
    planned = db_plan.statefulset(owner, spec, settings)
    template: dict[str, object] = planned.body["spec"]["template"]
    return template


def test_the_operator_fragment_runs_the_pushed_images_on_the_real_node() -> None:
    fragment = samples.database_operator_config(REGISTRY)
    pod = _planned_pod(fragment)["spec"]
    assert isinstance(pod, dict)
    db, exporter = pod["containers"]
    assert db["image"] == f"{REGISTRY}/kubext/postgres:15"  # spec.version 15.20.0 -> :15
    assert exporter["image"] == f"{REGISTRY}/kubext/postgres-exporter:0.11.1"
    # Debian's 0.11 exporter: its two collectors only, no v0.15 flag it would refuse.
    assert "--collector.database" in exporter["args"]
    assert not any("stat_database" in arg for arg in exporter["args"])
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": node.NODE_NAME}
    assert pod["tolerations"] == [
        {"key": node.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_the_fragment_merges_into_an_operator_config_keeping_its_keys() -> None:
    base = {"kubeconfig": "/k", "database": {"image_registry": "mirror.example"}}
    merged = samples.operator_config(REGISTRY, base)
    assert merged["kubeconfig"] == "/k"
    assert merged["database"]["image_registry"] == "mirror.example"
    assert merged["database"]["images"] == {"postgresql": f"{REGISTRY}/kubext/postgres:{{major}}"}
    assert merged["pod_placement"] == samples.placement()
    operator_config.Config.model_validate(merged)  # every key one the operator accepts


def test_the_storage_class_is_our_drivers_default_wffc_delete_expandable() -> None:
    listed = samples.storage_manifests()["items"]
    assert [i["kind"] for i in listed] == ["CSIDriver", "StorageClass"]
    driver, klass = listed
    assert driver == real_node_csi.csi_driver_manifest()
    assert driver["spec"]["attachRequired"] is False
    assert klass["metadata"] == {
        "name": "kubext-local",
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
    }
    assert klass["provisioner"] == real_node_csi.DRIVER
    assert (klass["volumeBindingMode"], klass["reclaimPolicy"]) == (
        "WaitForFirstConsumer",
        "Delete",
    )
    assert klass["allowVolumeExpansion"] is True
    assert samples.storage_class(default=False)["metadata"]["annotations"] == {}


def test_the_csi_config_registers_with_the_kubelet_and_provisions(tmp_path: Path) -> None:
    cfg = samples.csi_driver_config(tmp_path, kubeconfig="/kc", health_port=19084)
    assert cfg["registration"] == {"enabled": True, "kubelet_dir": str(tmp_path / "node/kubelet")}
    assert cfg["provisioner"] == {"enabled": True, "kubeconfig": "/kc", "resync_period": 5.0}
    assert cfg["health"] == {"host": "127.0.0.1", "port": 19084}
    assert cfg["node_id"] == node.NODE_NAME
    from kubext_csi import config as csi_config  # the driver's own model takes every key

    csi_config.Config.model_validate(cfg)


def test_a_missing_image_fails_before_any_push(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []

    def podman(*args: str, timeout: float = 0) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        present = args[:2] == ("image", "exists") and args[2] == samples.POSTGRES_IMAGE
        return subprocess.CompletedProcess(args, 0 if present else 1, "", "")

    monkeypatch.setattr(images, "_podman", podman)
    monkeypatch.setattr(images, "check_registry", lambda registry: None)
    with pytest.raises(images.ImageError) as refused:
        samples.push_local_images(REGISTRY, samples.POSTGRES_IMAGES)
    assert str(refused.value) == (
        f"not built: {samples.EXPORTER_IMAGE} (run images/postgres/build.sh)"
    )
    assert [c[:2] for c in calls] == [("image", "exists")] * 2  # nothing tagged or pushed


def test_the_push_tags_and_pushes_each_image_over_plain_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, ...]] = []

    def podman(*args: str, timeout: float = 0) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(images, "_podman", podman)
    monkeypatch.setattr(images, "check_registry", lambda registry: None)
    pushed = samples.push_local_images(REGISTRY, [samples.POSTGRES_IMAGE])
    target = f"{REGISTRY}/kubext/postgres:15"
    assert pushed == {samples.POSTGRES_IMAGE: target}
    assert calls[1:] == [
        ("tag", samples.POSTGRES_IMAGE, target),
        ("push", "--tls-verify=false", target),
    ]


def test_a_failed_build_is_one_line_with_the_scripts_last_words(tmp_path: Path) -> None:
    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert argv == [str(tmp_path / "images/postgres/build.sh")]
        err = "[rig-build] images-postgres: building\nE: mirror unreachable\n"
        return subprocess.CompletedProcess(argv, 1, "", err)

    with pytest.raises(images.ImageError) as failed:
        samples.build_postgres_images(tmp_path, run=run)
    assert str(failed.value) == "images/postgres/build.sh failed: E: mirror unreachable"
