"""The native feed reader (native/src/feed_reader.rs, `streams.kafka.native_reader`)
reads what confluent-kafka's consumer reads, with the feed's own configuration, on
a real broker: the same records by column from the same starts, seeks, committed
records only, librdkafka's statistics, errors and log lines (a broker out of reach);
and `properties` in memory."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.aggregate.command_feed import consumer_config, fetch_ends, fetch_states, record_columns
from streams.kafka.native_reader import AVAILABLE, Fetched, NativeReader, properties
from streams.settings import Settings

PARTITIONS = 3
RECORDS = 120  # a partition

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="bulkstream_native is not built")

Row = tuple[int, int, bytes | None, bytes | None]


@pytest.fixture
def topic(topology: Settings) -> Iterator[str]:
    name = f"test-reader-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": topology.kafka_bootstrap_servers})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result()
    yield name
    admin.delete_topics([name])[name].result()


@pytest.fixture
def reader(topology: Settings, topic: str) -> Iterator[NativeReader]:
    """A native reader with the feed's configuration, closed after the test."""
    made = NativeReader(consumer_config(topology, f"{topic}-native", 50), topic)
    yield made
    made.close()


def value_of(partition: int, n: int) -> bytes | None:
    if n % 17 == 5:
        return None  # a tombstone
    if n % 29 == 3:
        return b"x" * 300_000  # larger than a fetch of the partition's others
    return orjson.dumps({"partition": partition, "n": n})


def key_of(partition: int, n: int) -> bytes | None:
    return None if n % 11 == 7 else f"job-{partition}-{n // 10}".encode()


def fill(settings: Settings, topic: str) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for n in range(RECORDS):
        for partition in range(PARTITIONS):
            producer.produce(topic, value_of(partition, n), key_of(partition, n), partition)
    assert producer.flush(30) == 0


def natively(reader: NativeReader, expected: int, limit: int = 50) -> list[Row]:
    rows: list[Row] = []
    deadline = time.monotonic() + 30
    while len(rows) < expected and time.monotonic() < deadline:
        fetched = reader.take(limit, 0.2)
        assert not fetched.errors
        assert len(fetched.offsets) <= limit
        rows += zip(fetched.partitions, fetched.offsets, fetched.keys, fetched.values, strict=True)
    return rows


def by_confluent(
    settings: Settings, topic: str, starts: list[TopicPartition], expected: int
) -> list[Row]:
    consumer = Consumer(consumer_config(settings, f"{topic}-confluent", 50))
    consumer.assign(starts)
    rows: list[Row] = []
    deadline = time.monotonic() + 30
    try:
        while len(rows) < expected and time.monotonic() < deadline:
            batch = record_columns(
                topic, consumer.consume(50, 0.2), frozenset(range(PARTITIONS)), {}
            )
            assert batch is not None
            rows += zip(batch.partitions, batch.offsets, batch.keys, batch.values, strict=True)
    finally:
        consumer.close()
    return rows


def by_partition(rows: list[Row]) -> dict[int, list[Row]]:
    split: dict[int, list[Row]] = {}
    for row in rows:
        split.setdefault(row[0], []).append(row)
    return split


def test_it_reads_what_confluent_kafka_reads_from_the_same_starts(
    topology: Settings, topic: str, reader: NativeReader
) -> None:
    fill(topology, topic)
    starts = [TopicPartition(topic, 0, 10), TopicPartition(topic, 1, OFFSET_BEGINNING)]
    expected = RECORDS - 10 + RECORDS
    reader.assign(starts)
    native = natively(reader, expected)
    assert len(native) == expected
    # Nothing more, and nothing of the partition not assigned.
    assert reader.take(50, 0.3).offsets == []
    confluent = by_confluent(topology, topic, starts, expected)
    assert by_partition(native) == by_partition(confluent)
    assert [row[1] for row in by_partition(native)[0]] == list(range(10, RECORDS))


