"""The fast page codec says exactly what the FanoutPage model says."""

from __future__ import annotations

import orjson

from schemas.fanout import FanoutPage, PageFields, decode_page, encode_page, encode_page_spliced

FIELDS = PageFields(
    job_id="1-6928a0c1-0123456789abcdef01234567",
    tenant="acme",
    page=3,
    page_size=2,
    created_at=1764000000.25,
    message={"template": "T", "routing": {"method": "single", "channels": ["email"]}},
    data={"campaign": "x", "nested": {"a": [1, 2]}},
    message_ids="position",
    users=[
        (6, "user:a", {"to": {"user_id": "a"}, "data": {"n": 1}}),
        (7, "email:b@example.com", {"to": {"email": "b@example.com"}, "profile": {"x": None}}),
    ],
)


def test_encode_page_is_the_models_wire_form() -> None:
    model = FanoutPage(**FIELDS._asdict())
    assert orjson.loads(encode_page(FIELDS)) == model.to_wire()
    assert FanoutPage.model_validate_json(encode_page(FIELDS)) == model


def test_decode_page_reads_what_the_model_writes() -> None:
    model = FanoutPage(**FIELDS._asdict())
    assert decode_page(orjson.dumps(model.to_wire())) == FIELDS
    assert decode_page(encode_page(FIELDS)) == FIELDS


def test_a_page_of_an_earlier_release_is_one_of_identity_message_ids() -> None:
    wire = orjson.loads(encode_page(FIELDS))
    assert wire["messageIds"] == "position"
    del wire["messageIds"]
    assert decode_page(orjson.dumps(wire)).message_ids == "identity"
    assert FanoutPage.model_validate(wire).message_ids == "identity"


def test_a_spliced_page_is_the_encoded_page() -> None:
    users = orjson.dumps(FIELDS.users)
    assert encode_page_spliced(FIELDS._replace(users=[]), users) == encode_page(FIELDS)
