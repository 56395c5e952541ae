"""The job rules in memory: every branch of create, ingest, run, page reports and
failure, replays included, in milliseconds. The real-stack tests beside them
(test_aggregate.py, test_scenario.py, test_exactly_once.py) run the same rules
through faust, RocksDB, Kafka and Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from schemas.commands import (
    CancelJob,
    CommandEnvelope,
    CommandResult,
    CreateJob,
    ErrorType,
    IngestUsers,
    PauseJob,
    ResumeJob,
    RetryJob,
    RunJob,
)
from schemas.fanout import PageProgress
from schemas.views import JobStatus
from streams.aggregate import rules
from streams.aggregate.decode import Ingest
from streams.aggregate.rules import Effects
from streams.aggregate.state import JobState

JOB = "1-job"
WINDOW = 4  # pages of a job out at once


class Memory:
    """A partition's state as plain dicts, read the way `JobReads` says and written as
    the stage writes the effects (the job record whole, as bytes)."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}
        self.results: dict[tuple[str, str], tuple[int, CommandResult]] = {}
        self.held: dict[tuple[str, str], int] = {}
        self.batches: dict[tuple[str, int], list[list[Any]]] = {}
        self.events: list[tuple[JobStatus | None, JobStatus]] = []
        self.finished: set[str] = set()

    # JobReads
    def job(self, job_id: str) -> JobState | None:
        raw = self.records.get(job_id)
        return None if raw is None else JobState.from_bytes(raw)

    def stored_result(self, job_id: str, command_id: str) -> tuple[int, CommandResult] | None:
        return self.results.get((job_id, command_id))

    def holders(self, job_id: str, identities: Sequence[str]) -> list[int | None]:
        return [self.held.get((job_id, identity)) for identity in identities]

    def batch_first(self, job_id: str, offset: int) -> int | None:
        batch = self.batches.get((job_id, offset))
        return batch[0][0] if batch else None

    # what the stage does with the effects
    def carry_out(self, job_id: str, effects: Effects, offset: int) -> Effects:
        if effects.batch is not None:
            for _, identity, *_ in effects.batch:
                if identity:  # as the stage's dedupe index
                    self.held[(job_id, identity)] = offset
            self.batches[(job_id, offset)] = effects.batch
        if effects.job is not None:
            effects.job.version += 1
            self.records[job_id] = effects.job.to_bytes()
            if effects.lifecycle:
                self.events.append((effects.previous, effects.job.status))
            if effects.finished:
                self.finished.add(job_id)
        if effects.result is not None and effects.keep_result:
            self.results[(job_id, effects.result.command_id)] = (offset, effects.result)
        return effects

    # commands
    def create(self, offset: int, command_id: str = "c-create", **kw: Any) -> Effects:
        command = CreateJob.model_validate(
            {
                "commandId": command_id,
                "tenant": kw.get("tenant", "acme"),
                "jobId": JOB,
                "message": kw.get("message", {"template": "T", "data": {"g": 1}}),
                "createdAt": 1.0,
            }
        )
        created = rules.create(self, command, offset, kw.get("message_ids", "position"))
        return self.carry_out(JOB, created, offset)

    def ingest(
        self, offset: int, users: list[dict[str, Any]], command_id: str = "", **kw: Any
    ) -> Effects:
        command = IngestUsers.model_validate(
            {
                "commandId": command_id or f"c-ingest-{offset}",
                "tenant": kw.get("tenant", "acme"),
                "jobId": JOB,
                "users": users,
                **({"metadata": kw["metadata"]} if "metadata" in kw else {}),
            }
        )
        return self.carry_out(JOB, rules.ingest(self, Ingest.of(command), offset), offset)

    def run(
        self,
        offset: int,
        command_id: str = "",
        tenant: str = "acme",
        now: float = 100.0,
        **options: Any,
    ) -> Effects:
        command = RunJob(
            command_id=command_id or f"c-run-{offset}", tenant=tenant, job_id=JOB, **options
        )
        effects = rules.run(self, command, offset, now=now, page_size=2, window=WINDOW)
        return self.carry_out(JOB, effects, offset)

    def steer(
        self, kind: str, offset: int, now: float = 150.0, command_id: str = "", **kw: Any
    ) -> Effects:
        command = CommandEnvelope.model_validate(
            {
                "kind": kind,
                "commandId": command_id or f"c-{kind}-{offset}",
                "tenant": kw.get("tenant", "acme"),
                "jobId": JOB,
            }
        ).root
        assert isinstance(command, CancelJob | PauseJob | ResumeJob)
        return self.carry_out(JOB, rules.steer(self, command, offset, now, WINDOW), offset)

    def release(self, now: float, again: bool = False) -> Effects:
        return self.carry_out(JOB, rules.release(self.job(JOB), now, WINDOW, again), 0)

    def page(
        self, page: int, enqueued: int, failures: list[tuple[int, str]], now: float = 200.0
    ) -> Effects:
        report = PageProgress(
            job_id=JOB, tenant="acme", page=page, enqueued=enqueued, failures=failures
        )
        return self.carry_out(JOB, rules.page_done(self.job(JOB), report, now, WINDOW), 0)

    def pages(
        self, *reports: tuple[int, int, list[tuple[int, str]]], now: float = 200.0
    ) -> Effects:
        """Reports of one fetch folded together: (page, enqueued, failures) each."""
        fetched = [
            PageProgress(job_id=JOB, tenant="acme", page=page, enqueued=enqueued, failures=failed)
            for page, enqueued, failed in reports
        ]
        return self.carry_out(JOB, rules.pages_done(self.job(JOB), fetched, now, WINDOW), 0)

    def state(self) -> JobState:
        job = self.job(JOB)
        assert job is not None
        return job


