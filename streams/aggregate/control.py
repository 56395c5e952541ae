"""The job-control rules: cancel, pause, resume, and how a run hands its pages over. Pure.

A run does not hand all its pages to the fan-out at once. Pages [0, released)
are handed over ("released"); a page is *out* from its release until its
report is counted. A job keeps at most a window of pages out
(`BULKSTREAM_FANOUT_WINDOW_PAGES`), and a quarter more at its end (`quarter`);
each report makes room and a release hands the next pages over. A rate-limited
job releases a page at a time, each `page_size / sendsPerSecond` seconds after
the last (its pages are small: `rate_page_size`), with a quarter second of its
rate out at most.

That makes pause and cancel exact without asking the fan-out anything: a
hold (pause or cancel) stops the releases, and *settles* once no page is out:
every page handed over is then counted, so `enqueued` is every send the job
will ever have, and nothing more is committed until a resume releases again.
The commands that asked wait in the record (`waiting`) and are answered when
the hold settles.

The record is written before its pages go out (the release handler awaits
the changelog before it sends them; a command's pages go out after its
record, and a crash replays the command), and a new owner of a partition
hands the pages out once more (`again`): so the pages the record calls out
are at least those in the fan-out's queue, and a settled hold is never
followed by a send.
"""

from __future__ import annotations

import math

from schemas.commands import CommandKind, CommandResult, ErrorType
from schemas.views import JobStatus
from streams.aggregate.state import JobState

# A rate-limited job's pages hold this many seconds of its rate (or fewer users
# than the usual page), so that a page's sends are never a burst.
RATE_PAGE_SECONDS = 0.05
# ... and it keeps at most this many seconds of its rate out at once, so that a
# fan-out that stalled and came back sends no more than that at once;
RATE_WINDOW_SECONDS = 0.25
# ... and a release late by more than this makes up this much at most (a token
# bucket of this depth): over any window of T seconds, at most
# (T + RATE_BURST_SECONDS + RATE_WINDOW_SECONDS) x rate sends: 1.07 x the rate over 5 s.
RATE_BURST_SECONDS = 0.1

ACTIVE = frozenset({JobStatus.SCHEDULED, JobStatus.PROCESSING, JobStatus.PAUSED})


def rate_page_size(sends_per_second: int, page_size: int) -> int:
    return max(1, min(page_size, math.ceil(sends_per_second * RATE_PAGE_SECONDS)))


def window_of(job: JobState, window: int) -> int:
    """How many pages the job may have out at once."""
    if job.sends_per_second is None or not job.page_size:
        return window
    per_page = job.page_size / job.sends_per_second
    return max(2, math.ceil(RATE_WINDOW_SECONDS / per_page))


