"""The command feed hands partitions over without replaying or skipping a command,
and fetches again a partition librdkafka keeps out of its active fetch state.

A replayed command publishes its result again, so each command's result on
`bulk.command-results` shows how often it was applied: a worker that stops,
or gives partitions to another, must record where it is first (a crash may
replay; test_exactly_once and `make chaos` count what that may cost: nothing)."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.aggregate.command_feed import (
    FetchWatch,
    RecordBatch,
    fetch_ends,
    fetch_states,
    record_columns,
)
from streams.settings import Settings
from streams.testing.client import Client, await_accepted, send_generated
from streams.testing.processes import WorkerProcess, wait_for
from streams.testing.topics import members_with_partitions, read_topic

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
        assert job is not None
        assert job.received == len(commands) // JOBS * USERS_PER_COMMAND, job


def _stats(topic: str, states: dict[int, tuple[str, bool]]) -> dict[str, Any]:
    """librdkafka's statistics, the fields the watch reads ("-1" is librdkafka's
    unassigned-messages partition)."""
    partitions = {
        str(p): {"partition": p, "fetch_state": state, "desired": desired}
        for p, (state, desired) in states.items()
    }
    partitions["-1"] = {"partition": -1, "fetch_state": "none", "desired": False}
    return {"topics": {topic: {"partitions": partitions}, "other": {"partitions": {}}}}


def test_fetch_states_are_those_of_the_wanted_partitions_of_the_topic() -> None:
    stats = _stats("cmds", {0: ("active", True), 1: ("offset-query", True), 2: ("none", False)})
    assert fetch_states(stats, "cmds") == {0: "active", 1: "offset-query"}
    assert fetch_states(stats, "missing") == {}


def test_fetch_ends_are_the_known_last_stable_offsets_of_the_wanted_partitions() -> None:
    stats = _stats("cmds", {0: ("active", True), 1: ("offset-query", True), 2: ("none", False)})
    partitions = stats["topics"]["cmds"]["partitions"]
    partitions["0"] |= {"hi_offset": 9, "ls_offset": 7}
    partitions["1"] |= {"hi_offset": -1, "ls_offset": -1}  # not fetched yet
    partitions["2"] |= {"hi_offset": 5, "ls_offset": 5}
    assert fetch_ends(stats, "cmds") == {0: 7}


def test_fetch_ends_from_librdkafka_are_where_each_partition_ends(topology: Settings) -> None:
    """The feed's lag reads the ends off librdkafka's statistics rather than asking
    the consumer from the loop (which waited for the fetch thread's poll to end)."""
    _fetched(topology, {0: 3, 2: 5})
    topic = topology.topic_commands
    seen: list[dict[int, int]] = []
    consumer = Consumer(
        {
            "bootstrap.servers": topology.kafka_bootstrap_servers,
            "group.id": "ends",
            "isolation.level": "read_committed",
            "statistics.interval.ms": 100,
            "stats_cb": lambda raw: seen.append(fetch_ends(orjson.loads(raw), topic)),
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in (0, 2)])
    deadline = time.monotonic() + 30
    try:
        while not (seen and seen[-1] == {0: 3, 2: 5}) and time.monotonic() < deadline:
            consumer.poll(0.1)
    finally:
        consumer.close()
    assert seen
    assert seen[-1] == {0: 3, 2: 5}, seen[-3:]


def test_a_partition_out_of_the_active_state_too_long_is_due_once() -> None:
    watch = FetchWatch(patience=10)
    watch.observe({0: "active", 1: "offset-query"}, now=0)
    watch.observe({0: "active", 1: "offset-query"}, now=5)
    assert watch.stalled(now=9) == []
    assert watch.stalled(now=10) == [(1, "offset-query")]
    assert watch.stalled(now=11) == []  # watched anew after a seek
    assert watch.stalled(now=20) == [(1, "offset-query")]


def test_a_partition_that_becomes_active_or_is_dropped_is_not_due() -> None:
    watch = FetchWatch(patience=10)
    watch.observe({0: "validate-epoch-wait", 1: "offset-query"}, now=0)
    watch.observe({0: "active", 1: "offset-query"}, now=3)
    watch.observe({0: "offset-query"}, now=4)  # 1 unassigned; 0 left "active" at 4
    assert watch.stalled(now=12) == []
    assert watch.stalled(now=14) == [(0, "offset-query")]


def test_the_watch_is_asked_on_the_loop_while_the_fetch_thread_tells_it() -> None:
    """librdkafka's statistics reach the watch on the fetch thread, which may be taking
    a batch ahead while the loop asks what stalled: neither meets the other's dict
    half changed (without the watch's lock, `stalled` raised "dictionary changed size
    during iteration")."""
    watch = FetchWatch(patience=0)
    done = threading.Event()

    def tell() -> None:
        n = 0
        while not done.is_set():
            n += 1
            watch.observe({p: "offset-query" for p in range(n % 64)}, now=0)

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    teller = threading.Thread(target=tell)
    teller.start()
    try:
        for _ in range(20_000):
            watch.stalled(now=1)
    finally:
        done.set()
        teller.join()
        sys.setswitchinterval(switching)


def _fetched(settings: Settings, per_partition: dict[int, int]) -> list[Any]:
    """librdkafka's messages of `per_partition` records produced on each of these
    partitions of the commands topic (valued `b"<partition>:<n>"`), as a feed fetches
    them: partition by partition, in offset order."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for partition, count in per_partition.items():
        for n in range(count):
            producer.produce(
                settings.topic_commands,
                key=f"k{n}".encode(),
                value=f"{partition}:{n}".encode(),
                partition=partition,
            )
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "columns"}
    )
    consumer.assign([TopicPartition(settings.topic_commands, p, 0) for p in per_partition])
    records: list[Any] = []
    while len(records) < sum(per_partition.values()):
        records += consumer.consume(100, 5)
    consumer.close()
    return records


def test_record_columns_are_the_records_to_apply_or_none_when_some_are_not(
    topology: Settings,
) -> None:
    records = _fetched(topology, {1: 3, 4: 2})
    columns = record_columns(topology.topic_commands, records, frozenset({1, 4}), {})
    assert columns is not None
    got = sorted(
        zip(columns.partitions, columns.offsets, columns.keys, columns.values, strict=True)
    )
    assert got == [
        (p, n, f"k{n}".encode(), f"{p}:{n}".encode())
        for p, count in ((1, 3), (4, 2))
        for n in range(count)
    ]
    assert columns.last_offsets() == {1: 2, 4: 1}
    # A partition not held, or a record at or below the offset applied: one by one.
    assert record_columns(topology.topic_commands, records, frozenset({1}), {}) is None
    assert record_columns(topology.topic_commands, records, frozenset({1, 4}), {4: 0}) is None
    assert record_columns(topology.topic_commands, records, frozenset({1, 4}), {4: -1, 1: -1})
    empty = record_columns(topology.topic_commands, [], frozenset(), {})
    assert empty is not None
    assert len(empty) == 0


def test_a_batch_keeps_only_the_records_of_partitions_held_past_their_offset() -> None:
    batch = RecordBatch("t")
    batch.partitions = [1, 1, 1, 4, 4]
    batch.offsets = [5, 6, 7, 0, 1]
    batch.keys = [b"a", None, b"c", b"d", b"e"]
    batch.values = [b"1", b"2", None, b"4", b"5"]
    assert batch.fits(frozenset({1, 4}), {1: 4})
    assert not batch.fits(frozenset({1}), {})
    assert not batch.fits(frozenset({1, 4}), {1: 5})
    kept = batch.newer(frozenset({1, 4}), {1: 5, 4: 0})
    assert (kept.partitions, kept.offsets) == ([1, 1, 4], [6, 7, 1])
    assert (kept.keys, kept.values) == ([None, b"c", b"e"], [b"2", None, b"5"])
    assert kept.fits(frozenset({1, 4}), {1: 5, 4: 0})
    assert len(batch.newer(frozenset({2}), {})) == 0
