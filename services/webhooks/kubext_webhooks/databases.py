"""Database admission: the rules the CRD schema cannot express, and defaults for omitted fields.

Pure. The API server sends v1 (``matchPolicy: Equivalent`` converts v1beta1 requests through
``/convert`` first); a v1beta1 object that arrives anyway is converted here before judging.
"""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
from typing import Any

import pydantic

from kubext import config, cron, quantity
from kubext.crds import database
from kubext_webhooks import conversion, mutation, review

# A fixed start makes the schedule analysis deterministic (same answer on every replica).
_ANALYSIS_START = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)
_SAMPLE_RUNS = 60


class DatabaseSettings(config.StrictModel):
    # "MAJOR.MINOR" (or "MAJOR") entries; spec.version must equal one or extend it with ".N".
    supported_versions: dict[str, list[str]] = {
        "mysql": ["5.7", "8.0", "8.4"],
        "postgresql": ["13", "14", "15", "16", "17"],
        "mongodb": ["6.0", "7.0", "8.0"],
    }
    # A dump more often than this overlaps the previous one on any real database.
    min_backup_interval_seconds: float = 3600
    # retention x interval: the history the kept dumps cover, between these bounds.
    min_backup_history_seconds: float = 86400
    max_backup_history_seconds: float = 5 * 366 * 86400


def _field(path: str, message: str) -> str:
    return f"{path}: {message}"


def schedule_intervals(schedule: str) -> list[float]:
    """Seconds between consecutive runs of a CronJob schedule (validated beforehand)."""
    runs = itertools.islice(cron.runs(schedule, _ANALYSIS_START), _SAMPLE_RUNS)
    return [(b - a).total_seconds() for a, b in itertools.pairwise(runs)]


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{seconds:g}s"


def _backup_problems(backup: dict[str, Any], settings: DatabaseSettings) -> list[str]:
    if not backup.get("enabled") or backup.get("schedule") is None:
        return []
    schedule = backup["schedule"]  # the model has checked that a CronJob can run it
    intervals = schedule_intervals(schedule)
    shortest = min(intervals)
    out = []
    if shortest < settings.min_backup_interval_seconds:
        out.append(
            _field(
                "spec.backup.schedule",
                f"schedule {schedule!r} runs a dump every {_human(shortest)}; "
                f"the shortest allowed interval is {_human(settings.min_backup_interval_seconds)}",
            )
        )
    retention = backup.get("retention", 7)
    history = retention * statistics.fmean(intervals)
    if history < settings.min_backup_history_seconds:
        out.append(
            _field(
                "spec.backup.retention",
                f"keeping {retention} dumps of schedule {schedule!r} covers only "
                f"{_human(history)} of history; keep at least "
                f"{_human(settings.min_backup_history_seconds)}",
            )
        )
    elif history > settings.max_backup_history_seconds:
        out.append(
            _field(
                "spec.backup.retention",
                f"keeping {retention} dumps of schedule {schedule!r} covers {_human(history)}; "
                f"the most allowed is {_human(settings.max_backup_history_seconds)}",
            )
        )
    return out


def _version_problem(spec: dict[str, Any], settings: DatabaseSettings) -> str | None:
    engine, version = spec["type"], spec["version"]
    supported = settings.supported_versions.get(engine, [])
    if any(version == entry or version.startswith(entry + ".") for entry in supported):
        return None
    listed = ", ".join(supported) if supported else "none"
    return _field("spec.version", f"{engine} {version} is not supported (supported: {listed})")


def _as_v1(obj: object) -> object:
    if isinstance(obj, dict) and obj.get("apiVersion") == conversion.V1BETA1:
        return conversion.convert(obj, conversion.V1)
    return obj


