"""patches/table_readers.py: the state table's RocksDB keeps its index and filter
blocks in the block cache, so what its open files hold does not grow with its data."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from faust.stores.rocksdb import RocksDBOptions
from rocksdict import WriteBatch

from streams.runtime.access import partition_db
from streams.runtime.patches.table_readers import BoundedReadersStore
from streams.settings import Settings
from streams.testing.processes import wait_for
from tests.streams.runtime.conftest import runtime_for

KEYS = 200_000
READERS = "rocksdb.estimate-table-readers-mem"


def fill(db: Any) -> list[bytes]:
    """KEYS keys like the message index's (a job, then a digest), flushed to files."""
    keys = [
        b"job\0mi\0" + hashlib.blake2b(b"%d" % n, digest_size=12).hexdigest().encode()
        for n in range(KEYS)
    ]
    for start in range(0, KEYS, 10_000):
        batch = WriteBatch(raw_mode=True)
        for n, key in enumerate(keys[start : start + 10_000], start):
            batch.put(key, b"%d" % n)
        db.write(batch)
    db.flush()
    return keys


def readers_bytes(db: Any, keys: list[bytes]) -> int:
    # Every key read back (and a missing one not found) before the memory is read.
    assert [db[key] for key in keys[::997]] == [b"%d" % n for n in range(0, KEYS, 997)]
    assert db.get(b"job\0mi\0" + b"0" * 24) is None
    return int(db.property_int_value(READERS))


def test_the_state_table_keeps_no_index_or_filter_outside_its_cache(
    settings: Settings, tmp_path: Path
) -> None:
    runtime = runtime_for(settings)
    assert isinstance(runtime.state.data, BoundedReadersStore)
    ours = partition_db(runtime.state, 0)
    faust_options = RocksDBOptions(**(runtime.state.options or {}))
    theirs = faust_options.open(tmp_path / "faust-options")
    try:
        held = readers_bytes(ours, fill(ours))
        held_by_faust_options = readers_bytes(theirs, fill(theirs))
    finally:
        ours.close()
        theirs.close()
    # faust's options: the whole index and filter of every file, about 2 bytes a key here.
    assert held_by_faust_options > KEYS
    assert held * 20 < held_by_faust_options


def files_at_level_0(db: Any) -> int:
    return int(db.property_value("rocksdb.num-files-at-level0"))


def test_the_state_table_compacts_level_0_once_8_files_wait(
    settings: Settings, tmp_path: Path
) -> None:
    """A job's index keys are digests, spread over the job's whole key range: each
    compaction of level 0 rewrites every level-1 file of that range. The state leaves
    8 files at level 0 before it compacts them (faust's options: RocksDB's 4)."""
    runtime = runtime_for(settings)
    ours = partition_db(runtime.state, 0)
    theirs = RocksDBOptions(**(runtime.state.options or {})).open(tmp_path / "faust-options")
    try:
        for db in (ours, theirs):
            for flush in range(7):
                batch = WriteBatch(raw_mode=True)
                for n in range(1000):
                    batch.put(b"job\0mi\0%06d-%d" % (n, flush), b"%d" % n)
                db.write(batch)
                db.flush()
        wait_for(lambda: files_at_level_0(theirs) < 7, 30, "faust's options compacting level 0")
        assert files_at_level_0(ours) == 7
    finally:
        ours.close()
        theirs.close()