def quarter(limit: int) -> int:
    """A quarter of a window of `limit` pages: the room that asks for a release, and the
    most pages a job's last release hands over beyond the window (a remainder that
    small goes with the release before it, rather than wait out a release's round
    trip of its own, 50 to 100 ms here, with the fan-out idle)."""
    return max(1, limit // 4)


def released(job: JobState) -> int:
    """Pages handed over: none before the run; all of a job run by a version without
    the window (its record has no `released`)."""
    return job.pages_total() if job.released is None else job.released


def out(job: JobState) -> int:
    """Pages handed over and not counted yet."""
    return released(job) - job.pages_counted()


def hand_over(job: JobState, now: float, window: int) -> int:
    """Release what may go now (window, rate); returns the first page released."""
    start = job.released or 0
    total = job.pages_total()
    if job.released is None or job.status is not JobStatus.PROCESSING or job.hold is not None:
        return start
    limit = window_of(job, window)
    room = limit - out(job)
    if job.sends_per_second is None:
        end = min(total, start + max(0, room))
        if room > 0 and total - end <= quarter(limit):
            end = total  # the job's last pages: none left to wait for a release of its own
        job.released = end
        return start
    assert job.page_size
    step = job.page_size / job.sends_per_second
    pace = job.pace_at if job.pace_at is not None else now
    while job.released < total and room > 0 and pace <= now:
        job.released += 1
        room -= 1
        # A bounded catch-up: a release loop slower than a page keeps the rate, and a
        # long delay is not made up in one burst.
        pace = max(pace, now - RATE_BURST_SECONDS) + step
    job.pace_at = pace
    return start


def wants_release(job: JobState, now: float, window: int) -> bool:
    """A report just made room: is a release worth asking for now?

    Without a rate, once a quarter of the window is free (a release per quarter
    window: the pages still out keep the fan-out busy while the release comes);
    with one, once a page is due and may go out (the pacer asks otherwise)."""
    if job.status is not JobStatus.PROCESSING or job.hold is not None or job.released is None:
        return False
    if job.released >= job.pages_total():
        return False
    limit = window_of(job, window)
    if job.sends_per_second is None:
        return out(job) <= limit - quarter(limit)
    return out(job) < limit and (job.pace_at is None or job.pace_at <= now)


def next_due(job: JobState) -> float | None:
    """When the pacer must look at the job next: a scheduled start, a paced page."""
    if job.hold is not None:
        return None
    if job.status is JobStatus.SCHEDULED:
        return job.scheduled_at
    if (
        job.status is JobStatus.PROCESSING
        and job.sends_per_second is not None
        and job.released is not None
        and job.released < job.pages_total()
    ):
        return job.pace_at
    return None


def start_if_due(job: JobState, now: float) -> bool:
    """A SCHEDULED job whose time has come starts PROCESSING; True when it did."""
    if job.status is not JobStatus.SCHEDULED or job.hold is not None:
        return False
    if job.scheduled_at is not None and job.scheduled_at > now:
        return False
    job.status = JobStatus.PROCESSING
    job.pace_at = now
    return True


# Commands a record keeps waiting for its hold; past this, the oldest is dropped (its
# client's wait ends in a 503 to retry, and the record stays small).
MAX_WAITING = 32


def wait_for_settle(job: JobState, command_id: str, kind: CommandKind) -> None:
    if all(waiting[0] != command_id for waiting in job.waiting):
        job.waiting = [*job.waiting, (command_id, kind.value)][-MAX_WAITING:]


def settle(job: JobState, now: float) -> JobStatus | None:
    """The hold takes effect once no page is out: CANCELED (the counts final, the users
    never sent counted in `canceled`) or PAUSED. Returns the status the job had, when it
    changed."""
    if job.hold is None or out(job) > 0:
        return None
    previous = job.status
    left = job.received - job.enqueued - job.failures
    if job.hold == "cancel":
        job.status, job.canceled, job.completed_at = JobStatus.CANCELED, left, now
    else:  # (a job with nothing left completed with its last report, before this)
        job.status = JobStatus.PAUSED
    job.hold = None
    return previous


def answers(job: JobState, job_id: str, now: float) -> tuple[list[CommandResult], float | None]:
    """The results of the commands that waited for the job's hold, which is over
    (settled, or lifted by a resume, or the job ended); and how long it was held."""
    results = [
        CommandResult(
            command_id=command_id,
            tenant=job.tenant,
            job_id=job_id,
            kind=CommandKind(kind),
            ok=True,
        )
        for command_id, kind in job.waiting
    ]
    held = None if job.hold_since is None else max(now - job.hold_since, 0.0)
    job.waiting, job.hold_since = [], None
    return results, held


def refusal(job: JobState, kind: CommandKind) -> tuple[ErrorType, str] | None:
    """Why the job's status does not allow this control command, or None when it does."""
    status = job.status
    if kind is CommandKind.CANCEL:
        if status in (JobStatus.COMPLETED, JobStatus.ERROR):
            return ErrorType.NOT_ALLOWED, f"the job is {status.value}: it can no longer be canceled"
        return None
    if status in (JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.CANCELED):
        return ErrorType.NOT_ALLOWED, f"the job is {status.value}"
    if status is JobStatus.CREATED:
        return ErrorType.NOT_ALLOWED, "the job has not been run"
    if kind is CommandKind.RESUME and job.hold == "cancel":
        return ErrorType.NOT_ALLOWED, "the job is being canceled"
    return None
