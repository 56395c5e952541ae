"""The fan-out stage: pages of users in, one send event per user out, exactly once.

A confluent-kafka consume -> produce loop in Kafka transactions. For a batch
of pages it produces, in one transaction: every page's sends, its progress
report (to the job's aggregate) and its done-marker, and the consumer offsets
of the pages. A worker killed at any moment leaves an open transaction that
is aborted (by its next incarnation's `init_transactions`, or by timeout);
read_committed consumers never see its sends, and the pages are redone.

Pages are keyed `<job>:<n>`, so a large job's pages spread over every
partition and every worker in the consumer group. The aggregate may emit a
page twice (faust is at least once); the done-markers, kept in a compacted
topic co-partitioned with the pages and mirrored in a local RocksDB, keep the
second copy from sending anything. It gets its progress report again, alone:
the aggregate emits a page again only while it has not counted it (after a
rebalance, every page out), so a report it lost on the way is made good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

import orjson
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.cimpl import KafkaError, KafkaException, TopicPartition

from schemas.fanout import PageProgress
from streams import metrics
from streams.errors import CallStuck, Stopped
from streams.fanout.assignment import Assignment
from streams.fanout.done import DoneStore
from streams.fanout.expand import page_expander
from streams.kafka.bounded import BoundedCalls
from streams.kafka.config import group_consumer_config, producer_config
from streams.settings import Settings

log = logging.getLogger(__name__)

# librdkafka's own timeout for `init_transactions`, and ours on top of it for
# when librdkafka does not keep to its own (streams.bounded).
TXN_CALL_SECONDS = 60.0
TXN_CALL_DEADLINE = TXN_CALL_SECONDS + 15.0
# The calls inside a transaction (send offsets, commit, abort) get the
# transaction's own timeout, and our deadline this much more: past
# transaction.timeout.ms the coordinator aborts the transaction anyway, so
# waiting longer only holds the pages up. On a 3-broker cluster, with the
# killed broker the fan-out group's coordinator, `send_offsets_to_transaction`
# sat out the former fixed 75 s (librdkafka #5511); a broker's failover itself
# took 10-14 s there (docs/reliability.md).
TXN_DEADLINE_MARGIN = 5.0
# How long a stopping worker waits for room in a full producer queue before it gives
# the send (and its transaction) up.
STOP_GRACE_SECONDS = 3.0
# Where the loop's wall time goes: a fan-out starved of pages tells from one
# held by the broker's commits, or by its own sends.
WAITING = metrics.FANOUT_LOOP_SECONDS.labels("waiting")
PRODUCING = metrics.FANOUT_LOOP_SECONDS.labels("producing")
COMMITTING = metrics.FANOUT_LOOP_SECONDS.labels("committing")


class FanoutLoop:
    """One consumer-group member of the fan-out; `run` blocks until `stop` is called."""

    def __init__(
        self,
        settings: Settings,
        on_commit: Callable[[int], None] | None = None,
        on_ready: Callable[[bool], None] | None = None,
    ) -> None:
        self.s = settings
        self.stopping = threading.Event()
        self.lag = metrics.LagGauge(f"{settings.app_id}-fanout")
        self._lag_at = 0.0
        self.on_commit = on_commit
        self.transactional_id = f"{settings.app_id}-fanout-{settings.worker_id}"
        # Done-markers name the worker that fanned the page out (for operators and tests).
        self.worker_tag = settings.worker_id.encode()
        self.done = DoneStore(settings.data_dir / settings.worker_id / "fanout-done")
        self.sent = 0
        self.in_txn_seconds = settings.transaction_timeout_ms / 1000
        self.in_txn_deadline = self.in_txn_seconds + TXN_DEADLINE_MARGIN
        # The partitions held, their done-markers restored; `on_ready` is told True once
        # the consumer holds its assignment, False from a revoke or loss until it does
        # again (/readyz).
        self.assignment = Assignment(settings, self.done, on_ready, self._look_again)
        self._cpu_at = 0.0  # the loop thread's CPU time at the last transaction

    @property
    def held(self) -> frozenset[int]:
        """The partitions of the pages topic held, their done-markers restored."""
        return self.assignment.held

    @property
    def ready(self) -> bool:
        return self.assignment.ready

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self._session()
                except (KafkaException, CallStuck) as exc:
                    log.warning("fan-out session ended (%s); starting a new one", exc)
                    time.sleep(1.0)
        except Stopped as exc:
            log.warning("fan-out %s stopped mid-transaction: %s", self.s.worker_id, exc)
        finally:
            self.done.close()

    # One session: a producer and a consumer; any transactional error ends it, and the
    # next session resumes from the committed offsets.
    def _session(self) -> None:
        self._cpu_at = time.thread_time()
        producer = Producer(
            {
                **producer_config(self.s),
                "transactional.id": self.transactional_id,
                "transaction.timeout.ms": self.s.transaction_timeout_ms,
            }
        )
        calls = BoundedCalls("fanout-txn")
        try:
            calls.call(
                partial(producer.init_transactions, TXN_CALL_SECONDS),
                TXN_CALL_DEADLINE,
                "init_transactions",
            )
        except CallStuck:
            calls.close()
            raise
        consumer = Consumer(self._consumer_config())
        self.assignment.subscribe(consumer)
        log.info("fan-out %s joins group %s-fanout", self.s.worker_id, self.s.app_id)
        stuck = False
        try:
            while not self.stopping.is_set():
                self._report_lag(consumer)
                messages = self._take(consumer)
                pages = [m for m in messages if m.error() is None]
                for m in messages:
                    if m.error() is not None:
                        log.warning("fan-out consumer: %s", m.error())
                if pages:
                    try:
                        self._transaction(producer, consumer, calls, pages)
                    except KafkaException as exc:
                        if not _generation_moved(exc):
                            raise
                        self._abort_and_rewind(producer, consumer, calls, exc)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                abort = partial(producer.abort_transaction, self.in_txn_seconds)
                stuck = True  # until the abort returns
                calls.call(abort, self.in_txn_deadline, "abort_transaction")
                stuck = False
            raise
        except (CallStuck, Stopped):
            # The next session's producer (or, once stopped, the next worker under this
            # id) takes over the transactional id, which aborts this one's open
            # transaction, as its timeout does: its sends are never seen.
            stuck = True
            raise
        finally:
            self.assignment.set_ready(False)
            consumer.close()
            self.assignment.end()
            calls.close()
            if not stuck:
                producer.flush(10)

    def _abort_and_rewind(
        self, producer: Producer, consumer: Consumer, calls: BoundedCalls, exc: KafkaException
    ) -> None:
        """The group moved to a new generation while the transaction was open: under
        cooperative-sticky the members keep consuming through a rebalance, so the
        transaction's offsets can name the generation just left, and the coordinator
        refuses them. Abort it (its sends are never seen) and take the pages again from
        the committed offsets, in this session: ending the session made the worker
        rejoin, which made the group rebalance again (12 s of churn, measured)."""
        log.info("fan-out %s: %s; the batch is redone", self.s.worker_id, exc.args[0].str())
        calls.call(
            partial(producer.abort_transaction, self.in_txn_seconds),
            self.in_txn_deadline,
            "abort_transaction",
        )
        held = consumer.assignment()
        if not held:
            return
        for tp in consumer.committed(held, timeout=120):
            # Never committed: back to where an empty group starts (auto.offset.reset).
            consumer.seek(
                TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else -2)
            )

    def _consumer_config(self) -> dict[str, object]:
        group, timeout = self.assignment.group, self.s.fanout_session_timeout_ms
        config = group_consumer_config(self.s, group, timeout) | {
            "max.poll.interval.ms": 600_000,
            "partition.assignment.strategy": self.s.fanout_assignment,
            # A member learns of a rebalance from a heartbeat's answer, and the group
            # waits for every member to rejoin: at the default 3 s a joining worker
            # waited ~3 s more. Every 100 ms, a change waits for it 50 ms on average.
            "heartbeat.interval.ms": 100,
        }
        if self.s.fanout_static_membership:
            config["group.instance.id"] = self.s.worker_id
        return config

    def _take(self, consumer: Consumer) -> list[Message]:
        """The pages librdkafka has fetched, up to a transaction's worth; else the next
        page to come (within 0.5 s).

        `consume(n, timeout)` waits for n pages or the timeout, whichever comes
        first: with fewer pages coming (a small job, a rate-limited one, the last
        pages of a window), every transaction waited the timeout out."""
        messages: list[Message] = consumer.consume(self.s.fanout_pages_per_transaction, 0)
        self.assignment.check()
        if not messages:
            started = time.perf_counter()
            message = consumer.poll(0.5)
            self.assignment.check()
            messages = [message] if message is not None else []
            WAITING.inc(time.perf_counter() - started)
        return messages

    def _transaction(
        self, producer: Producer, consumer: Consumer, calls: BoundedCalls, pages: list[Message]
    ) -> None:
        started = time.perf_counter()
        producer.begin_transaction()
        committed: list[bytes] = []
        sent = failed = reported_again = 0
        for message in pages:
            key = message.key()
            assert isinstance(key, bytes)
            if key in committed:
                continue
            if key in self.done:
                self._fan_out(producer, message, send=False)
                reported_again += 1
                continue
            enqueued, failures = self._fan_out(producer, message)
            sent += enqueued
            failed += failures
            partition = message.partition()
            assert partition is not None
            producer.produce(
                self.s.topic_fanout_done, key=key, value=self.worker_tag, partition=partition
            )
            committed.append(key)
        offsets = [
            TopicPartition(tp.topic, tp.partition, tp.offset)
            for tp in consumer.position(consumer.assignment())
            if tp.offset >= 0
        ]
        group = consumer.consumer_group_metadata()
        produced = time.perf_counter()
        PRODUCING.inc(produced - started)
        calls.call(
            partial(producer.send_offsets_to_transaction, offsets, group, self.in_txn_seconds),
            self.in_txn_deadline,
            "send_offsets_to_transaction",
        )
        calls.call(
            partial(producer.commit_transaction, self.in_txn_seconds),
            self.in_txn_deadline,
            "commit_transaction",
        )
        COMMITTING.inc(time.perf_counter() - produced)
        for key in committed:
            self.done.add(key)
        self.sent += sent
        metrics.SENDS.inc(sent)
        metrics.SEND_FAILURES.inc(failed)
        metrics.FANOUT_PAGES.inc(len(committed))
        metrics.FANOUT_PAGES_REPORTED_AGAIN.inc(reported_again)
        cpu = time.thread_time()
        metrics.FANOUT_LOOP_CPU.inc(cpu - self._cpu_at)
        self._cpu_at = cpu
        if self.on_commit is not None:
            self.on_commit(sent)

    def _fan_out(self, producer: Producer, message: Message, send: bool = True) -> tuple[int, int]:
        """Produce a page's sends (unless not `send`: a page done before) and its
        progress report; return (enqueued, failed)."""
        value = message.value()
        assert isinstance(value, bytes)
        # Decode, routing check and the sends' JSON: natively when bulkstream_native is
        # installed (streams/fanout/expand.py), byte for byte the same either way.
        page = page_expander(self.s.native)(value)
        topic, produce = self.s.topic_sends, producer.produce
        for key, sent in page.sends if send else ():
            try:
                produce(topic, sent, key)
            except BufferError:
                self._produce(producer, topic, key, sent)
        enqueued = len(page.sends)
        report = PageProgress(
            job_id=page.job_id,
            tenant=page.tenant,
            page=page.page,
            enqueued=enqueued,
            failures=page.failures,
        )
        progress = orjson.dumps(report.to_wire())
        self._produce(producer, self.s.topic_progress, page.job_id.encode(), progress)
        return enqueued, len(page.failures)

    def _produce(self, producer: Producer, topic: str, key: bytes, value: bytes) -> None:
        """Produce, waiting for room while the local queue is full; `Stopped` if the
        worker has been stopping for `STOP_GRACE_SECONDS` meanwhile. A broker that
        answers makes room within moments, and the transaction ends as usual; with the
        broker gone, room would come only as the queued records time out (up to the
        transaction timeout)."""
        give_up_at: float | None = None
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                return
            except BufferError:
                if self.stopping.is_set():
                    now = time.monotonic()
                    give_up_at = give_up_at or now + STOP_GRACE_SECONDS
                    if now >= give_up_at:
                        raise Stopped(f"{topic}: the producer's queue stayed full") from None
                producer.poll(0.05)

    def _report_lag(self, consumer: Consumer) -> None:
        """Pages not yet taken, per partition held (every few seconds); and whether
        holding nothing has become this member's settled share."""
        now = time.monotonic()
        if now - self._lag_at < 5.0:
            return
        self._lag_at = now
        self.assignment.settle(consumer)
        lags = []
        for tp in consumer.position(consumer.assignment()):
            # The watermarks of the last record fetched, not a request to the broker: asked
            # on this thread, one took up to 1.5 s and held a small job's page that long.
            # None known: nothing came for it since it was assigned, so nothing waits.
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high is None or high < 0:
                lags.append((tp.topic, tp.partition, 0))
                continue
            start = tp.offset if tp.offset >= 0 else max(low or 0, 0)
            lags.append((tp.topic, tp.partition, max(high - start, 0)))
        self.lag.update(lags)

    def _look_again(self) -> None:
        """A new share: its lag, and whether holding nothing is settled, at the next turn."""
        self._lag_at = 0.0


def _generation_moved(exc: KafkaException) -> bool:
    """A transaction refused because the consumer group's generation moved on under it."""
    error = exc.args[0]
    return (
        isinstance(error, KafkaError)
        and error.txn_requires_abort()
        and error.code()
        in (
            KafkaError.ILLEGAL_GENERATION,
            KafkaError.REBALANCE_IN_PROGRESS,
            KafkaError.UNKNOWN_MEMBER_ID,
        )
    )
