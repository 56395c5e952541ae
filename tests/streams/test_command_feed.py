"""The command feed hands partitions over without replaying or skipping a command.

A replayed command publishes its result again, so each command's result on
`bulk.command-results` shows how often it was applied: a worker that stops,
or gives partitions to another, must record where it is first (a crash may
replay; test_exactly_once and `make chaos` count what that may cost: nothing)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from streams.settings import Settings
from tests.streams.harness import (
    Client,
    WorkerProcess,
    await_accepted,
    members_with_partitions,
    read_topic,
    send_generated,
    wait_for,
)

JOBS = 8  # over the 8 partitions (most of them)
USERS_PER_COMMAND = 100


def _results(settings: Settings, expected: int) -> Counter[str]:
    records = read_topic(settings, settings.topic_command_results, expected=expected, idle=3)
    return Counter(value["commandId"] for _, value, _ in records)


def _ingest_round(client: Client, jobs: list[str], round_: int) -> list[str]:
    first = round_ * USERS_PER_COMMAND
    commands = []
    for job_id in jobs:
        commands += send_generated(client, job_id, first, first + USERS_PER_COMMAND)
    return commands


def test_a_restarted_worker_applies_no_command_twice(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    # The only cursor written before the stop is the stop's own.
    worker = start_worker("w1", command_checkpoint_seconds=600)
    jobs = [client.create({"template": "T"}) for _ in range(JOBS)]
    commands = [c for round_ in range(5) for c in _ingest_round(client, jobs, round_)]
    await_accepted(client, commands)
    assert worker.stop() == 0
    start_worker("w1")
    commands += _ingest_round(client, jobs, 5)
    assert await_accepted(client, commands) == len(commands) * USERS_PER_COMMAND

    results = _results(topology, JOBS + len(commands))
    twice = {command: n for command, n in results.items() if n > 1}
    assert not twice, f"{len(twice)} commands applied again after a restart"
    assert len(results) == JOBS + len(commands)


def test_partitions_handed_over_mid_ingest_apply_each_command_once(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    # The only cursors written are the hand-overs' own.
    w1 = start_worker("w1", command_checkpoint_seconds=600)
    jobs = [client.create({"template": "T"}) for _ in range(JOBS)]
    sent: list[str] = []
    done = threading.Event()

    def produce() -> None:
        round_ = 0
        while not done.is_set():
            sent.extend(_ingest_round(client, jobs, round_))
            round_ += 1

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_for(lambda: len(sent) >= 10 * JOBS, 60, "commands to flow")
        # w2 takes half the partitions from w1, mid-command.
        start_worker("w2", command_checkpoint_seconds=600)
        wait_for(
            lambda: members_with_partitions(topology, topology.app_id) == 2,
            120,
            "both workers to hold partitions",
        )
        assert w1.stop() == 0  # and w2 takes them all
        handed = len(sent)
        wait_for(lambda: len(sent) >= handed + 10 * JOBS, 120, "commands after the hand-over")
    finally:
        done.set()
        producer.join()
    commands = list(sent)
    assert await_accepted(client, commands) == len(commands) * USERS_PER_COMMAND

    results = _results(topology, JOBS + len(commands))
    twice = {command: n for command, n in results.items() if n > 1}
    assert not twice, f"{len(twice)} commands applied twice across the hand-overs"
    assert len(results) == JOBS + len(commands)
    for job_id in jobs:  # one command per job a round
        job = client.job(job_id)
        assert job.received == len(commands) // JOBS * USERS_PER_COMMAND, job
