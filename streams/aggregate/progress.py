"""The progress agent: folds each fanned-out page into the job's counters.

Pages report on `bulk.progress` (key = job id, read_committed: a page's
report exists exactly when its sends were committed). The job record keeps a
bitmap of counted pages, so a report seen twice (faust replays) counts once;
counters are written to Redis as absolute values after every page, and the
job completes when `enqueued + failures == received`. A report that leaves no
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
from streams.aggregate.state import failure_key

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, pipeline: Pipeline, releases: Releases) -> None:
        self.state = pipeline.state
        self.views = pipeline.views
        self.jobs = Jobs(pipeline)
        self.releases = releases
        self.window = pipeline.settings.fanout_window_pages

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
        await self.views.write_page(job.tenant, job_id, report.page, effects.page_failures)
        await self.views.write_job(job_id, job)
        if effects.lifecycle:
            await self.jobs.lifecycle(job_id, job, effects.previous)
        await self.jobs.settled(job, effects)
        if effects.release:
            await self.releases.ask(job_id, event.message.partition)


def register(pipeline: Pipeline, releases: Releases) -> None:
    progress = Progress(pipeline, releases)

    async def pages_done(stream: Any) -> None:
        # No wait for the changelog per report (it was the bound on the fan-out's
        # rate): a report folded twice counts once, and the consumer awaits the
        # changelog before it commits any offset.
        async for event in stream.events():
            await progress.handle(event)

    pipeline.app.agent(pipeline.topics.progress, name="bulkstream.progress")(pages_done)
