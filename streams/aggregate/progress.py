"""The progress feed: folds each fanned-out page into the job's counters.

Pages report on `bulk.progress` (key = job id, read_committed: a page's
report exists exactly when its sends were committed). The job record keeps a
bitmap of counted pages, so a report seen twice (a replay from the feed's
cursor) counts once; each page's bit is set in Redis as it is counted, the
job's view (absolute counters) at most every `BULKSTREAM_JOB_VIEW_INTERVAL_MS`
while only its counters move (`streams.aggregate.view_pace`), and the job
completes when `enqueued + failures == received`. A report that leaves no
page out settles a pause or cancel; one that makes room releases the next
pages (`streams.aggregate.release`) at once: the feed reads the job's partition,
so this worker holds the job.

The reports come through a feed of their own (`streams.aggregate.command_feed`,
librdkafka, the position in the state under `progress_cursor_key`), a fetch's
reports at once: each job's record is read and written once per fetch, every
page's views go to Redis in one round trip, and the job's lifecycle, answers
and release follow. Read one at a time by a faust agent, each report cost the
event loop several awaits, each a wait for the GIL behind the fan-out thread
of the same worker: about 5 ms a report, most of a 100,000-user job's time
(docs/benchmarks.md). A release asked for on `bulk.control` (as the pacer
asks, after a rebalance or for a rate) goes through the broker and faust's
consumer to this same worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from pydantic import ValidationError

from schemas.control import ReleasePages
from schemas.fanout import PageProgress
from streams.aggregate import rules
from streams.aggregate.command_feed import CommandFeed, CommandMessage, Feeds, RecordBatch
from streams.aggregate.jobs import Jobs
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.release import Releases
from streams.aggregate.rules import Effects
from streams.aggregate.state import JobState, failure_key, progress_cursor_key
from streams.aggregate.view_pace import PacedJobViews
from streams.runtime.patches.current_event import in_event
from streams.settings import Settings

log = logging.getLogger(__name__)

# Reports taken from librdkafka's queue at a time: a 1M-user job has 2,000 pages.
BATCH = 1000


class Progress:
    def __init__(self, pipeline: Pipeline, releases: Releases) -> None:
        self.state = pipeline.state
        self.views = pipeline.views
        self.jobs = Jobs(pipeline)
        self.releases = releases
        self.window = pipeline.settings.fanout_window_pages
        self.job_views = PacedJobViews(
            pipeline.views, pipeline.settings.job_view_interval_ms / 1000
        )

    async def handle(self, batch: RecordBatch) -> None:
        """Fold a fetch's reports: by job, in offset order; then the views, the
        lifecycle events, the answers and the releases."""
        by_job: dict[str, tuple[CommandMessage, list[PageProgress]]] = {}
        for n, value in enumerate(batch.values):
            try:
                report = PageProgress.model_validate_json(value or b"")
            except ValidationError as exc:
                message = batch[n]
                log.error(
                    "progress [%d] @%d is no page report, skipped: %s",
                    message.partition,
                    message.offset,
                    exc,
                )
                continue
            entry = by_job.get(report.job_id)
            if entry is None:
                by_job[report.job_id] = (batch[n], [report])
            else:
                entry[1].append(report)
        now = time.time()
        writes = self.views.writes()
        folded: list[tuple[str, JobState, Effects, CommandMessage]] = []
        for job_id, (message, reports) in by_job.items():
            with in_event(message):
                effects = rules.pages_done(self.jobs.load(job_id), reports, now, self.window)
                job = effects.job
                if job is None:
                    pages = ", ".join(str(report.page) for report in reports)
                    log.warning("progress for unknown or unrun job %s pages %s", job_id, pages)
                    continue
                for failures in effects.pages.values():
                    for position, reason in failures.items():
                        self.state[failure_key(job_id, position)] = reason.encode()
                self.jobs.write(job_id, job, effects)
            for page, failures in effects.pages.items():
                writes.page(job.tenant, job_id, page, failures)
            if _seen_at_once(effects):
                self.job_views.now(job_id, job, writes)
            else:
                self.job_views.later(job_id, job, writes)
            folded.append((job_id, job, effects, message))
        await writes.send()
        for job_id, job, effects, message in folded:
            # The answers kept and a release's record are written to the job's partition.
            with in_event(message):
                if effects.lifecycle:
                    await self.jobs.lifecycle(job_id, job, effects.previous)
                await self.jobs.settled(job, effects, writes)
                if effects.release:
                    # Here, not asked for on `bulk.control`: this worker holds the job.
                    await self.releases.apply(ReleasePages(job_id=job_id), message.partition)


def _seen_at_once(effects: Effects) -> bool:
    """A report whose view a reader must see now: a status change, a hold settled."""
    settled = bool(effects.answers) or effects.held is not None
    return effects.lifecycle or effects.finished or settled


def committed_by(
    settings: Settings, group: str, topic: str
) -> Callable[[frozenset[int]], dict[int, int]]:
    """Where `group` (faust's consumer group, which read the reports before the feed)
    stopped in each partition of `topic`: where a partition the feed has no cursor
    for yet starts, so an upgraded worker does not fold every report kept again."""

    def origin(partitions: frozenset[int]) -> dict[int, int]:
        consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": group,
                "enable.auto.commit": False,
            }
        )
        try:
            asked = [TopicPartition(topic, partition) for partition in sorted(partitions)]
            found = consumer.committed(asked, timeout=30)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in found if tp.error is None and tp.offset >= 0}

    return origin


def register(pipeline: Pipeline, releases: Releases, feeds: Feeds) -> Progress:
    progress = Progress(pipeline, releases)

    async def flush_job_views(app: Any, **kwargs: Any) -> None:
        await progress.job_views.flush()

    pipeline.app.on_before_shutdown.connect(flush_job_views)
    settings = pipeline.settings
    feed = CommandFeed(
        pipeline,
        handle_batch=progress.handle,
        topic=settings.topic_progress,
        cursor=progress_cursor_key,
        origin=committed_by(settings, settings.app_id, settings.topic_progress),
        name="progress",
        batch=BATCH,
    )
    feeds.add(feed)
    pipeline.app.task(feed.run)
    return progress
