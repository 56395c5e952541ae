"""Internal contracts between the job aggregate and the fan-out workers.

A run command is cut into pages of users (`FanoutPage`, on `bulk.fanout-pages`,
key `<job>:<page>`, so one job's pages spread over every partition). Each page
fanned out yields one `PageProgress` (on `bulk.progress`, key = job id, so it
meets the job's aggregate), in the same Kafka transaction as its sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import orjson

from schemas.base import JsonObject, WireModel

# (position in the job, identity or "" for a user without one, the user as ingested),
# then the ingest call's metadata when it had some
PageUser = tuple[int, str, dict[str, Any]] | tuple[int, str, dict[str, Any], dict[str, Any]]


class FanoutPage(WireModel):
    job_id: str
    tenant: str
    page: int
    page_size: int
    created_at: float
    message: JsonObject
    data: JsonObject
    # How the job's message ids are made (`streams.ids`); a page of an earlier release
    # has no such field: `identity`.
    message_ids: Literal["identity", "position"] = "identity"
    users: list[PageUser]


class PageProgress(WireModel):
    job_id: str
    tenant: str
    page: int
    enqueued: int
    # (position, reason) of every user of the page that could not be sent
    failures: list[tuple[int, str]]


# -- the fast codec of FanoutPage --------------------------------------------
# A page holds hundreds of users and is written and read once per page on the
# hot path; validating and dumping it through pydantic cost more than the
# fan-out of its users. Both ends are bulkstream's own code, so the page goes
# over the wire as plain JSON built and read by these two functions;
# tests/schemas/test_fanout.py keeps them equal to the model above.


class PageFields(NamedTuple):
    job_id: str
    tenant: str
    page: int
    page_size: int
    created_at: float
    message: dict[str, Any]
    data: dict[str, Any]
    # `position` or `identity`: the job's (`streams.ids`), given by whoever writes a page
    message_ids: str
    # decode_page gives tuples; the aggregate encodes the lists it stored per batch
    users: Sequence[Sequence[Any]]


def encode_page(fields: PageFields) -> bytes:
    """A FanoutPage's wire form (camelCase, as `FanoutPage(...).to_wire()` gives)."""
    return orjson.dumps(
        {
            "jobId": fields.job_id,
            "tenant": fields.tenant,
            "page": fields.page,
            "pageSize": fields.page_size,
            "createdAt": fields.created_at,
            "message": fields.message,
            "data": fields.data,
            "messageIds": fields.message_ids,
            "users": fields.users,
        }
    )


def encode_page_spliced(fields: PageFields, users: bytes) -> bytes:
    """`encode_page` of these fields with `users`, given as its JSON array already."""
    head = encode_page(fields._replace(users=[]))
    assert head.endswith(b'"users":[]}')
    return head[: -len(b"[]}")] + users + b"}"


def decode_page(raw: bytes) -> PageFields:
    """The fields of a page written by `encode_page` (or by the model)."""
    wire = orjson.loads(raw)
    return PageFields(
        job_id=wire["jobId"],
        tenant=wire["tenant"],
        page=wire["page"],
        page_size=wire["pageSize"],
        created_at=wire["createdAt"],
        message=wire["message"],
        data=wire["data"],
        message_ids=wire.get("messageIds", "identity"),
        users=[tuple(user) for user in wire["users"]],
    )
