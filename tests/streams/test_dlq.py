"""Telling poison from commands: the reasons given, and the cheap check of large ones."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas.commands import CommandEnvelope
from streams.aggregate.decode import (
    LARGE_COMMAND_BYTES,
    describe,
    parse_command,
    top_level_errors,
)
from streams.errors import PoisonCommand

BIG = "x" * LARGE_COMMAND_BYTES


def _pydantic_says(value: bytes) -> str | None:
    """pydantic's own verdict, described; None if it accepts the command."""
    try:
        CommandEnvelope.model_validate_json(value)
    except ValidationError as exc:
        return describe(exc.errors(include_url=False, include_input=False))
    return None


IDS = {"jobId": "j", "commandId": "c", "tenant": "t"}


def _create(**fields: Any) -> dict[str, Any]:
    message = {"template": "T", "data": {"n": 0, "blob": BIG}}
    return {"kind": "create", **IDS, "createdAt": 1.0, "message": message, **fields}


def _snake_case(command: dict[str, Any]) -> dict[str, Any]:
    spelled = {"jobId": "job_id", "commandId": "command_id", "createdAt": "created_at"}
    return {spelled.get(key, key): value for key, value in command.items()}


USERS = [{"to": {"user_id": f"u{i}"}, "data": {"b": BIG[:1000]}} for i in range(1100)]

VALID = {
    "create": _create(),
    "create spelled in snake_case": _snake_case(_create()),
    "create with a NaN in its data": _create(),
    "ingest": {"kind": "ingest", **IDS, "users": USERS},
}

INVALID = {
    "missing fields and an unknown one": {"kind": "create", "jobId": "j", "pad": BIG},
    "only an unknown field": _create(pad=BIG),
    "ingest without users": {"kind": "ingest", **IDS, "u": BIG},
    "run with a payload": {"kind": "run", **IDS, "x": BIG},
}


@pytest.mark.parametrize("name", VALID)
def test_the_check_of_large_commands_passes_every_command_pydantic_accepts(name: str) -> None:
    value = orjson.dumps(VALID[name])
    if "NaN" in name:  # JSON has no NaN, yet pydantic reads one; so must the check
        value = value.replace(b'"n":0', b'"n":NaN')
    assert len(value) >= LARGE_COMMAND_BYTES
    assert _pydantic_says(value) is None
    assert top_level_errors(value) == []
    assert parse_command(b"j", value).job_id == "j"


@pytest.mark.parametrize("name", INVALID)
def test_the_check_of_large_commands_gives_pydantics_reasons(name: str) -> None:
    value = orjson.dumps(INVALID[name])
    assert len(value) >= LARGE_COMMAND_BYTES
    expected = _pydantic_says(value)
    assert expected is not None
    assert describe(top_level_errors(value)) == expected
    with pytest.raises(PoisonCommand) as caught:
        parse_command(b"j", value)
    assert (caught.value.reason, caught.value.detail) == ("invalid", expected)


def test_large_bad_json_is_undecodable() -> None:
    with pytest.raises(PoisonCommand) as caught:
        parse_command(b"j", b'{"kind": "create", "pad": "' + BIG.encode())
    assert caught.value.reason == "undecodable"


def test_a_poison_command_is_described_by_where_and_what_without_its_input() -> None:
    """The reason names each offending field; the 10 MB input is not repeated in it."""
    value = orjson.dumps({"kind": "create", "jobId": "j", "pad": "x" * 10_000_000})
    with pytest.raises(PoisonCommand) as caught:
        parse_command(b"j", value)
    assert caught.value.reason == "invalid"
    assert caught.value.detail == (
        "create.commandId: Field required; create.tenant: Field required; "
        "create.message: Field required; create.createdAt: Field required; "
        "create.pad: Extra inputs are not permitted"
    )
    many = orjson.dumps({"kind": "ingest", **{f"extra{n}": n for n in range(30)}})
    with pytest.raises(PoisonCommand) as caught:
        parse_command(b"j", many)
    assert caught.value.detail.endswith("; and 14 more errors")


def test_a_command_over_the_limit_is_oversized_without_being_decoded() -> None:
    """Over `max_bytes` it is poison by its size alone (bad JSON or not); at the
    limit it is decoded as any other."""
    with pytest.raises(PoisonCommand) as caught:
        parse_command(b"j", b"{" + b"x" * 100, max_bytes=100)
    assert caught.value.reason == "oversized"
    assert caught.value.detail == (
        "the command is 101 bytes; a worker takes at most 100 (BULKSTREAM_MAX_COMMAND_BYTES)"
    )
    with pytest.raises(PoisonCommand) as caught:
        parse_command(b"j", b"{" + b"x" * 99, max_bytes=100)
    assert caught.value.reason == "undecodable"
