"""Scenario 2, naive baseline: the same job fanned out by the simplest faust agent (bench.naive).

The naive agent runs as its own process over fresh topics. It is given the
same create and ingest commands; once it holds every user, the clock runs
from the run command to the broker's acknowledgement of its last send. Then
the sends topic is read back: N records, N distinct messageIds. The speed-up
of bulkstream over it is computed from the fan-out scenario's rate.
"""

from __future__ import annotations

import subprocess
import sys
import time

import orjson

from streams.kafka.producer import CommandProducer
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import cpu_seconds, settings_env, wait_for

from .env import REPO, Options, Run, redis_client, say
from .jobs import create_command, ingest_commands, run_command
from .kafka import read_stats
from .naive import done_key, ingested_key
from .procs import log_findings
from .results import ScenarioResult, check


def run(bench: Run, opts: Options) -> ScenarioResult:
    result = ScenarioResult("naive", "Naive baseline: one faust agent, one await per send")
    with bench.namespace("naive") as settings:
        _measure(bench, settings, opts, result)
    return result


def _measure(bench: Run, s: Settings, opts: Options, result: ScenarioResult) -> None:
    n = opts.users
    ensure_topics(s)
    log_path = bench.log_dir / "naive.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.naive"],
            env=settings_env(s, worker_id="naive"),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    views = redis_client(s.redis_url)
    producer = CommandProducer(s, create_topics=False)

    def alive() -> None:
        if proc.poll() is not None:
            raise AssertionError(f"the naive agent exited: {log_path.read_text()[-3000:]}")

    try:
        create = create_command()
        producer.send(create)
        say(f"naive: ingesting {n:,} users into the naive agent (untimed)")
        for command in ingest_commands(create.job_id, n):
            producer.send(command)
        producer.flush(300)

        def holds_all() -> bool:
            alive()
            raw = views.get(ingested_key(s, create.job_id))
            return raw is not None and int(raw) == n

        wait_for(holds_all, 1800, "the naive agent to hold every user", 0.05)
        say("naive: run -> last send acknowledged (timed)")
        cpu_before = cpu_seconds(proc.pid)
        started = time.perf_counter()
        producer.send(run_command(create.job_id))
        producer.flush()

        def done() -> bytes | None:
            alive()
            raw = views.get(done_key(s, create.job_id))
            return raw  # type: ignore[return-value]

        outcome = orjson.loads(wait_for(done, max(1800.0, n / 200), "the naive fan-out", 0.02))
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        views.close()
    result.log_findings = log_findings([log_path])
    check(outcome["sent"] == n, f"naive agent acknowledged {n:,} sends", result)
    say("naive: reading the sends back")
    sends = read_stats(s, s.topic_sends, create.job_id, check_message_id=True)
    check(sends.records == n, f"{n:,} sends on the naive sends topic", result)
    check(sends.distinct_keys == n, f"{n:,} distinct messageIds", result)
    result.details = {
        "users": n,
        "seconds": seconds,
        "rate": n / seconds,
        "cpu_seconds": cpu,
        "send_bytes_avg": sends.value_bytes / n,
    }
