"""`Settings.state_compression`: the state's changelog records travel and are kept
compressed (zstd unless set otherwise), so the broker takes a fraction of their bytes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.settings import Settings
from tests.streams.runtime.conftest import (
    end_offset,
    probe,
    produce,
    run,
    running,
    runtime_for,
    until_committed,
)

WRITES = 2000
# Like the delivery fold's blocks of message states: JSON whose keys repeat.
STATE = b'"%d":[{"SENT":[1796000000000],"DELIVERED":[1796000000500]},123456,1]'


def value(n: int) -> bytes:
    return b"{" + b",".join(STATE % (n * 8 + k) for k in range(8)) + b"}"


def changelog_of(settings: Settings) -> str:
    """Write `WRITES` table keys in one event; answer the changelog topic once the
    event's offset is committed (so every record is in Kafka)."""

    async def scenario() -> str:
        runtime = runtime_for(settings)
        state = runtime.state

        async def handle(event: Any) -> None:
            for n in range(WRITES):
                state[b"key-%d" % n] = value(n)

        probe(runtime, handle)
        async with running(runtime):
            await asyncio.to_thread(produce, settings, settings.topic_progress, [b"x"], 0)
            await until_committed(settings, settings.topic_progress, 0, 1, 30)
        return str(state.changelog_topic.get_topic_name())

    return run(scenario())


def read_bytes(settings: Settings, topic: str) -> tuple[int, int]:
    """(bytes received from the broker, bytes of the values) reading the topic's
    partition 0 whole, by librdkafka's statistics."""
    stats: list[dict[str, Any]] = []
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": "compression-probe",
            "enable.auto.commit": False,
            "statistics.interval.ms": 100,
            "stats_cb": lambda raw: stats.append(json.loads(raw)),
        }
    )
    try:
        end = end_offset(settings, topic, 0)
        consumer.assign([TopicPartition(topic, 0, 0)])
        values, offset = 0, -1
        while offset < end - 1:
            message = consumer.poll(10)
            assert message is not None, f"the changelog ended at {offset} of {end}"
            assert message.error() is None, message.error()
            values += len(message.value() or b"")
            offset = message.offset() or 0
        stats.clear()
        deadline = time.monotonic() + 10  # statistics come every 100 ms
        while not stats:  # the first statistics after the last record
            assert time.monotonic() < deadline, "no statistics from librdkafka in 10 s"
            consumer.poll(0.2)
        return int(stats[-1]["rx_bytes"]), values
    finally:
        consumer.close()


@pytest.mark.parametrize("codec", [None, "lz4"])
def test_the_changelog_is_written_compressed(topology: Settings, codec: str | None) -> None:
    """By default (zstd) and with another codec."""
    settings = (
        topology if codec is None else topology.model_copy(update={"state_compression": codec})
    )
    received, values = read_bytes(settings, changelog_of(settings))
    assert values == sum(len(value(n)) for n in range(WRITES))
    assert received < values / 5, (codec, received, values)


def test_none_writes_the_changelog_as_is(topology: Settings) -> None:
    settings = topology.model_copy(update={"state_compression": "none"})
    received, values = read_bytes(settings, changelog_of(settings))
    assert received > values, (received, values)
