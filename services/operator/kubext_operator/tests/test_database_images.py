"""The Database images: config database.images / exporter_images, validated, and the planning
that puts them into the StatefulSet, the backup CronJob and the on-demand Jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubext import config as kconfig
from kubext.crds import database as crd
from kubext_operator import config
from kubext_operator.planning import common, monitoring
from kubext_operator.planning import database as plan

OWNER = common.Owner("db.example.com/v1", "Database", "orders", "prod", "uid-9", generation=2)
PRIVATE = "registry.example:5000/kubext/postgres:{major}"


def _spec(**over: Any) -> crd.DatabaseSpec:
    body = {
        "type": "postgresql",
        "version": "15.20.0",
        "storage": {"size": "1Gi"},
        "backup": {"enabled": True, "schedule": "0 2 * * *", "retention": 3},
        "monitoring": {"enabled": True, "metrics": ["connections"]},
        **over,
    }
    return crd.DatabaseSpec.model_validate(body)


def _images(settings: plan.Settings, spec: crd.DatabaseSpec) -> dict[str, str]:
    """Container name -> image, over every pod the planning makes (a backup-now Job too)."""
    reqs = plan.requests(OWNER.name, spec, {plan.BACKUP_NOW: "1", plan.RESTORE_FROM: "latest"})
    out: dict[str, str] = {}
    for child in plan.plan_children(OWNER, spec, settings, password="pw", reqs=reqs):
        body = child.body
        if child.kind == "StatefulSet":
            pod = body["spec"]["template"]["spec"]
        elif child.kind == "CronJob":
            pod = body["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif child.kind == "Job":
            pod = body["spec"]["template"]["spec"]
        else:
            continue
        for c in pod["containers"]:
            out[f"{child.kind}/{c['name']}"] = c["image"]
    return out


def _load(tmp_path: Path, database: dict[str, Any]) -> config.Config:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"database": database}))
    return kconfig.load(config.Config, path=path, environ={})


def test_default_images_are_the_docker_hub_names() -> None:
    assert _images(plan.Settings(), _spec()) == {
        "StatefulSet/database": "postgres:15.20",
        "StatefulSet/exporter": "quay.io/prometheuscommunity/postgres-exporter:v0.15.0",
        "CronJob/backup": "postgres:15.20",
        "Job/backup": "postgres:15.20",
        "Job/restore": "postgres:15.20",
    }


def test_a_template_names_the_engine_image_of_every_pod(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        {
            "images": {"postgresql": PRIVATE},
            "exporter_images": {"postgresql": "registry.example:5000/kubext/exporter:0.11.1"},
        },
    )
    settings = plan.Settings(
        images=cfg.database.images, exporter_images=cfg.database.exporter_images
    )
    images = _images(settings, _spec())
    assert images.pop("StatefulSet/exporter") == "registry.example:5000/kubext/exporter:0.11.1"
    assert set(images.values()) == {"registry.example:5000/kubext/postgres:15"}
    assert len(images) == 4


@pytest.mark.parametrize(
    ("template", "version", "image"),
    [
        ("r.example/pg:{major}.{minor}-debian", "15.20.0", "r.example/pg:15.20-debian"),
        ("r.example/pg:{tag}", "15.20.0", "r.example/pg:15.20"),
        ("r.example/pg:{version}", "9.6.24", "r.example/pg:9.6.24"),
        ("r.example/pg:v{major}_{patch}", "9.6.24", "r.example/pg:v9_24"),
    ],
)
def test_template_placeholders(template: str, version: str, image: str) -> None:
    settings = plan.Settings(images={"postgresql": template})
    assert _images(settings, _spec(version=version))["StatefulSet/database"] == image


def test_a_template_for_one_engine_leaves_the_others_and_the_registry_prefix() -> None:
    settings = plan.Settings(registry="mirror.local", images={"postgresql": PRIVATE})
    mysql = _spec(type="mysql", version="8.0.36", monitoring={"enabled": False})
    assert _images(settings, mysql)["StatefulSet/database"] == "mirror.local/mysql:8.0.36"


@pytest.mark.parametrize(
    ("database", "problem"),
    [
        pytest.param(
            {"images": {"postgres": PRIVATE}},
            "database.images.postgres.[key]: Input should be 'postgresql', 'mysql' or 'mongodb'",
            id="unknown-engine",
        ),
        pytest.param(
            {"images": {"postgresql": "r.example/pg:{maj}"}},
            "database.images.postgresql: 'r.example/pg:{maj}': unknown placeholder {maj} "
            "(use {major}, {minor}, {patch}, {version}, {tag})",
            id="unknown-placeholder",
        ),
        pytest.param(
            {"images": {"postgresql": "r.example/pg:{major"}},
            "database.images.postgresql: 'r.example/pg:{major' is no template "
            "(expected '}' before end of string); write placeholders as {major}",
            id="unclosed-brace",
        ),
        pytest.param(
            {"images": {"postgresql": "r.example/PG:{major}"}},
            "database.images.postgresql: 'r.example/PG:{major}' gives 'r.example/PG:15', "
            "which is no image reference",
            id="uppercase-repository",
        ),
        pytest.param(
            {"exporter_images": {"postgresql": "r.example/exporter:{major}"}},
            "database.exporter_images.postgresql: 'r.example/exporter:{major}': "
            "an exporter image takes no placeholders",
            id="exporter-template",
        ),
    ],
)
def test_bad_image_config_says_which_key_and_why(
    tmp_path: Path, database: dict[str, Any], problem: str
) -> None:
    with pytest.raises(kconfig.ConfigError) as err:
        _load(tmp_path, database)
    assert str(err.value) == f"{tmp_path / 'config.yaml'}: {problem}"


DEBIAN_EXPORTER = "127.0.0.1:15000/kubext/postgres-exporter:0.11.1"


@pytest.mark.parametrize(
    ("metrics", "args"),
    [
        pytest.param(
            ["connections"],
            ["--disable-settings-metrics", "--no-collector.database", "--no-collector.bgwriter"],
            id="connections-from-the-default-metrics",
        ),
        pytest.param(
            ["disk"],
            [
                "--disable-default-metrics",
                "--disable-settings-metrics",
                "--collector.database",
                "--no-collector.bgwriter",
            ],
            id="disk-alone",
        ),  # fmt: skip
    ],
)
def test_debian_exporter_gets_the_flags_0_11_knows(metrics: list[str], args: list[str]) -> None:
    car = monitoring.sidecar("postgresql", metrics, secret="s", image=DEBIAN_EXPORTER)
    assert car is not None
    assert car["image"] == DEBIAN_EXPORTER
    assert car["args"] == args


def test_exporter_flags_follow_the_image_tag() -> None:
    upstream = monitoring.sidecar("postgresql", ["connections"], secret="s")
    assert upstream is not None
    assert "--no-collector.locks" in upstream["args"]
    assert upstream["args"][0] == "--disable-default-metrics"
    for image in ("r.example/exporter:v0.15.0", "r.example/exporter:latest", "r.example/e"):
        car = monitoring.sidecar("postgresql", ["connections"], secret="s", image=image)
        assert car is not None and car["args"] == upstream["args"], image
    assert monitoring.sidecar("postgresql", ["cpu"], secret="s", image=DEBIAN_EXPORTER) is None


def test_the_statefulset_sidecar_uses_the_configured_exporter() -> None:
    settings = plan.Settings(exporter_images={"postgresql": DEBIAN_EXPORTER})
    sts = next(c for c in plan.plan_children(OWNER, _spec(), settings, password="pw")
               if c.kind == "StatefulSet")  # fmt: skip
    exporter = sts.body["spec"]["template"]["spec"]["containers"][1]
    assert exporter["image"] == DEBIAN_EXPORTER
    assert "--no-collector.locks" not in exporter["args"]
