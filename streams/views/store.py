"""The Redis views: job summaries, users in ingestion order with their status, results.

Views are derived: the worker writes them as absolute values from the job
aggregate's state (idempotent under replay), and `rebuild` restores them from
that state after Redis lost them. Key layout: streams/views/keys.py. Each result
written is also announced on pub/sub (streams/views/notices.py).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from schemas.commands import CommandResult, courier_definition, echo, identity_of
from schemas.views import FINISHED, DryRun, JobStatus, JobView, UserStatus
from streams.ids import IDENTITY_IDS, MessageIds, shown_message_id
from streams.views import keys, notices
from streams.views.connection import redis_from_url
from streams.views.delivery import DeliveryViews, user_delivery

ENQUEUED = b"ENQUEUED"
# The fields a users page writes into each item beside the user as ingested.
VIEW_FIELDS = frozenset({"status", "messageId", "error", "delivery"})

# Writes the job summary unless Redis already holds a newer version of it, so a
# slow writer (a rebuild racing the live fan-out) never moves counters back.
_WRITE_JOB = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'definition', ARGV[2], 'received', ARGV[3],
           'enqueued', ARGV[4], 'failures', ARGV[5], 'status', ARGV[6], 'createdAt', ARGV[7],
           'pageSize', ARGV[8], 'control', ARGV[9], 'messageIds', ARGV[10])
redis.call('PUBLISH', ARGV[11], ARGV[12])
return 1
"""
ERROR_PREFIX = "ERROR:"


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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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


def patient_redis(url: str) -> aioredis.Redis:
    """The worker's Redis: an outage (down, restarting, paused) is waited out, never raised.

    Views are derived, so an agent may as well wait for Redis: its event stays
    unacked and nothing is lost. A client that raised instead would take the
    worker down. Time-outs turn a paused server into retries too."""
    return redis_from_url(
        url,
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
        retry=Retry(
            ExponentialBackoff(cap=2.0, base=0.1),
            retries=-1,  # for ever
            supported_errors=(RedisConnectionError, RedisTimeoutError, BusyLoadingError),
        ),
    )


class InvalidCursor(ValueError):
    """A cursor this server did not hand out."""


