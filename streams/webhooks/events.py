"""What a record of the event topics becomes: a webhook message (pure).

`bulk.job-events` carries `JobEvent`s (type `job.<status>`, `job.failed` for
ERROR) and `bulk.message-events` `MessageEvent`s (`message.<state>`). The
message's `data` is the event's JSON as it is on the topic; its `timestamp`
is when the event happened (the event's `at`). A job event whose status did
not change (a dry run's report: the job stays CREATED) is no status change
and makes no message.

A message's `webhook-id` is derived from the endpoint and the event's
identity, which is what receivers deduplicate on. Every attempt sends the
same id, and so does an event published again after a crash (a fold or a
command applied again makes the same event at a new offset):

- a message event is `(messageId, status)`: a message reaches each state
  once (states never move back);
- a job event is `(jobId, version, status)`: the job record's version the
  change wrote, one per change (a pause and a resume repeat statuses, never
  versions). A command applied again from the same record makes the same
  version; a running job's completion may not, when its page reports and
  the release ticks (which write the record too) interleave otherwise after
  the crash: that event then comes under a new id;
- a job event without a version (written before job events carried one)
  is identified by its record, `(topic, partition, offset)`.
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
    """A webhook message: its event type, the request body every endpoint is sent, and
    the event's identity (None: the record it came from is its identity)."""

    type: str
    body: bytes
    identity: str | None = None


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
    identity = None
    if event.version is not None:
        identity = f"job\x00{event.job_id}\x00{event.version}\x00{event.status.value}"
    return _message(job_event_type(event.status), event.at, raw, identity)


def message_message(raw: dict[str, Any]) -> Message:
    """The message of a message event."""
    try:
        event = MessageEvent.model_validate(raw)
    except ValidationError as exc:
        raise NotAnEvent(f"not a message event: {exc.errors()[0]['msg']}") from None
    identity = f"message\x00{event.message_id}\x00{event.status.value}"
    return _message(message_event_type(event.status), event.at / 1000, raw, identity)


def _message(event_type: str, at: float, raw: dict[str, Any], identity: str | None) -> Message:
    try:
        timestamp = rfc3339(at)
    except (OverflowError, ValueError, OSError):
        raise NotAnEvent(f"not a time: {at}") from None
    wire = WebhookMessage(type=event_type, timestamp=timestamp, data=raw).to_wire()
    return Message(event_type, orjson.dumps(wire), identity)


def rfc3339(at: float) -> str:
    """Unix time as RFC 3339 in UTC, to the millisecond (`2026-01-02T03:04:05.678Z`)."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def webhook_id(
    subscription_id: str, message: Message, topic: str, partition: int, offset: int
) -> str:
    """The `webhook-id` of a message for one endpoint: of the event's identity, or of
    the record (topic, partition, offset) it came from when it has none."""
    identity = message.identity or f"{topic}\x00{partition}\x00{offset}"
    source = f"{subscription_id}\x00{identity}".encode()
    return "msg_" + hashlib.blake2b(source, digest_size=16).hexdigest()
