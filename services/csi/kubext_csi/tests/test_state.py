"""The SQLite store: records survive a reopen, lookups carry gRPC codes, deletes are tolerant."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from .. import errors, state

VOLUME = state.Volume(
    id="v1", name="pvc-1", capacity=1 << 30, fs_type="ext4", parameters=(("type", "local"),)
)
STAGE = state.Stage("v1", "/s", "mount", "/dev/loop3", "ext4", False, ("noatime",), 1)
PUBLISH = state.Publish("/t", "v1", "/s", "mount", True, (), 1)


def test_records_survive_reopen(tmp_path: Path) -> None:
    store = state.Store(tmp_path / "state.db")
    store.put_volume(VOLUME)
    store.put_snapshot(state.Snapshot("s1", "snap", "v1", 1 << 30, 123))
    store.put_stage(STAGE)
    store.put_publish(PUBLISH)
    store.close()
    again = state.Store(tmp_path / "state.db")
    assert again.get_volume("v1") == VOLUME
    assert again.find_volume_by_name("pvc-1") == VOLUME
    assert again.find_stage("v1") == STAGE
    assert again.publishes("v1") == [PUBLISH]
    assert again.find_snapshot_by_name("snap").source_volume_id == "v1"
    assert again.used_bytes() == 2 << 30


def test_missing_records(tmp_path: Path) -> None:
    store = state.Store(tmp_path / "state.db")
    assert store.find_volume("nope") is None
    with pytest.raises(errors.CsiError) as err:
        store.get_volume("nope")
    assert err.value.code == errors.Code.NOT_FOUND
    with pytest.raises(errors.CsiError) as err:
        store.get_snapshot("nope")
    assert err.value.code == errors.Code.NOT_FOUND
    store.delete_volume("nope")  # deleting what is gone is fine
    store.delete_stage("nope")


def test_upsert_replaces(tmp_path: Path) -> None:
    store = state.Store(tmp_path / "state.db")
    store.put_volume(VOLUME)
    bigger = state.Volume(**{**VOLUME.__dict__, "capacity": 2 << 30})
    store.put_volume(bigger)
    assert store.volumes() == [bigger]


def test_transaction_rolls_back_as_a_whole(tmp_path: Path) -> None:
    store = state.Store(tmp_path / "state.db")
    with pytest.raises(RuntimeError), store.transaction():
        store.put_volume(VOLUME)
        store.put_stage(STAGE)
        raise RuntimeError("crash in the middle")
    assert store.volumes() == [] and store.stages() == []


def test_names_are_unique(tmp_path: Path) -> None:
    store = state.Store(tmp_path / "state.db")
    store.put_volume(VOLUME)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        store.put_volume(state.Volume(id="v2", name="pvc-1", capacity=1, fs_type=""))
    assert store.volumes() == [VOLUME]  # the first volume is untouched


def test_attachments_survive_reopen_and_key_on_volume_and_node(tmp_path: Path) -> None:
    store = state.Store(tmp_path / "state.db")
    on_a = state.Attachment("v1", "node-a", False, 1)
    on_b = state.Attachment("v1", "node-b", True, 3)
    store.put_attachment(on_a)
    store.put_attachment(on_b)
    store.put_attachment(state.Attachment("v1", "node-a", True, 1))  # an upsert, not a third row
    store.close()
    again = state.Store(tmp_path / "state.db")
    assert again.attachments("v1") == [state.Attachment("v1", "node-a", True, 1), on_b]
    assert again.find_attachment("v1", "node-b") == on_b
    assert again.attachments_on("node-b") == [on_b]
    again.delete_attachment("v1", "node-b")
    again.delete_attachment("v1", "node-z")  # deleting what is gone is fine
    assert [a.node_id for a in again.attachments("v1")] == ["node-a"]


def test_a_store_of_the_previous_schema_opens_and_gains_attachments(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE volumes (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " capacity INTEGER NOT NULL, fs_type TEXT NOT NULL, source_kind TEXT NOT NULL,"
        " source_id TEXT NOT NULL, parameters TEXT NOT NULL, created_ns INTEGER NOT NULL);"
        "INSERT INTO volumes VALUES ('v1', 'pvc-1', 1073741824, 'ext4', '', '', '[]', 0);"
        "PRAGMA user_version=1;"
    )
    old.close()
    store = state.Store(path)
    assert store.get_volume("v1").name == "pvc-1"
    store.put_attachment(state.Attachment("v1", "node-a", False, 1))
    assert store.attachments("v1") == [state.Attachment("v1", "node-a", False, 1)]
    store.close()
    newer = sqlite3.connect(path)
    newer.execute(f"PRAGMA user_version={state.SCHEMA_VERSION + 1}")
    newer.close()
    with pytest.raises(RuntimeError, match="newer"):
        state.Store(path)


def test_a_schema_3_store_gains_mutable_parameters_and_group_snapshots(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE volumes (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " capacity INTEGER NOT NULL, fs_type TEXT NOT NULL, source_kind TEXT NOT NULL,"
        " source_id TEXT NOT NULL, parameters TEXT NOT NULL, created_ns INTEGER NOT NULL,"
        " ephemeral INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE snapshots (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " source_volume_id TEXT NOT NULL, size INTEGER NOT NULL, created_ns INTEGER NOT NULL,"
        " ready INTEGER NOT NULL);"
        "INSERT INTO volumes VALUES ('v1', 'pvc-1', 1073741824, 'ext4', '', '', '[]', 0, 0);"
        "INSERT INTO snapshots VALUES ('s1', 'snap', 'v1', 1073741824, 5, 1);"
        "PRAGMA user_version=3;"
    )
    old.close()
    store = state.Store(path)
    assert store.get_volume("v1").mutable_parameters == ()
    assert store.get_volume("v1").label is None
    assert store.get_snapshot("s1").group_snapshot_id == ""
    modified = state.Volume(
        **{**store.get_volume("v1").__dict__, "mutable_parameters": (("label", "x"),)}
    )
    store.put_volume(modified)
    store.close()
    assert state.Store(path).get_volume("v1").label == "x"


def test_group_snapshots_commit_and_delete_with_their_members(tmp_path: Path) -> None:
    store = state.Store(tmp_path / "state.db")
    store.put_volume(VOLUME)
    group = state.GroupSnapshot("g1", "nightly", 7)
    members = [state.Snapshot("m1", "nightly/v1", "v1", 1 << 30, 7, group_snapshot_id="g1")]
    store.put_snapshot(state.Snapshot("s1", "alone", "v1", 1 << 30, 8))
    with pytest.raises(sqlite3.IntegrityError):  # a member clashing: nothing of the group stays
        store.put_group_snapshot(group, [*members, state.Snapshot("m2", "alone", "v1", 1, 7)])
    assert store.find_group_snapshot("g1") is None and store.find_snapshot("m1") is None
    store.put_group_snapshot(group, members)
    store.close()
    again = state.Store(tmp_path / "state.db")
    assert again.get_group_snapshot("g1") == group
    assert again.find_group_snapshot_by_name("nightly") == group
    assert again.group_members("g1") == members
    again.delete_group_snapshot("g1")
    again.delete_group_snapshot("g1")  # deleting what is gone is fine
    assert again.group_snapshots() == [] and [s.id for s in again.snapshots()] == ["s1"]
    with pytest.raises(errors.CsiError) as err:
        again.get_group_snapshot("g1")
    assert err.value.code == errors.Code.NOT_FOUND
