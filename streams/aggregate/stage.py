"""The aggregate stage's command side: each command of `bulk.commands` (key = job id),
read in offset order by the command feed, through the job rules (`rules`) and
into the state, the views, `bulk.command-results` and `bulk.job-events`; on
run (and resume), the job's first pages handed to the fan-out
(`streams.aggregate.release`); on a dry run, its sends resolved and none written.

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
from collections.abc import Sequence
from typing import Any

import orjson

from schemas.commands import CommandResult, CreateJob, RetryJob, RunJob
from streams import metrics
from streams.aggregate import dry_run, rules
from streams.aggregate.command_feed import CommandFeed, Feeds
from streams.aggregate.dead_letters import DeadLetters
from streams.aggregate.decode import Applied, Ingest, parse_command
from streams.aggregate.dedupe import DedupeIndex
from streams.aggregate.jobs import Jobs
from streams.aggregate.paging import MissingUsers, batch_encoder, read_batch
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.release import Releases, batches_from
from streams.aggregate.retry import Retries
from streams.aggregate.rules import Effects
from streams.aggregate.state import (
    JobState,
    batch_key,
    command_key,
    dry_run_key,
    job_key,
    position_key,
)
from streams.errors import PoisonCommand
from streams.runtime.access import partition_db
from streams.runtime.patches.current_event import CommandEvent
from streams.views import ViewWrites

log = logging.getLogger(__name__)


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

    def holders(self, job_id: str, identities: Sequence[str]) -> list[int | None]:
        held = self.dedupe.holders(self.partition, job_id, list(identities))
        return [None if offset is None else int(offset) for offset in held]

    def batch_first(self, job_id: str, offset: int) -> int | None:
        raw = self.state.get(batch_key(job_id, offset))
        batch = read_batch(raw) if raw is not None else None
        return batch.first if batch is not None and batch.ends else None


class Aggregate:
    def __init__(self, pipeline: Pipeline, releases: Releases) -> None:
        self.p = pipeline
        self.state = pipeline.state
        self.views = pipeline.views
        self.settings = pipeline.settings
        self.jobs = Jobs(pipeline)
        self.releases = releases
        self.dedupe = DedupeIndex(pipeline.state, native=pipeline.settings.native)
        self.encode_batch = batch_encoder(pipeline.settings.native)
        self.dead_letters = DeadLetters(pipeline)
        self.retries = Retries(pipeline)

    # -- entry ---------------------------------------------------------------
    async def handle(self, event: CommandEvent) -> None:
        message = event.message
        started = time.perf_counter()
        try:
            command = parse_command(
                message.key, message.value, self.settings.max_command_bytes, self.settings.native
            )
        except PoisonCommand as exc:
            await self.dead_letters.send(message, exc)
            metrics.COMMAND_SECONDS.labels("dlq").observe(time.perf_counter() - started)
            return
        await self.apply(command, message)
        metrics.COMMAND_SECONDS.labels(command.kind.value).observe(time.perf_counter() - started)

    async def apply(self, command: Applied, message: Any) -> None:
        offset, partition = message.offset, message.partition
        reads = StateReads(self.state, self.dedupe, partition)
        now, window = time.time(), self.settings.fanout_window_pages
        if isinstance(command, CreateJob):
            effects = rules.create(reads, command, offset, self.settings.message_ids)
        elif isinstance(command, Ingest):
            effects = rules.ingest(reads, command, offset)
        elif isinstance(command, RunJob):
            page_size = self.settings.fanout_page_size
            effects = rules.run(reads, command, offset, now, page_size, window)
        elif isinstance(command, RetryJob):
            effects = rules.retry(reads, command, offset)
            job = reads.job(command.job_id)
            if effects.retry and job is not None:
                made = await self.retries.make(command, job, partition)
                effects = Effects(result=made, keep_result=True)
        else:
            effects = rules.steer(reads, command, offset, now, window)
        writes = self.views.writes()
        await self.carry_out(command.job_id, effects, offset, partition, writes)
        if effects.dry_run:
            await writes.send()
            await self.dry_run(command.job_id, partition)
        if effects.emit is not None and effects.job is not None:
            await writes.send()
            # After the record: a crash before the next cursor replays the command,
            # whose pages go out again.
            await self.releases.emit(command.job_id, effects.job, partition, *effects.emit)
        if effects.result is not None:
            if effects.again:
                await self.jobs.publish(effects.result, writes)
            else:
                await self.jobs.answer(effects.result, offset, writes, store=effects.keep_result)
        await writes.send()

    async def carry_out(
        self, job_id: str, effects: Effects, offset: int, partition: int, writes: ViewWrites
    ) -> None:
        """Apply a rule's effects: the state first (batch, then the job record), then the
        views and the lifecycle event, so that a result or a view is never ahead of the
        state it reports. The views are queued on `writes`, sent before the lifecycle
        event and with the first result (a small command's views and result go to Redis
        in one round trip); the command's own result is published by `apply`, last."""
        job, sent = effects.job, effects.sent
        if effects.batch is not None:
            self.dedupe.add(partition, job_id, effects.batch, offset)
            self.state[batch_key(job_id, offset)] = self.encode_batch(effects.batch, sent)
            if effects.batch:
                self.state[position_key(job_id, effects.batch[0][0])] = str(offset).encode()
        if effects.counted:
            metrics.USERS_INGESTED.inc(effects.counted)
        if job is None:
            return
        self.jobs.write(job_id, job, effects)
        if effects.batch:
            writes.users(job.tenant, job_id, effects.batch, sent)
        writes.job(job_id, job)
        if effects.lifecycle:
            await writes.send()  # the view before the event that announces its change
            await self.jobs.lifecycle(job_id, job, effects.previous)
        await self.jobs.settled(job, effects, writes)

    # -- dry run -------------------------------------------------------------
    async def dry_run(self, job_id: str, partition: int) -> None:
        """Resolve the job's sends without writing one; keep the outcome and show it."""
        job = self.jobs.load(job_id)
        assert job is not None
        db = partition_db(self.state, partition)
        try:
            outcome = await dry_run.resolve(job_id, job, batches_from(db, job_id, 0))
        except MissingUsers as exc:
            outcome = dry_run.failed(f"accepted users are missing from the state: {exc}")
        self.state[dry_run_key(job_id)] = orjson.dumps(outcome.to_wire())
        metrics.DRY_RUN_USERS.labels("routable").inc(outcome.routable)
        metrics.DRY_RUN_USERS.labels("unroutable").inc(outcome.unroutable)
        await self.views.write_dry_run(job.tenant, job_id, outcome)
        await self.jobs.dry_run(job_id, job, outcome)


def register(pipeline: Pipeline, releases: Releases, feeds: Feeds) -> None:
    aggregate = Aggregate(pipeline, releases)
    pipeline.state.restore_hooks.append(aggregate.dedupe.index_restored)

    # After the consumer stopped (nothing more to dead-letter), before faust's own flush.
    async def close_dead_letters(app: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(aggregate.dead_letters.close)

    pipeline.app.on_before_shutdown.connect(close_dead_letters)

    async def open_dead_letters() -> None:
        aggregate.dead_letters.open()

    pipeline.app.task(open_dead_letters)

    feed = CommandFeed(pipeline, aggregate.handle)
    feeds.add(feed)
    pipeline.app.task(feed.run)
