"""The job aggregate: applies the commands of `bulk.commands` (key = job id),
which the command feed (`streams/command_feed.py`) reads in offset order.

It applies create / ingest / run to the job's state, records each command's
result, writes the Redis views, and on run cuts the job into fan-out pages.

Commands are delivered at least once (a crash replays those applied since
the feed's last cursor), so every step is replay-safe:

* a command's result is stored under its command id with the offset it was
  applied at; the same command id at another offset (a duplicate delivery)
  only re-emits that result, while the same offset (a replay after a crash)
  redoes the command's writes, which are idempotent;
* the job record is written whole (one atomic table write) and remembers
  the offset of the last command folded into it (`applied_offset`), so a
  replayed ingest never counts its users twice;
* the dedupe index maps each identity to the offset of the command that
  accepted it, so a replayed ingest recognises its own users;
* pages are deterministic (`<job>:<n>` holds positions [n*P, (n+1)*P)), so a
  replayed run re-emits identical pages, and the fan-out skips pages it
  already committed.
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
    CommandKind,
    CommandResult,
    CreateJob,
    ErrorType,
    IngestError,
    IngestUsers,
    RunJob,
    echo,
    identity_of,
)
from schemas.fanout import PageFields, encode_page_spliced
from schemas.views import JobStatus
from streams import metrics
from streams.aggregate.command_feed import CommandFeed
from streams.aggregate.dead_letters import DeadLetters, parse_command
from streams.aggregate.dedupe import DedupeIndex
from streams.aggregate.jobs import Jobs
from streams.aggregate.paging import MissingUsers, StoredUser, cut_pages, encode_batch, read_batch
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.state import (
    JobState,
    batch_key,
    batch_prefix,
    command_key,
    jobs_index_key,
    scan_prefix,
)
from streams.errors import JobFailed, PoisonCommand
from streams.kafka.topics import MAX_MESSAGE_BYTES
from streams.runtime.access import partition_db
from streams.runtime.patches.current_event import CommandEvent

log = logging.getLogger(__name__)

DUPLICATE = "Duplicate user"
PAGES_IN_FLIGHT = 32


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
        if isinstance(command, CreateJob):
            await self.create(command, message.offset)
        elif isinstance(command, IngestUsers):
            await self.ingest(command, message.offset, message.partition)
        else:
            await self.run(command, message.offset, message.partition)

    # -- helpers -------------------------------------------------------------
    def prior_result(self, command: AnyCommand, offset: int) -> CommandResult | None:
        """The stored result of this command id if it was applied at another offset."""
        raw = self.state.get(command_key(command.job_id, command.command_id))
        if raw is None:
            return None
        record = orjson.loads(raw)
        if record["offset"] == offset:
            return None
        result = CommandResult.model_validate(record["result"])
        return result if result.tenant == command.tenant else None

    async def finish(self, result: CommandResult, offset: int, *, store: bool = True) -> None:
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

    @staticmethod
    def result(
        command: AnyCommand,
        ok: bool,
        error_type: ErrorType | None = None,
        message: str | None = None,
        **extra: Any,
    ) -> CommandResult:
        return CommandResult(
            command_id=command.command_id,
            tenant=command.tenant,
            job_id=command.job_id,
            kind=CommandKind(command.kind),
            ok=ok,
            error_type=error_type,
            message=message,
            **extra,
        )

    def not_found(self, command: AnyCommand) -> CommandResult:
        return self.result(command, False, ErrorType.NOT_FOUND, f"Job {command.job_id} not found")

    # -- create --------------------------------------------------------------
    async def create(self, command: CreateJob, offset: int) -> None:
        job = self.jobs.load(command.job_id)
        definition = command.message.as_sent()
        if job is not None:
            same_tenant = job.tenant == command.tenant
            if same_tenant and job.create_command != command.command_id:
                # The same create under another claim of its Idempotency-Key (the API
                # derives the job id from it): the same job when the message is too.
                same = job.definition == definition
                await self.finish(
                    self.result(command, True)
                    if same
                    else self.result(
                        command,
                        False,
                        ErrorType.CONFLICT,
                        f"Job {command.job_id} already exists with another message",
                    ),
                    offset,
                    store=False,
                )
                return
            if same_tenant:
                self.jobs.save(command.job_id, job)  # a replay: rewrite, the same value
                await self.views.write_job(command.job_id, job)
                await self.finish(self.result(command, True), offset, store=False)
            else:
                message = f"Job {command.job_id} already exists"
                await self.finish(
                    self.result(command, False, ErrorType.CONFLICT, message), offset, store=False
                )
            return
        job = JobState(
            tenant=command.tenant,
            definition=definition,
            send=command.message.send_definition(),
            data=command.message.global_data(),
            created_at=command.created_at,
            create_command=command.command_id,
            applied_offset=offset,
        )
        self.state[jobs_index_key(command.job_id)] = b""
        self.jobs.save(command.job_id, job)
        await self.views.write_job(command.job_id, job)
        await self.jobs.lifecycle(command.job_id, job, None)
        await self.finish(self.result(command, True), offset, store=False)

    # -- ingest --------------------------------------------------------------
    async def ingest(self, command: IngestUsers, offset: int, partition: int) -> None:
        job_id = command.job_id
        job = self.jobs.load(job_id)
        if job is None or job.tenant != command.tenant:
            await self.finish(self.not_found(command), offset, store=False)
            return
        prior = self.prior_result(command, offset)
        if prior is not None:
            await self.publish_result(prior)
            return
        applied = job.applied_offset >= offset
        if not applied and job.status is not JobStatus.CREATED:
            message = f"Job {job_id} has already been run; create a new job to add users"
            await self.finish(self.result(command, False, ErrorType.ALREADY_RUN, message), offset)
            return
        base = self.replayed_base(job_id, offset) if applied else None
        if base is None:
            base = job.received
        own = str(offset).encode()

        accepted: list[StoredUser] = []
        errors: list[IngestError] = []
        seen: set[str] = set()
        metadata = command.metadata
        for user in command.users:
            wire = user.as_sent()
            identity = identity_of(wire)
            if identity is not None:
                if identity in seen or self.dedupe.holder(partition, job_id, identity) not in (
                    None,
                    own,
                ):
                    errors.append(IngestError(error=DUPLICATE, user=echo(wire, identity)))
                    continue
                seen.add(identity)
            # A user without an identity is accepted (Courier does) and never a
            # duplicate; the fan-out fails it with the reason (no routable address).
            stored: StoredUser = [base + len(accepted), identity or "", wire]
            if metadata is not None:
                stored.append(metadata)
            accepted.append(stored)

        self.dedupe.add(partition, job_id, list(seen), offset)
        self.state[batch_key(job_id, offset)] = encode_batch(accepted)
        if not applied:
            metrics.USERS_INGESTED.inc(len(accepted))
            job.received += len(accepted)
            job.applied_offset = offset
        self.jobs.save(job_id, job)

        await self.views.write_users(job.tenant, job_id, accepted)
        await self.views.write_job(job_id, job)
        await self.finish(self.result(command, True, errors=errors, total=len(accepted)), offset)

    def replayed_base(self, job_id: str, offset: int) -> int | None:
        """The first position an ingest already folded into the job gave its users.

        Its batch key was written before the job record, so it is there; a batch
        that accepted nobody has no first position, and needs none."""
        raw = self.state.get(batch_key(job_id, offset))
        batch = read_batch(raw) if raw is not None else None
        return batch.first if batch is not None and batch.ends else None

    # -- run -----------------------------------------------------------------
    async def run(self, command: RunJob, offset: int, partition: int) -> None:
        job_id = command.job_id
        job = self.jobs.load(job_id)
        if job is None or job.tenant != command.tenant:
            await self.finish(self.not_found(command), offset, store=False)
            return
        prior = self.prior_result(command, offset)
        if prior is not None:
            await self.publish_result(prior)
            return
        if job.run_offset is not None and job.run_offset != offset:
            message = f"Job {job_id} has already been run"
            await self.finish(self.result(command, False, ErrorType.ALREADY_RUN, message), offset)
            return
        first_time = job.run_offset is None
        if first_time:
            previous = job.status
            job.run_offset = offset
            job.run_at = time.time()
            job.applied_offset = offset
            job.page_size = self.settings.fanout_page_size
            if job.received == 0:
                self.jobs.finish(job_id, job, JobStatus.COMPLETED, None)
            else:
                job.status = JobStatus.PROCESSING
        self.jobs.save(job_id, job)
        await self.views.write_job(job_id, job)
        if first_time:
            await self.jobs.lifecycle(job_id, job, previous)
        await self.finish(self.result(command, True), offset)
        if job.status is JobStatus.PROCESSING:
            try:
                await self.emit_pages(job_id, job, partition)
            except JobFailed as exc:
                await self.fail(job_id, str(exc))

    async def fail(self, job_id: str, reason: str) -> None:
        """End a job in ERROR: it could not be fanned out at all."""
        job = self.jobs.load(job_id)
        if job is None or job.status is not JobStatus.PROCESSING:
            return
        self.jobs.finish(job_id, job, JobStatus.ERROR, reason)
        self.jobs.save(job_id, job)
        await self.views.write_job(job_id, job)
        await self.jobs.lifecycle(job_id, job, JobStatus.PROCESSING)

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
