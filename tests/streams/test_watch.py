"""The live progress line of `status --watch` and `make demo`, for every kind of job."""

from __future__ import annotations

from schemas.views import JobStatus, JobView
from streams.ops.watch import Rate, describe


def job(status: JobStatus, **fields: object) -> JobView:
    values: dict[str, object] = {
        "definition": {},
        "received": 10_000,
        "enqueued": 4_000,
        "failures": 0,
        **fields,
    }
    return JobView.model_validate({**values, "status": status})


def test_a_running_job_s_eta_follows_its_observed_rate() -> None:
    rate = Rate()
    rate.add(0.0, 2_000)
    rate.add(1.0, 4_000)
    line = describe(job(JobStatus.PROCESSING), rate)
    assert "rate 2,000/s" in line
    assert "eta 3s" in line


def test_a_rate_limited_job_s_eta_follows_its_limit() -> None:
    rate = Rate()
    rate.add(0.0, 0)
    rate.add(1.0, 4_000)  # a burst seen at the start says nothing of the pace to come
    line = describe(job(JobStatus.PROCESSING, sendsPerSecond=500), rate)
    assert "(limit 500/s)" in line
    assert "eta 12s" in line


def test_a_scheduled_job_counts_down_to_its_start() -> None:
    line = describe(
        job(JobStatus.SCHEDULED, enqueued=0, scheduledAt="2026-12-01T17:02:05Z"),
        Rate(),
        now=1_796_144_400.0,  # 2026-12-01T17:00:00Z
    )
    assert "eta starts in 2m05s" in line
    tomorrow = job(JobStatus.SCHEDULED, enqueued=0, scheduledAt="2026-12-02T18:30:00Z")
    assert "eta starts in 25h30m" in describe(tomorrow, Rate(), now=1_796_144_400.0)


def test_a_canceled_job_shows_what_was_never_sent_and_no_eta() -> None:
    line = describe(job(JobStatus.CANCELED, canceled=6_000), Rate())
    assert "canceled 6,000" in line
    assert line.endswith("eta -")
    assert describe(job(JobStatus.PAUSED), Rate()).endswith("eta -")
