"""The aggregate stage's command side: each command of `bulk.commands` (key = job id),
read in offset order by the command feed, through the job rules (`rules`) and
into the state, the views, `bulk.command-results` and `bulk.job-events`; on
run, the job cut into fan-out pages.

Commands are delivered at least once (a crash replays those applied since
the feed's last cursor). The rules say why each is replay-safe; here, every
write is idempotent: the job record is written whole (one atomic table
write), an ingest's batch under its offset, the dedupe index with the
accepting offset, and pages are deterministic (`<job>:<n>` holds positions
[n*P, (n+1)*P)), so a replayed run re-emits identical pages and the fan-out
skips those it already committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import orjson

from schemas.commands import (
    AnyCommand,
    CommandResult,
    CreateJob,
    IngestUsers,
)
from schemas.fanout import PageFields, encode_page_spliced
from streams import metrics
from streams.aggregate import rules
from streams.aggregate.command_feed import CommandFeed
from streams.aggregate.dead_letters import DeadLetters, parse_command
from streams.aggregate.dedupe import DedupeIndex
from streams.aggregate.jobs import Jobs
from streams.aggregate.paging import MissingUsers, cut_pages, encode_batch, read_batch
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.rules import Effects
from streams.aggregate.state import (
    JobState,
    batch_key,
    batch_prefix,
    command_key,
    job_key,
    scan_prefix,
)
from streams.errors import JobFailed, PoisonCommand
from streams.kafka.topics import MAX_MESSAGE_BYTES
from streams.runtime.app import partition_db
from streams.runtime.events import CommandEvent

log = logging.getLogger(__name__)

PAGES_IN_FLIGHT = 32


class StateReads:
    """The rules' view of one partition's state (`rules.JobReads`)."""

    def __init__(self, state: Any, dedupe: DedupeIndex, partition: int) -> None:
        self.state, self.dedupe, self.partition = state, dedupe, partition

    def job(self, job_id: str) -> JobState | None:
        raw = self.state.get(job_key(job_id))
        return None if raw is None else JobState.from_bytes(raw)

    def stored_result(self, job_id: str, command_id: str) -> tuple[int, CommandResult] | None:
        raw = self.state.get(command_key(job_id, command_id))
        if raw is None:
            return None
        record = orjson.loads(raw)
        return record["offset"], CommandResult.model_validate(record["result"])

    def holder(self, job_id: str, identity: str) -> int | None:
        held = self.dedupe.holder(self.partition, job_id, identity)
        return None if held is None else int(held)

    def batch_first(self, job_id: str, offset: int) -> int | None:
        raw = self.state.get(batch_key(job_id, offset))
        batch = read_batch(raw) if raw is not None else None
        return batch.first if batch is not None and batch.ends else None


class Aggregate:
    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.state = pipeline.state
        self.views = pipeline.views
        self.topics = pipeline.topics
        self.settings = pipeline.settings
        self.deliveries = pipeline.app.deliveries
        self.jobs = Jobs(pipeline)
        self.dedupe = DedupeIndex(pipeline.state)
        self.dead_letters = DeadLetters(pipeline)

    # -- entry ---------------------------------------------------------------
    async def handle(self, event: CommandEvent) -> None:
        message = event.message
        started = time.perf_counter()
        try:
            command = parse_command(message.key, message.value, self.settings.max_command_bytes)
        except PoisonCommand as exc:
            await self.dead_letters.send(message, exc)
            metrics.COMMAND_SECONDS.labels("dlq").observe(time.perf_counter() - started)
            return
        await self.apply(command, message)
        metrics.COMMAND_SECONDS.labels(command.kind.value).observe(time.perf_counter() - started)

    async def apply(self, command: AnyCommand, message: Any) -> None:
        offset, partition = message.offset, message.partition
        reads = StateReads(self.state, self.dedupe, partition)
        if isinstance(command, CreateJob):
            effects = rules.create(reads, command, offset)
        elif isinstance(command, IngestUsers):
            effects = rules.ingest(reads, command, offset)
        else:
            effects = rules.run(reads, command, offset, time.time(), self.settings.fanout_page_size)
        await self.carry_out(command.job_id, effects, offset, partition)
        if effects.emit_pages and effects.job is not None:
            try:
                await self.emit_pages(command.job_id, effects.job, partition)
            except JobFailed as exc:
                await self.fail(command.job_id, str(exc))

    async def carry_out(self, job_id: str, effects: Effects, offset: int, partition: int) -> None:
        """Apply a rule's effects: the state first (batch, then the job record), then the
        views, the lifecycle event and the result, in that order, so that a result or a
        view is never ahead of the state it reports."""
        job = effects.job
        if effects.batch is not None:
            self.dedupe.add(partition, job_id, effects.identities, offset)
            self.state[batch_key(job_id, offset)] = encode_batch(effects.batch)
        if effects.counted:
            metrics.USERS_INGESTED.inc(effects.counted)
        if job is not None:
            self.jobs.write(job_id, job, effects)
        if effects.batch and job is not None:
            await self.views.write_users(job.tenant, job_id, effects.batch)
        if job is not None:
            await self.views.write_job(job_id, job)
        if effects.lifecycle and job is not None:
            await self.jobs.lifecycle(job_id, job, effects.previous)
        if effects.result is not None:
            if effects.again:
                await self.publish_result(effects.result)
            else:
                await self.finish(effects.result, offset, store=effects.keep_result)

    # -- results -------------------------------------------------------------
    async def finish(self, result: CommandResult, offset: int, *, store: bool) -> None:
        """Count a command's result, keep it under its id (`store`) and publish it."""
        metrics.COMMANDS.labels(result.kind.value, "ok" if result.ok else "error").inc()
        if store:
            record = {"offset": offset, "result": result.to_wire()}
            self.state[command_key(result.job_id, result.command_id)] = orjson.dumps(record)
        await self.publish_result(result)

    async def publish_result(self, result: CommandResult) -> None:
        await self.views.write_result(result, self.settings.result_ttl_seconds)
        await self.deliveries.send(
            self.topics.command_results.send(
                key=result.job_id.encode(), value=orjson.dumps(result.to_wire())
            )
        )

    # -- run -----------------------------------------------------------------
    async def fail(self, job_id: str, reason: str) -> None:
        """End a job in ERROR: it could not be fanned out at all."""
        effects = rules.job_failed(self.jobs.load(job_id), reason, time.time())
        if effects.job is not None:
            self.jobs.write(job_id, effects.job, effects)
            await self.views.write_job(job_id, effects.job)
            await self.jobs.lifecycle(job_id, effects.job, effects.previous)

    async def emit_pages(self, job_id: str, job: JobState, partition: int) -> None:
        """Cut the job into pages of positions [n*P, (n+1)*P) and send those not done yet."""
        size = job.page_size or self.settings.fanout_page_size
        in_flight: deque[Any] = deque()
        sent = 0
        db = partition_db(self.state, partition)
        stored = (read_batch(raw) for _, raw in scan_prefix(db, batch_prefix(job_id)))
        fields = PageFields(
            job_id=job_id,
            tenant=job.tenant,
            page=0,
            page_size=size,
            created_at=job.created_at,
            message=job.send,
            data=job.data,
            users=[],
        )
        try:
            for number, users in cut_pages(stored, size, job.received):
                if job.page_done(number):
                    continue
                value = encode_page_spliced(fields._replace(page=number), users)
                if len(value) > MAX_MESSAGE_BYTES:
                    raise JobFailed(
                        f"page {number} is {len(value)} bytes, over the {MAX_MESSAGE_BYTES} "
                        "byte limit; lower BULKSTREAM_FANOUT_PAGE_SIZE"
                    )
                key = f"{job_id}:{number}".encode()
                in_flight.append(await self.topics.fanout_pages.send(key=key, value=value))
                sent += 1
                # A few pages in flight at a time: memory stays flat however large the job.
                while len(in_flight) > PAGES_IN_FLIGHT:
                    await in_flight.popleft()
        except MissingUsers as exc:
            raise JobFailed(f"accepted users are missing from the state: {exc}") from exc
        # Delivered before the run command's offset may be committed.
        await asyncio.gather(*in_flight)
        log.info("job %s: %d pages sent to the fan-out", job_id, sent)


def register(pipeline: Pipeline) -> None:
    aggregate = Aggregate(pipeline)
    pipeline.state.restore_hooks.append(aggregate.dedupe.index_restored)

    # After the consumer stopped (nothing more to dead-letter), before faust's own flush.
    async def close_dead_letters(app: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(aggregate.dead_letters.close)

    pipeline.app.on_before_shutdown.connect(close_dead_letters)

    async def open_dead_letters() -> None:
        aggregate.dead_letters.open()

    pipeline.app.task(open_dead_letters)

    feed = CommandFeed(pipeline, aggregate.handle)
    pipeline.app.feed = feed
    pipeline.app.task(feed.run)
