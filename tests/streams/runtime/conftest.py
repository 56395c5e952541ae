"""Helpers of the runtime's regression tests: the real faust app (streams/runtime, with
every patch) started in the test's own event loop, over this test's own topics, with
probe agents instead of the aggregate's."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.runtime.app import KeyFamilies, Runtime, create_runtime
from streams.settings import Settings

T = TypeVar("T")


def run(scenario: Coroutine[Any, Any, T], timeout: float = 90) -> T:
    """Run one test's scenario in a fresh event loop, within `timeout` seconds."""
    return asyncio.run(asyncio.wait_for(scenario, timeout))


async def until(probe: Callable[[], Any], within: float, what: str) -> Any:
    """`probe()`'s first true value, looked for every 50 ms for `within` seconds."""
    deadline = time.monotonic() + within
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
    return value


def queued(runtime: Runtime) -> int:
    """Events waiting in the agents' stream queues."""
    return sum(channel.queue.qsize() for channel in runtime.app.topics)


def settled(runtime: Runtime) -> bool:
    """The app holds its assignment, restored, and lets events flow."""
    app: Any = runtime.app
    return bool(
        app.tables.recovery.completed.is_set()
        and not app.rebalancing
        and app.flow_control.is_active()
    )


def runtime_for(
    settings: Settings, worker_id: str = "w1", key_families: KeyFamilies | None = None
) -> Runtime:
    return create_runtime(settings.model_copy(update={"worker_id": worker_id}), key_families)


def probe(runtime: Runtime, handle: Callable[[Any], Awaitable[None]]) -> None:
    """An agent on the app's `bulk.progress` topic, calling `handle` with each event."""

    async def agent(stream: Any) -> None:
        async for event in stream.events():
            await handle(event)

    runtime.app.agent(runtime.topics.progress, name="probe")(agent)


@contextlib.asynccontextmanager
async def running(runtime: Runtime, within: float = 60) -> AsyncIterator[Runtime]:
    """The app started and settled (within `within` s); stopped on the way out."""
    await runtime.app.start()
    try:
        await until(lambda: settled(runtime), within, "the app to settle")
        yield runtime
    finally:
        await runtime.app.stop()


def produce(settings: Settings, topic: str, values: list[bytes], partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 0})
    for value in values:
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(30) == 0


def committed(settings: Settings, topic: str, partition: int) -> int | None:
    """The offset the app's consumer group committed for one partition (None: none)."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": settings.app_id}
    )
    try:
        [tp] = consumer.committed([TopicPartition(topic, partition)], timeout=30)
    finally:
        consumer.close()
    return None if tp.offset < 0 else int(tp.offset)


async def until_committed(
    settings: Settings, topic: str, partition: int, offset: int, within: float
) -> None:
    deadline = time.monotonic() + within
    while await asyncio.to_thread(committed, settings, topic, partition) != offset:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for a commit")
        await asyncio.sleep(0.2)


def end_offset(settings: Settings, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "x"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
    finally:
        consumer.close()
    return int(high)