def users(*ids: str) -> list[dict[str, Any]]:
    return [{"to": {"user_id": i}} for i in ids]


def errors_of(effects: Effects) -> list[tuple[str, Any]]:
    assert effects.result is not None
    return [(e.error, e.user) for e in effects.result.errors or []]


# -- create -----------------------------------------------------------------------


def test_create_makes_a_created_job_with_its_definition_as_sent() -> None:
    memory = Memory()
    message = {"message": {"template": "T", "data": {"a": 1}}, "data": {"b": 2}, "x": None}
    effects = memory.create(0, message=message)
    assert effects.result is not None
    assert effects.result.ok
    assert (effects.created, effects.lifecycle, effects.previous) == (True, True, None)
    job = memory.state()
    assert (job.status, job.definition, job.send, job.data) == (
        JobStatus.CREATED,
        message,
        {"x": None, "template": "T"},
        {"a": 1, "b": 2},
    )
    assert job.message_ids == "position"  # its message ids carry their position
    assert memory.events == [(None, JobStatus.CREATED)]


def test_a_job_created_during_an_upgrade_makes_its_message_ids_the_earlier_way() -> None:
    memory = Memory()
    memory.create(0, message_ids="identity")  # BULKSTREAM_MESSAGE_IDS=identity
    assert memory.state().message_ids == "identity"
    # A replay under the other setting leaves the job as it was made.
    memory.create(0, message_ids="position")
    assert memory.state().message_ids == "identity"


def test_create_replayed_rewrites_the_same_record_and_announces_nothing() -> None:
    memory = Memory()
    memory.create(0)
    before = memory.state()
    again = memory.create(0)
    assert again.result is not None
    assert again.result.ok
    assert (again.created, again.lifecycle) == (False, False)
    after = memory.state()
    assert after.model_copy(update={"version": before.version}) == before
    assert len(memory.events) == 1


def test_a_create_under_another_command_id_is_the_same_job_only_for_the_same_message() -> None:
    memory = Memory()
    memory.create(0)
    same = memory.create(5, command_id="c-other")
    assert same.result is not None
    assert same.result.ok
    assert same.job is None
    other = memory.create(6, command_id="c-third", message={"event": "E"})
    assert other.result is not None
    assert (other.result.ok, other.result.error_type) == (False, "conflict")
    assert other.job is None
    assert memory.state().definition == {"template": "T", "data": {"g": 1}}


