"""Writing one record and waiting for the broker to have it: its offset, or DeliveryFailed.

Through the project's `AsyncProducer` (murmur2, idempotent, acks=all; its
own thread serves the delivery reports), with what its `send` does not
offer: a chosen partition (a retry's delay tier) and the record's offset (a
subscription's version in the view).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from streams.errors import DeliveryFailed
from streams.kafka.producer import AsyncProducer


async def write(
    producer: AsyncProducer,
    topic: str,
    key: bytes,
    value: bytes | None,
    *,
    partition: int | None = None,
    headers: dict[str, str | bytes | None] | None = None,
) -> int:
    """Queue the record (waiting for room), then wait for its acknowledgement."""
    loop = asyncio.get_running_loop()
    written: asyncio.Future[int] = loop.create_future()

    def settle(err: Any, message: Any) -> None:
        if written.done():
            return
        if err is not None:
            written.set_exception(DeliveryFailed(str(err)))
        else:
            written.set_result(int(message.offset()))

    def on_delivery(err: Any, message: Any) -> None:
        # On the producer's poll thread; a closed loop has nobody left waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, err, message)

    extra: dict[str, Any] = {} if partition is None else {"partition": partition}
    while True:
        try:
            producer.producer.produce(
                topic, key=key, value=value, headers=headers, on_delivery=on_delivery, **extra
            )
            break
        except BufferError:  # librdkafka's queue is full: let it drain
            await asyncio.sleep(0.01)
    return await written
