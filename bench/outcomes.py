"""Scenario: delivery reports folded on one job's partition, against the same run's fan-out.

One job of N users over W workers is fanned out (timed: run -> COMPLETED, the
users ingested beforehand). Then N delivery reports (SENT, one per message,
their ids computed from the ingest commands beforehand) go onto
`bulk.delivery-status`: all of one job, so one partition and one worker fold
them. Like the fan-out's users, they are queued first, with the workers stopped
(SIGSTOP), so that neither figure shares the machine with this benchmark's own
producer; the fold is timed from the workers' SIGCONT to the job view counting
N messages SENT. A second round (DELIVERED) is timed the same way: a message's
later states rewrite its stored state, where SENT writes it first. The goal is
a fold at least as fast as the fan-out, so outcomes never lag the sends. With
`--profile`, a third round (OPENED) is folded under py-spy afterwards, so the
timed figures carry no profiler.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

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
from .procs import (
    busy_fraction,
    counters_by_label_in,
    log_findings,
    machine_busy,
    metrics_text,
    thread_cpu,
)
from .profile import profile_untimed
from .results import Figure, ScenarioResult, check

AT = 1_760_000_000_000
TIMED = ("SENT", "DELIVERED")  # the states of the timed rounds, in order
FEED_SECONDS = "bulkstream_feed_seconds_total"  # by feed and phase
TAKE_CPU = "bulkstream_feed_take_cpu_seconds_total"  # by feed
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

        reporter = Reporter(s, views, create.job_id)
        rounds: dict[str, Round] = {}
        for status in TIMED:
            say(f"outcomes: {n:,} {status} reports queued with the workers stopped, folded (timed)")
            rounds[status] = timed_round(reporter, workers, reports, status)
            check(
                reporter.folded(status, n), f"the job view counts {n:,} messages {status}", result
            )
        if opts.profile:
            say(f"outcomes: {n:,} OPENED reports folded under py-spy (untimed)")
            opened = of_status(reports, "OPENED")
            result.details["profile"] = profile_untimed(
                bench.log_dir, workers, "fold", lambda: reporter.fold(opened, "OPENED")
            )
            check(reporter.folded("OPENED", n), f"{n:,} messages OPENED", result)
    finally:
        stop_all(workers)
        views.close()
    result.log_findings = log_findings(w.log_path for w in workers)
    events = [v for _, v, _ in read_topic(s, s.topic_message_events) if v["jobId"] == create.job_id]
    for status in (*TIMED, "OPENED") if opts.profile else TIMED:
        reached = [e["messageId"] for e in events if e["status"] == status]
        check(len(reached) == n, f"{n:,} {status} message events, one per message", result)
        check(len(set(reached)) == n, f"each message's {status} event once", result)
    fanout_rate = n / fanout_seconds
    result.details |= {
        "users": n,
        "workers": opts.workers,
        "fanout_seconds": fanout_seconds,
        "fanout_rate": fanout_rate,
    }
    for status, done in rounds.items():
        folder, cpu = done.folder, done.cpu[done.folder]
        result.figures.append(
            Figure(
                label=f"delivery reports folded, {n:,} {status} on one job's partition",
                measured=n / done.fold_seconds,
                unit="reports/s",
                baseline=fanout_rate,
                baseline_label="the fan-out of the same job (sends/s)",
                target_min=1.0,
            )
        )
        result.details[status] = {
            "queue_seconds": round(done.queue_seconds, 2),
            "stopped_seconds": round(done.stopped_seconds, 2),
            "fold_seconds": round(done.fold_seconds, 2),
            "fold_rate": n / done.fold_seconds,
            "fold_worker": folder,
            "fold_worker_cpu_seconds": round(cpu, 2),
            "reports_per_cpu_second": n / cpu if cpu else float("nan"),
            "fold_worker_seconds": done.spent[folder],
            "fold_machine": done.machine,
            "fold_worker_threads": done.threads,
        }
        result.notes.append(
            f"{status}: queued on the topic in {done.queue_seconds:.1f} s with the workers "
            f"stopped, then folded in {done.fold_seconds:.1f} s from their SIGCONT; the "
            f"folding worker ({folder}) used {cpu:.1f} CPU-s ({n / cpu:,.0f} reports per "
            f"CPU-second). {describe_fold_time(done)}. "
            f"{describe_machine(done)}"
        )


@dataclass(frozen=True)
class Round:
    """One timed round of reports: how long they took to queue and to be folded, and
    what the workers and the machine did while they were folded."""

    queue_seconds: float
    stopped_seconds: float  # from the workers' SIGSTOP to their SIGCONT
    fold_seconds: float
    cpu: dict[str, float]  # CPU-s by worker id
    spent: dict[str, dict[str, float]]  # worker id -> the reports feed's seconds by step
    machine: dict[str, float]
    folder: str  # the worker that folded them: the one that used the most CPU
    threads: dict[str, float]  # the folding worker's CPU-s by thread name


def timed_round(
    reporter: Reporter, workers: list[WorkerProcess], template: list[bytes], status: str
) -> Round:
    """Queue a report of `status` a message (`template`'s, SENT) with the workers stopped
    (SIGSTOP), then measure their fold from the workers' SIGCONT: the fold starts from
    its whole input and shares the machine with nothing of this benchmark's."""
    reports = of_status(template, status)
    spent_before = {w.worker_id: fold_time(w) for w in workers}
    stopped = time.perf_counter()
    for worker in workers:
        os.kill(worker.pid, signal.SIGSTOP)
    try:
        queued = time.perf_counter()
        reporter.queue(reports)
        queue_seconds = time.perf_counter() - queued
        cpu_before = {w.worker_id: cpu_seconds(w.pid) for w in workers}
        threads_before = {w.worker_id: thread_cpu(w.pid) for w in workers}
        busy_before, own_before = machine_busy(), time.process_time()
        redis_before = redis_cpu_seconds(reporter.views)
        started = time.perf_counter()
    finally:
        for worker in workers:
            os.kill(worker.pid, signal.SIGCONT)
    stopped_seconds = time.perf_counter() - stopped
    reporter.wait(status, len(reports))
    fold_seconds = time.perf_counter() - started
    machine = {
        "busy": round(busy_fraction(busy_before, machine_busy()), 2),
        "redis_cpu_seconds": round(redis_cpu_seconds(reporter.views) - redis_before, 2),
        "bench_cpu_seconds": round(time.process_time() - own_before, 2),
    }
    cpu = {w.worker_id: cpu_seconds(w.pid) - cpu_before[w.worker_id] for w in workers}
    folder = max(workers, key=lambda worker: cpu[worker.worker_id])
    was = threads_before[folder.worker_id]
    threads = {name: now - was.get(name, 0.0) for name, now in thread_cpu(folder.pid).items()}
    return Round(
        queue_seconds=queue_seconds,
        stopped_seconds=stopped_seconds,
        fold_seconds=fold_seconds,
        cpu=cpu,
        spent={
            w.worker_id: {
                what: round(seconds - spent_before[w.worker_id].get(what, 0.0), 2)
                for what, seconds in fold_time(w).items()
            }
            for w in workers
        },
        machine=machine,
        folder=folder.worker_id,
        threads={name: round(spent, 2) for name, spent in threads.items() if spent >= 0.05},
    )


def of_status(template: list[bytes], status: str) -> list[bytes]:
    """The SENT reports of `template`, each made a report of `status`."""
    if status == "SENT":
        return template
    return [report.replace(b'"SENT"', f'"{status}"'.encode()) for report in template]


def describe_machine(done: Round) -> str:
    """The machine's busy share while a round was folded, and who took its CPU."""
    folder = done.folder
    others = sum(c for w, c in done.cpu.items() if w != folder)
    return (
        f"Meanwhile the machine's cores were {done.machine['busy']:.0%} busy; of their "
        f"{done.fold_seconds * (os.cpu_count() or 1):.1f} CPU-s, the folding worker took "
        f"{done.cpu[folder]:.1f}, the other worker {others:.1f}, Redis "
        f"{done.machine['redis_cpu_seconds']:.1f} and this benchmark's own process (polling "
        f"the job's view) {done.machine['bench_cpu_seconds']:.1f}; the rest is the "
        "broker's and the system's"
    )


def redis_cpu_seconds(views: ViewReader) -> float:
    """The Redis server's CPU seconds so far (its INFO)."""
    info = views.read(lambda v: v.redis.info("cpu"))
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def fold_time(worker: WorkerProcess) -> dict[str, float]:
    """The worker's reports feed's seconds by phase (and its takes' CPU, `taking`), and
    its fold's by step, so far."""
    text = metrics_text(worker)
    taking = counters_by_label_in(text, TAKE_CPU).get("reports", 0.0)
    return (
        counters_by_label_in(text, FEED_SECONDS, feed="reports")
        | {"taking": taking}
        | counters_by_label_in(text, FOLD_SECONDS)
    )


def describe_fold_time(done: Round) -> str:
    """Where the folding worker's reports feed spent the fold's wall time. The feed's
    step in flight when the workers were stopped counts the time they were stopped."""
    spent, wall, stopped = done.spent[done.folder], done.fold_seconds, done.stopped_seconds
    steps = ", ".join(f"{step} {spent.get(step, 0.0):.1f} s" for step in STEPS)
    ending = ", ".join(f"{step} {spent.get(step, 0.0):.1f} s" for step in ENDING)
    feed = sum(spent.get(phase, 0.0) for phase in PHASES)
    return (
        f"The folding worker's reports feed, of the fold's {wall:.1f} s and the "
        f"{stopped:.1f} s the workers were stopped before it (the step the idle feed was "
        f"in at the stop, fetching or checkpointing, counts them): fetching "
        f"{spent.get('fetching', 0.0):.1f} s (the takes' own CPU on their thread "
        f"{spent.get('taking', 0.0):.1f} s), applying {spent.get('applying', 0.0):.1f} s "
        f"({steps}), checkpointing {spent.get('checkpointing', 0.0):.1f} s; the rest "
        f"({max(wall + stopped - feed, 0.0):.1f} s) went to the event loop's other work "
        f"between the feed's batches. The batches' ends, each while the next batch was "
        f"fetched and applied (its `waiting` is for the end of the one before): {ending}"
    )


class Reporter:
    """Delivery reports of one job produced onto `bulk.delivery-status` (key = its id),
    and the wait for the job view to count them."""

    def __init__(self, s: Settings, views: ViewReader, job_id: str) -> None:
        self.s, self.views, self.job_id = s, views, job_id
        self.producer = Producer(producer_config(s) | {"linger.ms": 20})

    def queue(self, reports: list[bytes]) -> None:
        """Produce the reports, and wait until the broker holds every one."""
        key = self.job_id.encode()
        for value in reports:
            produce_waiting(self.producer, self.s.topic_delivery_status, key, value, wait=0.01)
        assert self.producer.flush(60) == 0

    def wait(self, status: str, n: int) -> None:
        """Wait for the job view to count `n` messages in `status`."""
        deadline = time.monotonic() + max(600.0, n / 200)
        while not self.folded(status, n) and time.monotonic() < deadline:
            time.sleep(0.02)

    def fold(self, reports: list[bytes], status: str) -> float:
        """Produce the reports and wait for them folded (every message counted in
        `status`); answer the seconds from the first produced."""
        started = time.perf_counter()
        self.queue(reports)
        self.wait(status, len(reports))
        return time.perf_counter() - started

    def folded(self, status: str, n: int) -> bool:
        job = self.views.job(self.job_id)
        return bool(job and job.delivery and job.delivery.get(status) == n)
