"""Database (``databases.db.example.com``): v1 (storage version) and v1beta1 (deprecated).

v1 groups settings into ``storage``, ``backup`` and ``monitoring``; v1beta1 is the flat shape
of the first release. The two carry exactly the same information, so conversion is lossless in
both directions (:func:`spec_v1beta1_to_v1`, :func:`spec_v1_to_v1beta1`); status is identical.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic.config import JsonDict

from kubext import cron
from kubext.crds import common

GROUP = "db.example.com"
VERSION = "v1"
V1BETA1 = "v1beta1"
VERSIONS: tuple[str, ...] = (VERSION, V1BETA1)
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Database"
PLURAL = "databases"
SINGULAR = "database"
SHORT_NAMES = ["db"]
CATEGORIES = ["all", "storage"]
DEPRECATION_WARNING = (
    "db.example.com/v1beta1 Database is deprecated; use db.example.com/v1 Database"
)

# The seed's validation rules, verbatim (Go regexp syntax; matched unanchored like the API server).
VERSION_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+$"
SIZE_PATTERN = r"^[0-9]+[KMGT]i?$"

DatabaseType = Literal["mysql", "postgresql", "mongodb"]
TYPES: tuple[str, ...] = ("mysql", "postgresql", "mongodb")
Metric = Literal["cpu", "memory", "disk", "connections", "queries"]
METRICS: tuple[str, ...] = ("cpu", "memory", "disk", "connections", "queries")
Phase = Literal["Pending", "Creating", "Running", "Updating", "Deleting", "Failed"]
PHASES: tuple[str, ...] = ("Pending", "Creating", "Running", "Updating", "Deleting", "Failed")
DeletionPolicy = Literal["Retain", "Delete"]


def _check_schedule(value: str) -> str:
    if problem := cron.schedule_problem(value):
        raise ValueError(problem)
    return value


# The schema gives the API server the parser's syntax as a pattern; the model asks the parser
# itself, which also checks what a pattern cannot (field ranges, zero intervals, dates that
# never come) and says precisely what is wrong.
Schedule = Annotated[
    str,
    pydantic.Field(json_schema_extra={"pattern": cron.PATTERN}),
    pydantic.AfterValidator(_check_schedule),
]
Version = Annotated[str, pydantic.Field(pattern=VERSION_PATTERN)]
Size = Annotated[str, pydantic.Field(pattern=SIZE_PATTERN)]
Retention = Annotated[int, pydantic.Field(ge=1, le=365)]
Replicas = Annotated[int, pydantic.Field(ge=1, le=10)]

_BACKUP_RULE: JsonDict = {
    "rule": "!has(self.enabled) || !self.enabled || has(self.schedule)",
    "message": "backup.schedule is required when backup.enabled is true",
}


class Storage(common.SpecModel):
    size: Size = pydantic.Field(description="Volume size per replica, e.g. 100Gi.")
    storage_class: str | None = pydantic.Field(None, description="StorageClass of the volumes.")


class Backup(common.SpecModel):
    model_config = pydantic.ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_BACKUP_RULE]}
    )

    enabled: bool = False
    schedule: Schedule | None = pydantic.Field(None, description="Cron schedule of the dumps.")
    retention: Retention = pydantic.Field(7, description="How many of the newest dumps are kept.")

    @pydantic.model_validator(mode="after")
    def _schedule_when_enabled(self) -> Backup:
        if self.enabled and self.schedule is None:
            raise ValueError(_BACKUP_RULE["message"])
        return self


class Monitoring(common.SpecModel):
    enabled: bool = False
    metrics: list[Metric] | None = pydantic.Field(
        None, description="Metric groups the exporter sidecar exposes (default: all)."
    )


class DatabaseSpec(common.SpecModel):
    """Desired state of a Database (v1)."""

    type: DatabaseType
    version: Version = pydantic.Field(description="Engine version, MAJOR.MINOR.PATCH.")
    storage: Storage
    backup: Backup | None = None
    monitoring: Monitoring | None = None
    replicas: Replicas = pydantic.Field(1, description="Pods: one primary, the rest read replicas.")
    deletion_policy: DeletionPolicy = pydantic.Field(
        "Retain",
        description="Retain keeps the volumes, backups and credentials Secret after deletion; "
        "Delete removes them with the Database.",
    )


_BACKUP_RULE_V1BETA1: JsonDict = {
    "rule": "!has(self.backupEnabled) || !self.backupEnabled || has(self.backupSchedule)",
    "message": "backupSchedule is required when backupEnabled is true",
}


class DatabaseSpecV1beta1(common.SpecModel):
    """Desired state of a Database (v1beta1, deprecated: flat; ``engine`` is v1's ``type``)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_BACKUP_RULE_V1BETA1]}
    )

    engine: DatabaseType
    version: Version
    storage_size: Size
    storage_class_name: str | None = None
    backup_enabled: bool = False
    backup_schedule: Schedule | None = None
    backup_retention: Retention = 7
    monitoring_enabled: bool = False
    metrics: list[Metric] | None = None
    replicas: Replicas = 1
    deletion_policy: DeletionPolicy = "Retain"

    @pydantic.model_validator(mode="after")
    def _schedule_when_enabled(self) -> DatabaseSpecV1beta1:
        if self.backup_enabled and self.backup_schedule is None:
            raise ValueError(_BACKUP_RULE_V1BETA1["message"])
        return self


