"""Scenario 3, ingest through Kafka: N users in 1,000-user commands, against the naive
faust ingest agent (bench.naive_ingest) given the same commands.

Timed from the first command sent (`CommandProducer.send`, which serialises
it) to the last command's result in Redis (commands of one job are applied in
offset order, on one partition). Then every result is checked, and the job's
`received` counter must be N. The figure the issue sets a target on (#21,
target 5) is the users per CPU-second of the worker holding the job's
partition. The baseline: the naive agent in its own process and namespace,
sent the same create and ingest commands (built once, before either clock),
timed from the first ingest command sent to the last one applied (its
accepted count, in Redis, reaching N), and the CPU it used meanwhile.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from schemas.commands import CreateJob, IngestUsers
from streams.kafka.producer import CommandProducer
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import (
    WorkerProcess,
    cpu_seconds,
    settings_env,
    start_workers,
    stop_all,
    wait_for,
    wait_growing,
)
from streams.testing.reader import ViewReader
from streams.testing.users import BATCH

from .env import REPO, TENANT, Options, Run, redis_client, say
from .jobs import create_job, ingest, ingest_commands
from .kafka import end_offsets
from .naive_ingest import received_key, users_changelog
from .procs import busy_fraction, log_findings, machine_busy
from .profile import profile_untimed
from .results import Figure, ScenarioResult, check

# Issue #21, target 5: users accepted per CPU-second of the worker holding the job.
TARGET_USERS_PER_CPU_SECOND = 150_000.0


def run(bench: Run, opts: Options) -> ScenarioResult:
    result = ScenarioResult("ingest", "Ingest through Kafka")
    with bench.namespace("ingest") as settings:
        _measure(bench, settings, opts, result)
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
        if opts.profile:
            _profile(bench, producer, views, workers, n, result)
    finally:
        stop_all(workers)
        views.close()
    result.log_findings = log_findings(w.log_path for w in workers)

    naive = _naive(bench, create, commands, result)
    ours, per_cpu = n / ingested.seconds, n / max(max(cpu), 1e-9)
    naive_rate, naive_per_cpu = n / naive.seconds, n / max(naive.cpu_seconds, 1e-9)
    result.figures += [
        Figure(
            label="ingest users per CPU-second on the job's partition",
            measured=per_cpu,
            unit="users/CPU-s",
            baseline=naive_per_cpu,
            baseline_label="naive faust ingest agent, its process",
            target_min=TARGET_USERS_PER_CPU_SECOND,
            target_on="measured",
        ),
        Figure(
            label=f"ingest rate vs the naive faust ingest agent, {BATCH:,}-user commands",
            measured=ours,
            unit="users/s",
            baseline=naive_rate,
            baseline_label="naive faust ingest agent, same commands",
        ),
    ]
    busiest = max(workers, key=lambda w: cpu[workers.index(w)])
    result.notes.append(
        f"{busiest.worker_id} (the job's partition) did the work: "
        f"{max(cpu):.1f} CPU-s for {n:,} users, {per_cpu:,.0f} users per "
        f"CPU-second; the other worker(s) {sum(cpu) - max(cpu):.1f} CPU-s. The naive agent: "
        f"{naive.cpu_seconds:.1f} CPU-s, {naive_per_cpu:,.0f} users per CPU-second."
    )
    result.details |= {
        "users": n,
        "commands": len(commands),
        "seconds": ingested.seconds,
        "rate": ours,
        "command_bytes_per_user": sum(len(orjson.dumps(c.to_wire())) for c in commands) / n,
        "worker_cpu": {w.worker_id: c for w, c in zip(workers, cpu, strict=True)},
        "users_per_cpu_second": per_cpu,
        "machine_busy": busy,
        "naive_seconds": naive.seconds,
        "naive_rate": naive_rate,
        "naive_cpu_seconds": naive.cpu_seconds,
        "naive_users_per_cpu_second": naive_per_cpu,
        "naive_machine_busy": naive.machine_busy,
        "naive_changelog_complete_s": naive.changelog_after,
    }


def _profile(
    bench: Run,
    producer: CommandProducer,
    views: ViewReader,
    workers: list[WorkerProcess],
    n: int,
    result: ScenarioResult,
) -> None:
    """A second job of n users ingested under py-spy (untimed)."""
    create = create_job(producer, views)
    commands = ingest_commands(create.job_id, n)
    say(f"ingest: a second job of {n:,} users under py-spy (untimed)")
    result.details["profile"] = profile_untimed(
        bench.log_dir, workers, "ingest", lambda: ingest(producer, views, commands).seconds
    )


@dataclass
class NaiveIngested:
    """The naive agent's timed ingest: first command sent to the last one applied."""

    seconds: float
    cpu_seconds: float
    machine_busy: float
    changelog_records: int
    changelog_after: float


def _naive(
    bench: Run, create: CreateJob, commands: list[IngestUsers], result: ScenarioResult
) -> NaiveIngested:
    """The same commands through the naive agent, in a namespace of its own."""
    with bench.namespace("ingest-naive") as s:
        ensure_topics(s)
        log_path = bench.log_dir / "naive-ingest.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.naive_ingest"],
                env=settings_env(s, worker_id="naive-ingest"),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            timed = _naive_timed(s, proc, log_path, create, commands)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        result.log_findings += log_findings([log_path])
        n = sum(len(c.users) for c in commands)
        result.checks.append(f"naive agent: {n:,} users accepted")
        check(timed.changelog_records == n, f"naive agent: {n:,} users in its changelog", result)
        return timed


def _naive_timed(
    s: Settings,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    create: CreateJob,
    commands: list[IngestUsers],
) -> NaiveIngested:
    n = sum(len(c.users) for c in commands)
    views = redis_client(s.redis_url)
    producer = CommandProducer(s, create_topics=False)
    key = received_key(s, create.job_id)

    def received(wanted: int) -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the naive ingest agent exited (its log: {log_path})")
        raw = views.get(key)
        return raw is not None and int(raw) == wanted

    try:
        say("ingest: starting the naive faust ingest agent (its create command, untimed)")
        producer.send(create)
        producer.flush()
        wait_for(lambda: received(0), 300, "the naive ingest agent to apply the create", 0.05)
        say(f"ingest: the naive agent, the same {len(commands):,} commands (timed)")
        cpu_before = cpu_seconds(proc.pid)
        busy_before = machine_busy()
        started = time.perf_counter()
        for command in commands:
            producer.send(command)
        producer.flush(300)
        wait_for(lambda: received(n), max(1800.0, n / 200), "the naive ingest", 0.01)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid) - cpu_before
        busy = busy_fraction(busy_before, machine_busy())
        # Untimed: its table writes reached the broker, one changelog record per user.
        changelog = users_changelog(s)
        # As long as it grows: faust's producer trails the agent by a minute or more
        # on a slow day (120 s in all was too short there).
        wait_growing(
            lambda: sum(end_offsets(s, changelog).values()),
            n,
            60,
            "the naive agent's users changelog to hold every user",
        )
        return NaiveIngested(
            seconds=seconds,
            cpu_seconds=cpu,
            machine_busy=busy,
            changelog_records=sum(end_offsets(s, changelog).values()),
            changelog_after=time.perf_counter() - started,
        )
    finally:
        views.close()
