"""Patch: the state table's writes of a stretch of code reach RocksDB as one
WriteBatch a partition, not a write each.

Upstream: none (a missing feature, not a fault): faust's RocksDB store (0.15.3
and master) writes each key of a table with a `put` of its own, and each put
appends to RocksDB's write-ahead log: a `write()` call and a crc32c, made by
rocksdict without releasing the GIL.

Failure it prevents: the delivery fold spending the worker's GIL in the log.
A batch of 10,000 reports rewrites about 160 blocks of message states; in a
py-spy `--gil --native` profile of `python -m bench --only outcomes`, the
`write()`s of their puts held 48 of the folding worker's 565 samples of the
GIL (8.5 %), crc32c 11 more. Gathered (`gathered`), the batch's blocks are one
append of the log.

Reads made inside the stretch see the store as it was before it: it is for
code that writes what it computed already (the fold's `finish`). The writes
gathered are made when the stretch ends, whatever ends it: faust has queued
their changelog records by then, and the store must not miss what its
changelog holds. No callback runs inside a stretch (it has no await), so
faust never records a changelog offset beyond what the store holds.

Regression test: tests/streams/runtime/test_gathered_writes.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import rocksdict

from streams.runtime.patches.key_families import FamilyStore


class GatheredWritesStore(FamilyStore):
    """`FamilyStore`, whose writes inside `gathered` are made at its end, in one
    WriteBatch a partition."""

    _gathered: dict[int, Any] | None = None  # partition -> its WriteBatch, in a stretch

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """Gather the writes made inside; write them at the end (nested: the outermost)."""
        if self._gathered is not None:
            yield
            return
        self._gathered = {}
        try:
            yield
        finally:
            gathered, self._gathered = self._gathered, None
            for partition, batch in gathered.items():
                self._db_for_partition(partition).write(batch)

    def _batch(self, partition: int) -> Any:
        assert self._gathered is not None
        batch = self._gathered.get(partition)
        if batch is None:
            batch = self._gathered[partition] = rocksdict.WriteBatch(raw_mode=True)
        return batch

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        if self._gathered is None:
            super().put(partition, key, value)
        else:
            self._batch(partition).put(key, value, self.family_handle(partition, key))

    def delete(self, partition: int, key: bytes) -> None:
        if self._gathered is None:
            super().delete(partition, key)
        else:
            self._batch(partition).delete(key, self.family_handle(partition, key))
