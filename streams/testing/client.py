"""An upstream producer: sends commands to the topology and reads what they did.

`Client` remembers the job of every command it sends or generates, so
`result(command_id)` finds it (results are keyed by job); a command it did not
send is looked up with `job_id=`. Reads go through one `ViewReader`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

from schemas.commands import AnyCommand, CommandResult, IngestUsers
from schemas.views import JobView
from streams.kafka.producer import CommandProducer, complete_command
from streams.settings import Settings
from streams.testing.reader import ViewReader
from streams.testing.users import BATCH, ingest_commands


class Client:
    """Drives the topology the way an upstream producer does, and reads its views."""

    def __init__(self, settings: Settings, tenant: str = "acme") -> None:
        self.settings = settings
        self.tenant = tenant
        self.producer = CommandProducer(settings)
        self.reader = ViewReader(settings, tenant)
        self.jobs: dict[str, str] = {}  # command id -> job id, of the commands sent

    # -- commands --------------------------------------------------------------
    def send(self, record: dict[str, Any]) -> AnyCommand:
        command = complete_command(record, self.tenant)
        self.jobs[command.command_id] = command.job_id
        self.producer.send(command)
        self.producer.flush()
        return command

    def create(self, message: dict[str, Any], **extra: Any) -> str:
        job_id = extra.pop("jobId", None) or f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"
        self.send({"kind": "create", "jobId": job_id, "message": message, **extra})
        return str(job_id)

    def ingest(self, job_id: str, users: list[dict[str, Any]], **extra: Any) -> AnyCommand:
        return self.send({"kind": "ingest", "jobId": job_id, "users": users, **extra})

    def run(self, job_id: str, **extra: Any) -> AnyCommand:
        return self.send({"kind": "run", "jobId": job_id, **extra})

    # -- reads -----------------------------------------------------------------
    def result(
        self, command_id: str, timeout: float = 60, every: float = 0.2, job_id: str | None = None
    ) -> CommandResult:
        """The result of a command: one this client sent, or one of `job_id`."""
        job_id = job_id or self.jobs[command_id]
        return self.reader.wait_result(job_id, command_id, timeout, every)

    def job(self, job_id: str, tenant: str | None = None) -> JobView | None:
        return self.reader.job(job_id, tenant)

    def wait_status(self, job_id: str, status: str, timeout: float) -> JobView:
        return self.reader.wait_status(job_id, status, timeout)

    def users(self, job_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every user of the job, paged through the view by cursor."""
        return self.reader.users(job_id, tenant)

    def created_at(self, job_id: str) -> float:
        return self.reader.created_at(job_id)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def generated_commands(
    client: Client, job_id: str, first: int, stop: int, batch: int = BATCH
) -> Iterator[IngestUsers]:
    """Ingest commands of generated users `first`..`stop - 1`, `batch` users each (the
    client remembers their job, for `Client.result`)."""
    for command in ingest_commands(job_id, client.tenant, first, stop, batch):
        client.jobs[command.command_id] = job_id
        yield command


def send_generated(
    client: Client, job_id: str, first: int, stop: int, batch: int = BATCH
) -> list[str]:
    """Send generated users `first`..`stop - 1` as ingest commands; return their command ids."""
    commands = []
    for command in generated_commands(client, job_id, first, stop, batch):
        client.producer.send(command)
        commands.append(command.command_id)
    client.producer.flush(120)
    return commands


def await_accepted(client: Client, commands: list[str]) -> int:
    """Wait for every command's result; each must be ok; return the users they accepted."""
    total = 0
    for command_id in commands:
        result = client.result(command_id, timeout=900)
        assert result.ok, result
        total += result.total or 0
    return total


def ingest_generated(client: Client, job_id: str, users: int, batch: int = BATCH) -> int:
    """Ingest `users` generated users in batches; wait for the last result; return accepted."""
    return await_accepted(client, send_generated(client, job_id, 0, users, batch))
