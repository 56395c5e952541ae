"""`GET /messages/{messageId}`: a message in the shape of Courier's Messages API.

Courier's fields (`MessageDetails` of its SDKs): `id`, `status`, `enqueued`,
`sent`, `delivered`, `opened`, `clicked` (Unix ms), `recipient`, `event`,
`notification`, `error`, `reason`. Statuses map onto Courier's: SENT,
DELIVERED, OPENED and CLICKED as they are; FAILED and UNDELIVERABLE are
Courier's UNDELIVERABLE, with `reason` FAILED (the delivery worker gave up)
or BOUNCED (the provider's verdict) and the report's reason as `error`.
bulkstream's own, additive: `jobId`, `failed` and `undeliverable` (the times
of those states), `provider`.

A message is found once a delivery report about it was folded: before that
bulkstream knows it only as a user of its job (`GET /bulk/{id}/users`).
"""

from __future__ import annotations

import re
from typing import Any

from schemas.delivery import DeliveryStatus
from streams.views.delivery import MessageRecord

# Courier's shape, as the engine makes them: `1-<8 hex>-<24 hex>`.
MESSAGE_ID = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")

_COURIER_STATUS = {
    DeliveryStatus.FAILED: ("UNDELIVERABLE", "FAILED"),
    DeliveryStatus.UNDELIVERABLE: ("UNDELIVERABLE", "BOUNCED"),
}


def message_details(message_id: str, record: MessageRecord) -> dict[str, Any]:
    entry, user, definition = record.entry, record.user, record.definition
    status = DeliveryStatus(entry["status"])
    courier_status, reason = _COURIER_STATUS.get(status, (status.value, None))
    times: dict[str, int] = entry.get("times", {})
    event = _text(definition.get("event")) or _text(definition.get("template")) or ""
    details: dict[str, Any] = {
        "id": message_id,
        "status": courier_status,
        "enqueued": int(record.created_at * 1000),
        "event": event,
        "notification": _text(definition.get("template")) or event,
        "recipient": recipient_of(user),
        "jobId": record.job_id,
    }
    for state, name in (
        (DeliveryStatus.SENT, "sent"),
        (DeliveryStatus.DELIVERED, "delivered"),
        (DeliveryStatus.OPENED, "opened"),
        (DeliveryStatus.CLICKED, "clicked"),
        (DeliveryStatus.FAILED, "failed"),
        (DeliveryStatus.UNDELIVERABLE, "undeliverable"),
    ):
        if state.value in times:
            details[name] = times[state.value]
    if reason is not None:
        details["reason"] = reason
        details["error"] = entry.get("reason") or reason
    if "provider" in entry:
        details["provider"] = entry["provider"]
    return details


def recipient_of(user: dict[str, Any]) -> str:
    """Who the message was for: the user's id, else its email, else its phone number."""
    to = user.get("to") if isinstance(user.get("to"), dict) else {}
    profile = user.get("profile") if isinstance(user.get("profile"), dict) else {}
    assert isinstance(to, dict)
    assert isinstance(profile, dict)
    for value in (
        to.get("user_id"),
        user.get("recipient"),
        to.get("email"),
        profile.get("email"),
        to.get("phone_number"),
        profile.get("phone_number"),
    ):
        if isinstance(value, str) and value:
            return value
    return ""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
