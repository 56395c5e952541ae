"""The tenants' endpoints: records on `bulk.webhooks` (the truth), a Redis view of them
(for the API's lists), and the dispatcher's copy in memory.

A record's key is `<length of the tenant>:<tenant>:<webhook id>`: the length
says where the tenant ends, so no tenant's key can name another's endpoint.
Its value is the endpoint (`Subscription`, secret included); a tombstone (no
value) deletes it, and the topic is compacted, so it keeps the latest record
of each endpoint. The topic has one partition: its offsets order every
change of every endpoint.

The view is derived: each entry carries the offset of the record it shows,
and a write only lands when its record is newer than what the view holds
(deletions leave the tombstone's offset in a small per-tenant set), so
writers in any order (the API after its write, every dispatcher as it reads
the topic, a dispatcher rebuilding after Redis lost the view) end in the
topic's latest state. The dispatcher rebuilds the view from its copy at
start and whenever the view's marker is gone.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from confluent_kafka import Consumer
from confluent_kafka.cimpl import KafkaError, KafkaException, TopicPartition
from pydantic import Field

from schemas.webhooks import Webhook
from streams.kafka.producer import AsyncProducer
from streams.settings import Settings
from streams.views import keys
from streams.webhooks import produce

log = logging.getLogger(__name__)

# Tombstones' offsets kept per tenant in the view (the newest): a writer lagging by
# more deletions than this could show a deleted endpoint again until it catches up.
GONE_KEPT = 1000

# KEYS: the tenant's entries, its tombstones. ARGV: webhook id, offset, record.
_PUT = """
local gone = redis.call('ZSCORE', KEYS[2], ARGV[1])
if gone and tonumber(gone) >= tonumber(ARGV[2]) then return 0 end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and tonumber(string.match(current, '^(%d+):')) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return 1
"""
# KEYS: as above. ARGV: webhook id, the tombstone's offset, tombstones kept.
_DELETE = """
local gone = redis.call('ZSCORE', KEYS[2], ARGV[1])
if gone and tonumber(gone) >= tonumber(ARGV[2]) then return 0 end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and tonumber(string.match(current, '^(%d+):')) > tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1) end
return 1
"""


class Subscription(Webhook):
    """A tenant's endpoint as `bulk.webhooks` holds it."""

    tenant: str
    created_at: int = Field(
        description="Unix ms. Events written before it are not sent to this endpoint "
        "(a dispatcher that re-reads old events never sends them to a newer endpoint)."
    )

    def public(self) -> Webhook:
        """The endpoint as the API answers it."""
        return Webhook.model_validate(self.model_dump(include=set(Webhook.model_fields)))


def new_webhook_id(tenant: str, seed: str | None = None) -> str:
    """A fresh id, or (with the request's Idempotency-Key claim as `seed`) the same id
    for every retry of one request."""
    if seed is None:
        return "wh_" + secrets.token_hex(12)
    return "wh_" + hashlib.blake2b(f"{tenant}\x00{seed}".encode(), digest_size=12).hexdigest()


def record_key(tenant: str, webhook_id: str) -> bytes:
    return f"{len(tenant)}:{tenant}:{webhook_id}".encode()


def parse_key(key: bytes) -> tuple[str, str]:
    """(tenant, webhook id) of a record's key; ValueError if it is not one."""
    length, _, rest = key.decode("utf-8", "replace").partition(":")
    size = int(length) if length.isdecimal() else 0
    if not 0 < size < len(rest) or rest[size] != ":":
        raise ValueError(f"not a webhook key: {key[:100]!r}")
    return rest[:size], rest[size + 1 :]


def encode(subscription: Subscription) -> bytes:
    return orjson.dumps(subscription.model_dump(mode="json", by_alias=True))


def now_ms() -> int:
    return int(time.time() * 1000)


class SubscriptionLog:
    """Writes endpoints' records to `bulk.webhooks`; each write answers the record's offset
    once the broker has it (acks=all)."""

    def __init__(self, settings: Settings, producer: AsyncProducer) -> None:
        self.topic = settings.topic_webhooks
        self.producer = producer

    async def put(self, subscription: Subscription) -> int:
        return await self._write(
            record_key(subscription.tenant, subscription.id), encode(subscription)
        )

    async def delete(self, tenant: str, webhook_id: str) -> int:
        return await self._write(record_key(tenant, webhook_id), None)

    async def _write(self, key: bytes, value: bytes | None) -> int:
        return await produce.write(self.producer, self.topic, key, value)


@dataclass(frozen=True)
class Entry:
    subscription: Subscription
    offset: int


