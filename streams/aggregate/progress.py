"""The progress agent: folds each fanned-out page into the job's counters.

Pages report on `bulk.progress` (key = job id, read_committed: a page's
report exists exactly when its sends were committed). The job record keeps a
bitmap of counted pages, so a report seen twice (faust replays) counts once;
each page's bit is set in Redis as it is counted, the job's view (absolute
counters) at most every `BULKSTREAM_JOB_VIEW_INTERVAL_MS` while only its
counters move (`streams.aggregate.view_pace`), and the job completes when
`enqueued + failures == received`. A report that leaves no
page out settles a pause or cancel; one that makes room asks for the next
pages (`streams.aggregate.release`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from schemas.fanout import PageProgress
from streams.aggregate import rules
from streams.aggregate.jobs import Jobs
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.release import Releases
from streams.aggregate.rules import Effects
from streams.aggregate.state import failure_key
from streams.aggregate.view_pace import PacedJobViews

log = logging.getLogger(__name__)


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

    async def handle(self, event: Any) -> None:
        report = PageProgress.model_validate_json(event.message.value)
        job_id = report.job_id
        effects = rules.page_done(self.jobs.load(job_id), report, time.time(), self.window)
        job = effects.job
        if job is None:
            log.warning("progress for unknown or unrun job %s page %d", job_id, report.page)
            return
        for position, reason in effects.page_failures.items():
            self.state[failure_key(job_id, position)] = reason.encode()
        self.jobs.write(job_id, job, effects)
        writes = self.views.writes()
        writes.page(job.tenant, job_id, report.page, effects.page_failures)
        if _seen_at_once(effects):
            self.job_views.now(job_id, job, writes)
        else:
            self.job_views.later(job_id, job, writes)
        await writes.send()
        if effects.lifecycle:
            await self.jobs.lifecycle(job_id, job, effects.previous)
        await self.jobs.settled(job, effects, writes)
        if effects.release:
            await self.releases.ask(job_id, event.message.partition)


def _seen_at_once(effects: Effects) -> bool:
    """A report whose view a reader must see now: a status change, a hold settled."""
    settled = bool(effects.answers) or effects.held is not None
    return effects.lifecycle or effects.finished or settled


def register(pipeline: Pipeline, releases: Releases) -> None:
    progress = Progress(pipeline, releases)

    async def flush_job_views(app: Any, **kwargs: Any) -> None:
        await progress.job_views.flush()

    pipeline.app.on_before_shutdown.connect(flush_job_views)

    async def pages_done(stream: Any) -> None:
        # No wait for the changelog per report (it was the bound on the fan-out's
        # rate): a report folded twice counts once, and the consumer awaits the
        # changelog before it commits any offset.
        async for event in stream.events():
            await progress.handle(event)

    pipeline.app.agent(pipeline.topics.progress, name="bulkstream.progress")(pages_done)
