"""patches/flow_control.py: resuming flow keeps what the stream queues hold."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.settings import Settings
from tests.streams.runtime.conftest import (
    probe,
    produce,
    queued,
    run,
    running,
    runtime_for,
    until,
)

RECORDS = 10


def test_records_queued_when_flow_resumes_all_reach_the_agent(topology: Settings) -> None:
    """faust resumes flow at the end of a recovery, after it has resumed fetching
    the partitions: records already in the agents' queues then must stay there.
    Emptied (mode's `FlowControlEvent.resume`), they are lost: faust's read
    offsets are past them, so nothing fetches them again."""

    async def scenario() -> list[int]:
        runtime = runtime_for(topology)
        gate = asyncio.Event()
        seen: list[int] = []

        async def handle(event: Any) -> None:
            await gate.wait()  # the first record holds the agent: the rest queue up
            seen.append(event.message.offset)

        probe(runtime, handle)
        async with running(runtime):
            await asyncio.to_thread(produce, topology, topology.topic_progress, [b"x"] * RECORDS, 0)
            await until(lambda: queued(runtime) == RECORDS - 1, 30, "the records to be queued")
            runtime.app.flow_control.resume()  # as Recovery._resume_streams does
            gate.set()
            await until(lambda: len(seen) == RECORDS, 10, "every record")
        return seen

    assert run(scenario()) == list(range(RECORDS))
