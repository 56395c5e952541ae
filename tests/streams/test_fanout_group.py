"""The fan-out's consumer group as workers join and leave, on the real broker: when a
loop says it is ready (/readyz), and who keeps fanning out through a rebalance.

Each `FanoutLoop` runs on a thread of the test, under its own worker id; its
readiness changes are recorded with the partitions it held at that moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.fanout.loop import FanoutLoop
from streams.settings import Settings


@dataclass
class Member:
    """A fan-out loop on a thread, and every readiness change it announced."""

    loop: FanoutLoop
    thread: threading.Thread
    changes: list[tuple[bool, frozenset[int]]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return bool(self.changes) and self.changes[-1][0]

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture
def members(topology: Settings) -> Iterator[list[Member]]:
    started: list[Member] = []
    yield started
    for member in reversed(started):
        member.stop()


def join(settings: Settings, worker_id: str, started: list[Member]) -> Member:
    holder: list[Member] = []

    def on_ready(ready: bool) -> None:
        member = holder[0]
        member.changes.append((ready, member.loop.held))

    loop = FanoutLoop(settings.model_copy(update={"worker_id": worker_id}), on_ready=on_ready)
    member = Member(loop, threading.Thread(target=loop.run, name=f"fanout-{worker_id}"))
    holder.append(member)
    started.append(member)
    member.thread.start()
    return member


def wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_ready_only_while_holding_a_restored_assignment(
    topology: Settings, members: list[Member], strategy: str
) -> None:
    settings = topology.model_copy(update={"fanout_assignment": strategy})
    first = join(settings, "w1", members)
    wait(lambda: first.ready, 60, "the first loop to be ready")
    # It is ready first with every partition restored (it holds them all), never
    # with an empty hand: a member's first share under cooperative-sticky is empty.
    assert next(change for change in first.changes if change[0]) == (
        True,
        frozenset(range(settings.partitions)),
    )

    second = join(settings, "w2", members)
    wait(lambda: second.ready, 60, "the second loop to be ready")
    wait(
        lambda: (
            len(first.loop.held) + len(second.loop.held) == settings.partitions
            and first.loop.held.isdisjoint(second.loop.held)
            and second.loop.held
        ),
        60,
        "the partitions to be shared",
    )
    # The newcomer is ready only once it holds (restored) partitions of its own.
    assert next(change for change in second.changes if change[0])[1]
    since_ready = first.changes.index((True, frozenset(range(settings.partitions))))
    readiness_of_first = [ready for ready, _ in first.changes[since_ready:]]
    if strategy == "cooperative-sticky":
        # It gave up half its partitions and kept fanning out the rest: never unready.
        assert all(readiness_of_first), first.changes
    else:
        # An eager rebalance revokes everything first: unready until assigned again.
        assert False in readiness_of_first, first.changes
        assert readiness_of_first[-1] is True

    second.stop()
    members.remove(second)
    wait(lambda: len(first.loop.held) == settings.partitions, 60, "w1 to take every partition")
    assert first.ready


def test_an_assignment_held_up_by_a_pending_transaction_ends_the_session_not_the_loop(
    topology: Settings, members: list[Member]
) -> None:
    """A transaction of a previous owner, holding offsets of the fan-out group, still
    open (a broker restarted under it): a new member's committed offsets go
    unanswered, its assignment is not taken up and its session ends; the loop starts
    another, and is ready once the transaction is over. The failure surfaced from
    librdkafka's callback as the bare KafkaError object, which ended the thread."""
    settings = topology.model_copy(update={"transaction_timeout_ms": 1000})
    group = f"{settings.app_id}-fanout"
    stale = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "transactional.id": f"{settings.app_id}-stale-owner",
            "transaction.timeout.ms": 60_000,
        }
    )
    stale.init_transactions(30)
    stale.begin_transaction()
    metadata = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group}
    ).consumer_group_metadata()
    pages = settings.topic_fanout_pages
    offsets = [TopicPartition(pages, p, 0) for p in range(settings.partitions)]
    stale.send_offsets_to_transaction(offsets, metadata, 30)
    try:
        member = join(settings, "w1", members)
        time.sleep(10)  # the member's assignments wait 4 s a time for the offsets
        assert member.thread.is_alive()
        assert not member.ready
    finally:
        stale.abort_transaction(30)
    wait(lambda: member.ready, 60, "the loop to be ready once the transaction is over")
    assert member.loop.held == frozenset(range(settings.partitions))
