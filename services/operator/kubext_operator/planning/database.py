"""Database -> Secret, StatefulSet, Services, backup volume and CronJob; status from them.

Children, for a Database named N:
- Secret ``N-credentials`` (username, password): created once, never rewritten.
- StatefulSet ``N`` with a ``data`` volumeClaimTemplate per replica; ordinal 0 is the primary.
- Services ``N-headless`` (governing), ``N-rw`` (the primary pod), ``N-ro`` (the replicas; the
  primary when there is only one instance).
- When backups are on: PVC ``N-backup`` (created once) and CronJob ``N-backup``; and, on
  request by annotation, a Job ``N-backup-<hash>`` (a backup now) or ``N-restore-<hash>``
  (load a dump from the backup volume into the primary). Changing or removing the annotation
  deletes that Job; the dumps stay.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kubext import cron
from kubext.crds import database
from kubext_operator.planning import backup, common, engines, monitoring

APP = "database"
FINALIZER = "database.db.example.com/finalizer"
DATA_VOLUME = "data"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
ROLE_LABEL = "db.example.com/role"
"""primary on a Database's ordinal-0 pod, replica on the others (the -rw/-ro Services select it)."""
# Children a changed spec may make unnecessary; volumes and credentials are never pruned.
PRUNABLE_KINDS = ("StatefulSet", "Service", "CronJob", "Job")
BACKUP_NOW = "db.example.com/backup-now"
"""Annotation: any new value asks for one backup now (e.g. ``kubectl annotate --overwrite``)."""
RESTORE_FROM = "db.example.com/restore-from"
"""Annotation: a dump's file name in the backup volume, or ``latest``: load it into the primary."""
REQUEST_ANNOTATIONS = (BACKUP_NOW, RESTORE_FROM)
JOB_APP = "database-job"
"""The name label of backup and restore pods: the Database's Services and its scale selector
(``app.kubernetes.io/name=database``) must not count them as database instances."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    registry: str = ""
    """Prefix for the engine images (a mirror); empty uses Docker Hub names."""
    images: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Engine type -> image template (engines.TEMPLATE_FIELDS), e.g. for a private registry's
    own builds; an engine not named keeps its Docker Hub name (with ``registry``)."""
    exporter_images: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Engine type -> the exporter sidecar's image; an engine not named keeps the upstream one."""

    def image(self, spec: database.DatabaseSpec) -> str:
        """The database container's image, also the Jobs' (its client tools)."""
        engine = engines.ENGINES[spec.type]
        template = self.images.get(spec.type)
        if template is None:
            return engine.image(spec.version, registry=self.registry)
        return engines.image_from_template(template, engine, spec.version)

    pod_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Extra labels on every pod template (config.pod_labels)."""
    placement: common.Placement = dataclasses.field(default_factory=common.Placement)
    """Node selector and tolerations of every pod template (config.pod_placement)."""


def secret_name(name: str) -> str:
    return f"{name}-credentials"


def selector(name: str) -> dict[str, str]:
    return {common.LABEL_NAME: APP, common.LABEL_INSTANCE: name}


def endpoints(owner: common.Owner, spec: database.DatabaseSpec) -> dict[str, Any]:
    port = engines.ENGINES[spec.type].port
    host = f"{owner.namespace}.svc"
    return {
        "primary": f"{owner.name}-rw.{host}:{port}",
        "readonly": [f"{owner.name}-ro.{host}:{port}"],
    }


def secret(owner: common.Owner, spec: database.DatabaseSpec, *, password: str) -> common.Desired:
    """Credentials; ``password`` comes from the caller's random source (used only on create)."""
    return common.child(
        api_version="v1",
        kind="Secret",
        name=secret_name(owner.name),
        owner=owner,
        labels=common.labels(app=APP, instance=owner.name, component="credentials"),
        body={
            "type": "kubernetes.io/basic-auth",
            "stringData": {"username": engines.ENGINES[spec.type].username, "password": password},
        },
        create_only=True,
    )


# Set by the planning, so an admission default (the webhooks' restricted context with its
# runAsUser 1000) never replaces them: the database user must own the data.
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def pod_security(engine: engines.Engine) -> dict[str, Any]:
    """The database's and its Jobs' pods run as the engine's user; fsGroup gives it the
    volumes (the data, the backups), which a provisioner creates owned by root."""
    return {
        "runAsUser": engine.uid,
        "runAsGroup": engine.uid,
        "runAsNonRoot": True,
        "fsGroup": engine.uid,
    }


