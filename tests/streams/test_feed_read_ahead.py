"""A feed that reads ahead (the delivery reports' feed) takes the next batch while it
applies a full one, and still applies every record once, in offset order, across a
pause that drops the batch it took ahead (the records are read again from the
cursor)."""

from __future__ import annotations

import asyncio

from streams.aggregate.command_feed import CommandFeed, RecordBatch
from streams.aggregate.pipeline import STATE_FAMILIES, Pipeline
from streams.aggregate.state import report_cursor_key
from streams.settings import Settings
from tests.streams.runtime.conftest import produce, run, running, runtime_for, until

PARTITION = 4
RECORDS = 60
BATCH = 4


def test_a_feed_reading_ahead_applies_each_record_once_in_order(topology: Settings) -> None:
    topic = topology.topic_delivery_status
    produce(topology, topic, [b"%d" % n for n in range(RECORDS)], partition=PARTITION)

    async def scenario() -> tuple[list[int], int]:
        runtime = runtime_for(topology, key_families=STATE_FAMILIES)
        pipeline = Pipeline(topology, runtime.app, runtime.topics, runtime.state, views=None)  # type: ignore[arg-type]
        applied: list[int] = []
        ahead = 0  # batches applied while the next was being taken

        async def handle(batch: RecordBatch) -> None:
            nonlocal ahead
            applied.extend(int(value or b"") for value in batch.values)
            ahead += feed.next_batch is not None
            await asyncio.sleep(0.05)  # time for the next batch to come in

        feed = CommandFeed(
            pipeline,
            handle_batch=handle,
            topic=topic,
            cursor=report_cursor_key,
            name="read-ahead",
            batch=BATCH,
            read_ahead=True,
        )
        async with running(runtime):
            task = asyncio.ensure_future(feed.run())
            await until(lambda: len(applied) >= RECORDS // 3, 30, "a third applied")
            await feed.pause()  # drops the batch taken ahead; read again from the cursor
            await until(lambda: len(applied) >= RECORDS, 30, "every record applied")
            await asyncio.sleep(0.5)  # nothing more comes
            await feed.stop()
            await task
        return applied, ahead

    applied, ahead = run(scenario())
    assert applied == list(range(RECORDS))
    assert ahead > 0
