"""Courier-like identifiers: job ids (random) and message ids (deterministic).

A message id is shaped like Courier's `1-61e9dd7d-13c08339357603322c433d55`:
`1-`, 8 hex of the job's creation time, `-`, then 24 hex that tell the job's
messages apart. Two ways of making those 24 hex, chosen per job
(`JobState.message_ids`):

- `position` (every job created now): 14 hex of a digest of job id and
  position, then the position in 10 hex. Whoever holds the job id reads the
  position back from the id and checks it without a lookup (`position_of`),
  which is what a delivery report's fold does for every report.
- `identity` (jobs created by an earlier release): a digest of job id and
  user identity. Its position is found only through the job's index of users.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Literal

from schemas.base import JsonObject
from schemas.commands import identity_of
from streams.native import natively


def new_job_id(now: float | None = None) -> str:
    """A fresh job id shaped like Courier's: `1-<8 hex of unix time>-<24 random hex>`."""
    stamp = int(time.time() if now is None else now) & 0xFFFFFFFF
    return f"1-{stamp:08x}-{secrets.token_hex(12)}"


def derived_job_id(*parts: str) -> str:
    """A job id made from these parts, always the same for the same parts."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()
    return f"1-{digest[:8]}-{digest[8:]}"


def new_command_id() -> str:
    """A fresh command id, for a request without an Idempotency-Key."""
    return secrets.token_hex(16)


def message_id(created_at: float, job_id: str, identity: str) -> str:
    """The send's id for one user of a job of `identity` ids: the same inputs always
    give the same id (the job's creation time, then a hash of job id and identity)."""
    return message_id_prefix(created_at) + message_digest(job_id, identity)


# `position` ids: the digest's hex digits, then the position's (up to 16^10 users a job).
DIGEST_HEX = 14
POSITION_HEX = 10
MessageIds = Literal["identity", "position"]
POSITION_IDS: MessageIds = "position"
IDENTITY_IDS: MessageIds = "identity"


def positional_message_id(created_at: float, job_id: str, position: int) -> str:
    """The send's id for the user at this position of a job of `position` ids."""
    return message_id_prefix(created_at) + position_digest(job_id, position)


def position_digest(job_id: str, position: int) -> str:
    """The last part (24 hex) of a `position` id: a digest of job and position, then
    the position."""
    digest = hashlib.blake2b(f"{job_id}\x00{position}".encode(), digest_size=DIGEST_HEX // 2)
    return f"{digest.hexdigest()}{position:0{POSITION_HEX}x}"


def position_of(job_id: str, last: str) -> int | None:
    """The position a `position` id's last part (24 hex) names, if that part is one of
    this job's; None for anything else (an `identity` id, another job's, a made-up one)."""
    if len(last) != DIGEST_HEX + POSITION_HEX:
        return None
    try:
        position = int(last[DIGEST_HEX:], 16)
    except ValueError:
        return None
    # What int() forgives (a sign, blanks, underscores) fails the comparison below.
    return position if position >= 0 and position_digest(job_id, position) == last else None


# A message id as this module makes them: `1-`, 8 hex, `-`, 24 hex.
_MESSAGE_ID = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")


def position_in(job_id: str, message_id: str) -> int | None:
    """The position a whole message id names as one of this job's `position` ids (its
    shape checked, then `position_of` its last 24 hex); None for any other id."""
    if not _MESSAGE_ID.fullmatch(message_id):
        return None
    return position_of(job_id, message_id[-24:])


# For each (job id, message id), the position the id carries as one of that job's, or -1.
CarriedPositions = Callable[[Sequence[str], Sequence[str]], list[int]]


def carried_positions(job_ids: Sequence[str], message_ids: Sequence[str]) -> list[int]:
    """`position_of` each message id's last 24 characters, -1 for None: in Python."""
    return [
        -1 if (position := position_of(job_id, message_id[-24:])) is None else position
        for job_id, message_id in zip(job_ids, message_ids, strict=True)
    ]


def position_reader(native: bool = True) -> CarriedPositions:
    """`carried_positions`, natively (native/src/message_ids.rs, a few times faster) if
    asked for (`Settings.native`) and installed."""
    return natively("carried_positions", carried_positions, native)


def job_message_id(ids: str, created_at: float, job_id: str, position: int, identity: str) -> str:
    """The id of a job's message, made the job's way (`ids`: `position` or `identity`)."""
    if ids == POSITION_IDS:
        return positional_message_id(created_at, job_id, position)
    return message_id(created_at, job_id, identity)


def shown_message_id(
    ids: str, created_at: float, job_id: str, position: int, identity: str | None
) -> str | None:
    """The id the views name a sent user's message by (`job_message_id`); None for a
    user without an identity (None or "") in a job of `identity` ids, which has none."""
    if ids != POSITION_IDS and not identity:
        return None
    return job_message_id(ids, created_at, job_id, position, identity or "")


def message_digest(job_id: str, identity: str) -> str:
    """The last part (24 hex) of an `identity` id, and the key of the user in the job's
    dedupe index (`streams.aggregate.dedupe`), whatever the job's ids."""
    return hashlib.blake2b(f"{job_id}\x00{identity}".encode(), digest_size=12).hexdigest()


MessageDigests = Callable[[str, list[str]], list[str]]


def message_digests(job_id: str, identities: list[str]) -> list[str]:
    """`message_digest` of each identity, in Python (`digest_maker`: natively)."""
    return [message_digest(job_id, identity) for identity in identities]


def digest_maker(native: bool = True) -> MessageDigests:
    """`message_digests`, natively (native/src/ingest_keys.rs, about four times faster)
    if asked for (`Settings.native`) and installed."""
    return natively("message_digests", message_digests, native)


Identities = Callable[[list[JsonObject]], list[str | None]]


def identities_of(users: list[JsonObject]) -> list[str | None]:
    """`identity_of` each user, in Python (`identity_reader`: natively)."""
    return [identity_of(user) for user in users]


def identity_reader(native: bool = True) -> Identities:
    """`identities_of`, natively (native/src/ingest_keys.rs, about three times faster)
    if asked for (`Settings.native`) and installed."""
    return natively("identities", identities_of, native)


def message_id_prefix(created_at: float) -> str:
    """The part of a job's message ids that every user shares."""
    return f"1-{int(created_at) & 0xFFFFFFFF:08x}-"
