"""patches/stale_acks.py: a record a stream skipped during a rebalance is never committed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust import streams as faust_streams

from streams.settings import Settings
from tests.streams.runtime.conftest import (
    committed,
    probe,
    produce,
    queued,
    run,
    running,
    runtime_for,
    until,
)

RECORDS = 10


@pytest.mark.parametrize("iterator", ["python", "cython"])
def test_records_skipped_while_flow_is_suspended_are_not_committed(
    topology: Settings, iterator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust suspends flow for a rebalance; a stream then skips what its queue
    holds. Its pure-Python iterator (faust without its C extension: NO_CYTHON=1,
    or no binary wheel) acks each skipped record, so the next commit passes
    records no agent processed. Only the record the agent had in hand may be
    committed."""
    if iterator == "python":
        monkeypatch.setattr(faust_streams, "_CStreamIterator", None)

    async def scenario() -> int | None:
        runtime = runtime_for(topology)
        gate = asyncio.Event()
        seen: list[int] = []

        async def handle(event: Any) -> None:
            await gate.wait()  # the first record holds the agent: the rest queue up
            seen.append(event.message.offset)

        probe(runtime, handle)
        async with running(runtime):
            app = runtime.app
            await asyncio.to_thread(produce, topology, topology.topic_progress, [b"x"] * RECORDS, 0)
            await until(lambda: queued(runtime) == RECORDS - 1, 30, "the records to be queued")
            app.flow_control.suspend()  # as App.on_partitions_revoked does
            gate.set()
            await until(lambda: queued(runtime) == 0, 10, "the stream to skip the rest")
            await app.consumer.commit()
            offset = await asyncio.to_thread(committed, topology, topology.topic_progress, 0)
            app.flow_control.resume()
        assert seen == [0]
        return offset

    assert run(scenario()) in (None, 1)
