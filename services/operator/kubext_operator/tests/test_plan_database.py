"""Database planning: children per engine, backups, monitoring, phases and backup status."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubext.crds import database as crd
from kubext_operator.planning import backup, common, engines, monitoring
from kubext_operator.planning import database as plan

OWNER = common.Owner("db.example.com/v1", "Database", "orders", "prod", "uid-9", generation=2)
NOW = "2026-03-10T12:00:00Z"
CREATED = "2026-03-01T00:00:00Z"


def _spec(**over: Any) -> crd.DatabaseSpec:
    body = {"type": "postgresql", "version": "13.7.0", "storage": {"size": "10Gi"}, **over}
    return crd.DatabaseSpec.model_validate(body)


def _children(spec: crd.DatabaseSpec) -> dict[tuple[str, str], common.Desired]:
    planned = plan.plan_children(OWNER, spec, plan.Settings(), password="s3cret")
    return {(d.kind, d.name): d for d in planned}


@pytest.mark.parametrize(
    ("type_", "version", "image", "port"),
    [
        pytest.param("postgresql", "13.7.0", "postgres:13.7", 5432, id="postgres-two-part-tag"),
        pytest.param("postgresql", "9.6.24", "postgres:9.6.24", 5432, id="postgres-9"),
        pytest.param("mysql", "8.0.36", "mysql:8.0.36", 3306, id="mysql"),
        pytest.param("mongodb", "7.0.5", "mongo:7.0.5", 27017, id="mongodb"),
    ],
)
def test_image_and_port_per_engine(type_: str, version: str, image: str, port: int) -> None:
    sts = _children(_spec(type=type_, version=version))[("StatefulSet", "orders")]
    container = sts.body["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == image
    assert container["ports"][0]["containerPort"] == port


def test_registry_mirror_prefixes_images() -> None:
    engine = engines.ENGINES["mysql"]
    assert engine.image("8.0.36", registry="mirror.local/lib/") == "mirror.local/lib/mysql:8.0.36"


def test_postgres_patch_release_that_never_existed_is_refused() -> None:
    assert engines.version_problem("postgresql", "13.7.1") is not None
    assert engines.version_problem("postgresql", "13.7.0") is None
    assert engines.version_problem("mysql", "8.0.36") is None


def test_statefulset_volumes_replicas_and_retention_policy() -> None:
    spec = _spec(
        storage={"size": "100Gi", "storageClass": "fast-ssd"}, replicas=3, deletionPolicy="Delete"
    )
    sts = _children(spec)[("StatefulSet", "orders")].body["spec"]
    assert sts["replicas"] == 3
    assert sts["serviceName"] == "orders-headless"
    (claim,) = sts["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert sts["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    assert (
        _children(_spec())[("StatefulSet", "orders")].body["spec"][
            "persistentVolumeClaimRetentionPolicy"
        ]["whenDeleted"]
        == "Retain"
    )


def test_secret_is_create_only_and_referenced_by_the_pods() -> None:
    children = _children(_spec())
    secret = children[("Secret", "orders-credentials")]
    assert secret.create_only
    assert secret.body["stringData"] == {"username": "postgres", "password": "s3cret"}
    env = children[("StatefulSet", "orders")].body["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}
    assert refs == {"orders-credentials"}


def test_password_does_not_change_the_other_children() -> None:
    a = plan.plan_children(OWNER, _spec(), plan.Settings(), password="one")
    b = plan.plan_children(OWNER, _spec(), plan.Settings(), password="two")
    assert [d.spec_hash for d in a if not d.create_only] == [
        d.spec_hash for d in b if not d.create_only
    ]


@pytest.mark.parametrize(("replicas", "ro_role"), [(1, None), (3, "replica")])
def test_services_rw_primary_ro_replicas(replicas: int, ro_role: str | None) -> None:
    children = _children(_spec(replicas=replicas))
    rw = children[("Service", "orders-rw")].body["spec"]
    ro = children[("Service", "orders-ro")].body["spec"]
    headless = children[("Service", "orders-headless")].body["spec"]
    assert rw["selector"][plan.POD_NAME_LABEL] == "orders-0"
    assert ro["selector"].get(plan.ROLE_LABEL) == ro_role
    assert headless["clusterIP"] == "None"


def test_pod_roles_label_only_what_is_wrong() -> None:
    pods = {"orders-0": None, "orders-1": "replica", "orders-2": "primary", "other-0": None}
    assert plan.pod_roles("orders", pods) == {"orders-0": "primary", "orders-2": "replica"}


def test_backup_off_plans_no_cronjob() -> None:
    kinds = {kind for kind, _ in _children(_spec())}
    assert "CronJob" not in kinds and "PersistentVolumeClaim" not in kinds


def test_backup_cronjob_and_volume() -> None:
    spec = _spec(backup={"enabled": True, "schedule": "0 2 * * *", "retention": 5})
    children = _children(spec)
    volume = children[("PersistentVolumeClaim", "orders-backup")]
    assert volume.create_only
    cron = children[("CronJob", "orders-backup")].body["spec"]
    assert cron["schedule"] == "0 2 * * *" and cron["concurrencyPolicy"] == "Forbid"
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["RETENTION"] == "5" and env["DB_HOST"] == "orders-rw"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "orders-backup"
    assert "pg_dumpall" in pod["containers"][0]["command"][-1]


def _script_env(bindir: Path, store: Path, **extra: str) -> dict[str, str]:
    """What the Job's container gets, with stub client tools first on PATH."""
    return {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "DB_HOST": "orders-rw",
        "DB_USER": "postgres",
        "DB_PASSWORD": "pw",
        "DB_NAME": "orders",
        "BACKUP_DIR": str(store),
        **extra,
    }


