"""The benchmark's job: its definition, generated users, commands, and reading its views.

Users are shaped like the test suite's (`tests.streams.harness.ingest_generated`):
a user id, an email and a little data each. Commands are built before any
timing starts, so a timed section only sends and waits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

from schemas.commands import CommandResult, CreateJob, IngestUsers, RunJob
from streams.kafka.producer import CommandProducer, complete_command
from streams.settings import Settings
from streams.views import keys
from tests.streams.harness import wait_for

from .env import TENANT, redis_client
from .kafka import read_results

BATCH = 1000
MESSAGE: dict[str, Any] = {
    "event": "bench-welcome",
    "routing": {"method": "single", "channels": ["email"]},
    "data": {"campaign": "bulkstream benchmark", "sender": "Acme"},
}


def generated_user(i: int) -> dict[str, Any]:
    return {"to": {"user_id": f"user-{i}", "email": f"user-{i}@example.com"}, "data": {"n": i}}


def generated_users(start: int, count: int) -> list[dict[str, Any]]:
    return [generated_user(i) for i in range(start, start + count)]


def create_command(job_id: str | None = None) -> CreateJob:
    raw: dict[str, Any] = {"kind": "create", "message": MESSAGE}
    if job_id is not None:
        raw["jobId"] = job_id
    command = complete_command(raw, TENANT)
    assert isinstance(command, CreateJob)
    return command


def ingest_commands(job_id: str, users: int, batch: int = BATCH) -> list[IngestUsers]:
    """`users` generated users in commands of `batch` users."""
    out = []
    for start in range(0, users, batch):
        raw = {
            "kind": "ingest",
            "jobId": job_id,
            "users": generated_users(start, min(batch, users - start)),
        }
        command = complete_command(raw, TENANT)
        assert isinstance(command, IngestUsers)
        out.append(command)
    return out


def run_command(job_id: str) -> RunJob:
    command = complete_command({"kind": "run", "jobId": job_id}, TENANT)
    assert isinstance(command, RunJob)
    return command


class Views:
    """Synchronous, cheap reads of a namespace's Redis views (polled every few ms)."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.redis_prefix
        self.redis = redis_client(settings.redis_url)

    def job(self, job_id: str) -> dict[str, str] | None:
        raw = cast(dict[bytes, bytes], self.redis.hgetall(keys.job(self.prefix, TENANT, job_id)))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def result(self, job_id: str, command_id: str) -> CommandResult | None:
        raw = self.redis.get(keys.result(self.prefix, TENANT, job_id, command_id))
        return None if raw is None else CommandResult.model_validate_json(raw)

    def wait_result(self, job_id: str, command_id: str, timeout: float) -> CommandResult:
        return wait_for(
            lambda: self.result(job_id, command_id), timeout, f"result of {command_id}", 0.01
        )

    def wait_status(self, job_id: str, status: str, timeout: float) -> dict[str, str]:
        def probe() -> dict[str, str] | None:
            job = self.job(job_id)
            if job is not None and job.get("status") == "ERROR":
                raise AssertionError(f"job {job_id} is ERROR: {job}")
            return job if job is not None and job.get("status") == status else None

        return wait_for(probe, timeout, f"job {job_id} to be {status}", 0.02)

    def job_bytes(self, job_id: str) -> int:
        """Redis memory held by a job's views (summary, users and status buckets)."""
        total = 0
        match = f"{keys.job(self.prefix, TENANT, job_id)}*"
        batch = list(self.redis.scan_iter(match=match, count=5000))
        for start in range(0, len(batch), 1000):
            with self.redis.pipeline(transaction=False) as pipe:
                for key in batch[start : start + 1000]:
                    pipe.memory_usage(key, samples=0)
                total += sum(int(v or 0) for v in pipe.execute())
        return total

    def close(self) -> None:
        self.redis.close()


@dataclass
class Ingested:
    """A timed ingest: first send to the last command's result."""

    seconds: float
    accepted: int
    commands: int


def create_job(producer: CommandProducer, views: Views, timeout: float = 180) -> CreateJob:
    command = create_command()
    producer.send(command)
    producer.flush()
    result = views.wait_result(command.job_id, command.command_id, timeout)
    assert result.ok, result
    return command


def ingest(
    producer: CommandProducer,
    views: Views,
    commands: list[IngestUsers],
    timeout: float = 1800,
) -> Ingested:
    """Send the commands and wait for the last one's result (in Redis: the clock stops there);
    then check every command's result on the results topic (Kafka: a Redis flushed by
    somebody else meanwhile loses results, not the topic)."""
    started = time.perf_counter()
    for command in commands:
        producer.send(command)
    producer.flush(300)
    views.wait_result(commands[-1].job_id, commands[-1].command_id, timeout)
    seconds = time.perf_counter() - started
    wanted = {c.command_id for c in commands}
    results = read_results(producer.settings, wanted)
    missing = wanted - results.keys()
    if missing:
        raise AssertionError(f"{len(missing)} ingest command(s) without a result")
    bad = [r for r in results.values() if not r.ok]
    if bad:
        raise AssertionError(f"{len(bad)} ingest command(s) failed, e.g. {bad[0]}")
    accepted = sum(r.total or 0 for r in results.values())
    return Ingested(seconds=seconds, accepted=accepted, commands=len(commands))
