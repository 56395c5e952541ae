"""Reading ingest commands the fast way (orjson, `is_bulk_user`) gives what pydantic's
way gives, and declines whatever it cannot vouch for. Pure, in memory."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas.commands import BulkUser, IngestUsers, is_bulk_user
from streams.aggregate.decode import Ingest, _fast_ingest, _validated, parse_command
from streams.errors import PoisonCommand

IDS = {"commandId": "e273a4a83bf71e12901dae", "tenant": "t", "jobId": "j"}

USERS: list[Any] = [
    {"to": {"user_id": "u1", "email": "u1@example.com"}, "data": {"n": 1}},
    {"to": {"email": "é@exämple.com", "data": {"x": [1, 2.5, None, True]}}},
    {"recipient": "r1", "profile": {"phone_number": "+15550000"}, "preferences": {}},
    {"to": None, "profile": None, "preferences": None, "recipient": None, "data": None},
    {"data": "any JSON", "status": "kept", "messageId": "m", "extra": {"deep": [[{}]]}},
    {"data": [1, -0.0, 1e-7, 1.5e30, 12345678901234567, -922337203685477580]},
    {"to": {"user_id": 'quote " backslash \\ tab \t nl \n ctl \u0001 emoji \U0001f600'}},
    {},
    {"to": {"tenant_id": "t", "list_id": "l", "locale": "fr"}, "data": {"a": {"b": {"c": 1}}}},
]
NOT_USERS: list[Any] = [
    "u1",
    1,
    None,
    [],
    {"to": "u1@example.com"},
    {"to": []},
    {"profile": "p"},
    {"preferences": 1},
    {"recipient": 1},
    {"recipient": {"id": "r"}},
    {"recipient": True},
]


def _bulk_user_accepts(value: Any) -> bool:
    try:
        BulkUser.model_validate_json(orjson.dumps(value))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("value", USERS + NOT_USERS)
def test_is_bulk_user_accepts_what_the_model_accepts(value: Any) -> None:
    assert is_bulk_user(value) == _bulk_user_accepts(value)


def _command(users: list[Any], **extra: Any) -> bytes:
    return orjson.dumps({"kind": "ingest", **IDS, "users": users, **extra})


@pytest.mark.parametrize("extra", [{}, {"metadata": {"campaign": "c", "n": 2}}])
def test_the_fast_way_reads_what_pydantic_reads(extra: dict[str, Any]) -> None:
    value = _command(USERS, **extra)
    fast = _fast_ingest(value)
    assert fast is not None, "a plain ingest command is read the fast way"
    slow = _validated(value)
    assert isinstance(slow, Ingest)
    assert fast.head == slow.head
    assert fast.users == slow.users
    assert fast.sent == slow.sent
    assert [orjson.loads(wire) for wire in fast.sent] == USERS
    assert parse_command(b"j", value) == fast


def test_a_client_spelling_is_stored_in_orjsons_form() -> None:
    """Whitespace, escapes and key order as a producer wrote them: the stored JSON is
    orjson's, the same either way."""
    value = (
        b'{ "kind" : "ingest", "commandId": "c", "tenant": "t", "jobId": "j",\n'
        b'  "users": [ {"to": {"email": "\\u00e9@x.com", "user_id": "u\\/1"}, "data": 1.0} ] }'
    )
    fast = _fast_ingest(value)
    assert fast is not None
    assert fast.sent == [b'{"to":{"email":"\xc3\xa9@x.com","user_id":"u/1"},"data":1.0}']
    slow = _validated(value)
    assert isinstance(slow, Ingest)
    assert slow.sent == fast.sent


@pytest.mark.parametrize(
    "value",
    [
        _command([{"to": "u1@example.com"}]),  # BulkUser refuses it: pydantic says why
        _command([{"data": {"n": 1}}]).replace(b'"n":1', b'"n":123456789012345678901234'),
        _command([{"data": {"n": 1}}]).replace(b'"n":1', b'"n":1e400'),  # infinite
        _command([{"data": {"n": 1}}]).replace(b'"n":1', b'"n":NaN'),  # not JSON
        _command([{"to": {"user_id": "u"}}], pad=1),  # an unknown top-level field
        _command([]).replace(b'"jobId":"j"', b'"jobId":""'),  # an empty id
        orjson.dumps({"kind": "ingest", **IDS}),  # no users
        orjson.dumps({"kind": "ingest", **IDS, "users": {"a": {}}}),
    ],
)
def test_the_fast_way_declines_what_it_cannot_vouch_for(value: bytes) -> None:
    assert _fast_ingest(value) is None


@pytest.mark.parametrize(
    ("users", "reason"),
    [
        ([{"to": "u1@example.com"}], "ingest.users.0.to: Input should be an object"),
        ([{"recipient": 7}], "ingest.users.0.recipient: Input should be a valid string"),
        (
            [{"data": {"n": "BIG"}}],
            "users.0.data.n: a number beyond 64-bit integers or finite doubles",
        ),
    ],
)
def test_a_user_refused_is_poison_with_pydantics_reason(users: list[Any], reason: str) -> None:
    value = _command(users).replace(b'"BIG"', b"123456789012345678901234")
    with pytest.raises(PoisonCommand) as caught:
        parse_command(b"j", value)
    assert caught.value.reason == "invalid"
    assert caught.value.detail.startswith(reason)


def test_a_hex_id_does_not_send_the_command_the_slow_way() -> None:
    """An id like `…e273…` once looked like a large exponent to the number check and
    sent a third of the bench's commands through it."""
    value = _command([{"to": {"user_id": "3e999"}}])
    assert _fast_ingest(value) is not None
    assert IngestUsers.model_validate_json(value).users[0].identity() == "user:3e999"
