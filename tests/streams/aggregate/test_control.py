"""The job-control rules in memory: the window of pages out, cancel, pause and resume
and when they settle, scheduled starts, the send-rate pacing, replays. The real-stack
tests (tests/streams/api/test_job_control.py) run them through Kafka and Redis."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.views import JobStatus
from streams.aggregate import control, rules
from streams.aggregate.rules import Effects
from tests.streams.aggregate.test_rules import JOB, WINDOW, Memory, users


def running(count: int, **options: Any) -> Memory:
    """A job of `count` users (pages of 2) run at t=100."""
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users(*(f"u{i}" for i in range(count))))
    memory.run(2, **options)
    return memory


def report(memory: Memory, *pages: int, now: float = 200.0) -> Effects:
    """Report these pages fanned out, every user enqueued; the last report's effects."""
    effects = Effects()
    for page in pages:
        effects = memory.page(page, 2, [], now=now)
    return effects


def answered(effects: Effects) -> list[tuple[str, str, bool]]:
    return [(r.command_id, r.kind.value, r.ok) for r in effects.answers]


# -- the window -------------------------------------------------------------------


def test_a_run_hands_over_a_window_and_each_report_makes_room() -> None:
    memory = running(20)  # 10 pages
    job = memory.state()
    assert (job.released, control.out(job)) == (WINDOW, WINDOW)
    assert memory.release(now=200.0) == Effects()  # the window is full
    assert report(memory, 0).release is True  # 3 out: a quarter of the window is free
    release = memory.release(now=201.0)
    assert release.emit == (4, 5)
    report(memory, 1, 2)
    assert memory.release(now=202.0).emit == (5, 7)
    assert memory.state().released == 7
    # Nothing more to hand over while the window is full: no write, no pages.
    assert memory.release(now=203.0) == Effects()


def test_a_jobs_last_quarter_window_goes_with_the_release_before_it() -> None:
    """A remainder of a quarter of the window or less is handed over with the release
    that leaves it (the run's included), not on a release of its own: at most a
    quarter more than the window is then out."""
    assert running(10).state().released == 5  # 5 pages: the window (4) and 1
    assert running(12).state().released == 4  # 6 pages: 2 left, more than a quarter
    memory = running(18)  # 9 pages
    report(memory, 0, 1, 2)
    assert memory.release(now=201.0).emit == (4, 7)  # 2 left
    assert memory.release(now=202.0) == Effects()  # the window is full: nothing, however few
    report(memory, 3)
    assert memory.release(now=203.0).emit == (7, 9)  # 1 room, and the 1 page left with it
    assert control.out(memory.state()) == WINDOW + 1


def test_reports_folded_together_ask_for_a_release_if_the_last_counted_one_would() -> None:
    memory = running(12)  # 6 pages, 4 out
    assert memory.pages((0, 2, []), (0, 2, [])).release is True  # room, then a replay
    assert memory.release(now=201.0).emit == (4, 6)
    # Room made, then the job completed: nothing left to ask for.
    done = memory.pages((1, 2, []), (2, 2, []), (3, 2, []), (4, 2, []), (5, 2, []))
    assert (done.release, done.finished) == (False, True)


def test_a_cancel_settled_by_reports_folded_together_is_answered_once() -> None:
    memory = running(8)  # 4 pages, all out
    memory.steer("cancel", 3)
    settled = memory.pages((0, 2, []), (1, 2, []), (2, 2, []), (3, 2, []), (3, 2, []))
    # The last page out settles it: every user was enqueued, so the job completed.
    assert (settled.lifecycle, settled.previous, memory.state().status) == (
        True,
        JobStatus.PROCESSING,
        JobStatus.COMPLETED,
    )
    assert answered(settled) == [("c-cancel-3", "cancel", True)]
    assert settled.held == 50.0


def test_a_new_owner_hands_every_page_out_over_again() -> None:
    memory = running(20)
    report(memory, 0, 2)
    again = memory.release(now=201.0, again=True)
    # Page 1 and 3 are out; page 2 is counted (emit skips it); 4 and 5 are new room.
    assert again.emit == (1, 6)
    replay = memory.run(2)  # the run replayed at its own offset: the pages out, again
    assert replay.emit == (1, 6)


# -- cancel -----------------------------------------------------------------------


