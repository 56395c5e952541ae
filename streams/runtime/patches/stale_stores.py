"""Patch: a local store ahead of its changelog is deleted before faust starts.

Upstream: a partition's RocksDB is a cache of its changelog topic and
remembers the changelog offset it has applied. If the topic is now behind
that offset, it was deleted and made again (a cluster reset, topics dropped
by hand), and faust refuses to start: "The persisted offset for changelog
topic partition is higher than the last offset in that topic"
(`ConsistencyError`, faust-streaming#158, open; 0.15.3 and master).

Failure it prevents: a worker crash-looping on a store that describes a
world that no longer exists (faust's `recovery_consistency_check=False`
would start on it instead, with its stale data). Such a store is deleted
here instead, and faust rebuilds it from the changelog, which is the truth
(the dedupe index with it, from the batch records). It reads faust's on-disk
layout (the store paths and the key of a store's applied offset), so it
lives here.

A store whose column families are not the table's (made before
`key_families`) is rebuilt from the changelog the same way: its keys would
sit in the wrong family, unseen.

Regression test: tests/streams/test_local_state.py (a real worker over a
remade changelog).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from rocksdict import AccessType, Rdict

from streams.kafka.topics import state_changelog
from streams.runtime.patches.key_families import OFFSET_KEY, KeyFamilies, has_families
from streams.settings import Settings

log = logging.getLogger(__name__)

# Where faust keeps the table's stores.
STORE_NAME = re.compile(r"^state-(\d+)\.db$")
MISSING = (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART)
# A changelog partition made a moment ago, whose leader is not elected yet.
LEADERLESS = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
# How long a changelog partition made anew may be without a leader at start.
LEADER_WAIT_SECONDS = 30.0


def tables_dir(settings: Settings) -> Path:
    return settings.data_dir / settings.worker_id / "faust" / "v1" / "tables"


def applied_offset(store: Path, families: KeyFamilies | None = None) -> int | None:
    db = Rdict(str(store), access_type=AccessType.read_only())
    try:
        raw = (db.get_column_family(families.offsets) if families else db).get(OFFSET_KEY)
    finally:
        db.close()
    return None if raw is None else int(raw)


def discard_stale_stores(settings: Settings, families: KeyFamilies | None = None) -> list[int]:
    """Delete each partition store that is ahead of its changelog, or whose column
    families are not `families`; their partitions."""
    stores = {
        int(found.group(1)): path
        for path in sorted(tables_dir(settings).glob("state-*.db"))
        if (found := STORE_NAME.match(path.name))
    }
    if not stores:
        return []
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "unused"}
    )
    discarded = []
    try:
        for partition, path in stores.items():
            if not has_families(path, families):
                log.warning(
                    "state of partition %d was made without its column families: "
                    "rebuilding it from the changelog",
                    partition,
                )
                shutil.rmtree(path)
                discarded.append(partition)
                continue
            applied = applied_offset(path, families)
            if applied is None:
                continue
            end = _changelog_end(consumer, TopicPartition(state_changelog(settings), partition))
            if applied >= end:
                log.warning(
                    "state of partition %d is at changelog offset %d but the changelog "
                    "ends at %d (the topic was made anew): rebuilding it from the changelog",
                    partition,
                    applied,
                    end,
                )
                shutil.rmtree(path)
                discarded.append(partition)
    finally:
        consumer.close()
    return discarded


def _changelog_end(consumer: Consumer, partition: TopicPartition) -> int:
    """The changelog partition's end offset (0 when it does not exist). A partition made
    a moment ago may have no leader yet (`NOT_LEADER_FOR_PARTITION`): asked again until
    it has one, for at most `LEADER_WAIT_SECONDS`."""
    deadline = time.monotonic() + LEADER_WAIT_SECONDS
    while True:
        try:
            _, end = consumer.get_watermark_offsets(partition, timeout=30)
            return int(end)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in MISSING:
                return 0  # no such topic or partition (any more): nothing is in it
            leaderless = error.code() in LEADERLESS or error.retriable()
            if not leaderless or time.monotonic() > deadline:
                raise  # the broker did not answer: that proves nothing about the store
            time.sleep(0.2)
