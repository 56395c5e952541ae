"""Waking the requests that wait for a command's result, instead of polling Redis for it.

The worker announces each result it writes on one pub/sub channel
(`streams.views.keys.results_channel`, payload `streams.views.notices`). One
subscriber per API process (`ResultWakeups`, one Redis connection of its own)
sets the event of every request waiting for that result, or for any result of
that job. A request registers before its first read of the result, so a
notice published between that read and its wait still wakes it.

Pub/sub is only a shortcut: a notice can be lost (the subscriber reconnecting,
a worker of an older version that does not publish), so `until` re-reads
anyway every `FALLBACK_SECONDS`. Redis down only slows the answers to that
pace; it never fails a request by itself.

The same connection listens to `keys.jobs_channel` when given the process's
`JobViewCache` (`streams.api.job_views`): each notice there drops the copy of
that job's view, and the cache is told when the subscription is confirmed or
lost, so it keeps copies only while no notice can be missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from streams.api.job_views import JobViewCache
from streams.views import keys, notices
from streams.views.connection import redis_from_url

log = logging.getLogger(__name__)
T = TypeVar("T")

# How often a waiter re-reads the result even if no notice woke it.
FALLBACK_SECONDS = 0.075
# Reconnecting after the subscription broke: from the first pause, doubling, at most the cap.
RECONNECT_FIRST_SECONDS = 0.1
RECONNECT_CAP_SECONDS = 5.0
# How long one read of the subscription waits; between reads redis-py pings the
# server every HEALTH_CHECK_SECONDS, so a dead connection is noticed.
LISTEN_SECONDS = 1.0
# How long `close` waits for the listening task to end before it asks again.
CLOSE_STEP_SECONDS = 0.5
HEALTH_CHECK_SECONDS = 15

# (tenant, job id, command id); command id None: any result of the job.
WaiterKey = tuple[str, str, str | None]


class ResultWakeups:
    """The API process's one subscription to the results channel, and the waiters on it;
    with `job_views`, to the jobs channel too, whose notices drop the copies kept there."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        name: str = "bulkstream-api-results",
        job_views: JobViewCache | None = None,
    ) -> None:
        self.channel = keys.results_channel(prefix)
        self.jobs_channel = keys.jobs_channel(prefix)
        self.job_views = job_views
        # Its own client: a subscribed connection serves nothing else. No retries of
        # its own either: a failure reaches `_run`, which reconnects and resubscribes.
        self.redis = redis_from_url(
            redis_url,
            socket_timeout=5.0,
            socket_connect_timeout=2.0,
            socket_keepalive=True,
            health_check_interval=HEALTH_CHECK_SECONDS,
            retry=Retry(NoBackoff(), 0),
            client_name=name,
        )
        self.waiters: dict[WaiterKey, set[asyncio.Event]] = {}
        # True while the server has confirmed the subscription.
        self.subscribed = False
        self._outage = False  # warned about, not over yet
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Subscribe in the background (the API starts even while Redis is down)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="result-wakeups")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Under uvloop, a cancellation that lands while redis-py reads the subscription
            # can be lost: the read goes on, and an API stopped right after it started
            # (its port taken) waited for ever. Asked again, with the connections closed
            # under the read, the task ends.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=CLOSE_STEP_SECONDS)
                if not task.done():
                    await self.redis.connection_pool.disconnect()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.redis.aclose()

    @contextlib.contextmanager
    def waiting(self, tenant: str, job_id: str, command_id: str | None) -> Iterator[asyncio.Event]:
        """An event set when this result (command_id None: any result of the job) is
        announced, registered for the duration of the block."""
        key = (tenant, job_id, command_id)
        event = asyncio.Event()
        self.waiters.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            events = self.waiters.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del self.waiters[key]

    def notify(self, raw: bytes | str) -> None:
        """Wake whoever waits for the result a notice names."""
        name = notices.decode(raw)
        if name is None:
            return
        tenant, job_id, command_id = name
        for key in ((tenant, job_id, command_id), (tenant, job_id, None)):
            for event in self.waiters.get(key, ()):
                event.set()

    def wake_all(self) -> None:
        """Every waiter re-reads: notices published while unsubscribed were lost."""
        for events in self.waiters.values():
            for event in events:
                event.set()

    async def _run(self) -> None:
        """Subscribe, listen; on any failure, reconnect with back-off, for ever."""
        pause = RECONNECT_FIRST_SECONDS
        while True:
            try:
                await self._listen()
            except Exception as exc:  # any: this task must outlive whatever happens
                if self.job_views is not None:
                    self.job_views.lost()
                if self.subscribed:
                    # It worked until now: a new outage, a fresh back-off.
                    pause = RECONNECT_FIRST_SECONDS
                self.subscribed = False
                if not self._outage:
                    self._outage = True
                    log.warning(
                        "result wake-ups: no subscription to %s (%s: %s); answers fall back "
                        "to re-reading every %.0f ms until it is back",
                        self.channel,
                        type(exc).__name__,
                        exc,
                        FALLBACK_SECONDS * 1000,
                    )
            # Jittered, so that API processes do not all reconnect at the same instant.
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, RECONNECT_CAP_SECONDS)

    async def _listen(self) -> None:
        """Subscribe and dispatch notices until the connection fails (it raises)."""
        pubsub = self.redis.pubsub()
        channels = [self.channel] + ([self.jobs_channel] if self.job_views is not None else [])
        jobs_channel = self.jobs_channel.encode()
        try:
            await pubsub.subscribe(*channels)
            while True:
                message = await pubsub.get_message(timeout=LISTEN_SECONDS)
                if message is None:
                    continue
                if message["type"] == "message":
                    if message["channel"] == jobs_channel and self.job_views is not None:
                        job = notices.decode_job(message["data"])
                        if job is not None:
                            self.job_views.drop(*job)
                    else:
                        self.notify(message["data"])
                elif message["type"] == "subscribe" and message["data"] == len(channels):
                    # Confirmed (every channel): no notice is missed from now on, and what
                    # was written before is found by the re-read every waiter does now.
                    self.subscribed = True
                    if self.job_views is not None:
                        self.job_views.subscribed()
                    if self._outage:
                        self._outage = False
                        log.info("result wake-ups: subscribed to %s again", self.channel)
                    self.wake_all()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # untyped in older redis-py


async def until(
    read: Callable[[], Awaitable[T | None]],
    woken: asyncio.Event,
    deadline: float,
    fallback: float = FALLBACK_SECONDS,
) -> T | None:
    """`read()` until it gives a value or the deadline (time.monotonic) passes: once
    now, then each time `woken` is set, and every `fallback` seconds regardless."""
    while True:
        # Cleared before the read: a notice that lands during it sets it again.
        woken.clear()
        found = await read()
        if found is not None:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(fallback, left)):
                await woken.wait()
