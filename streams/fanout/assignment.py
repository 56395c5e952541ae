"""A fan-out member's share of the pages topic: the partitions it holds, their
done-markers restored before a page of them is taken, and its readiness.

librdkafka calls `on_assign`, `on_revoke` and `on_lost` from the loop's
`consume` and `poll`, so between two transactions. Under cooperative-sticky
they carry only the partitions that change hands, and a member keeps the
rest (and its readiness) through a rebalance; under an eager strategy every
rebalance revokes everything first.

Ready (`/readyz`) means holding an assignment whose markers are restored;
from a revoke or a loss until then, it is not. A member that holds nothing
is ready only once that is its settled share: more members than partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import KafkaException, TopicPartition

from streams.fanout.done import DoneRestore, DoneStore
from streams.settings import Settings

log = logging.getLogger(__name__)

# An assignment waits for the committed offsets of its partitions this many transaction
# timeouts: they are answered once no transaction of a previous owner is pending, and
# its coordinator aborts such a transaction at the latest one timeout after it began.
COMMITTED_TIMEOUTS = 4


class Assignment:
    """The partitions a member holds; `on_ready` is told each change of readiness,
    `on_assigned` each assignment (the loop looks at its new share at its next turn:
    a client call from inside librdkafka's callback aborts the process)."""

    def __init__(
        self,
        settings: Settings,
        done: DoneStore,
        on_ready: Callable[[bool], None] | None = None,
        on_assigned: Callable[[], None] | None = None,
    ) -> None:
        self.s = settings
        self.committed_seconds = COMMITTED_TIMEOUTS * settings.transaction_timeout_ms / 1000
        # What `on_assign` met, raised by `check` once librdkafka's call has returned.
        self.failed: Exception | None = None
        self.on_ready = on_ready
        self.on_assigned = on_assigned
        self.cooperative = settings.fanout_assignment == "cooperative-sticky"
        self.group = f"{settings.app_id}-fanout"
        self.held: frozenset[int] = frozenset()
        self.ready = False
        self.restore = DoneRestore(settings, done)
        self._admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})

    def subscribe(self, consumer: Consumer) -> None:
        consumer.subscribe(
            [self.s.topic_fanout_pages],
            on_assign=self.on_assign,
            on_revoke=self.on_revoke,
            on_lost=self.on_lost,
        )

    def set_ready(self, ready: bool) -> None:
        self.ready = ready
        if self.on_ready is not None:
            self.on_ready(ready)

    def settle(self, consumer: Consumer) -> None:
        """Holding nothing: ready if that is this member's settled share (asked by the
        loop every few seconds, outside librdkafka's callbacks)."""
        if not self.ready and not self.held:
            self.set_ready(self._more_members_than_partitions(consumer))

    def check(self) -> None:
        """Raise what the last assignment met (its partitions' offsets or markers not
        read): the loop calls it after each `consume` and `poll`, before it takes a page,
        and the session ends on it."""
        failed, self.failed = self.failed, None
        if failed is not None:
            raise failed

    def end(self) -> None:
        """The session's consumer closed: nothing held, the markers' reader closed."""
        self.restore.close()
        self.held = frozenset()
        self.failed = None

    # -- librdkafka's callbacks -------------------------------------------------------
    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.cooperative:
            self._hold("revoked", partitions, self.held - set(numbers(partitions)))
        else:
            self.set_ready(False)
            self._hold("revoked", partitions, frozenset())

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.set_ready(False)
        self._hold("lost", partitions, frozenset())

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Committed offsets of a read_committed group are only answered once no
        # transaction of a previous owner is pending, so the markers read after
        # this are complete.
        try:
            if partitions:
                consumer.committed(partitions, timeout=self.committed_seconds)
                self.restore.restore(numbers(partitions))
        except Exception as exc:
            # Kept for `check`, not raised here: a consumer call that fails inside a
            # rebalance callback makes `consume` raise the bare KafkaError object
            # (confluent-kafka 2.16.2), which no `except` clause naming a class
            # catches, and the fan-out thread died of it after a broker restart.
            log.warning("fan-out %s: assignment not taken up: %s", self.s.worker_id, exc)
            self.failed = exc
            return
        # Under an eager strategy the assignment is replaced by `partitions`.
        held = self.held if self.cooperative else frozenset()
        self._hold("assigned", partitions, held | set(numbers(partitions)))
        self.set_ready(bool(self.held))
        if self.on_assigned is not None:
            self.on_assigned()

    def _more_members_than_partitions(self, consumer: Consumer) -> bool:
        """Whether holding nothing is this member's settled share. A member that joins
        under cooperative-sticky is first assigned nothing, while the partitions it
        will get are revoked from the others: that is not ready yet."""
        topic = self.s.topic_fanout_pages
        try:
            metadata = consumer.list_topics(topic, timeout=5).topics[topic]
            group = self._admin.describe_consumer_groups([self.group])[self.group].result(5)
        except (KafkaException, TimeoutError) as exc:  # the broker away, or the group loading
            log.debug("fan-out group %s not described: %s", self.group, exc)
            return False
        return len(group.members) > len(metadata.partitions)

    def _hold(self, change: str, partitions: list[TopicPartition], held: frozenset[int]) -> None:
        """One line per change, with the whole assignment held after it (tests read it)."""
        self.held = held
        log.info(
            "fan-out %s: partitions %s %s; holds %s",
            self.s.worker_id,
            change,
            numbers(partitions),
            sorted(held),
        )


def numbers(partitions: list[TopicPartition]) -> list[int]:
    return sorted(tp.partition for tp in partitions)
