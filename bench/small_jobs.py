"""Scenario: small jobs, as a person feels them, through the HTTP API.

W workers and a `bulkstream api`; workers are started and the first job is
created as soon as every one answers /readyz (not later: readiness has to
mean the fan-out holds its partitions). Then JOBS jobs of USERS users each,
one after the other: create, ingest, run, and `GET /bulk/{id}` every
POLL_SECONDS until it says COMPLETED. Figures: create and ingest answers
(p99), run command to COMPLETED seen (p50, p99), the first job after ready.

Where the time goes, per job, from record timestamps on the job's topics
(one host, one clock): the run command on `bulk.commands`, its first page on
`bulk.fanout-pages`, its progress report on `bulk.progress` (produced inside
the fan-out's transaction), when that report became visible to a
read_committed reader (a watcher thread), and when the client saw COMPLETED.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer, TopicPartition

from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import ApiProcess, WorkerProcess, stop_all, wait_ready
from streams.testing.topics import read_stamped
from streams.testing.users import generated_users

from .env import TENANT, Options, Run, say
from .jobs import MESSAGE
from .latency import percentile
from .procs import log_findings
from .results import Figure, ScenarioResult, check

JOBS = 40
USERS = 10
POLL_SECONDS = 0.002


class SmallJob:
    """One small job through the API, with the wall-clock time (ms) of each step."""

    def __init__(self, http: httpx.Client, users: int = USERS) -> None:
        self.http = http
        self.users = users
        self.at: dict[str, float] = {}

    def go(self) -> str:
        self.at["create"] = _now()
        created = self.http.post("/bulk", content=orjson.dumps({"message": MESSAGE}))
        assert created.status_code == 200, created.text
        job_id: str = created.json()["jobId"]
        self.at["created"] = _now()
        body = orjson.dumps({"users": generated_users(0, self.users)})
        ingested = self.http.post(f"/bulk/{job_id}", content=body)
        assert ingested.status_code == 200, ingested.text
        assert ingested.json()["total"] == self.users, ingested.text
        self.at["ingested"] = _now()
        ran = self.http.post(f"/bulk/{job_id}/run")
        assert ran.status_code == 202, ran.text
        self.at["ran"] = _now()
        while True:
            job = self.http.get(f"/bulk/{job_id}").json()["job"]
            if job["status"] == "COMPLETED":
                break
            time.sleep(POLL_SECONDS)
        assert job["enqueued"] == self.users, job
        self.at["completed"] = _now()
        return job_id

    @property
    def create_ms(self) -> float:
        return self.at["created"] - self.at["create"]

    @property
    def ingest_ms(self) -> float:
        return self.at["ingested"] - self.at["created"]

    @property
    def run_to_completed_ms(self) -> float:
        return self.at["completed"] - self.at["ingested"]


def run(bench: Run, opts: Options) -> ScenarioResult:
    result = ScenarioResult("latency", "Small jobs through the HTTP API, run to COMPLETED")
    with bench.namespace("latency") as settings:
        _measure(bench, settings, opts, result)
    return result


def _measure(bench: Run, s: Settings, opts: Options, result: ScenarioResult) -> None:
    ensure_topics(s)
    say(f"latency: starting {opts.workers} workers and the API")
    workers = [
        WorkerProcess(s, f"latency-{n}", bench.log_dir).start() for n in range(1, opts.workers + 1)
    ]
    api = ApiProcess(s, bench.log_dir, keys={TENANT: f"key-{TENANT}"}).start()
    visible = ProgressWatch(s)
    try:
        wait_ready([*workers, api])
        headers = {"Authorization": f"Bearer {api.keys[TENANT]}"}
        with httpx.Client(base_url=api.url, headers=headers, timeout=120) as http:
            first = SmallJob(http)
            first.go()
            say(f"latency: first job after ready: {first.run_to_completed_ms:,.0f} ms")
            jobs: dict[str, SmallJob] = {}
            for _ in range(JOBS):
                job = SmallJob(http)
                jobs[job.go()] = job
        check(len(jobs) == JOBS, f"{JOBS} jobs of {USERS} users each COMPLETED", result)
        stages = _stages(s, jobs, visible.seen)
    finally:
        visible.stop()
        stop_all([api, *workers])
    result.log_findings = log_findings([w.log_path for w in workers] + [api.log_path])
    creates = [j.create_ms for j in jobs.values()]
    ingests = [j.ingest_ms for j in jobs.values()]
    runs = [j.run_to_completed_ms for j in jobs.values()]
    result.figures += [
        _ms("run to COMPLETED, 10-user job, p50", percentile(runs, 50), 100),
        _ms("run to COMPLETED, 10-user job, p99", percentile(runs, 99), 300),
        _ms("create answered, p99", percentile(creates, 99), 20),
        _ms("ingest answered (10 users), p99", percentile(ingests, 99), 20),
        _ms(
            "first job after the workers report ready, run to COMPLETED", first.run_to_completed_ms
        ),
    ]
    result.details |= {
        "jobs": JOBS,
        "users_per_job": USERS,
        "workers": opts.workers,
        "poll_ms": POLL_SECONDS * 1000,
        "create_ms": _summary(creates),
        "ingest_ms": _summary(ingests),
        "run_to_completed_ms": _summary(runs),
        "first_job_ms": round(first.run_to_completed_ms, 1),
        "stages_ms": stages,
        "run_to_completed_each_ms": [round(ms) for ms in runs],
        "create_each_ms": [round(ms, 1) for ms in creates],
        "ingest_each_ms": [round(ms, 1) for ms in ingests],
    }


def _ms(label: str, value: float, target: float | None = None) -> Figure:
    return Figure(label=label, measured=value, unit="ms", target_max=target, target_on="measured")


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
    }


def _stages(
    s: Settings, jobs: dict[str, SmallJob], seen: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Ms of each step from the run command to COMPLETED seen: the median over the jobs,
    and the slowest job's."""
    run_at = _first_stamp(s.topic_commands, lambda key, value: value.get("kind") == "run", s)
    page_at = _first_stamp(s.topic_fanout_pages, lambda key, value: True, s)
    report_at = _first_stamp(s.topic_progress, lambda key, value: True, s)
    steps: dict[str, list[float]] = {}
    slowest = max(jobs, key=lambda j: jobs[j].run_to_completed_ms)
    for job_id, job in jobs.items():
        marks = [
            ("API answers the run (the command applied)", job.at["ingested"], job.at["ran"]),
            ("run command produced -> first page produced", run_at[job_id], page_at[job_id]),
            (
                "first page -> progress report produced (fan-out)",
                page_at[job_id],
                report_at[job_id],
            ),
            ("report produced -> committed and visible", report_at[job_id], seen[job_id]),
            ("visible -> client sees COMPLETED", seen[job_id], job.at["completed"]),
        ]
        for name, start, end in marks:
            steps.setdefault(name, []).append(end - start)
        if job_id == slowest:
            worst = {name: round(end - start, 1) for name, start, end in marks}
    medians = {name: round(statistics.median(values), 1) for name, values in steps.items()}
    return {"median": medians, "slowest job": worst}


