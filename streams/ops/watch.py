"""A job's live progress on a terminal: received / enqueued / failures, rate, ETA.

Used by `bulkstream status JOB --watch` (reading the Redis view) and by
`bulkstream demo` (reading `GET /bulk/{id}` over HTTP). On a terminal it is a
live bar; elsewhere (CI logs, pipes) one plain line per change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from schemas.commands import rfc3339
from schemas.views import FINISHED, JobStatus, JobView

TERMINAL = FINISHED


@dataclass
class Rate:
    """Sends per second over a sliding window, and the time left at that pace."""

    window: float = 5.0

    def __post_init__(self) -> None:
        self.samples: list[tuple[float, int]] = []

    def add(self, at: float, done: int) -> None:
        self.samples.append((at, done))
        while len(self.samples) > 2 and at - self.samples[1][0] >= self.window:
            self.samples.pop(0)

    def per_second(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self, remaining: int) -> float | None:
        rate = self.per_second()
        return remaining / rate if rate > 0 else None


def describe(job: JobView, rate: Rate, now: float | None = None) -> str:
    """One line of a job's progress. A rate-limited job's ETA follows its limit; a
    scheduled one counts down to its start; a paused or canceled one has none."""
    done = job.enqueued + job.failures
    left = max(job.received - done - (job.canceled or 0), 0)
    eta: str = "-"
    if job.status is JobStatus.PROCESSING:
        eta = _duration(left / job.sends_per_second if job.sends_per_second else rate.eta(left))
    elif job.status is JobStatus.SCHEDULED and job.scheduled_at is not None:
        wait = rfc3339(job.scheduled_at).timestamp() - (time.time() if now is None else now)
        eta = f"starts in {_duration(max(wait, 0.0))}"
    parts = [
        f"{job.status.value:<10} received {job.received:,}  enqueued {job.enqueued:,}  "
        f"failures {job.failures:,}"
    ]
    if job.canceled is not None:
        parts.append(f"canceled {job.canceled:,}")
    limit = f" (limit {job.sends_per_second:,}/s)" if job.sends_per_second else ""
    parts.append(f"rate {rate.per_second():,.0f}/s{limit}")
    parts.append(f"eta {eta}")
    return "  ".join(parts)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


async def watch(
    fetch: Callable[[], Awaitable[JobView | None]],
    *,
    console: Console | None = None,
    interval: float = 0.5,
    give_up_after: float | None = None,
    wait_for_job: float = 10.0,
) -> JobView | None:
    """Show the job's progress until it is COMPLETED, ERROR or CANCELED (or `give_up_after`
    s); return it.

    A job not found within `wait_for_job` seconds (its view not written yet,
    or no such job) ends the watch with None."""
    console = console or Console(stderr=True)
    rate = Rate()
    now = time.monotonic()
    deadline = None if give_up_after is None else now + give_up_after
    missing_until = now + wait_for_job
    job = await fetch()
    if not console.is_terminal:
        return await _watch_lines(fetch, job, rate, console, interval, deadline, missing_until)
    columns = (
        TextColumn("{task.fields[status]:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[line]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("job", total=1, status="?", line="waiting for the job")
        while True:
            if job is not None:
                done = job.enqueued + job.failures
                rate.add(time.monotonic(), done)
                bar.update(
                    task,
                    total=max(job.received, 1),
                    completed=done if job.received else 0,
                    status=job.status.value,
                    line=describe(job, rate).split(None, 1)[1],
                )
            if _finished(job, deadline, missing_until):
                return job
            await asyncio.sleep(interval)
            job = await fetch()


async def _watch_lines(
    fetch: Callable[[], Awaitable[JobView | None]],
    job: JobView | None,
    rate: Rate,
    console: Console,
    interval: float,
    deadline: float | None,
    missing_until: float,
) -> JobView | None:
    last = None
    while True:
        if job is not None:
            rate.add(time.monotonic(), job.enqueued + job.failures)
            state = (job.status, job.received, job.enqueued, job.failures, job.canceled)
            if state != last:
                console.print(describe(job, rate), soft_wrap=True, highlight=False)
                last = state
        if _finished(job, deadline, missing_until):
            return job
        await asyncio.sleep(interval)
        job = await fetch()


def _finished(job: JobView | None, deadline: float | None, missing_until: float) -> bool:
    now = time.monotonic()
    if job is None:
        return now >= missing_until or (deadline is not None and now >= deadline)
    return job.status in TERMINAL or (deadline is not None and now >= deadline)
