"""Command events on `bulk.commands` (key = job id) and their results.

A command carries a `commandId` (the unit of idempotency: the same id
delivered twice has one effect), the `tenant` that owns the job and the
`jobId`. `CommandEnvelope` parses any of them by their `kind`.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, RootModel, field_validator, model_validator

from schemas.base import AsSent, JsonObject, WireModel


class NestedMessage(WireModel):
    """The tutorial's inner `message.message` object: what to send (a Courier message:
    `template` or `content`, `brand_id`, `data`, `routing`, `channels`, `providers`,
    `metadata`, `to`, `timeout`, `delay`, `expiry`, `context`, `preferences`, ...)."""

    model_config = ConfigDict(extra="allow")

    template: str | None = None
    content: JsonObject | None = None
    data: JsonObject | None = None
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


class JobMessage(AsSent):
    """A job's message definition, in either shape Courier accepts; kept as sent.

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
        """What every send event of the job carries as `message`: every field the client
        sent but `data`, both shapes folded into one object.

        The outer fields come first; the nested `message.message` fields fill in
        what the outer level leaves out (or sets to null). `data` goes to the
        send's `data` instead (`global_data`)."""
        sent = self.as_sent()
        nested = sent.get("message")
        out: JsonObject = {}
        for source, skip in ((sent, ("message", "data")), (nested, ("data",))):
            if not isinstance(source, dict):
                continue
            for name, value in source.items():
                if name not in skip and out.get(name) is None:
                    out[name] = value
        return out

    def global_data(self) -> JsonObject:
        """The job's data every user's data is laid over: the nested message's `data`,
        overlaid key by key by the outer `data` (the bulk job's global data)."""
        out: JsonObject = {}
        if self.message is not None and self.message.data:
            out.update(self.message.data)
        if self.data:
            out.update(self.data)
        return out


def courier_definition(sent: JsonObject) -> JsonObject:
    """A definition as `GET /bulk/{id}` shows it: as sent, with an `event` added when
    the client sent no string one (Courier's SDKs require it): the template's id, as
    Courier's own tutorial shows it, or "" for a message of inline content only."""
    if isinstance(sent.get("event"), str):
        return sent
    nested = sent.get("message")
    template = sent.get("template")
    if not isinstance(template, str) and isinstance(nested, dict):
        template = nested.get("template")
    return {**sent, "event": template if isinstance(template, str) else ""}


class BulkUser(AsSent):
    """One recipient as ingested, kept as sent: unknown fields are echoed back, except
    `status`, `messageId` and `error`, which a users page writes itself.

    Every field is optional, as in Courier: a user without an address is
    accepted, and fails in the fan-out with the reason. `data` may be any JSON."""

    model_config = ConfigDict(extra="allow")

    to: JsonObject | None = None
    profile: JsonObject | None = None
    preferences: JsonObject | None = None
    recipient: str | None = None
    data: Any = None

    def identity(self) -> str | None:
        """The user's identity within a job (`identity_of`)."""
        return identity_of(self.as_sent())


_USER_OBJECTS = ("to", "profile", "preferences")


def is_bulk_user(value: Any) -> bool:
    """Whether `BulkUser` accepts this decoded JSON, said without building the model: an
    object whose `to`, `profile` and `preferences` are objects or null and whose
    `recipient` is a string or null (`tests/schemas/test_commands.py` keeps the two
    in step)."""
    if type(value) is not dict:
        return False
    for name in _USER_OBJECTS:
        member = value.get(name)
        if member is not None and type(member) is not dict:
            return False
    recipient = value.get("recipient")
    return recipient is None or type(recipient) is str


def identity_of(user: JsonObject) -> str | None:
    """A user's identity within a job, used for duplicate detection and its messageId.

    The first present (non-empty string) of: `to.user_id`, `recipient`,
    `profile.email`, `to.email`, `profile.phone_number`, `to.phone_number`.
    Each is namespaced by its kind, so a user id never collides with an email.
    Strings are compared as sent, byte for byte (no case folding, no Unicode
    normalisation). None when the user has none of them.
    """
    to = user.get("to")
    profile = user.get("profile")
    to = to if isinstance(to, dict) else {}
    profile = profile if isinstance(profile, dict) else {}
    for kind, value in (
        ("user", to.get("user_id")),
        ("user", user.get("recipient")),
        ("email", profile.get("email")),
        ("email", to.get("email")),
        ("phone", profile.get("phone_number")),
        ("phone", to.get("phone_number")),
    ):
        if isinstance(value, str) and value:
            return f"{kind}:{value}"
    return None


def echo(user: JsonObject, identity: str | None) -> JsonObject:
    """A user as the API shows it back (users page, duplicate errors): as sent, with
    `recipient` added when the user sent none, holding the identity the engine derived
    (`to.user_id`, email or phone number), as Courier's users page shows it."""
    if "recipient" in user or not identity:
        return user
    return {"recipient": identity.split(":", 1)[1], **user}


