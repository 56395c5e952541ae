"""Every Redis key bulkstream writes, in one place, namespaced by prefix and tenant.

    {prefix}:{T}:job:{J}                        hash  the job summary view
    {prefix}:{T}:job:{J}:users:{bucket}         hash  position -> user as ingested
    {prefix}:{T}:job:{J}:status:{bucket}        hash  position -> why that user failed (only those)
    {prefix}:{T}:job:{J}:pages                  str   bitmap: bit n set once page n is fanned out
    {prefix}:{T}:job:{J}:delivery:{bucket}      hash  position -> its message's delivery state
    {prefix}:{T}:messages:{stamp}:{d4}          hash  message id digest -> "position job id"
    {prefix}:{T}:message-jobs:{stamp}           set   jobs with reports whose ids carry positions
    {prefix}:{T}:job:{J}:result:{command_id}    str   a command's result (for the API)
    {prefix}:results                            chan  pub/sub: each result as it is written
    {prefix}:{T}:idem:{sha256}                  str   an Idempotency-Key's claim or answer
    {prefix}:views:v2:alive                     str   present while the views are whole
    {prefix}:{T}:webhooks                       hash  webhook id -> `<offset>:<record>` (its latest)
    {prefix}:{T}:webhooks:gone                  zset  deleted webhook id -> its tombstone's offset
    {prefix}:webhooks:alive                     str   present while the webhooks view is whole

{T} and {J} are the tenant and the job id, each written as `<length>:<text>`,
so that no tenant or job id, whatever characters it holds (`:` included),
names another key: the length says where the id ends.

Users are bucketed by position (USERS_PER_BUCKET a bucket), so a page of the
user list is one bucket (O(page)). A user's status is read, not stored: ERROR
when its status bucket names it, else ENQUEUED when the bit of its fan-out page
is set, else PENDING; so a page fanned out is one SETBIT, not one field per
user.
"""

from __future__ import annotations

USERS_PER_BUCKET = 100


def _id(text: str) -> str:
    """An id as it appears in a key: its length, then itself."""
    return f"{len(text)}:{text}"


def job(prefix: str, tenant: str, job_id: str) -> str:
    return f"{prefix}:{_id(tenant)}:job:{_id(job_id)}"


def users_bucket(prefix: str, tenant: str, job_id: str, bucket: int) -> str:
    return f"{job(prefix, tenant, job_id)}:users:{bucket}"


def status_bucket(prefix: str, tenant: str, job_id: str, bucket: int) -> str:
    return f"{job(prefix, tenant, job_id)}:status:{bucket}"


def pages(prefix: str, tenant: str, job_id: str) -> str:
    return f"{job(prefix, tenant, job_id)}:pages"


def delivery_bucket(prefix: str, tenant: str, job_id: str, bucket: int) -> str:
    return f"{job(prefix, tenant, job_id)}:delivery:{bucket}"


def messages(prefix: str, tenant: str, message_id: str) -> str:
    """The bucket of the message index that holds this message id (`1-<stamp>-<digest>`):
    by the job's creation second and the digest's first 4 hex, so each holds a few
    ids (compact in Redis) and expires with the jobs of that second."""
    stamp, digest = message_id[2:10], message_id[-24:]
    return f"{prefix}:{_id(tenant)}:messages:{stamp}:{digest[:4]}"


def message_jobs(prefix: str, tenant: str, message_id: str) -> str:
    """The set of the jobs created in this message id's second (`1-<stamp>-...`) whose
    reports were folded with ids that carry their positions (`streams.ids`): such an id
    is found by its digest, checked against each job of the set, not by an index
    field a message."""
    return f"{prefix}:{_id(tenant)}:message-jobs:{message_id[2:10]}"


def result(prefix: str, tenant: str, job_id: str, command_id: str) -> str:
    return f"{job(prefix, tenant, job_id)}:result:{command_id}"


def jobs_channel(prefix: str) -> str:
    """The pub/sub channel (not a key) on which each write of a job's view is announced,
    so an API process drops its copy of it (`streams.api.job_views`)."""
    return f"{prefix}:jobs"


def results_channel(prefix: str) -> str:
    """The pub/sub channel (not a key) on which each result written is announced, so
    the API wakes the request waiting for it (`streams.views.notices`)."""
    return f"{prefix}:results"


def idempotency(prefix: str, tenant: str, key_digest: str) -> str:
    return f"{prefix}:{_id(tenant)}:idem:{key_digest}"


def views_alive(prefix: str) -> str:
    # v2: the layout with length-prefixed ids; a worker that finds no marker of
    # this layout rebuilds the views in it.
    return f"{prefix}:views:v2:alive"


def bucket_of(position: int) -> int:
    return position // USERS_PER_BUCKET


def webhooks(prefix: str, tenant: str) -> str:
    return f"{prefix}:{_id(tenant)}:webhooks"


def webhooks_gone(prefix: str, tenant: str) -> str:
    return f"{prefix}:{_id(tenant)}:webhooks:gone"


def webhooks_alive(prefix: str) -> str:
    return f"{prefix}:webhooks:alive"
