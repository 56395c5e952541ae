"""patches/gathered_writes.py: the state's writes inside `gathered_writes` reach RocksDB
together when the stretch ends (one WriteBatch a partition), each key in its column
family, and even when the stretch raises; outside a stretch each write is made at once."""

from __future__ import annotations

import pytest

from streams.aggregate.command_feed import CommandMessage
from streams.aggregate.pipeline import STATE_FAMILIES
from streams.aggregate.state import PARTITION_KEYS, cursor_key, outcomes_key
from streams.runtime.access import gathered_writes, partition_db
from streams.runtime.app import Runtime
from streams.runtime.patches.current_event import in_event
from streams.settings import Settings
from tests.streams.runtime.conftest import run, running, runtime_for

PARTITION = 3
JOB = "1-gathered"


def stored(runtime: Runtime, key: bytes, family: str | None = None) -> bytes | None:
    value = partition_db(runtime.state, PARTITION, family).get(key)
    return None if value is None else bytes(value)


def write(runtime: Runtime, topology: Settings, keys: list[bytes]) -> None:
    with in_event(CommandMessage(topology.topic_commands, PARTITION, 0, None, None)):
        for key in keys:
            runtime.state[key] = b"v-" + key[-3:]


def test_writes_of_a_stretch_reach_the_store_together_at_its_end(topology: Settings) -> None:
    blocks = [outcomes_key(JOB, n) for n in range(3)]
    cursor = cursor_key(PARTITION)

    async def scenario() -> tuple[list[bytes | None], list[bytes | None], bytes | None]:
        runtime = runtime_for(topology, key_families=STATE_FAMILIES)
        async with running(runtime):
            with gathered_writes(runtime.state):
                write(runtime, topology, [*blocks, cursor])
                inside = [stored(runtime, key) for key in blocks]
                inside.append(stored(runtime, cursor, PARTITION_KEYS))
            after = [stored(runtime, key) for key in blocks]
            return inside, after, stored(runtime, cursor, PARTITION_KEYS)

    inside, after, cursor_after = run(scenario())
    assert inside == [None, None, None, None]  # nothing written before the stretch ends
    assert after == [b"v-" + key[-3:] for key in blocks]
    assert cursor_after == b"v-" + cursor[-3:]  # in its own family


def write_then_fail(runtime: Runtime, topology: Settings, key: bytes) -> None:
    with gathered_writes(runtime.state):
        write(runtime, topology, [key])
        raise RuntimeError("the fold met an error")


def test_a_stretch_that_raises_still_writes_what_it_gathered(topology: Settings) -> None:
    """faust queued the writes' changelog records: the store must hold them too."""
    key = outcomes_key(JOB, 9)

    async def scenario() -> bytes | None:
        runtime = runtime_for(topology, key_families=STATE_FAMILIES)
        async with running(runtime):
            with pytest.raises(RuntimeError, match="the fold met an error"):
                write_then_fail(runtime, topology, key)
            return stored(runtime, key)

    assert run(scenario()) == b"v-" + key[-3:]


def test_outside_a_stretch_a_write_is_made_at_once(topology: Settings) -> None:
    key = outcomes_key(JOB, 4)

    async def scenario() -> bytes | None:
        runtime = runtime_for(topology, key_families=STATE_FAMILIES)
        async with running(runtime):
            write(runtime, topology, [key])
            return stored(runtime, key)

    assert run(scenario()) == b"v-" + key[-3:]