class SubscriptionView:
    """The Redis view of the endpoints, per tenant (key layout: streams.views.keys)."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._put = redis.register_script(_PUT)
        self._delete = redis.register_script(_DELETE)

    def _keys(self, tenant: str) -> list[str]:
        return [keys.webhooks(self.prefix, tenant), keys.webhooks_gone(self.prefix, tenant)]

    async def put(self, subscription: Subscription, offset: int) -> None:
        await self._put(
            keys=self._keys(subscription.tenant),
            args=[subscription.id, offset, encode(subscription)],
        )

    async def delete(self, tenant: str, webhook_id: str, offset: int) -> None:
        await self._delete(keys=self._keys(tenant), args=[webhook_id, offset, GONE_KEPT])

    async def get(self, tenant: str, webhook_id: str) -> Subscription | None:
        raw = await self.redis.hget(keys.webhooks(self.prefix, tenant), webhook_id)
        return None if raw is None else _entry(raw).subscription

    async def list(self, tenant: str) -> list[Subscription]:
        """The tenant's endpoints, oldest first."""
        raw = await self.redis.hgetall(keys.webhooks(self.prefix, tenant))
        entries = sorted((_entry(value) for value in raw.values()), key=lambda e: e.offset)
        return [entry.subscription for entry in entries]

    async def count(self, tenant: str) -> int:
        return int(await self.redis.hlen(keys.webhooks(self.prefix, tenant)))

    async def whole(self) -> bool:
        return bool(await self.redis.exists(keys.webhooks_alive(self.prefix)))

    async def mark_whole(self) -> None:
        await self.redis.set(keys.webhooks_alive(self.prefix), b"1")


def _entry(raw: bytes | str) -> Entry:
    offset, _, record = (raw.encode() if isinstance(raw, str) else raw).partition(b":")
    return Entry(Subscription.model_validate_json(record), int(offset))


class Registry:
    """The endpoints in memory, per tenant, each with the offset of its record; a record
    older than what is held for its endpoint is ignored (the dispatcher applies its own
    writes before it reads them back)."""

    def __init__(self) -> None:
        self._tenants: dict[str, dict[str, Entry]] = {}

    def apply(self, key: bytes, value: bytes | None, offset: int) -> tuple[str, str] | None:
        """Take in one record of the topic; (tenant, webhook id) if it changed anything.
        ValueError if it is not a record of the topic."""
        tenant, webhook_id = parse_key(key)
        held = self._tenants.get(tenant, {}).get(webhook_id)
        if held is not None and held.offset >= offset:
            return None
        if value is None:
            if held is None:
                return None
            del self._tenants[tenant][webhook_id]
            if not self._tenants[tenant]:
                del self._tenants[tenant]
            return tenant, webhook_id
        subscription = Subscription.model_validate_json(value)
        if (subscription.tenant, subscription.id) != (tenant, webhook_id):
            raise ValueError(f"record of {subscription.tenant}/{subscription.id} under another key")
        self._tenants.setdefault(tenant, {})[webhook_id] = Entry(subscription, offset)
        return tenant, webhook_id

    def of(self, tenant: str) -> list[Subscription]:
        held = self._tenants.get(tenant)
        return [] if held is None else [entry.subscription for entry in held.values()]

    def get(self, tenant: str, webhook_id: str) -> Entry | None:
        return self._tenants.get(tenant, {}).get(webhook_id)

    def entries(self) -> list[Entry]:
        return [entry for held in self._tenants.values() for entry in held.values()]

    def takes_messages(self) -> bool:
        """Whether an endpoint that is enabled takes some message event type."""
        return any(
            not entry.subscription.disabled
            and any(
                name == "*" or name.startswith("message.") for name in entry.subscription.events
            )
            for held in self._tenants.values()
            for entry in held.values()
        )

    def __len__(self) -> int:
        return sum(len(held) for held in self._tenants.values())

    def __bool__(self) -> bool:
        """Whether any tenant has an endpoint (a test of one dict, not a count)."""
        return bool(self._tenants)


Record = tuple[bytes, bytes | None, int]


class SubscriptionFeed:
    """Follows `bulk.webhooks` from its start (read_committed, no group, no commits).

    `poll` takes what has arrived without waiting; `read_to_end` (blocking: run it
    on a thread) reads up to the end the topic has now, and records when it did in
    `fresh_at`: every record written before then is in hand."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_webhooks
        config = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.app_id}-webhooks-registry",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
        self.consumer = Consumer(config)
        self.consumer.assign([TopicPartition(self.topic, 0, -2)])  # from the beginning
        # The topic's end is asked on a connection of its own: a broker answers a
        # connection's requests in order, and the reader's fetch waits there (up to
        # fetch.wait.max.ms) for records that are not coming.
        self.probe = Consumer(config)
        self.position = 0  # the offset of the next record to read
        self.fresh_at = 0.0

    def poll(self) -> list[Record]:
        return self._take(self.consumer.consume(500, 0))

    def read_to_end(self, timeout: float) -> list[Record]:
        asked_at = time.time()
        deadline = time.monotonic() + timeout
        _, end = self.probe.get_watermark_offsets(
            TopicPartition(self.topic, 0), timeout=timeout, cached=False
        )
        records: list[Record] = []
        while self.position < end:
            if time.monotonic() > deadline:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "webhooks registry"))
            records += self._take(self.consumer.consume(500, 0.1))
        self.fresh_at = asked_at
        return records

    def _take(self, messages: list[Any]) -> list[Record]:
        records: list[Record] = []
        for message in messages:
            error = message.error()
            if error is not None:
                log.warning("webhooks registry: %s", error)
                continue
            key = message.key()
            offset = int(message.offset())
            self.position = offset + 1
            if isinstance(key, bytes):
                records.append((key, message.value(), offset))
        return records

    def close(self) -> None:
        self.consumer.close()
        self.probe.close()
