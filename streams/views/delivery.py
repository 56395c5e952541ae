"""The Redis views of delivery outcomes: a job's counts, each message's state, and what
finds a message by its id (`GET /messages/{id}`): for a message id that carries its
position (`streams.ids`), the set of the jobs of its second with reports, against
each of which the id is checked; for any other, an index field a message.

The worker writes them as absolute values from the aggregate's state, after
every batch of reports it folds (idempotent under replay). A message's entry
holds the state it reached, when, why (a failure's reason), the provider,
and the time of every state it was reported in. The job's counts carry the
offset of the last report folded, so a slow writer never moves them back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import redis.asyncio as aioredis

from schemas.delivery import DeliveryStatus
from streams.ids import position_in
from streams.views import keys, notices
from streams.views.connection import bulk_strings, expire_command, send_packed

# What a batch's views write after its entries (`send_packed`: plain HSETs, which Redis
# applies at half the CPU of a script decoding them from one JSON argument). KEYS: with
# a job id (ARGV[2]), the set of the jobs of its ids' second (`keys.message_jobs`),
# which the job joins; with counts (ARGV[3], the offset of the last report they fold),
# the job's hash. ARGV: the TTL; the job id or ""; the offset or ""; the counts' JSON,
# the channel and the notice to publish. The counts are written unless Redis holds
# those of a later report. A job hash they would make (its views expired or purged,
# or Redis lost them and they are not rebuilt yet) expires after the TTL: until the
# job is written again it holds no job (`Views.read_job`), and nothing is left behind.
_WRITE = """
local next = 1
if ARGV[2] ~= '' then
  redis.call('SADD', KEYS[next], ARGV[2])
  redis.call('EXPIRE', KEYS[next], ARGV[1])
  next = next + 1
end
if ARGV[3] ~= '' then
  local current = redis.call('HGET', KEYS[next], 'deliveryUpto')
  if not (current and tonumber(current) > tonumber(ARGV[3])) then
    local made = redis.call('EXISTS', KEYS[next]) == 0
    redis.call('HSET', KEYS[next], 'deliveryUpto', ARGV[3], 'delivery', ARGV[4])
    if made then
      redis.call('EXPIRE', KEYS[next], ARGV[1])
    end
    redis.call('PUBLISH', ARGV[5], ARGV[6])
  end
end
return next
"""


@dataclass(frozen=True)
class MessageRecord:
    """What the views hold of one reported message: its job's definition and creation
    time, the user as ingested, and its delivery entry."""

    job_id: str
    definition: dict[str, Any]
    created_at: float
    user: dict[str, Any]
    entry: dict[str, Any]


class MessageOutcome(NamedTuple):
    """What the views keep of one message's delivery."""

    position: int
    message_id: str
    status: DeliveryStatus
    at: int
    reason: str | None
    provider: str | None
    times: dict[DeliveryStatus, int]

    def to_json(self) -> bytes:
        # orjson writes a state by its name, as a value and (with the option) as a key.
        entry: dict[str, Any] = {"status": self.status, "at": self.at}
        if self.reason is not None:
            entry["reason"] = self.reason
        if self.provider is not None:
            entry["provider"] = self.provider
        entry["times"] = self.times
        return orjson.dumps(entry, option=orjson.OPT_NON_STR_KEYS)


def user_delivery(raw: bytes) -> dict[str, Any]:
    """A users-page item's `delivery` from the stored entry: status, at, reason."""
    entry = orjson.loads(raw)
    out = {"status": entry["status"], "at": entry["at"]}
    if "reason" in entry:
        out["reason"] = entry["reason"]
    return out


class BucketFields(NamedTuple):
    """Message entries grouped by their bucket of the views: a carried batch's (every
    message id carries its position, no index field)."""

    buckets: list[int]  # bucket numbers, in the order of their first entry
    fields: list[int]  # each bucket's count of fields
    ends: list[int]  # the end of each bucket's share of `body`
    # Each bucket's fields and values ("<position>", entry JSON, ...), flat, as bulk
    # strings of the Redis protocol, bucket after bucket: the arguments of its HSET.
    body: bytes
    message_id: str  # one message's id: the second its set of jobs is of

    def commands(self, key_of: Callable[[int], str], ttl: int) -> list[bytes]:
        """An HSET of each bucket's fields and an EXPIRE of it, in the Redis protocol."""
        out: list[bytes] = []
        start, body = 0, memoryview(self.body)
        for bucket, fields, end in zip(self.buckets, self.fields, self.ends, strict=True):
            out += hset_with_ttl(key_of(bucket).encode(), fields, body[start:end], ttl)
            start = end
        return out


def hset_with_ttl(key: bytes, fields: int, body: bytes | memoryview, ttl: int) -> list[bytes]:
    """An HSET of `fields` fields (`body`: their names and values, as bulk strings),
    then an EXPIRE of its hash, in the Redis protocol."""
    hset = b"*%d\r\n%s" % (2 + 2 * fields, bulk_strings((b"HSET", key)))
    return [hset + body, expire_command(key, ttl)]


