"""Commands packed by hiredis: the same bytes as redis-py's own packing, the same errors,
and a real Redis that reads them back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hiredis
import orjson
import pytest
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.views.connection import (
    PackedConnection,
    PackedSSLConnection,
    PackedUnixConnection,
    PatientRetry,
    expire_each,
    redis_from_url,
    send_packed,
)


def hiredis_packed(*args: Any) -> bytes:
    """A command as hiredis packs it (its stub types a one-element tuple)."""
    packed: bytes = hiredis.pack_command(args)
    return packed


USERS_VIEW = (
    "HSET",
    "bs:acme:job:1-x:users:0",
    *(
        part
        for n in range(1000)
        for part in (str(n), orjson.dumps({"to": {"email": f"user{n}@example.com"}}))
    ),
)
COMMANDS: list[tuple[Any, ...]] = [
    USERS_VIEW,
    ("SET", "k", 1.5),
    ("SET", b"k", 10**20),
    ("SET", "k", -3),
    ("SET", "k", "é"),
    ("SET", "k", memoryview(b"ab")),
    ("SET", "k", bytearray(b"x")),  # hiredis refuses it; redis-py packs it
    ("CONFIG GET", "maxmemory"),  # a name with a space: redis-py splits it
    ("EVALSHA", "0" * 40, 1, "key", orjson.dumps([["a", "b"]])),
]


def packed(connection: Connection, args: tuple[Any, ...]) -> bytes:
    return b"".join(bytes(chunk) for chunk in connection.pack_command(*args))


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: str(args[0])[:12])
def test_hiredis_packs_the_bytes_redis_py_packs(args: tuple[Any, ...]) -> None:
    assert packed(PackedConnection(), args) == packed(Connection(), args)


@pytest.mark.parametrize("value", [None, True])
def test_what_redis_py_refuses_is_refused_alike(value: object) -> None:
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", value)


def test_every_scheme_gets_its_packing_connection() -> None:
    for url, kind in [
        ("redis://127.0.0.1:1/0", PackedConnection),
        ("rediss://127.0.0.1:1/0", PackedSSLConnection),
        ("unix:///tmp/none.sock", PackedUnixConnection),
    ]:
        client = redis_from_url(url, socket_timeout=1.0)
        assert client.connection_pool.connection_class is kind
        assert client.connection_pool.connection_kwargs["socket_timeout"] == 1.0
        asyncio.run(client.aclose())


def test_a_real_redis_reads_back_what_was_packed(redis_url: str, unique: str) -> None:
    key = f"{unique}:users"

    async def scenario() -> tuple[Any, ...]:
        client = redis_from_url(redis_url)
        try:
            fields = USERS_VIEW[2:]
            await client.hset(key, mapping=dict(zip(fields[::2], fields[1::2], strict=True)))
            async with client.pipeline(transaction=True) as pipe:
                pipe.hlen(key)
                pipe.hget(key, "999")
                pipe.delete(key)
                return tuple(await pipe.execute())
        finally:
            await client.aclose()

    length, last, deleted = asyncio.run(scenario())
    assert (length, deleted) == (1000, 1)
    assert orjson.loads(last) == {"to": {"email": "user999@example.com"}}


def test_commands_sent_packed_are_applied_and_an_error_reply_raises(
    redis_url: str, unique: str
) -> None:
    """`send_packed` reads one reply a command; an error reply raises, and the pool
    hands out a working connection after it (the failed one, its replies unread, is
    dropped)."""
    key, other = f"{unique}:h", f"{unique}:s"
    good = hiredis_packed("HSET", key, "a", "1", "b", "2") + hiredis_packed("EXPIRE", key, 60)
    # WRONGTYPE on the string, then a command whose reply is left unread.
    bad = hiredis_packed("HSET", other, "a", "1") + hiredis_packed("PING")

    async def scenario() -> tuple[Any, ...]:
        client = redis_from_url(redis_url, max_connections=1)
        try:
            await send_packed(client, good, 2)
            await client.set(other, "x")
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await send_packed(client, bad, 2)
            return (await client.hgetall(key), 0 < await client.ttl(key) <= 60)
        finally:
            await client.aclose()

    fields, expires = asyncio.run(scenario())
    assert fields == {b"a": b"1", b"b": b"2"}
    assert expires


def test_every_key_is_expired_chunk_after_chunk(redis_url: str, unique: str) -> None:
    """`expire_each` sets the TTL of every key it is given, whatever the chunk size (a
    last chunk short or full), and leaves the keys it is not given alone."""
    names = [f"{unique}:k{n}" for n in range(23)]

    async def scenario(chunk: int) -> list[int]:
        client = redis_from_url(redis_url)
        try:
            for name in names:
                await client.set(name, "x")
            await expire_each(client, iter(names[:-1]), 60, chunk=chunk)
            return [await client.ttl(name) for name in names]
        finally:
            await client.aclose()

    for chunk in (1, 11, 22, 100):
        *given, alone = asyncio.run(scenario(chunk))
        assert all(0 < ttl <= 60 for ttl in given)
        assert alone == -1


def write_through_a_pause(
    redis_url: str, key: str, retry: Retry, socket_timeout: float
) -> tuple[dict[Any, Any], float]:
    """`send_packed` of one HSET on `key` by a client with this retry and time-out, while
    another client pauses Redis for 1.5 s: what `key` then holds, and the seconds the
    write took."""
    command = hiredis_packed("HSET", key, "a", "1")

    async def scenario() -> tuple[dict[Any, Any], float]:
        client = redis_from_url(redis_url, socket_timeout=socket_timeout, retry=retry)
        paused = redis_from_url(redis_url)
        try:
            await paused.client_pause(1500, all=False)
            started = time.monotonic()
            await asyncio.wait_for(send_packed(client, command, 1), 30)
            took = time.monotonic() - started
            return await client.hgetall(key), took
        finally:
            await client.aclose()
            await paused.aclose()

    return asyncio.run(scenario())


def test_packed_commands_wait_out_a_redis_paused_beyond_the_time_out(
    redis_url: str, unique: str
) -> None:
    """With a client that retries time-outs (as the worker's does), `send_packed` sends
    its commands again once Redis answers, instead of raising its read time-out."""
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.05), -1, (RedisTimeoutError,))
    held, took = write_through_a_pause(redis_url, f"{unique}:h", retry, socket_timeout=0.3)
    assert took > 1.0
    assert held == {b"a": b"1"}


def test_packed_commands_waiting_for_redis_say_so_once(
    redis_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With the worker's retry, a wait for Redis is logged by the retry, at most every
    `WAIT_LOG_SECONDS`, not again by `send_packed` on every attempt."""
    with caplog.at_level("WARNING", logger="streams.views.connection"):
        held, _ = write_through_a_pause(
            redis_url, f"{unique}:h", PatientRetry(), socket_timeout=0.2
        )
    assert held == {b"a": b"1"}
    said = [r.getMessage() for r in caplog.records if r.name == "streams.views.connection"]
    assert len(said) <= 1, said
