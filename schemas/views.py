"""What the Redis views hold, as `GET /bulk/{id}` and `GET /bulk/{id}/users` answer it."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from schemas.base import JsonObject, WireModel
from schemas.delivery import UserDelivery


class JobStatus(StrEnum):
    CREATED = "CREATED"  # created; users may be ingested; not run yet
    PROCESSING = "PROCESSING"  # run accepted; the fan-out is emitting sends
    COMPLETED = "COMPLETED"  # every received user is enqueued or failed
    ERROR = "ERROR"  # the job failed as a whole (see the lifecycle event's reason)
    # Only on jobs that use bulkstream's job control (never on a Courier-only client's):
    SCHEDULED = "SCHEDULED"  # run accepted for a later time (`scheduledAt`)
    PAUSED = "PAUSED"  # paused: no send of the job is committed until it is resumed
    CANCELED = "CANCELED"  # canceled: counts are final; `canceled` users were never sent


# Statuses a job never leaves.
FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.CANCELED})


class UserStatus(StrEnum):
    PENDING = "PENDING"  # ingested, no send event yet
    ENQUEUED = "ENQUEUED"  # its send event is committed on the sends topic
    ERROR = "ERROR"  # no send event could be made (see `error`)
    CANCELED = "CANCELED"  # its job was canceled before its send was made (never sent)


class DryRun(WireModel):
    """What a dry run found: the job run as it would be, without one send written."""

    status: Literal["COMPLETED", "ERROR"]
    routable: int = Field(description="Users a run would send to.")
    unroutable: int = Field(description="Users a run would fail (no routable address).")
    sample: list[JsonObject] = Field(
        description=(
            "Up to 10 send events of the first routable users, exactly as the run would "
            "build them, but with `messageId` null: a dry run burns no message id."
        )
    )
    reason: str | None = Field(default=None, description="Why the dry run failed (ERROR).")


class JobView(WireModel):
    """`GET /bulk/{id}`'s `job`. Courier's five fields always; bulkstream's own only on
    jobs that use them, so a Courier-only client never sees them."""

    definition: JsonObject
    enqueued: int
    failures: int
    received: int
    status: JobStatus
    canceled: int | None = Field(
        default=None,
        description="Users never sent because the job was canceled (CANCELED jobs only): "
        "received = enqueued + failures + canceled.",
    )
    scheduled_at: str | None = Field(
        default=None, description="When a scheduled run starts (RFC 3339, as sent)."
    )
    sends_per_second: int | None = Field(
        default=None, description="The run's send-rate limit, over all workers together."
    )
    dry_run: DryRun | None = None
    # Delivery outcomes, on jobs whose messages were reported on:
    delivery: dict[str, int] | None = Field(
        default=None,
        description="Messages per delivery state (SENT, DELIVERED, OPENED, CLICKED, FAILED, "
        "UNDELIVERABLE): each message counted once, in the highest state reported.",
    )
    parent_job_id: str | None = Field(
        default=None, description="The job this one retries the failed users of."
    )


class UserView(WireModel):
    """A user as sent, plus its recipient and status; extra fields are the user's own."""

    model_config = ConfigDict(extra="allow")

    recipient: str | None = Field(
        default=None,
        description="The user's own `recipient`, else the identity derived from it.",
    )
    status: UserStatus
    message_id: str | None = None
    error: str | None = None
    delivery: UserDelivery | None = Field(
        default=None, description="Its message's delivery state, once reported on."
    )
