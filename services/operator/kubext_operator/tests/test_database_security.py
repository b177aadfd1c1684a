"""The Database's pods run as the engine's user with the volumes given to it (fsGroup), a
read-only root and scratch emptyDirs: set by the planning, so an admission default (the webhooks'
restricted context, runAsUser 1000) cannot make the data dir unwritable."""

from __future__ import annotations

from typing import Any

import pytest

from kubext.crds import database as crd
from kubext_operator.planning import common, engines
from kubext_operator.planning import database as plan

OWNER = common.Owner("db.example.com/v1", "Database", "orders", "prod", "uid-9")


def _pods(engine: str, version: str) -> dict[str, dict[str, Any]]:
    spec = crd.DatabaseSpec.model_validate(
        {
            "type": engine,
            "version": version,
            "storage": {"size": "1Gi"},
            "backup": {"enabled": True, "schedule": "0 2 * * *", "retention": 3},
            "monitoring": {"enabled": True, "metrics": ["connections"]},
        }
    )
    reqs = plan.requests(OWNER.name, spec, {plan.BACKUP_NOW: "1", plan.RESTORE_FROM: "latest"})
    out = {}
    for child in plan.plan_children(OWNER, spec, plan.Settings(), password="pw", reqs=reqs):
        body = child.body.get("spec") or {}
        if child.kind == "CronJob":
            body = body["jobTemplate"]["spec"]
        if "template" in body:
            out[f"{child.kind}/{child.name}"] = body["template"]["spec"]
    return out


@pytest.mark.parametrize(
    ("engine", "version"), [("postgresql", "15.20.0"), ("mysql", "8.0.36"), ("mongodb", "7.0.5")]
)
def test_every_database_pod_runs_as_the_engine_user_owning_its_volumes(
    engine: str, version: str
) -> None:
    pods = _pods(engine, version)
    assert sorted(k.split("/")[0] for k in pods) == ["CronJob", "Job", "Job", "StatefulSet"]
    uid = engines.ENGINES[engine].uid
    for name, pod in pods.items():
        assert pod["securityContext"] == {
            "runAsUser": uid,
            "runAsGroup": uid,
            "runAsNonRoot": True,
            "fsGroup": uid,
        }, name
        ours = [c for c in pod["containers"] if c["name"] != "exporter"]
        for c in ours:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"], name
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert "runAsUser" not in sc, name  # the pod's user, not the webhook default's
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in ours:
            for m in c["volumeMounts"]:
                assert m["name"] in volumes or name.startswith("StatefulSet"), (name, m)
        assert any(m["mountPath"] == "/tmp" for c in ours for m in c["volumeMounts"]), name


def test_postgres_gets_its_socket_dir_writable() -> None:
    [sts] = [p for k, p in _pods("postgresql", "15.20.0").items() if k.startswith("StatefulSet")]
    [db] = [c for c in sts["containers"] if c["name"] == plan.APP]
    mounts = {m["mountPath"]: m["name"] for m in db["volumeMounts"]}
    assert mounts["/var/run/postgresql"] in {v["name"] for v in sts["volumes"]}
    assert {"emptyDir": {}} == next(
        {k: v for k, v in vol.items() if k != "name"}
        for vol in sts["volumes"]
        if vol["name"] == mounts["/var/run/postgresql"]
    )
    assert mounts["/var/lib/postgresql/data"] == plan.DATA_VOLUME  # the claim template's