def scratch_volumes(engine: engines.Engine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """emptyDirs (volumes, mounts) for what the engine writes beside its data."""
    names = [d.strip("/").replace("/", "-") for d in engine.writable_dirs]
    volumes = [{"name": n, "emptyDir": {}} for n in names]
    mounts = [{"name": n, "mountPath": d} for n, d in zip(names, engine.writable_dirs, strict=True)]
    return volumes, mounts


def _database_container(
    spec: database.DatabaseSpec, settings: Settings, secret: str
) -> dict[str, Any]:
    engine = engines.ENGINES[spec.type]
    return {
        "name": APP,
        "image": settings.image(spec),
        "env": engines.env(engine, secret=secret),
        "ports": [{"name": "db", "containerPort": engine.port, "protocol": "TCP"}],
        "securityContext": dict(CONTAINER_SECURITY),
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": engine.data_dir},
            *scratch_volumes(engine)[1],
        ],
        "readinessProbe": {
            "exec": {"command": list(engine.probe)},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
        },
    }


def statefulset(
    owner: common.Owner, spec: database.DatabaseSpec, settings: Settings
) -> common.Desired:
    name = owner.name
    labels = common.labels(app=APP, instance=name, component="database")
    containers = [_database_container(spec, settings, secret_name(name))]
    pod_annotations: dict[str, str] = {}
    if spec.monitoring and spec.monitoring.enabled:
        exporter = monitoring.sidecar(
            spec.type,
            spec.monitoring.metrics,
            secret=secret_name(name),
            image=settings.exporter_images.get(spec.type),
        )
        if exporter is not None:
            containers.append(exporter)
            pod_annotations = {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(exporter["ports"][0]["containerPort"]),
            }
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage.size}},
    }
    if spec.storage.storage_class:
        claim_spec["storageClassName"] = spec.storage.storage_class
    template_meta: dict[str, Any] = {
        "labels": common.pod_labels(
            labels, app=name, version=spec.version, extra=settings.pod_labels
        )
    }
    if pod_annotations:
        template_meta["annotations"] = pod_annotations
    return common.child(
        api_version="apps/v1",
        kind="StatefulSet",
        name=name,
        owner=owner,
        labels=labels,
        body={
            "spec": {
                "serviceName": f"{name}-headless",
                "replicas": spec.replicas,
                "selector": {"matchLabels": selector(name)},
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate"},
                "persistentVolumeClaimRetentionPolicy": {
                    "whenDeleted": spec.deletion_policy,
                    "whenScaled": "Retain",
                },
                "template": {
                    "metadata": template_meta,
                    "spec": settings.placement.apply(
                        {
                            "securityContext": pod_security(engines.ENGINES[spec.type]),
                            "containers": containers,
                            "volumes": scratch_volumes(engines.ENGINES[spec.type])[0],
                            "terminationGracePeriodSeconds": 30,
                        }
                    ),
                },
                "volumeClaimTemplates": [
                    {"metadata": {"name": DATA_VOLUME}, "spec": claim_spec},
                ],
            }
        },
    )


def services(owner: common.Owner, spec: database.DatabaseSpec) -> list[common.Desired]:
    name = owner.name
    port = engines.ENGINES[spec.type].port
    ports = [{"name": "db", "port": port, "targetPort": port, "protocol": "TCP"}]
    readonly = dict(selector(name))
    if spec.replicas > 1:
        readonly[ROLE_LABEL] = "replica"
    shapes: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
        "headless": ({"clusterIP": "None", "publishNotReadyAddresses": True}, selector(name)),
        "rw": ({"type": "ClusterIP"}, {**selector(name), POD_NAME_LABEL: f"{name}-0"}),
        "ro": ({"type": "ClusterIP"}, readonly),
    }
    return [
        common.child(
            api_version="v1",
            kind="Service",
            name=f"{name}-{suffix}",
            owner=owner,
            labels=common.labels(app=APP, instance=name, component=suffix),
            body={"spec": {**extra, "selector": match, "ports": ports}},
        )
        for suffix, (extra, match) in shapes.items()
    ]


