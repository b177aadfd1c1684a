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