def _first_stamp(
    topic: str, wanted: Callable[[bytes | None, Any], bool], s: Settings
) -> dict[str, float]:
    """job id -> the earliest timestamp (ms) of a wanted record of the job on `topic`."""
    stamps: dict[str, float] = {}
    for at, value in read_stamped(s, topic):
        job_id = value.get("job_id") or value.get("jobId") if isinstance(value, dict) else None
        if isinstance(job_id, str) and wanted(None, value):
            stamps.setdefault(job_id, at * 1000)
    return stamps


class ProgressWatch:
    """A read_committed reader of `bulk.progress` on a thread: when each job's last
    report became visible (ms)."""

    def __init__(self, s: Settings) -> None:
        self.seen: dict[str, float] = {}
        self.stopping = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap_servers,
                "group.id": f"{s.app_id}-watch",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 5,
            }
        )
        self.consumer.assign([TopicPartition(s.topic_progress, p, -2) for p in range(s.partitions)])
        self.thread = threading.Thread(target=self._watch, name="progress-watch", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.is_set():
            message = self.consumer.poll(0.05)
            if message is None or message.error() is not None:
                continue
            key = message.key()
            if key is not None:
                self.seen[key.decode()] = _now()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.consumer.close()


def _now() -> float:
    return time.time() * 1000