def test_backup_script_dumps_and_keeps_the_newest(tmp_path: Path) -> None:
    """Run the real script with a stub dump tool: a failed run leaves nothing, pruning keeps N."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "pg_dumpall"
    stub.write_text('#!/bin/sh\n[ -n "$FAIL" ] && exit 3\necho "dump of $DB_HOST"\n')
    stub.chmod(0o755)
    store = tmp_path / "backup"
    store.mkdir()
    for day in range(1, 6):  # five older dumps
        (store / f"orders-2026010{day}T020000Z.dump.gz").write_bytes(b"old")
    (store / "orders-leftover.dump.gz.partial").write_bytes(b"half")
    env = _script_env(bindir, store, RETENTION="3")
    script = backup.script(engines.ENGINES["postgresql"].dump)
    failed = subprocess.run(["bash", "-c", script], env={**env, "FAIL": "1"}, capture_output=True)
    assert failed.returncode != 0
    assert len(list(store.glob("*.dump.gz"))) == 5  # no half-written dump counts as a backup
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    kept = sorted(p.name for p in store.iterdir())
    assert len(kept) == 3 and not any(name.endswith(".partial") for name in kept)
    newest = kept[-1]  # names sort by their UTC time stamp
    assert newest.startswith("orders-2") and newest > "orders-20260105T020000Z.dump.gz"
    assert gzip.decompress((store / newest).read_bytes()) == b"dump of orders-rw\n"
    assert kept[:2] == ["orders-20260104T020000Z.dump.gz", "orders-20260105T020000Z.dump.gz"]


@pytest.mark.parametrize(
    ("metrics", "enabled"),
    [
        pytest.param(None, ["database", "stat_database", "stat_user_tables"], id="default-all"),
        pytest.param(["disk"], ["database"], id="disk-only"),
        pytest.param(["connections"], ["stat_database"], id="connections"),
        pytest.param(["cpu", "memory"], [], id="kubelet-only"),
    ],
)
def test_exporter_collectors_match_the_list(metrics: list[str] | None, enabled: list[str]) -> None:
    assert monitoring.collectors("postgresql", metrics) == enabled
    car = monitoring.sidecar("postgresql", metrics, secret="s")
    if not enabled:
        assert car is None
        return
    on = [a for a in car["args"] if a.startswith("--collector.")]
    off = [a for a in car["args"] if a.startswith("--no-collector.")]
    assert on == [f"--collector.{c}" for c in enabled]
    assert len(on) + len(off) == len(monitoring.EXPORTERS["postgresql"].collectors)


def test_monitoring_adds_the_sidecar_and_scrape_annotations() -> None:
    spec = _spec(
        type="mysql", version="8.0.36", monitoring={"enabled": True, "metrics": ["queries"]}
    )
    template = _children(spec)[("StatefulSet", "orders")].body["spec"]["template"]
    names = [c["name"] for c in template["spec"]["containers"]]
    assert names == ["database", "exporter"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9104"
    exporter = template["spec"]["containers"][1]
    assert "--collect.global_status" in exporter["args"]
    assert "--no-collect.info_schema.tables" in exporter["args"]


def _status(
    sts: dict | None, *, current=True, previous=None, cron=None, spec=None, reqs=(), jobs=None
) -> dict:
    return plan.status(
        owner=OWNER,
        spec=spec or _spec(),
        statefulset=sts,
        statefulset_current=current,
        cronjob=cron,
        previous=previous or {},
        created=CREATED,
        now=NOW,
        reqs=reqs,
        jobs=jobs,
    )


READY = {"replicas": 1, "ready": 1, "updated": 1, "revisions_match": True}


@pytest.mark.parametrize(
    ("sts", "current", "previous_phase", "phase"),
    [
        pytest.param(None, False, None, "Pending", id="nothing-observed"),
        pytest.param(
            {"replicas": 1, "ready": 0, "updated": 1}, True, None, "Creating", id="creating"
        ),
        pytest.param(READY, True, "Creating", "Running", id="running"),
        pytest.param(READY, False, "Running", "Updating", id="spec-changed-rolls"),
        pytest.param(
            {**READY, "revisions_match": False}, True, "Running", "Updating", id="mid-rollout"
        ),
        pytest.param(READY, True, "Updating", "Running", id="rolled-out"),
    ],
)
def test_phases(sts, current, previous_phase, phase) -> None:
    previous = {"phase": previous_phase} if previous_phase else {}
    status = _status(sts, current=current, previous=previous)
    assert status["phase"] == phase
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == ("True" if phase == "Running" else "False")


def test_endpoints_and_scale_fields() -> None:
    status = _status(READY)
    assert status["endpoints"] == {
        "primary": "orders-rw.prod.svc:5432",
        "readonly": ["orders-ro.prod.svc:5432"],
    }
    assert status["selector"] == "app.kubernetes.io/instance=orders,app.kubernetes.io/name=database"
    assert status["replicas"] == 1 and status["credentialsSecret"] == "orders-credentials"


def test_backup_status_counts_each_new_success_once() -> None:
    spec = _spec(backup={"enabled": True, "schedule": "0 2 * * *"})
    cron = {"last_schedule": "2026-03-10T02:00:00Z", "last_success": "2026-03-10T02:00:41Z"}
    first = _status(READY, spec=spec, cron=cron)
    assert first["backupStatus"] == {
        "lastBackup": "2026-03-10T02:00:41Z",
        "nextBackup": "2026-03-11T02:00:00Z",
        "backupCount": 1,
    }
    again = _status(READY, spec=spec, cron=cron, previous=first)
    assert again["backupStatus"]["backupCount"] == 1
    assert common.same_status(first, again)
    cond = next(c for c in first["conditions"] if c["type"] == "LastBackupSucceeded")
    assert cond["status"] == "True"


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("0 2 * * *", "2026-03-11T02:00:00Z"),
        ("*/15 * * * *", "2026-03-10T12:15:00Z"),
        ("@daily", "2026-03-11T00:00:00Z"),
        ("@hourly", "2026-03-10T13:00:00Z"),
        ("@every 1h30m", "2026-03-10T13:30:00Z"),  # 152 periods since creation end now
        ("@every 1.5h", "2026-03-10T13:30:00Z"),
        ("@midnight", "2026-03-11T00:00:00Z"),
        ("@weekly", "2026-03-15T00:00:00Z"),
        ("0 0 * * mon", "2026-03-16T00:00:00Z"),
    ],
)
def test_next_run(schedule: str, expected: str) -> None:
    assert plan.next_run(schedule, now=NOW, since=CREATED) == expected


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        pytest.param("@every 0s", "longer than zero", id="zero-interval"),
        pytest.param("@every 99999999999h", "longest duration", id="beyond-go-duration"),
        pytest.param("0 0 30 2 *", "never runs", id="february-30"),
    ],
)
def test_a_schedule_no_cronjob_can_run_is_a_plan_error(schedule: str, problem: str) -> None:
    with pytest.raises(common.PlanError, match=problem):
        plan.next_run(schedule, now=NOW, since=CREATED)


def test_failed_backup_is_a_false_condition() -> None:
    spec = _spec(backup={"enabled": True, "schedule": "0 2 * * *"})
    cron = {"last_schedule": "2026-03-10T02:00:00Z", "last_success": "2026-03-09T02:00:30Z"}
    status = _status(READY, spec=spec, cron=cron)
    cond = next(c for c in status["conditions"] if c["type"] == "LastBackupSucceeded")
    assert (cond["status"], cond["reason"]) == ("False", "Failed")


def test_failed_and_deleting_keep_the_rest_of_the_status() -> None:
    running = _status(READY)
    failed = plan.failed_status(
        owner=OWNER, reason="InvalidSpec", problem="bad version", previous=running, now=NOW
    )
    assert failed["phase"] == "Failed" and failed["endpoints"] == running["endpoints"]
    deleting = plan.deleting_status(owner=OWNER, previous=running, now=NOW)
    assert deleting["phase"] == "Deleting"


def test_pod_templates_carry_the_policy_labels() -> None:
    spec = _spec(backup={"enabled": True, "schedule": "0 2 * * *", "retention": 3})
    planned = plan.plan_children(
        OWNER, spec, plan.Settings(pod_labels={"environment": "dev"}), password="x"
    )
    by_kind = {d.kind: d for d in planned}
    sts_labels = by_kind["StatefulSet"].body["spec"]["template"]["metadata"]["labels"]
    job = by_kind["CronJob"].body["spec"]["jobTemplate"]["spec"]["template"]
    for labels in (sts_labels, job["metadata"]["labels"]):
        assert (labels["app"], labels["version"], labels["environment"]) == (
            "orders",
            "13.7.0",
            "dev",
        )


BACKUPS_ON = {"enabled": True, "schedule": "0 2 * * *", "retention": 3}


def _jobs(annotations: dict[str, str], **spec: Any) -> dict[str, common.Desired]:
    spec_ = _spec(backup=BACKUPS_ON, **spec)
    reqs = plan.requests("orders", spec_, annotations)
    planned = plan.plan_children(OWNER, spec_, plan.Settings(), password="pw", reqs=reqs)
    return {d.name: d for d in planned if d.kind == "Job"}


def test_backup_now_runs_one_job_per_request_value() -> None:
    first = _jobs({plan.BACKUP_NOW: "2026-03-10"})
    [(name, job)] = first.items()
    assert name.startswith("orders-backup-") and job.create_only
    assert _jobs({plan.BACKUP_NOW: "2026-03-10"}).keys() == first.keys()  # same request
    assert _jobs({plan.BACKUP_NOW: "again"}).keys() != first.keys()  # a new one, a new Job
    spec = job.body["spec"]
    pod = spec["template"]["spec"]
    assert spec["backoffLimit"] == 2 and "pg_dumpall" in pod["containers"][0]["command"][-1]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "orders-backup"
    assert job.body["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid


@pytest.mark.parametrize(
    ("type_", "version", "tool"),
    [
        ("postgresql", "13.7.0", "psql"),
        ("mysql", "8.0.36", "mysql"),
        ("mongodb", "7.0.5", "mongorestore"),
    ],
)
def test_restore_job_loads_into_the_primary_once(type_: str, version: str, tool: str) -> None:
    [job] = _jobs({plan.RESTORE_FROM: "latest"}, type=type_, version=version).values()
    assert job.name.startswith("orders-restore-")
    spec = job.body["spec"]
    pod = spec["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert (env["RESTORE_FROM"], env["DB_HOST"]) == ("latest", "orders-rw")
    assert engines.ENGINES[type_].restore in pod["containers"][0]["command"][-1]
    assert tool in engines.ENGINES[type_].restore.replace('"', " ").split()
    assert spec["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"  # never run twice


@pytest.mark.parametrize(
    ("annotations", "backups", "says"),
    [
        ({plan.RESTORE_FROM: "../../etc/shadow"}, BACKUPS_ON, "neither 'latest' nor a dump"),
        ({plan.RESTORE_FROM: "orders.sql"}, BACKUPS_ON, "neither 'latest' nor a dump"),
        ({plan.BACKUP_NOW: "x"}, {"enabled": False}, "needs spec.backup.enabled"),
    ],
)
def test_a_request_that_cannot_run_plans_no_job_and_says_why(annotations, backups, says) -> None:
    spec = _spec(backup=backups)
    reqs = plan.requests("orders", spec, annotations)
    planned = plan.plan_children(OWNER, spec, plan.Settings(), password="pw", reqs=reqs)
    assert not [d for d in planned if d.kind == "Job"]
    status = _status(READY, spec=spec, reqs=reqs)
    [cond] = [c for c in status["conditions"] if c["type"] == reqs[0].condition]
    assert (cond["status"], cond["reason"]) == ("False", "InvalidRequest")
    assert says in cond["message"]


def test_job_pods_are_not_counted_as_database_instances() -> None:
    """The Services and the scale selector select app.kubernetes.io/name=database pods."""
    children = _jobs({plan.BACKUP_NOW: "1", plan.RESTORE_FROM: "latest"})
    cron = _children(_spec(backup=BACKUPS_ON))[("CronJob", "orders-backup")]
    templates = [j.body["spec"]["template"] for j in children.values()]
    templates.append(cron.body["spec"]["jobTemplate"]["spec"]["template"])
    selector = plan.selector("orders")
    for template in templates:
        labels = template["metadata"]["labels"]
        assert not selector.items() <= labels.items()
        assert labels["app.kubernetes.io/instance"] == "orders"


def test_request_condition_follows_its_job() -> None:
    spec = _spec(backup=BACKUPS_ON)
    reqs = plan.requests("orders", spec, {plan.BACKUP_NOW: "now-1"})
    job = reqs[0].job_name

    def condition(jobs, previous=None) -> dict:
        status = _status(READY, spec=spec, reqs=reqs, jobs=jobs, previous=previous or {})
        return next(c for c in status["conditions"] if c["type"] == "OnDemandBackupSucceeded")

    assert condition({})["status"] == "Unknown"  # not seen yet
    running = {"succeeded": False, "failed": None, "completed": None}
    assert condition({job: running})["reason"] == "Running"
    done = {"succeeded": True, "failed": None, "completed": "2026-03-10T12:01:00Z"}
    assert (condition({job: done})["status"], condition({job: done})["reason"]) == (
        "True",
        "Completed",
    )
    failed = {"succeeded": False, "failed": "BackoffLimitExceeded", "completed": None}
    assert condition({job: failed})["status"] == "False"
    finished = _status(READY, spec=spec, reqs=reqs, jobs={job: done})
    dropped = _status(READY, spec=spec, previous=finished)  # the annotation was removed
    assert not [c for c in dropped["conditions"] if c["type"] == "OnDemandBackupSucceeded"]


def test_restore_script_loads_the_named_or_the_newest_dump(tmp_path: Path) -> None:
    """The real script with a stub client that records what it was fed."""
    bindir, store = tmp_path / "bin", tmp_path / "backup"
    bindir.mkdir()
    store.mkdir()
    loaded = tmp_path / "loaded"
    stub = bindir / "psql"
    stub.write_text(f'#!/bin/sh\ncat > "{loaded}"\n')
    stub.chmod(0o755)
    for day in (1, 2, 3):
        (store / f"orders-2026010{day}T020000Z.dump.gz").write_bytes(
            gzip.compress(f"dump {day}\n".encode())
        )
    (store / "other-20260109T020000Z.dump.gz").write_bytes(gzip.compress(b"another db\n"))
    (store / "orders-20260109T020000Z.dump.gz.partial").write_bytes(b"half")
    script = backup.restore_script(engines.ENGINES["postgresql"].restore)
    env = _script_env(bindir, store)

    def restore(value: str) -> subprocess.CompletedProcess:
        loaded.unlink(missing_ok=True)
        return subprocess.run(
            ["bash", "-c", script],
            env={**env, "RESTORE_FROM": value},
            capture_output=True,
            text=True,
        )

    newest = restore("latest")
    assert newest.returncode == 0, newest.stderr
    assert loaded.read_text() == "dump 3\n"  # the newest complete dump of this database
    named = restore("orders-20260101T020000Z.dump.gz")
    assert named.returncode == 0 and loaded.read_text() == "dump 1\n"
    missing = restore("orders-20991231T000000Z.dump.gz")
    assert missing.returncode != 0 and "no dump" in missing.stderr and not loaded.exists()
    for dump in store.glob("orders-*.dump.gz"):
        dump.unlink()
    empty = restore("latest")
    assert empty.returncode != 0 and "no dump latest" in empty.stderr


@pytest.mark.parametrize("which", ["backup", "restore"])
def test_the_jobs_reach_the_service_by_its_variable_without_dns(tmp_path: Path, which: str) -> None:
    """A cluster without DNS (the rig's real node): the -rw Service's name resolves nowhere, but
    the kubelet sets ORDERS_RW_SERVICE_HOST (its ClusterIP) for the Job's pod; without the
    variable the name goes as it is, for the cluster's DNS."""
    bindir, store = tmp_path / "bin", tmp_path / "backup"
    bindir.mkdir()
    store.mkdir()
    seen = tmp_path / "host"
    for tool in ("pg_dumpall", "psql"):  # each records the -h it was given
        stub = bindir / tool
        stub.write_text(f'#!/bin/sh\ncat >/dev/null; echo "$2" > "{seen}"\n')
        stub.chmod(0o755)
    (store / "orders-20260101T020000Z.dump.gz").write_bytes(gzip.compress(b"dump\n"))
    engine = engines.ENGINES["postgresql"]
    script = (
        backup.script(engine.dump) if which == "backup" else backup.restore_script(engine.restore)
    )
    env = _script_env(bindir, store, RETENTION="3", RESTORE_FROM="latest")
    for extra, host in (
        ({"ORDERS_RW_SERVICE_HOST": "10.96.0.17"}, "10.96.0.17"),
        ({}, "orders-rw"),
    ):
        done = subprocess.run(
            ["bash", "-c", script], env={**env, **extra}, capture_output=True, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert seen.read_text().strip() == host
