"""Whether the engine already knows a message went out: asked before a give-up is
reported, so a send read again cannot turn a delivered message into FAILED.

A send is posted again when the worker that took it died (or lost its
partition) after the provider took it and before the offset was committed.
If that second delivery then fails (the provider down for every attempt, or
refusing the duplicate), the worker would report FAILED. FAILED outranks
SENT (`docs/architecture.md`, the order of the states), so the message would
end FAILED, and a retry job would send it to its user a second time.

So before it reports a give-up, the worker reads the message's delivery entry
in the Redis views (as `GET /messages/{id}` does): a message already reported
in any state but FAILED went out once, and the give-up is not reported
(counted in `bulkstream_deliver_withheld_total` and logged instead). Every
other give-up is reported: a message without an entry, one of a send without
a tenant, and any whose entry cannot be read (Redis down or slow), since a
report of what happened is better than none. After a read fails, the views
are not asked again for `retry_seconds` (5 s): the give-ups meanwhile are
reported at once, and one warning per failed read says how many were, so an
outage of Redis neither delays the reports by a time-out each nor floods the
log.

What this cannot see: a first report not folded yet when the give-up comes.
The give-up comes after every attempt and its back-off (7.5 s with the
defaults), the fold within about a second of the report.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from schemas.delivery import DeliveryStatus
from streams.settings import Settings
from streams.views.connection import redis_from_url
from streams.views.delivery import DeliveryViews

log = logging.getLogger(__name__)

# A read of the views that takes longer is given up: the give-up is reported.
TIMEOUT_SECONDS = 2.0
# After a failed read, the views are left alone this long.
RETRY_SECONDS = 5.0


class KnownOutcomes:
    """The delivery views, read for one question: did this message go out already?"""

    def __init__(self, settings: Settings, retry_seconds: float = RETRY_SECONDS) -> None:
        self.retry_seconds = retry_seconds
        self.down_until = 0.0  # monotonic time before which the views are not asked
        self.unasked = 0  # give-ups reported without asking, since the last warning
        self.redis = redis_from_url(
            settings.redis_url,
            socket_timeout=TIMEOUT_SECONDS,
            socket_connect_timeout=TIMEOUT_SECONDS,
        )
        self.views = DeliveryViews(self.redis, settings.redis_prefix, settings.retention_seconds)

    async def went_out(self, tenant: str | None, message_id: str) -> bool:
        """True if the views hold the message in a state other than FAILED; False
        when they do not, or cannot be read."""
        if tenant is None:
            return False
        if time.monotonic() < self.down_until:
            self.unasked += 1
            return False
        try:
            entry = await self.views.entry(tenant, message_id)
        except (RedisError, OSError) as exc:
            log.warning(
                "deliver: the views of %s could not be read (%s); give-ups are reported "
                "without asking them for %g s (%d were since the last such warning)",
                message_id,
                exc,
                self.retry_seconds,
                self.unasked,
            )
            self.unasked = 0
            self.down_until = time.monotonic() + self.retry_seconds
            return False
        reached = entry.get("times") if entry is not None else None
        return isinstance(reached, dict) and any(
            state != DeliveryStatus.FAILED.value for state in reached
        )

    async def close(self) -> None:
        await self.redis.aclose()