def test_a_create_of_another_tenant_for_an_existing_id_is_a_conflict() -> None:
    memory = Memory()
    memory.create(0)
    clash = memory.create(1, command_id="c-create", tenant="globex")
    assert clash.result is not None
    assert (clash.result.ok, clash.result.error_type, clash.job) == (False, "conflict", None)


# -- ingest -----------------------------------------------------------------------


def test_ingest_of_a_missing_or_foreign_job_is_not_found() -> None:
    memory = Memory()
    missing = memory.ingest(1, users("a"))
    assert missing.result is not None
    assert missing.result.error_type == "not_found"
    memory.create(0)
    foreign = memory.ingest(2, users("a"), tenant="globex")
    assert foreign.result is not None
    assert foreign.result.error_type == "not_found"
    assert (foreign.job, foreign.keep_result) == (None, False)
    assert memory.state().received == 0


def test_ingest_gives_positions_in_order_and_reports_duplicates_with_their_recipient() -> None:
    memory = Memory()
    memory.create(0)
    first = memory.ingest(1, users("a", "b", "a"))
    assert first.result is not None
    assert (first.result.total, first.counted) == (2, 2)
    assert errors_of(first) == [("Duplicate user", {"recipient": "a", "to": {"user_id": "a"}})]
    second = memory.ingest(2, [{"profile": {"email": "e@x.io"}}, *users("b", "c")])
    assert errors_of(second) == [("Duplicate user", {"recipient": "b", "to": {"user_id": "b"}})]
    assert second.batch == [
        [2, "email:e@x.io", orjson.dumps({"profile": {"email": "e@x.io"}})],
        [3, "user:c", orjson.dumps({"to": {"user_id": "c"}})],
    ]
    job = memory.state()
    assert (job.received, job.applied_offset) == (4, 2)
    assert second.keep_result


def test_users_without_an_identity_are_accepted_and_never_duplicates() -> None:
    memory = Memory()
    memory.create(0)
    effects = memory.ingest(1, [{}, {}, {"data": [1]}, {"to": {"user_id": ""}}])
    assert effects.result is not None
    assert effects.result.total == 4
    assert [user[1] for user in effects.batch or []] == ["", "", "", ""]


def test_ingest_metadata_goes_with_every_accepted_user() -> None:
    memory = Memory()
    memory.create(0)
    effects = memory.ingest(1, users("a", "a", "b"), metadata={"trace": "t"})
    assert [user[3] for user in effects.batch or []] == [{"trace": "t"}, {"trace": "t"}]
    # Users all new to the job, none a duplicate: the metadata goes with each of them.
    effects = memory.ingest(2, users("c", "d"), metadata={"trace": "u"})
    assert effects.batch == [
        [2, "user:c", orjson.dumps({"to": {"user_id": "c"}}), {"trace": "u"}],
        [3, "user:d", orjson.dumps({"to": {"user_id": "d"}}), {"trace": "u"}],
    ]


def test_an_ingest_replayed_at_its_offset_keeps_its_positions_and_counts_nothing() -> None:
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users("a", "b"))
    first = memory.ingest(2, users("c", "d", "a"))
    memory.ingest(3, users("e"))
    replay = memory.ingest(2, users("c", "d", "a"))  # its own users are not duplicates
    assert replay.batch == first.batch
    assert errors_of(replay) == errors_of(first)
    assert replay.counted == 0
    assert (memory.state().received, memory.state().applied_offset) == (5, 3)


def test_a_replayed_ingest_that_accepted_nobody_stays_empty() -> None:
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users("a"))
    memory.ingest(2, users("a"))
    replay = memory.ingest(2, users("a"))
    assert (replay.batch, replay.counted, memory.state().received) == ([], 0, 1)


def test_the_same_command_id_at_another_offset_only_publishes_its_result_again() -> None:
    memory = Memory()
    memory.create(0)
    first = memory.ingest(1, users("a", "b"), command_id="c-dup")
    again = memory.ingest(7, users("a", "b"), command_id="c-dup")
    assert (again.again, again.result, again.job, again.batch) == (True, first.result, None, None)
    assert memory.state().received == 2


