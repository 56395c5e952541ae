"""The native producer of message events (native/src/event_producer.rs,
`streams.kafka.native_producer`) on a real broker: a located group's events queued
by the native fold itself land as the fold would answer them, in order, under the
job's id, and are acknowledged; a closed producer refuses records and counts what
it left; a broker out of reach fails the batch and reaches the log. (The batch
producer's contract, both ways: tests/streams/test_producer.py.)"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import orjson
import pytest

from schemas.delivery import DeliveryStatus
from streams.aggregate.fold_codec import batch_reader, fold_group
from streams.errors import DeliveryFailed
from streams.ids import message_id_prefix, positional_message_id
from streams.kafka.config import producer_config
from streams.kafka.native_producer import AVAILABLE, NativeBatchProducer
from streams.settings import Settings
from streams.testing.topics import read_raw
from tests.streams.native import require_native

if TYPE_CHECKING:
    from bulkstream_native import ReportBatch as ReportBatchType

ReportBatch = batch_reader()
require_native(AVAILABLE and ReportBatch is not None)

JOB, TENANT, CREATED = "1-69248100-735a1efde685854f21970d8e", "acme", 1.76e9
USERS = 300


def report_batch(status: DeliveryStatus, offset: int = 0) -> ReportBatchType:
    """A feed's batch of one report of `status` for each of the job's users, located."""
    assert ReportBatch is not None
    values = [
        orjson.dumps(
            {
                "messageId": positional_message_id(CREATED, JOB, n),
                "jobId": JOB,
                "status": status.value,
                "at": 1_760_000_000_000 + n,
            }
        )
        for n in range(USERS)
    ]
    read = ReportBatch(
        values, [JOB.encode()] * USERS, [0] * USERS, list(range(offset, offset + USERS))
    )
    assert read.locate([(message_id_prefix(CREATED), USERS, TENANT, [])]) == [True]
    return read


def test_the_fold_queues_the_events_it_would_answer(settings: Settings, fresh_topic: str) -> None:
    producer = NativeBatchProducer(producer_config(settings))
    read = report_batch(DeliveryStatus.SENT)
    blocks: dict[int, bytes | None] = dict.fromkeys(read.block_numbers(0))
    answered = fold_group(read, 0, None, blocks, TENANT)
    assert len(answered.events) == USERS
    assert answered.queued == 0

    async def fold() -> None:
        failed = producer.failed()
        events_to = producer.events_to(fresh_topic)
        queued = fold_group(report_batch(DeliveryStatus.SENT), 0, None, blocks, TENANT, events_to)
        assert queued.events == []
        assert queued.queued == USERS
        assert queued._replace(events=answered.events, queued=0) == answered
        await producer.acknowledgement(failed)

    asyncio.run(fold())
    assert len(producer.producer) == 0  # nothing left in librdkafka's queue
    landed = read_raw(settings, fresh_topic)  # acknowledged: all there
    assert [(key, value) for _, key, value in landed] == [
        (JOB.encode(), event) for event in answered.events
    ]
    assert producer.close(5) == 0


def test_a_closed_producer_refuses_records_and_counts_what_it_left(
    settings: Settings, fresh_topic: str
) -> None:
    producer = NativeBatchProducer(producer_config(settings))

    async def send() -> None:
        await (await producer.send_all(fresh_topic, b"k", [b"one", b"two"]))

    asyncio.run(send())
    assert producer.close(5) == 0
    assert producer.close(5) == 0  # harmless twice
    assert len(producer.producer) == 0
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(send())
    read = report_batch(DeliveryStatus.SENT)
    blocks = dict.fromkeys(read.block_numbers(0))
    events_to = producer.events_to(fresh_topic)
    with pytest.raises(RuntimeError, match="closed"):
        fold_group(read, 0, None, blocks, TENANT, events_to)
    assert [value for _, _, value in read_raw(settings, fresh_topic)] == [b"one", b"two"]


def test_a_broker_out_of_reach_fails_the_batch_and_reaches_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="streams.kafka.native_reader")
    producer = NativeBatchProducer(
        {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1_500}
    )

    async def send() -> None:
        await (await producer.send_all("nowhere", b"k", [b"lost"]))

    with pytest.raises(DeliveryFailed, match="timed out"):
        asyncio.run(send())
    assert any("librdkafka (message events)" in r.getMessage() for r in caplog.records)
    assert producer.close(0) == 0