def test_cancel_waits_for_the_pages_out_and_then_the_counts_are_final() -> None:
    memory = running(20)
    report(memory, 0)
    cancel = memory.steer("cancel", 3)
    assert (cancel.result, cancel.answers, memory.state().hold) == (None, [], "cancel")
    assert memory.release(now=160.0) == Effects()  # nothing more is handed over
    assert report(memory, 1, 2).lifecycle is False
    last = report(memory, 3, now=210.0)
    job = memory.state()
    assert (job.status, job.enqueued, job.canceled, job.hold, job.released) == (
        JobStatus.CANCELED,
        8,
        12,
        None,
        4,
    )
    assert job.received == job.enqueued + job.failures + job.canceled
    assert (last.lifecycle, last.previous, last.finished) == (True, JobStatus.PROCESSING, True)
    assert answered(last) == [("c-cancel-3", "cancel", True)]
    assert last.held == pytest.approx(60.0)
    assert memory.events[-1] == (JobStatus.PROCESSING, JobStatus.CANCELED)
    # Idempotent: a second cancel answers at once, the same view.
    again = memory.steer("cancel", 4)
    assert (again.result.ok, again.keep_result, again.job) == (True, True, None)  # type: ignore[union-attr]


def test_every_cancel_asked_while_it_settles_is_answered_once() -> None:
    memory = running(20)
    memory.steer("cancel", 3)
    memory.steer("cancel", 3)  # replayed at its offset: named once
    memory.steer("cancel", 4)
    memory.steer("pause", 5)  # a pause during a cancel waits for the cancel
    assert [w[0] for w in memory.state().waiting] == ["c-cancel-3", "c-cancel-4", "c-pause-5"]
    last = report(memory, 0, 1, 2, 3)
    assert answered(last) == [
        ("c-cancel-3", "cancel", True),
        ("c-cancel-4", "cancel", True),
        ("c-pause-5", "pause", True),
    ]
    assert memory.state().status is JobStatus.CANCELED


def test_cancel_before_the_run_sends_nothing_and_closes_the_job() -> None:
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users("a", "b", "c"))
    cancel = memory.steer("cancel", 2)
    job = memory.state()
    assert (job.status, job.canceled, cancel.emit, cancel.finished) == (
        JobStatus.CANCELED,
        3,
        None,
        True,
    )
    assert answered(cancel) == [("c-cancel-2", "cancel", True)]
    assert memory.run(3).result.error_type == "not_allowed"  # type: ignore[union-attr]
    assert memory.ingest(4, users("d")).result.error_type == "not_allowed"  # type: ignore[union-attr]


def test_cancel_of_a_scheduled_or_paused_job_settles_at_once() -> None:
    memory = running(6, scheduled_at="1970-01-01T00:10:00Z")  # t=600, after now=100
    assert memory.state().status is JobStatus.SCHEDULED
    cancel = memory.steer("cancel", 3)
    assert (memory.state().status, memory.state().canceled, memory.state().released) == (
        JobStatus.CANCELED,
        6,
        0,
    )
    assert answered(cancel) == [("c-cancel-3", "cancel", True)]
    assert memory.release(now=700.0) == Effects()  # its time came: nothing starts


@pytest.mark.parametrize(
    ("status_of", "kind", "why"),
    [
        ("completed", "cancel", "the job is COMPLETED: it can no longer be canceled"),
        ("completed", "pause", "the job is COMPLETED"),
        ("completed", "resume", "the job is COMPLETED"),
        ("created", "pause", "the job has not been run"),
        ("created", "resume", "the job has not been run"),
        ("canceled", "pause", "the job is CANCELED"),
        ("canceled", "resume", "the job is CANCELED"),
        ("canceling", "resume", "the job is being canceled"),
    ],
)
def test_control_commands_the_status_does_not_allow_are_refused(
    status_of: str, kind: str, why: str
) -> None:
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"))
    if status_of == "completed":
        memory.run(2)
        report(memory, 0, 1, 2, 3, 4)
    elif status_of == "canceled":
        memory.steer("cancel", 2)
    elif status_of == "canceling":
        memory.run(2)
        memory.steer("cancel", 3)
    before = memory.state()
    refused = memory.steer(kind, 9)
    assert refused.result is not None
    assert (refused.result.ok, refused.result.error_type, refused.result.message) == (
        False,
        "not_allowed",
        why,
    )
    assert (refused.keep_result, memory.state()) == (True, before)


def test_control_of_a_missing_or_foreign_job_is_not_found() -> None:
    memory = Memory()
    assert memory.steer("cancel", 1).result.error_type == "not_found"  # type: ignore[union-attr]
    memory.create(0)
    foreign = memory.steer("pause", 2, tenant="globex")
    assert foreign.result.error_type == "not_found"  # type: ignore[union-attr]


