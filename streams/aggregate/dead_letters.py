"""The dead-letter queue: where a poison command (`streams.aggregate.decode` tells
it from a command) is copied whole, `bulk.commands.dlq`, with why
(`x-bulkstream-reason`, `x-bulkstream-error`) and where it came from
(`x-bulkstream-source`).

The copy goes through librdkafka, not faust's aiokafka producer: poison can
be large (up to the topic's 16 MB limit), and aiokafka would copy and
checksum it in Python on the event loop that applies the good commands.
librdkafka compresses it (lz4, on its own thread), which spares the broker
most of the cost of a large write (docs/architecture.md has the figures).
The producer is opened when the worker starts (`open`), so the first poison
command does not wait for its connection.
"""

from __future__ import annotations

import logging
from typing import Any

from streams import metrics
from streams.aggregate.pipeline import Pipeline
from streams.errors import PoisonCommand
from streams.kafka.config import producer_config
from streams.kafka.producer import AsyncProducer, close_producer
from streams.kafka.topics import MAX_DEAD_LETTER_BYTES

log = logging.getLogger(__name__)

# Header values are for people and tools reading the DLQ, not a second copy.
MAX_ERROR_HEADER = 4000


class DeadLetters:
    def __init__(self, pipeline: Pipeline) -> None:
        self.settings = pipeline.settings
        self.deliveries = pipeline.app.deliveries
        self._producer: AsyncProducer | None = None

    async def send(self, message: Any, exc: PoisonCommand) -> None:
        """Copy a poison message to the DLQ; acknowledged before its offset is committed."""
        metrics.COMMANDS.labels("unknown", "dlq").inc()
        log.warning(
            "command to DLQ: %s (%s/%d@%d)",
            exc.reason,
            message.topic,
            message.partition,
            message.offset,
        )
        headers: dict[str, str | bytes | None] = {
            "x-bulkstream-reason": exc.reason.encode(),
            "x-bulkstream-error": exc.detail[:MAX_ERROR_HEADER].encode(),
            "x-bulkstream-source": f"{message.topic}/{message.partition}/{message.offset}".encode(),
        }
        future = await self.open().send(
            self.settings.topic_commands_dlq, message.key, message.value, headers
        )
        self.deliveries.track(future)

    def open(self) -> AsyncProducer:
        """The DLQ's producer, made once. The worker makes it when it starts: made
        for the first poison command instead, its connection and idempotent
        producer id held up the commit of everything after that command."""
        if self._producer is None:
            config = producer_config(self.settings) | {
                "message.max.bytes": MAX_DEAD_LETTER_BYTES,
                "compression.type": "lz4",
            }
            self._producer = AsyncProducer(config, name="dlq")
            log.info("dead letters go to %s", self.settings.topic_commands_dlq)
        return self._producer

    def close(self) -> None:
        close_producer(self._producer, "dead letters", "sent again on restart")
