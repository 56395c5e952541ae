"""patches/read_offsets.py: records cleared from a full stream queue at a revoke are
read again when the partition comes back to the same worker."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as aiokafka_driver

from streams.kafka.topics import ensure_topics
from streams.runtime.access import held_partitions
from streams.settings import Settings
from tests.streams.runtime.conftest import (
    probe,
    produce,
    queued,
    run,
    running,
    runtime_for,
    settled,
    until,
)

RECORDS = 100
SEEK_DELAY = 1.0  # s between faust's seek to the committed offsets and its new read offsets


class GateFeed:
    """A feed whose pause (the first step of a revoke), once armed, opens the
    agent's gate."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.armed = False

    async def pause(self) -> None:
        if self.armed:
            self.gate.set()  # nothing awaited: faust's revoke follows at once

    async def stop(self) -> None:
        pass

    def lags(self) -> list[tuple[str, int, int]]:
        return []


def test_records_cleared_at_a_revoke_are_read_again_by_the_same_worker(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gated agent holds the first record; its stream queue fills, and faust's
    drain loop waits to hand it one more record. A second worker joins: the
    first keeps the one partition, and its revoke clears the queue. Every record
    must still reach the agent after the assignment.

    faust seeks a partition assigned to its committed offset, and only then
    replaces its read offsets; `SEEK_DELAY` holds that moment open, as a seek of
    many partitions (one round trip each) does, so what is fetched meanwhile
    meets the read offset left by the drain loop."""
    topology = settings.model_copy(update={"partitions": 1})
    ensure_topics(topology)
    seek_to_committed = aiokafka_driver.Consumer.seek_to_committed

    async def slow_seek(self: Any) -> Mapping[Any, int]:
        offsets = await seek_to_committed(self)
        await asyncio.sleep(SEEK_DELAY)
        return offsets

    monkeypatch.setattr(aiokafka_driver.Consumer, "seek_to_committed", slow_seek)

    async def scenario() -> set[int]:
        first = runtime_for(topology, "w1")
        gate = asyncio.Event()
        feed = first.app.feed = GateFeed(gate)
        seen: set[int] = set()

        async def handle(event: Any) -> None:
            await gate.wait()
            seen.add(event.message.offset)

        probe(first, handle)
        second = runtime_for(topology, "w2")
        async with running(first):
            full = first.app.conf.stream_buffer_maxsize
            await asyncio.to_thread(produce, topology, topology.topic_progress, [b"x"] * RECORDS, 0)
            await until(lambda: queued(first) >= full, 30, "the stream queue to fill")
            await asyncio.sleep(0.2)  # the drain loop waits to put the next record
            assert not seen
            feed.armed = True
            async with running(second):
                await until(lambda: settled(first), 60, "the first worker to settle again")
                assert held_partitions(first.app, first.state) == {0}, "w1 kept the partition"
                await until(lambda: len(seen) == RECORDS, 30, "every record to be handled")
        return seen

    assert run(scenario(), timeout=150) == set(range(RECORDS))
