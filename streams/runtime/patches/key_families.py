"""Patch: a table's keys live in RocksDB column families by kind (the state's: the
partition's own keys apart from the jobs'), so compacting the keys a job writes never
rewrites the rest of its partition.

Upstream: none (a missing feature, not a fault): faust's RocksDB store (0.15.3
and master) keeps every key of a partition in one column family, its own
applied offset (`__faust\\0offset__`, written on each commit) among them.

Failure it prevents: each level-0 compaction rewriting the partition's whole
state. A level-0 file spans its memtable's keys from the lowest to the
highest. Beside a job's keys, every memtable held the partition's own keys
(the feeds' cursors, written every second, sort before any job id; faust's
offset key after), so every file spanned the partition and each compaction
rewrote every file of the level below: during the delivery fold, 55-62 MB
for 6-7 MB of input (a bench run's RocksDB log); with 5 retained jobs on the
partition, a new job's ingest made its compactions write 0.27 GB instead of
0.17 (`python -m bench.state_families`). With those keys in a family of
their own, a file spans what its job wrote.

The table is told its families (`KeyFamilies`: their names, which one a key
belongs to, and the one that keeps faust's offset key). Everything faust
reads or writes by key is routed here; the rest of the tree reads a family
through `streams.runtime.access.partition_db`. A store made before the
families were (or with others) is rebuilt from the changelog:
`stale_stores.discard_stale_stores`.

Regression test: tests/streams/runtime/test_key_families.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import rocksdict
from faust.stores import rocksdb as rocksdb_store
from faust.streams import current_event
from faust.types import TP, EventT

OFFSET_KEY = rocksdb_store.Store.offset_key


@dataclass(frozen=True)
class KeyFamilies:
    """A table's column families besides RocksDB's default; the rule placing a key (or
    every key with that prefix) in one, by name (None: the default); the family that
    keeps faust's applied offset (`OFFSET_KEY`)."""

    names: tuple[str, ...]
    of: Callable[[bytes], str | None]
    offsets: str


def has_families(store: Path, families: KeyFamilies | None) -> bool:
    """The store's column families, besides the default, are `families`' (or none)."""
    kept = set(rocksdict.Rdict.list_cf(str(store))) - {"default"}
    return kept == set(families.names if families else ())


class FamilyStore(rocksdb_store.Store):
    """faust's RocksDB store, keeping each key in the column family `families.of` names
    (the table's `key_families`; one family, as faust does, when it has none). What
    faust reads, writes, deletes and restores by key is routed; iterating the whole
    table (which nothing here does) sees the default family only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.families: KeyFamilies | None = getattr(self.table, "key_families", None)
        self._handles: dict[int, dict[str, Any]] = {}

    # -- the families of an open partition ------------------------------------
    def family_db(self, partition: int, name: str | None) -> Any:
        """The partition's family `name` (None: the default) as a rocksdict store, kept
        while the partition is: rocksdict flushes a family's memtable when the last
        handle of it is dropped."""
        db = self._db_for_partition(partition)
        return db if name is None else self._handles[partition][name]

    def _family_of(self, key: bytes) -> str | None:
        if self.families is None:
            return None
        return self.families.offsets if key == OFFSET_KEY else self.families.of(key)

    def _holding(self, partition: int, key: bytes) -> Any:
        return self.family_db(partition, self._family_of(key))

    def _open_for_partition(self, partition: int) -> Any:
        if self.families is None:
            return super()._open_for_partition(partition)
        path = self.partition_path(partition)
        names = self.families.names
        if path.exists() and not has_families(path, self.families):
            # stale_stores discards such a store before faust opens any.
            raise RuntimeError(f"store of partition {partition} lacks the families {names}")
        # As faust opens a store, with the families: one options object, so they share
        # its block cache, and their memtables together hold what one family's did.
        options = self.rocksdb_options.as_options()
        options.create_missing_column_families(True)
        options.set_db_write_buffer_size(
            self.rocksdb_options.write_buffer_size * self.rocksdb_options.max_write_buffer_number
        )
        db = rocksdict.Rdict(
            str(path), options=options, column_families={name: options for name in names}
        )
        db.set_read_options(rocksdict.ReadOptions())
        self._handles[partition] = {name: db.get_column_family(name) for name in names}
        return db

    def revoke_partitions(self, table: Any, tps: set[TP]) -> None:
        # faust closes a store by dropping it; its families hold it open too.
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                self._handles.pop(tp.partition, None)
        super().revoke_partitions(table, tps)

    async def stop(self) -> None:
        self._handles.clear()  # before faust drops the stores and collects them
        await super().stop()

    # -- faust's reads and writes, routed by key ------------------------------
    def _set(self, key: bytes, value: bytes | None) -> None:
        event = current_event()
        assert event is not None  # as faust's: a write outside an event has no partition
        partition = event.message.partition
        self._key_index[key] = partition
        self._holding(partition, key).put(key, value)

    def put_many(self, partition: int, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Write these keys in the partition, each in its family, with one RocksDB write
        batch (`changelog_batch.BatchedChangelog.set_many` sends their records)."""
        items = list(items)
        self._write(partition, items)
        for key, _ in items:
            self._key_index[key] = partition

    def _write(self, partition: int, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Write (or, for None, delete) these keys in the partition, each in its family,
        with one RocksDB write batch."""
        write = rocksdict.WriteBatch(raw_mode=True)
        db = self._db_for_partition(partition)
        handles: dict[str | None, Any] = {}
        for key, value in items:
            family = self._family_of(key)
            if family not in handles:
                handles[family] = None if family is None else db.get_column_family_handle(family)
            if value is None:
                write.delete(key, handles[family])
            else:
                write.put(key, value, handles[family])
        db.write(write)

    def _get(self, key: bytes) -> bytes | None:
        for partition in self._partitions_for(key):
            value = self._holding(partition, key).get(key)
            if value is not None:
                self._key_index[key] = partition
                return value  # type: ignore[no-any-return]
        return None

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def _del(self, key: bytes) -> None:
        for partition in self._partitions_for(key):
            self._holding(partition, key).delete(key)

    def _partitions_for(self, key: bytes) -> Iterable[int]:
        """Where faust looks for a key: the event's partition, else the one it was last
        seen in, else every open one."""
        event = current_event()
        if event is not None and not self.table.is_global and not self.table.use_partitioner:
            return (event.message.partition,)
        known = self._key_index.get(key)
        if known is not None and known in self._dbs:
            return (known,)
        return tuple(self._dbs)

    def apply_changelog_batch(
        self,
        batch: Iterable[EventT[Any]],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        writes: defaultdict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
        offsets: dict[TP, int] = {}
        for event in batch:
            message = event.message
            offsets[message.tp] = max(message.offset, offsets.get(message.tp, -1))
            writes[message.partition].append((cast(bytes, message.key), message.value))
        for partition, items in writes.items():
            self._write(partition, items)
        for tp, offset in offsets.items():
            self.set_persisted_offset(tp, offset)

    def persisted_offset(self, tp: TP) -> int | None:
        raw = self._holding(tp.partition, OFFSET_KEY).get(OFFSET_KEY)
        return None if raw is None else int(raw)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self._holding(tp.partition, OFFSET_KEY).put(OFFSET_KEY, str(offset).encode())
