"""Pure logic of the fan-out: data merge, routing, message ids."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.ids import (
    IDENTITY_IDS,
    POSITION_IDS,
    message_digest,
    message_id,
    new_job_id,
    position_of,
    positional_message_id,
)
from streams.sends import PageSends, build_send, merged_data, send_to, unroutable_reason


def test_user_data_wins_key_by_key_and_nested_objects_are_replaced_whole() -> None:
    merged = merged_data(
        {"a": 1, "b": 2, "nested": {"x": 1, "y": 2}},
        {"data": {"b": 20, "nested": {"x": 10}}, "to": {"data": {"c": 3, "b": 200}}},
    )
    assert merged == {"a": 1, "b": 200, "c": 3, "nested": {"x": 10}}


@pytest.mark.parametrize(
    ("user", "data"),
    [
        ({"data": [1, 2]}, [1, 2]),  # anything but an object replaces what was there
        ({"data": "text"}, "text"),
        ({"data": 7}, 7),
        ({"data": None}, {"g": 1}),  # null changes nothing
        ({"data": [1], "to": {"data": {"a": 1}}}, {"a": 1}),  # an object over a list
        ({"data": {"a": 1}, "to": {"data": False}}, False),
        ({"to": {"data": None}}, {"g": 1}),
    ],
)
def test_data_that_is_not_an_object_replaces_whole(user: dict[str, Any], data: Any) -> None:
    assert merged_data({"g": 1}, user) == data


def test_merge_does_not_modify_the_global_data() -> None:
    global_data = {"a": 1}
    merged_data(global_data, {"data": {"a": 2}})
    assert global_data == {"a": 1}


@pytest.mark.parametrize(
    ("user", "definition", "reason"),
    [
        ({"to": {"user_id": "u"}}, {"routing": {"channels": ["sms"]}}, None),
        ({"recipient": "r"}, {}, None),
        ({"profile": {"email": "a@b.io"}}, {}, None),
        (
            {"profile": {"email": "not-an-email"}},
            {},
            "No routable address: no user_id, valid email or valid phone_number",
        ),
        ({"to": {"phone_number": "+1 (555) 010-9999"}}, {"routing": {"channels": ["sms"]}}, None),
        (
            {"to": {"phone_number": "12"}},
            {},
            "No routable address: no user_id, valid email or valid phone_number",
        ),
        (
            {"profile": {"email": "a@b.io"}},
            {"routing": {"channels": ["sms"]}},
            "No routable address for channel(s) sms",
        ),
        ({"profile": {"email": "a@b.io"}}, {"routing": {"channels": ["sms", "email"]}}, None),
        (
            {"profile": {"email": "a@b.io"}},
            {"routing": {"channels": ["push"]}},
            "No routable address for channel(s) push",
        ),
        (
            {"profile": {"email": "a@b.io"}},
            {
                "routing": {
                    "method": "all",
                    "channels": [{"method": "single", "channels": ["email"]}],
                }
            },
            None,
        ),
    ],
)
def test_routability(
    user: dict[str, object], definition: dict[str, object], reason: str | None
) -> None:
    assert unroutable_reason(user, definition) == reason


def test_send_to_moves_legacy_recipient_and_drops_to_data() -> None:
    assert send_to({"recipient": "r", "to": {"email": "e@x.io", "data": {"a": 1}}}) == {
        "email": "e@x.io",
        "user_id": "r",
    }
    assert send_to({"recipient": "r", "to": {"user_id": "u"}}) == {"user_id": "u"}


def test_message_id_is_deterministic_courier_shaped_and_distinct() -> None:
    a = message_id(1_700_000_000.5, "job", "user:u1")
    assert a == message_id(1_700_000_000.5, "job", "user:u1")
    assert a != message_id(1_700_000_000.5, "job", "user:u2")
    assert a != message_id(1_700_000_000.5, "job2", "user:u1")
    prefix, stamp, digest = a.split("-")
    assert (prefix, stamp, len(digest)) == ("1", f"{1_700_000_000:08x}", 24)
    job = new_job_id(1_700_000_000)
    assert job.startswith(f"1-{1_700_000_000:08x}-")
    assert job != new_job_id(1_700_000_000)


def test_a_positional_message_id_is_courier_shaped_and_gives_its_position_back() -> None:
    job = new_job_id(1_700_000_000)
    a = positional_message_id(1_700_000_000.5, job, 1234)
    assert a == positional_message_id(1_700_000_000.5, job, 1234)
    assert a != positional_message_id(1_700_000_000.5, job, 1235)
    assert a != positional_message_id(1_700_000_000.5, "job2", 1234)
    prefix, stamp, last = a.split("-")
    assert (prefix, stamp, len(last)) == ("1", f"{1_700_000_000:08x}", 24)
    assert int(last, 16) >= 0
    assert last == last.lower()
    assert position_of(job, last) == 1234
    assert position_of(job, positional_message_id(1.0, job, 0)[-24:]) == 0


@pytest.mark.parametrize(
    "last",
    [
        message_digest("job", "user:u1"),  # an `identity` id of the job
        positional_message_id(1.0, "another-job", 7)[-24:],  # another job's
        "f" * 14 + positional_message_id(1.0, "job", 7)[-10:],  # a digest made up
        positional_message_id(1.0, "job", 7)[-24:].upper(),  # not as we write it
        positional_message_id(1.0, "job", 7)[-24:-2] + "_7",  # what int() would forgive
        positional_message_id(1.0, "job", 7)[-23:],  # too short
        "",
        "x" * 24,
    ],
)
def test_position_of_answers_only_the_jobs_own_positional_ids(last: str) -> None:
    assert position_of("job", last) is None


def test_build_send_shape() -> None:
    send = build_send(
        job_id="j",
        tenant="t",
        created_at=1.0,
        definition={"template": "T"},
        global_data={"g": 1},
        position=7,
        identity="user:u",
        user={"to": {"user_id": "u"}, "profile": {"email": "a@b.io"}, "preferences": {"p": 1}},
    )
    assert send == {
        "messageId": positional_message_id(1.0, "j", 7),
        "jobId": "j",
        "tenant": "t",
        "position": 7,
        "message": {"template": "T"},
        "to": {"user_id": "u"},
        "profile": {"email": "a@b.io"},
        "preferences": {"p": 1},
        "data": {"g": 1},
    }


USERS = [
    {"to": {"user_id": "u1", "email": "u1@example.com"}, "data": {"n": 1}},
    {"to": {"user_id": "u2"}},
    {"to": {"user_id": "u3", "data": {"b": 200, "c": 3}}, "data": {"b": 20}},
    {"to": {"email": "e@example.com", "data": None}, "data": None},
    {"recipient": "legacy", "data": {"n": 5}},
    {"recipient": "legacy-2", "to": {"user_id": "wins"}},
    {"profile": {"email": "p@example.com"}, "preferences": {"notifications": {}}},
    {"to": {"user_id": 'ü-ñ "quoted"', "phone_number": "+1 555 010 9999"}, "data": {"x": [1]}},
    {"to": {}, "data": "not an object", "profile": "not an object"},
    {
        "to": {
            "user_id": "u9",
            "tenant_id": "t1",
            "account_id": "a1",
            "list_id": "l1",
            "locale": "fr",
            "preferences": {"notifications": {}},
            "context": {"tenant_id": "t1"},
        },
        "custom": {"k": 1},
        "recipient": None,
        "tier": "gold",
    },
    {"data": [1, 2], "to": {"user_id": "x", "data": {"a": 1}}},
    {"to": {"user_id": "u"}, "recipient": "r"},
    {"to": {"user_id": "u"}, "data": {"n": 1}, "messageId": "own", "status": "mine"},
]


def test_a_send_carries_every_field_of_the_user() -> None:
    user = {
        "to": {"user_id": "u", "tenant_id": "t1", "list_id": "l", "data": {"a": 1}},
        "recipient": "r",
        "profile": {"email": "a@b.io"},
        "preferences": {"notifications": {}},
        "data": [1],
        "custom": {"k": 1},
    }
    send = build_send(
        job_id="j",
        tenant="t",
        created_at=1.0,
        definition={"template": "T", "brand_id": "B", "metadata": {"tags": ["x"]}},
        global_data={"g": 1},
        position=0,
        identity="user:u",
        user=user,
        metadata={"trace": "abc"},
    )
    assert send == {
        "messageId": positional_message_id(1.0, "j", 0),
        "jobId": "j",
        "tenant": "t",
        "position": 0,
        "message": {"template": "T", "brand_id": "B", "metadata": {"tags": ["x"]}},
        "to": {"user_id": "u", "tenant_id": "t1", "list_id": "l"},
        "data": {"a": 1},
        "recipient": "r",
        "profile": {"email": "a@b.io"},
        "preferences": {"notifications": {}},
        "metadata": {"trace": "abc"},
        "extra": {"custom": {"k": 1}},
    }


@pytest.mark.parametrize("message_ids", [POSITION_IDS, IDENTITY_IDS])
@pytest.mark.parametrize("metadata", [None, {"trace": "t", "tags": ["a"]}])
@pytest.mark.parametrize("global_data", [None, {}, {"a": 1, "b": 2, "nested": {"x": 1}}])
@pytest.mark.parametrize("user", USERS)
def test_page_sends_are_byte_for_byte_the_dumped_build_send(
    user: dict[str, Any],
    global_data: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    message_ids: str,
) -> None:
    job_id = new_job_id(1_764_000_000)
    definition = {"template": "T", "routing": {"method": "single", "channels": ["email"]}}
    sends = PageSends(
        job_id=job_id,
        tenant="acme",
        created_at=1_764_000_000.5,
        definition=definition,
        global_data=global_data,
        message_ids=message_ids,
    )
    expected = build_send(
        job_id=job_id,
        tenant="acme",
        created_at=1_764_000_000.5,
        definition=definition,
        global_data=global_data,
        position=1234,
        identity="user:u1",
        user=user,
        metadata=metadata,
        message_ids=message_ids,
    )
    key, value = sends.build(1234, "user:u1", user, metadata)
    assert key == expected["messageId"].encode()
    assert value == orjson.dumps(expected)
    # The page's shared parts are not changed by a user.
    assert sends.build(1234, "user:u1", user, metadata) == (key, value)
