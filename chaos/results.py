"""When the worker finished each command, read off `bulk.command-results`.

A result record's timestamp is set by the worker's producer as it publishes
the result, so it marks the end of the command to the millisecond, whenever
this process gets to read it. Polling a view for the result instead adds up to
one polling interval to every measured span, and costs this process CPU the
worker shares (two cores). For the same reason the reader waits on the broker
(librdkafka's long poll, answered as soon as a result arrives) instead of
asking it every few milliseconds: a fetch every 10 ms cost the broker a quarter
of a core during the measured slices."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.settings import Settings


class ResultTimes:
    """Reads a run's own `bulk.command-results` from its start; `finished` gives
    the wall-clock time (`time.time()`) a command's result was published."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topic_command_results
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": f"result-times-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        partitions = self.consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.seen: dict[str, float] = {}

    def finished(self, command_id: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while command_id not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"no result for command {command_id} in {timeout:.0f} s")
            for record in self.consumer.consume(1000, 0.05):
                self._take(record)
        return self.seen[command_id]

    def _take(self, record: Any) -> None:
        error = record.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"reading results: {error}")
            return
        _, stamp = record.timestamp()
        self.seen[orjson.loads(record.value())["commandId"]] = stamp / 1000

    def close(self) -> None:
        self.consumer.close()
