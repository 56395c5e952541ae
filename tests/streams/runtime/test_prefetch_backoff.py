"""patches/prefetch_backoff.py: a record the worker wrote to its own changelog, fetched
and left untaken by faust, does not hold up the records of an agent's partition."""

from __future__ import annotations

import asyncio
import operator
import statistics
import time
from functools import partial
from typing import Any

from confluent_kafka import Producer

from streams.settings import Settings
from tests.streams.runtime.conftest import probe, produce, run, running, runtime_for, until

# A report sent this long after a changelog record, once that record was fetched.
AFTER_CHANGELOG = 0.02


def _write_changelog(settings: Settings, changelog: str, partition: int) -> None:
    """A record on one partition of the changelog (compacted: it needs a key), as a
    table write of the worker's makes."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 0})
    failed: list[object] = []
    producer.produce(
        changelog,
        key=b"key",
        value=b"value",
        partition=partition,
        on_delivery=lambda error, _: failed.append(error) if error else None,
    )
    assert producer.flush(30) == 0
    assert not failed, failed


def test_a_report_is_taken_at_once_after_a_changelog_record(topology: Settings) -> None:
    """Each round puts a record on another partition of the state's changelog (one
    the worker holds, so its consumer fetches it and faust never takes it, as with
    the worker's own table writes), then a record on `bulk.progress`. aiokafka's
    prefetch backoff held every fetch 0.1 s after the changelog record came, so the
    report waited about 0.08 s (measured: 81 to 83 ms each); at 0.01 s, 4 to 8 ms."""

    async def scenario() -> list[float]:
        runtime = runtime_for(topology)
        seen: dict[bytes, float] = {}

        async def handle(event: Any) -> None:
            seen[event.message.value] = time.monotonic()

        probe(runtime, handle)
        changelog = runtime.state.changelog_topic.get_topic_name()
        waits = []
        async with running(runtime):
            for partition in range(topology.partitions):
                await asyncio.to_thread(_write_changelog, topology, changelog, partition)
                await asyncio.sleep(AFTER_CHANGELOG)
                report = f"report {partition}".encode()
                sent = time.monotonic()
                await asyncio.to_thread(produce, topology, topology.topic_progress, [report])
                await until(partial(operator.contains, seen, report), 30, "the report")
                waits.append(seen[report] - sent)
        return waits

    waits = run(scenario())
    print("\nprefetch backoff: report taken after " + ", ".join(f"{w * 1000:.0f}" for w in waits))
    assert statistics.median(waits) < 0.05, waits
