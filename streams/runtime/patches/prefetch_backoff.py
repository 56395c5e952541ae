"""Patch: records faust leaves in aiokafka's buffer hold up its fetches 0.01 s, not 0.1 s.

Upstream: aiokafka (0.12 to 0.14) sends no fetch to a broker while a partition it
leads holds fetched records not yet taken, for up to `prefetch_backoff` after
they came (0.1 s; an argument of its `Fetcher` only, not of `AIOKafkaConsumer`,
so faust cannot pass it). faust takes records of its active partitions only
(`Consumer.getmany`), and its `pause_partitions` pauses them in faust's own
bookkeeping, not in aiokafka, which goes on fetching them (0.15.3 and master).
A state changelog partition the worker holds is such a partition once restored:
each record the worker writes to its own changelog is fetched and left there.

Failure it prevents: a 0.1 s stall of every partition of the broker. Each time
one of the worker's changelog partitions took its first record, the worker's
page reports and release asks waited out the backoff: 8 of 80 small jobs in a
row took over 100 ms to COMPLETED against a median of 32 (docs/benchmarks.md,
latency), the report taken 60 to 80 ms after it was committed; 0 and 1 of 80
with this patch. The backoff is cut to `PREFETCH_BACKOFF_SECONDS`, not to 0: a
fetch sent while faust has not yet taken a partition's records leaves that
partition out and waits at the broker (`fetch_wait`), so the backoff is what
lets a record just fetched be taken before the next fetch goes; at 0, the
regression test's reports waited 50 to 77 ms.

Why not pause those partitions in aiokafka as well: faust pauses and resumes
partitions through its bookkeeping at every rebalance and recovery, and its
`getmany` already chooses what it takes; an untaken partition is not fetched
again anyway once one batch of it waits. What stalled the others was the
backoff, so the backoff is what this changes.

Regression test: tests/streams/runtime/test_prefetch_backoff.py.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver

# Long enough for an idle agent to take what came, short against a person's wait.
PREFETCH_BACKOFF_SECONDS = 0.01


def short_prefetch_backoff(consumer: Any) -> None:
    """Make a started aiokafka consumer hold its fetches `PREFETCH_BACKOFF_SECONDS` at
    most for records not yet taken."""
    fetcher = getattr(consumer, "_fetcher", None)
    # aiokafka (0.12 to 0.14) gives each fetched batch this backoff when it arrives.
    if fetcher is None or not hasattr(fetcher, "_prefetch_backoff"):
        raise RuntimeError("aiokafka changed: its fetcher has no _prefetch_backoff to set")
    fetcher._prefetch_backoff = PREFETCH_BACKOFF_SECONDS


class ShortPrefetchBackoff(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's consumer thread, its aiokafka consumer started with a short prefetch
    backoff."""

    async def on_start(self) -> None:
        await super().on_start()
        short_prefetch_backoff(self._consumer)
