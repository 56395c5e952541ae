"""patches/restore_hooks.py: a worker restoring the state from its changelog is told
every record it restored (the dedupe index is rebuilt from them)."""

from __future__ import annotations

from typing import Any

from streams.aggregate.command_feed import CommandMessage
from streams.runtime.app import deliveries_of
from streams.runtime.patches.current_event import in_event
from streams.settings import Settings
from tests.streams.runtime.conftest import run, running, runtime_for

PARTITION = 3
KEYS = [b"a", b"b", b"c"]


def test_a_new_owner_is_told_what_it_restored(topology: Settings) -> None:
    async def scenario() -> list[tuple[int, bytes]]:
        first = runtime_for(topology, "w1")
        async with running(first):
            with in_event(CommandMessage(topology.topic_commands, PARTITION, 0, None, None)):
                for key in KEYS:
                    first.state[key] = b"v"
            await deliveries_of(first.app).settled()

        # Another worker (its own, empty stores) restores the partition.
        second = runtime_for(topology, "w2")
        restored: list[tuple[int, bytes]] = []

        def hook(events: list[Any]) -> None:
            restored.extend((e.message.partition, e.message.key) for e in events)

        second.state.restore_hooks.append(hook)
        async with running(second):
            pass
        return restored

    assert sorted(run(scenario())) == [(PARTITION, key) for key in KEYS]
