"""A running job's view written at most once per interval, against real Redis: records
that come within the interval are written once (the newest), a record written now
drops the older one waiting (its timer stopped), and a stopping worker writes what waits
and leaves no timer asleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from streams.aggregate.state import JobState
from streams.aggregate.view_pace import PacedJobViews
from streams.ids import new_job_id
from streams.settings import Settings
from streams.views import Views, ViewWrites
from streams.views.notices import decode_job
from tests.streams.job_records import job_record

INTERVAL = 0.2


def _job(enqueued: int, version: int) -> JobState:
    return job_record(version, received=1000, enqueued=enqueued)


class Notices:
    """Every notice on the jobs channel, for one job."""

    def __init__(self, pubsub: aioredis.client.PubSub, job_id: str) -> None:
        self.pubsub, self.job_id, self.seen = pubsub, job_id, 0

    async def count(self, within: float, stop_at: int | None = None) -> int:
        """Notices seen so far, after listening `within` s more (or until `stop_at`)."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0 and self.seen != stop_at:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            name = None if message is None else decode_job(message["data"])
            if name is not None and name[1] == self.job_id:
                self.seen += 1
        return self.seen


@asynccontextmanager
async def _paced(settings: Settings, interval: float) -> AsyncIterator[tuple[PacedJobViews, Views]]:
    client = aioredis.from_url(settings.redis_url)
    views = Views(client, settings.redis_prefix, settings.retention_seconds)
    try:
        yield PacedJobViews(views, interval), views
    finally:
        await client.aclose()


@asynccontextmanager
async def _notices(settings: Settings, job_id: str) -> AsyncIterator[Notices]:
    client = aioredis.from_url(settings.redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(Views(client, settings.redis_prefix, 1).jobs_channel)
    try:
        yield Notices(pubsub, job_id)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # untyped in older redis-py
        await client.aclose()


async def _report(
    views: Views, pace: Callable[[str, JobState, ViewWrites], None], job_id: str, job: JobState
) -> None:
    """What the progress agent does with a report's record: `later` or `now`, then the
    report's view writes sent."""
    writes = views.writes()
    pace(job_id, job, writes)
    await writes.send()


async def _enqueued(views: Views, job_id: str) -> int | None:
    view = await views.read_job("acme", job_id)
    return None if view is None else view.enqueued


def test_records_within_the_interval_are_written_once_the_newest(settings: Settings) -> None:
    async def go() -> None:
        job_id = new_job_id()
        async with _paced(settings, INTERVAL) as (paced, views), _notices(settings, job_id) as n:
            started = time.monotonic()
            for version in range(1, 6):
                await _report(views, paced.later, job_id, _job(version * 500, version))
            assert await _enqueued(views, job_id) is None, "nothing written before the interval"
            assert paced.waiting == 1
            assert await n.count(within=INTERVAL + 1, stop_at=1) == 1, "written in time"
            waited = time.monotonic() - started
            assert INTERVAL * 0.9 <= waited < INTERVAL + 0.5, waited
            assert await _enqueued(views, job_id) == 2500
            assert await n.count(within=INTERVAL * 2) == 1, "one write, not one per record"
            assert paced.waiting == 0

    asyncio.run(go())


def test_a_record_written_now_drops_the_older_one_waiting(settings: Settings) -> None:
    async def go() -> None:
        job_id = new_job_id()
        async with _paced(settings, INTERVAL) as (paced, views), _notices(settings, job_id) as n:
            await _report(views, paced.later, job_id, _job(500, 1))
            await _report(views, paced.now, job_id, _job(1000, 2))
            assert await _enqueued(views, job_id) == 1000, "written at once"
            assert paced.timers == 0, "the older record's timer stopped"
            assert await n.count(within=INTERVAL * 3) == 1, "the older record never written"
            assert await _enqueued(views, job_id) == 1000

    asyncio.run(go())


def test_an_interval_of_zero_writes_every_record_at_once(settings: Settings) -> None:
    async def go() -> None:
        job_id = new_job_id()
        async with _paced(settings, 0) as (paced, views), _notices(settings, job_id) as n:
            for version in range(1, 4):
                await _report(views, paced.later, job_id, _job(version * 100, version))
                assert await _enqueued(views, job_id) == version * 100
            assert paced.waiting == 0
            assert await n.count(within=0.3) == 3

    asyncio.run(go())


def test_a_stopping_worker_writes_what_waits(settings: Settings) -> None:
    async def go() -> None:
        first, second = new_job_id(), new_job_id()
        async with _paced(settings, 60) as (paced, views):
            await _report(views, paced.later, first, _job(300, 1))
            await _report(views, paced.later, second, _job(700, 1))
            assert paced.timers == 2
            await paced.flush()
            assert await _enqueued(views, first) == 300
            assert await _enqueued(views, second) == 700
            assert paced.waiting == 0
            await asyncio.sleep(0)  # the cancelled timers end
            assert paced.timers == 0, "no timer left asleep for a minute"
            assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(go())
