"""Kafka for tests and runs: reading a topic back, the DLQ, a group's members, and
namespaces of one's own (topics, app id, Redis prefix) made and dropped."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, ConsumerGroupState, Message
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import KafkaError, KafkaException, TopicPartition

from streams.settings import Settings


def read_topic(
    settings: Settings,
    topic: str,
    *,
    expected: int | None = None,
    idle: float = 5.0,
    timeout: float = 300.0,
) -> list[tuple[bytes | None, Any, int]]:
    """Everything committed on a topic, read_committed from the start, as (key, json, partition).

    Stops once `expected` messages arrived and nothing more came for `idle`
    seconds (so extra duplicates would still be seen), or at the end of every
    partition when `expected` is None."""
    return [
        (m.key(), _json(m), m.partition() or 0)
        for m in _records(settings, topic, expected, idle, timeout)
    ]


def read_raw(settings: Settings, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """Everything committed on a topic now, as (partition, key, value), the bytes as
    they are (a changelog's)."""
    records = []
    for m in _records(settings, topic):
        partition = m.partition()
        assert partition is not None  # a record consumed has one
        records.append((partition, m.key(), m.value()))
    return records


def read_stamped(settings: Settings, topic: str) -> list[tuple[float, Any]]:
    """Everything committed on a topic now, as (record timestamp in seconds, json), in
    timestamp order."""
    stamped = [(m.timestamp()[1] / 1000, _json(m)) for m in _records(settings, topic)]
    return sorted(stamped, key=lambda item: item[0])


def _json(message: Message) -> Any:
    value = message.value()
    return orjson.loads(value) if value else None


def _records(
    settings: Settings,
    topic: str,
    expected: int | None = None,
    idle: float = 5.0,
    timeout: float = 300.0,
) -> list[Message]:
    """The committed records of every partition of the topic (`read_topic` says when it
    stops)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    metadata = consumer.list_topics(topic, timeout=30).topics[topic]
    consumer.assign([TopicPartition(topic, p, -2) for p in metadata.partitions])
    out: list[Message] = []
    at_eof: set[int] = set()
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(message.partition() or 0)
                        continue
                    raise AssertionError(f"consumer error: {error}")
                out.append(message)
                at_eof.discard(message.partition() or 0)
                last_new = time.monotonic()
            if expected is None:
                if len(at_eof) == len(metadata.partitions):
                    break
            elif len(out) >= expected and time.monotonic() - last_new > idle:
                break
    finally:
        consumer.close()
    return out


def read_dlq(
    settings: Settings, expected: int, timeout: float = 60.0, topic: str | None = None
) -> list[tuple[bytes | None, dict[str, bytes], bytes]]:
    """A dead-letter topic (the commands' by default) as (key, headers, value)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    consumer.subscribe([topic or settings.topic_commands_dlq])
    out: list[tuple[bytes | None, dict[str, bytes], bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            headers: dict[str, bytes] = {}
            for header in message.headers() or []:
                name, raw = header[0], header[1]
                headers[str(name)] = raw if isinstance(raw, bytes) else str(raw or "").encode()
            value = message.value()
            assert isinstance(value, bytes)
            out.append((message.key(), headers, value))
    finally:
        consumer.close()
    return out


def members_with_partitions(settings: Settings, group: str) -> int:
    """How many members of a consumer group hold partitions, once the group is stable."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    if description.state != ConsumerGroupState.STABLE:
        return 0
    return sum(
        1
        for member in description.members
        if member.assignment is not None and member.assignment.topic_partitions
    )


def fresh_settings(settings: Settings, tag: str) -> Settings:
    """A copy of these settings with topics, app id and Redis prefix of its own."""
    names = {
        name: f"{value}.{tag}"
        for name, value in settings.model_dump().items()
        if name.startswith("topic_") or name in ("app_id", "redis_prefix")
    }
    return settings.model_copy(update={**names, "data_dir": settings.data_dir / tag})


def drop_topics(settings: Settings, marker: str) -> None:
    """Delete every topic whose name holds `marker` (a test's or a run's own token).

    Each test makes ten topics of `partitions` partitions, and faust two more;
    left behind, a long suite runs the broker out of open files."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    names = [name for name in admin.list_topics(timeout=30).topics if marker in name]
    for future in admin.delete_topics(names, operation_timeout=60).values() if names else []:
        # Already gone, or the broker is down (a chaos test): nothing to keep either way.
        with contextlib.suppress(KafkaException):
            future.result(60)
