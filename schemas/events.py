"""Events the engine emits: one send per recipient, and job lifecycle changes."""

from __future__ import annotations

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
    message: JsonObject = Field(description="The job's definition: template/event/content, ...")
    to: JsonObject
    profile: JsonObject | None = None
    preferences: JsonObject | None = None
    data: JsonObject = Field(description="Job data overlaid by the user's data (user wins).")


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
