"""The fan-out's done-markers, mirrored locally: which pages are already fanned out.

The markers live in the compacted `bulk.fanout-done` topic (co-partitioned with
the pages); each worker mirrors the partitions it holds in a RocksDB
(`DoneStore`), restored from the topic on every assignment (`DoneRestore`), from
where the last restore of each partition stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer
from confluent_kafka.cimpl import KafkaError, KafkaException, TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from streams.settings import Settings

# A restore that has not reached the end of its partitions by then ends the session.
RESTORE_SECONDS = 120.0
# Markers taken from the reader and written to the store at a time.
BATCH = 10_000

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

    def apply(self, markers: list[tuple[bytes, bool]]) -> None:
        """Markers read from the topic, in order: (key, set) or (key, cleared), in one write."""
        batch = WriteBatch(raw_mode=True)
        for key, present in markers:
            if present:
                batch.put(key, b"1")
            else:
                batch.delete(key)
        self.db.write(batch)

    def restored_at(self, partition: int) -> int | None:
        raw = self.db.get(_RESTORED_AT + str(partition).encode())
        return None if raw is None else int(raw)

    def set_restored_at(self, partition: int, offset: int) -> None:
        self.db[_RESTORED_AT + str(partition).encode()] = str(offset).encode()

    def close(self) -> None:
        self.db.close()


class DoneRestore:
    """Reads the done-markers of newly held partitions into the store, with one reader
    for a fan-out session (a reader made per partition spent most of a rebalance
    starting up, about 1 s each)."""

    def __init__(self, settings: Settings, store: DoneStore) -> None:
        self.s = settings
        self.store = store
        self._reader: Consumer | None = None

    def restore(self, partitions: list[int]) -> None:
        """Read the markers of `partitions` up to their end, from where the last
        restore of each stopped."""
        reader = self._reader
        if reader is None:
            reader = self._reader = Consumer(
                {
                    "bootstrap.servers": self.s.kafka_bootstrap_servers,
                    "group.id": f"{self.s.app_id}-fanout-restore",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 10,
                    "max.partition.fetch.bytes": 16 * 1024 * 1024,
                }
            )
        store = self.store
        starts = {p: store.restored_at(p) for p in partitions}
        reader.assign(
            [
                TopicPartition(self.s.topic_fanout_done, p, -2 if start is None else start)
                for p, start in starts.items()  # -2: OFFSET_BEGINNING
            ]
        )
        last: dict[int, int] = {}
        reading = set(partitions)
        deadline = time.monotonic() + RESTORE_SECONDS
        try:
            while reading:
                if time.monotonic() > deadline:
                    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "done-marker restore"))
                markers: list[tuple[bytes, bool]] = []
                for message in reader.consume(BATCH, 0.5):
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            reading.discard(message.partition() or 0)
                            continue
                        raise KafkaException(error)
                    key = message.key()
                    assert isinstance(key, bytes)
                    markers.append((key, message.value() is not None))
                    last[message.partition() or 0] = message.offset() or 0
                if markers:
                    store.apply(markers)
        finally:
            reader.unassign()
        for partition, offset in last.items():
            store.set_restored_at(partition, offset + 1)

    def close(self) -> None:
        """Close the session's reader (the next session makes its own)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
