"""What the rest of the tree may ask of faust's objects, as small public functions.

Where faust offers no public way (a partition's store, the consumer's read
offsets), the private attribute is read here and nowhere else; an upgrade
that renames one breaks here, where `tests/streams/runtime/` looks.
"""

from __future__ import annotations

from typing import Any


def partition_db(state: Any, partition: int, family: str | None = None) -> Any:
    """The RocksDB (rocksdict) store of one partition of the state table: its column
    family `family` (None: the default; streams/runtime/patches/key_families.py).

    faust-streaming (0.15.3) has no public accessor: its RocksDB store opens a
    partition's database on demand (`Store._db_for_partition`, which the state's
    `FamilyStore.family_db` calls)."""
    return state.data.family_db(partition, family)


def held_partitions(app: Any, state: Any) -> frozenset[int]:
    """The partitions of the state this worker holds (faust assigns them, with
    the same partitions of `bulk.control`; the feeds read the same partitions of
    `bulk.commands`, `bulk.progress` and `bulk.delivery-status`)."""
    changelog = state.changelog_topic.get_topic_name()
    return frozenset(
        tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog
    )


def read_lags(app: Any, topics: set[str]) -> list[tuple[str, int, int]]:
    """(topic, partition, records not yet read) of each partition of `topics` the
    app's consumer holds.

    faust keeps the offset of the last record it read per partition in
    `Consumer._read_offset` (0.15.3), and says so nowhere public."""
    consumer = app.consumer
    read: dict[Any, int | None] = consumer._read_offset
    lags = []
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        high = consumer.highwater(tp)
        last = read.get(tp)
        if high is not None and high >= 0:
            lags.append((tp.topic, tp.partition, high - (last + 1 if last is not None else 0)))
    return lags


def state_ready(app: Any) -> bool:
    """The assignment is settled and the state of every partition held is restored."""
    return bool(app.tables.actives_ready and not app.rebalancing)
