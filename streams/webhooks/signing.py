"""Signing webhook requests as Standard Webhooks says (pure).

A secret is `whsec_` + base64 of a random key. A request carries
`webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`:
`v1,` + base64 of HMAC-SHA256(key, `<id>.<timestamp>.<body>`), where the key
is the base64-decoded part of the secret after `whsec_`. A receiver may be
sent several signatures separated by spaces (key rotation); we send one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
KEY_BYTES = 24  # the spec asks for 24 to 64 bytes


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret; ValueError if it is not one."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ and base64") from exc
    if not key:
        raise ValueError("empty webhook secret")
    return key


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for this request."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of a request."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, webhook_id, timestamp, body),
    }


def verify(secret: str, webhook_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether one of the header's space-separated `v1,` signatures signs this request
    (what a receiver checks; the tests use the official verifier besides)."""
    expected = signature(secret, webhook_id, timestamp, body).encode()
    return any(
        hmac.compare_digest(expected, candidate.encode())
        for candidate in header.split()
        if candidate.startswith("v1,")
    )
