"""The job rules: what create, ingest, run and a page report do to a job. Pure.

Each rule reads the job's state through `JobReads` and returns `Effects`:
what to write (the job record whole, an ingest's batch), what to answer (a
command result, to keep or only to publish again) and what follows (a
lifecycle event, the fan-out's pages). `streams.aggregate.stage` and
`streams.aggregate.progress` apply the effects to the faust table, RocksDB,
Redis and Kafka; `tests/streams/aggregate/test_rules.py` drives the rules
in memory.

Replay-safety lives here. Commands arrive at least once, and a command is
identified by its id and its offset on `bulk.commands`:

* the same id at another offset (a producer's retry) only publishes the
  stored result again;
* the same offset (a replay after a crash) redoes the command, with the same
  effects: an ingest already folded into the job (`applied_offset`) does not
  count its users again and gives them the positions its batch holds; a run
  already applied changes nothing but emits its pages again;
* a page report already counted (the job's page bitmap) changes no counter;
* a control command waiting for its hold is named once in the record
  (`control.wait_for_settle`); once answered, its result is kept.

Job control (cancel, pause, resume, releases) is in `streams.aggregate.control`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.commands import (
    AnyCommand,
    CommandKind,
    CommandResult,
    ControlCommand,
    CreateJob,
    ErrorType,
    IngestError,
    IngestHead,
    RetryJob,
    RunJob,
    echo,
)
from schemas.fanout import PageProgress
from schemas.views import FINISHED, JobStatus
from streams.aggregate import control
from streams.aggregate.decode import Ingest
from streams.aggregate.state import JobState
from streams.ids import POSITION_IDS, MessageIds

DUPLICATE = "Duplicate user"


class JobReads(Protocol):
    """What the rules read of a partition's state."""

    def job(self, job_id: str) -> JobState | None:
        """The job's record, or None."""

    def stored_result(self, job_id: str, command_id: str) -> tuple[int, CommandResult] | None:
        """(offset applied at, result) of a command of the job kept by id, or None."""

    def holders(self, job_id: str, identities: Sequence[str]) -> list[int | None]:
        """For each identity, the offset of the ingest command that accepted it, or None."""

    def batch_first(self, job_id: str, offset: int) -> int | None:
        """The first position the ingest at this offset gave its users (None: no batch,
        or a batch that accepted nobody)."""


# An ingest's accepted user: [position in the job, identity ("" for none), its JSON as
# stored (`Ingest.sent`), and the ingest call's metadata when it had some]. The stored
# batch (`paging.encode_batch`) splices that JSON in.
AcceptedUser = list[Any]


@dataclass
class Effects:
    """What applying one command or report does; nothing when left at the defaults."""

    result: CommandResult | None = None
    keep_result: bool = False  # keep it under the command id, with the offset
    again: bool = False  # the result is one kept before: only publish it again
    job: JobState | None = None  # the record to write whole (its version is bumped)
    created: bool = False  # a new job: add it to the partition's index of jobs
    batch: list[AcceptedUser] | None = None  # an ingest's accepted users, in position order
    counted: int = 0  # users counted into `received` for the first time
    lifecycle: bool = False  # publish the job's status change ...
    previous: JobStatus | None = None  # ... from this status
    finished: bool = False  # entered COMPLETED, ERROR or CANCELED: purged after retention
    emit: tuple[int, int] | None = None  # hand pages [a, b) to the fan-out (but those done)
    page: int | None = None  # a page report: its page ...
    page_failures: dict[int, str] = field(default_factory=dict)  # ... and who failed in it
    answers: list[CommandResult] = field(default_factory=list)  # control commands settled
    held: float | None = None  # ... after the job was held this long (seconds)
    dry_run: bool = False  # run the job dry: resolve its sends, write none
    release: bool = False  # a report made room: ask for the job's next pages
    # several page reports folded at once (`pages_done`): page -> who failed in it
    pages: dict[int, dict[int, str]] = field(default_factory=dict)
    retry: bool = False  # make the retry job of the failed users

    @property
    def sent(self) -> list[bytes]:
        """The JSON of each accepted user, as stored."""
        return [user[2] for user in self.batch or ()]


def result(
    command: AnyCommand | IngestHead,
    ok: bool,
    error_type: ErrorType | None = None,
    message: str | None = None,
    errors: list[IngestError] | None = None,
    total: int | None = None,
) -> CommandResult:
    return CommandResult(
        command_id=command.command_id,
        tenant=command.tenant,
        job_id=command.job_id,
        kind=CommandKind(command.kind),
        ok=ok,
        error_type=error_type,
        message=message,
        errors=errors,
        total=total,
    )


