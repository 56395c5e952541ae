"""Command models: both message shapes, the identity rule, the envelope."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import BulkUser, CommandEnvelope, CreateJob, IngestUsers, JobMessage, RunJob


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
            {"commandId": "c", "tenant": "t", "jobId": "j", "kind": "cancel"}
        )


def test_user_keeps_unknown_fields_for_echo() -> None:
    user = BulkUser.model_validate({"recipient": "r", "custom": {"k": 1}})
    assert user.to_wire() == {"recipient": "r", "custom": {"k": 1}}
