"""The fan-out's done-markers, mirrored locally: which pages are already fanned out.

The markers live in the compacted `bulk.fanout-done` topic (co-partitioned with
the pages); each worker mirrors the partitions it holds in a RocksDB, restored
from the topic on every assignment.
"""

from __future__ import annotations

from pathlib import Path

from rocksdict import Options, Rdict

_RESTORED_AT = b"\x00restored-at\x00"


class DoneStore:
    """Local mirror of the done-markers topic: which pages are already fanned out."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), Options(raw_mode=True))

    def __contains__(self, key: bytes) -> bool:
        return self.db.get(key) is not None

    def add(self, key: bytes) -> None:
        self.db[key] = b"1"

    def discard(self, key: bytes) -> None:
        self.db.delete(key)

    def restored_at(self, partition: int) -> int | None:
        raw = self.db.get(_RESTORED_AT + str(partition).encode())
        return None if raw is None else int(raw)

    def set_restored_at(self, partition: int, offset: int) -> None:
        self.db[_RESTORED_AT + str(partition).encode()] = str(offset).encode()

    def close(self) -> None:
        self.db.close()
