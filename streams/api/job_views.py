"""An API process's copies of the job views it answered lately, each dropped the moment
a worker writes that view again.

`GET /bulk/{id}` is the request clients repeat (polling a job until it is
`COMPLETED`); a copy answers it without a round trip to Redis or a model built
anew. Every write of a job's view is announced on `keys.jobs_channel`, in the
same script or transaction as the write (`streams.views.store`); the API's one
subscription (`streams.api.wakeups.ResultWakeups`) drops the copy it names.

A copy is never staler than the notices allow:

* copies are kept only while the subscription is confirmed; when it breaks,
  every copy goes, and none is kept until it is confirmed again;
* a copy read from Redis is kept only if no notice (of any job) and no break
  came while it was read (`generation`), so a write that raced the read cannot
  leave the older view behind;
* a copy lives at most `ttl` seconds whatever happens.
"""

from __future__ import annotations

import time
from collections import OrderedDict

# How long a copy may answer at most, notice or not.
TTL_SECONDS = 1.0
# Copies kept at most (the least recently answered go first).
MAX_COPIES = 10_000


class JobViewCache:
    def __init__(self, ttl: float = TTL_SECONDS, size: int = MAX_COPIES) -> None:
        self.ttl, self.size = ttl, size
        self.copies: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
        self.generation = 0  # moves on every notice, break and resubscription
        self.live = False  # the subscription is confirmed: notices reach us

    def get(self, tenant: str, job_id: str) -> bytes | None:
        """The answer kept for this tenant's job, if any and fresh."""
        key = (tenant, job_id)
        copy = self.copies.get(key)
        if copy is None:
            return None
        if copy[0] <= time.monotonic():
            del self.copies[key]
            return None
        self.copies.move_to_end(key)
        return copy[1]

    def begin(self) -> int:
        """Call before reading a view from Redis; give the value to `keep`."""
        return self.generation if self.live else -1

    def keep(self, tenant: str, job_id: str, answer: bytes, since: int) -> None:
        """Keep the answer made from a view read after `begin` gave `since`, unless a
        notice or a break came meanwhile."""
        if since < 0 or since != self.generation or not self.live:
            return
        self.copies[(tenant, job_id)] = (time.monotonic() + self.ttl, answer)
        self.copies.move_to_end((tenant, job_id))
        while len(self.copies) > self.size:
            self.copies.popitem(last=False)

    def drop(self, tenant: str, job_id: str) -> None:
        """A worker wrote this job's view."""
        self.generation += 1
        self.copies.pop((tenant, job_id), None)

    def subscribed(self) -> None:
        """The subscription is confirmed: notices reach us from now on."""
        self.generation += 1
        self.live = True

    def lost(self) -> None:
        """The subscription broke: notices may be missed, so nothing is kept."""
        self.generation += 1
        self.live = False
        self.copies.clear()
