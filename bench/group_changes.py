"""Scenario: jobs running while the fan-out group changes (what scaling and rolling
deploys do all day), under each way the fan-out group can be run.

W workers and the API; STREAMS clients each run small jobs (USERS users) one
after another, the whole time. Meanwhile a fan-out-only worker (`--stage
fanout`, as a KEDA-scaled deployment runs it) joins, leaves (SIGTERM), joins
again and is restarted under the same worker id (a rolling deploy), with
STEADY seconds between the changes. For each change, the jobs running at any
moment of its window (from the change to SETTLE seconds after the group holds
every partition again) are its jobs; their delay is their run-to-COMPLETED
time minus the median of the jobs of the steady windows, and the figure is
the p99 of those delays. The whole sequence runs once per configuration of
the fan-out group (assignment strategy, static membership); the default
configuration's figures go in the table, the others in the numbers.

A large job runs beside them the whole time, paced (LARGE_RATE sends a
second, so its pages keep coming): each of its pages is timed from its record
on the pages topic to its progress report (both record timestamps), and a
change's figure is the longest of the pages in flight during its window. That
is what a change costs a job in flight on partitions that may not move.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from streams.kafka.producer import CommandProducer
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import (
    ApiProcess,
    WorkerProcess,
    fanout_settled,
    stop_all,
    wait_for,
    wait_ready,
)
from streams.testing.reader import ViewReader
from streams.testing.topics import read_stamped

from .env import TENANT, Options, Run, say
from .jobs import create_job, ingest, ingest_commands, run_command
from .latency import percentile
from .procs import log_findings
from .results import Figure, ScenarioResult, check
from .small_jobs import SmallJob

STREAMS = 2
USERS = 10
LARGE_USERS = 320_000
LARGE_RATE = 4_000  # sends/s: the large job lasts about 80 s, past the whole sequence
STEADY = 8.0
SETTLE = 2.0
CHANGES = ("join", "leave", "rejoin", "restart")
CONFIGS: dict[str, dict[str, Any]] = {
    "cooperative-sticky": {"fanout_assignment": "cooperative-sticky"},
    "cooperative-sticky, static members": {
        "fanout_assignment": "cooperative-sticky",
        "fanout_static_membership": True,
    },
    "range (eager)": {"fanout_assignment": "range"},
}
DEFAULT = "range (eager)"


@dataclass
class Driver:
    """STREAMS threads running small jobs back to back; each job's (start, end, ms)."""

    api: ApiProcess
    jobs: list[tuple[float, float, float]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._stream, daemon=True) for _ in range(STREAMS)]
        for thread in self.threads:
            thread.start()

    def _stream(self) -> None:
        headers = {"Authorization": f"Bearer {self.api.keys[TENANT]}"}
        with httpx.Client(base_url=self.api.url, headers=headers, timeout=120) as http:
            while not self.stopping.is_set():
                job = SmallJob(http, USERS)
                try:
                    job.go()
                except Exception as exc:  # noted, and the scenario fails its check
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    return
                self.jobs.append((job.at["ingested"], job.at["completed"], job.run_to_completed_ms))

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(180)


def run(bench: Run, opts: Options) -> ScenarioResult:
    result = ScenarioResult("rebalance", "Jobs running while fan-out workers join, leave, restart")
    outcomes: dict[str, dict[str, Any]] = {}
    for name, overrides in CONFIGS.items():
        with bench.namespace(f"rebalance-{len(outcomes)}") as settings:
            configured = settings.model_copy(update=overrides)
            outcomes[name] = _sequence(bench, configured, opts, name, result)
    chosen = outcomes[DEFAULT]
    for change in CHANGES:
        result.figures.append(
            Figure(
                label=f"delay of the jobs running while a fan-out worker {_verb(change)}, p99",
                measured=chosen["delay_p99_ms"][change],
                unit="ms",
                target_max=1000,
                target_on="measured",
            )
        )
    result.details |= {"streams": STREAMS, "users_per_job": USERS, "configurations": outcomes}
    return result


def _verb(change: str) -> str:
    return {
        "join": "joins",
        "leave": "leaves",
        "rejoin": "joins again",
        "restart": "restarts",
    }[change]


