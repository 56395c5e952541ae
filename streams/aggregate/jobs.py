"""What every agent does to a job record: load it, write it, publish its lifecycle."""

from __future__ import annotations

import logging
import time

import orjson

from schemas.events import JobEvent
from schemas.views import JobStatus
from streams import metrics
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.rules import Effects
from streams.aggregate.state import JobState, expire_key_for, job_key, jobs_index_key

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, pipeline: Pipeline) -> None:
        self.state = pipeline.state
        self.views = pipeline.views
        self.topics = pipeline.topics
        self.deliveries = pipeline.app.deliveries
        self.retention_seconds = pipeline.settings.retention_seconds

    def load(self, job_id: str) -> JobState | None:
        raw = self.state.get(job_key(job_id))
        return None if raw is None else JobState.from_bytes(raw)

    def write(self, job_id: str, job: JobState, effects: Effects) -> None:
        """Write the job record whole (a new version), and index it as the rules say:
        a new job in the partition's jobs, a finished one in the purge index."""
        if effects.created:
            self.state[jobs_index_key(job_id)] = b""
        if effects.finished:
            self.state[expire_key_for(job_id, job, self.retention_seconds)] = b""
        job.version += 1
        self.state[job_key(job_id)] = job.to_bytes()

    async def lifecycle(self, job_id: str, job: JobState, previous: JobStatus | None) -> None:
        """Publish a status change on the job-events topic (at least once)."""
        event = JobEvent(
            job_id=job_id,
            tenant=job.tenant,
            status=job.status,
            previous=previous,
            received=job.received,
            enqueued=job.enqueued,
            failures=job.failures,
            at=time.time(),
            reason=job.reason,
        )
        log.info(
            "job %s tenant %s: %s -> %s",
            job_id,
            job.tenant,
            previous.value if previous else "-",
            job.status.value,
            extra={
                "job_id": job_id,
                "tenant": job.tenant,
                "status": job.status.value,
                "previous": previous.value if previous else None,
            },
        )
        metrics.JOB_TRANSITIONS.labels(job.status.value).inc()
        if job.status is JobStatus.COMPLETED and job.run_at and job.completed_at:
            metrics.JOB_DURATION.observe(max(job.completed_at - job.run_at, 0.0))
        await self.deliveries.send(
            self.topics.job_events.send(key=job_id.encode(), value=orjson.dumps(event.to_wire()))
        )