class Endpoints(common.StatusModel):
    primary: str | None = pydantic.Field(None, description="host:port of the read-write Service.")
    readonly: list[str] | None = pydantic.Field(
        None, description="host:port of the read-only Service."
    )


class BackupStatus(common.StatusModel):
    last_backup: common.DateTime | None = None
    next_backup: common.DateTime | None = None
    backup_count: int | None = pydantic.Field(None, description="Successful backups so far.")


class DatabaseStatus(common.StatusModel):
    """Observed state of a Database (identical in v1 and v1beta1)."""

    phase: Phase | None = None
    conditions: list[common.Condition] | None = pydantic.Field(
        None, json_schema_extra=common.CONDITIONS_SCHEMA_EXTRA
    )
    endpoints: Endpoints | None = None
    backup_status: BackupStatus | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    selector: str | None = None
    observed_generation: int | None = None
    credentials_secret: str | None = pydantic.Field(
        None, description="Secret with the credentials."
    )


class Database(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True, extra="ignore")

    api_version: str = pydantic.Field(API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: dict[str, Any] = pydantic.Field(default_factory=dict)
    spec: DatabaseSpec
    status: DatabaseStatus | None = None


class DatabaseV1beta1(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True, extra="ignore")

    api_version: str = pydantic.Field(f"{GROUP}/{V1BETA1}", alias="apiVersion")
    kind: str = KIND
    metadata: dict[str, Any] = pydantic.Field(default_factory=dict)
    spec: DatabaseSpecV1beta1
    status: DatabaseStatus | None = None


# v1 path <-> v1beta1 key; the mapping is a bijection, so a round trip returns the same body.
FIELD_MAP: tuple[tuple[tuple[str, ...], str], ...] = (
    (("type",), "engine"),
    (("version",), "version"),
    (("storage", "size"), "storageSize"),
    (("storage", "storageClass"), "storageClassName"),
    (("backup", "enabled"), "backupEnabled"),
    (("backup", "schedule"), "backupSchedule"),
    (("backup", "retention"), "backupRetention"),
    (("monitoring", "enabled"), "monitoringEnabled"),
    (("monitoring", "metrics"), "metrics"),
    (("replicas",), "replicas"),
    (("deletionPolicy",), "deletionPolicy"),
)


def spec_v1beta1_to_v1(spec: dict[str, Any]) -> dict[str, Any]:
    """v1beta1 spec body -> v1; absent keys stay absent (raises pydantic.ValidationError)."""
    DatabaseSpecV1beta1.model_validate(spec)
    out: dict[str, Any] = {}
    for path, key in FIELD_MAP:
        if key in spec:
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = spec[key]
    DatabaseSpec.model_validate(out)
    return out


def spec_v1_to_v1beta1(spec: dict[str, Any]) -> dict[str, Any]:
    """v1 spec body -> v1beta1; absent keys stay absent (raises pydantic.ValidationError)."""
    DatabaseSpec.model_validate(spec)
    out: dict[str, Any] = {}
    for path, key in FIELD_MAP:
        node: Any = spec
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        else:
            out[key] = node
    DatabaseSpecV1beta1.model_validate(out)
    return out
