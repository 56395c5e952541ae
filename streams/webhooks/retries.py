"""Webhook messages waiting for their next attempt, and those given up on: Kafka holds
both, so a dispatcher that dies loses neither.

`bulk.webhooks.retry`: one partition per delay tier (`streams.webhooks.backoff`),
key = webhook id. A message whose attempt failed is written to the tier of its
next delay with the time it is due; every record of a tier waits about as long
as the others, so each partition is in due order (give or take the jitter). A
dispatcher reads a tier's records as they fall due: at a record not yet due it
pauses that partition and seeks back to it, and resumes it at the due time.
The record is only committed (the source of the message with it) once its
attempt is settled: delivered, written again to its next tier, or dead-lettered.

`bulk.webhooks.dlq`: key = webhook id; what was to be sent, to which endpoint,
how often it was tried, and why it was given up on (`reason`, also the
`x-bulkstream-reason` header).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
from pydantic import Field

from schemas.base import WireModel
from streams.errors import DeliveryFailed
from streams.kafka.producer import AsyncProducer
from streams.settings import Settings
from streams.webhooks import produce

log = logging.getLogger(__name__)

MAX_ERROR = 1000  # characters of an attempt's error kept in a record


class RetryRecord(WireModel):
    """A webhook message waiting for its next attempt, on `bulk.webhooks.retry`."""

    webhook_id: str
    subscription_id: str
    tenant: str
    type: str
    body: str = Field(description="The request body, exactly as every attempt sends it.")
    failures: int = Field(ge=0, description="Attempts that failed so far.")
    first_at: float = Field(description="When the event was first read (Unix seconds).")
    due: float = Field(description="When the next attempt is due (Unix seconds).")
    last_error: str | None = None


class DeadLetter(WireModel):
    """A webhook message given up on, on `bulk.webhooks.dlq`."""

    webhook_id: str
    subscription_id: str
    tenant: str
    url: str
    type: str
    body: str
    failures: int
    first_at: float
    dead_at: float
    reason: str


def decode(value: bytes | None) -> RetryRecord:
    """A retry record; ValueError (pydantic's ValidationError is one) if it is not one."""
    if value is None:
        raise ValueError("empty retry record")
    return RetryRecord.model_validate_json(value)


class RetryTopic:
    """Writes to the retry and dead-letter topics, waiting for the broker's acknowledgement
    and trying again (every second) while it does not come, until `stopping()`."""

    def __init__(
        self, settings: Settings, producer: AsyncProducer, stopping: Callable[[], bool]
    ) -> None:
        self.retry_topic = settings.topic_webhooks_retry
        self.dlq_topic = settings.topic_webhooks_dlq
        self.producer = producer
        self.stopping = stopping

    async def park(self, record: RetryRecord, tier: int) -> None:
        await self._write(self.retry_topic, record.webhook_id, _encode(record), tier, {})

    async def dead_letter(self, letter: DeadLetter) -> None:
        headers: dict[str, str | bytes | None] = {"x-bulkstream-reason": letter.reason[:MAX_ERROR]}
        await self._write(self.dlq_topic, letter.webhook_id, _encode(letter), None, headers)

    async def _write(
        self,
        topic: str,
        key: str,
        value: bytes,
        partition: int | None,
        headers: dict[str, str | bytes | None],
    ) -> None:
        while True:
            try:
                await produce.write(
                    self.producer, topic, key.encode(), value, partition=partition, headers=headers
                )
                return
            except DeliveryFailed as exc:
                if self.stopping():
                    raise
                log.warning("webhooks: writing to %s failed (%s); trying again", topic, exc)
                await asyncio.sleep(1.0)


def _encode(record: WireModel) -> bytes:
    return orjson.dumps(record.to_wire())
