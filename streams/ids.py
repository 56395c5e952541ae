"""Courier-like identifiers: job ids (random) and message ids (deterministic)."""

from __future__ import annotations

import hashlib
import secrets
import time


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
    """The send's id for one (job, user): the same inputs always give the same id.

    Shaped like Courier's `1-61e9dd7d-13c08339357603322c433d55`: the job's
    creation time, then 24 hex of a hash of job id and user identity.
    """
    return message_id_prefix(created_at) + message_digest(job_id, identity)


def message_digest(job_id: str, identity: str) -> str:
    """The last part of a message id (24 hex): it alone tells the job's users apart."""
    return hashlib.blake2b(f"{job_id}\x00{identity}".encode(), digest_size=12).hexdigest()


def message_id_prefix(created_at: float) -> str:
    """The part of a job's message ids that every user shares."""
    return f"1-{int(created_at) & 0xFFFFFFFF:08x}-"
