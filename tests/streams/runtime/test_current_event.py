"""patches/current_event.py: table writes outside faust's streams land in the
partition of the stand-in event (and access.partition_db finds them there)."""

from __future__ import annotations

import asyncio

from streams.aggregate.command_feed import CommandMessage
from streams.runtime.access import partition_db
from streams.runtime.app import deliveries_of
from streams.runtime.patches.current_event import in_event
from streams.settings import Settings
from tests.streams.runtime.conftest import end_offset, run, running, runtime_for

PARTITION = 5


def test_a_write_outside_any_stream_goes_to_the_events_partition(topology: Settings) -> None:
    """Without a current event faust refuses the write ("Cannot modify table key
    from outside of stream iteration", faust-streaming#497)."""

    async def scenario() -> tuple[bytes | None, int]:
        runtime = runtime_for(topology)
        state = runtime.state
        async with running(runtime):
            message = CommandMessage(topology.topic_commands, PARTITION, 0, None, None)
            with in_event(message):
                state[b"written"] = b"outside"
            await deliveries_of(runtime.app).settled()
            stored = partition_db(state, PARTITION).get(b"written")
            changelog = state.changelog_topic.get_topic_name()
            records = await asyncio.to_thread(end_offset, topology, changelog, PARTITION)
        return stored, records

    assert run(scenario()) == (b"outside", 1)
