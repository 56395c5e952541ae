"""Webhook messages of event records, pure: the body, and a `webhook-id` that is the
event's, not the record's, so that an event published again after a crash (at a new
offset) comes under the id it came under first."""

from __future__ import annotations

from typing import Any

from schemas.delivery import DeliveryStatus, MessageEvent
from schemas.events import JobEvent
from schemas.views import JobStatus
from streams.webhooks.events import job_message, message_message, webhook_id

JOBS, MESSAGES = "bulk.job-events", "bulk.message-events"


def _job(status: JobStatus, previous: JobStatus | None, version: int | None) -> dict[str, Any]:
    event = JobEvent(
        job_id="job-1",
        tenant="acme",
        status=status,
        previous=previous,
        received=3,
        enqueued=3,
        failures=0,
        at=1_760_000_000.5,
        version=version,
    )
    return event.to_wire()


def _message(status: DeliveryStatus, message_id: str = "1-00000000-abc") -> dict[str, Any]:
    event = MessageEvent(
        message_id=message_id, job_id="job-1", tenant="acme", status=status, at=1_760_000_000_500
    )
    return event.to_wire()


def test_a_message_event_published_again_keeps_its_webhook_id() -> None:
    failed = message_message(_message(DeliveryStatus.FAILED))
    again = message_message(_message(DeliveryStatus.FAILED))
    assert webhook_id("wh-1", failed, MESSAGES, 0, 10) == webhook_id("wh-1", again, MESSAGES, 3, 99)


def test_message_events_of_other_states_messages_or_endpoints_have_other_ids() -> None:
    failed = message_message(_message(DeliveryStatus.FAILED))
    sent = message_message(_message(DeliveryStatus.SENT))
    other = message_message(_message(DeliveryStatus.FAILED, "1-00000000-abd"))
    ids = {
        webhook_id("wh-1", failed, MESSAGES, 0, 10),
        webhook_id("wh-1", sent, MESSAGES, 0, 10),
        webhook_id("wh-1", other, MESSAGES, 0, 10),
        webhook_id("wh-2", failed, MESSAGES, 0, 10),
    }
    assert len(ids) == 4


def test_a_job_event_is_identified_by_the_version_its_change_wrote() -> None:
    paused = job_message(_job(JobStatus.PAUSED, JobStatus.PROCESSING, 4))
    again = job_message(_job(JobStatus.PAUSED, JobStatus.PROCESSING, 4))
    later = job_message(_job(JobStatus.PAUSED, JobStatus.PROCESSING, 6))  # paused again
    assert paused is not None
    assert again is not None
    assert later is not None
    first = webhook_id("wh-1", paused, JOBS, 0, 10)
    assert webhook_id("wh-1", again, JOBS, 1, 20) == first
    assert webhook_id("wh-1", later, JOBS, 0, 30) != first


def test_a_job_event_without_a_version_is_identified_by_its_record() -> None:
    legacy = job_message(_job(JobStatus.COMPLETED, JobStatus.PROCESSING, None))
    assert legacy is not None
    assert legacy.identity is None
    first = webhook_id("wh-1", legacy, JOBS, 0, 10)
    assert webhook_id("wh-1", legacy, JOBS, 0, 10) == first  # every attempt
    assert webhook_id("wh-1", legacy, JOBS, 0, 11) != first


def test_a_job_event_that_changes_no_status_makes_no_message() -> None:
    assert job_message(_job(JobStatus.CREATED, JobStatus.CREATED, 2)) is None
