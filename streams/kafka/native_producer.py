"""`BatchProducer` on the native module's own librdkafka (`bulkstream_native.EventProducer`,
native/src/event_producer.rs), for the delivery fold's message events.

The native fold queues a located group's events itself, on its own thread, with
no Python object made an event (`events_to`, given to `ReportBatch.fold`); the
events a Python fold made are queued by `send_all`, a batch a call. Both go to
the one producer, so a job's events keep their order. The batches are
acknowledged as `BatchProducer`'s are: librdkafka reports the failed records
only, and an acknowledgement settles once its queue is empty."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from streams.kafka.native_reader import forward_lines, properties
from streams.kafka.producer import BatchProducer
from streams.native import member

_EVENT_PRODUCER = member("EventProducer")
AVAILABLE = _EVENT_PRODUCER is not None


class NativeBatchProducer(BatchProducer):
    """A `BatchProducer` whose records a native fold can queue too (`events_to`)."""

    def _open(self, config: dict[str, Any]) -> Any:
        if _EVENT_PRODUCER is None:
            raise RuntimeError("bulkstream_native is not installed (`make native`)")
        return _EVENT_PRODUCER(properties(config))

    def events_to(self, topic: str) -> tuple[Any, str]:
        """What `ReportBatch.fold` queues a group's events with, on `topic`."""
        return self.producer, topic

    async def _queue(self, topic: str, key: bytes | None, values: Sequence[bytes]) -> None:
        queued = 0
        while True:
            queued = self.producer.send(topic, key, values, queued)
            if queued == len(values):
                return
            await asyncio.sleep(0.005)  # room comes as the broker takes them

    def failed(self) -> int:
        return int(self.producer.failed())

    def failures(self, start: int) -> list[str]:
        failures: list[str] = self.producer.failures(start)
        return failures

    def _between_flushes(self) -> None:
        forward_lines("message events", *self.producer.log_lines())

    def close(self, timeout: float = 5.0) -> int:
        self._closing.set()
        self._between_flushes()
        return int(self.producer.close(timeout))


def batch_producer(native: bool) -> Callable[[dict[str, Any]], BatchProducer]:
    """What makes the message events' producer: the native one if asked for
    (`Settings.native`) and installed."""
    return NativeBatchProducer if native and AVAILABLE else BatchProducer
