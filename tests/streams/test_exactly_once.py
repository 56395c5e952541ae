"""Exactly-once effect under SIGKILL, and one job's fan-out spread over every worker."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from chaos.cluster import key_partition
from streams.ids import positional_message_id
from streams.settings import Settings
from streams.testing.client import Client, ingest_generated
from streams.testing.processes import WorkerProcess, wait_for
from streams.testing.topics import members_with_partitions, read_topic

USERS = 100_000
KILLS_AT = (0.15, 0.45, 0.75)  # kill when this share of the job is enqueued


def _wait_both_workers_joined(settings: Settings) -> None:
    """Both workers hold partitions of the aggregate's and of the fan-out's group."""
    for group in (settings.app_id, f"{settings.app_id}-fanout"):
        wait_for(
            partial(_members_with_partitions_is, settings, group, 2),
            120,
            f"both workers to hold partitions in {group}",
        )


def _members_with_partitions_is(settings: Settings, group: str, n: int) -> bool:
    return members_with_partitions(settings, group) == n


def _reached(client: Client, job_id: str, share: float) -> Any:
    job = client.job(job_id)
    if job is not None and (job.enqueued >= share * USERS or job.status == "COMPLETED"):
        return job
    return None


def test_sigkill_during_fan_out_loses_and_duplicates_nothing(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    workers = {wid: start_worker(wid) for wid in ("w1", "w2")}
    _wait_both_workers_joined(topology)
    job_id = client.create({"template": "T", "data": {"campaign": "kill-test"}})
    assert ingest_generated(client, job_id, USERS) == USERS
    created_at = client.created_at(job_id)
    client.run(job_id)

    rng = random.Random(7)
    kills = []
    for share in KILLS_AT:
        job = wait_for(
            partial(_reached, client, job_id, share),
            600,
            f"{share:.0%} of the fan-out",
            every=0.05,
        )
        if job.status == "COMPLETED":
            break
        victim = rng.choice(sorted(workers))
        workers[victim].kill()
        kills.append((victim, job.enqueued))
        workers[victim] = start_worker(victim)
    assert len(kills) >= 2, f"the fan-out ended before the kills could land: {kills}"

    job = client.wait_status(job_id, "COMPLETED", 900)
    assert (job.received, job.enqueued, job.failures) == (USERS, USERS, 0)

    sends = read_topic(topology, topology.topic_sends, expected=USERS, idle=10, timeout=600)
    seen = Counter(value["messageId"] for _, value, _ in sends)
    expected = {positional_message_id(created_at, job_id, p) for p in range(USERS)}
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    lost = len(expected - set(seen))
    print(
        f"\nkill test: users={USERS} kills={kills} sends_seen={len(sends)} "
        f"duplicates={duplicates} lost={lost} unexpected={len(set(seen) - expected)}"
    )
    assert duplicates == 0
    assert lost == 0
    assert set(seen) == expected
    assert len(sends) == USERS
    # Each id names its send's position, and each user has one of them.
    assert all(
        value["messageId"] == positional_message_id(created_at, job_id, value["position"])
        for _, value, _ in sends
    )
    assert sorted(value["to"]["user_id"] for _, value, _ in sends) == sorted(
        f"user-{i}" for i in range(USERS)
    )


def test_one_large_job_is_fanned_out_by_both_workers(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("w1")
    start_worker("w2")
    _wait_both_workers_joined(topology)
    job_id = client.create({"template": "T"})
    users = 20_000
    assert ingest_generated(client, job_id, users) == users
    client.run(job_id)
    client.wait_status(job_id, "COMPLETED", 300)

    # Done-markers name the worker that fanned each page out.
    pages_by_worker = Counter(_marker_workers(topology))
    print(f"\nspread: pages fanned out by worker: {dict(pages_by_worker)}")
    assert set(pages_by_worker) == {"w1", "w2"}
    assert sum(pages_by_worker.values()) == users // topology.fanout_page_size

    # Each page on the partition of murmur2(key), as Java clients and faust's producer
    # (which sent pages before) put it: a page handed over again meets its done-marker.
    pages = read_topic(topology, topology.topic_fanout_pages)
    assert len(pages) >= users // topology.fanout_page_size
    for key, _, partition in pages:
        assert key is not None
        assert partition == key_partition(key, topology.partitions), key


def _marker_workers(settings: Settings) -> list[str]:
    from confluent_kafka import Consumer
    from confluent_kafka.cimpl import KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"markers-{time.time()}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    topic = settings.topic_fanout_done
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
    workers: list[str] = []
    eof: set[int] = set()
    try:
        while len(eof) < len(partitions):
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                eof.add(message.partition() or 0)
                continue
            value = message.value()
            assert isinstance(value, bytes)
            workers.append(value.decode())
    finally:
        consumer.close()
    return workers


def test_an_ingest_burst_while_workers_join_loses_no_command(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    """100 ingests sent at once while two workers start and rebalance under them.

    faust dropped commands fetched around a rebalance (and committed past
    them): a job came out with 99,000 of 100,000 users, or stalled."""
    for wid in ("w1", "w2"):
        start_worker(wid)
    job_id = client.create({"template": "T"})
    assert ingest_generated(client, job_id, USERS) == USERS
    job = client.job(job_id)
    assert job is not None
    assert (job.status, job.received) == ("CREATED", USERS)


def test_sigterm_mid_fan_out_hands_the_work_back(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A worker asked to stop (Kubernetes' SIGTERM) finishes or hands back what it holds:
    it exits 0 within the grace period, and the other worker completes the job exactly."""
    users = 40_000
    workers = {wid: start_worker(wid) for wid in ("w1", "w2")}
    _wait_both_workers_joined(topology)
    job_id = client.create({"template": "T"})
    assert ingest_generated(client, job_id, users) == users
    client.run(job_id)
    wait_for(
        lambda: ((job := client.job(job_id)) is not None and job.enqueued >= users // 4) or None,
        300,
        "a quarter of the fan-out",
        every=0.05,
    )
    leaving = workers["w1"]
    started = time.monotonic()
    assert leaving.stop() == 0, leaving.log_tail()
    stop_seconds = time.monotonic() - started

    job = client.wait_status(job_id, "COMPLETED", 600)
    assert (job.received, job.enqueued, job.failures) == (users, users, 0)
    sends = read_topic(topology, topology.topic_sends, expected=users, idle=10, timeout=600)
    seen = Counter(value["messageId"] for _, value, _ in sends)
    print(
        f"\nsigterm test: stopped in {stop_seconds:.1f} s, sends={len(sends)} distinct={len(seen)}"
    )
    assert len(seen) == users
    assert len(sends) == users
