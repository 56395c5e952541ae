"""Command models: both message shapes, the identity rule, the envelope."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import BulkUser, CommandEnvelope, CreateJob, IngestUsers, JobMessage, RunJob
from schemas.base import first_inexact_number
from schemas.commands import courier_definition, echo, identity_of


def test_nested_tutorial_shape_folds_into_send_definition() -> None:
    msg = JobMessage.model_validate(
        {
            "message": {"template": "TPL"},
            "data": {"company_name": "Acme"},
            "brand": "B",
            "locale": "fr",
        }
    )
    assert msg.send_definition() == {"template": "TPL", "brand": "B", "locale": "fr"}
    assert msg.data == {"company_name": "Acme"}


def test_flat_sdk_shape_keeps_event_content_and_override() -> None:
    msg = JobMessage.model_validate(
        {"event": "EVT", "content": {"title": "Hi"}, "override": {"x": 1}, "data": {"a": 1}}
    )
    assert msg.send_definition() == {
        "event": "EVT",
        "content": {"title": "Hi"},
        "override": {"x": 1},
    }


def test_message_without_anything_to_send_is_invalid() -> None:
    with pytest.raises(ValidationError, match="needs one of event, template or content"):
        JobMessage.model_validate({"data": {"a": 1}, "brand": "B"})


@pytest.mark.parametrize(
    ("user", "identity"),
    [
        ({"to": {"user_id": "u1", "email": "e@x"}, "recipient": "r"}, "user:u1"),
        ({"recipient": "r", "profile": {"email": "e@x"}}, "user:r"),
        ({"profile": {"email": "p@x"}, "to": {"email": "t@x"}}, "email:p@x"),
        ({"to": {"email": "t@x", "phone_number": "+1"}}, "email:t@x"),
        ({"profile": {"phone_number": "+1"}, "to": {"phone_number": "+2"}}, "phone:+1"),
        ({"to": {"phone_number": "+2"}}, "phone:+2"),
        ({"to": {"user_id": ""}, "data": {"a": 1}}, None),
        ({"to": {"data": {"a": 1}}}, None),
    ],
)
def test_identity_rule(user: dict[str, object], identity: str | None) -> None:
    assert BulkUser.model_validate(user).identity() == identity


def test_envelope_parses_each_kind_by_discriminator() -> None:
    base = {"commandId": "c1", "tenant": "t", "jobId": "j"}
    create = CommandEnvelope.model_validate(
        {**base, "kind": "create", "message": {"event": "E"}, "createdAt": 1.0}
    ).root
    ingest = CommandEnvelope.model_validate(
        {**base, "kind": "ingest", "users": [{"recipient": "a"}]}
    ).root
    run = CommandEnvelope.model_validate({**base, "kind": "run"}).root
    assert isinstance(create, CreateJob)
    assert isinstance(ingest, IngestUsers)
    assert isinstance(run, RunJob)
    assert ingest.users[0].to_wire() == {"recipient": "a"}


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValidationError):
        CommandEnvelope.model_validate(
            {"commandId": "c", "tenant": "t", "jobId": "j", "kind": "explode"}
        )


def test_user_keeps_unknown_fields_for_echo() -> None:
    user = BulkUser.model_validate({"recipient": "r", "custom": {"k": 1}})
    assert user.to_wire() == {"recipient": "r", "custom": {"k": 1}}


def test_a_nested_message_reaches_the_send_whole() -> None:
    """Every field of the tutorial's nested message reaches the send; `data` goes to data."""
    inner: dict[str, Any] = {
        "template": "TPL",
        "brand_id": "B",
        "data": {"a": 1, "b": 1},
        "metadata": {"tags": ["t"]},
        "timeout": {"message": 60},
        "delay": {"duration": 5},
        "expiry": {"expires_in": "1h"},
        "context": {"tenant_id": "t1"},
        "preferences": {"subscription_topic_id": "s"},
        "to": {"list_id": "l"},
        "channels": {"email": {}},
        "routing": {"method": "single", "channels": ["email"]},
    }
    sent = {"message": inner, "data": {"b": 2}, "brand": "OUTER", "locale": "fr"}
    msg = JobMessage.model_validate(sent)
    nested = {k: v for k, v in inner.items() if k != "data"}
    assert msg.send_definition() == {"brand": "OUTER", "locale": "fr", **nested}
    assert msg.global_data() == {"a": 1, "b": 2}  # the job's data over the message's


def test_outer_fields_win_over_nested_ones_unless_null() -> None:
    msg = JobMessage.model_validate(
        {"template": None, "brand": "A", "message": {"template": "N", "brand": "B"}}
    )
    assert msg.send_definition() == {"template": "N", "brand": "A"}


def test_a_message_and_a_user_dump_exactly_as_sent() -> None:
    message: dict[str, Any] = {
        "zeta": None,
        "event": "E",
        "brand": None,
        "locale": {"fr": {}},
        "x": [1],
    }
    assert JobMessage.model_validate(message).to_wire() == message
    assert list(JobMessage.model_validate(message).to_wire()) == list(message)
    user = {"data": None, "custom": 1, "to": {"user_id": "u", "email": None}, "recipient": None}
    parsed = IngestUsers.model_validate_json(
        orjson.dumps({"commandId": "c", "tenant": "t", "jobId": "j", "users": [user]})
    )
    assert parsed.to_wire()["users"] == [user]
    assert list(parsed.users[0].to_wire()) == list(user)


def test_courier_definition_adds_event_only_when_missing() -> None:
    assert courier_definition({"event": "E", "template": "T"}) == {"event": "E", "template": "T"}
    assert courier_definition({"message": {"template": "T"}}) == {
        "message": {"template": "T"},
        "event": "T",
    }
    assert courier_definition({"content": {"title": "x"}}) == {
        "content": {"title": "x"},
        "event": "",
    }


@pytest.mark.parametrize(
    ("user", "shown"),
    [
        ({"to": {"user_id": "spike"}}, {"recipient": "spike", "to": {"user_id": "spike"}}),
        ({"profile": {"email": "a@b.io"}}, {"recipient": "a@b.io", "profile": {"email": "a@b.io"}}),
        (
            {"recipient": "own", "to": {"user_id": "u"}},
            {"recipient": "own", "to": {"user_id": "u"}},
        ),
        ({"recipient": None, "to": {"user_id": "u"}}, {"recipient": None, "to": {"user_id": "u"}}),
        ({"data": {"a": 1}}, {"data": {"a": 1}}),  # no identity: nothing to show
    ],
)
def test_echo_shows_the_recipient(user: dict[str, object], shown: dict[str, object]) -> None:
    assert echo(user, identity_of(user)) == shown


def test_user_data_may_be_any_json_and_no_field_is_required() -> None:
    for data in ([1, 2], "text", 3, None, {"a": 1}, True):
        assert BulkUser.model_validate({"data": data}).to_wire() == {"data": data}
    assert BulkUser.model_validate({}).identity() is None


def test_ingest_metadata_is_kept() -> None:
    command = IngestUsers.model_validate(
        {"commandId": "c", "tenant": "t", "jobId": "j", "users": [], "metadata": {"k": "v"}}
    )
    assert command.to_wire()["metadata"] == {"k": "v"}


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [1, 2**64 - 1, -(2**63)]}, None),
        ({"a": [1, 2**64]}, "a.1"),
        ({"a": {"b": -(2**63) - 1}}, "a.b"),
        ({"f": float("inf")}, "f"),
        ({"f": 1.5e308, "t": True}, None),
    ],
)
def test_first_inexact_number(value: object, where: str | None) -> None:
    assert first_inexact_number(value) == where
