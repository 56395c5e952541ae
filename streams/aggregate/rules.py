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
* a page report already counted (the job's page bitmap) changes no counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from schemas.commands import (
    AnyCommand,
    CommandKind,
    CommandResult,
    CreateJob,
    ErrorType,
    IngestError,
    IngestUsers,
    RunJob,
    echo,
    identity_of,
)
from schemas.fanout import PageProgress
from schemas.views import JobStatus
from streams.aggregate.paging import StoredUser
from streams.aggregate.state import JobState

DUPLICATE = "Duplicate user"


class JobReads(Protocol):
    """What the rules read of a partition's state."""

    def job(self, job_id: str) -> JobState | None:
        """The job's record, or None."""

    def stored_result(self, job_id: str, command_id: str) -> tuple[int, CommandResult] | None:
        """(offset applied at, result) of a command of the job kept by id, or None."""

    def holder(self, job_id: str, identity: str) -> int | None:
        """The offset of the ingest command that accepted this identity, or None."""

    def batch_first(self, job_id: str, offset: int) -> int | None:
        """The first position the ingest at this offset gave its users (None: no batch,
        or a batch that accepted nobody)."""


@dataclass
class Effects:
    """What applying one command or report does; nothing when left at the defaults."""

    result: CommandResult | None = None
    keep_result: bool = False  # keep it under the command id, with the offset
    again: bool = False  # the result is one kept before: only publish it again
    job: JobState | None = None  # the record to write whole (its version is bumped)
    created: bool = False  # a new job: add it to the partition's index of jobs
    batch: list[StoredUser] | None = None  # an ingest's accepted users, in position order
    identities: list[str] = field(default_factory=list)  # to index as held by this ingest
    counted: int = 0  # users counted into `received` for the first time
    lifecycle: bool = False  # publish the job's status change ...
    previous: JobStatus | None = None  # ... from this status
    finished: bool = False  # entered COMPLETED or ERROR: due for purge after retention
    emit_pages: bool = False  # cut the job into pages and send those not done
    page: int | None = None  # a page report: its page ...
    page_failures: dict[int, str] = field(default_factory=dict)  # ... and who failed in it


def result(
    command: AnyCommand,
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


def not_found(command: AnyCommand) -> Effects:
    """Another tenant's job answers exactly like a job that does not exist."""
    return Effects(
        result=result(command, False, ErrorType.NOT_FOUND, f"Job {command.job_id} not found")
    )


def _prior(reads: JobReads, command: AnyCommand, offset: int) -> Effects | None:
    """The stored answer of this command id, when it was applied at another offset."""
    stored = reads.stored_result(command.job_id, command.command_id)
    if stored is None or stored[0] == offset or stored[1].tenant != command.tenant:
        return None
    return Effects(result=stored[1], again=True)


def _job_for(
    reads: JobReads, command: IngestUsers | RunJob, offset: int
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


def create(reads: JobReads, command: CreateJob, offset: int) -> Effects:
    """A new job in CREATED, its definition as sent. Once it exists: the same command
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


def ingest(reads: JobReads, command: IngestUsers, offset: int) -> Effects:
    """Users into a CREATED job: each takes the next position unless the job (or this
    batch) already holds its identity (`Duplicate user`, echoed with its recipient).
    A user without an identity is accepted, and never a duplicate; having no address
    either, it fails in the fan-out with the reason."""
    job, answered = _job_for(reads, command, offset)
    if answered is not None:
        return answered
    assert job is not None
    applied = job.applied_offset >= offset
    if not applied and job.status is not JobStatus.CREATED:
        message = f"Job {command.job_id} has already been run; create a new job to add users"
        return Effects(
            result=result(command, False, ErrorType.ALREADY_RUN, message), keep_result=True
        )
    base = reads.batch_first(command.job_id, offset) if applied else None
    if base is None:
        base = job.received

    accepted: list[StoredUser] = []
    errors: list[IngestError] = []
    seen: list[str] = []
    held = set()
    for user in command.users:
        wire = user.as_sent()
        identity = identity_of(wire)
        if identity is not None:
            holder = reads.holder(command.job_id, identity)
            if identity in held or (holder is not None and holder != offset):
                errors.append(IngestError(error=DUPLICATE, user=echo(wire, identity)))
                continue
            held.add(identity)
            seen.append(identity)
        stored: StoredUser = [base + len(accepted), identity or "", wire]
        if command.metadata is not None:
            stored.append(command.metadata)
        accepted.append(stored)

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
        identities=seen,
        counted=counted,
    )


def run(reads: JobReads, command: RunJob, offset: int, now: float, page_size: int) -> Effects:
    """The one run of a job: PROCESSING, cut into pages of `page_size` users (an empty
    job goes straight to COMPLETED). A run at another offset is `already_run`."""
    job, answered = _job_for(reads, command, offset)
    if answered is not None:
        return answered
    assert job is not None
    if job.run_offset is not None and job.run_offset != offset:
        message = f"Job {command.job_id} has already been run"
        return Effects(
            result=result(command, False, ErrorType.ALREADY_RUN, message), keep_result=True
        )
    effects = Effects(result=result(command, True), keep_result=True, job=job)
    if job.run_offset is None:
        effects.lifecycle, effects.previous = True, job.status
        job.run_offset = job.applied_offset = offset
        job.run_at = now
        job.page_size = page_size
        if job.received == 0:
            finish(job, JobStatus.COMPLETED, None, now)
            effects.finished = True
        else:
            job.status = JobStatus.PROCESSING
    effects.emit_pages = job.status is JobStatus.PROCESSING
    return effects


def page_done(job: JobState | None, report: PageProgress, now: float) -> Effects:
    """A fanned-out page: its counts into the job once (the page bitmap), its failures
    kept (again, on a replay, so that the changelog stays whole); COMPLETED when every
    user is enqueued or failed. Nothing for an unknown or unrun job."""
    if job is None or job.page_size is None:
        return Effects()
    failures = dict(report.failures)
    effects = Effects(job=job, page=report.page, page_failures=failures)
    if not job.page_done(report.page):
        job.mark_page_done(report.page)
        job.enqueued += report.enqueued
        job.failures += len(failures)
        if job.status is JobStatus.PROCESSING and job.enqueued + job.failures >= job.received:
            finish(job, JobStatus.COMPLETED, None, now)
            effects.lifecycle, effects.previous, effects.finished = (
                True,
                JobStatus.PROCESSING,
                True,
            )
    return effects


def job_failed(job: JobState | None, reason: str, now: float) -> Effects:
    """A job that cannot be fanned out at all ends in ERROR (only from PROCESSING)."""
    if job is None or job.status is not JobStatus.PROCESSING:
        return Effects()
    finish(job, JobStatus.ERROR, reason, now)
    return Effects(job=job, lifecycle=True, previous=JobStatus.PROCESSING, finished=True)
