"""patches/fetch_wait.py: a busy partition is fetched again without waiting out a
fetch of idle partitions."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from streams.settings import Settings
from tests.streams.runtime.conftest import probe, produce, run, running, runtime_for, until

# 10 MB on one partition: five fetches of 2 MB (faust's `consumer_max_fetch_size`).
RECORDS = 160
SIZE = 64 * 1024
WORK = 0.005  # s the agent spends on each record


def test_a_backlog_on_one_partition_is_fetched_without_stalls(topology: Settings) -> None:
    """A slow agent leaves a fetched chunk unconsumed past aiokafka's prefetch
    backoff (0.1 s); aiokafka then fetches the idle partitions alone, and the busy
    one only once the broker has given that fetch up. Faust lets the broker hold
    it 1.5 s: a stall per chunk. The backlog (0.8 s of work) must take no more
    than a few tenths of a second more than the work itself."""
    produce(topology, topology.topic_progress, [b"x" * SIZE] * RECORDS, partition=0)

    async def scenario() -> tuple[float, float]:
        runtime = runtime_for(topology)
        seen: list[float] = []

        async def handle(event: Any) -> None:
            seen.append(time.monotonic())
            await asyncio.sleep(WORK)

        probe(runtime, handle)
        async with running(runtime):
            await until(lambda: len(seen) >= RECORDS, 60, "the backlog")
        gaps = [b - a for a, b in itertools.pairwise(seen)]
        return seen[-1] - seen[0], max(gaps)

    took, longest = run(scenario())
    print(f"\nfetch wait: backlog in {took:.2f} s, longest gap {longest:.2f} s")
    assert longest < 0.75
