"""Our webhook signatures, checked by the official Standard Webhooks verifier."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from streams.webhooks import signing


def test_a_new_secret_is_whsec_and_base64_of_24_bytes() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert signing.new_secret() != secret


def test_the_official_verifier_takes_our_signature() -> None:
    secret = signing.new_secret()
    body = (
        '{"type":"job.completed","timestamp":"2026-01-01T00:00:00.000Z","data":{"a":"é"}}'.encode()
    )
    headers = signing.headers(secret, "msg_1", int(time.time()), body)
    assert Verifier(secret).verify(body, headers) == {
        "type": "job.completed",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "data": {"a": "é"},
    }


def test_the_signature_is_v1_hmac_sha256_of_id_timestamp_body() -> None:
    # The example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signing.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def _tampered(what: str, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    """The request with one thing changed after it was signed."""
    if what == "id":
        return {**headers, "webhook-id": "msg_2"}, body
    if what == "timestamp":
        return {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}, body
    if what == "body":
        return headers, body + b" "
    stamp = int(headers["webhook-timestamp"])
    other_key = signing.signature(signing.new_secret(), "msg_1", stamp, body)
    return {**headers, "webhook-signature": other_key}, body


@pytest.mark.parametrize("what", ["id", "timestamp", "body", "key"])
def test_a_changed_request_is_refused(what: str) -> None:
    secret = signing.new_secret()
    body = b'{"type":"job.created"}'
    headers, changed = _tampered(
        what, signing.headers(secret, "msg_1", int(time.time()), body), body
    )
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(changed, headers)
    assert not signing.verify(
        secret,
        headers["webhook-id"],
        int(headers["webhook-timestamp"]),
        changed,
        headers["webhook-signature"],
    )


def test_verify_takes_one_of_several_signatures() -> None:
    secret = signing.new_secret()
    ours = signing.signature(secret, "msg_1", 1700000000, b"{}")
    assert signing.verify(secret, "msg_1", 1700000000, b"{}", f"v1,AAAA {ours}")
    assert not signing.verify(secret, "msg_1", 1700000000, b"{}", "v1,AAAA v2,xyz")


@pytest.mark.parametrize("bad", ["whsec_", "sk_abc", "whsec_***"])
def test_a_secret_that_is_not_whsec_base64_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        signing.secret_key(bad)
