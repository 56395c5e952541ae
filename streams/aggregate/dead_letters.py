"""Poison commands: telling them from commands (`parse_command`), and the
dead-letter queue they go to.

A command that is over the size limit (`BULKSTREAM_MAX_COMMAND_BYTES`, told
by its length alone), or cannot be decoded or validated, is copied whole to
`bulk.commands.dlq`, with why (`x-bulkstream-reason`, `x-bulkstream-error`)
and where it came from (`x-bulkstream-source`).

The copy goes through librdkafka, not faust's aiokafka producer: poison can
be large (up to the topic's 16 MB limit), and aiokafka would copy and
checksum it in Python on the event loop that applies the good commands.
librdkafka compresses it (lz4, on its own thread), which spares the broker
most of the cost of a large write (docs/architecture.md has the figures).
The producer is opened when the worker starts (`open`), so the first poison
command does not wait for its connection.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pydantic_core
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from schemas.base import first_inexact_number
from schemas.commands import (
    AnyCommand,
    CommandEnvelope,
    CommandKind,
    CreateJob,
    IngestUsers,
    RunJob,
)
from streams import metrics
from streams.aggregate.pipeline import Pipeline
from streams.errors import PoisonCommand
from streams.kafka.config import producer_config
from streams.kafka.producer import AsyncProducer
from streams.kafka.topics import MAX_DEAD_LETTER_BYTES, MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

# Header values are for people and tools reading the DLQ, not a second copy.
MAX_ERROR_HEADER = 4000
MAX_ERRORS_DESCRIBED = 20
# From this size on, a command's top-level fields are checked before pydantic
# sees it: pydantic gives each missing field an error holding the whole input,
# converted anew each time, so rejecting a large invalid command costs it many
# times what accepting a valid one does.
LARGE_COMMAND_BYTES = 1024 * 1024
# A number that may not fit the wire: a long run of digits, or a large exponent.
_SUSPECT_NUMBER = re.compile(rb"\d{19}|[eE][+-]?\d{3}")
MODELS: dict[str, type[BaseModel]] = {
    CommandKind.CREATE.value: CreateJob,
    CommandKind.INGEST.value: IngestUsers,
    CommandKind.RUN.value: RunJob,
}


def parse_command(
    key: bytes | None, value: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES
) -> AnyCommand:
    """Decode and validate a command of at most `max_bytes`; raise PoisonCommand
    with the reason otherwise."""
    if value is None:
        raise PoisonCommand("empty", "the message has no value")
    if len(value) > max_bytes:
        raise PoisonCommand(
            "oversized",
            f"the command is {len(value):,} bytes; a worker takes at most {max_bytes:,} "
            "(BULKSTREAM_MAX_COMMAND_BYTES)",
        )
    if len(value) >= LARGE_COMMAND_BYTES:
        errors = top_level_errors(value)
        if errors:
            raise PoisonCommand(_reason(errors), describe(errors))
    try:
        command = CommandEnvelope.model_validate_json(value).root
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise PoisonCommand(_reason(errors), describe(errors)) from exc
    if key is None or key.decode(errors="replace") != command.job_id:
        raise PoisonCommand("wrong-key", "the message key must be the command's jobId")
    if _SUSPECT_NUMBER.search(value):
        where = first_inexact_number(command.to_wire())
        if where is not None:
            raise PoisonCommand(
                "invalid", f"{where}: a number beyond 64-bit integers or finite doubles"
            )
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


class DeadLetters:
    def __init__(self, pipeline: Pipeline) -> None:
        self.settings = pipeline.settings
        self.deliveries = pipeline.app.deliveries
        self._producer: AsyncProducer | None = None

    async def send(self, message: Any, exc: PoisonCommand) -> None:
        """Copy a poison message to the DLQ; acknowledged before its offset is committed."""
        metrics.COMMANDS.labels("unknown", "dlq").inc()
        log.warning(
            "command to DLQ: %s (%s/%d@%d)",
            exc.reason,
            message.topic,
            message.partition,
            message.offset,
        )
        headers: dict[str, str | bytes | None] = {
            "x-bulkstream-reason": exc.reason.encode(),
            "x-bulkstream-error": exc.detail[:MAX_ERROR_HEADER].encode(),
            "x-bulkstream-source": f"{message.topic}/{message.partition}/{message.offset}".encode(),
        }
        future = await self.open().send(
            self.settings.topic_commands_dlq, message.key, message.value, headers
        )
        self.deliveries.track(future)

    def open(self) -> AsyncProducer:
        """The DLQ's producer, made once. The worker makes it when it starts: made
        for the first poison command instead, its connection and idempotent
        producer id held up the commit of everything after that command."""
        if self._producer is None:
            config = producer_config(self.settings) | {
                "message.max.bytes": MAX_DEAD_LETTER_BYTES,
                "compression.type": "lz4",
            }
            self._producer = AsyncProducer(config, name="dlq")
            log.info("dead letters go to %s", self.settings.topic_commands_dlq)
        return self._producer

    def close(self) -> None:
        if self._producer is not None:
            left = self._producer.close(10)
            if left:
                log.warning("%d dead letters undelivered at shutdown (sent again on restart)", left)
