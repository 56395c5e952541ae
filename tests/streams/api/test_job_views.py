"""The API's copies of job views, against real Redis: a copy answers until a worker writes
the view again (its notice drops it), is not kept when a notice raced its read, and
nothing is kept while the subscription is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from streams.aggregate.state import JobState
from streams.api.job_views import JobViewCache
from streams.api.wakeups import ResultWakeups
from streams.ids import new_job_id
from streams.settings import Settings
from streams.views import Views
from tests.streams.job_records import job_record

NAME = "bulkstream-test-job-views"


def _job(received: int, version: int) -> JobState:
    return job_record(version, received=received)


@asynccontextmanager
async def _subscribed(settings: Settings, cache: JobViewCache) -> AsyncIterator[Views]:
    wakeups = ResultWakeups(settings.redis_url, settings.redis_prefix, NAME, job_views=cache)
    client = aioredis.from_url(settings.redis_url)
    wakeups.start()
    try:
        await _until(lambda: cache.live, "the subscription is confirmed")
        yield Views(client, settings.redis_prefix, settings.retention_seconds)
    finally:
        await wakeups.close()
        await client.aclose()


async def _until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.005)


def test_a_copy_answers_until_a_worker_writes_the_view_again(settings: Settings) -> None:
    async def go() -> None:
        cache = JobViewCache(ttl=60)
        async with _subscribed(settings, cache) as views:
            job_id, other = new_job_id(), new_job_id()
            await views.write_job(job_id, _job(10, 1))
            await views.write_job(other, _job(5, 1))
            await asyncio.sleep(0.1)  # the writes' own notices are in
            for name in (job_id, other):
                cache.keep("acme", name, name.encode(), cache.begin())
            assert cache.get("acme", job_id) == job_id.encode()
            assert cache.get("globex", job_id) is None, "a copy is the tenant's own"
            await views.write_job(job_id, _job(20, 2))
            await _until(lambda: cache.get("acme", job_id) is None, "the copy is dropped")
            assert cache.get("acme", other) == other.encode(), "only the job written"
            view = await views.read_job("acme", job_id)
            assert view is not None
            assert view.received == 20

    asyncio.run(go())


def test_a_copy_read_while_a_notice_came_is_not_kept(settings: Settings) -> None:
    async def go() -> None:
        cache = JobViewCache(ttl=60)
        async with _subscribed(settings, cache) as views:
            job_id = new_job_id()
            since = cache.begin()
            before = cache.generation
            await views.write_job(job_id, _job(1, 1))  # written while "reading"
            await _until(lambda: cache.generation != before, "the notice arrives")
            cache.keep("acme", job_id, b"old", since)
            assert cache.get("acme", job_id) is None

    asyncio.run(go())


def test_nothing_is_kept_while_the_subscription_is_down(settings: Settings) -> None:
    async def go() -> None:
        cache = JobViewCache(ttl=60)
        async with _subscribed(settings, cache):
            job_id = new_job_id()
            cache.keep("acme", job_id, b"v", cache.begin())
            admin = aioredis.from_url(settings.redis_url)
            try:
                for client in await admin.client_list():
                    if client.get("name") == NAME:
                        await admin.client_kill_filter(_id=client["id"])
            finally:
                await admin.aclose()
            await _until(lambda: not cache.live, "the break is seen")
            assert cache.get("acme", job_id) is None, "every copy goes with the subscription"
            cache.keep("acme", job_id, b"v", cache.begin())
            assert cache.get("acme", job_id) is None
            await _until(lambda: cache.live, "subscribed again")
            cache.keep("acme", job_id, b"v2", cache.begin())
            assert cache.get("acme", job_id) == b"v2"

    asyncio.run(go())


def test_a_copy_lives_at_most_its_ttl_and_the_cache_its_size() -> None:
    cache = JobViewCache(ttl=0.05, size=2)
    cache.subscribed()
    for name in ("a", "b", "c"):
        cache.keep("acme", name, name.encode(), cache.begin())
    assert cache.get("acme", "a") is None, "the least recently answered went first"
    assert cache.get("acme", "c") == b"c"
    time.sleep(0.06)
    assert cache.get("acme", "c") is None
