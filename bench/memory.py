"""Scenario 5, memory: each worker's peak RSS (VmHWM) for a job of N/10 users and one of N
(or, with `--memory-users M`, one of N and one of M: `--memory-users 10000000` is the
10M-over-1M comparison; each size takes about its users / 15,000 seconds here, ingest
and fan-out, as `seconds_per_size` in the results shows).

Fresh workers (and a fresh namespace) per size: ingest and run the job to
COMPLETED, then read every worker's VmHWM while it is still alive. The
figure is the largest worker's peak for the larger job over the same for
the smaller one (with the default N = 1,000,000: 1M over 100k).
"""

from __future__ import annotations

import time

from streams.kafka.producer import CommandProducer
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import peak_rss_kib, start_workers, stop_all
from streams.testing.reader import ViewReader
from streams.testing.users import ingest_commands

from .env import TENANT, Options, Run, say
from .jobs import create_job, ingest, run_command
from .procs import log_findings
from .results import Figure, ScenarioResult, check


def _label(users: int) -> str:
    return f"{users // 1_000_000}M" if users % 1_000_000 == 0 else f"{users // 1000}k"


def run(bench: Run, opts: Options) -> ScenarioResult:
    result = ScenarioResult("memory", "Memory: peak RSS per worker, by job size")
    small, large = opts.users // 10, opts.users
    if opts.memory_users:
        small, large = sorted((opts.users, opts.memory_users))
    peaks: dict[int, dict[str, int]] = {}
    seconds: dict[str, float] = {}
    for users in (small, large):
        began = time.monotonic()
        with bench.namespace(f"memory-{_label(users)}") as settings:
            peaks[users] = _peaks(bench, settings, opts, users, result)
        seconds[_label(users)] = round(time.monotonic() - began)
    top_small, top_large = max(peaks[small].values()), max(peaks[large].values())
    result.figures.append(
        Figure(
            label=f"peak RSS of a worker, {_label(large)}-user job",
            measured=top_large / 1024,
            unit="MiB",
            baseline=top_small / 1024,
            baseline_label=f"same, {_label(small)}-user job",
            target_max=1.2,
        )
    )
    result.details = {
        "sizes": [small, large],
        "peak_kib": {_label(u): p for u, p in peaks.items()},
        "workers": opts.workers,
        "seconds_per_size": seconds,
    }
    return result


def _peaks(
    bench: Run, s: Settings, opts: Options, users: int, result: ScenarioResult
) -> dict[str, int]:
    ensure_topics(s)
    say(f"memory: {opts.workers} fresh workers, a job of {users:,} users")
    workers = start_workers(s, opts.workers, bench.log_dir, f"memory-{_label(users)}")
    producer = CommandProducer(s, create_topics=False)
    views = ViewReader(s, TENANT)
    try:
        create = create_job(producer, views)
        # Generated as they are sent: a 10M-user job's commands are never all in memory.
        ingest(producer, views, ingest_commands(create.job_id, TENANT, 0, users))
        producer.send(run_command(create.job_id))
        producer.flush()
        job = views.wait_status(create.job_id, "COMPLETED", max(900.0, users / 300), every=0.02)
        enqueued = job.enqueued
        check(enqueued == users, f"{_label(users)} job COMPLETED with {users:,} enqueued", result)
        return {w.worker_id: peak_rss_kib(w.pid) for w in workers}
    finally:
        stop_all(workers)
        views.close()
        result.log_findings += log_findings(w.log_path for w in workers)
