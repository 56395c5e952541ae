"""One scenario's job on a real stack, and the count that judges it.

`Run` owns the worker processes (and the API, when a scenario needs it) over
its own topics, app id and Redis prefix; `Tally` is what every scenario
reports: sends expected and seen (read_committed), duplicates, lost, the
job's counters against the truth, and 5xx answers.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.ids import positional_message_id
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.client import Client, await_accepted, ingest_generated, send_generated
from streams.testing.processes import ApiProcess, WorkerProcess, wait_for
from streams.testing.topics import drop_topics, fresh_settings, read_topic


@dataclass
class Tally:
    scenario: str
    users: int
    faults: list[str] = field(default_factory=list)
    sends_seen: int = 0
    duplicates: int = 0
    lost: int = 0
    unexpected: int = 0
    counters: tuple[int, int, int] | None = None  # received, enqueued, failures
    http_5xx: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)  # scenario-specific, all must hold

    @property
    def counters_exact(self) -> bool:
        return self.counters == (self.users, self.users, 0)

    @property
    def ok(self) -> bool:
        return (
            self.sends_seen == self.users
            and self.duplicates == self.lost == self.unexpected == self.http_5xx == 0
            and self.counters_exact
            and all(self.checks.values())
        )


class Run:
    """A fresh topology and its worker processes; `close` stops everything it started."""

    def __init__(self, base: Settings, name: str, log_root: Path, seed: int) -> None:
        self.tag = tag = f"{name}-{uuid.uuid4().hex[:6]}"
        self.settings = fresh_settings(base, tag)
        ensure_topics(self.settings)
        self.log_dir = log_root / tag
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.client = Client(self.settings)
        self.workers: dict[str, WorkerProcess] = {}
        self.api: ApiProcess | None = None
        self.rng = random.Random(seed)

    def start_worker(self, worker_id: str) -> WorkerProcess:
        worker = WorkerProcess(self.settings, worker_id, self.log_dir, "all").start()
        self.workers[worker_id] = worker
        return worker

    def kill_random_worker(self) -> str:
        victim = self.rng.choice(sorted(self.workers))
        self.workers[victim].kill()
        self.start_worker(victim)
        return victim

    def start_api(self) -> ApiProcess:
        self.api = ApiProcess(self.settings, self.log_dir).start()
        return self.api

    def close(self) -> None:
        if self.api is not None:
            self.api.stop()
        for worker in self.workers.values():
            worker.stop()
        self.client.close()
        drop_topics(self.settings, self.tag)

    # -- the job -------------------------------------------------------------
    def create(self) -> str:
        job_id = self.client.create({"template": "CHAOS", "data": {"run": "chaos"}})
        self.client.wait_status(job_id, "CREATED", 120)
        return job_id

    def ingest(self, job_id: str, users: int) -> int:
        return ingest_generated(self.client, job_id, users)

    def send(self, job_id: str, first: int, stop: int) -> list[str]:
        """Send generated users `first`..`stop - 1` without waiting for their results."""
        return send_generated(self.client, job_id, first, stop)

    def accepted(self, commands: list[str]) -> int:
        return await_accepted(self.client, commands)

    def wait_received(self, job_id: str, count: int, timeout: float = 900) -> Any:
        return self._wait_counter(job_id, "received", count, timeout)

    def wait_enqueued(self, job_id: str, count: int, timeout: float = 900) -> Any:
        return self._wait_counter(job_id, "enqueued", count, timeout)

    def _wait_counter(self, job_id: str, counter: str, count: int, timeout: float) -> Any:
        def reached() -> Any:
            job = self.client.job(job_id)
            if job is not None and (getattr(job, counter) >= count or job.status == "COMPLETED"):
                return job
            return None

        return wait_for(reached, timeout, f"{count} {counter}", every=0.05)

    def finish(
        self, tally: Tally, job_id: str, timeout: float = 900, also: dict[str, int] | None = None
    ) -> None:
        """Wait for COMPLETED, then count the sends and compare the counters with the truth.

        `also`: other jobs this run ran, with how many sends each must have made, once each;
        a send of any job not named here is unexpected."""
        also = also or {}
        job = self.client.wait_status(job_id, "COMPLETED", timeout)
        tally.counters = (job.received, job.enqueued, job.failures)
        created_at = self.created_at(job_id)
        sends = read_topic(
            self.settings,
            self.settings.topic_sends,
            expected=tally.users + sum(also.values()),
            idle=10,
            timeout=900,
        )
        by_job: dict[str, Counter[str]] = {}
        for _, value, _ in sends:
            by_job.setdefault(value["jobId"], Counter())[value["messageId"]] += 1
        seen = by_job.pop(job_id, Counter())
        expected = {positional_message_id(created_at, job_id, p) for p in range(tally.users)}
        tally.sends_seen = sum(seen.values())
        tally.duplicates = sum(n - 1 for n in seen.values() if n > 1)
        tally.lost = len(expected - set(seen))
        tally.unexpected = len(set(seen) - expected)
        for other, count in also.items():
            theirs = by_job.pop(other, Counter())
            tally.checks[f"job {other}: {count:,} sends as its counters say, each once"] = (
                sum(theirs.values()) == len(theirs) == count
            )
        tally.unexpected += sum(sum(theirs.values()) for theirs in by_job.values())

    def created_at(self, job_id: str) -> float:
        return self.client.created_at(job_id)


def timed(tally: Tally, started: float) -> None:
    tally.seconds = time.monotonic() - started