def test_a_stored_result_of_another_tenant_is_not_replayed_to_this_one() -> None:
    memory = Memory()
    memory.create(0)
    memory.results[(JOB, "c-x")] = (
        9,
        rules.result(
            IngestUsers(command_id="c-x", tenant="globex", job_id=JOB, users=[]), True, total=0
        ),
    )
    effects = memory.ingest(10, users("a"), command_id="c-x")
    assert not effects.again
    assert effects.result is not None
    assert effects.result.total == 1


def test_ingest_after_the_run_is_already_run_and_kept() -> None:
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users("a"))
    memory.run(2)
    late = memory.ingest(3, users("b"))
    assert late.result is not None
    assert (late.result.ok, late.result.error_type, late.keep_result) == (
        False,
        "already_run",
        True,
    )
    assert (late.job, memory.state().received) == (None, 1)


# -- run --------------------------------------------------------------------------


def test_run_of_a_missing_or_foreign_job_is_not_found() -> None:
    memory = Memory()
    assert memory.run(1).result.error_type == "not_found"  # type: ignore[union-attr]
    memory.create(0)
    assert memory.run(2, tenant="globex").result.error_type == "not_found"  # type: ignore[union-attr]
    assert memory.state().status is JobStatus.CREATED


def test_run_starts_processing_once_and_cuts_pages() -> None:
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users("a", "b", "c"))
    run = memory.run(2)
    assert (run.lifecycle, run.previous, run.emit, run.finished) == (
        True,
        JobStatus.CREATED,
        (0, 2),
        False,
    )
    job = memory.state()
    assert (job.status, job.run_offset, job.applied_offset, job.page_size, job.run_at) == (
        JobStatus.PROCESSING,
        2,
        2,
        2,
        100.0,
    )
    assert job.pages_total() == 2
    replay = memory.run(2)  # a replay at its own offset emits its pages again, nothing else
    assert (replay.lifecycle, replay.emit, replay.result.ok) == (False, (0, 2), True)  # type: ignore[union-attr]
    second = memory.run(3)
    assert second.result is not None
    assert (second.result.error_type, second.keep_result, second.job) == ("already_run", True, None)
    assert memory.events == [(None, JobStatus.CREATED), (JobStatus.CREATED, JobStatus.PROCESSING)]


def test_an_empty_job_completes_at_its_run() -> None:
    memory = Memory()
    memory.create(0)
    run = memory.run(1)
    assert (run.emit, run.finished) == (None, True)
    job = memory.state()
    assert (job.status, job.completed_at) == (JobStatus.COMPLETED, 100.0)


def test_a_run_replayed_after_completion_emits_nothing() -> None:
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users("a"))
    memory.run(2)
    memory.page(0, 1, [])
    assert memory.run(2).emit is None


# -- page reports ------------------------------------------------------------------


def test_page_reports_count_once_and_complete_the_job() -> None:
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users("a", "b", "c"))
    memory.run(2)
    first = memory.page(0, 1, [(1, "No routable address")])
    assert (first.page, first.page_failures, first.lifecycle) == (
        0,
        {1: "No routable address"},
        False,
    )
    again = memory.page(0, 1, [(1, "No routable address")])
    assert again.page_failures == {1: "No routable address"}  # kept again, counted once
    assert (memory.state().enqueued, memory.state().failures) == (1, 1)
    last = memory.page(1, 1, [])
    assert (last.lifecycle, last.previous, last.finished) == (True, JobStatus.PROCESSING, True)
    job = memory.state()
    assert (job.status, job.enqueued, job.failures, job.completed_at) == (
        JobStatus.COMPLETED,
        2,
        1,
        200.0,
    )
    late = memory.page(1, 1, [])
    assert (late.lifecycle, memory.state().enqueued) == (False, 2)


@pytest.mark.parametrize("ran", [False, True])
def test_reports_of_unknown_or_unrun_jobs_change_nothing(ran: bool) -> None:
    memory = Memory()
    if ran:
        memory.create(0)
    effects = memory.page(0, 1, [])
    assert effects == Effects()
    assert memory.pages((0, 1, []), (1, 1, [])) == Effects()


