"""What the worker writes into the views, queued for one round trip to Redis.

An event of the aggregate writes several views (an ingest: its users, the job's
summary and the command's result). Each write queues its commands on a
`ViewWrites`; `send` sends them all in one pipeline (and then, for a job that
finished, the expiry of its views, in chunks). Not a transaction: Redis
applies the commands in the order they were queued, which is the order the
readers rely on (a job's view before the result that announces it, a failed
user's reason before its page's bit). Each round trip costs the worker a wait
and a wake-up on a busy loop, which is what a small job's answer waited for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from schemas.commands import CommandResult, courier_definition
from schemas.views import FINISHED, JobStatus
from streams.ids import MessageIds
from streams.views import keys, notices
from streams.views.connection import expire_each

ERROR_PREFIX = "ERROR:"

# Writes the job summary unless Redis already holds a newer version of it, so a
# slow writer (a rebuild racing the live fan-out) never moves counters back. Sent
# whole (EVAL): Redis keeps it compiled under its digest, and a pipeline holding an
# EVALSHA would have to ask whether Redis still holds the script first.
_WRITE_JOB = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'definition', ARGV[2], 'received', ARGV[3],
           'enqueued', ARGV[4], 'failures', ARGV[5], 'status', ARGV[6], 'createdAt', ARGV[7],
           'pageSize', ARGV[8], 'control', ARGV[9], 'messageIds', ARGV[10])
-- Kept until the job finishes (`ViewWrites.job` then sets its expiry), whatever TTL a
-- delivery fold's counts gave the hash before the job was written (`views.delivery`).
redis.call('PERSIST', KEYS[1])
redis.call('PUBLISH', ARGV[11], ARGV[12])
return 1
"""


class JobRecord(Protocol):
    """What the views read of a job's record (the aggregate's `JobState`)."""

    tenant: str
    version: int
    definition: dict[str, Any]
    received: int
    enqueued: int
    failures: int
    status: JobStatus
    created_at: float
    page_size: int | None
    completed_at: float | None
    canceled: int
    scheduled_text: str | None
    sends_per_second: int | None
    parent_job_id: str | None
    message_ids: MessageIds


def _control_fields(job: JobRecord) -> dict[str, Any]:
    """The job view's fields of job control, only those the job uses (a Courier-only
    client never sees them)."""
    fields: dict[str, Any] = {}
    if job.status is JobStatus.CANCELED:
        fields["canceled"] = job.canceled
    if job.scheduled_text is not None:
        fields["scheduled_at"] = job.scheduled_text
    if job.sends_per_second is not None:
        fields["sends_per_second"] = job.sends_per_second
    if job.parent_job_id is not None:
        fields["parent_job_id"] = job.parent_job_id
    return fields


def job_keys(prefix: str, job_id: str, job: JobRecord) -> Iterable[str]:
    """Every key of a job's views."""
    yield keys.job(prefix, job.tenant, job_id)
    yield keys.pages(prefix, job.tenant, job_id)
    for bucket in range(-(-job.received // keys.USERS_PER_BUCKET)):
        yield keys.users_bucket(prefix, job.tenant, job_id, bucket)
        yield keys.status_bucket(prefix, job.tenant, job_id, bucket)
        yield keys.delivery_bucket(prefix, job.tenant, job_id, bucket)


class ViewWrites:
    """View writes queued for one round trip (`send`)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, retention_seconds: int) -> None:
        self.prefix = prefix
        self.retention_seconds = retention_seconds
        self.redis = redis
        self.pipe = redis.pipeline(transaction=False)
        # A finished job's view keys to expire, and after how long (`send`).
        self.expiring: list[tuple[Iterable[str], int]] = []

    def users(
        self,
        tenant: str,
        job_id: str,
        users: Iterable[Sequence[Any]],
        sent: Sequence[bytes] = (),
    ) -> None:
        """Each user (position, identity, user as ingested, ...) under its position; its
        JSON is taken from `sent` when given (made when the command was read)."""
        by_bucket: dict[int, dict[FieldT, EncodableT]] = {}
        for i, stored in enumerate(users):
            position = stored[0]
            wire = sent[i] if sent else orjson.dumps(stored[2])
            by_bucket.setdefault(keys.bucket_of(position), {})[position] = wire
        for bucket, mapping in by_bucket.items():
            self.pipe.hset(keys.users_bucket(self.prefix, tenant, job_id, bucket), mapping=mapping)

    def job(self, job_id: str, job: JobRecord) -> None:
        """The job's summary (unless Redis holds a newer version), announced on the jobs
        channel; a finished job's views set to expire at the end of its retention."""
        key = keys.job(self.prefix, job.tenant, job_id)
        self.pipe.eval(
            _WRITE_JOB,
            1,
            key,
            job.version,
            orjson.dumps(courier_definition(job.definition)),
            job.received,
            job.enqueued,
            job.failures,
            job.status.value,
            repr(job.created_at),
            job.page_size or 0,
            orjson.dumps(_control_fields(job)),
            job.message_ids,
            keys.jobs_channel(self.prefix),
            notices.encode_job(job.tenant, job_id),
        )
        if job.status in FINISHED:
            finished = job.completed_at or time.time()
            ttl = max(1, int(finished + self.retention_seconds - time.time()))
            # After the pipeline, in chunks: as many keys as the job has buckets.
            self.expiring.append((job_keys(self.prefix, job_id, job), ttl))

    def page(self, tenant: str, job_id: str, page: int, failures: dict[int, str]) -> None:
        """Page `page` is fanned out: its failed users' reasons, then its bit (ENQUEUED
        for the rest). In this order, a reader never sees a failed user ENQUEUED."""
        by_bucket: dict[int, dict[FieldT, EncodableT]] = {}
        for position, reason in failures.items():
            by_bucket.setdefault(keys.bucket_of(position), {})[position] = (
                ERROR_PREFIX + reason
            ).encode()
        for bucket, mapping in by_bucket.items():
            self.pipe.hset(keys.status_bucket(self.prefix, tenant, job_id, bucket), mapping=mapping)
        self.pipe.setbit(keys.pages(self.prefix, tenant, job_id), page, 1)

    def result(self, result: CommandResult, ttl: int) -> None:
        """A command's result under its id, announced on the results channel (after the
        SET: a woken reader finds it), so the API's waiter wakes at once."""
        key = keys.result(self.prefix, result.tenant, result.job_id, result.command_id)
        self.pipe.set(key, orjson.dumps(result.to_wire()), ex=ttl)
        self.pipe.publish(
            keys.results_channel(self.prefix),
            notices.encode(result.tenant, result.job_id, result.command_id),
        )

    async def send(self) -> None:
        """Send what is queued, in one round trip (nothing when nothing is); then set the
        expiry of a finished job's views, in as many as its keys take."""
        if len(self.pipe):
            await self.pipe.execute()
        for names, ttl in self.expiring:
            await expire_each(self.redis, names, ttl)
        self.expiring.clear()
