"""Command events on `bulk.commands` (key = job id) and their results.

A command carries a `commandId` (the unit of idempotency: the same id
delivered twice has one effect), the `tenant` that owns the job and the
`jobId`. `CommandEnvelope` parses any of them by their `kind`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, RootModel, model_validator

from schemas.base import JsonObject, WireModel


class NestedMessage(WireModel):
    """The tutorial's inner `message.message` object: what to send."""

    model_config = ConfigDict(extra="allow")

    template: str | None = None
    content: JsonObject | None = None
    routing: JsonObject | None = None
    channels: JsonObject | None = None
    providers: JsonObject | None = None


# What `_has_something_to_send` checks, said in JSON Schema for producers.
_SOMETHING_TO_SEND: dict[str, Any] = {
    "anyOf": [
        {"required": ["event"], "properties": {"event": {"type": "string", "minLength": 1}}},
        {"required": ["template"], "properties": {"template": {"type": "string", "minLength": 1}}},
        {
            "required": ["content"],
            "properties": {"content": {"type": "object", "minProperties": 1}},
        },
        {
            "required": ["message"],
            "properties": {
                "message": {
                    "type": "object",
                    "anyOf": [
                        {
                            "required": ["template"],
                            "properties": {"template": {"type": "string", "minLength": 1}},
                        },
                        {
                            "required": ["content"],
                            "properties": {"content": {"type": "object", "minProperties": 1}},
                        },
                    ],
                }
            },
        },
    ]
}


class JobMessage(WireModel):
    """A job's message definition, in either shape Courier accepts.

    Nested (tutorial): `{"message": {"template": ...}, "data": ..., "brand": ..., "locale": ...}`.
    Flat (SDKs): `{"event": ..., "template": ..., "content": ..., "data": ..., "override": ...}`.
    """

    model_config = ConfigDict(extra="allow", json_schema_extra=_SOMETHING_TO_SEND)

    message: NestedMessage | None = None
    event: str | None = None
    template: str | None = None
    content: JsonObject | None = None
    data: JsonObject | None = None
    brand: str | None = None
    # A locale name (tutorial) or per-locale overrides (the SDKs' shape).
    locale: str | JsonObject | None = None
    override: JsonObject | None = None
    routing: JsonObject | None = None
    channels: JsonObject | None = None
    providers: JsonObject | None = None

    @model_validator(mode="after")
    def _has_something_to_send(self) -> JobMessage:
        nested = self.message
        if not (
            self.event
            or self.template
            or self.content
            or (nested is not None and (nested.template or nested.content))
        ):
            raise ValueError(
                "message needs one of event, template or content "
                "(or message.template / message.content)"
            )
        return self

    def send_definition(self) -> JsonObject:
        """The definition every send event of the job carries, both shapes folded into one."""
        nested = self.message
        out: JsonObject = {}
        for name in ("event", "brand", "locale", "override"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        for name in ("template", "content", "routing", "channels", "providers"):
            value = getattr(self, name)
            if value is None and nested is not None:
                value = getattr(nested, name)
            if value is not None:
                out[name] = value
        return out


class BulkUser(WireModel):
    """One recipient as ingested; unknown fields are kept and echoed back, except
    `status`, `messageId` and `error`, which a users page writes itself."""

    model_config = ConfigDict(extra="allow")

    to: JsonObject | None = None
    profile: JsonObject | None = None
    preferences: JsonObject | None = None
    recipient: str | None = None
    data: JsonObject | None = None

    def identity(self) -> str | None:
        """The user's identity within a job, used for duplicate detection.

        The first present (non-empty) of: `to.user_id`, `recipient`,
        `profile.email`, `to.email`, `profile.phone_number`, `to.phone_number`.
        Each is namespaced by its kind, so a user id never collides with an email.
        """
        to = self.to or {}
        profile = self.profile or {}
        for kind, value in (
            ("user", to.get("user_id")),
            ("user", self.recipient),
            ("email", profile.get("email")),
            ("email", to.get("email")),
            ("phone", profile.get("phone_number")),
            ("phone", to.get("phone_number")),
        ):
            if isinstance(value, str) and value:
                return f"{kind}:{value}"
        return None


class CommandKind(StrEnum):
    CREATE = "create"  # create a job with its message definition
    INGEST = "ingest"  # add a batch of users to a CREATED job
    RUN = "run"  # start the one-time fan-out of a job


# Ids end up in Kafka keys, RocksDB keys and Redis keys: no control characters.
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class CommandBase(WireModel):
    command_id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)
    tenant: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)
    job_id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)


class CreateJob(CommandBase):
    kind: Literal[CommandKind.CREATE] = CommandKind.CREATE
    message: JobMessage
    created_at: float = Field(description="Unix time the job was created; feeds the messageIds.")


class IngestUsers(CommandBase):
    kind: Literal[CommandKind.INGEST] = CommandKind.INGEST
    users: list[BulkUser]


class RunJob(CommandBase):
    kind: Literal[CommandKind.RUN] = CommandKind.RUN


AnyCommand = CreateJob | IngestUsers | RunJob
Command = Annotated[AnyCommand, Field(discriminator="kind")]


class CommandEnvelope(RootModel[Command]):
    """Parses any command value from `bulk.commands` by its `kind`."""


class ErrorType(StrEnum):
    NOT_FOUND = "not_found"  # the job does not exist (for this tenant)
    ALREADY_RUN = "already_run"  # ingest or run on a job that already ran
    CONFLICT = "conflict"  # a different create for an existing job id
    INVALID = "invalid"  # the command could not be applied as sent


class IngestError(WireModel):
    """A rejected user and why, as Courier answers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error: str
    user: Any


class CommandResult(WireModel):
    """The outcome of one command, on `bulk.command-results` and in Redis."""

    command_id: str
    tenant: str
    job_id: str
    kind: CommandKind
    ok: bool
    error_type: ErrorType | None = None
    message: str | None = None
    errors: list[IngestError] | None = None
    total: int | None = None
