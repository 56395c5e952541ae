"""What the Redis views hold, as `GET /bulk/{id}` and `GET /bulk/{id}/users` answer it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from schemas.base import JsonObject, WireModel


class JobStatus(StrEnum):
    CREATED = "CREATED"  # created; users may be ingested; not run yet
    PROCESSING = "PROCESSING"  # run accepted; the fan-out is emitting sends
    COMPLETED = "COMPLETED"  # every received user is enqueued or failed
    ERROR = "ERROR"  # the job failed as a whole (see the lifecycle event's reason)


class UserStatus(StrEnum):
    PENDING = "PENDING"  # ingested, no send event yet
    ENQUEUED = "ENQUEUED"  # its send event is committed on the sends topic
    ERROR = "ERROR"  # no send event could be made (see `error`)


class JobView(WireModel):
    definition: JsonObject
    enqueued: int
    failures: int
    received: int
    status: JobStatus


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
