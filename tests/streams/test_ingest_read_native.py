"""An ingest command read natively (`bulkstream_native.read_ingest`,
native/src/ingest_read.rs) gives what the Python way gives (orjson, `is_bulk_user`,
`identity_of`): the same envelope, the same JSON of each user, byte for byte, and
the same identities; and whatever it cannot vouch for it hands back. Pure, in
memory."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.aggregate.decode import _fast_ingest, parse_command
from streams.errors import PoisonCommand
from streams.native import member
from tests.streams.native import json_values, require_native

require_native(member("read_ingest") is not None)

from bulkstream_native import read_ingest  # noqa: E402 (once require_native let the module run)

IDS = {"commandId": "e273a4a83bf71e12901dae", "tenant": "t", "jobId": "j"}

TEXT = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "u1", "é@x.org", "+15550100", "😀", 'q"uote', "back\\slash", "\x7f"]),
)
JSON = json_values(TEXT)
MEMBERS = st.dictionaries(
    st.sampled_from(["user_id", "email", "phone_number", "data", "locale"]), JSON, max_size=4
)
USERS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "to": st.one_of(MEMBERS, JSON),
            "profile": st.one_of(MEMBERS, JSON),
            "preferences": st.one_of(MEMBERS, st.none(), JSON),
            "recipient": st.one_of(TEXT, JSON),
            "data": JSON,
        },
    ),
    JSON,
)


# What a producer usually sends: no floats, no character orjson escapes.
PLAIN_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=6)
PLAIN = json_values(PLAIN_TEXT, floats=False)
PLAIN_MEMBERS = st.dictionaries(
    st.sampled_from(["user_id", "email", "phone_number", "data"]), PLAIN, max_size=4
)
PLAIN_USERS = st.fixed_dictionaries(
    {},
    optional={
        "to": st.one_of(PLAIN_MEMBERS, st.none()),
        "profile": st.one_of(PLAIN_MEMBERS, st.none()),
        "recipient": st.one_of(PLAIN_TEXT, st.none()),
        "data": PLAIN,
    },
)


def spellings(command: dict[str, Any]) -> list[bytes]:
    """The command as orjson writes it, and as other producers might."""
    return [
        orjson.dumps(command),
        json.dumps(command).encode(),  # spaces after separators, non-ASCII escaped
        json.dumps(command, ensure_ascii=False, indent=1).encode(),
    ]


def same_either_way(value: bytes) -> None:
    native, python = _fast_ingest(value, native=True), _fast_ingest(value, native=False)
    assert native == python
    if native is not None and python is not None:
        assert native.users == python.users
    outcomes: list[object] = []
    for way in (True, False):
        try:
            outcomes.append(parse_command(b"j", value, native=way))
        except PoisonCommand as exc:
            outcomes.append((exc.reason, exc.detail))
    assert outcomes[0] == outcomes[1]


@settings(max_examples=400, deadline=None)
@given(users=st.lists(USERS, max_size=5), metadata=st.one_of(st.none(), MEMBERS))
def test_the_native_reader_gives_what_python_gives(users: list[Any], metadata: Any) -> None:
    command = {"kind": "ingest", **IDS, "users": users}
    if metadata is not None:
        command["metadata"] = metadata
    for value in spellings(command):
        same_either_way(value)


@settings(max_examples=300, deadline=None)
@given(users=st.lists(PLAIN_USERS, max_size=5))
def test_what_producers_usually_send_is_read_natively(users: list[Any]) -> None:
    value = orjson.dumps({"kind": "ingest", **IDS, "users": users})
    assert (b"\\" in value) == (read_ingest(value) is None)  # only an escape is declined
    same_either_way(value)


def test_a_plain_command_is_read_natively_in_orjsons_form() -> None:
    users = [
        {"to": {"user_id": "u1", "email": "u1@example.com"}, "data": {"n": 1, "l": [1, None]}},
        {"profile": {"email": "é@exämple.com"}, "preferences": None},
        {"recipient": "r1", "to": None, "data": {"ok": True, "n": -7}},
        {},
    ]
    for value in spellings({"kind": "ingest", **IDS, "users": users, "metadata": {"m": 1}}):
        if b"\\u" in value:
            continue  # escaped: orjson's way
        read = read_ingest(value)
        assert read is not None
        envelope, sent, identities = read
        assert orjson.loads(envelope) == {"kind": "ingest", **IDS, "metadata": {"m": 1}}
        assert sent == [orjson.dumps(user) for user in users]
        assert identities == ["user:u1", "email:é@exämple.com", "user:r1", None]


@pytest.mark.parametrize(
    "user",
    [
        b'{"to":{"user_id":"a","user_id":"b"}}',  # a repeated key, nested: the last wins
        b'{"data":{"x":1,"y":{"z":1,"z":2}}}',
        b'{"data":1.0}',  # a float: orjson's way of writing it
        b'{"data":1e2}',
        b'{"data":-0}',  # an int that orjson writes as 0
        b'{"to":{"user_id":"a\\u00e9"}}',  # an escape
        b'{"to":"u1@example.com"}',  # refused by BulkUser: pydantic says why
        b'{"recipient":7}',
        b'"u1"',
        b"[]",
    ],
)
def test_what_the_native_reader_cannot_vouch_for_goes_the_python_way(user: bytes) -> None:
    value = b'{"kind":"ingest","commandId":"c","tenant":"t","jobId":"j","users":[' + user + b"]}"
    assert read_ingest(value) is None
    same_either_way(value)


def test_a_repeated_users_key_goes_the_python_way_and_an_escaped_one_is_read() -> None:
    head = b'{"kind":"ingest","commandId":"c","tenant":"t","jobId":"j",'
    repeated = head + b'"users":[{"to":{"user_id":"a"}}],"users":[{}]}'
    assert read_ingest(repeated) is None
    same_either_way(repeated)
    escaped = head + b'"us\\u0065rs":[{"to":{"user_id":"a"}}]}'
    assert read_ingest(escaped) is not None
    same_either_way(escaped)


def test_an_object_of_many_keys_is_checked_for_repeats() -> None:
    keys = ",".join(f'"k{n}":{n}' for n in range(100))
    unique = f'{{"data":{{{keys}}}}}'.encode()
    repeated = f'{{"data":{{{keys},"k50":0}}}}'.encode()
    head = b'{"kind":"ingest","commandId":"c","tenant":"t","jobId":"j","users":['
    assert read_ingest(head + unique + b"]}") is not None
    assert read_ingest(head + repeated + b"]}") is None
    same_either_way(head + repeated + b"]}")
