"""Scenario 3, ingest through Kafka: N users in 1,000-user commands, against the raw producer.

Timed from the first command sent (`CommandProducer.send`, which serialises
it) to the last command's result in Redis (commands of one job are applied in
offset order, on one partition). Then every result is checked, and the job's
`received` counter must be N. The baseline: a bare producer pushing the same
commands, already serialised, with the same key, to a fresh topic with the
same partitions.
"""

from __future__ import annotations

import orjson

from streams.kafka.producer import CommandProducer
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import cpu_seconds, start_workers, stop_all
from streams.testing.reader import ViewReader
from streams.testing.users import BATCH

from .env import TENANT, Options, Run, say
from .jobs import create_job, ingest, ingest_commands
from .kafka import create_topic, raw_push
from .procs import busy_fraction, log_findings, machine_busy
from .results import Figure, ScenarioResult, check


def run(bench: Run, opts: Options) -> ScenarioResult:
    result = ScenarioResult("ingest", "Ingest through Kafka")
    settings = bench.scenario("ingest")
    try:
        _measure(bench, settings, opts, result)
    finally:
        bench.cleanup(settings)
    return result


def _measure(bench: Run, s: Settings, opts: Options, result: ScenarioResult) -> None:
    n = opts.users
    ensure_topics(s)
    say(f"ingest: starting {opts.workers} workers")
    workers = start_workers(s, opts.workers, bench.log_dir, "ingest")
    producer = CommandProducer(s, create_topics=False)
    views = ViewReader(s, TENANT)
    try:
        create = create_job(producer, views)
        commands = ingest_commands(create.job_id, n)
        say(f"ingest: {n:,} users in {len(commands):,} commands (timed)")
        cpu_before = [cpu_seconds(w.pid) for w in workers]
        busy_before = machine_busy()
        ingested = ingest(producer, views, commands)
        cpu = [cpu_seconds(w.pid) - b for w, b in zip(workers, cpu_before, strict=True)]
        busy = busy_fraction(busy_before, machine_busy())
        check(ingested.accepted == n, f"results: {n:,} users accepted", result)
        job = views.job(create.job_id)
        check(job is not None and job.received == n, f"view: received = {n:,}", result)
    finally:
        stop_all(workers)
        views.close()
    result.log_findings = log_findings(w.log_path for w in workers)

    records = [(create.job_id.encode(), orjson.dumps(c.to_wire())) for c in commands]
    topic = f"{s.topic_commands}.raw"
    create_topic(s, topic, s.partitions)
    say("ingest: the raw producer pushes the same commands (timed)")
    pushed = raw_push(s, topic, records)
    ours = n / ingested.seconds
    result.figures.append(
        Figure(
            label=f"ingest via Kafka, {BATCH:,}-user commands",
            measured=ours,
            unit="users/s",
            baseline=n / pushed.seconds,
            baseline_label="raw producer, same commands",
            target_min=0.5,
        )
    )
    busiest = max(workers, key=lambda w: cpu[workers.index(w)])
    result.notes.append(
        f"{busiest.worker_id} (the job's partition) did the work: "
        f"{max(cpu):.1f} CPU-s for {n:,} users, {n / max(max(cpu), 1e-9):,.0f} users per "
        f"CPU-second; the other worker(s) {sum(cpu) - max(cpu):.1f} CPU-s."
    )
    result.details = {
        "users": n,
        "commands": len(commands),
        "seconds": ingested.seconds,
        "rate": ours,
        "command_bytes_per_user": pushed.value_bytes / n,
        "worker_cpu": {w.worker_id: c for w, c in zip(workers, cpu, strict=True)},
        "users_per_cpu_second": n / max(max(cpu), 1e-9),
        "machine_busy": busy,
        "raw_seconds": pushed.seconds,
        "raw_mb_s": pushed.value_bytes / pushed.seconds / 1e6,
    }
