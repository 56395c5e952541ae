"""Helpers of the delivery tests: send events on the test's own sends topic (in a
committed transaction, as the fan-out writes them, or an aborted one), the
delivery worker run in this process, and the reports read back."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.cimpl import TopicPartition

from schemas.events import SendEvent
from streams.deliver.worker import DeliverOptions, DeliverWorker
from streams.kafka.config import producer_config
from streams.settings import Settings
from streams.testing.topics import read_topic

TENANT = "acme"


@dataclass
class Sends:
    """Send events produced, and the offset after the last one of each partition."""

    events: list[dict[str, Any]] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {e["messageId"]: e for e in self.events}


def send_events(job_id: str, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One send of `job_id` per item of `data` (the user's merged data), as on the topic."""
    return [
        SendEvent(
            message_id=f"{job_id}-m{i}",
            job_id=job_id,
            tenant=TENANT,
            position=i,
            message={"template": "T"},
            to={"email": f"user{i}@example.com"},
            data=item,
        ).to_wire()
        for i, item in enumerate(data)
    ]


def produce_sends(
    settings: Settings,
    events: Sequence[dict[str, Any] | bytes],
    *,
    commit: bool = True,
    into: Sends | None = None,
) -> None:
    """Produce the events (bytes: as they are, keyed `garbage`) keyed by message id in
    one transaction, committed or aborted; a committed one's events and offsets are
    added to `into`."""
    producer = Producer(
        {**producer_config(settings), "transactional.id": f"test-sends-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    offsets: dict[int, int] = {}

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        offsets[msg.partition()] = max(offsets.get(msg.partition(), -1), msg.offset() + 1)

    for event in events:
        key, value = (
            (b"garbage", event)
            if isinstance(event, bytes)
            else (event["messageId"].encode(), orjson.dumps(event))
        )
        producer.produce(settings.topic_sends, key=key, value=value, on_delivery=delivered)
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)
    producer.flush(30)
    if commit and into is not None:
        into.events.extend(e for e in events if isinstance(e, dict))
        for partition, end in offsets.items():
            into.ends[partition] = max(into.ends.get(partition, 0), end)


@contextmanager
def delivering(settings: Settings, options: DeliverOptions) -> Iterator[DeliverWorker]:
    """The delivery worker on a thread of this process, stopped (and checked to have
    stopped cleanly) at the end."""
    worker = DeliverWorker(settings, options)
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(asyncio.run(worker.run(handle_signals=False))),
        name="deliver-under-test",
    )
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(60)
    assert not thread.is_alive(), "the delivery worker did not stop within 60 s"
    assert result == [0], f"the delivery worker ended with {result}"


def read_reports(
    settings: Settings, expected: int, idle: float = 2.0, timeout: float = 60.0
) -> list[tuple[bytes | None, dict[str, Any], int]]:
    """Every report on the test's delivery-status topic, once `expected` came (and
    `idle` seconds passed with no more)."""
    return read_topic(
        settings, settings.topic_delivery_status, expected=expected, idle=idle, timeout=timeout
    )


def committed_offsets(settings: Settings, group: str) -> dict[int, int]:
    """The group's committed offsets on the sends topic, per partition (-1001: none)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group})
    try:
        partitions = [TopicPartition(settings.topic_sends, p) for p in range(settings.partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=30)}
    finally:
        consumer.close()


@pytest.fixture
def sends() -> Sends:
    return Sends()
