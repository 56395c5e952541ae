"""What a record of the event topics becomes: a webhook message (pure).

`bulk.job-events` carries `JobEvent`s (type `job.<status>`, `job.failed` for
ERROR) and `bulk.message-events` `MessageEvent`s (`message.<state>`). The
message's `data` is the event's JSON as it is on the topic; its `timestamp`
is when the event happened (the event's `at`). A job event whose status did
not change (a dry run's report: the job stays CREATED) is no status change
and makes no message.

A message's `webhook-id` is derived from the endpoint and the record the
event came from (topic, partition, offset): every attempt, and a re-read
after a crash, sends the same id, which is what receivers deduplicate on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.delivery import MessageEvent
from schemas.events import JobEvent
from schemas.webhooks import WebhookMessage, job_event_type, message_event_type


@dataclass(frozen=True)
class Message:
    """A webhook message: its event type and the request body every endpoint is sent."""

    type: str
    body: bytes


class NotAnEvent(ValueError):
    """A record that is not an event of its topic (it is skipped, with a warning)."""


def tenant_of(raw: Any) -> str | None:
    """The tenant an event names, before it is validated (most events have no
    endpoint to go to: they are passed over without the cost of validation)."""
    tenant = raw.get("tenant") if isinstance(raw, dict) else None
    return tenant if isinstance(tenant, str) else None


def job_message(raw: dict[str, Any]) -> Message | None:
    """The message of a job event (None: no status change)."""
    try:
        event = JobEvent.model_validate(raw)
    except ValidationError as exc:
        raise NotAnEvent(f"not a job event: {exc.errors()[0]['msg']}") from None
    if event.previous is event.status:
        return None
    return _message(job_event_type(event.status), event.at, raw)


def message_message(raw: dict[str, Any]) -> Message:
    """The message of a message event."""
    try:
        event = MessageEvent.model_validate(raw)
    except ValidationError as exc:
        raise NotAnEvent(f"not a message event: {exc.errors()[0]['msg']}") from None
    return _message(message_event_type(event.status), event.at / 1000, raw)


def _message(event_type: str, at: float, raw: dict[str, Any]) -> Message:
    try:
        timestamp = rfc3339(at)
    except (OverflowError, ValueError, OSError):
        raise NotAnEvent(f"not a time: {at}") from None
    wire = WebhookMessage(type=event_type, timestamp=timestamp, data=raw).to_wire()
    return Message(event_type, orjson.dumps(wire))


def rfc3339(at: float) -> str:
    """Unix time as RFC 3339 in UTC, to the millisecond (`2026-01-02T03:04:05.678Z`)."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def webhook_id(subscription_id: str, topic: str, partition: int, offset: int) -> str:
    """The `webhook-id` of the message an event record makes for one endpoint."""
    source = f"{subscription_id}\x00{topic}\x00{partition}\x00{offset}".encode()
    return "msg_" + hashlib.blake2b(source, digest_size=16).hexdigest()
