"""config.pod_placement: validated as the API server validates tolerations, and set on every pod
template the operator plans (WebApp Deployment, Database StatefulSet, backup CronJob, on-demand
Jobs); without it the planned manifests (and their spec hashes) are what they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubext import config as kconfig
from kubext.crds import database as db_crd
from kubext.crds import webapp as wa_crd
from kubext_operator import config
from kubext_operator.planning import common
from kubext_operator.planning import database as db_plan
from kubext_operator.planning import webapp as wa_plan

DB_OWNER = common.Owner("db.example.com/v1", "Database", "orders", "prod", "uid-1")
WA_OWNER = common.Owner("example.com/v1", "WebApp", "hello", "prod", "uid-2")
REAL_NODE = {
    "node_selector": {"kubernetes.io/hostname": "kubext-node-0"},
    "tolerations": [{"key": "kubext.io/real-node", "operator": "Exists", "effect": "NoSchedule"}],
}


def _load(tmp_path: Path, placement: dict[str, Any]) -> config.Config:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"pod_placement": placement}))
    return kconfig.load(config.Config, path=path, environ={})


def _placement(cfg: config.Config) -> common.Placement:
    return common.Placement(
        node_selector=dict(cfg.pod_placement.node_selector),
        tolerations=tuple(t.manifest() for t in cfg.pod_placement.tolerations),
    )


def _pod_specs(placement: common.Placement) -> dict[str, dict[str, Any]]:
    """Kind/name -> pod spec, over everything both plannings make (backup-now and restore)."""
    spec = db_crd.DatabaseSpec.model_validate(
        {
            "type": "postgresql",
            "version": "15.20.0",
            "storage": {"size": "1Gi"},
            "backup": {"enabled": True, "schedule": "0 2 * * *", "retention": 3},
        }
    )
    reqs = db_plan.requests(
        DB_OWNER.name, spec, {db_plan.BACKUP_NOW: "1", db_plan.RESTORE_FROM: "latest"}
    )
    children = db_plan.plan_children(
        DB_OWNER, spec, db_plan.Settings(placement=placement), password="pw", reqs=reqs
    )
    wa_spec = wa_crd.WebAppSpec.model_validate({"replicas": 1, "image": "web:1", "port": 8080})
    children += wa_plan.plan_children(WA_OWNER, wa_spec, wa_plan.Defaults(placement=placement))
    out = {}
    for child in children:
        body = child.body.get("spec") or {}  # a Secret has none
        if child.kind == "CronJob":
            body = body["jobTemplate"]["spec"]
        if "template" in body:
            out[f"{child.kind}/{child.name}"] = body["template"]["spec"]
    return out


def test_every_pod_template_gets_the_selector_and_tolerations(tmp_path: Path) -> None:
    pods = _pod_specs(_placement(_load(tmp_path, REAL_NODE)))
    kinds = sorted(k.split("/")[0] for k in pods)
    assert kinds == ["CronJob", "Deployment", "Job", "Job", "StatefulSet"], pods.keys()
    for name, pod in pods.items():
        assert pod["nodeSelector"] == {"kubernetes.io/hostname": "kubext-node-0"}, name
        assert pod["tolerations"] == [
            {"key": "kubext.io/real-node", "operator": "Exists", "effect": "NoSchedule"}
        ], name


def test_no_placement_plans_what_it_did_before() -> None:
    pods = _pod_specs(common.Placement())
    assert pods and all("nodeSelector" not in p and "tolerations" not in p for p in pods.values())


def test_toleration_manifest_uses_the_api_names(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        {
            "tolerations": [
                {
                    "key": "example.com/maintenance",
                    "value": "yes",
                    "effect": "NoExecute",
                    "toleration_seconds": 60,
                },
                {"operator": "Exists"},
            ]
        },
    )
    assert [t.manifest() for t in cfg.pod_placement.tolerations] == [
        {
            "operator": "Equal",
            "key": "example.com/maintenance",
            "value": "yes",
            "effect": "NoExecute",
            "tolerationSeconds": 60,
        },
        {"operator": "Exists"},
    ]


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        (
            {"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]},
            "value must be empty",
        ),
        ({"tolerations": [{"value": "x"}]}, "an empty key needs operator Exists"),
        ({"tolerations": [{"key": "a", "toleration_seconds": 5}]}, "needs effect NoExecute"),
        (
            {"tolerations": [{"key": "a", "effect": "Sometimes"}]},
            "pod_placement.tolerations.0.effect",
        ),
        ({"node_selector": {"bad key!": "x"}}, "pod_placement.node_selector"),
        ({"node_selector": {"zone": "no spaces"}}, "pod_placement.node_selector.zone"),
        ({"nodeSelector": {"zone": "a"}}, "pod_placement.nodeSelector"),
    ],
)
def test_bad_placement_stops_with_the_key(
    tmp_path: Path, placement: dict[str, Any], message: str
) -> None:
    with pytest.raises(kconfig.ConfigError) as err:
        _load(tmp_path, placement)
    assert message in str(err.value)
    assert str(tmp_path / "config.yaml") in str(err.value)
