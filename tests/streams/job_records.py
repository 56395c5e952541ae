"""A job record as the aggregate keeps it, for tests of what is written from one."""

from __future__ import annotations

from typing import Any

from streams.aggregate.state import JobState


def job_record(version: int = 1, **fields: Any) -> JobState:
    """A created job of tenant `acme`, with `fields` set over the defaults."""
    job = JobState(
        tenant="acme",
        definition={"event": "e"},
        send={},
        data={},
        created_at=1.0,
        create_command="c",
        applied_offset=0,
    )
    for name, value in fields.items():
        setattr(job, name, value)
    job.version = version
    return job
