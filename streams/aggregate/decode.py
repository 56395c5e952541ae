"""Telling commands from poison: a `bulk.commands` record decoded and validated
(`parse_command`), or the reason it goes to the dead-letter queue
(`PoisonCommand`, sent there by `streams.aggregate.dead_letters`).

An ingest command is read the fast way when it can be: natively
(`bulkstream_native.read_ingest`, with `Settings.native`), which makes no
Python object a user but its JSON and its identity, or else by orjson, each
user checked by `is_bulk_user`, which accepts what `BulkUser` accepts, without
building a model per user; either way its envelope is validated by pydantic
without the users (`IngestHead`). The command then reaches the rules as an
`Ingest`: the envelope, each user's JSON as stored (orjson's form, made once
here), and each user's identity (`streams.ids.identity_reader`); each user as
sent is decoded from its JSON only if asked for (a duplicate's echo). The
native reader hands back to orjson whatever it cannot vouch for orjson would
write the same (tests/streams/test_ingest_read_native.py). Anything the fast
way cannot vouch for (a user `BulkUser` would refuse, a number that may not
fit the wire, JSON that orjson refuses or cannot write back) goes the pydantic
way, which gives the same `Ingest` or the reason it is poison, as before: the
fast way never accepts what pydantic refuses, and never refuses on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import orjson
import pydantic_core
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from schemas.base import JsonObject, first_inexact_number
from schemas.commands import (
    CommandEnvelope,
    CommandKind,
    ControlCommand,
    CreateJob,
    IngestHead,
    IngestUsers,
    RetryJob,
    RunJob,
    is_bulk_user,
)
from streams.errors import PoisonCommand
from streams.ids import Identities, identities_of, identity_reader
from streams.kafka.topics import MAX_MESSAGE_BYTES
from streams.native import member

# A poison command's reason names this many errors at most.
MAX_ERRORS_DESCRIBED = 20
# From this size on, a command's top-level fields are checked before pydantic
# sees it: pydantic gives each missing field an error holding the whole input,
# converted anew each time, so rejecting a large invalid command costs it many
# times what accepting a valid one does.
LARGE_COMMAND_BYTES = 1024 * 1024
# A number that may not fit the wire: a long run of digits, or a large exponent,
# where JSON has numbers (after `:`, `,` or `[`), not inside ids or hex strings.
_SUSPECT_NUMBER = re.compile(rb"[:,\[]\s*-?(?:\d{19}|\d+(?:\.\d+)?[eE][+-]?\d{3})")
# The fast way's own test, ten times cheaper: 19 digits in a row anywhere (orjson
# reads an integer beyond 64 bits as a float, silently; an infinite number it refuses).
_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"0" * 9)
_NINETEEN_DIGITS = b"0" * 19
# bulkstream_native's reader of ingest commands (native/src/ingest_read.rs), if installed.
_READ_INGEST: Callable[[bytes], tuple[bytes, list[bytes], list[str | None]] | None] | None = member(
    "read_ingest"
)
MODELS: dict[str, type[BaseModel]] = {
    CommandKind.CREATE.value: CreateJob,
    CommandKind.INGEST.value: IngestUsers,
    CommandKind.RUN.value: RunJob,
}


@dataclass(frozen=True)
class Ingest:
    """An ingest command as the rules apply it: its envelope, each user's JSON as the
    stored batch and the users view hold it, and each user's identity
    (`schemas.commands.identity_of`)."""

    head: IngestHead
    sent: list[bytes]
    identities: list[str | None]

    @cached_property
    def users(self) -> list[JsonObject]:
        """Each user as sent, decoded when first asked for (the usual ingest never is)."""
        return [orjson.loads(wire) for wire in self.sent]

    @property
    def job_id(self) -> str:
        return self.head.job_id

    @property
    def kind(self) -> CommandKind:
        return self.head.kind

    @classmethod
    def of(cls, command: IngestUsers, identities: Identities = identities_of) -> Ingest:
        head = IngestHead.model_construct(
            **{name: getattr(command, name) for name in IngestHead.model_fields}
        )
        users = [user.as_sent() for user in command.users]
        return cls(head, [orjson.dumps(user) for user in users], identities(users))


# What the aggregate applies: every command, an ingest read as `Ingest`.
Applied = CreateJob | Ingest | RunJob | RetryJob | ControlCommand


def parse_command(
    key: bytes | None, value: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES, native: bool = False
) -> Applied:
    """Decode and validate a command of at most `max_bytes`; raise PoisonCommand
    with the reason otherwise. `native`: with `bulkstream_native` where installed
    (`Settings.native`), the same answers."""
    if value is None:
        raise PoisonCommand("empty", "the message has no value")
    if len(value) > max_bytes:
        raise PoisonCommand(
            "oversized",
            f"the command is {len(value):,} bytes; a worker takes at most {max_bytes:,} "
            "(BULKSTREAM_MAX_COMMAND_BYTES)",
        )
    command: Applied | None = _fast_ingest(value, native)
    if command is None:
        command = _validated(value, identity_reader(native))
    if key is None or key.decode(errors="replace") != command.job_id:
        raise PoisonCommand("wrong-key", "the message key must be the command's jobId")
    return command


def _fast_ingest(value: bytes, native: bool = False) -> Ingest | None:
    """The ingest command in `value`, read without a model per user (`native`: without
    a Python object a user, where it can); None when it is not one, or not one this
    way can vouch for (`_validated` then decides)."""
    if b'"ingest"' not in value or _NINETEEN_DIGITS in value.translate(_DIGITS_AS_ZEROS):
        return None
    read = _READ_INGEST(value) if native and _READ_INGEST is not None else None
    if read is not None:
        envelope, sent, identities = read
        try:
            return Ingest(IngestHead.model_validate(orjson.loads(envelope)), sent, identities)
        except ValidationError:
            return None
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(decoded) is not dict or decoded.get("kind") != CommandKind.INGEST.value:
        return None
    users = decoded.pop("users", None)
    if type(users) is not list or not all(map(is_bulk_user, users)):
        return None
    try:
        head = IngestHead.model_validate(decoded)
        sent = [orjson.dumps(user) for user in users]
    except (ValidationError, orjson.JSONEncodeError):
        return None
    return Ingest(head, sent, identity_reader(native)(users))


def _validated(value: bytes, identities: Identities = identities_of) -> Applied:
    """The command pydantic makes of `value` (a model per user), or why it is poison."""
    if len(value) >= LARGE_COMMAND_BYTES:
        errors = top_level_errors(value)
        if errors:
            raise PoisonCommand(_reason(errors), describe(errors))
    try:
        command = CommandEnvelope.model_validate_json(value).root
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise PoisonCommand(_reason(errors), describe(errors)) from exc
    if _SUSPECT_NUMBER.search(value):
        where = first_inexact_number(command.to_wire())
        if where is not None:
            raise PoisonCommand(
                "invalid", f"{where}: a number beyond 64-bit integers or finite doubles"
            )
    if isinstance(command, IngestUsers):
        try:
            return Ingest.of(command, identities)
        except orjson.JSONEncodeError as exc:
            raise PoisonCommand("invalid", f"users: {exc}") from exc
    return command


def _reason(errors: list[ErrorDetails]) -> str:
    return "undecodable" if errors[0]["type"] == "json_invalid" else "invalid"


def top_level_errors(value: bytes) -> list[ErrorDetails]:
    """The errors pydantic would give for the command's top-level fields (missing
    or unknown), found cheaply; none means pydantic has to look at it whole."""
    try:
        data = pydantic_core.from_json(value)
    except ValueError as exc:
        return [_error("json_invalid", (), f"Invalid JSON: {exc}")]
    kind = data.get("kind") if isinstance(data, dict) else None
    if not isinstance(kind, str) or kind not in MODELS:
        return []  # not an object, or no known kind: pydantic says so cheaply
    model = MODELS[kind]
    errors: list[ErrorDetails] = []
    known: set[str] = set()
    for name, info in model.model_fields.items():
        alias = info.alias or name
        known |= {name, alias}
        if info.is_required() and alias not in data and name not in data:
            errors.append(_error("missing", (kind, alias), "Field required"))
    for field in data:
        if field not in known:
            errors.append(
                _error("extra_forbidden", (kind, field), "Extra inputs are not permitted")
            )
    return errors


def _error(kind: str, loc: tuple[str, ...], msg: str) -> ErrorDetails:
    return {"type": kind, "loc": loc, "msg": msg, "input": None}


def describe(errors: list[ErrorDetails]) -> str:
    """What was wrong with a command, one `where: what` per error, without its input.

    `str(ValidationError)` repeats each offending input, which for a 10 MB value
    costs more CPU than parsing it, and would end up in a header anyway cut short."""
    parts = []
    for error in errors[:MAX_ERRORS_DESCRIBED]:
        where = ".".join(str(part) for part in error["loc"]) or "command"
        parts.append(f"{where}: {error['msg']}")
    if len(errors) > MAX_ERRORS_DESCRIBED:
        parts.append(f"and {len(errors) - MAX_ERRORS_DESCRIBED} more errors")
    return "; ".join(parts)
