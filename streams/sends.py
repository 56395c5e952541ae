"""What a send event is: one user of a job becomes one send event, or a failure. Pure.

Data merge rule: the send's `data` starts as the job's data (the nested
message's `data`, overlaid by the job's global `data`), then the user's
`data`, then the user's `to.data` are laid over it (the user wins). An
object laid over an object overlays it key by key, shallowly: a nested
object given by the user replaces the job's object of the same key whole.
Anything else a user gives as data (a list, a string, a number) replaces
what was there whole; a missing or null `data` changes nothing.

What a send carries: every field of the definition (`message`, see
`JobMessage.send_definition`) and of the user: `to` (without its `data`,
with a legacy `recipient` as `user_id` when there is none), the merged
`data`, `profile`, `preferences` and `recipient` as sent, the ingest call's
`metadata`, and the user's fields Courier does not define under `extra`.

Routing rule: a user is routable when it has an address the definition can
use. A `to.user_id` (or legacy `recipient`) is routable on every channel,
since delivery resolves the stored profile; otherwise `email` needs a valid
email (profile or to) and `sms` a valid phone number. Without
`routing.channels` in the definition, any valid address will do.

The fan-out applies these rules natively when it can (native/src/lib.rs,
streams/fanout/expand.py): a change here is a change there too, and
tests/streams/test_expand_native.py fails until both give the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from streams.ids import DIGEST_HEX, POSITION_HEX, POSITION_IDS, job_message_id, message_id_prefix

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NOT_DIGITS = re.compile(r"\D")

JsonObject = dict[str, Any]


# The user's fields a send carries under their own names; any other goes under `extra`.
USER_FIELDS = frozenset({"to", "data", "profile", "preferences", "recipient"})
_TO_AND_DATA = frozenset({"to", "data"})


def merged_data(global_data: JsonObject | None, user: JsonObject) -> Any:
    """The send's `data` (the merge rule above)."""
    out: Any = dict(global_data or {})
    to = user.get("to")
    for layer in (user.get("data"), to.get("data") if isinstance(to, dict) else None):
        if layer is None:
            continue
        if isinstance(layer, dict) and isinstance(out, dict):
            out.update(layer)
        else:
            out = dict(layer) if isinstance(layer, dict) else layer
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


def _user_parts(user: JsonObject, metadata: JsonObject | None) -> JsonObject:
    """The fields of a send that come from the user as sent, after `to` and `data`."""
    parts: JsonObject = {}
    for name in ("profile", "preferences", "recipient"):
        value = user.get(name)
        if value is not None:
            parts[name] = value
    if metadata is not None:
        parts["metadata"] = metadata
    if len(user) > len(USER_FIELDS.intersection(user)):
        parts["extra"] = {k: v for k, v in user.items() if k not in USER_FIELDS}
    return parts


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
    metadata: JsonObject | None = None,
    message_ids: str = POSITION_IDS,
) -> JsonObject:
    """The wire form of one SendEvent (schemas/events.py), built without validation cost."""
    return {
        "messageId": job_message_id(message_ids, created_at, job_id, position, identity),
        "jobId": job_id,
        "tenant": tenant,
        "position": position,
        "message": definition,
        "to": send_to(user),
        "data": merged_data(global_data, user),
        **_user_parts(user, metadata),
    }


class PageSends:
    """The send events of one page's users, as the bytes `build_send` would dump.

    Every send of a page carries the same job, tenant, definition and global
    data; those parts are encoded once per page and each send is spliced from
    them and its own few fields. tests/streams/test_expand.py keeps the bytes
    equal to `orjson.dumps(build_send(...))`.
    """

    def __init__(
        self,
        *,
        job_id: str,
        tenant: str,
        created_at: float,
        definition: JsonObject,
        global_data: JsonObject | None,
        message_ids: str = POSITION_IDS,
    ) -> None:
        self.global_data = global_data or {}
        self.id_prefix = message_id_prefix(created_at)
        # The hash of "<job>\0<position>" (`position` ids) or of "<job>\0<identity>",
        # with the job's part absorbed once
        self.positional = message_ids == POSITION_IDS
        size = DIGEST_HEX // 2 if self.positional else 12
        self.hash = hashlib.blake2b(f"{job_id}\x00".encode(), digest_size=size)
        self.after_id = (
            b'","jobId":' + orjson.dumps(job_id) + b',"tenant":' + orjson.dumps(tenant)
        ) + b',"position":'
        self.after_position = b',"message":' + orjson.dumps(definition) + b',"to":'

    def build(
        self,
        position: int,
        identity: str,
        user: JsonObject,
        metadata: JsonObject | None = None,
    ) -> tuple[bytes, bytes]:
        """(messageId, the send event's JSON) of one routable user."""
        digest = self.hash.copy()
        if self.positional:
            digest.update(str(position).encode())
            mid = f"{self.id_prefix}{digest.hexdigest()}{position:0{POSITION_HEX}x}".encode()
        else:
            digest.update(identity.encode())
            mid = (self.id_prefix + digest.hexdigest()).encode()
        # The common user ({"to": {...}, "data": {...}}) is dumped as it is; any
        # other shape takes the general rules.
        to = user.get("to")
        data = user.get("data")
        if not isinstance(to, dict) or "data" in to or "recipient" in user:
            to = send_to(user)
            data = merged_data(self.global_data, user)
        elif self.global_data or not isinstance(data, dict):
            data = merged_data(self.global_data, user)
        parts = [
            b'{"messageId":"',
            mid,
            self.after_id,
            str(position).encode(),
            self.after_position,
            orjson.dumps(to),
            b',"data":',
            orjson.dumps(data),
        ]
        if metadata is not None or not _TO_AND_DATA.issuperset(user):
            rest = _user_parts(user, metadata)
            if rest:  # its fields, spliced in after `data`: ',"profile":...'
                parts += (b",", orjson.dumps(rest)[1:-1])
        parts.append(b"}")
        return mid, b"".join(parts)
