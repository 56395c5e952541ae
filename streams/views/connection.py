"""The Redis clients of bulkstream: redis-py's asyncio client, its commands packed by hiredis.

redis-py's asyncio connection packs each command into the Redis protocol in
Python, an argument at a time; the views write commands of thousands of
arguments (a 1,000-user ingest's users view is one HSET of 2,002), where that
packing took 1.9 ms against hiredis's 0.35 (`hiredis.pack_command`, in C,
already installed for its reply parser). The connection classes here pack
with hiredis, through redis-py's public `connection_class` option, and leave
to redis-py what hiredis does not take (a command name with a space in it, an
argument of a type it refuses: redis-py then packs it, or raises its own
error). Both give the same bytes for what both take
(`tests/streams/views/test_connection.py`).

The worker's client (`patient_redis`) waits out what a Redis outage raises,
retrying for ever, and counts and logs each wait (`PatientRetry`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from itertools import islice
from typing import Any, TypeVar

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, OutOfMemoryError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

# Keys an EXPIRE round trip of `expire_each` (about 1 MB of commands).
EXPIRE_CHUNK = 10_000


class _HiredisPacking(AbstractConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0] if args else None
        if isinstance(name, str | bytes) and (
            " " in name if isinstance(name, str) else b" " in name
        ):
            return super().pack_command(*args)  # "CONFIG GET": redis-py splits the name
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


class PackedConnection(_HiredisPacking, Connection):
    """A TCP connection (`redis://`)."""


class PackedSSLConnection(_HiredisPacking, SSLConnection):
    """A TLS connection (`rediss://`)."""


class PackedUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """A Unix socket connection (`unix://`)."""


_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: PackedConnection,
    SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
}


def redis_from_url(url: str, **options: Any) -> aioredis.Redis:
    """`redis.asyncio.from_url(url, **options)`, with connections that pack by hiredis."""
    settings: dict[str, Any] = options | parse_url(url)  # as redis-py: the URL's options win
    settings["connection_class"] = _PACKED[settings.get("connection_class", Connection)]
    return aioredis.Redis.from_pool(ConnectionPool(**settings))


def patient_redis(url: str) -> aioredis.Redis:
    """The worker's Redis: an outage (down, restarting, paused, full) is waited out,
    never raised.

    Views are derived, so an agent may as well wait for Redis: its event stays
    unacked and nothing is lost. A client that raised instead would take the
    worker down, and a full Redis (`maxmemory` under `noeviction`) did: every
    restart crashed again on its first write. Time-outs turn a paused server into
    retries too."""
    return redis_from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0, retry=PatientRetry())


# What a worker waits out: Redis away, slow, loading its data, or full (over `maxmemory`
# under `noeviction`: until keys expire, or the operator makes room).
PATIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    OutOfMemoryError,
)
WAIT_LOG_SECONDS = 30.0  # a wait for Redis is logged at most this often
_logged_at = -WAIT_LOG_SECONDS


class PatientRetry(Retry):
    """redis-py's retry, for ever (0.1 s, then doubling up to 2 s), on `PATIENT_ERRORS`;
    each failure waited out is counted (`bulkstream_redis_waits_total`, by error) and
    said in the log, at most every `WAIT_LOG_SECONDS`."""

    def __init__(self) -> None:
        super().__init__(
            ExponentialBackoff(cap=2.0, base=0.1), retries=-1, supported_errors=PATIENT_ERRORS
        )

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[[Exception], Any] | Callable[[Exception, int], Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        async def attempt() -> T:
            try:
                return await do()
            except PATIENT_ERRORS as error:
                _waiting(error)
                raise

        return await super().call_with_retry(attempt, fail, is_retryable, with_failure_count)


def _waiting(error: Exception) -> None:
    global _logged_at
    metrics.REDIS_WAITS.labels(type(error).__name__).inc()
    now = time.monotonic()
    if now - _logged_at >= WAIT_LOG_SECONDS:
        _logged_at = now
        log.warning("Redis: %s (%s); waiting for it, retrying", error, type(error).__name__)


async def send_packed(redis: aioredis.Redis, commands: bytes, replies: int) -> None:
    """Send commands already in the Redis protocol, on one connection of `redis`'s
    pool, and read their `replies`: an error reply raises (as redis-py's `ResponseError`),
    and the connection, its other replies unread, is dropped. For commands whose
    arguments are made as protocol bytes already (the delivery fold's views), which a
    pipeline would take back apart into an object an argument.

    A connection error or time-out is retried as `redis`'s own commands are (its
    `retry`: the worker's waits out an outage, `streams.views.connection.patient_redis`), all
    the commands again, on a new connection: they must be safe to repeat."""

    async def attempt() -> None:
        pool = redis.connection_pool
        # redis-py leaves this public method unannotated.
        connection: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(commands)
            for _ in range(replies):
                await connection.read_response()
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)

    async def failed(_error: Exception) -> None:
        """Nothing more: `attempt` dropped the connection, and the wait is the retry's to
        say (the worker's, at most every `WAIT_LOG_SECONDS`), as for redis-py's own
        commands; a line here said each failure again, on every attempt."""

    retry = redis.get_retry()
    if retry is None:
        await attempt()
    else:
        await retry.call_with_retry(attempt, failed)


def bulk_strings(values: Iterable[bytes]) -> bytes:
    """Values as bulk strings of the Redis protocol, one after the other."""
    return b"".join(b"$%d\r\n%s\r\n" % (len(value), value) for value in values)


def expire_command(key: bytes, ttl: int) -> bytes:
    """An EXPIRE of `key` after `ttl` seconds, in the Redis protocol."""
    return b"*3\r\n" + bulk_strings((b"EXPIRE", key, b"%d" % ttl))


async def expire_each(
    redis: aioredis.Redis, names: Iterable[str], ttl: int, chunk: int = EXPIRE_CHUNK
) -> None:
    """EXPIRE each key of `names` after `ttl` seconds, `chunk` keys a round trip (a
    finished 10M-user job's views are 300,000 keys: their commands queued at once took
    the worker 180 MB)."""
    names = iter(names)
    while taken := list(islice(names, chunk)):
        commands = b"".join(expire_command(name.encode(), ttl) for name in taken)
        await send_packed(redis, commands, len(taken))
