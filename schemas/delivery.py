"""Delivery outcomes: what delivery workers report per message, and what the engine
makes of it (message events, the job's `delivery` counts, a message's own view).

The states of a message after its send, and their order. A message's state is
the highest it has been reported in, whatever order the reports came in, so a
report seen twice counts once and a late one never moves a message back:

    SENT < FAILED < UNDELIVERABLE < DELIVERED < OPENED < CLICKED

A failure outranks the send it failed (the provider took it, then gave up);
the provider's final verdict (UNDELIVERABLE) outranks an attempt that failed;
any evidence that the message arrived outranks every failure (a retry that
got through), and engagement outranks delivery.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.base import WireModel


class DeliveryStatus(StrEnum):
    SENT = "SENT"  # a provider accepted the message
    DELIVERED = "DELIVERED"  # it reached the recipient
    OPENED = "OPENED"
    CLICKED = "CLICKED"
    FAILED = "FAILED"  # sending it failed (the delivery worker gave up)
    UNDELIVERABLE = "UNDELIVERABLE"  # the provider's final verdict: it cannot arrive


# Lowest first: a message's state is the highest reported (the order above).
DELIVERY_ORDER: tuple[DeliveryStatus, ...] = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.UNDELIVERABLE,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.OPENED,
    DeliveryStatus.CLICKED,
)
RANK: dict[DeliveryStatus, int] = {status: i for i, status in enumerate(DELIVERY_ORDER)}
# States a retry job takes the users of (with the users the fan-out failed).
FAILED_STATES = frozenset({DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERABLE})

# Largest reason and provider kept; a longer report is dead-lettered, not cut.
MAX_REASON = 1000
MAX_PROVIDER = 100
MAX_AT = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class DeliveryReport(WireModel):
    """One message's outcome, on `bulk.delivery-status` (key = job id)."""

    message_id: str = Field(min_length=1, max_length=200)
    job_id: str = Field(min_length=1, max_length=200)
    status: DeliveryStatus
    at: int = Field(ge=0, le=MAX_AT, description="When it happened: Unix time in milliseconds.")
    reason: str | None = Field(default=None, max_length=MAX_REASON)
    provider: str | None = Field(default=None, max_length=MAX_PROVIDER)
    tenant: str | None = Field(
        default=None,
        max_length=200,
        description="When given, the job's tenant: a report naming another is dead-lettered.",
    )


class MessageEvent(WireModel):
    """A message reached a higher state, on `bulk.message-events` (key = job id): one
    event per state reached (a report that changes nothing emits nothing)."""

    message_id: str
    job_id: str
    tenant: str
    status: DeliveryStatus
    previous: DeliveryStatus | None = None
    at: int = Field(description="The report's time: Unix time in milliseconds.")
    reason: str | None = None
    provider: str | None = None


class UserDelivery(WireModel):
    """A users-page item's `delivery`: the state its message reached."""

    status: DeliveryStatus
    at: int = Field(description="When it reached that state: Unix time in milliseconds.")
    reason: str | None = None
