"""The driver's state: volumes, snapshots, group snapshots, attach, stage and publish records in
one SQLite file.

Every write is one transaction (WAL, synchronous=FULL), so a crash or restart keeps either the
old or the new record, never half of one. Records are frozen dataclasses: readers get values, not
handles into the store. Missing records are ``None`` from ``find_*`` and NOT_FOUND from ``get_*``;
deleting a missing record is not an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from . import errors

# 2: attachments (1's tables unchanged); 3: volumes.ephemeral; 4: volumes.mutable_parameters,
# snapshots.group_snapshot_id and group_snapshots (the columns are added on open).
SCHEMA_VERSION = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, capacity INTEGER NOT NULL,
    fs_type TEXT NOT NULL, source_kind TEXT NOT NULL, source_id TEXT NOT NULL,
    parameters TEXT NOT NULL, created_ns INTEGER NOT NULL,
    ephemeral INTEGER NOT NULL DEFAULT 0, mutable_parameters TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, source_volume_id TEXT NOT NULL,
    size INTEGER NOT NULL, created_ns INTEGER NOT NULL, ready INTEGER NOT NULL,
    group_snapshot_id TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS group_snapshots (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_ns INTEGER NOT NULL,
    ready INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stages (
    volume_id TEXT PRIMARY KEY, staging_path TEXT NOT NULL, access_type TEXT NOT NULL,
    device TEXT NOT NULL, fs_type TEXT NOT NULL, read_only INTEGER NOT NULL,
    mount_flags TEXT NOT NULL, mode INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS publishes (
    target_path TEXT PRIMARY KEY, volume_id TEXT NOT NULL, staging_path TEXT NOT NULL,
    access_type TEXT NOT NULL, read_only INTEGER NOT NULL, mount_flags TEXT NOT NULL,
    mode INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS publishes_by_volume ON publishes (volume_id);
CREATE TABLE IF NOT EXISTS attachments (
    volume_id TEXT NOT NULL, node_id TEXT NOT NULL, read_only INTEGER NOT NULL,
    mode INTEGER NOT NULL, PRIMARY KEY (volume_id, node_id));
"""
# Columns later schemas added to a table of an earlier one: (table, column, type and default).
_ADDED_COLUMNS = (
    ("volumes", "ephemeral", "INTEGER NOT NULL DEFAULT 0"),
    ("volumes", "mutable_parameters", "TEXT NOT NULL DEFAULT '[]'"),
    ("snapshots", "group_snapshot_id", "TEXT NOT NULL DEFAULT ''"),
)


@dataclasses.dataclass(frozen=True)
class Volume:
    id: str
    name: str
    capacity: int
    fs_type: str  # "" while the volume has no filesystem (created for block access)
    source_kind: str = ""  # "", "snapshot" or "volume"
    source_id: str = ""
    parameters: tuple[tuple[str, str], ...] = ()
    created_ns: int = 0
    # An inline volume NodePublishVolume created; its NodeUnpublishVolume deletes it.
    ephemeral: bool = False
    # CreateVolume's mutable_parameters as ControllerModifyVolume last changed them (sorted).
    mutable_parameters: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str | None:
        """The filesystem label asked for; None: never asked, the filesystem keeps its own."""
        return dict(self.mutable_parameters).get("label")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    id: str
    name: str
    source_volume_id: str
    size: int
    created_ns: int
    ready: bool = True
    group_snapshot_id: str = ""  # set for the members of a group snapshot


@dataclasses.dataclass(frozen=True)
class GroupSnapshot:
    """Snapshots of several volumes taken at one point in time; the members are the snapshots
    whose ``group_snapshot_id`` is this id."""

    id: str
    name: str
    created_ns: int
    ready: bool = True


@dataclasses.dataclass(frozen=True)
class Stage:
    """A volume staged on this node: its loop device, mounted at staging_path for mount access."""

    volume_id: str
    staging_path: str
    access_type: str
    device: str
    fs_type: str
    read_only: bool
    mount_flags: tuple[str, ...]
    mode: int


@dataclasses.dataclass(frozen=True)
class Publish:
    """A volume published at target_path (a bind mount of the staging mount or the device)."""

    target_path: str
    volume_id: str
    staging_path: str
    access_type: str
    read_only: bool
    mount_flags: tuple[str, ...]
    mode: int


