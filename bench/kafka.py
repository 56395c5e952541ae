"""Raw Kafka: the baselines (a bare confluent-kafka producer) and reading back what was sent.

The baseline producer uses `streams.kafka.config.producer_config` (the same acks,
idempotence, linger and batch size as every bulkstream producer) and pushes
records built and serialised before the clock starts, to a fresh topic with
the same number of partitions: the ceiling of what this broker and client
can take on this machine.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import KafkaError, NewTopic, TopicPartition

from schemas.commands import CommandResult
from streams.kafka.config import producer_config
from streams.kafka.topics import MAX_MESSAGE_BYTES
from streams.settings import Settings


def create_topic(
    settings: Settings, name: str, partitions: int, config: dict[str, str] | None = None
) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    config = {"max.message.bytes": str(MAX_MESSAGE_BYTES), **(config or {})}
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config)])
    futures[name].result(60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until its metadata (leaders) is visible
        topic = admin.list_topics(name, timeout=10).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions:
            return
        time.sleep(0.1)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "-"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in partitions
        }
    finally:
        consumer.close()


@dataclass
class Pushed:
    seconds: float
    records: int
    value_bytes: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def raw_push(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> Pushed:
    """Produce pre-built (key, value) records; time first produce to flush complete."""
    errors: list[str] = []

    def on_error(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer(
        {**producer_config(settings), "on_delivery": on_error, "delivery.report.only.error": True}
    )
    producer.list_topics(topic, timeout=30)  # metadata first, like a warm worker producer
    # The baseline's own loop, its methods bound once: no helper call per record.
    produce, poll = producer.produce, producer.poll
    started = time.perf_counter()
    for key, value in records:
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.05)
    left = producer.flush(600)
    seconds = time.perf_counter() - started
    if left or errors:
        raise AssertionError(f"raw push: {left} undelivered, errors {errors[:3]}")
    written = sum(end_offsets(settings, topic).values())
    if written != len(records):
        raise AssertionError(f"raw push: {written} records on {topic}, expected {len(records)}")
    return Pushed(seconds, len(records), sum(len(v) for _, v in records))


@dataclass
class TopicStats:
    """What a read_committed reader finds on a topic (from the start to the end)."""

    records: int = 0
    distinct_keys: int = 0
    value_bytes: int = 0
    foreign: int = 0  # records of other jobs (not counted in the rest)
    key_mismatch: int = 0  # records whose key is not their messageId
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    per_partition: dict[int, int] = field(default_factory=dict)
    timestamps_ms: list[int] = field(default_factory=list)  # of the job's records, as read


def read_stats(
    settings: Settings, topic: str, job_id: str | None = None, check_message_id: bool = False
) -> TopicStats:
    """Read a whole topic read_committed, counting records, distinct keys and bytes.

    Only bytes are inspected (no JSON parsing), so a million records read fast."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.app_id}-reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    stats = TopicStats()
    keys: set[bytes] = set()
    marker = f'"jobId":"{job_id}"'.encode() if job_id else b""
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        at_eof: set[int] = set()
        deadline = time.monotonic() + 900
        while len(at_eof) < len(partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic} took over 900 s")
            for message in consumer.consume(10_000, timeout=1.0):
                error = message.error()
                partition = message.partition() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(partition)
                        continue
                    raise AssertionError(f"reading {topic}: {error}")
                at_eof.discard(partition)
                key, value = message.key(), message.value() or b""
                if marker and marker not in value:
                    stats.foreign += 1
                    continue
                stats.records += 1
                stats.per_partition[partition] = stats.per_partition.get(partition, 0) + 1
                stats.value_bytes += len(value)
                if key is not None:
                    keys.add(key)
                if check_message_id and (key is None or b'"messageId":"' + key + b'"' not in value):
                    stats.key_mismatch += 1
                ts = message.timestamp()[1]
                if ts > 0:
                    stats.timestamps_ms.append(ts)
                    stats.first_ts_ms = (
                        ts if stats.first_ts_ms is None else min(stats.first_ts_ms, ts)
                    )
                    stats.last_ts_ms = ts if stats.last_ts_ms is None else max(stats.last_ts_ms, ts)
    finally:
        consumer.close()
    stats.distinct_keys = len(keys)
    return stats


def read_results(settings: Settings, command_ids: set[str]) -> dict[str, CommandResult]:
    """The results of these commands on the command-results topic (read to its end)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.app_id}-reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    topic = settings.topic_command_results
    found: dict[str, CommandResult] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        at_eof: set[int] = set()
        deadline = time.monotonic() + 300
        while len(at_eof) < len(partitions) and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(message.partition() or 0)
                        continue
                    raise AssertionError(f"reading {topic}: {error}")
                result = CommandResult.model_validate_json(message.value() or b"{}")
                if result.command_id in command_ids:
                    found[result.command_id] = result
    finally:
        consumer.close()
    return found
