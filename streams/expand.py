"""Pure logic of the fan-out: one user of a job becomes one send event, or a failure.

Data merge rule: the send's `data` is the job's global `data`, overlaid key by
key by the user's `data`, then by the user's `to.data` (the user wins). The
overlay is shallow: a nested object given by the user replaces the job's
object of the same key whole; it is not merged into it.

Routing rule: a user is routable when it has an address the definition can
use. A `to.user_id` (or legacy `recipient`) is routable on every channel,
since delivery resolves the stored profile; otherwise `email` needs a valid
email (profile or to) and `sms` a valid phone number. Without
`routing.channels` in the definition, any valid address will do.
"""

from __future__ import annotations

import re
from typing import Any

from streams.ids import message_id

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NOT_DIGITS = re.compile(r"\D")

JsonObject = dict[str, Any]


def merged_data(global_data: JsonObject | None, user: JsonObject) -> JsonObject:
    out: JsonObject = dict(global_data or {})
    user_data = user.get("data")
    if isinstance(user_data, dict):
        out.update(user_data)
    to = user.get("to")
    if isinstance(to, dict):
        to_data = to.get("data")
        if isinstance(to_data, dict):
            out.update(to_data)
    return out


def _first_str(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value:
            return value
    return None


def routing_channels(definition: JsonObject) -> list[str]:
    """The channels a definition routes to (`routing.channels`, nested or not)."""
    routing = definition.get("routing")
    if not isinstance(routing, dict):
        return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            walk(node.get("channels"))

    walk(routing.get("channels"))
    return found


def unroutable_reason(
    user: JsonObject, definition: JsonObject, channels: list[str] | None = None
) -> str | None:
    """Why this user cannot be sent the definition, or None when it can.

    `channels` is `routing_channels(definition)`, when the caller has it already."""
    to = user.get("to") if isinstance(user.get("to"), dict) else {}
    profile = user.get("profile") if isinstance(user.get("profile"), dict) else {}
    assert isinstance(to, dict)
    assert isinstance(profile, dict)
    if _first_str(to.get("user_id"), user.get("recipient")):
        return None
    email = _first_str(profile.get("email"), to.get("email"))
    phone = _first_str(profile.get("phone_number"), to.get("phone_number"))
    has_email = email is not None and bool(_EMAIL.match(email))
    has_phone = phone is not None and len(_NOT_DIGITS.sub("", phone)) >= 7
    if channels is None:
        channels = routing_channels(definition)
    if not channels:
        if has_email or has_phone:
            return None
        return "No routable address: no user_id, valid email or valid phone_number"
    for channel in channels:
        if (channel == "email" and has_email) or (channel == "sms" and has_phone):
            return None
    return f"No routable address for channel(s) {', '.join(channels)}"


def send_to(user: JsonObject) -> JsonObject:
    """The send's `to`: the user's own, with a legacy `recipient` as `user_id`."""
    to = dict(user["to"]) if isinstance(user.get("to"), dict) else {}
    to.pop("data", None)
    recipient = user.get("recipient")
    if isinstance(recipient, str) and recipient and not to.get("user_id"):
        to["user_id"] = recipient
    return to


def build_send(
    *,
    job_id: str,
    tenant: str,
    created_at: float,
    definition: JsonObject,
    global_data: JsonObject | None,
    position: int,
    identity: str,
    user: JsonObject,
) -> JsonObject:
    """The wire form of one SendEvent (schemas/events.py), built without validation cost."""
    send: JsonObject = {
        "messageId": message_id(created_at, job_id, identity),
        "jobId": job_id,
        "tenant": tenant,
        "position": position,
        "message": definition,
        "to": send_to(user),
        "data": merged_data(global_data, user),
    }
    profile = user.get("profile")
    if isinstance(profile, dict):
        send["profile"] = profile
    preferences = user.get("preferences")
    if isinstance(preferences, dict):
        send["preferences"] = preferences
    return send
