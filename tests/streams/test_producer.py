"""Producers against a real broker: `produce_waiting`, whose full local queue waits for
room instead of raising, and `BatchProducer`, whose batches are acknowledged whole;
every record lands once, and a failure reaches its caller. The batch producer's tests
run on confluent-kafka's and on the native module's (`NativeBatchProducer`), whose
records the native fold also queues itself (`events_to`)."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import DeliveryFailed
from streams.kafka.config import producer_config
from streams.kafka.native_producer import AVAILABLE, NativeBatchProducer
from streams.kafka.producer import BatchProducer, produce_waiting
from streams.settings import Settings
from streams.testing.topics import read_topic

RECORDS = 2_000
QUEUE = 10  # records librdkafka's local queue holds

needs_native = pytest.mark.skipif(not AVAILABLE, reason="bulkstream_native is not built")
MAKERS = [
    pytest.param(BatchProducer, id="confluent-kafka"),
    pytest.param(NativeBatchProducer, id="native", marks=needs_native),
]


def test_a_full_local_queue_waits_for_room_and_every_record_lands(
    settings: Settings, fresh_topic: str
) -> None:
    config = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "queue.buffering.max.messages": QUEUE,
    }
    plain = Producer(config)
    for n in range(QUEUE):
        plain.produce(fresh_topic, key=b"plain", value=str(n).encode())
    with pytest.raises(BufferError):  # what each caller met before it waited
        plain.produce(fresh_topic, key=b"plain", value=b"-1")
    plain.flush(30)

    producer = Producer(config)
    for n in range(RECORDS):
        produce_waiting(producer, fresh_topic, b"k", str(n).encode(), wait=0.01)
    assert producer.flush(30) == 0
    landed = read_topic(settings, fresh_topic, expected=RECORDS + QUEUE, idle=1)
    waited = [value for key, value, _ in landed if key == b"k"]
    assert waited == list(range(RECORDS))  # one key, one partition: in order


@pytest.mark.parametrize("make", MAKERS)
def test_a_batch_is_acknowledged_whole_and_every_record_lands(
    settings: Settings, fresh_topic: str, make: type[BatchProducer]
) -> None:
    producer = make(producer_config(settings))
    values = [str(n).encode() for n in range(RECORDS)]

    async def send() -> None:
        empty = await producer.send_all(fresh_topic, b"k", [])
        assert empty.done()
        await (await producer.send_all(fresh_topic, b"k", values[:1_000]))
        await (await producer.send_all(fresh_topic, b"k", values[1_000:]))

    asyncio.run(send())
    assert len(producer.producer) == 0  # nothing left in librdkafka's queue
    assert_landed_in_order(settings, fresh_topic)


@pytest.mark.parametrize("make", MAKERS)
def test_a_batch_queued_while_the_last_is_awaited_is_acknowledged_too(
    settings: Settings, fresh_topic: str, make: type[BatchProducer]
) -> None:
    """The delivery fold queues a batch while the last one's future is awaited: here,
    the next batch is queued once the last one's flush has ended, before its future
    is settled (the moment a check of librdkafka's queue would find the next one's)."""
    producer = make(producer_config(settings))
    values = [str(n).encode() for n in range(RECORDS)]
    half = RECORDS // 2

    async def send() -> None:
        first = await producer.send_all(fresh_topic, b"k", values[:half])
        await asyncio.sleep(0.001)  # the first batch's flush starts, in a thread
        flushed_meanwhile(producer)
        second = await producer.send_all(fresh_topic, b"k", values[half:])
        await first
        await second

    asyncio.run(send())
    assert len(producer.producer) == 0
    assert_landed_in_order(settings, fresh_topic)


def assert_landed_in_order(settings: Settings, topic: str) -> None:
    """Every record of the batches (`RECORDS` numbers under one key) landed once, in order."""
    landed = read_topic(settings, topic, expected=RECORDS, idle=1)
    assert [(key, value) for key, value, _ in landed] == [(b"k", n) for n in range(RECORDS)]


def flushed_meanwhile(producer: BatchProducer) -> None:
    """Block the event loop until librdkafka's queue is empty and a flush running in a
    thread has returned: its future's callback waits for the loop."""
    while len(producer.producer):
        time.sleep(0.001)
    time.sleep(0.2)


@pytest.mark.parametrize("make", MAKERS)
def test_a_record_the_broker_refuses_fails_its_batch(
    settings: Settings, kafka_admin: AdminClient, unique: str, make: type[BatchProducer]
) -> None:
    """No Python call per record that lands, but a failure still reaches the caller."""
    topic = f"t{unique}.small"
    config = {"max.message.bytes": "1000"}  # the broker refuses larger records
    kafka_admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(30)
    producer = make(producer_config(settings))
    try:

        async def send(value: bytes) -> None:
            await (await producer.send_all(topic, b"k", [b"small", value]))

        with pytest.raises(DeliveryFailed, match=r"MSG_SIZE_TOO_LARGE|too large"):
            asyncio.run(send(b"x" * 5_000))
        asyncio.run(send(b"fits"))  # a failure is its batch's, not the next one's
    finally:
        kafka_admin.delete_topics([topic])[topic].result(30)


@pytest.mark.parametrize("make", MAKERS)
def test_a_batch_larger_than_the_local_queue_waits_for_room(
    settings: Settings, fresh_topic: str, make: type[BatchProducer]
) -> None:
    producer = make({**producer_config(settings), "queue.buffering.max.messages": QUEUE})
    values = [str(n).encode() for n in range(RECORDS)]

    async def send() -> None:
        await (await producer.send_all(fresh_topic, b"k", values))

    asyncio.run(send())
    assert_landed_in_order(settings, fresh_topic)


@pytest.mark.parametrize("make", MAKERS)
def test_a_batch_is_acknowledged_as_soon_as_the_broker_took_it(
    settings: Settings, fresh_topic: str, make: type[BatchProducer]
) -> None:
    """Not at the next tick of a poll: the crate's `flush` polled librdkafka's queue for
    the whole of 100 ms between two looks at its count, and every acknowledgement of
    the native producer came at least 100 ms after its batch."""
    producer = make(producer_config(settings))
    waits = []

    async def send() -> None:
        await (await producer.send_all(fresh_topic, b"k", [b"0"]))  # connected first
        for n in range(21):
            started = time.perf_counter()
            await (await producer.send_all(fresh_topic, b"k", [str(n).encode()]))
            waits.append(time.perf_counter() - started)

    asyncio.run(send())
    # A local broker takes a record in a few ms (linger.ms is 5): the median, with room.
    assert sorted(waits)[len(waits) // 2] < 0.05


@pytest.mark.parametrize("make", MAKERS)
def test_a_batch_awaited_while_the_producer_closes_fails(make: type[BatchProducer]) -> None:
    """Closing with records still queued fails their acknowledgement, as a delivery
    failure (the native producer's flush once raised "closed" on the way). The native
    producer's librdkafka is freed at close, which reports its records purged."""
    producer = make({"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 60_000})

    async def send() -> None:
        acknowledged = await producer.send_all("nowhere", b"k", [b"never taken"])
        await asyncio.sleep(0.05)  # the acknowledgement is being awaited
        assert producer.close(0) == 1
        await acknowledged

    with pytest.raises(DeliveryFailed, match=r"closed before the broker took|[Pp]urged"):
        asyncio.run(send())
