"""What every agent does to a job record: load it, write it, publish its lifecycle."""

from __future__ import annotations

import logging
import time

import orjson

from schemas.commands import CommandResult
from schemas.events import JobEvent
from schemas.views import DryRun, JobStatus
from streams import metrics
from streams.aggregate.control import ACTIVE, next_due
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.rules import Effects
from streams.aggregate.state import (
    JobState,
    active_key,
    command_key,
    due_key,
    expire_key_for,
    job_key,
    jobs_index_key,
)
from streams.views import ViewWrites

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, pipeline: Pipeline) -> None:
        self.state = pipeline.state
        self.views = pipeline.views
        self.topics = pipeline.topics
        self.deliveries = pipeline.app.deliveries
        self.retention_seconds = pipeline.settings.retention_seconds
        self.result_ttl_seconds = pipeline.settings.result_ttl_seconds

    def load(self, job_id: str) -> JobState | None:
        raw = self.state.get(job_key(job_id))
        return None if raw is None else JobState.from_bytes(raw)

    def write(self, job_id: str, job: JobState, effects: Effects) -> None:
        """Write the job record whole (a new version), and index it as the rules say:
        a new job in the partition's jobs, a finished one in the purge index, one
        running in the active index, one with something to do later in the due index."""
        if effects.created:
            self.state[jobs_index_key(job_id)] = b""
        if effects.finished:
            self.state[expire_key_for(job_id, job, self.retention_seconds)] = b""
        if effects.lifecycle:
            if job.status in ACTIVE:
                self.state[active_key(job_id)] = b""
            elif self.state.get(active_key(job_id)) is not None:
                del self.state[active_key(job_id)]
        due = next_due(job)
        if due != job.due:
            if job.due is not None and self.state.get(due_key(job.due, job_id)) is not None:
                del self.state[due_key(job.due, job_id)]
            if due is not None:
                self.state[due_key(due, job_id)] = b""
            job.due = due
        job.version += 1
        self.state[job_key(job_id)] = job.to_bytes()

    # -- results -------------------------------------------------------------
    async def answer(
        self, result: CommandResult, offset: int, writes: ViewWrites, *, store: bool
    ) -> None:
        """Count a command's result, keep it under its id (`store`, with the offset it
        was applied at; -1 for a control command answered when its hold settled) and
        publish it."""
        metrics.COMMANDS.labels(result.kind.value, "ok" if result.ok else "error").inc()
        if store:
            record = {"offset": offset, "result": result.to_wire()}
            self.state[command_key(result.job_id, result.command_id)] = orjson.dumps(record)
        await self.publish(result, writes)

    async def publish(self, result: CommandResult, writes: ViewWrites) -> None:
        """The result into Redis in one round trip with the views queued before it (which
        it follows there), then onto `bulk.command-results`."""
        writes.result(result, self.result_ttl_seconds)
        await writes.send()
        await self.deliveries.send(
            self.topics.command_results.send(
                key=result.job_id.encode(), value=orjson.dumps(result.to_wire())
            )
        )

    async def settled(self, job: JobState, effects: Effects, writes: ViewWrites) -> None:
        """Answer the control commands that waited for the job's hold."""
        if effects.held is not None:
            operation = "cancel" if job.status is JobStatus.CANCELED else "pause"
            metrics.CONTROL_SETTLE_SECONDS.labels(operation).observe(effects.held)
        for result in effects.answers:
            await self.answer(result, -1, writes, store=True)

    async def lifecycle(self, job_id: str, job: JobState, previous: JobStatus | None) -> None:
        """Publish a status change on the job-events topic (at least once)."""
        event = self.event(job_id, job, previous)
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
        if job.status is JobStatus.CANCELED:
            metrics.USERS_CANCELED.inc(job.canceled)
        if job.status is JobStatus.COMPLETED and job.run_at and job.completed_at:
            metrics.JOB_DURATION.observe(max(job.completed_at - job.run_at, 0.0))
        await self.publish_event(job_id, event)

    async def dry_run(self, job_id: str, job: JobState, outcome: DryRun) -> None:
        """Publish a dry run's outcome on the job-events topic (the status unchanged)."""
        summary = outcome.to_wire()
        del summary["sample"]
        event = self.event(job_id, job, job.status).model_copy(update={"dry_run": summary})
        log.info("job %s tenant %s: dry run %s", job_id, job.tenant, summary)
        await self.publish_event(job_id, event)

    @staticmethod
    def event(job_id: str, job: JobState, previous: JobStatus | None) -> JobEvent:
        return JobEvent(
            job_id=job_id,
            tenant=job.tenant,
            status=job.status,
            previous=previous,
            received=job.received,
            enqueued=job.enqueued,
            failures=job.failures,
            at=time.time(),
            reason=job.reason,
            version=job.version,
            canceled=job.canceled if job.status is JobStatus.CANCELED else None,
            scheduled_at=job.scheduled_text,
            sends_per_second=job.sends_per_second,
        )

    async def publish_event(self, job_id: str, event: JobEvent) -> None:
        await self.deliveries.send(
            self.topics.job_events.send(key=job_id.encode(), value=orjson.dumps(event.to_wire()))
        )
