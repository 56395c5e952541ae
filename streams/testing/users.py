"""Generated users and the ingest commands that carry them: one maker for every caller.

User `i` is `{"to": {"user_id": "user-<i>", "email": "user-<i>@example.com"},
"data": {"n": <i>}}`; the tests, the benchmark and the reliability suite count
sends against exactly these identities (`user:user-<i>`). The demo names its
users `demo-user-<i>` and gives them a name and a plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from schemas.commands import IngestUsers
from streams.kafka.producer import complete_command

BATCH = 1000  # users per ingest command or request (Courier's informal limit)


def _numbered(i: int) -> dict[str, Any]:
    return {"n": i}


def generated_user(
    i: int, prefix: str = "user", data: Callable[[int], dict[str, Any]] = _numbered
) -> dict[str, Any]:
    return {
        "to": {"user_id": f"{prefix}-{i}", "email": f"{prefix}-{i}@example.com"},
        "data": data(i),
    }


def generated_users(
    start: int,
    count: int,
    prefix: str = "user",
    data: Callable[[int], dict[str, Any]] = _numbered,
) -> list[dict[str, Any]]:
    """Users `start`..`start + count - 1`."""
    return [generated_user(i, prefix, data) for i in range(start, start + count)]


def ingest_commands(
    job_id: str, tenant: str, first: int, stop: int, batch: int = BATCH
) -> Iterator[IngestUsers]:
    """Ingest commands of generated users `first`..`stop - 1`, `batch` users each."""
    for start in range(first, stop, batch):
        command = complete_command(
            {
                "kind": "ingest",
                "jobId": job_id,
                "users": generated_users(start, min(batch, stop - start)),
            },
            tenant,
        )
        assert isinstance(command, IngestUsers)
        yield command
