"""Client settings every bulkstream producer shares (and the benchmarks copy)."""

from __future__ import annotations

from typing import Any

from streams.kafka.topics import MAX_MESSAGE_BYTES
from streams.settings import Settings


def producer_config(settings: Settings) -> dict[str, Any]:
    """The producer settings every bulkstream producer shares (and the benchmarks copy)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        # The local queue is what a fan-out runs ahead of the broker: bounded in bytes
        # too (librdkafka's default is 1 GB), so a worker's memory does not follow the
        # size of the job. 32 MB is over 100k sends, ample to keep the broker busy.
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 32 * 1024,
    }


def group_consumer_config(settings: Settings, group: str, session_ms: int) -> dict[str, Any]:
    """A consumer in a group, reading only committed records, committing by hand, with
    small fetches and a small prefetch queue: memory stays flat however much waits
    (a larger record is still fetched whole, alone)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 4 * 1024 * 1024,
        "max.partition.fetch.bytes": 1024 * 1024,
        "queued.max.messages.kbytes": 4096,
        # With the prefetch full, fetch again as soon as there is room, not 1 s later
        # (librdkafka's default): a fan-out member that took a burst of pages (4 MB is
        # about 70 of 500 users) drained them, then idled out the second.
        "fetch.queue.backoff.ms": 5,
        "session.timeout.ms": session_ms,
    }
