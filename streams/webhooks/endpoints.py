"""One endpoint's deliveries: a bounded queue, a few workers, one HTTP client.

Each endpoint (a subscription) has its own queue of at most
`BULKSTREAM_WEBHOOK_QUEUE_SIZE` messages and `BULKSTREAM_WEBHOOK_CONCURRENCY`
workers, each sending one request at a time, and its own connection pool of
as many connections. A slow or dead endpoint fills its own queue and holds
its own workers, nothing else: `offer` never waits (the dispatcher parks what
a full queue refuses on the retry topic), and every attempt ends within
`BULKSTREAM_WEBHOOK_TIMEOUT_SECONDS`, resolving the host included. What an
attempt came to goes to the dispatcher's `handle`.

An attempt: the host resolved and checked against the URL policy
(`streams.webhooks.targets`), then a POST of the message, signed
(`streams.webhooks.signing`), to the checked address; redirects are not
followed, and at most `MAX_RESPONSE_BYTES` of the answer are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

import httpx

from streams.settings import Settings
from streams.webhooks import signing, targets
from streams.webhooks.subscriptions import Subscription

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 16 * 1024  # read of an answer, at most (the rest is not waited for)
USER_AGENT = "bulkstream-webhooks/1"


class Outcome(StrEnum):
    DELIVERED = "delivered"  # a 2xx
    FAILED = "failed"  # another status
    GONE = "gone"  # 410: the endpoint is disabled
    TIMEOUT = "timeout"
    ERROR = "error"  # no answer: connection refused, reset, TLS, ...
    REFUSED = "refused"  # the host resolves to an address the policy refuses (or to none)
    DROPPED = "dropped"  # not attempted: the endpoint was deleted or disabled meanwhile


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    error: str | None = None  # what went wrong, for the retry record and the DLQ


@dataclass
class Delivery:
    """One webhook message for one endpoint, and how it has fared."""

    webhook_id: str
    subscription_id: str
    tenant: str
    type: str
    body: bytes
    failures: int  # attempts that failed so far
    first_at: float  # when its event was first read (Unix seconds)
    tier: int  # the retry tier it was read from (-1: a fresh event)
    last_error: str | None
    on_settled: Callable[[], None] = field(repr=False)
    settled: bool = False

    def settle(self) -> None:
        """Its source record may be committed as far as this message goes (once)."""
        if not self.settled:
            self.settled = True
            self.on_settled()


Handler = Callable[[Delivery, Attempt], Awaitable[None]]


def tls_context() -> ssl.SSLContext:
    """One TLS context for every endpoint's client (loading the CAs once)."""
    return httpx.create_ssl_context()


class Endpoint:
    def __init__(
        self,
        subscription: Subscription,
        settings: Settings,
        resolver: targets.Resolver,
        tls: ssl.SSLContext,
        handle: Handler,
    ) -> None:
        self.subscription: Subscription | None = subscription
        self.timeout = settings.webhook_timeout_seconds
        self.resolver = resolver
        self.handle = handle
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(settings.webhook_queue_size)
        self.client = httpx.AsyncClient(
            verify=tls,
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(
                max_connections=settings.webhook_concurrency,
                max_keepalive_connections=settings.webhook_concurrency,
            ),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the request goes where it was checked
        )
        self.closing = False
        self._idle: set[asyncio.Task[None]] = set()
        self.workers = [
            asyncio.create_task(self._work(), name=f"webhook-{subscription.id}-{n}")
            for n in range(settings.webhook_concurrency)
        ]

    @property
    def active(self) -> bool:
        return self.subscription is not None and not self.subscription.disabled

    def offer(self, delivery: Delivery) -> bool:
        """Queue a message; False (at once) when the queue is full."""
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            return False
        return True

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not self.closing:
            self._idle.add(task)
            try:
                delivery = await self.queue.get()
            finally:
                self._idle.discard(task)
            try:
                attempt = await self.attempt(delivery) if self.active else Attempt(Outcome.DROPPED)
            except Exception as exc:  # a bug or an odd input: tried again, never a dead worker
                log.exception("webhook %s: the attempt failed", delivery.webhook_id)
                attempt = Attempt(Outcome.ERROR, f"{type(exc).__name__}: {exc}"[:500])
            try:
                await self.handle(delivery, attempt)
            except Exception:
                # Left unsettled: the source is not committed past it, a restart sends it again.
                log.exception("webhook %s: handling the attempt failed", delivery.webhook_id)
            finally:
                self.queue.task_done()

    async def attempt(self, delivery: Delivery) -> Attempt:
        subscription = self.subscription
        assert subscription is not None
        timestamp = int(time.time())
        headers = {
            **signing.headers(subscription.secret, delivery.webhook_id, timestamp, delivery.body),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        try:
            async with asyncio.timeout(self.timeout):
                target = targets.parse(subscription.url)
                address = await self.resolver.address(target)
                url, host, extensions = targets.pinned(target, address)
                request = self.client.build_request(
                    "POST",
                    url,
                    content=delivery.body,
                    headers={**headers, **host},
                    extensions=extensions,
                )
                response = await self.client.send(request, stream=True)
                try:
                    await _read_some(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            return Attempt(Outcome.TIMEOUT, f"no answer within {self.timeout:g} s")
        except targets.Refused as exc:
            return Attempt(Outcome.REFUSED, str(exc))
        except httpx.TimeoutException:
            return Attempt(Outcome.TIMEOUT, f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt(Outcome.ERROR, f"{type(exc).__name__}: {exc}"[:500])
        status = response.status_code
        if 200 <= status < 300:
            return Attempt(Outcome.DELIVERED)
        if status == 410:
            return Attempt(Outcome.GONE, "HTTP 410")
        return Attempt(Outcome.FAILED, f"HTTP {status}")

    async def close(self, grace: float) -> None:
        """Stop: idle workers at once, busy ones once their attempt is handled (within
        `grace` seconds, else they are cancelled: their messages stay unsettled)."""
        self.closing = True
        for task in self._idle:
            task.cancel()
        _, late = await asyncio.wait(self.workers, timeout=grace)
        for task in late:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.workers, return_exceptions=True)
        await self.client.aclose()


async def _read_some(response: httpx.Response) -> None:
    """Read the answer up to `MAX_RESPONSE_BYTES` (a short one whole, so that its connection
    is kept for the next request)."""
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read > MAX_RESPONSE_BYTES:
            return
