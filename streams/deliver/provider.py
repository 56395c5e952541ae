"""One send handed to an HTTP provider: the POST, retried with back-off, and its outcome.

The send goes as it is on the topic (its JSON bytes), with `content-type:
application/json` and `idempotency-key: <messageId>`, so a provider that
keeps idempotency keys takes a send posted twice (a retry, a replay after a
crash) once.

What is tried again: a 5xx, 408 or 429 answer, a timeout, a connection
error. Any other answer is final: a 2xx delivered, a 3xx or another 4xx
failed at once (trying again would get the same answer). Between attempts
the wait doubles from `Backoff.first` up to `Backoff.most`, half of it fixed
and half random (so the retries of many sends that failed together spread
out); a `Retry-After` of seconds lengthens it, up to `Backoff.most`.

Requests under way at once: one per client of `Lanes`, each client with a
single connection (kept alive). One client with a pool of 64 connections
spent most of the worker's time in httpcore checking every connection of
the pool on every request; 64 pools of one do not. A send waiting out its
back-off holds no lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from schemas.delivery import MAX_REASON
from streams import metrics

# Answers worth trying again besides every 5xx: a request timeout, too many requests.
RETRIED_CODES = frozenset({408, 429})
# How much of a final answer's body a report's reason keeps.
BODY_IN_REASON = 200


def retryable(code: int) -> bool:
    """Whether an HTTP answer with this status code is worth trying again."""
    return code >= 500 or code in RETRIED_CODES


@dataclass(frozen=True)
class Backoff:
    """The wait before each retry: exponential, capped, with jitter."""

    first: float = 0.5
    most: float = 30.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the second attempt)."""
        ceiling = min(self.most, self.first * 2.0 ** min(retry - 1, 60))
        wait = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.most))
        return wait


@dataclass(frozen=True)
class Outcome:
    """How a send ended: delivered (a 2xx), or failed with a reason."""

    delivered: bool
    attempts: int
    reason: str | None = None
    final: bool = False  # failed on an answer not worth trying again (not out of attempts)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:  # an HTTP date: the back-off alone will do
        return None


def _answer_reason(response: httpx.Response) -> str:
    body = " ".join(response.text[:BODY_IN_REASON].split())
    return f"HTTP {response.status_code}" + (f": {body}" if body else "")


class Lanes:
    """`count` HTTP clients of one connection each; a request takes one for its time."""

    def __init__(self, count: int, timeout: float) -> None:
        tls = httpx.create_ssl_context()  # made once: each takes milliseconds
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.clients = [
            httpx.AsyncClient(timeout=timeout, limits=one, verify=tls) for _ in range(count)
        ]
        self.free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for client in self.clients:
            self.free.put_nowait(client)

    @contextlib.asynccontextmanager
    async def lane(self) -> AsyncIterator[httpx.AsyncClient]:
        client = await self.free.get()
        try:
            yield client
        finally:
            self.free.put_nowait(client)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


class HttpProvider:
    """POSTs sends to `url`, at most one request per lane at once."""

    def __init__(
        self, lanes: Lanes, url: str, attempts: int = 5, backoff: Backoff | None = None
    ) -> None:
        self.lanes = lanes
        self.url = url
        self.attempts = max(attempts, 1)
        self.backoff = backoff or Backoff()

    async def deliver(self, send: bytes, message_id: str) -> Outcome:
        headers = {"content-type": "application/json", "idempotency-key": message_id}
        reason = "never tried"
        for attempt in range(1, self.attempts + 1):
            retry_after = None
            async with self.lanes.lane() as client:
                try:
                    response = await client.post(self.url, content=send, headers=headers)
                except httpx.TimeoutException as exc:
                    metrics.DELIVER_ATTEMPTS.labels("timeout").inc()
                    reason = f"timeout ({type(exc).__name__})"
                except httpx.HTTPError as exc:  # transport, decoding, protocol: tried again
                    metrics.DELIVER_ATTEMPTS.labels("error").inc()
                    reason = f"connection error ({type(exc).__name__}: {exc})"
                else:
                    code = response.status_code
                    metrics.DELIVER_ATTEMPTS.labels(f"{code // 100}xx").inc()
                    if 200 <= code < 300:
                        return Outcome(delivered=True, attempts=attempt)
                    reason = _answer_reason(response)
                    if not retryable(code):
                        return Outcome(False, attempt, reason[:MAX_REASON], final=True)
                    retry_after = _retry_after(response)
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff.delay(attempt, retry_after))
        reason = f"{reason}, after {self.attempts} attempt(s)"
        return Outcome(False, self.attempts, reason[:MAX_REASON])