def _sequence(
    bench: Run, s: Settings, opts: Options, config: str, result: ScenarioResult
) -> dict[str, Any]:
    ensure_topics(s)
    say(f"rebalance [{config}]: {opts.workers} workers, the API, {STREAMS} job streams")
    workers = [
        WorkerProcess(s, f"rebalance-{n}", bench.log_dir).start()
        for n in range(1, opts.workers + 1)
    ]
    api = ApiProcess(s, bench.log_dir, keys={TENANT: f"key-{TENANT}"}).start()
    extra: WorkerProcess | None = None
    windows: dict[str, tuple[float, float]] = {}
    steady: list[tuple[float, float]] = []
    driver = Driver(api)
    everyone: list[WorkerProcess] = list(workers)
    try:
        wait_ready([*workers, api], settled=True)
        large = _start_large_job(s)
        driver.start()
        for change in CHANGES:
            began = _now()
            time.sleep(STEADY)
            steady.append((began, _now()))
            began = _now()
            if change in ("join", "rejoin"):
                extra = WorkerProcess(s, "rebalance-extra", bench.log_dir, "fanout").start()
                everyone.append(extra)
                group = [*workers, extra]
            elif change == "leave":
                assert extra is not None
                extra.terminate()
                extra.stop()
                group = list(workers)
            else:
                assert extra is not None
                extra.terminate()
                extra.stop()
                extra = WorkerProcess(s, "rebalance-extra", bench.log_dir, "fanout").start()
                everyone.append(extra)
                group = [*workers, extra]
            _wait_settled(group, change)
            time.sleep(SETTLE)
            windows[change] = (began, _now())
            say(f"rebalance [{config}]: {change} settled in {(_now() - began) / 1000:.1f} s")
        began = _now()
        time.sleep(STEADY)
        steady.append((began, _now()))
    finally:
        try:
            driver.stop()
        finally:
            stop_all([api, *everyone])
    result.log_findings += log_findings([w.log_path for w in everyone] + [api.log_path])
    check(not driver.errors, f"[{config}] every job COMPLETED with every user", result)
    base = [ms for start, end, ms in driver.jobs if any(a <= start and end <= b for a, b in steady)]
    check(len(base) >= 10, f"[{config}] at least 10 jobs in the steady windows", result)
    typical = statistics.median(base)
    delays: dict[str, float] = {}
    counts: dict[str, int] = {}
    for change, (a, b) in windows.items():
        during = [ms - typical for start, end, ms in driver.jobs if start < b and end > a]
        counts[change] = len(during)
        delays[change] = round(max(0.0, percentile(during, 99)), 1) if during else 0.0
    return {
        "steady_p50_ms": round(typical, 1),
        "steady_p99_ms": round(percentile(base, 99), 1),
        "jobs": len(driver.jobs),
        "jobs_during": counts,
        "delay_p99_ms": delays,
        "settled_s": {c: round((b - a) / 1000 - SETTLE, 1) for c, (a, b) in windows.items()},
        "large_job": _large_job_pages(s, large, windows, steady, config, result),
    }


def _start_large_job(s: Settings) -> str:
    """A job of LARGE_USERS ingested, then run at LARGE_RATE sends a second; its id."""
    producer = CommandProducer(s, create_topics=False)
    views = ViewReader(s, TENANT)
    try:
        job_id = create_job(producer, views).job_id
        ingest(producer, views, ingest_commands(job_id, LARGE_USERS))
        producer.send(run_command(job_id, LARGE_RATE))
        producer.flush()
    finally:
        views.close()
    return job_id


def _large_job_pages(
    s: Settings,
    job_id: str,
    windows: dict[str, tuple[float, float]],
    steady: list[tuple[float, float]],
    config: str,
    result: ScenarioResult,
) -> dict[str, Any]:
    """Each page of the large job timed from its record on the pages topic to its
    first progress report; the longest of those in flight in each change's window,
    and the p99 of those of the steady windows (ms)."""
    emitted: dict[int, float] = {}
    for stamp, page in read_stamped(s, s.topic_fanout_pages):
        if page["jobId"] == job_id:
            emitted.setdefault(page["page"], stamp * 1000)
    reported: dict[int, float] = {}
    for stamp, report in read_stamped(s, s.topic_progress):
        if report.get("jobId") == job_id and "page" in report:
            reported.setdefault(report["page"], stamp * 1000)
    end = max(b for _, b in [*windows.values(), *steady])
    # A page emitted before the end that never reported counts as in flight to the end.
    pages = [(at, reported.get(n, end)) for n, at in emitted.items() if at < end]
    check(
        all(n in reported for n, at in emitted.items() if at < end - 1000 * STEADY),
        f"[{config}] every page of the large job emitted before the last steady window reported",
        result,
    )
    base = [b - a for a, b in pages if any(x <= a and b <= y for x, y in steady)]

    def longest(window: tuple[float, float]) -> float:
        during = [b - a for a, b in pages if a < window[1] and b > window[0]]
        return round(max(during), 1) if during else 0.0

    return {
        "users": LARGE_USERS,
        "sends_per_second": LARGE_RATE,
        "pages": len(pages),
        "steady_p99_ms": round(percentile(base, 99), 1) if base else None,
        "page_delay_max_ms": {change: longest(window) for change, window in windows.items()},
    }


def _wait_settled(group: list[WorkerProcess], change: str) -> None:
    wait_for(lambda: fanout_settled(group) or None, 120, f"the group after {change}", every=0.05)


def _now() -> float:
    return time.time() * 1000