def test_a_seek_reads_a_partition_again_and_unassign_reads_none(
    topology: Settings, topic: str, reader: NativeReader
) -> None:
    fill(topology, topic)
    reader.assign([TopicPartition(topic, 2, 0)])
    assert len(natively(reader, RECORDS)) == RECORDS
    reader.seek(TopicPartition(topic, 2, RECORDS - 5))
    again = natively(reader, 5)
    assert [(p, o) for p, o, _, _ in again] == [(2, o) for o in range(RECORDS - 5, RECORDS)]
    assert again[-1][2] == key_of(2, RECORDS - 1)
    reader.unassign()
    reader.assign([])
    assert reader.take(50, 0.3) == Fetched([], [], [], [], [])
    reader.close()
    reader.close()  # harmless twice
    with pytest.raises(RuntimeError, match="closed"):
        reader.take(1, 0)


def test_only_committed_records_are_read(
    topology: Settings, topic: str, reader: NativeReader
) -> None:
    producer = Producer(
        {"bootstrap.servers": topology.kafka_bootstrap_servers, "transactional.id": f"{topic}-tx"}
    )
    producer.init_transactions(30)
    for commit in (False, True, False, True):
        producer.begin_transaction()
        for n in range(5):
            producer.produce(topic, f"{commit}-{n}".encode(), b"k", 0)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    reader.assign([TopicPartition(topic, 0, 0)])
    rows = natively(reader, 10)
    assert [value for _, _, _, value in rows] == [f"True-{n}".encode() for n in range(5)] * 2
    assert reader.take(50, 0.5).offsets == []


def test_librdkafka_s_statistics_give_each_partition_s_state_and_end(
    topology: Settings, topic: str, reader: NativeReader
) -> None:
    fill(topology, topic)
    reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    natively(reader, PARTITIONS * RECORDS, limit=1000)
    deadline = time.monotonic() + 10
    ends: dict[int, int] = {}
    states: dict[int, str] = {}
    while ends != dict.fromkeys(range(PARTITIONS), RECORDS) and time.monotonic() < deadline:
        reader.take(10, 0.5)
        stats = reader.stats()
        if stats is not None:
            ends = fetch_ends(orjson.loads(stats), topic)
            states = fetch_states(orjson.loads(stats), topic)
    assert ends == dict.fromkeys(range(PARTITIONS), RECORDS)
    assert states == dict.fromkeys(range(PARTITIONS), "active")


def test_a_take_with_nothing_fetched_waits_its_timeout_out(
    topic: str, reader: NativeReader
) -> None:
    reader.assign([TopicPartition(topic, 0, 0)])
    started = time.monotonic()
    assert reader.take(50, 0.5).offsets == []
    assert time.monotonic() - started >= 0.45


def test_properties_are_librdkafka_s_text() -> None:
    assert properties({"a.b": True, "c": 5, "d": "x", "e": False}) == [
        ("a.b", "true"),
        ("c", "5"),
        ("d", "x"),
        ("e", "false"),
    ]
    with pytest.raises(ValueError, match="stats_cb"):
        properties({"stats_cb": print})


def test_a_broker_out_of_reach_is_told_by_errors_and_librdkafka_s_log(
    topology: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = topology.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    reader = NativeReader(consumer_config(settings, "nobody", 50), "nowhere")
    try:
        reader.assign([TopicPartition("nowhere", 0, 0)])
        errors: list[tuple[str, bool]] = []
        deadline = time.monotonic() + 10
        with caplog.at_level(logging.WARNING, logger="streams.kafka.native_reader"):
            while not (errors and caplog.records) and time.monotonic() < deadline:
                fetched = reader.take(10, 0.5)
                assert fetched.offsets == []
                errors += fetched.errors
        assert errors
        assert not any(fatal for _, fatal in errors)
        assert any("127.0.0.1:1" in record.getMessage() for record in caplog.records)
    finally:
        reader.close()


def test_librdkafka_s_warnings_reach_the_log(
    topology: Settings, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A producer's property on a consumer: librdkafka warns (level 4) and goes on.
    config = consumer_config(topology, f"{topic}-warned", 50) | {"linger.ms": 5}
    reader = NativeReader(config, topic)
    try:
        with caplog.at_level(logging.WARNING, logger="streams.kafka.native_reader"):
            reader.take(1, 0)
        warned = [r for r in caplog.records if "is a producer property" in r.getMessage()]
        assert warned
        assert warned[0].levelno == logging.WARNING
    finally:
        reader.close()
