"""The benchmark's job: its definition, its commands, and timing its create and ingest.

Users are the harness's generated users (`streams.testing.users`), as in the
tests: a user id, an email and a little data each; its views are read with
`streams.testing.reader.ViewReader`. Commands are built before any timing
starts, so a timed section only sends and waits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.commands import CreateJob, IngestUsers, RunJob
from streams.kafka.producer import CommandProducer, complete_command
from streams.testing.reader import ViewReader
from streams.testing.users import BATCH
from streams.testing.users import ingest_commands as generated_ingest_commands

from .env import TENANT
from .kafka import read_results

MESSAGE: dict[str, Any] = {
    "event": "bench-welcome",
    "routing": {"method": "single", "channels": ["email"]},
    "data": {"campaign": "bulkstream benchmark", "sender": "Acme"},
}


def create_command(job_id: str | None = None) -> CreateJob:
    raw: dict[str, Any] = {"kind": "create", "message": MESSAGE}
    if job_id is not None:
        raw["jobId"] = job_id
    command = complete_command(raw, TENANT)
    assert isinstance(command, CreateJob)
    return command


def ingest_commands(job_id: str, users: int, batch: int = BATCH) -> list[IngestUsers]:
    """`users` generated users in commands of `batch` users."""
    return list(generated_ingest_commands(job_id, TENANT, 0, users, batch))


def run_command(job_id: str, sends_per_second: int | None = None) -> RunJob:
    raw: dict[str, Any] = {"kind": "run", "jobId": job_id}
    if sends_per_second is not None:
        raw["sendsPerSecond"] = sends_per_second
    command = complete_command(raw, TENANT)
    assert isinstance(command, RunJob)
    return command


@dataclass
class Ingested:
    """A timed ingest: first send to the last command's result."""

    seconds: float
    accepted: int
    commands: int


def create_job(producer: CommandProducer, views: ViewReader, timeout: float = 180) -> CreateJob:
    command = create_command()
    producer.send(command)
    producer.flush()
    result = views.wait_result(command.job_id, command.command_id, timeout, every=0.01)
    assert result.ok, result
    return command


def ingest(
    producer: CommandProducer,
    views: ViewReader,
    commands: Iterable[IngestUsers],
    timeout: float = 1800,
) -> Ingested:
    """Send the commands and wait for the last one's result (in Redis: the clock stops there);
    then check every command's result on the results topic (Kafka: a Redis flushed by
    somebody else meanwhile loses results, not the topic). `commands` may be a generator:
    a 10M-user job's commands are not all held at once."""
    started = time.perf_counter()
    wanted: set[str] = set()
    last: IngestUsers | None = None
    for command in commands:
        producer.send(command)
        wanted.add(command.command_id)
        last = command
    assert last is not None, "no ingest command"
    producer.flush(300)
    views.wait_result(last.job_id, last.command_id, timeout, every=0.01)
    seconds = time.perf_counter() - started
    results = read_results(producer.settings, wanted)
    missing = wanted - results.keys()
    if missing:
        raise AssertionError(f"{len(missing)} ingest command(s) without a result")
    bad = [r for r in results.values() if not r.ok]
    if bad:
        raise AssertionError(f"{len(bad)} ingest command(s) failed, e.g. {bad[0]}")
    accepted = sum(r.total or 0 for r in results.values())
    return Ingested(seconds=seconds, accepted=accepted, commands=len(wanted))
