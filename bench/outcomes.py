"""Scenario: delivery reports folded on one job's partition, against the same run's fan-out.

One job of N users over W workers is fanned out (timed: run -> COMPLETED).
Then N delivery reports (SENT, one per message, their ids computed from the
ingest commands beforehand) are produced onto `bulk.delivery-status`: all of
one job, so one partition and one worker fold them. Timed from the first
report produced to the job view counting N messages SENT. The goal is a fold
at least as fast as the fan-out, so outcomes never lag the sends. With
`--profile`, a second round of reports (DELIVERED) is folded under py-spy
afterwards, so the timed figure carries no profiler.
"""

from __future__ import annotations

import os
import time

import orjson
from confluent_kafka import Producer

from streams.aggregate.command_feed import PHASES
from streams.aggregate.delivery import ENDING, STEPS
from streams.ids import positional_message_id
from streams.kafka.config import producer_config
from streams.kafka.producer import CommandProducer, produce_waiting
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import WorkerProcess, cpu_seconds, start_workers, stop_all
from streams.testing.reader import ViewReader
from streams.testing.topics import read_topic

from .env import TENANT, Options, Run, say
from .jobs import create_job, ingest, ingest_commands, run_command
from .procs import busy_fraction, counters_by_label_in, log_findings, machine_busy, metrics_text
from .profile import profile_untimed
from .results import Figure, ScenarioResult, check

AT = 1_760_000_000_000
FEED_SECONDS = "bulkstream_feed_seconds_total"  # by feed and phase
FOLD_SECONDS = "bulkstream_delivery_fold_seconds_total"  # by step


def run(bench: Run, opts: Options) -> ScenarioResult:
    result = ScenarioResult("outcomes", "Delivery reports folded, against the fan-out")
    with bench.namespace("outcomes") as settings:
        _measure(settings, opts, bench, result)
    return result


def _measure(s: Settings, opts: Options, bench: Run, result: ScenarioResult) -> None:
    n = opts.users
    ensure_topics(s)
    say(f"outcomes: starting {opts.workers} workers")
    workers = start_workers(s, opts.workers, bench.log_dir, "outcomes")
    producer = CommandProducer(s, create_topics=False)
    views = ViewReader(s, TENANT)
    try:
        create = create_job(producer, views)
        commands = ingest_commands(create.job_id, n)
        say(f"outcomes: ingesting {n:,} users (untimed)")
        check(ingest(producer, views, commands).accepted == n, "every user accepted", result)
        # The commands went in order to the job's one partition: user i holds position i.
        reports = [
            orjson.dumps(
                {
                    "messageId": positional_message_id(create.created_at, create.job_id, i),
                    "jobId": create.job_id,
                    "status": "SENT",
                    "at": AT + i,
                }
            )
            for i in range(n)
        ]
        del commands
        say("outcomes: run -> COMPLETED (timed)")
        started = time.perf_counter()
        producer.send(run_command(create.job_id))
        producer.flush()
        views.wait_status(create.job_id, "COMPLETED", max(900.0, n / 500), every=0.02)
        fanout_seconds = time.perf_counter() - started

        say(f"outcomes: {n:,} SENT reports produced, folded (timed)")
        cpu_before = {w.worker_id: cpu_seconds(w.pid) for w in workers}
        spent_before = {w.worker_id: fold_time(w) for w in workers}
        reporter = Reporter(s, views, create.job_id)
        busy_before, own_before = machine_busy(), time.process_time()
        redis_before = redis_cpu_seconds(views)
        produced_seconds, fold_seconds = reporter.fold(reports, "SENT")
        machine = {
            "busy": busy_fraction(busy_before, machine_busy()),
            "redis_cpu_seconds": redis_cpu_seconds(views) - redis_before,
            "bench_cpu_seconds": time.process_time() - own_before,
        }
        check(reporter.folded("SENT", n), f"the job view counts {n:,} messages SENT", result)
        cpu = {w.worker_id: cpu_seconds(w.pid) - cpu_before[w.worker_id] for w in workers}
        spent = {
            w.worker_id: {
                what: round(seconds - spent_before[w.worker_id].get(what, 0.0), 2)
                for what, seconds in fold_time(w).items()
            }
            for w in workers
        }
        if opts.profile:
            say(f"outcomes: {n:,} DELIVERED reports folded under py-spy (untimed)")
            delivered = [report.replace(b'"SENT"', b'"DELIVERED"') for report in reports]
            result.details["profile"] = profile_untimed(
                bench.log_dir, workers, "fold", lambda: reporter.fold(delivered, "DELIVERED")[1]
            )
            check(reporter.folded("DELIVERED", n), f"{n:,} messages DELIVERED", result)
    finally:
        stop_all(workers)
        views.close()
    result.log_findings = log_findings(w.log_path for w in workers)
    events = [v for _, v, _ in read_topic(s, s.topic_message_events) if v["jobId"] == create.job_id]
    for status in ("SENT", "DELIVERED") if opts.profile else ("SENT",):
        reached = [e["messageId"] for e in events if e["status"] == status]
        check(len(reached) == n, f"{n:,} {status} message events, one per message", result)
        check(len(set(reached)) == n, f"each message's {status} event once", result)
    fanout_rate = n / fanout_seconds
    fold_rate = n / fold_seconds
    folder = max(cpu, key=lambda worker: cpu[worker])
    result.figures.append(
        Figure(
            label=f"delivery reports folded, {n:,} on one job's partition",
            measured=fold_rate,
            unit="reports/s",
            baseline=fanout_rate,
            baseline_label="the fan-out of the same job (sends/s)",
            target_min=1.0,
        )
    )
    result.details |= {
        "users": n,
        "workers": opts.workers,
        "fanout_seconds": fanout_seconds,
        "fanout_rate": fanout_rate,
        "produce_seconds": produced_seconds,
        "fold_seconds": fold_seconds,
        "fold_rate": fold_rate,
        "fold_worker": folder,
        "fold_worker_cpu_seconds": cpu[folder],
        "reports_per_cpu_second": n / cpu[folder] if cpu[folder] else float("nan"),
        "fold_worker_seconds": spent[folder],
        "fold_machine": {what: round(value, 2) for what, value in machine.items()},
    }
    result.notes.append(
        f"the reports took {produced_seconds:.1f} s to produce and {fold_seconds:.1f} s to be "
        f"folded; the folding worker ({folder}) used {cpu[folder]:.1f} CPU-s "
        f"({n / cpu[folder]:,.0f} reports per CPU-second)"
    )
    result.notes.append(describe_fold_time(spent[folder], fold_seconds))
    result.notes.append(
        f"meanwhile the machine's cores were {machine['busy']:.0%} busy; of their "
        f"{fold_seconds * (os.cpu_count() or 1):.1f} CPU-s, the folding worker took "
        f"{cpu[folder]:.1f}, the other worker "
        f"{sum(c for w, c in cpu.items() if w != folder):.1f}, Redis "
        f"{machine['redis_cpu_seconds']:.1f} and this benchmark's own process (producing the "
        f"reports, polling the job's view) {machine['bench_cpu_seconds']:.1f}; the rest is "
        "the broker's and the system's"
    )