# -- pause and resume -------------------------------------------------------------


def test_pause_holds_once_no_page_is_out_and_resume_carries_on_to_completion() -> None:
    memory = running(20)
    report(memory, 0)
    pause = memory.steer("pause", 3)
    assert (pause.result, memory.state().status) == (None, JobStatus.PROCESSING)
    paused = report(memory, 1, 2, 3)
    job = memory.state()
    assert (job.status, job.enqueued, job.released, paused.release) == (
        JobStatus.PAUSED,
        8,
        4,
        False,
    )
    assert answered(paused) == [("c-pause-3", "pause", True)]
    assert memory.release(now=300.0) == Effects()  # held: nothing is handed over
    assert memory.steer("pause", 4).result.ok  # type: ignore[union-attr]
    resume = memory.steer("resume", 5, now=400.0)
    assert (resume.result.ok, resume.lifecycle, resume.previous, resume.emit) == (  # type: ignore[union-attr]
        True,
        True,
        JobStatus.PAUSED,
        (4, 8),
    )
    report(memory, 4, 5, 6, 7)
    memory.release(now=401.0)
    last = report(memory, 8, 9)
    job = memory.state()
    assert (job.status, job.enqueued, last.lifecycle) == (JobStatus.COMPLETED, 20, True)
    assert [e[1] for e in memory.events] == [
        JobStatus.CREATED,
        JobStatus.PROCESSING,
        JobStatus.PAUSED,
        JobStatus.PROCESSING,
        JobStatus.COMPLETED,
    ]


def test_a_pause_with_nothing_left_after_the_pages_out_completes_the_job() -> None:
    memory = running(8)  # 4 pages: all out at once
    memory.steer("pause", 3)
    last = report(memory, 0, 1, 2, 3)
    assert memory.state().status is JobStatus.COMPLETED
    assert answered(last) == [("c-pause-3", "pause", True)]


def test_a_resume_before_the_pause_settled_lifts_it_and_answers_the_pause() -> None:
    memory = running(20)
    memory.steer("pause", 3)
    resume = memory.steer("resume", 4)
    assert answered(resume) == [("c-pause-3", "pause", True)]
    assert (memory.state().hold, memory.state().status) == (None, JobStatus.PROCESSING)
    assert resume.result.ok  # type: ignore[union-attr]
    assert report(memory, 0, 1).release is True


def test_pause_of_a_scheduled_job_holds_it_and_resume_keeps_its_time() -> None:
    memory = running(6, scheduled_at="1970-01-01T00:10:00Z")
    pause = memory.steer("pause", 3)
    assert (memory.state().status, pause.result.ok) == (JobStatus.PAUSED, True)  # type: ignore[union-attr]
    assert memory.release(now=601.0) == Effects()  # due, but paused
    memory.steer("resume", 4, now=500.0)  # before its time: SCHEDULED again
    assert memory.state().status is JobStatus.SCHEDULED
    assert control.next_due(memory.state()) == 600.0


def test_an_error_answers_the_commands_waiting() -> None:
    memory = running(20)
    memory.steer("cancel", 3)
    failed = rules.job_failed(memory.state(), JOB, "page too large", 300.0)
    assert (failed.job.status, answered(failed)) == (  # type: ignore[union-attr]
        JobStatus.ERROR,
        [("c-cancel-3", "cancel", True)],
    )


# -- scheduled runs ---------------------------------------------------------------


def test_a_scheduled_run_starts_when_due_and_a_time_past_runs_at_once() -> None:
    memory = running(6, scheduled_at="1970-01-01T00:10:00.500+00:00")  # t=600.5
    job = memory.state()
    assert (job.status, job.released, job.scheduled_at, control.next_due(job)) == (
        JobStatus.SCHEDULED,
        0,
        600.5,
        600.5,
    )
    assert memory.run(2).emit is None  # replayed: still nothing to send
    assert memory.release(now=600.0) == Effects()
    started = memory.release(now=600.5)
    assert (started.lifecycle, started.previous, started.emit) == (
        True,
        JobStatus.SCHEDULED,
        (0, 3),
    )
    assert memory.state().status is JobStatus.PROCESSING
    past = running(6, scheduled_at="1970-01-01T00:00:50Z")  # t=50, before now=100
    assert (past.state().status, past.state().released) == (JobStatus.PROCESSING, 3)


