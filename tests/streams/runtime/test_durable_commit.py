"""patches/durable_commit.py: no offset is committed before what its event sent is in Kafka."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.runtime.app import deliveries_of
from streams.runtime.patches.durable_commit import Deliveries
from streams.settings import Settings
from tests.streams.runtime.conftest import (
    committed,
    end_offset,
    probe,
    produce,
    run,
    running,
    runtime_for,
    until,
    until_committed,
)

COMMIT_INTERVALS = 3.0  # s: three of the app's commit intervals (1 s)
WRITES = 2000


def test_an_offset_waits_for_the_deliveries_its_event_left(topology: Settings) -> None:
    """An event that sent a record still in flight is acked (the agent moves on),
    but its offset is committed only once the record is acknowledged."""

    async def scenario() -> tuple[int | None, int | None]:
        runtime = runtime_for(topology)
        in_flight: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def handle(event: Any) -> None:
            deliveries_of(runtime.app).track(in_flight)

        probe(runtime, handle)
        async with running(runtime):
            await asyncio.to_thread(produce, topology, topology.topic_progress, [b"x"], 0)
            await asyncio.sleep(COMMIT_INTERVALS)
            before = await asyncio.to_thread(committed, topology, topology.topic_progress, 0)
            in_flight.set_result(None)
            await until(lambda: in_flight.done(), 1, "the delivery")
            await asyncio.sleep(COMMIT_INTERVALS)
            after = await asyncio.to_thread(committed, topology, topology.topic_progress, 0)
        return before, after

    assert run(scenario()) == (None, 1)


def test_every_changelog_record_of_a_committed_event_is_in_kafka(topology: Settings) -> None:
    """The closest real-stack check of faust's own flush: an event writes
    `WRITES` table keys; once its offset is committed, all their changelog
    records are in the changelog topic."""

    async def scenario() -> int:
        runtime = runtime_for(topology)
        state = runtime.state

        async def handle(event: Any) -> None:
            for n in range(WRITES):
                state[b"key-%d" % n] = b"v" * 512

        probe(runtime, handle)
        changelog = state.changelog_topic.get_topic_name()
        async with running(runtime):
            await asyncio.to_thread(produce, topology, topology.topic_progress, [b"x"], 0)
            await until_committed(topology, topology.topic_progress, 0, 1, 30)
            return await asyncio.to_thread(end_offset, topology, changelog, 0)

    assert run(scenario()) == WRITES


def test_settled_waits_for_the_records_tracked_before_the_call_only() -> None:
    """The command feed's cursor waits for what was sent before it, while the feed
    sends more: `settled()` takes its records when called, not when awaited."""

    async def go() -> None:
        loop = asyncio.get_running_loop()
        deliveries = Deliveries()
        before, after = loop.create_future(), loop.create_future()
        deliveries.track(before)
        in_kafka = asyncio.ensure_future(deliveries.settled())
        deliveries.track(after)
        await asyncio.sleep(0.01)
        assert not in_kafka.done()
        before.set_result(None)
        await asyncio.wait_for(in_kafka, 1)  # `after` is still in flight
        assert not after.done()
        after.set_result(None)
        await asyncio.wait_for(deliveries.settled(), 1)

    asyncio.run(go())