def _backup_env(name: str, spec: database.DatabaseSpec) -> list[dict[str, Any]]:
    secret = secret_name(name)
    retention = spec.backup.retention if spec.backup else 0
    return [
        {"name": "DB_HOST", "value": f"{name}-rw"},
        {"name": "DB_NAME", "value": name},
        {"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
        {"name": "BACKUP_DIR", "value": backup.BACKUP_DIR},
        {"name": "RETENTION", "value": str(retention)},
    ]


def _job_pod(
    owner: common.Owner,
    spec: database.DatabaseSpec,
    settings: Settings,
    *,
    component: str,
    script: str,
    restart: str = "OnFailure",
    env: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """The pod of a backup or restore Job: the engine's image (its client tools), the
    credentials, and the backup volume."""
    name = owner.name
    engine = engines.ENGINES[spec.type]
    labels = common.labels(app=JOB_APP, instance=name, component=component)
    return {
        "metadata": {
            "labels": common.pod_labels(
                labels, app=name, version=spec.version, extra=settings.pod_labels
            )
        },
        "spec": settings.placement.apply(
            {
                "restartPolicy": restart,
                "securityContext": pod_security(engine),
                "containers": [
                    {
                        "name": component,
                        "image": settings.image(spec),
                        "command": ["bash", "-c", script],
                        "env": [*_backup_env(name, spec), *env],
                        "securityContext": dict(CONTAINER_SECURITY),
                        "volumeMounts": [
                            {"name": "backup", "mountPath": backup.BACKUP_DIR},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "backup", "persistentVolumeClaim": {"claimName": f"{name}-backup"}},
                    {"name": "tmp", "emptyDir": {}},
                ],
            }
        ),
    }


def backup_children(
    owner: common.Owner, spec: database.DatabaseSpec, settings: Settings
) -> list[common.Desired]:
    if not (spec.backup and spec.backup.enabled and spec.backup.schedule):
        return []
    name = owner.name
    engine = engines.ENGINES[spec.type]
    labels = common.labels(app=APP, instance=name, component="backup")
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage.size}},
    }
    if spec.storage.storage_class:
        claim["storageClassName"] = spec.storage.storage_class
    volume = common.child(
        api_version="v1",
        kind="PersistentVolumeClaim",
        name=f"{name}-backup",
        owner=owner,
        labels=labels,
        body={"spec": claim},
        create_only=True,
    )
    job_pod = _job_pod(owner, spec, settings, component="backup", script=backup.script(engine.dump))
    cronjob = common.child(
        api_version="batch/v1",
        kind="CronJob",
        name=f"{name}-backup",
        owner=owner,
        labels=labels,
        body={
            "spec": {
                "schedule": spec.backup.schedule,
                "timeZone": "Etc/UTC",
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 300,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"spec": {"backoffLimit": 2, "template": job_pod}},
            }
        },
    )
    return [volume, cronjob]


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A backup or restore asked for by an annotation on the Database."""

    action: str
    """``backup`` or ``restore``."""
    value: str
    job_name: str
    problem: str | None = None

    @property
    def condition(self) -> str:
        return "OnDemandBackupSucceeded" if self.action == "backup" else "RestoreSucceeded"


def requests(
    name: str, spec: database.DatabaseSpec, annotations: Mapping[str, str]
) -> list[Request]:
    """The requests the annotations make; each value gets its own Job (a new value, a new run)."""
    out = []
    for action, key in (("backup", BACKUP_NOW), ("restore", RESTORE_FROM)):
        value = annotations.get(key)
        if value is None:
            continue
        # Job names are DNS labels (63) and name their pods (+6): a hash keeps them unique.
        digest = hashlib.sha256(f"{name}\0{value}".encode()).hexdigest()[:8]
        job = f"{name[:40].rstrip('-.')}-{action}-{digest}"
        problem = None
        if not (spec.backup and spec.backup.enabled):
            problem = f"{key}: needs spec.backup.enabled (the dumps live in the backup volume)"
        elif action == "restore" and not (
            value == backup.LATEST or re.fullmatch(backup.DUMP_NAME, value)
        ):
            problem = (
                f"{key}: {value!r} is neither {backup.LATEST!r} nor a dump's file name "
                f"(like {name}-20260101T020000Z.dump.gz)"
            )
        out.append(Request(action, value, job, problem))
    return out


def request_jobs(
    owner: common.Owner, spec: database.DatabaseSpec, settings: Settings, reqs: Sequence[Request]
) -> list[common.Desired]:
    engine = engines.ENGINES[spec.type]
    jobs = []
    for req in reqs:
        if req.problem:
            continue
        if req.action == "backup":
            pod = _job_pod(
                owner, spec, settings, component="backup", script=backup.script(engine.dump)
            )
            retries = 2
        else:
            # Never retried: a second run over a half-loaded database is not a restore.
            pod = _job_pod(
                owner,
                spec,
                settings,
                component="restore",
                script=backup.restore_script(engine.restore),
                restart="Never",
                env=({"name": "RESTORE_FROM", "value": req.value},),
            )
            retries = 0
        jobs.append(
            common.child(
                api_version="batch/v1",
                kind="Job",
                name=req.job_name,
                owner=owner,
                labels=common.labels(app=APP, instance=owner.name, component=req.action),
                body={"spec": {"backoffLimit": retries, "template": pod}},
                create_only=True,  # a Job's pod template is immutable; a new request, a new Job
            )
        )
    return jobs


def plan_children(
    owner: common.Owner,
    spec: database.DatabaseSpec,
    settings: Settings,
    *,
    password: str,
    reqs: Sequence[Request] = (),
) -> list[common.Desired]:
    return [
        secret(owner, spec, password=password),
        statefulset(owner, spec, settings),
        *services(owner, spec),
        *backup_children(owner, spec, settings),
        *request_jobs(owner, spec, settings, reqs),
    ]


def pod_roles(name: str, pods: Mapping[str, str | None]) -> dict[str, str]:
    """Pod name -> the role label it should get, for pods whose label is wrong or missing."""
    out = {}
    for pod, current in pods.items():
        match = re.fullmatch(rf"{re.escape(name)}-(\d+)", pod)
        if match is None:
            continue
        role = "primary" if match.group(1) == "0" else "replica"
        if current != role:
            out[pod] = role
    return out


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_run(schedule: str, *, now: str, since: str) -> str:
    """When the CronJob (time zone UTC) runs next after ``now``. ``@every`` counts from ``since``
    (the last scheduled run, else the Database's creation), as the CronJob controller does.
    Raises PlanError for a schedule no CronJob can run."""
    after, start = _parse_time(now), _parse_time(since)
    try:
        return format_time(cron.next_run(schedule, after, since=start))
    except ValueError as exc:
        raise common.PlanError(str(exc)) from None


def _phase(*, ready: bool, observed: bool, previous: str | None) -> str:
    if ready:
        return "Running"
    if previous in ("Running", "Updating"):
        return "Updating"
    return "Creating" if observed else "Pending"


def status(
    *,
    owner: common.Owner,
    spec: database.DatabaseSpec,
    statefulset: Mapping[str, Any] | None,
    statefulset_current: bool,
    cronjob: Mapping[str, Any] | None,
    previous: Mapping[str, Any],
    created: str,
    now: str,
    reqs: Sequence[Request] = (),
    jobs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Phase, conditions, endpoints and backup status from the observed StatefulSet and CronJob;
    a condition per backup or restore request from its Job (``jobs``: name -> facts)."""
    facts = statefulset or {}
    ready_count, updated = int(facts.get("ready", 0)), int(facts.get("updated", 0))
    ready = (
        statefulset is not None
        and statefulset_current
        and ready_count >= spec.replicas
        and updated >= spec.replicas
        and bool(facts.get("revisions_match", True))
    )
    phase = _phase(ready=ready, observed=statefulset is not None, previous=previous.get("phase"))
    if ready:
        reason, message = "AllReplicasReady", f"{ready_count}/{spec.replicas} replicas ready"
    elif phase == "Updating":
        reason = "RollingUpdate"
        message = f"{updated}/{spec.replicas} replicas updated, {ready_count} ready"
    else:
        reason, message = "ReplicasNotReady", f"{ready_count}/{spec.replicas} replicas ready"
    conditions = common.set_condition(
        previous.get("conditions"),
        type_="Ready",
        status="True" if ready else "False",
        reason=reason,
        message=message,
        generation=owner.generation,
        now=now,
    )
    out: dict[str, Any] = {
        "phase": phase,
        "replicas": int(facts.get("replicas", 0)),
        "readyReplicas": ready_count,
        "selector": common.selector_string(selector(owner.name)),
        "observedGeneration": owner.generation,
        "endpoints": endpoints(owner, spec),
        "credentialsSecret": secret_name(owner.name),
    }
    if spec.backup and spec.backup.enabled and spec.backup.schedule:
        job = cronjob or {}
        before = previous.get("backupStatus") or {}
        last = job.get("last_success") or before.get("lastBackup")
        count = int(before.get("backupCount") or 0)
        if job.get("last_success") and job.get("last_success") != before.get("lastBackup"):
            count += 1
        backup_status: dict[str, Any] = {
            "nextBackup": next_run(
                spec.backup.schedule, now=now, since=job.get("last_schedule") or created
            ),
            "backupCount": count,
        }
        if last:
            backup_status["lastBackup"] = last
        out["backupStatus"] = backup_status
        conditions = common.set_condition(
            conditions, **_backup_condition(job), generation=owner.generation, now=now
        )
    else:
        conditions = common.drop_condition(conditions, "LastBackupSucceeded")
    asked = {req.condition: req for req in reqs}
    for type_ in ("OnDemandBackupSucceeded", "RestoreSucceeded"):
        req = asked.get(type_)
        if req is None:
            conditions = common.drop_condition(conditions, type_)
            continue
        conditions = common.set_condition(
            conditions,
            type_=type_,
            **_request_condition(req, (jobs or {}).get(req.job_name)),
            generation=owner.generation,
            now=now,
        )
    out["conditions"] = conditions
    return out


def _request_condition(req: Request, job: Mapping[str, Any] | None) -> dict[str, str]:
    what = f"{req.action} {req.value!r}"
    if req.problem:
        return {"status": "False", "reason": "InvalidRequest", "message": req.problem}
    if job and job.get("succeeded"):
        return {
            "status": "True",
            "reason": "Completed",
            "message": f"{what}: Job {req.job_name} completed at {job.get('completed')}",
        }
    if job and job.get("failed"):
        return {
            "status": "False",
            "reason": "Failed",
            "message": f"{what}: Job {req.job_name} failed ({job.get('failed')}); see its pod logs",
        }
    return {"status": "Unknown", "reason": "Running", "message": f"{what}: Job {req.job_name}"}


def _backup_condition(job: Mapping[str, Any]) -> dict[str, str]:
    scheduled, succeeded = job.get("last_schedule"), job.get("last_success")
    base = {"type_": "LastBackupSucceeded"}
    if not scheduled:
        return {**base, "status": "Unknown", "reason": "NoBackupYet", "message": "no run yet"}
    if succeeded and _parse_time(succeeded) >= _parse_time(scheduled):
        return {**base, "status": "True", "reason": "Succeeded", "message": f"at {succeeded}"}
    if job.get("active"):
        return {**base, "status": "Unknown", "reason": "Running", "message": f"since {scheduled}"}
    return {
        **base,
        "status": "False",
        "reason": "Failed",
        "message": f"the run scheduled at {scheduled} did not succeed",
    }


def failed_status(
    *,
    owner: common.Owner,
    reason: str,
    problem: str,
    previous: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    """Failed with a reason: a spec the operator cannot act on, or a child the API refused."""
    out = {k: v for k, v in previous.items() if k != "conditions"}
    out["phase"] = "Failed"
    out["observedGeneration"] = owner.generation
    out["selector"] = common.selector_string(selector(owner.name))
    out["conditions"] = common.set_condition(
        previous.get("conditions"),
        type_="Ready",
        status="False",
        reason=reason,
        message=problem,
        generation=owner.generation,
        now=now,
    )
    return out


def deleting_status(
    *, owner: common.Owner, previous: Mapping[str, Any], now: str
) -> dict[str, Any]:
    out = {k: v for k, v in previous.items() if k != "conditions"}
    out["phase"] = "Deleting"
    out["conditions"] = common.set_condition(
        previous.get("conditions"),
        type_="Ready",
        status="False",
        reason="Deleting",
        message="the Database is being deleted",
        generation=owner.generation,
        now=now,
    )
    return out
