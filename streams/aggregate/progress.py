"""The progress agent: folds each fanned-out page into the job's counters.

Pages report on `bulk.progress` (key = job id, read_committed: a page's
report exists exactly when its sends were committed). The job record keeps a
bitmap of counted pages, so a report seen twice (faust replays) counts once;
counters are written to Redis as absolute values after every page, and the
job completes when `enqueued + failures == received`.
"""

from __future__ import annotations

import logging
from typing import Any

from schemas.fanout import PageProgress
from schemas.views import JobStatus
from streams.aggregate.jobs import Jobs
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.state import failure_key

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, pipeline: Pipeline) -> None:
        self.state = pipeline.state
        self.views = pipeline.views
        self.jobs = Jobs(pipeline)

    async def handle(self, event: Any) -> None:
        report = PageProgress.model_validate_json(event.message.value)
        job_id = report.job_id
        job = self.jobs.load(job_id)
        if job is None or job.page_size is None:
            log.warning("progress for unknown or unrun job %s page %d", job_id, report.page)
            return
        failures = dict(report.failures)
        completed_now = False
        if not job.page_done(report.page):
            job.mark_page_done(report.page)
            job.enqueued += report.enqueued
            job.failures += len(failures)
            if job.status is JobStatus.PROCESSING and job.enqueued + job.failures >= job.received:
                self.jobs.finish(job_id, job, JobStatus.COMPLETED, None)
                completed_now = True
        # Rewritten even when already counted: a replay must leave the changelog whole.
        for position, reason in failures.items():
            self.state[failure_key(job_id, position)] = reason.encode()
        self.jobs.save(job_id, job)

        await self.views.write_page(job.tenant, job_id, report.page, failures)
        await self.views.write_job(job_id, job)
        if completed_now:
            await self.jobs.lifecycle(job_id, job, JobStatus.PROCESSING)


def register(pipeline: Pipeline) -> None:
    progress = Progress(pipeline)

    async def pages_done(stream: Any) -> None:
        # No wait for the changelog per report (it was the bound on the fan-out's
        # rate): a report folded twice counts once, and the consumer awaits the
        # changelog before it commits any offset.
        async for event in stream.events():
            await progress.handle(event)

    pipeline.app.agent(pipeline.topics.progress, name="bulkstream.progress")(pages_done)