def not_found(command: AnyCommand | IngestHead) -> Effects:
    """Another tenant's job answers exactly like a job that does not exist."""
    return Effects(
        result=result(command, False, ErrorType.NOT_FOUND, f"Job {command.job_id} not found")
    )


def _prior(reads: JobReads, command: AnyCommand | IngestHead, offset: int) -> Effects | None:
    """The stored answer of this command id, when it was applied at another offset."""
    stored = reads.stored_result(command.job_id, command.command_id)
    if stored is None or stored[0] == offset or stored[1].tenant != command.tenant:
        return None
    return Effects(result=stored[1], again=True)


def _job_for(
    reads: JobReads, command: IngestHead | RunJob | ControlCommand | RetryJob, offset: int
) -> tuple[JobState | None, Effects | None]:
    """The job a command of an existing job is for, or what answers the command at once:
    `not_found` (another tenant's job too), or its result kept from another offset."""
    job = reads.job(command.job_id)
    if job is None or job.tenant != command.tenant:
        return None, not_found(command)
    return job, _prior(reads, command, offset)


def finish(job: JobState, status: JobStatus, reason: str | None, now: float) -> None:
    """Move the job to COMPLETED or ERROR."""
    job.status, job.reason, job.completed_at = status, reason, now


# -- the rules ---------------------------------------------------------------------


def create(
    reads: JobReads, command: CreateJob, offset: int, message_ids: MessageIds = POSITION_IDS
) -> Effects:
    """A new job in CREATED, its definition as sent, its message ids made the
    `message_ids` way (`Settings.message_ids`). Once it exists: the same command
    again is a replay (the record is rewritten as it is); another create of the same
    tenant is the same job when the message is the same (an API create retried under a
    new claim of its Idempotency-Key, which names the job), else a conflict."""
    job = reads.job(command.job_id)
    definition = command.message.as_sent()
    if job is None:
        created = JobState(
            tenant=command.tenant,
            definition=definition,
            send=command.message.send_definition(),
            data=command.message.global_data(),
            created_at=command.created_at,
            create_command=command.command_id,
            applied_offset=offset,
            parent_job_id=command.parent_job_id,
            message_ids=message_ids,
        )
        return Effects(result=result(command, True), job=created, created=True, lifecycle=True)
    if job.tenant != command.tenant:
        message = f"Job {command.job_id} already exists"
        return Effects(result=result(command, False, ErrorType.CONFLICT, message))
    if job.create_command == command.command_id:
        return Effects(result=result(command, True), job=job)
    if job.definition == definition:
        return Effects(result=result(command, True))
    message = f"Job {command.job_id} already exists with another message"
    return Effects(result=result(command, False, ErrorType.CONFLICT, message))


def ingest(reads: JobReads, ingest: Ingest, offset: int) -> Effects:
    """Users into a CREATED job: each takes the next position unless the job (or this
    batch) already holds its identity (`Duplicate user`, echoed with its recipient).
    A user without an identity is accepted, and never a duplicate; having no address
    either, it fails in the fan-out with the reason."""
    command = ingest.head
    job, answered = _job_for(reads, command, offset)
    if answered is not None:
        return answered
    assert job is not None
    applied = job.applied_offset >= offset
    if not applied and job.status is JobStatus.CANCELED:
        message = f"Job {command.job_id} was canceled; create a new job to add users"
        return Effects(
            result=result(command, False, ErrorType.NOT_ALLOWED, message), keep_result=True
        )
    if not applied and job.status is not JobStatus.CREATED:
        message = f"Job {command.job_id} has already been run; create a new job to add users"
        return Effects(
            result=result(command, False, ErrorType.ALREADY_RUN, message), keep_result=True
        )
    base = reads.batch_first(command.job_id, offset) if applied else None
    if base is None:
        base = job.received

    identities = ingest.identities
    known = [identity for identity in identities if identity is not None]
    holders = reads.holders(command.job_id, known)
    kept_identities, sent = identities, ingest.sent
    errors: list[IngestError] = []
    # Usually nobody is held before and no identity repeats: every user is kept.
    if holders.count(None) != len(holders) or len(set(known)) != len(known):
        kept, errors = _not_held(ingest, dict(zip(known, holders, strict=True)), offset)
        kept_identities = [identities[n] for n in kept]
        sent = [ingest.sent[n] for n in kept]
    accepted: list[AcceptedUser] = [
        [base + n, identity or "", wire]
        for n, (identity, wire) in enumerate(zip(kept_identities, sent, strict=True))
    ]
    if command.metadata is not None:
        for stored in accepted:
            stored.append(command.metadata)

    counted = 0
    if not applied:
        counted = len(accepted)
        job.received += counted
        job.applied_offset = offset
    return Effects(
        result=result(command, True, errors=errors, total=len(accepted)),
        keep_result=True,
        job=job,
        batch=accepted,
        counted=counted,
    )