def redis_cpu_seconds(views: ViewReader) -> float:
    """The Redis server's CPU seconds so far (its INFO)."""
    info = views.read(lambda v: v.redis.info("cpu"))
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def fold_time(worker: WorkerProcess) -> dict[str, float]:
    """The worker's reports feed's seconds by phase, and its fold's by step, so far."""
    text = metrics_text(worker)
    return counters_by_label_in(text, FEED_SECONDS, feed="reports") | counters_by_label_in(
        text, FOLD_SECONDS
    )


def describe_fold_time(spent: dict[str, float], wall: float) -> str:
    """Where the folding worker's reports feed spent the fold's wall time."""
    steps = ", ".join(f"{step} {spent.get(step, 0.0):.1f} s" for step in STEPS)
    ending = ", ".join(f"{step} {spent.get(step, 0.0):.1f} s" for step in ENDING)
    feed = sum(spent.get(phase, 0.0) for phase in PHASES)
    return (
        f"the folding worker's reports feed, of the fold's {wall:.1f} s: fetching "
        f"{spent.get('fetching', 0.0):.1f} s, applying {spent.get('applying', 0.0):.1f} s "
        f"({steps}), checkpointing {spent.get('checkpointing', 0.0):.1f} s; the rest "
        f"({max(wall - feed, 0.0):.1f} s) went to the event loop's other work between the "
        f"feed's batches. The batches' ends, each while the next batch was fetched and "
        f"applied (its `waiting` is for the end of the one before): {ending}"
    )


class Reporter:
    """Delivery reports of one job produced onto `bulk.delivery-status` (key = its id),
    and the wait for the job view to count them."""

    def __init__(self, s: Settings, views: ViewReader, job_id: str) -> None:
        self.s, self.views, self.job_id = s, views, job_id
        self.producer = Producer(producer_config(s) | {"linger.ms": 20})

    def fold(self, reports: list[bytes], status: str) -> tuple[float, float]:
        """Produce the reports; answer the seconds to produce them and to see them folded
        (every message counted in `status`), both from the first produced."""
        key = self.job_id.encode()
        started = time.perf_counter()
        for value in reports:
            produce_waiting(self.producer, self.s.topic_delivery_status, key, value, wait=0.01)
        produced = time.perf_counter() - started
        assert self.producer.flush(60) == 0
        deadline = time.monotonic() + max(600.0, len(reports) / 200)
        while not self.folded(status, len(reports)) and time.monotonic() < deadline:
            time.sleep(0.02)
        return produced, time.perf_counter() - started

    def folded(self, status: str, n: int) -> bool:
        job = self.views.job(self.job_id)
        return bool(job and job.delivery and job.delivery.get(status) == n)
