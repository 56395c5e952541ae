"""Retrying a finished job's failed users: a new job of the same definition that holds
exactly the users whose delivery ended FAILED or UNDELIVERABLE, or whom the fan-out
failed.

A `retry` command (key = the job's id) is applied by the job's owner. It reads
those users from the job's state, in position order, and writes the new job's
commands onto `bulk.commands` (key = the new job's id): a create (the
definition as sent, `parentJobId`) and ingests of at most 1,000 users each,
every user as it was ingested, with its ingest call's metadata. Their command
ids derive from the retry's, so a retry applied twice (a crash before the
feed's cursor) writes the same commands, and those answer from their stored
results. The retry is answered once Kafka holds them all; the new job is then
an ordinary CREATED job that the client runs.

Which users: the delivery states as the job's summary counts them (a report
folded after the retry does not change the new job).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson

from schemas.commands import (
    AnyCommand,
    BulkUser,
    CommandResult,
    CreateJob,
    ErrorType,
    IngestUsers,
    JobMessage,
    RetryJob,
)
from schemas.delivery import FAILED_STATES
from streams.aggregate.outcomes import Summary, decode_block, status_of
from streams.aggregate.paging import StoredUser, decode_batch
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.rules import result
from streams.aggregate.state import (
    SEP,
    JobState,
    batch_prefix,
    delivery_key,
    outcomes_prefix,
    scan_prefix,
)
from streams.runtime.access import partition_db

# Users per ingest command of the new job (Courier's informal limit per call), and its
# users' JSON at most (half the default command limit, BULKSTREAM_MAX_COMMAND_BYTES).
CHUNK = 1000
CHUNK_BYTES = 4 * 1024 * 1024


def failed_positions(db: Any, job_id: str) -> set[int]:
    """Positions whose delivery ended FAILED or UNDELIVERABLE, or that the fan-out failed."""
    failed: set[int] = set()
    raw = db.get(delivery_key(job_id))
    if raw is not None:
        upto = Summary.from_bytes(raw).upto
        for _, block in scan_prefix(db, outcomes_prefix(job_id)):
            for position, state in decode_block(block).items():
                if status_of(state.as_of(upto)) in FAILED_STATES:
                    failed.add(position)
    prefix = f"{job_id}{SEP}f{SEP}".encode()
    failed.update(int(key[len(prefix) :]) for key, _ in scan_prefix(db, prefix))
    return failed


def chunks(
    users: Iterator[StoredUser], limit: int = CHUNK, limit_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[list[StoredUser], Any]]:
    """Runs of at most `limit` users, and of `limit_bytes` of their JSON (a user larger
    goes alone: it came in a command once), that share their ingest call's metadata."""
    run: list[StoredUser] = []
    size = 0
    metadata: Any = None
    for user in users:
        meta = user[3] if len(user) > 3 else None
        weight = len(orjson.dumps(user[2]))
        if run and (len(run) == limit or size + weight > limit_bytes or meta != metadata):
            yield run, metadata
            run, size = [], 0
        run.append(user)
        size += weight
        metadata = meta
    if run:
        yield run, metadata


class Retries:
    def __init__(self, pipeline: Pipeline) -> None:
        self.state = pipeline.state
        self.topics = pipeline.topics
        self.deliveries = pipeline.app.deliveries

    async def make(self, command: RetryJob, job: JobState, partition: int) -> CommandResult:
        db = partition_db(self.state, partition)
        failed = failed_positions(db, command.job_id)
        if not failed:
            message = "the job has no failed users to retry"
            return result(command, False, ErrorType.NOT_ALLOWED, message)
        base = "retry-" + hashlib.sha256(command.command_id.encode()).hexdigest()[:32]
        await self.send(
            CreateJob(
                command_id=f"{base}-create",
                tenant=command.tenant,
                job_id=command.new_job_id,
                message=JobMessage.model_validate(job.definition),
                created_at=command.created_at,
                parent_job_id=command.job_id,
            )
        )

        def users() -> Iterator[StoredUser]:
            for _, raw in scan_prefix(db, batch_prefix(command.job_id)):
                yield from (user for user in decode_batch(raw) if user[0] in failed)

        total = 0
        for n, (run, metadata) in enumerate(chunks(users())):
            await self.send(
                IngestUsers(
                    command_id=f"{base}-ingest-{n}",
                    tenant=command.tenant,
                    job_id=command.new_job_id,
                    users=[BulkUser.model_validate(user[2]) for user in run],
                    metadata=metadata,
                )
            )
            total += len(run)
        await self.deliveries.settled()
        return result(command, True, total=total)

    async def send(self, command: AnyCommand) -> None:
        value = orjson.dumps(command.to_wire())
        await self.deliveries.send(
            self.topics.commands.send(key=command.job_id.encode(), value=value)
        )
