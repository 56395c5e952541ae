"""A job's accepted users as stored per ingest batch, and cut into fan-out pages.

Pure logic, no Kafka. Page n holds positions [n*P, (n+1)*P). Each batch is a
contiguous run of positions that starts where the previous one ended, stored
as the JSON of its users `[position, identity, user]` joined by commas, with
the byte offset where each one ends. A page is then a few byte slices of the
stored batches, spliced: the run of a job never decodes or re-encodes a user.

Stored value: MAGIC, first position and count (little-endian u64 each),
`count` u64 end offsets, then the users' JSON.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import orjson

from streams.native import member

# [position in the job, identity ("" for a user without one), the user as ingested,
# and the ingest call's metadata when it had some], as stored and decoded
StoredUser = list[Any]

MAGIC = b"\x00B1"  # no JSON text starts with NUL
_HEAD = struct.Struct("<QQ")


class MissingUsers(Exception):
    """The stored batches do not hold every position of the job."""


class StoredBatch(NamedTuple):
    first: int  # position of its first user
    ends: tuple[int, ...]  # byte offset in `users` where each user's JSON ends
    users: bytes  # the users' JSON, comma-separated, no brackets

    def slice(self, start: int, stop: int) -> bytes:
        """The JSON of users start..stop-1 (indexes in the batch), comma-separated."""
        begin = self.ends[start - 1] + 1 if start else 0
        return self.users[begin : self.ends[stop - 1]]


def encode_batch(users: Sequence[Sequence[Any]], sent: Sequence[bytes] = ()) -> bytes:
    """The stored form of one ingest command's accepted users (positions contiguous).

    `sent`, when given, holds the JSON of each user (orjson's, of `user[2]`), made
    when the command was read: spliced in, not dumped again."""
    first = users[0][0] if users else 0
    if any(user[0] != first + i for i, user in enumerate(users)):
        raise ValueError("a batch's positions must be contiguous")
    if sent:
        items = [_entry(user, wire) for user, wire in zip(users, sent, strict=True)]
    else:
        items = [orjson.dumps(user) for user in users]
    ends, end = [], -1
    for item in items:
        end += len(item) + 1
        ends.append(end)
    return b"".join(
        (
            MAGIC,
            _HEAD.pack(first, len(users)),
            struct.pack(f"<{len(ends)}Q", *ends),
            b",".join(items),
        )
    )


BatchEncoder = Callable[[list[StoredUser], list[bytes]], bytes]


def batch_encoder(native: bool = True) -> BatchEncoder:
    """`encode_batch(users, sent)`, natively (native/src/stored_batch.rs, without a
    Python call per user) if asked for (`Settings.native`) and installed; a batch the
    native code leaves to Python (users with an ingest's metadata) is encoded here."""
    made: Callable[[list[StoredUser], list[bytes]], bytes | None] | None = (
        member("encode_batch") if native else None
    )
    if made is None:
        return encode_batch

    def encode(users: list[StoredUser], sent: list[bytes]) -> bytes:
        encoded = made(users, sent)
        return encode_batch(users, sent) if encoded is None else encoded

    return encode


def _entry(user: Sequence[Any], wire: bytes) -> bytes:
    """`orjson.dumps(user)`, the user itself (`user[2]`) given as its JSON."""
    rest = b"," + orjson.dumps(list(user[3:]))[1:-1] if len(user) > 3 else b""
    return b"[%d,%b,%b%b]" % (user[0], orjson.dumps(user[1]), wire, rest)


def read_batch(raw: bytes) -> StoredBatch:
    if not raw.startswith(MAGIC):
        raise ValueError("not a stored batch")
    first, count = _HEAD.unpack_from(raw, len(MAGIC))
    at = len(MAGIC) + _HEAD.size
    ends = struct.unpack_from(f"<{count}Q", raw, at)
    return StoredBatch(first, ends, raw[at + 8 * count :])


def decode_batch(raw: bytes) -> list[StoredUser]:
    """The users of a stored batch, decoded."""
    batch = read_batch(raw)
    decoded: list[StoredUser] = orjson.loads(b"[" + batch.users + b"]")
    return decoded


def cut_pages(
    batches: Iterable[StoredBatch],
    size: int,
    received: int,
    first_page: int = 0,
    stop_page: int | None = None,
) -> Iterator[tuple[int, bytes]]:
    """(page number, the JSON array of its users) for pages [first_page, stop_page) of a
    job of `received` (every page from `first_page` when `stop_page` is None).

    `batches` come in position order, from the one holding the first page's first
    user (or earlier). Raises MissingUsers at the first gap, or at the end when users
    of the pages asked for are missing."""
    start = first_page * size
    stop = received if stop_page is None else min(received, stop_page * size)
    expected: int | None = None
    parts: list[bytes] = []
    number = first_page
    for batch in batches:
        if expected is not None and expected >= stop:
            break
        count = len(batch.ends)
        if not count or batch.first + count <= start:
            continue
        due = start if expected is None else expected
        if batch.first > due or (expected is not None and batch.first != expected):
            raise MissingUsers(
                f"positions {due} onwards are missing (a batch starts at {batch.first})"
            )
        expected = batch.first + count
        i = max(start, batch.first) - batch.first
        while i < count and batch.first + i < stop:
            position = batch.first + i
            if position // size != number:
                if parts:
                    yield number, b"[" + b",".join(parts) + b"]"
                parts, number = [], position // size
            j = min(count, i + (number + 1) * size - position, stop - batch.first)
            parts.append(batch.slice(i, j))
            i = j
    if parts:
        yield number, b"[" + b",".join(parts) + b"]"
    reached = start if expected is None else expected
    if reached < stop or (stop_page is None and reached != received):
        raise MissingUsers(f"{stop - min(reached, stop)} of {received} users are missing")
