"""Events the engine emits: one send per recipient, and job lifecycle changes."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from schemas.base import JsonObject, WireModel
from schemas.views import JobStatus


class SendEvent(WireModel):
    """One recipient's send, on `bulk.sends`; consumed by delivery workers.

    `messageId` is deterministic per (job, user): a consumer that sees the
    same id twice can drop the second.
    """

    message_id: str
    job_id: str
    tenant: str
    position: int = Field(description="The user's place in the job's ingestion order.")
    message: JsonObject = Field(
        description=(
            "Every field of the job's definition but `data`: both of Courier's shapes "
            "folded into one (outer fields first, then the nested message's)."
        )
    )
    to: JsonObject = Field(
        description="The user's `to` without its `data`; a legacy `recipient` as `user_id`."
    )
    data: Any = Field(
        description=(
            "The job's data, then the user's `data`, then `to.data`, laid over each other "
            "(objects key by key; anything else replaces what was there): the user wins."
        )
    )
    profile: Any = None
    preferences: Any = None
    recipient: str | None = Field(default=None, description="The user's own, as sent.")
    metadata: JsonObject | None = Field(
        default=None, description="The metadata of the ingest call that added this user."
    )
    extra: JsonObject | None = Field(
        default=None, description="The user's fields that Courier does not define, as sent."
    )


class JobEvent(WireModel):
    """A job's status change, on `bulk.job-events`."""

    job_id: str
    tenant: str
    status: JobStatus
    previous: JobStatus | None = None
    received: int
    enqueued: int
    failures: int
    at: float
    reason: str | None = None
    version: int | None = Field(
        default=None,
        description="The version of the job record the change wrote: each change has its own "
        "(webhooks take their `webhook-id` from it, so a change applied again after a crash "
        "from the same record comes under the same id).",
    )
    # bulkstream's job control, on the jobs that use it:
    canceled: int | None = Field(default=None, description="Users never sent (CANCELED).")
    scheduled_at: str | None = Field(default=None, description="A scheduled run's start.")
    sends_per_second: int | None = Field(default=None, description="The run's rate limit.")
    dry_run: JsonObject | None = Field(
        default=None,
        description="A dry run's outcome (status, routable, unroutable), on the event "
        "that reports it (status stays CREATED).",
    )
