"""The Redis views: job summaries, users in ingestion order with their status, results.

Views are derived: the worker writes them as absolute values from the job
aggregate's state (idempotent under replay), and `rebuild` restores them from
that state after Redis lost them. Key layout: streams/views/keys.py. What the
worker writes, queued for one round trip: streams/views/writes.py. Each result
written is also announced on pub/sub (streams/views/notices.py).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import orjson
import redis.asyncio as aioredis

from schemas.commands import CommandResult, echo, identity_of
from schemas.views import DryRun, JobStatus, JobView, UserStatus
from streams.ids import IDENTITY_IDS, shown_message_id
from streams.views import keys, notices
from streams.views.delivery import DeliveryViews, user_delivery
from streams.views.writes import ERROR_PREFIX, JobRecord, ViewWrites, job_keys

ENQUEUED = b"ENQUEUED"
# The fields a users page writes into each item beside the user as ingested.
VIEW_FIELDS = frozenset({"status", "messageId", "error", "delivery"})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
        self.jobs_channel = keys.jobs_channel(prefix)
        self.delivery = DeliveryViews(redis, prefix, retention_seconds)

    # -- writing (the worker) ------------------------------------------------
    def writes(self) -> ViewWrites:
        """Writes to queue and send in one round trip (`streams.views.writes`)."""
        return ViewWrites(self.redis, self.prefix, self.retention_seconds)

    async def write_job(self, job_id: str, job: JobRecord) -> None:
        writes = self.writes()
        writes.job(job_id, job)
        await writes.send()

    async def write_dry_run(self, tenant: str, job_id: str, outcome: DryRun) -> None:
        key = keys.job(self.prefix, tenant, job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "dryRun", orjson.dumps(outcome.to_wire()))
            pipe.publish(self.jobs_channel, notices.encode_job(tenant, job_id))
            await pipe.execute()

    async def delete_job(self, job_id: str, job: JobRecord) -> None:
        names = iter(job_keys(self.prefix, job_id, job))  # as many as the job has buckets
        while chunk := list(islice(names, 1000)):
            await self.redis.delete(*chunk)
        await self.redis.publish(self.jobs_channel, notices.encode_job(job.tenant, job_id))

    async def write_users(self, tenant: str, job_id: str, users: Iterable[Sequence[Any]]) -> None:
        writes = self.writes()
        writes.users(tenant, job_id, users)
        await writes.send()

    async def write_page(
        self, tenant: str, job_id: str, page: int, failures: dict[int, str]
    ) -> None:
        writes = self.writes()
        writes.page(tenant, job_id, page, failures)
        await writes.send()

    async def mark_alive(self) -> None:
        await self.redis.set(keys.views_alive(self.prefix), b"1")

    async def alive(self) -> bool:
        return bool(await self.redis.exists(keys.views_alive(self.prefix)))

    # -- reading (API and CLI) -----------------------------------------------
    async def read_job(self, tenant: str, job_id: str) -> JobView | None:
        raw = await self.redis.hgetall(keys.job(self.prefix, tenant, job_id))
        if b"definition" not in raw:
            # Nothing, or only the delivery counts a fold wrote after the job's views
            # expired or were purged, or before they are rebuilt (`views.delivery`).
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
