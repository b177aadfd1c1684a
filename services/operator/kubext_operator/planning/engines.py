"""What differs between postgresql, mysql and mongodb: images, ports, credentials, probes, dumps."""

from __future__ import annotations

import dataclasses
import re
import string
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class Engine:
    repository: str
    port: int
    data_dir: str
    username: str
    env: tuple[tuple[str, str | None, str | None], ...]
    """(name, Secret key or None, literal value or None) for the database container."""
    probe: tuple[str, ...]
    dump: str
    """Shell command writing a logical dump of everything to stdout (reads DB_* variables)."""
    restore: str
    """Shell command loading such a dump from stdin into the primary (reads DB_* variables)."""
    writable_dirs: tuple[str, ...] = ("/tmp",)
    """What the server writes outside its data dir (socket dir, /tmp): emptyDirs, since the
    root filesystem is read-only."""
    uid: int = 999
    """The image's database user (999 in the official images and ours): the pods run as it,
    and fsGroup gives it the volumes."""

    def image(self, version: str, *, registry: str = "") -> str:
        return f"{registry.rstrip('/') + '/' if registry else ''}{self.repository}:{tag(self, version)}"


def tag(engine: Engine, version: str) -> str:
    """The image tag of ``MAJOR.MINOR.PATCH``: PostgreSQL 10+ versions have two parts only."""
    major, minor, patch = (int(part) for part in version.split("."))
    if engine.repository == "postgres" and major >= 10:
        return f"{major}.{minor}"
    return f"{major}.{minor}.{patch}"


TEMPLATE_FIELDS = ("major", "minor", "patch", "version", "tag")
"""What an image template (config database.images) may use, from a spec.version of 15.20.0:
major 15, minor 20, patch 0, version 15.20.0, tag the engine's default tag (15.20)."""
# A reference as docker/distribution reads it: [host[:port]/]path[:tag][@digest], lowercase path.
_REFERENCE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def template_fields(engine: Engine, version: str) -> dict[str, str]:
    major, minor, patch = version.split(".")
    return {"major": major, "minor": minor, "patch": patch, "version": version,
            "tag": tag(engine, version)}  # fmt: skip


def image_from_template(template: str, engine: Engine, version: str) -> str:
    return template.format(**template_fields(engine, version))


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot name an image for every version, or None."""
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"{template!r} is no template ({exc}); write placeholders as {{major}}"
    for field in fields:
        if field not in TEMPLATE_FIELDS:
            known = ", ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS)
            return f"{template!r}: unknown placeholder {{{field}}} (use {known})"
    sample = template.format(**template_fields(ENGINES["postgresql"], "15.20.0"))
    if not _REFERENCE.fullmatch(sample):
        return f"{template!r} gives {sample!r}, which is no image reference"
    return None


def version_problem(type_: str, version: str) -> str | None:
    """A version the engine never released in that form (so no image exists), or None."""
    major, _minor, patch = (int(part) for part in version.split("."))
    if type_ == "postgresql" and major >= 10 and patch != 0:
        return (
            f"version {version!r}: PostgreSQL {major} versions are MAJOR.MINOR; "
            f"write {major}.{version.split('.')[1]}.0"
        )
    return None


ENGINES: dict[str, Engine] = {
    "postgresql": Engine(
        repository="postgres",
        port=5432,
        data_dir="/var/lib/postgresql/data",
        username="postgres",
        env=(
            ("POSTGRES_USER", "username", None),
            ("POSTGRES_PASSWORD", "password", None),
            # A subdirectory: the volume's root may hold lost+found, which initdb refuses.
            ("PGDATA", None, "/var/lib/postgresql/data/pgdata"),
        ),
        probe=("pg_isready", "-h", "127.0.0.1", "-U", "postgres"),
        dump='PGPASSWORD="$DB_PASSWORD" pg_dumpall -h "$DB_HOST" -U "$DB_USER"',
        # pg_dumpall's script re-creates roles that exist already (the superuser): psql reports
        # those and goes on, as the PostgreSQL manual describes for restoring a dumpall.
        restore='PGPASSWORD="$DB_PASSWORD" psql -h "$DB_HOST" -U "$DB_USER" -d postgres -q',
        writable_dirs=("/var/run/postgresql", "/tmp"),
    ),
    "mysql": Engine(
        repository="mysql",
        port=3306,
        data_dir="/var/lib/mysql",
        username="root",
        env=(("MYSQL_ROOT_PASSWORD", "password", None),),
        probe=("sh", "-c", 'mysqladmin ping -h 127.0.0.1 -uroot -p"$MYSQL_ROOT_PASSWORD"'),
        dump='mysqldump -h "$DB_HOST" -u"$DB_USER" -p"$DB_PASSWORD" --all-databases '
        "--single-transaction --routines --events",
        restore='mysql -h "$DB_HOST" -u"$DB_USER" -p"$DB_PASSWORD"',
        writable_dirs=("/var/run/mysqld", "/tmp"),
    ),
    "mongodb": Engine(
        repository="mongo",
        port=27017,
        data_dir="/data/db",
        username="root",
        env=(
            ("MONGO_INITDB_ROOT_USERNAME", "username", None),
            ("MONGO_INITDB_ROOT_PASSWORD", "password", None),
        ),
        probe=("mongosh", "--quiet", "--eval", "db.adminCommand('ping')"),
        dump='mongodump --host "$DB_HOST" -u "$DB_USER" -p "$DB_PASSWORD" '
        "--authenticationDatabase admin --archive",
        restore='mongorestore --host "$DB_HOST" -u "$DB_USER" -p "$DB_PASSWORD" '
        "--authenticationDatabase admin --archive --drop",
    ),
}


def env(engine: Engine, *, secret: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, key, value in engine.env:
        if key is not None:
            out.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        else:
            out.append({"name": name, "value": value})
    return out
