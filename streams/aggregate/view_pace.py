"""A running job's view, written at most once per interval while its pages report.

Every page report changes a job's counters. Written after each one, the view
cost the job's owner a Redis round trip per page, and each write's notice on
`<prefix>:jobs` dropped the API's kept copy of the job, so most GETs during
a fan-out read Redis again. A report that only moves counters now leaves the
job's newest record here; it is written `interval` later, once, whatever
came meanwhile. A status change, a settled hold or a finished job is written
at once, and takes whatever was waiting with it.

A record left here by a worker that dies is not lost: the job's next report
or its completion writes a newer one (every write is the whole record,
versioned, and Redis keeps the newest).
"""

from __future__ import annotations

import asyncio
import logging

from streams.aggregate.state import JobState
from streams.views import Views, ViewWrites

log = logging.getLogger(__name__)


class PacedJobViews:
    def __init__(self, views: Views, interval: float) -> None:
        self.views = views
        self.interval = interval
        self._waiting: dict[str, JobState] = {}
        # job id -> the timer that writes its waiting record: sleeping while the record
        # waits (it takes the record at once when it wakes)
        self._timers: dict[str, asyncio.Task[None]] = {}

    def later(self, job_id: str, job: JobState, writes: ViewWrites) -> None:
        """Write this record of the job within `interval`, unless a newer one replaces it
        (with `writes` if `interval` is 0)."""
        if self.interval <= 0:
            self.now(job_id, job, writes)
            return
        first = job_id not in self._waiting
        self._waiting[job_id] = job
        if first:
            timer = asyncio.get_running_loop().create_task(self._write_after(job_id))
            self._timers[job_id] = timer
            timer.add_done_callback(lambda _: self._forget(job_id, timer))

    def now(self, job_id: str, job: JobState, writes: ViewWrites) -> None:
        """Write this record with `writes`; one of the same job waiting is older, and
        dropped."""
        self._take(job_id)
        writes.job(job_id, job)

    async def flush(self) -> None:
        """Write every waiting record now, and stop their timers (the worker is stopping)."""
        for job_id in list(self._waiting):
            job = self._take(job_id)
            if job is not None:
                await self.views.write_job(job_id, job)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def timers(self) -> int:
        return len(self._timers)

    def _take(self, job_id: str) -> JobState | None:
        """The job's waiting record, and its timer stopped (it is still asleep)."""
        job = self._waiting.pop(job_id, None)
        if job is not None:
            self._timers[job_id].cancel()
        return job

    def _forget(self, job_id: str, timer: asyncio.Task[None]) -> None:
        if self._timers.get(job_id) is timer:
            del self._timers[job_id]

    async def _write_after(self, job_id: str) -> None:
        await asyncio.sleep(self.interval)
        job = self._waiting.pop(job_id, None)
        if job is None:
            return
        try:
            await self.views.write_job(job_id, job)
        except Exception:  # the next report or the job's end writes a newer record
            log.exception("job %s: its paced view write failed", job_id)
