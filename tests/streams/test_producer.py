"""`produce_waiting` against a real broker: a producer whose local queue is full waits for
room instead of raising, and every record lands once."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from streams.kafka.producer import produce_waiting
from streams.settings import Settings
from streams.testing.topics import read_topic

RECORDS = 2_000
QUEUE = 10  # records librdkafka's local queue holds


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
