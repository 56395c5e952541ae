"""Webhooks: a tenant's endpoints, and the events they are sent (Standard Webhooks).

Event types: `job.<status>` for each job status change (`job.created`,
`job.scheduled`, `job.processing`, `job.paused`, `job.completed`,
`job.failed` for ERROR, `job.canceled`) and `message.<state>` for each
delivery state a message reaches (`message.sent`, `message.delivered`,
`message.opened`, `message.clicked`, `message.failed`,
`message.undeliverable`). A subscription names types or `job.*`,
`message.*`, `*`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from schemas.base import WireModel
from schemas.delivery import DeliveryStatus
from schemas.views import JobStatus


def job_event_type(status: JobStatus) -> str:
    return "job.failed" if status is JobStatus.ERROR else f"job.{status.value.lower()}"


def message_event_type(status: DeliveryStatus) -> str:
    return f"message.{status.value.lower()}"


EVENT_TYPES: frozenset[str] = frozenset(
    {job_event_type(status) for status in JobStatus}
    | {message_event_type(status) for status in DeliveryStatus}
)
WILDCARDS = frozenset({"*", "job.*", "message.*"})


def matches(subscribed: list[str], event_type: str) -> bool:
    """Whether a subscription's `events` take an event of this type."""
    family = event_type.split(".", 1)[0] + ".*"
    return any(name in ("*", family, event_type) for name in subscribed)


class WebhookCreate(WireModel):
    """`POST /webhooks`'s body."""

    url: str = Field(min_length=1, max_length=2000)
    events: list[str] = Field(min_length=1, max_length=50)

    @field_validator("events")
    @classmethod
    def known_events(cls, events: list[str]) -> list[str]:
        unknown = sorted(set(events) - EVENT_TYPES - WILDCARDS)
        if unknown:
            raise ValueError(f"unknown event types: {', '.join(unknown)}")
        return list(dict.fromkeys(events))


class Webhook(WireModel):
    """A tenant's endpoint, as `POST /webhooks` answers it (with its `secret`)."""

    id: str
    url: str
    events: list[str]
    secret: str = Field(description="`whsec_` + base64 of the signing key (Standard Webhooks).")
    disabled: bool = Field(
        default=False, description="True once the endpoint answered 410 Gone: nothing more is sent."
    )


class WebhookMessage(WireModel):
    """The body of a webhook request."""

    type: str
    timestamp: str = Field(description="When the event happened (RFC 3339, UTC).")
    data: dict[str, Any]