def _not_held(
    ingest: Ingest, holders: dict[str, int | None], offset: int
) -> tuple[list[int], list[IngestError]]:
    """The indexes of the users an ingest accepts, and an error for each other one: a
    user whose identity another ingest holds, or an earlier user of this one."""
    kept: list[int] = []
    errors: list[IngestError] = []
    held: set[str] = set()
    for n, (user, identity) in enumerate(zip(ingest.users, ingest.identities, strict=True)):
        if identity is not None:
            holder = holders[identity]
            if identity in held or (holder is not None and holder != offset):
                errors.append(IngestError(error=DUPLICATE, user=echo(user, identity)))
                continue
            held.add(identity)
        kept.append(n)
    return kept, errors


def run(
    reads: JobReads, command: RunJob, offset: int, now: float, page_size: int, window: int
) -> Effects:
    """The one run of a job: PROCESSING (SCHEDULED until `scheduledAt`), its first pages
    handed over (an empty job goes straight to COMPLETED). A run at another offset is
    `already_run`. A dry run changes nothing of the job: the stage resolves its sends."""
    job, answered = _job_for(reads, command, offset)
    if answered is not None:
        return answered
    assert job is not None
    if job.status is JobStatus.CANCELED and job.run_offset is None:
        message = f"Job {command.job_id} was canceled"
        return Effects(
            result=result(command, False, ErrorType.NOT_ALLOWED, message), keep_result=True
        )
    if job.run_offset is not None and job.run_offset != offset:
        message = f"Job {command.job_id} has already been run"
        return Effects(
            result=result(command, False, ErrorType.ALREADY_RUN, message), keep_result=True
        )
    if command.dry_run:
        return Effects(result=result(command, True), keep_result=True, dry_run=True)
    effects = Effects(result=result(command, True), keep_result=True, job=job)
    if job.run_offset is None:
        effects.lifecycle, effects.previous = True, job.status
        job.run_offset = job.applied_offset = offset
        job.run_at = now
        rate = command.sends_per_second
        job.page_size = page_size if rate is None else control.rate_page_size(rate, page_size)
        job.sends_per_second = rate
        job.scheduled_at, job.scheduled_text = command.start_time(), command.scheduled_at
        job.released = 0
        if job.received == 0:
            finish(job, JobStatus.COMPLETED, None, now)
            effects.finished = True
        elif job.scheduled_at is not None and job.scheduled_at > now:
            job.status = JobStatus.SCHEDULED
        else:
            job.status = JobStatus.PROCESSING
            job.pace_at = now
            control.hand_over(job, now, window)
    if job.status is JobStatus.PROCESSING:
        # First applied, or replayed: every page out (again), none of those counted.
        effects.emit = (job.lowest_pending(), control.released(job))
    return effects


def retry(reads: JobReads, command: RetryJob, offset: int) -> Effects:
    """A retry of a finished job's failed users: made by the stage (`retry`), which
    reads them from the state; refused while the job may still send."""
    job, answered = _job_for(reads, command, offset)
    if answered is not None:
        return answered
    assert job is not None
    if job.status not in FINISHED:
        message = (
            f"the job is {job.status.value}; only a finished job (COMPLETED, CANCELED or "
            "ERROR) can be retried"
        )
        return Effects(
            result=result(command, False, ErrorType.NOT_ALLOWED, message), keep_result=True
        )
    return Effects(retry=True)