@dataclasses.dataclass(frozen=True)
class Attachment:
    """A volume ControllerPublished to a node: the CO's attach, recorded so the node is known."""

    volume_id: str
    node_id: str
    read_only: bool
    mode: int


R = TypeVar("R", Volume, Snapshot, GroupSnapshot, Stage, Publish, Attachment)
_TUPLE_FIELDS = {"parameters", "mount_flags", "mutable_parameters"}


def _encode(record: Any) -> dict[str, Any]:
    row = dataclasses.asdict(record)
    for key in _TUPLE_FIELDS & row.keys():
        row[key] = json.dumps(row[key])
    return row


def _decode(cls: type[R], row: sqlite3.Row) -> R:
    values = dict(row)
    for key in _TUPLE_FIELDS & values.keys():
        values[key] = tuple(tuple(v) if isinstance(v, list) else v for v in json.loads(values[key]))
    for field in dataclasses.fields(cls):
        if field.type == "bool":  # SQLite stores booleans as 0/1
            values[field.name] = bool(values[field.name])
    return cls(**values)


class Store:
    """The SQLite-backed store. Thread-safe; callers still serialise whole RPCs themselves."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path}: state schema {version} is newer than this driver")
        self._db.executescript(_SCHEMA)  # idempotent; executescript commits by itself
        for table, column, kind in _ADDED_COLUMNS:  # a store from before the column's schema
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        # After the columns: an older store's snapshots table has no group_snapshot_id yet.
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS snapshots_by_group ON snapshots (group_snapshot_id)"
        )
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Groups writes into one atomic commit (nesting joins the outer transaction)."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, cls: type[R], sql: str, *args: object) -> R | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return _decode(cls, row) if row else None

    def _all(self, cls: type[R], sql: str, *args: object) -> list[R]:
        with self._lock:
            return [_decode(cls, row) for row in self._db.execute(sql, args).fetchall()]

    def _upsert(self, table: str, key: str, record: Any) -> None:
        """``key``: the primary key's column(s), comma-separated."""
        # A real upsert on the key only: a clash on another UNIQUE column (a volume name)
        # raises instead of silently replacing the other row, as INSERT OR REPLACE would.
        row = _encode(record)
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        keys = {k.strip() for k in key.split(",")}
        updates = ", ".join(f"{k} = excluded.{k}" for k in row if k not in keys)
        sql = f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT({key}) DO UPDATE SET {updates}"
        with self.transaction():
            self._db.execute(sql, row)

    def _delete(self, table: str, key: str, value: str) -> None:
        with self.transaction():
            self._db.execute(f"DELETE FROM {table} WHERE {key} = ?", (value,))

    # ---- volumes ----
    def find_volume(self, volume_id: str) -> Volume | None:
        return self._one(Volume, "SELECT * FROM volumes WHERE id = ?", volume_id)

    def get_volume(self, volume_id: str) -> Volume:
        volume = self.find_volume(volume_id)
        if volume is None:
            raise errors.not_found(f"volume {volume_id!r} does not exist")
        return volume

    def find_volume_by_name(self, name: str) -> Volume | None:
        return self._one(Volume, "SELECT * FROM volumes WHERE name = ?", name)

    def volumes(self) -> list[Volume]:
        return self._all(Volume, "SELECT * FROM volumes ORDER BY created_ns, id")

    def put_volume(self, volume: Volume) -> None:
        self._upsert("volumes", "id", volume)

    def delete_volume(self, volume_id: str) -> None:
        self._delete("volumes", "id", volume_id)

    # ---- snapshots ----
    def find_snapshot(self, snapshot_id: str) -> Snapshot | None:
        return self._one(Snapshot, "SELECT * FROM snapshots WHERE id = ?", snapshot_id)

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        snapshot = self.find_snapshot(snapshot_id)
        if snapshot is None:
            raise errors.not_found(f"snapshot {snapshot_id!r} does not exist")
        return snapshot

    def find_snapshot_by_name(self, name: str) -> Snapshot | None:
        return self._one(Snapshot, "SELECT * FROM snapshots WHERE name = ?", name)

    def snapshots(self) -> list[Snapshot]:
        return self._all(Snapshot, "SELECT * FROM snapshots ORDER BY created_ns, id")

    def put_snapshot(self, snapshot: Snapshot) -> None:
        self._upsert("snapshots", "id", snapshot)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._delete("snapshots", "id", snapshot_id)

    # ---- group snapshots ----
    def find_group_snapshot(self, group_id: str) -> GroupSnapshot | None:
        return self._one(GroupSnapshot, "SELECT * FROM group_snapshots WHERE id = ?", group_id)

    def get_group_snapshot(self, group_id: str) -> GroupSnapshot:
        group = self.find_group_snapshot(group_id)
        if group is None:
            raise errors.not_found(f"group snapshot {group_id!r} does not exist")
        return group

    def find_group_snapshot_by_name(self, name: str) -> GroupSnapshot | None:
        return self._one(GroupSnapshot, "SELECT * FROM group_snapshots WHERE name = ?", name)

    def group_snapshots(self) -> list[GroupSnapshot]:
        return self._all(GroupSnapshot, "SELECT * FROM group_snapshots ORDER BY created_ns, id")

    def group_members(self, group_id: str) -> list[Snapshot]:
        sql = "SELECT * FROM snapshots WHERE group_snapshot_id = ? ORDER BY source_volume_id, id"
        return self._all(Snapshot, sql, group_id)

    def put_group_snapshot(self, group: GroupSnapshot, members: list[Snapshot]) -> None:
        """The group and its member snapshots in one commit: never a group with half of them."""
        with self.transaction():
            self._upsert("group_snapshots", "id", group)
            for member in members:
                self._upsert("snapshots", "id", member)

    def delete_group_snapshot(self, group_id: str) -> None:
        """The group and its member snapshots' records, in one commit."""
        with self.transaction():
            self._db.execute("DELETE FROM snapshots WHERE group_snapshot_id = ?", (group_id,))
            self._db.execute("DELETE FROM group_snapshots WHERE id = ?", (group_id,))

    # ---- node: stage and publish records ----
    def find_stage(self, volume_id: str) -> Stage | None:
        return self._one(Stage, "SELECT * FROM stages WHERE volume_id = ?", volume_id)

    def stages(self) -> list[Stage]:
        return self._all(Stage, "SELECT * FROM stages ORDER BY volume_id")

    def put_stage(self, stage: Stage) -> None:
        self._upsert("stages", "volume_id", stage)

    def delete_stage(self, volume_id: str) -> None:
        self._delete("stages", "volume_id", volume_id)

    def find_publish(self, target_path: str) -> Publish | None:
        return self._one(Publish, "SELECT * FROM publishes WHERE target_path = ?", target_path)

    def publishes(self, volume_id: str | None = None) -> list[Publish]:
        if volume_id is None:
            return self._all(Publish, "SELECT * FROM publishes ORDER BY target_path")
        sql = "SELECT * FROM publishes WHERE volume_id = ? ORDER BY target_path"
        return self._all(Publish, sql, volume_id)

    def put_publish(self, publish: Publish) -> None:
        self._upsert("publishes", "target_path", publish)

    def delete_publish(self, target_path: str) -> None:
        self._delete("publishes", "target_path", target_path)

    # ---- controller: attach records ----
    def find_attachment(self, volume_id: str, node_id: str) -> Attachment | None:
        sql = "SELECT * FROM attachments WHERE volume_id = ? AND node_id = ?"
        return self._one(Attachment, sql, volume_id, node_id)

    def attachments(self, volume_id: str | None = None) -> list[Attachment]:
        if volume_id is None:
            return self._all(Attachment, "SELECT * FROM attachments ORDER BY volume_id, node_id")
        sql = "SELECT * FROM attachments WHERE volume_id = ? ORDER BY node_id"
        return self._all(Attachment, sql, volume_id)

    def attachments_on(self, node_id: str) -> list[Attachment]:
        sql = "SELECT * FROM attachments WHERE node_id = ? ORDER BY volume_id"
        return self._all(Attachment, sql, node_id)

    def put_attachment(self, attachment: Attachment) -> None:
        self._upsert("attachments", "volume_id, node_id", attachment)

    def delete_attachment(self, volume_id: str, node_id: str) -> None:
        with self.transaction():
            self._db.execute(
                "DELETE FROM attachments WHERE volume_id = ? AND node_id = ?", (volume_id, node_id)
            )

    # ---- accounting ----
    def used_bytes(self) -> int:
        """Bytes promised to volumes and snapshots (each snapshot is a full copy)."""
        with self._lock:
            volumes = self._db.execute("SELECT COALESCE(SUM(capacity), 0) FROM volumes").fetchone()
            snaps = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM snapshots").fetchone()
        return int(volumes[0]) + int(snaps[0])