def test_reports_folded_together_leave_the_record_each_alone_would() -> None:
    """The progress feed folds a fetch's reports of a job at once: the same record,
    every page's failures (a replay's again), the one status change, one write."""
    reports = [
        (0, 1, [(1, "No routable address")]),
        (2, 2, []),
        (0, 1, [(1, "No routable address")]),
        (1, 2, []),
        (3, 1, []),
    ]
    alone, together = Memory(), Memory()
    for memory in (alone, together):
        memory.create(0)
        memory.ingest(1, users(*"abcdefg"))
        memory.run(2)
    for page, enqueued, failures in reports:
        alone.page(page, enqueued, failures)
    folded = together.pages(*reports)
    assert folded.pages == {0: {1: "No routable address"}, 2: {}, 1: {}, 3: {}}
    assert (folded.lifecycle, folded.previous, folded.finished) == (
        True,
        JobStatus.PROCESSING,
        True,
    )
    mine, theirs = alone.state(), together.state()
    assert theirs.version == 4  # created, ingested, run, and one write for the fetch
    theirs.version = mine.version
    assert theirs.to_bytes() == mine.to_bytes()
    assert together.events == alone.events


# -- failure ----------------------------------------------------------------------


def test_a_job_that_cannot_be_fanned_out_ends_in_error_only_from_processing() -> None:
    memory = Memory()
    assert rules.job_failed(None, JOB, "why", 1.0) == Effects()
    memory.create(0)
    assert rules.job_failed(memory.state(), JOB, "why", 1.0) == Effects()
    memory.ingest(1, users("a"))
    memory.run(2)
    failed = memory.carry_out(
        JOB, rules.job_failed(memory.state(), JOB, "page too large", 300.0), 0
    )
    assert (failed.lifecycle, failed.previous, failed.finished) == (
        True,
        JobStatus.PROCESSING,
        True,
    )
    job = memory.state()
    assert (job.status, job.reason, job.completed_at) == (JobStatus.ERROR, "page too large", 300.0)


def test_a_run_delivered_twice_answers_its_first_result_again() -> None:
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users("a"))
    first = memory.run(2, command_id="c-run")
    again = memory.run(9, command_id="c-run")
    assert (again.again, again.result, again.emit) == (True, first.result, None)
    assert memory.state().run_offset == 2


def retry(memory: Memory, offset: int, tenant: str = "acme", command_id: str = "") -> Effects:
    command = RetryJob(
        command_id=command_id or f"c-retry-{offset}",
        tenant=tenant,
        job_id=JOB,
        new_job_id="1-new",
        created_at=2.0,
    )
    return memory.carry_out(JOB, rules.retry(memory, command, offset), offset)


def test_a_retry_is_made_for_a_finished_job_of_its_own_tenant_only() -> None:
    memory = Memory()
    missing = retry(memory, 0)
    assert missing.result is not None
    assert missing.result.error_type is ErrorType.NOT_FOUND
    memory.create(1)
    memory.ingest(2, users("a"))
    refused = retry(memory, 3)
    assert refused.result is not None
    assert refused.result.error_type is ErrorType.NOT_ALLOWED
    assert refused.keep_result
    assert not refused.retry
    memory.run(4)
    memory.page(0, 1, [])
    assert memory.state().status is JobStatus.COMPLETED
    foreign = retry(memory, 5, tenant="globex")
    assert foreign.result is not None
    assert foreign.result.error_type is ErrorType.NOT_FOUND
    made = retry(memory, 6)
    assert made.retry
    assert made.result is None
    assert made.job is None  # the parent is left as it is
    # The same retry read again from another offset answers what it answered.
    memory.results[(JOB, "c-retry-6")] = (6, rules.result(made_command(), True, total=1))
    again = retry(memory, 7, command_id="c-retry-6")
    assert again.again
    assert again.result is not None
    assert again.result.total == 1


def made_command() -> RetryJob:
    return RetryJob(
        command_id="c-retry-6", tenant="acme", job_id=JOB, new_job_id="1-new", created_at=2.0
    )