class CommandKind(StrEnum):
    CREATE = "create"  # create a job with its message definition
    INGEST = "ingest"  # add a batch of users to a CREATED job
    RUN = "run"  # start the one-time fan-out of a job (or a dry run of it)
    CANCEL = "cancel"  # stop a job for good: the users not sent yet never are
    PAUSE = "pause"  # hold a running job: no send is committed until it is resumed
    RESUME = "resume"  # carry a paused job on
    RETRY = "retry"  # a new job of the users whose delivery failed (or the fan-out failed)


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
    parent_job_id: str | None = Field(
        default=None,
        max_length=200,
        pattern=ID_PATTERN,
        description="The job whose failed users this one retries (a `retry` makes it).",
    )


class IngestHead(CommandBase):
    """An ingest command but its users: what the aggregate validates with pydantic when it
    reads the users itself (`streams.aggregate.decode`)."""

    kind: Literal[CommandKind.INGEST] = CommandKind.INGEST
    metadata: JsonObject | None = Field(
        default=None,
        description="The ingest call's metadata; every send of these users carries it.",
    )


class IngestUsers(IngestHead):
    users: list[BulkUser]


def rfc3339(text: str) -> datetime:
    """A time as RFC 3339 has it: a date, a time and an offset (`Z` or `+hh:mm`)."""
    if not _RFC3339.fullmatch(text):
        raise ValueError("must be an RFC 3339 time with an offset, like 2026-12-01T17:00:00Z")
    try:
        return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise ValueError(f"no such date or time: {text}") from None


RFC3339_PATTERN = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d{1,6})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_RFC3339 = re.compile(RFC3339_PATTERN)


# A dry run goes alone: said in JSON Schema for producers and the OpenAPI document.
_DRY_RUN_ALONE: dict[str, Any] = {
    "not": {
        "required": ["dryRun"],
        "properties": {"dryRun": {"const": True}},
        "anyOf": [{"required": ["scheduledAt"]}, {"required": ["sendsPerSecond"]}],
    }
}


class RunOptions(WireModel):
    """What `POST /bulk/{id}/run` may carry as its body (all optional, bulkstream's own)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_DRY_RUN_ALONE)

    scheduled_at: str | None = Field(
        default=None,
        description="Start the run at this time (RFC 3339); a time past runs at once.",
        json_schema_extra={"format": "date-time", "pattern": RFC3339_PATTERN},
    )
    sends_per_second: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="At most this many sends per second, over all workers together.",
    )
    dry_run: bool = Field(
        default=False,
        strict=True,
        description="Resolve everything a run would, write no send; the job stays CREATED.",
    )

    @field_validator("sends_per_second", mode="before")
    @classmethod
    def _a_json_integer(cls, value: Any) -> Any:
        """An integer as JSON has it (10 or 10.0), never a string or a boolean."""
        if isinstance(value, str | bool):
            raise ValueError("must be an integer")
        return value

    @field_validator("scheduled_at")
    @classmethod
    def _rfc3339(cls, value: str | None) -> str | None:
        if value is not None:
            rfc3339(value)
        return value

    @model_validator(mode="after")
    def _dry_run_alone(self) -> RunOptions:
        if self.dry_run and {"scheduled_at", "sends_per_second"} & self.model_fields_set:
            raise ValueError("dryRun takes no scheduledAt or sendsPerSecond")
        return self

    def start_time(self) -> float | None:
        """The scheduled start as a Unix time, or None."""
        return None if self.scheduled_at is None else rfc3339(self.scheduled_at).timestamp()


class RunJob(CommandBase, RunOptions):
    kind: Literal[CommandKind.RUN] = CommandKind.RUN


class CancelJob(CommandBase):
    kind: Literal[CommandKind.CANCEL] = CommandKind.CANCEL


class PauseJob(CommandBase):
    kind: Literal[CommandKind.PAUSE] = CommandKind.PAUSE


class ResumeJob(CommandBase):
    kind: Literal[CommandKind.RESUME] = CommandKind.RESUME


class RetryJob(CommandBase):
    """Make `newJobId`: the job's definition, holding exactly its users whose delivery
    ended FAILED or UNDELIVERABLE, or whom the fan-out failed. The job must be finished."""

    kind: Literal[CommandKind.RETRY] = CommandKind.RETRY
    new_job_id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)
    created_at: float = Field(description="Unix time the new job is created.")


# The commands that steer a job once it exists (answered once they have settled).
ControlCommand = CancelJob | PauseJob | ResumeJob
AnyCommand = CreateJob | IngestUsers | RunJob | CancelJob | PauseJob | ResumeJob | RetryJob
Command = Annotated[AnyCommand, Field(discriminator="kind")]


class CommandEnvelope(RootModel[Command]):
    """Parses any command value from `bulk.commands` by its `kind`."""


class ErrorType(StrEnum):
    NOT_FOUND = "not_found"  # the job does not exist (for this tenant)
    ALREADY_RUN = "already_run"  # ingest or run on a job that already ran
    NOT_ALLOWED = "not_allowed"  # a control command the job's status does not allow
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
