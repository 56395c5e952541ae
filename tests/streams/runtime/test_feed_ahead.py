"""A feed of batches (`CommandFeed` with `handle_batch`) takes its next batch while
it applies one, and a pause drops what it took ahead: every record is handed over
once, in offset order, across the pause (a real broker, the app's state)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from streams.aggregate.command_feed import CommandFeed, RecordBatch
from streams.aggregate.pipeline import build_pipeline
from streams.aggregate.state import progress_cursor_key
from streams.runtime.app import Runtime
from streams.settings import Settings
from tests.streams.runtime.conftest import produce, run, running, until

BATCH = 50
RECORDS = 3 * BATCH


class WatchedFeed(CommandFeed):
    """The feed, counting the takes its fetch thread begins."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.takes = 0
        self.counting = threading.Lock()

    def take(self) -> list[Any] | RecordBatch:
        with self.counting:
            self.takes += 1
        return super().take()


def test_the_next_batch_is_taken_while_one_is_applied_and_dropped_at_a_pause(
    topology: Settings,
) -> None:
    settings = topology.model_copy(update={"worker_id": "w1"})
    pipeline = build_pipeline(settings)
    handed: list[list[int]] = []
    takes_before: list[int] = []  # the takes begun when the first batch came
    applying = asyncio.Event()
    go_on = asyncio.Event()

    async def handle(batch: RecordBatch) -> None:
        handed.append(list(batch.offsets))
        if len(handed) == 1:
            takes_before.append(feed.takes)
            applying.set()
            await go_on.wait()

    feed = WatchedFeed(
        pipeline,
        handle_batch=handle,
        topic=settings.topic_progress,
        cursor=progress_cursor_key,
        name="ahead",
        batch=BATCH,
    )
    pipeline.app.task(feed.run)
    # Every record on partition 0 of the progress topic before the feed reads it,
    # so each take finds a full batch fetched.
    produce(settings, settings.topic_progress, [b"%d" % n for n in range(RECORDS)])
    runtime = Runtime(pipeline.app, pipeline.topics, pipeline.state)

    async def scenario() -> tuple[int, list[list[int]]]:
        async with running(runtime):
            await asyncio.wait_for(applying.wait(), 60)
            # The first batch is being applied: the feed's second take begins anyway.
            await until(lambda: feed.takes > takes_before[0], 10, "the next batch to be taken")
            takes_while_applying = feed.takes - takes_before[0]
            pausing = asyncio.ensure_future(feed.pause())
            go_on.set()
            await asyncio.wait_for(pausing, 30)
            await until(
                lambda: sum(map(len, handed)) >= RECORDS, 60, "every record to be handed over"
            )
            await asyncio.sleep(1)  # anything handed twice would come by now
            await feed.stop()
        return takes_while_applying, handed

    takes_while_applying, batches = run(scenario())
    assert takes_while_applying >= 1
    assert batches[0] == list(range(BATCH))
    offsets = [offset for batch in batches for offset in batch]
    assert offsets == list(range(RECORDS)), batches
