"""Test helpers for the stream topology: worker processes, commands, reading the outputs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from confluent_kafka import Consumer, ConsumerGroupState
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import KafkaError, KafkaException, TopicPartition

from schemas.commands import AnyCommand, CommandResult
from streams.kafka.producer import CommandProducer, complete_command
from streams.settings import Settings
from streams.views import Views

T = TypeVar("T")


def settings_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment that makes a `bulkstream` process use these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKSTREAM_")}
    return env | settings.env(**overrides)


# Workers that should be running: waiting fails at once, with the log, when one died.
WATCHED: list[WorkerProcess] = []


class WorkerProcess:
    """A real `bulkstream worker` process; its output goes to a log file."""

    def __init__(self, settings: Settings, worker_id: str, log_dir: Path, stage: str) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.stage = stage
        self.log_path = log_dir / f"worker-{worker_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = settings_env(self.settings, worker_id=self.worker_id)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.ops.cli", "worker", "--stage", self.stage],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        WATCHED.append(self)
        return self

    def metrics_url(self, timeout: float = 60) -> str:
        """Where this worker serves /metrics, /healthz and /readyz (from its log)."""

        def probe() -> str | None:
            found = re.search(
                rb'metrics, health and readiness on (http://[^\s"]+)', self.log_path.read_bytes()
            )
            return found.group(1).decode() if found else None

        return wait_for(probe, timeout, f"worker {self.worker_id} to serve its metrics")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no goodbye."""
        if self in WATCHED:
            WATCHED.remove(self)
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int | None:
        """SIGTERM, as an orchestrator does; its exit code, or None if it had to be killed."""
        if self in WATCHED:
            WATCHED.remove(self)
        if self.proc is None:
            return None
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                return None
        return self.proc.returncode

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        for worker in WATCHED:
            if not worker.alive():
                WATCHED.remove(worker)
                raise AssertionError(f"worker {worker.worker_id} died:\n{worker.log_tail()}")
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Client:
    """Drives the topology the way an upstream producer does, and reads its views."""

    def __init__(self, settings: Settings, tenant: str = "acme") -> None:
        self.settings = settings
        self.tenant = tenant
        self.producer = CommandProducer(settings)
        self.jobs: dict[str, str] = {}  # command id -> job id, of the commands sent

    def send(self, record: dict[str, Any]) -> Any:
        command = complete_command(record, self.tenant)
        self.jobs[command.command_id] = command.job_id
        self.producer.send(command)
        self.producer.flush()
        return command

    def create(self, message: dict[str, Any], **extra: Any) -> str:
        job_id = extra.pop("jobId", None) or f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"
        self.send({"kind": "create", "jobId": job_id, "message": message, **extra})
        return job_id

    def ingest(self, job_id: str, users: list[dict[str, Any]], **extra: Any) -> Any:
        return self.send({"kind": "ingest", "jobId": job_id, "users": users, **extra})

    def run(self, job_id: str, **extra: Any) -> Any:
        return self.send({"kind": "run", "jobId": job_id, **extra})

    def _views(self) -> Views:
        return Views(
            aioredis.from_url(self.settings.redis_url),
            self.settings.redis_prefix,
            self.settings.retention_seconds,
        )

    def _read(self, fn: Callable[[Views], Any]) -> Any:
        async def go() -> Any:
            views = self._views()
            try:
                return await fn(views)
            finally:
                await views.redis.aclose()

        return asyncio.run(go())

    def result(
        self, command_id: str, timeout: float = 60, every: float = 0.2, job_id: str | None = None
    ) -> CommandResult:
        """The result of a command: one this client sent, or one of `job_id`."""
        job_id = job_id or self.jobs[command_id]

        def probe() -> CommandResult | None:
            result: CommandResult | None = self._read(
                lambda v: v.read_result(self.tenant, job_id, command_id)
            )
            return result

        return wait_for(probe, timeout, f"the result of command {command_id}", every)

    def job(self, job_id: str, tenant: str | None = None) -> Any:
        return self._read(lambda v: v.read_job(tenant or self.tenant, job_id))

    def wait_status(self, job_id: str, status: str, timeout: float) -> Any:
        return wait_for(
            lambda: (job := self.job(job_id)) is not None and job.status == status and job,
            timeout,
            f"job {job_id} to be {status}",
        )

    def users(self, job_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every user of the job, paged through the view by cursor."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self._read(
                partial(_read_users, tenant=tenant or self.tenant, job_id=job_id, cursor=cursor)
            )
            assert page is not None
            items.extend(page.items)
            if not page.more:
                return items
            cursor = page.cursor


async def _read_users(views: Views, *, tenant: str, job_id: str, cursor: str | None) -> Any:
    return await views.read_users(tenant, job_id, cursor)