def problems(spec: Any, old_spec: Any, settings: DatabaseSettings) -> list[str]:
    """Every reason to refuse a v1 Database spec (``old_spec`` on UPDATE, else None)."""
    if not isinstance(spec, dict):
        return ["spec: a Database needs a spec object"]
    try:
        database.DatabaseSpec.model_validate(spec)
    except pydantic.ValidationError as exc:
        return config.validation_problems(exc, root="spec", unknown="unknown field")
    out = []
    version_problem = _version_problem(spec, settings)
    if version_problem:
        out.append(version_problem)
    out += _backup_problems(spec.get("backup") or {}, settings)
    if isinstance(old_spec, dict):
        if "type" in old_spec and old_spec["type"] != spec["type"]:
            out.append(
                _field(
                    "spec.type",
                    f"the database type is immutable (was {old_spec['type']!r}, "
                    f"now {spec['type']!r}); create a new Database and migrate the data",
                )
            )
        old_storage = old_spec.get("storage")
        old_size = old_storage.get("size") if isinstance(old_storage, dict) else None
        if old_size is not None:
            try:
                before = quantity.to_bytes(old_size)
            except (quantity.QuantityError, TypeError, ValueError):
                before = None  # the old object was never valid: nothing to compare against
            after = quantity.to_bytes(spec["storage"]["size"])
            if before is not None and after < before:
                out.append(
                    _field(
                        "spec.storage.size",
                        f"storage cannot shrink (from {old_size} to {spec['storage']['size']}); "
                        "volumes only grow",
                    )
                )
    return out


def _kind_problem(request: review.AdmissionRequest) -> str | None:
    if request.kind != database.KIND or request.group != database.GROUP:
        return (
            f"this webhook handles {database.GROUP} Databases, got {request.group}/{request.kind}"
        )
    return None


def validate(request: review.AdmissionRequest, settings: DatabaseSettings) -> review.Decision:
    if request.operation not in ("CREATE", "UPDATE"):
        return review.Decision.allow()
    problem = _kind_problem(request)
    if problem:
        return review.Decision.invalid(problem)
    try:
        obj = _as_v1(request.object)
        old = _as_v1(request.old_object) if request.operation == "UPDATE" else None
    except conversion.ConversionError as exc:
        return review.Decision.invalid(str(exc))
    if not isinstance(obj, dict):
        return review.Decision.invalid("the request carries no Database object")
    if isinstance(obj.get("metadata"), dict) and obj["metadata"].get("deletionTimestamp"):
        return review.Decision.allow()  # let finalizers be removed from a Database being deleted
    old_spec = old.get("spec") if isinstance(old, dict) else None
    found = problems(obj.get("spec"), old_spec, settings)
    if not found:
        return review.Decision.allow()
    meta = obj.get("metadata")
    metadata = meta if isinstance(meta, dict) else {}
    name = request.name or metadata.get("name") or "(new)"
    namespace = request.namespace or metadata.get("namespace") or ""
    return review.Decision.deny(
        f"Database {namespace}/{name} is invalid: " + "; ".join(found), code=422, reason="Invalid"
    )


def defaults_patch(spec: dict[str, Any]) -> list[mutation.Op]:
    """Operations that make the model's defaults explicit; [] for a spec that does not validate.

    An invalid spec gets no defaults: the validating webhook explains what is wrong with it.
    """
    try:
        model = database.DatabaseSpec.model_validate(spec)
    except pydantic.ValidationError:
        return []
    wanted = model.to_dict()
    monitoring = wanted.get("monitoring")
    if monitoring and monitoring.get("enabled") and "metrics" not in monitoring:
        monitoring["metrics"] = list(database.METRICS)  # "default: all", written down
    ops: list[mutation.Op] = []
    for key, value in wanted.items():
        if key not in spec:
            ops.append({"op": "add", "path": f"/spec/{mutation.escape(key)}", "value": value})
        elif isinstance(value, dict) and isinstance(spec[key], dict):
            for sub, sub_value in value.items():
                if sub not in spec[key]:
                    path = f"/spec/{mutation.escape(key)}/{mutation.escape(sub)}"
                    ops.append({"op": "add", "path": path, "value": sub_value})
    return ops


def mutate(request: review.AdmissionRequest) -> review.Decision:
    if request.operation not in ("CREATE", "UPDATE"):
        return review.Decision.allow()
    problem = _kind_problem(request)
    if problem:
        return review.Decision.invalid(problem)
    obj = request.object
    if not isinstance(obj, dict) or obj.get("apiVersion") != conversion.V1:
        # Patches must fit the object as sent; only v1 is registered, so anything else is left
        # for the validating webhook to judge.
        return review.Decision.allow()
    spec = obj.get("spec")
    decision = review.Decision.allow()
    if isinstance(spec, dict):
        decision.patch = defaults_patch(spec)
    return decision