def steer(
    reads: JobReads, command: ControlCommand, offset: int, now: float, window: int
) -> Effects:
    """Cancel, pause or resume a job. Cancel and pause answer once their hold settles
    (`control.settle`); resume at once, its first pages handed over."""
    job, answered = _job_for(reads, command, offset)
    if answered is not None:
        return answered
    assert job is not None
    kind = CommandKind(command.kind)
    refused = control.refusal(job, kind)
    if refused is not None:
        return Effects(result=result(command, False, *refused), keep_result=True)
    effects = Effects(job=job)
    previous = job.status
    if kind is CommandKind.RESUME:
        if job.status is JobStatus.PAUSED:
            scheduled = job.scheduled_at is not None and job.scheduled_at > now
            job.status = JobStatus.SCHEDULED if scheduled else JobStatus.PROCESSING
            job.pace_at = now
        job.hold = None
        effects.answers, effects.held = control.answers(job, command.job_id, now)
        start = control.hand_over(job, now, window)
        if job.status is JobStatus.PROCESSING and (job.released or 0) > start:
            effects.emit = (start, job.released or 0)
        effects.result, effects.keep_result = result(command, True), True
    elif job.status in (JobStatus.CANCELED, JobStatus.PAUSED) and (
        kind is CommandKind.PAUSE or job.status is JobStatus.CANCELED
    ):
        return Effects(result=result(command, True), keep_result=True)  # already so
    elif kind is CommandKind.PAUSE and job.status is JobStatus.SCHEDULED and job.hold is None:
        job.status = JobStatus.PAUSED
        effects.result, effects.keep_result = result(command, True), True
    else:
        if kind is CommandKind.CANCEL or job.hold is None:
            job.hold = "cancel" if kind is CommandKind.CANCEL else "pause"
            job.hold_since = job.hold_since or now
        control.wait_for_settle(job, command.command_id, kind)
        settled_from = control.settle(job, now)
        if settled_from is not None:
            effects.answers, effects.held = control.answers(job, command.job_id, now)
    if job.status is not previous:
        effects.lifecycle, effects.previous = True, previous
        effects.finished = job.status in (JobStatus.CANCELED, JobStatus.COMPLETED)
    return effects


def release(job: JobState | None, now: float, window: int, again: bool) -> Effects:
    """The job's next pages, as its window and rate allow; a due SCHEDULED job starts.
    `again`: every page out is handed over once more (a new owner of the partition)."""
    if job is None or job.released is None:
        return Effects()
    effects = Effects(job=job)
    if control.start_if_due(job, now):
        effects.lifecycle, effects.previous = True, JobStatus.SCHEDULED
    before = (job.released, job.pace_at)
    start = control.hand_over(job, now, window)
    if again and job.status is JobStatus.PROCESSING:
        start = job.lowest_pending()
    if job.released > start:
        effects.emit = (start, job.released)
    if not effects.lifecycle and effects.emit is None and (job.released, job.pace_at) == before:
        return Effects()  # nothing changed, nothing to send
    return effects


def page_done(job: JobState | None, report: PageProgress, now: float, window: int) -> Effects:
    """A fanned-out page: its counts into the job once (the page bitmap), its failures
    kept (again, on a replay, so that the changelog stays whole); COMPLETED when every
    user is enqueued or failed; a hold settles once no page is out. Nothing for an
    unknown or unrun job."""
    if job is None or job.page_size is None:
        return Effects()
    failures = dict(report.failures)
    effects = Effects(job=job, page=report.page, page_failures=failures)
    if job.page_done(report.page):
        return effects
    job.mark_page_done(report.page)
    job.enqueued += report.enqueued
    job.failures += len(failures)
    previous = job.status
    if job.status is JobStatus.PROCESSING and job.enqueued + job.failures >= job.received:
        finish(job, JobStatus.COMPLETED, None, now)
        job.hold = None
    else:
        control.settle(job, now)
    if job.status is not previous:
        effects.lifecycle, effects.previous = True, previous
        effects.finished = job.status in (JobStatus.COMPLETED, JobStatus.CANCELED)
        effects.answers, effects.held = control.answers(job, report.job_id, now)
    effects.release = control.wants_release(job, now, window)
    return effects


def pages_done(
    job: JobState | None, reports: Sequence[PageProgress], now: float, window: int
) -> Effects:
    """A job's reports of one fetch, in order, each folded as `page_done` folds it, as
    one `Effects`: the record written once, each page's failures (`pages`), the first
    status change (a report after it changes no status: the job holds no page out),
    every answer, and a release if the last report counted wants one."""
    merged = Effects(job=job)
    for report in reports:
        counted = job is not None and not job.page_done(report.page)
        effects = page_done(job, report, now, window)
        if effects.job is None:
            return Effects()
        merged.pages[report.page] = effects.page_failures
        if effects.lifecycle and not merged.lifecycle:
            merged.lifecycle, merged.previous = True, effects.previous
        merged.finished = merged.finished or effects.finished
        merged.answers.extend(effects.answers)
        if merged.held is None:
            merged.held = effects.held
        if counted:
            merged.release = effects.release
    return merged


def job_failed(job: JobState | None, job_id: str, reason: str, now: float) -> Effects:
    """A job that cannot be fanned out at all ends in ERROR (only from PROCESSING)."""
    if job is None or job.status is not JobStatus.PROCESSING:
        return Effects()
    finish(job, JobStatus.ERROR, reason, now)
    job.hold = None
    answers, held = control.answers(job, job_id, now)
    return Effects(
        job=job,
        lifecycle=True,
        previous=JobStatus.PROCESSING,
        finished=True,
        answers=answers,
        held=held,
    )