def read_topic(
    settings: Settings,
    topic: str,
    *,
    expected: int | None = None,
    idle: float = 5.0,
    timeout: float = 300.0,
) -> list[tuple[bytes | None, Any, int]]:
    """Everything committed on a topic, read_committed from the start, as (key, json, partition).

    Stops once `expected` messages arrived and nothing more came for `idle`
    seconds (so extra duplicates would still be seen), or at the end of every
    partition when `expected` is None."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    metadata = consumer.list_topics(topic, timeout=30).topics[topic]
    consumer.assign([TopicPartition(topic, p, -2) for p in metadata.partitions])
    out: list[tuple[bytes | None, Any, int]] = []
    at_eof: set[int] = set()
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(10_000, timeout=0.5)
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(message.partition() or 0)
                        continue
                    raise AssertionError(f"consumer error: {error}")
                value = message.value()
                out.append(
                    (
                        message.key(),
                        orjson.loads(value) if value else None,
                        message.partition() or 0,
                    )
                )
                at_eof.discard(message.partition() or 0)
                last_new = time.monotonic()
            if expected is None:
                if len(at_eof) == len(metadata.partitions):
                    break
            elif len(out) >= expected and time.monotonic() - last_new > idle:
                break
    finally:
        consumer.close()
    return out


def read_dlq(
    settings: Settings, expected: int, timeout: float = 60.0
) -> list[tuple[bytes | None, dict[str, bytes], bytes]]:
    """The dead-letter topic as (key, headers, value)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    consumer.subscribe([settings.topic_commands_dlq])
    out: list[tuple[bytes | None, dict[str, bytes], bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            headers: dict[str, bytes] = {}
            for header in message.headers() or []:
                name, raw = header[0], header[1]
                headers[str(name)] = raw if isinstance(raw, bytes) else str(raw or "").encode()
            value = message.value()
            assert isinstance(value, bytes)
            out.append((message.key(), headers, value))
    finally:
        consumer.close()
    return out


def members_with_partitions(settings: Settings, group: str) -> int:
    """How many members of a consumer group hold partitions, once the group is stable."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    if description.state != ConsumerGroupState.STABLE:
        return 0
    return sum(
        1
        for member in description.members
        if member.assignment is not None and member.assignment.topic_partitions
    )


def peak_rss_kib(pid: int) -> int:
    """The peak resident set size of a live process (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


def ingest_generated(client: Client, job_id: str, users: int, batch: int = 1000) -> int:
    """Ingest `users` generated users in batches; wait for the last result; return accepted."""
    return await_accepted(client, send_generated(client, job_id, 0, users, batch))


def send_generated(
    client: Client, job_id: str, first: int, stop: int, batch: int = 1000
) -> list[str]:
    """Send generated users `first`..`stop - 1` as ingest commands; return their command ids."""
    commands = []
    for command in generated_commands(client, job_id, first, stop, batch):
        client.producer.send(command)
        commands.append(command.command_id)
    client.producer.flush(120)
    return commands


def generated_commands(
    client: Client, job_id: str, first: int, stop: int, batch: int = 1000
) -> Iterator[AnyCommand]:
    """Ingest commands of generated users `first`..`stop - 1`, `batch` users each (the
    client remembers their job, for `Client.result`)."""
    for start in range(first, stop, batch):
        command = complete_command(
            {
                "kind": "ingest",
                "jobId": job_id,
                "users": [
                    {
                        "to": {"user_id": f"user-{i}", "email": f"user-{i}@example.com"},
                        "data": {"n": i},
                    }
                    for i in range(start, min(start + batch, stop))
                ],
            },
            client.tenant,
        )
        client.jobs[command.command_id] = job_id
        yield command


def await_accepted(client: Client, commands: list[str]) -> int:
    """Wait for every command's result; each must be ok; return the users they accepted."""
    total = 0
    for command_id in commands:
        result = client.result(command_id, timeout=900)
        assert result.ok, result
        total += result.total or 0
    return total


def fresh_settings(settings: Settings, tag: str) -> Settings:
    """A copy of these settings with topics, app id and Redis prefix of its own."""
    names = {
        name: f"{value}.{tag}"
        for name, value in settings.model_dump().items()
        if name.startswith("topic_") or name in ("app_id", "redis_prefix")
    }
    return settings.model_copy(update={**names, "data_dir": settings.data_dir / tag})


def drop_topics(settings: Settings, marker: str) -> None:
    """Delete every topic whose name holds `marker` (a test's or a run's own token).

    Each test makes ten topics of `partitions` partitions, and faust two more;
    left behind, a long suite runs the broker out of open files."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    names = [name for name in admin.list_topics(timeout=30).topics if marker in name]
    for future in admin.delete_topics(names, operation_timeout=60).values() if names else []:
        # Already gone, or the broker is down (a chaos test): nothing to keep either way.
        with contextlib.suppress(KafkaException):
            future.result(60)
