"""Scenario: delivery reports folded on one job's partition, against the same run's fan-out.

One job of N users over W workers is fanned out (timed: run -> COMPLETED).
Then N delivery reports (SENT, one per message, their ids computed from the
ingest commands beforehand) are produced onto `bulk.delivery-status`: all of
one job, so one partition and one worker fold them. Timed from the first
report produced to the job view counting N messages SENT. The goal is a fold
at least as fast as the fan-out, so outcomes never lag the sends.
"""

from __future__ import annotations

import time

import orjson
from confluent_kafka import Producer

from streams.ids import message_id
from streams.kafka.config import producer_config
from streams.kafka.producer import CommandProducer
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import cpu_seconds, start_workers, stop_all
from streams.testing.reader import ViewReader
from streams.testing.topics import read_topic

from .env import TENANT, Options, Run, say
from .jobs import create_job, ingest, ingest_commands, run_command
from .procs import log_findings
from .profile import Profiler, summarize
from .results import Figure, ScenarioResult, check

AT = 1_760_000_000_000


def run(bench: Run, opts: Options) -> ScenarioResult:
    result = ScenarioResult("outcomes", "Delivery reports folded, against the fan-out")
    settings = bench.scenario("outcomes")
    try:
        _measure(settings, opts, bench, result)
    finally:
        bench.cleanup(settings)
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
        identities = [user.identity() for command in commands for user in command.users]
        reports = [
            orjson.dumps(
                {
                    "messageId": message_id(create.created_at, create.job_id, identity or ""),
                    "jobId": create.job_id,
                    "status": "SENT",
                    "at": AT + i,
                }
            )
            for i, identity in enumerate(identities)
        ]
        del commands, identities
        say("outcomes: run -> COMPLETED (timed)")
        started = time.perf_counter()
        producer.send(run_command(create.job_id))
        producer.flush()
        views.wait_status(create.job_id, "COMPLETED", max(900.0, n / 500), every=0.02)
        fanout_seconds = time.perf_counter() - started

        say(f"outcomes: {n:,} SENT reports produced, folded (timed)")
        cpu_before = {w.worker_id: cpu_seconds(w.pid) for w in workers}
        key = create.job_id.encode()
        reporter = Producer(producer_config(s) | {"linger.ms": 20})
        profiler = Profiler(bench.log_dir) if opts.profile else None
        if profiler is not None:
            for worker in workers:
                profiler.attach(f"fold-{worker.worker_id}", worker.pid)
            time.sleep(1.0)  # let py-spy attach before the reports come
        started = time.perf_counter()
        for value in reports:
            while True:
                try:
                    reporter.produce(s.topic_delivery_status, key=key, value=value)
                    break
                except BufferError:
                    reporter.poll(0.01)
        produced_seconds = time.perf_counter() - started
        assert reporter.flush(60) == 0

        def folded() -> bool:
            job = views.job(create.job_id)
            return bool(job and job.delivery and job.delivery.get("SENT") == n)

        deadline = time.monotonic() + max(600.0, n / 200)
        while not folded() and time.monotonic() < deadline:
            time.sleep(0.02)
        fold_seconds = time.perf_counter() - started
        if profiler is not None:
            summary = summarize(profiler.stop())
            result.details["profile"] = summary.details(fold_seconds, profiler.rate, top=25)
        check(folded(), f"the job view counts {n:,} messages SENT", result)
        cpu = {w.worker_id: cpu_seconds(w.pid) - cpu_before[w.worker_id] for w in workers}
    finally:
        stop_all(workers)
        views.close()
    result.log_findings = log_findings(w.log_path for w in workers)
    events = [v for _, v, _ in read_topic(s, s.topic_message_events) if v["jobId"] == create.job_id]
    check(len(events) == n, f"{n:,} message events, one per message", result)
    check(len({e["messageId"] for e in events}) == n, "each message's event once", result)
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
    }
    result.notes.append(
        f"the reports took {produced_seconds:.1f} s to produce and {fold_seconds:.1f} s to be "
        f"folded; the folding worker ({folder}) used {cpu[folder]:.1f} CPU-s "
        f"({n / cpu[folder]:,.0f} reports per CPU-second)"
    )