def test_a_scheduled_empty_job_completes_at_its_run() -> None:
    memory = Memory()
    memory.create(0)
    memory.run(1, scheduled_at="2100-01-01T00:00:00Z")
    assert memory.state().status is JobStatus.COMPLETED


# -- send-rate limits -------------------------------------------------------------


def test_rate_limited_pages_are_small_and_the_window_a_quarter_second() -> None:
    assert control.rate_page_size(2000, 500) == 100
    assert control.rate_page_size(1, 500) == 1
    assert control.rate_page_size(1_000_000, 500) == 500
    memory = running(20, sends_per_second=40)  # pages of 2: 0.05 s each
    job = memory.state()
    assert (job.page_size, control.window_of(job, WINDOW), job.released) == (2, 5, 1)
    assert control.next_due(job) == pytest.approx(100.05)


def test_a_rate_limited_run_never_goes_faster_than_its_rate() -> None:
    """A pacer ticking every 10 ms, every page reported at once: within 1.1 x the
    rate over any 5 s; 400 users at 40/s take 10 s."""
    memory = running(400, sends_per_second=40)
    released_at = [100.0]  # page 0, at the run
    now = 100.0
    while memory.state().status is JobStatus.PROCESSING:
        now = round(now + 0.01, 2)
        report(memory, *range(len(released_at) - control.out(memory.state()), len(released_at)))
        effects = memory.release(now)
        if effects.emit is not None:
            released_at += [now] * (effects.emit[1] - effects.emit[0])
        assert now < 200
    sends = [(at, 2) for at in released_at]
    for start in [100.0 + i * 0.1 for i in range(60)]:
        in_window = sum(n for at, n in sends if start <= at < start + 5.0)
        assert in_window <= 1.1 * 5 * 40
    assert released_at[-1] - released_at[0] >= 0.95 * (400 / 40) - 0.05


def test_pacing_makes_up_a_tenth_of_a_second_of_lateness_at_most() -> None:
    memory = running(80, sends_per_second=40)  # pages of 2, one every 0.05 s
    report(memory, 0, now=100.04)
    late = memory.release(now=101.0)  # the pacer was away for a second
    assert late.emit == (1, 4)  # the page due and 0.1 s more: not twenty pages
    assert memory.release(now=101.01) == Effects()  # then the rate again


def test_a_job_run_before_the_window_has_every_page_out() -> None:
    """A record written by a version that handed every page over at the run (no
    `released`): a pause waits for all of them, a replayed run sends them again."""
    memory = running(12)  # 6 pages, 4 released
    job = memory.state()
    assert job.released == 4
    job.released = None
    memory.records[JOB] = job.to_bytes()
    assert control.out(memory.state()) == 6
    assert memory.run(2).emit == (0, 6)
    memory.steer("pause", 3)
    assert report(memory, 0, 1, 2, 3, 4).lifecycle is False
    assert memory.state().status is JobStatus.PROCESSING
    assert report(memory, 5).previous is JobStatus.PROCESSING
    assert memory.state().status is JobStatus.COMPLETED


def test_the_commands_waiting_for_a_hold_are_bounded() -> None:
    memory = running(20)
    for offset in range(3, 3 + control.MAX_WAITING + 5):
        memory.steer("cancel", offset)
    waiting = [w[0] for w in memory.state().waiting]
    assert len(waiting) == control.MAX_WAITING
    assert waiting[-1] == f"c-cancel-{2 + control.MAX_WAITING + 5}"


def test_a_dry_run_changes_nothing_of_the_job_and_only_before_the_run() -> None:
    memory = Memory()
    memory.create(0)
    memory.ingest(1, users("a", "b"))
    before = memory.state()
    dry = memory.run(2, dry_run=True)
    assert (dry.dry_run, dry.job, dry.emit, dry.result.ok) == (True, None, None, True)  # type: ignore[union-attr]
    assert memory.state() == before
    memory.run(3)
    late = memory.run(4, dry_run=True)
    assert (late.dry_run, late.result.error_type) == (False, "already_run")  # type: ignore[union-attr]


def test_nothing_is_due_for_a_held_job_an_unpaced_one_or_a_missing_one() -> None:
    memory = running(20, sends_per_second=40)
    assert control.next_due(memory.state()) is not None
    memory.steer("pause", 3)
    assert control.next_due(memory.state()) is None  # held: the pacer leaves it alone
    assert control.next_due(running(20).state()) is None  # no rate: reports drive it
    assert rules.release(None, 1.0, WINDOW, again=True) == Effects()
