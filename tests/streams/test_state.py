"""The job record: page bitmap, batches, key layout."""

from __future__ import annotations

import pytest

from streams.state import (
    Batch,
    JobState,
    expire_key,
    expire_key_job,
    identity_key,
    job_key,
    job_prefix,
)
from streams.views import InvalidCursor, decode_cursor, encode_cursor


def _job() -> JobState:
    return JobState(
        tenant="t", definition={}, send={}, created_at=1.0, create_command="c", applied_offset=0
    )


def test_page_bitmap_marks_exactly_the_pages_done() -> None:
    job = _job()
    for page in (0, 9, 1000):
        job.mark_page_done(page)
    restored = JobState.from_bytes(job.to_bytes())
    assert [p for p in range(1100) if restored.page_done(p)] == [0, 9, 1000]


def test_batches_are_found_by_offset() -> None:
    job = _job()
    job.batches = [Batch(offset=3, base=0, count=10), Batch(offset=8, base=10, count=5)]
    assert job.batch_at(8) == Batch(offset=8, base=10, count=5)
    assert job.batch_at(4) is None


def test_every_key_of_a_job_shares_its_prefix_and_no_other_job_s() -> None:
    assert job_key("j1").startswith(job_prefix("j1"))
    assert identity_key("j1", "user:x").startswith(job_prefix("j1"))
    assert not job_key("j10").startswith(job_prefix("j1"))
    assert expire_key_job(expire_key(123, "j1")) == (123, "j1")


def test_cursor_round_trip_and_rejections() -> None:
    cursor = encode_cursor("job", 200)
    assert decode_cursor("job", cursor) == 200
    for bad in ("", "!!!", encode_cursor("other", 200), encode_cursor("job", 150), "A" * 600):
        with pytest.raises(InvalidCursor):
            decode_cursor("job", bad)