def encode_cursor(job_id: str, position: int) -> str:
    raw = orjson.dumps({"j": job_id, "p": position})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(job_id: str, cursor: str) -> int:
    try:
        if len(cursor) > 512:
            raise ValueError("cursor too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        position = data["p"]
        if data["j"] != job_id or not isinstance(position, int) or position < 0:
            raise ValueError("cursor of another job")
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidCursor("invalid cursor") from exc
    if position % keys.USERS_PER_BUCKET:
        raise InvalidCursor("invalid cursor")
    return position


@dataclass(frozen=True)
class UsersPage:
    items: list[dict[str, Any]]
    cursor: str | None
    more: bool


class Views:
    """Writes and reads every view of one Redis, under one key prefix."""

    def __init__(self, redis: aioredis.Redis, prefix: str, retention_seconds: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention_seconds = retention_seconds
        self._write_job = redis.register_script(_WRITE_JOB)
        self.results_channel = keys.results_channel(prefix)
        self.jobs_channel = keys.jobs_channel(prefix)
        self.delivery = DeliveryViews(redis, prefix, retention_seconds)

    # -- writing (the worker) ------------------------------------------------
    async def write_job(self, job_id: str, job: JobRecord) -> None:
        key = keys.job(self.prefix, job.tenant, job_id)
        args: list[bytes | str | int] = [
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
            self.jobs_channel,
            notices.encode_job(job.tenant, job_id),
        ]
        await self._write_job(keys=[key], args=args)
        if job.status in FINISHED:
            finished = job.completed_at or time.time()
            ttl = max(1, int(finished + self.retention_seconds - time.time()))
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in self._job_keys(job_id, job):
                    pipe.expire(name, ttl)
                await pipe.execute()

    async def write_dry_run(self, tenant: str, job_id: str, outcome: DryRun) -> None:
        key = keys.job(self.prefix, tenant, job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "dryRun", orjson.dumps(outcome.to_wire()))
            pipe.publish(self.jobs_channel, notices.encode_job(tenant, job_id))
            await pipe.execute()

    async def delete_job(self, job_id: str, job: JobRecord) -> None:
        names = list(self._job_keys(job_id, job))
        for start in range(0, len(names), 1000):
            await self.redis.delete(*names[start : start + 1000])
        await self.redis.publish(self.jobs_channel, notices.encode_job(job.tenant, job_id))

    def _job_keys(self, job_id: str, job: JobRecord) -> Iterable[str]:
        yield keys.job(self.prefix, job.tenant, job_id)
        yield keys.pages(self.prefix, job.tenant, job_id)
        for bucket in range(-(-job.received // keys.USERS_PER_BUCKET)):
            yield keys.users_bucket(self.prefix, job.tenant, job_id, bucket)
            yield keys.status_bucket(self.prefix, job.tenant, job_id, bucket)
            yield keys.delivery_bucket(self.prefix, job.tenant, job_id, bucket)

    async def write_users(
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
        if not by_bucket:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket, mapping in by_bucket.items():
                pipe.hset(keys.users_bucket(self.prefix, tenant, job_id, bucket), mapping=mapping)
            await pipe.execute()

    async def write_page(
        self, tenant: str, job_id: str, page: int, failures: dict[int, str]
    ) -> None:
        """Page `page` is fanned out: its failed users' reasons, then its bit (ENQUEUED
        for the rest). In this order, a reader never sees a failed user ENQUEUED."""
        by_bucket: dict[int, dict[FieldT, EncodableT]] = {}
        for position, reason in failures.items():
            by_bucket.setdefault(keys.bucket_of(position), {})[position] = (
                ERROR_PREFIX + reason
            ).encode()
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket, mapping in by_bucket.items():
                pipe.hset(keys.status_bucket(self.prefix, tenant, job_id, bucket), mapping=mapping)
            pipe.setbit(keys.pages(self.prefix, tenant, job_id), page, 1)
            await pipe.execute()

    async def write_result(self, result: CommandResult, ttl: int) -> None:
        """Keep the result under its command id and announce it on the results channel,
        in one round trip (MULTI): the API's waiter wakes at once instead of polling."""
        key = keys.result(self.prefix, result.tenant, result.job_id, result.command_id)
        notice = notices.encode(result.tenant, result.job_id, result.command_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            # SET before PUBLISH: a woken reader finds the result.
            pipe.set(key, orjson.dumps(result.to_wire()), ex=ttl)
            pipe.publish(self.results_channel, notice)
            await pipe.execute()

    async def mark_alive(self) -> None:
        await self.redis.set(keys.views_alive(self.prefix), b"1")

    async def alive(self) -> bool:
        return bool(await self.redis.exists(keys.views_alive(self.prefix)))

    # -- reading (API and CLI) -----------------------------------------------
    async def read_job(self, tenant: str, job_id: str) -> JobView | None:
        raw = await self.redis.hgetall(keys.job(self.prefix, tenant, job_id))
        if not raw:
            return None
        control = orjson.loads(raw.get(b"control") or b"{}")
        dry_run = raw.get(b"dryRun")
        delivery = raw.get(b"delivery")
        if delivery is not None:
            control["delivery"] = orjson.loads(delivery)
        return JobView(
            definition=orjson.loads(raw[b"definition"]),
            received=int(raw[b"received"]),
            enqueued=int(raw[b"enqueued"]),
            failures=int(raw[b"failures"]),
            status=JobStatus(_text(raw[b"status"])),
            dry_run=DryRun.model_validate_json(dry_run) if dry_run else None,
            **control,
        )

    async def read_result(self, tenant: str, job_id: str, command_id: str) -> CommandResult | None:
        raw = await self.redis.get(keys.result(self.prefix, tenant, job_id, command_id))
        return None if raw is None else CommandResult.model_validate_json(raw)

    async def read_users(self, tenant: str, job_id: str, cursor: str | None) -> UsersPage | None:
        """One page of users in ingestion order, or None when the job is unknown.

        An unknown job wins over a bad cursor: it is None, not InvalidCursor."""
        job_key = keys.job(self.prefix, tenant, job_id)
        received_raw, created_raw, page_size_raw, status_raw, ids_raw = await self.redis.hmget(
            job_key, ["received", "createdAt", "pageSize", "status", "messageIds"]
        )
        if received_raw is None:
            return None
        start = 0 if not cursor else decode_cursor(job_id, cursor)
        bucket = keys.bucket_of(start)
        page_size = int(page_size_raw or 0)
        # The bytes of the pages bitmap that cover this bucket's positions.
        first_byte = start // page_size // 8 if page_size else 0
        last_byte = (start + keys.USERS_PER_BUCKET - 1) // page_size // 8 if page_size else -1
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.users_bucket(self.prefix, tenant, job_id, bucket))
            pipe.hgetall(keys.status_bucket(self.prefix, tenant, job_id, bucket))
            pipe.getrange(keys.pages(self.prefix, tenant, job_id), first_byte, last_byte)
            pipe.hgetall(keys.delivery_bucket(self.prefix, tenant, job_id, bucket))
            users, statuses, bits, outcomes = await pipe.execute()
        received, created_at = int(received_raw), float(created_raw or 0)
        # A view written by an earlier release has no `messageIds`: its job's are `identity`.
        ids = _text(ids_raw) if ids_raw else IDENTITY_IDS
        # Users still PENDING when their job was canceled were never sent.
        unsent = UserStatus.CANCELED if status_raw == b"CANCELED" else UserStatus.PENDING

        def page_done(position: int) -> bool:
            if not page_size:
                return False
            page = position // page_size
            at = page // 8 - first_byte
            return at < len(bits) and bool(bits[at] & (0x80 >> (page % 8)))

        items = []
        for position in sorted(int(p) for p in users):
            user = orjson.loads(users[str(position).encode()])
            status = statuses.get(str(position).encode())
            if status is None and page_done(position):
                status = ENQUEUED
            item = self._item(job_id, created_at, ids, position, user, status, unsent)
            outcome = outcomes.get(str(position).encode())
            if outcome is not None:
                item["delivery"] = user_delivery(outcome)
            items.append(item)
        next_start = start + keys.USERS_PER_BUCKET
        more = next_start < received
        return UsersPage(items, encode_cursor(job_id, next_start) if more else None, more)

    @staticmethod
    def _item(
        job_id: str,
        created_at: float,
        ids: str,
        position: int,
        user: dict[str, Any],
        status: bytes | None,
        unsent: UserStatus = UserStatus.PENDING,
    ) -> dict[str, Any]:
        # A user's unknown fields are echoed, but not over the ones the view writes.
        identity = identity_of(user)
        item = {key: value for key, value in echo(user, identity).items() if key not in VIEW_FIELDS}
        if status is None:
            item["status"] = unsent.value
        elif status == ENQUEUED:
            item["status"] = UserStatus.ENQUEUED.value
            message = shown_message_id(ids, created_at, job_id, position, identity)
            if message is not None:
                item["messageId"] = message
        else:
            item["status"] = UserStatus.ERROR.value
            item["error"] = status.decode()[len(ERROR_PREFIX) :]
        return item
