"""Every Redis key bulkstream writes, in one place, namespaced by prefix and tenant.

    {prefix}:{tenant}:job:{job}                 hash  the job summary view
    {prefix}:{tenant}:job:{job}:users:{bucket}  hash  position -> user as ingested
    {prefix}:{tenant}:job:{job}:status:{bucket} hash  position -> why that user failed (only those)
    {prefix}:{tenant}:job:{job}:pages           str   bitmap: bit n set once page n is fanned out
    {prefix}:{tenant}:result:{command_id}       str   the command's result (for the API)
    {prefix}:{tenant}:idem:{sha256}             str   an Idempotency-Key's claim or answer
    {prefix}:views:alive                        str   present while the views are whole

Users are bucketed by position (USERS_PER_BUCKET a bucket), so a page of the
user list is one bucket (O(page)). A user's status is read, not stored: ERROR
when its status bucket names it, else ENQUEUED when the bit of its fan-out page
is set, else PENDING; so a page fanned out is one SETBIT, not one field per
user. (Views written by an earlier version hold ENQUEUED in the status
buckets; they read the same.)
"""

from __future__ import annotations

USERS_PER_BUCKET = 100


def job(prefix: str, tenant: str, job_id: str) -> str:
    return f"{prefix}:{tenant}:job:{job_id}"


def users_bucket(prefix: str, tenant: str, job_id: str, bucket: int) -> str:
    return f"{prefix}:{tenant}:job:{job_id}:users:{bucket}"


def status_bucket(prefix: str, tenant: str, job_id: str, bucket: int) -> str:
    return f"{prefix}:{tenant}:job:{job_id}:status:{bucket}"


def pages(prefix: str, tenant: str, job_id: str) -> str:
    return f"{prefix}:{tenant}:job:{job_id}:pages"


def result(prefix: str, tenant: str, command_id: str) -> str:
    return f"{prefix}:{tenant}:result:{command_id}"


def idempotency(prefix: str, tenant: str, key_digest: str) -> str:
    return f"{prefix}:{tenant}:idem:{key_digest}"


def views_alive(prefix: str) -> str:
    return f"{prefix}:views:alive"


def bucket_of(position: int) -> int:
    return position // USERS_PER_BUCKET