def bucket_fields(entries: list[tuple[int, str, str]]) -> BucketFields:
    """(position, message id, entry JSON) entries grouped by bucket (the reference of
    the native fold's `ReportBatch.fold`, which gives the same bytes)."""
    buckets: dict[int, list[bytes]] = {}
    for position, _, entry in entries:
        buckets.setdefault(keys.bucket_of(position), []).extend(
            (str(position).encode(), entry.encode())
        )
    fields, ends, body = [], [], bytearray()
    for values in buckets.values():
        body += bulk_strings(values)
        fields.append(len(values) // 2)
        ends.append(len(body))
    first = entries[0][1] if entries else ""
    return BucketFields(list(buckets), fields, ends, bytes(body), first)


class DeliveryViews:
    def __init__(self, redis: aioredis.Redis, prefix: str, retention_seconds: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention_seconds = retention_seconds
        self._write = redis.register_script(_WRITE)

    async def write(
        self,
        tenant: str,
        job_id: str,
        outcomes: list[MessageOutcome],
        counts: Mapping[str, int] | None = None,
        upto: int = -1,
        *,
        carried: bool = False,
    ) -> None:
        """The messages' entries and what finds them, then the job's counts (when
        given, with the offset of the last report they fold); `carried` as in
        `write_entries`."""
        entries = [(o.position, o.message_id, o.to_json().decode()) for o in outcomes]
        await self.write_entries(tenant, job_id, entries, counts, upto, carried=carried)

    async def write_entries(
        self,
        tenant: str,
        job_id: str,
        entries: list[tuple[int, str, str]] | BucketFields,
        counts: Mapping[str, int] | None = None,
        upto: int = -1,
        *,
        carried: bool = False,
    ) -> None:
        """`write`, of entries encoded already: (position, message id, entry JSON), or
        grouped by bucket already (`bucket_fields`, which the native fold gives).
        `carried`: every message id carries its position (`streams.ids.position_in`), so
        the job joins the set of its ids' second (`find` checks the id against each job
        there) instead of the index taking a field a message."""
        commands: list[bytes] = []
        names: list[str] = []  # the script's keys
        joined = ""  # the job that joins the set of its ids' second
        ttl = self.retention_seconds
        if isinstance(entries, BucketFields) or carried:
            grouped = entries if isinstance(entries, BucketFields) else bucket_fields(entries)
            if grouped.buckets:
                commands = grouped.commands(
                    lambda n: keys.delivery_bucket(self.prefix, tenant, job_id, n), ttl
                )
                names.append(keys.message_jobs(self.prefix, tenant, grouped.message_id))
                joined = job_id
        elif entries:
            hashes: dict[str, list[str]] = {}  # hash -> its fields and values, flat
            for position, message_id, entry in entries:
                bucket = keys.delivery_bucket(self.prefix, tenant, job_id, keys.bucket_of(position))
                hashes.setdefault(bucket, []).extend((str(position), entry))
                index = keys.messages(self.prefix, tenant, message_id)
                hashes.setdefault(index, []).extend((message_id[-24:], f"{position} {job_id}"))
            for name, flat in hashes.items():
                body = bulk_strings(value.encode() for value in flat)
                commands += hset_with_ttl(name.encode(), len(flat) // 2, body, ttl)
        if commands:
            await send_packed(self.redis, b"".join(commands), len(commands))
        if counts is None:
            if not names:
                return
            args: list[str | int | bytes] = [ttl, joined, ""]
        else:
            names.append(keys.job(self.prefix, tenant, job_id))
            args = [
                ttl,
                joined,
                upto,
                orjson.dumps(counts),
                keys.jobs_channel(self.prefix),
                notices.encode_job(tenant, job_id),
            ]
        await self._write(keys=names, args=args)

    async def find(self, tenant: str, message_id: str) -> tuple[str, int] | None:
        """(job id, position) of a message of this tenant that may have a delivery report:
        from the index, or from the jobs of its second whose ids carry positions."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.messages(self.prefix, tenant, message_id), message_id[-24:])
            pipe.smembers(keys.message_jobs(self.prefix, tenant, message_id))
            raw, jobs = await pipe.execute()
        if raw is not None:
            text = raw.decode() if isinstance(raw, bytes) else raw
            position, job_id = text.split(" ", 1)
            return job_id, int(position)
        for job in sorted(jobs):
            job_id = job.decode() if isinstance(job, bytes) else job
            found = position_in(job_id, message_id)
            if found is not None:
                return job_id, found
        return None

    async def entry(self, tenant: str, message_id: str) -> dict[str, Any] | None:
        """A reported message's delivery entry alone (status, at, reason, provider,
        times), or None."""
        found = await self.find(tenant, message_id)
        if found is None:
            return None
        job_id, position = found
        bucket = keys.delivery_bucket(self.prefix, tenant, job_id, keys.bucket_of(position))
        raw = await self.redis.hget(bucket, str(position))
        return None if raw is None else dict(orjson.loads(raw))

    async def read(self, tenant: str, message_id: str) -> MessageRecord | None:
        """A reported message of this tenant, or None (unknown, another tenant's, purged)."""
        found = await self.find(tenant, message_id)
        if found is None:
            return None
        job_id, position = found
        bucket = keys.bucket_of(position)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.job(self.prefix, tenant, job_id), ["definition", "createdAt"])
            pipe.hget(keys.users_bucket(self.prefix, tenant, job_id, bucket), str(position))
            pipe.hget(keys.delivery_bucket(self.prefix, tenant, job_id, bucket), str(position))
            (definition, created_at), user, entry = await pipe.execute()
        if definition is None or user is None or entry is None:
            return None
        return MessageRecord(
            job_id,
            orjson.loads(definition),
            float(created_at or 0),
            orjson.loads(user),
            orjson.loads(entry),
        )
