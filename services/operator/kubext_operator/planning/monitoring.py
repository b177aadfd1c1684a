"""The exporter sidecar: which collectors each requested metric group turns on, per engine.

``cpu`` and ``memory`` are container metrics the kubelet (cAdvisor) already exports for the
database container; no database exporter measures them, so they add no collector. Every other
collector is switched off explicitly, so the sidecar exposes only the groups listed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

from kubext.crds import database


@dataclasses.dataclass(frozen=True, slots=True)
class Exporter:
    image: str
    port: int
    on: str
    """Flag template enabling a collector, e.g. ``--collector.{}``."""
    off: str
    collectors: tuple[str, ...]
    """Every collector the exporter has; the ones not wanted are switched off."""
    by_metric: dict[str, tuple[str, ...]]
    args: tuple[str, ...]
    env: tuple[tuple[str, str | None, str | None], ...]
    defaults_off: str | None = None
    """The flag dropping the exporter's built-in default metrics, given unless a group in
    ``default_groups`` is asked for (older exporters serve those groups only that way)."""
    default_groups: tuple[str, ...] = ()


EXPORTERS: dict[str, Exporter] = {
    "postgresql": Exporter(
        image="quay.io/prometheuscommunity/postgres-exporter:v0.15.0",
        port=9187,
        on="--collector.{}",
        off="--no-collector.{}",
        collectors=(
            "database",
            "locks",
            "replication",
            "replication_slot",
            "stat_bgwriter",
            "stat_database",
            "stat_user_tables",
            "statio_user_tables",
            "wal",
        ),
        by_metric={
            "disk": ("database",),
            "connections": ("stat_database",),
            "queries": ("stat_database", "stat_user_tables"),
        },
        args=("--disable-settings-metrics",),
        env=(
            ("DATA_SOURCE_URI", None, "127.0.0.1:5432/postgres?sslmode=disable"),
            ("DATA_SOURCE_USER", "username", None),
            ("DATA_SOURCE_PASS", "password", None),
        ),
        defaults_off="--disable-default-metrics",
    ),
    "mysql": Exporter(
        image="prom/mysqld-exporter:v0.15.1",
        port=9104,
        on="--collect.{}",
        off="--no-collect.{}",
        collectors=(
            "global_status",
            "global_variables",
            "slave_status",
            "info_schema.innodb_cmp",
            "info_schema.innodb_cmpmem",
            "info_schema.query_response_time",
            "info_schema.processlist",
            "info_schema.tables",
        ),
        by_metric={
            "disk": ("info_schema.tables",),
            "connections": ("global_status", "info_schema.processlist"),
            "queries": ("global_status",),
        },
        args=("--mysqld.address=127.0.0.1:3306", "--mysqld.username=root"),
        env=(("MYSQLD_EXPORTER_PASSWORD", "password", None),),
    ),
    "mongodb": Exporter(
        image="percona/mongodb_exporter:0.40.0",
        port=9216,
        on="--collector.{}",
        off="--no-collector.{}",
        collectors=(
            "diagnosticdata",
            "replicasetstatus",
            "dbstats",
            "topmetrics",
            "collstats",
            "indexstats",
            "currentopmetrics",
        ),
        by_metric={
            "disk": ("dbstats",),
            "connections": ("diagnosticdata",),
            "queries": ("diagnosticdata", "topmetrics"),
        },
        args=("--mongodb.uri=mongodb://127.0.0.1:27017",),
        env=(("MONGODB_USER", "username", None), ("MONGODB_PASSWORD", "password", None)),
    ),
}


# Debian bookworm's prometheus-postgres-exporter (images/postgres/build.sh): 0.11 has two
# collectors; pg_stat_database (connections, transactions, tuples) is among its default metrics.
POSTGRES_EXPORTER_0_11 = dataclasses.replace(
    EXPORTERS["postgresql"],
    image="localhost/kubext/postgres-exporter:0.11.1",
    collectors=("database", "bgwriter"),
    by_metric={"disk": ("database",)},
    default_groups=("connections", "queries"),
)
_OLD_POSTGRES_EXPORTER_TAG = re.compile(r"v?0\.(?:[0-9]|1[01])\.[0-9]+")


def exporter_for(type_: str, image: str | None = None) -> Exporter:
    """The exporter whose flags ``image`` takes: for postgresql, a tag 0.11.x or older is the
    0.11 flag set (Debian bookworm's exporter); any other tag, or none, the upstream one's."""
    tag = (image or "").split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
    if type_ == "postgresql" and _OLD_POSTGRES_EXPORTER_TAG.fullmatch(tag):
        return POSTGRES_EXPORTER_0_11
    return EXPORTERS[type_]


def collectors(
    type_: str, metrics: Iterable[str] | None, exporter: Exporter | None = None
) -> list[str]:
    """The collectors ``metrics`` need, in the exporter's order (default: all metric groups)."""
    exporter = exporter or EXPORTERS[type_]
    wanted = set(database.METRICS if metrics is None else metrics)
    needed = {c for metric in wanted for c in exporter.by_metric.get(metric, ())}
    return [c for c in exporter.collectors if c in needed]


def sidecar(
    type_: str, metrics: Iterable[str] | None, *, secret: str, image: str | None = None
) -> dict[str, Any] | None:
    """The exporter container, or None when only kubelet metrics (cpu, memory) are asked for;
    ``image`` replaces the upstream image (config database.exporter_images)."""
    exporter = exporter_for(type_, image)
    enabled = collectors(type_, metrics, exporter)
    wanted = set(database.METRICS if metrics is None else metrics)
    defaults = bool(wanted & set(exporter.default_groups))
    if not enabled and not defaults:
        return None
    flags = [(exporter.on if c in enabled else exporter.off).format(c) for c in exporter.collectors]
    no_defaults = [exporter.defaults_off] if exporter.defaults_off and not defaults else []
    env: list[dict[str, Any]] = []
    for name, key, value in exporter.env:
        if key is not None:
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        else:
            env.append({"name": name, "value": value})
    return {
        "name": "exporter",
        "image": image or exporter.image,
        "args": [*no_defaults, *exporter.args, *flags],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": exporter.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"memory": "64Mi"},
        },
    }
