"""The reference delivery worker (`bulkstream deliver --http URL`): every send on
`bulk.sends` POSTed to a provider's URL, and its outcome reported on
`bulk.delivery-status` (key = job id), at least once.

- Reading: a consumer group, read_committed (the fan-out writes the sends in
  transactions). Every call of the consumer (consume, pause, commit, and the
  rebalance callbacks it runs) happens on one thread of its own, in turn; the
  event loop only awaits them. It consumes in batches of at most the room left,
  with a 0.1 s timeout.
- Delivering: each send is an asyncio task: the POST with its retries
  (`provider.HttpProvider`, at most `concurrency` requests at once), then its
  report (`SENT`, or `FAILED` with the reason), awaited until the broker
  acknowledged it (a refused report is produced again until it is taken). A
  give-up is not reported for a message the views already have as sent: that
  send was read again, and its first delivery went through (`known`).
- Committing: a partition's offset moves over the sends finished, never past
  one still in hand however the later ones finished (`progress.CommitTracker`):
  every second, for the partitions revoked in a rebalance, and at the stop. A
  crash replays the sends after the last commit: each is posted (with the same
  idempotency key) and reported again, none is lost.
- Memory: at most `max_in_flight` sends in hand. At the bound nothing more is
  taken until one finishes (what librdkafka prefetched waits there: 4 MB at
  most). Full for `PAUSE_AFTER_SECONDS` (the provider down, every send in its
  retries), the partitions are paused and the consumer is polled on, so the
  group keeps this member and rebalances are served; they are resumed once
  half of the sends finished. (Not paused at once: librdkafka fetches again
  only about a second after a resume, which would cost every brief fill.)
- Stopping (SIGTERM, SIGINT): nothing more is taken; the sends in hand get
  `drain_seconds` to finish, the rest are abandoned uncommitted (the next
  owner posts them again); the last commit, then the consumer leaves the group.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import orjson
from confluent_kafka import Consumer, Message
from confluent_kafka.cimpl import KafkaException, TopicPartition
from pydantic import ValidationError

from schemas.delivery import DeliveryReport, DeliveryStatus
from streams import metrics
from streams.deliver.known import KnownOutcomes
from streams.deliver.progress import CommitTracker, Ticket
from streams.deliver.provider import Backoff, HttpProvider, Lanes, Outcome
from streams.deliver.reports import AsyncReports, now_ms
from streams.errors import DeliveryFailed
from streams.kafka.config import group_consumer_config
from streams.metrics import Health
from streams.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long one consume waits for records; the loop goes round at least this often.
CONSUME_SECONDS = 0.1
COMMIT_EVERY_SECONDS = 1.0
# Full this long (a provider down, every send in its retries): pause the partitions.
# Not at once: librdkafka fetches again about a second after a resume.
PAUSE_AFTER_SECONDS = 2.0
# The wait before producing a refused report again, doubling up to the most.
REPORT_RETRY_SECONDS = (0.5, 30.0)


@dataclass(frozen=True)
class DeliverOptions:
    """What `bulkstream deliver` is told on its command line."""

    url: str
    group: str | None = None  # default: `<app_id>-deliver`
    concurrency: int = 64
    attempts: int = 5
    max_in_flight: int | None = None  # default: 4 x concurrency
    timeout: float = 10.0  # one request's whole time
    backoff: float = 0.5
    backoff_max: float = 30.0
    drain_seconds: float = 10.0
    session_timeout: float = 10.0
    progress_seconds: float = 10.0
    provider: str = "http"


@dataclass(frozen=True)
class _Send:
    """What the worker needs of a send to report on it (the rest goes as it came)."""

    message_id: str
    job_id: str
    tenant: str | None


def identify(value: bytes | None) -> _Send | None:
    """The ids of a send event, or None when it cannot be reported on (not a JSON
    object, or its ids missing or too long for a report)."""
    try:
        send = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(send, dict):
        return None
    message_id, job_id, tenant = send.get("messageId"), send.get("jobId"), send.get("tenant")
    if not isinstance(message_id, str) or not isinstance(job_id, str):
        return None
    if not isinstance(tenant, str):
        tenant = None
    try:  # the lengths a report allows
        DeliveryReport(
            message_id=message_id, job_id=job_id, status=DeliveryStatus.SENT, at=0, tenant=tenant
        )
    except ValidationError:
        return None
    return _Send(message_id, job_id, tenant)


class DeliverWorker:
    """One member of the delivery group; `run` returns once it stopped (0) or crashed (1)."""

    def __init__(
        self, settings: Settings, options: DeliverOptions, health: Health | None = None
    ) -> None:
        self.s = settings
        self.o = options
        self.health = health
        self.group = options.group or f"{settings.app_id}-deliver"
        self.bound = options.max_in_flight or 4 * options.concurrency
        self.topic = settings.topic_sends
        # Touched by the event loop (take, finish) and the consumer's thread (commits,
        # rebalances): each use holds the lock, for a few microseconds.
        self.tracker = CommitTracker()
        self.lock = threading.Lock()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.most_in_flight = 0
        self.paused = False
        self.sent = self.failed = self.skipped = self.withheld = 0
        self.failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._kafka = ThreadPoolExecutor(1, thread_name_prefix="deliver-consumer")

    def stop(self) -> None:
        """Stop taking sends (from any thread; also SIGTERM and SIGINT)."""
        loop = self._loop
        if loop is None:
            self._stop.set()  # not running yet: `run` returns at once
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._stop.set)

    # -- the run -----------------------------------------------------------------
    async def run(self, handle_signals: bool = True) -> int:
        self._loop = loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._stop.set)
        consumer = Consumer(self._consumer_config())
        reports = AsyncReports(self.s)
        lanes = Lanes(self.o.concurrency, self.o.timeout)
        backoff = Backoff(self.o.backoff, self.o.backoff_max)
        provider = HttpProvider(lanes, self.o.url, self.o.attempts, backoff)
        known = KnownOutcomes(self.s)
        try:
            await self._call(
                partial(
                    consumer.subscribe,
                    [self.topic],
                    on_assign=self._on_assign,
                    on_revoke=self._on_revoke,
                    on_lost=self._on_lost,
                )
            )
            log.info(
                "deliver: joining group %s on %s, posting to %s", self.group, self.topic, self.o.url
            )
            try:
                await self._take_until_stopped(consumer, provider, reports, known)
            finally:
                await self._drain()
        finally:
            try:
                await self._call(partial(self._commit, consumer))
                await self._call(consumer.close)
            finally:
                self._kafka.shutdown(wait=False)
                await lanes.aclose()
                await known.close()
                left = reports.close()
                if left:
                    log.warning("deliver: %d report(s) unacknowledged at the stop", left)
        self._log_progress()
        log.info("deliver: stopped")
        return 0 if self.failure is None else 1

    def _consumer_config(self) -> dict[str, Any]:
        # The bound on sends in hand does the rest of keeping memory flat.
        return group_consumer_config(self.s, self.group, int(self.o.session_timeout * 1000))

    async def _call(self, fn: Callable[[], T]) -> T:
        """`fn()` on the consumer's thread (every consumer call goes there, one at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self._kafka, fn)

    async def _take_until_stopped(
        self,
        consumer: Consumer,
        provider: HttpProvider,
        reports: AsyncReports,
        known: KnownOutcomes,
    ) -> None:
        commit_at = progress_at = time.monotonic()
        full_since: float | None = None
        while not self._stop.is_set():
            if self.health is not None:
                self.health.beat()
            now = time.monotonic()
            in_flight = len(self.in_flight)
            if in_flight < self.bound:
                full_since = None
                if self.paused and in_flight <= self.bound // 2:
                    self.paused = False
                    await self._call(lambda: consumer.resume(consumer.assignment()))
            elif full_since is None:
                full_since = now
            elif now - full_since >= PAUSE_AFTER_SECONDS:
                self.paused = True  # `_take` pauses the partitions
            if full_since is not None and not self.paused:
                # Full: take nothing until a send finishes (the prefetched wait in librdkafka).
                await asyncio.wait(
                    set(self.in_flight), timeout=CONSUME_SECONDS, return_when=FIRST_COMPLETED
                )
            else:
                room = max(self.bound - in_flight, 1)
                for message, ticket in await self._call(partial(self._take, consumer, room)):
                    delivery = self._deliver(provider, reports, known, message, ticket)
                    task = asyncio.create_task(delivery)
                    self.in_flight.add(task)
                    task.add_done_callback(self.in_flight.discard)
            self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
            now = time.monotonic()
            if now >= commit_at:
                commit_at = now + COMMIT_EVERY_SECONDS
                await self._call(partial(self._commit, consumer))
            if now >= progress_at:
                progress_at = now + self.o.progress_seconds
                self._log_progress()

    def _take(self, consumer: Consumer, room: int) -> list[tuple[Message, Ticket]]:
        """(On the consumer's thread.) Up to `room` sends, each with its ticket; none
        while paused (partitions assigned since the pause are paused here too)."""
        if self.paused:
            consumer.pause(consumer.assignment())
        taken = []
        for message in consumer.consume(room, CONSUME_SECONDS):
            error = message.error()
            if error is not None:
                log.warning("deliver: consumer: %s", error)
                continue
            partition, offset = message.partition(), message.offset()
            assert partition is not None
            assert offset is not None
            with self.lock:
                taken.append((message, self.tracker.take(partition, offset)))
        return taken

    async def _drain(self) -> None:
        """Give the sends in hand `drain_seconds` to finish; abandon the rest."""
        if not self.in_flight:
            return
        log.info("deliver: stopping; %d send(s) in hand", len(self.in_flight))
        _, pending = await asyncio.wait(set(self.in_flight), timeout=self.o.drain_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            log.info("deliver: %d send(s) abandoned uncommitted (read again later)", len(pending))

    # -- one send ------------------------------------------------------------------
    async def _deliver(
        self,
        provider: HttpProvider,
        reports: AsyncReports,
        known: KnownOutcomes,
        message: Message,
        ticket: Ticket,
    ) -> None:
        try:
            value = message.value()
            send = identify(value)
            if send is None:
                # Nobody to report it to: counted, logged, and passed over.
                self.skipped += 1
                log.warning(
                    "deliver: skipped the record at %s/%d:%d (not a send event)",
                    self.topic,
                    ticket.partition,
                    ticket.offset,
                )
            else:
                assert isinstance(value, bytes)
                outcome = await provider.deliver(value, send.message_id)
                if not outcome.delivered and await known.went_out(send.tenant, send.message_id):
                    self._withhold(send, outcome)
                else:
                    await self._report(reports, self._report_of(send, outcome))
                    self._count(outcome)
            with self.lock:
                self.tracker.finish(ticket)
        except asyncio.CancelledError:
            raise  # abandoned at the stop: not finished, so never committed
        except Exception as exc:
            # A bug, not an outcome: stop, leaving the send uncommitted (read again).
            log.exception(
                "deliver: the send at %s/%d:%d", self.topic, ticket.partition, ticket.offset
            )
            self.failure = exc
            self._stop.set()

    def _report_of(self, send: _Send, outcome: Outcome) -> DeliveryReport:
        return DeliveryReport(
            message_id=send.message_id,
            job_id=send.job_id,
            status=DeliveryStatus.SENT if outcome.delivered else DeliveryStatus.FAILED,
            at=now_ms(),
            reason=outcome.reason,
            provider=self.o.provider,
            tenant=send.tenant,
        )

    async def _report(self, reports: AsyncReports, report: DeliveryReport) -> None:
        """Produce the report until the broker acknowledges it."""
        wait, most = REPORT_RETRY_SECONDS
        while True:
            try:
                await reports.send(report)
                return
            except DeliveryFailed as exc:
                log.warning(
                    "deliver: report of %s refused (%s); again in %.1f s",
                    report.message_id,
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, most)

    def _count(self, outcome: Outcome) -> None:
        if outcome.delivered:
            self.sent += 1
            metrics.DELIVER_SENT.inc()
        else:
            self.failed += 1
            metrics.DELIVER_FAILED.labels("final" if outcome.final else "exhausted").inc()

    def _withhold(self, send: _Send, outcome: Outcome) -> None:
        self.withheld += 1
        metrics.DELIVER_WITHHELD.inc()
        log.info(
            "deliver: %s went out before; its give-up (%s) is not reported",
            send.message_id,
            outcome.reason,
        )

    def _log_progress(self) -> None:
        log.info(
            "deliver: %d sent, %d failed, %d withheld, %d skipped; %d in hand%s",
            self.sent,
            self.failed,
            self.withheld,
            self.skipped,
            len(self.in_flight),
            " (paused)" if self.paused else "",
        )

    # -- commits and rebalances (on the consumer's thread) ----------------------------
    def _commit(self, consumer: Consumer, partitions: set[int] | None = None) -> None:
        with self.lock:
            offsets = self.tracker.committable(partitions)
        if not offsets:
            return
        try:
            consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            # Not committed: these sends may be read again (at least once); the next
            # commit tries again.
            log.warning("deliver: commit of %s failed: %s", offsets, exc)
            return
        with self.lock:
            self.tracker.committed(offsets)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = _numbers(partitions)
        with self.lock:
            self.tracker.assign(numbers)
        log.info("deliver %s: partitions assigned %s", self.group, numbers)
        if self.health is not None:
            self.health.ready["deliver"] = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = _numbers(partitions)
        self._commit(consumer, set(numbers))
        with self.lock:
            self.tracker.revoke(numbers)
        log.info("deliver %s: partitions revoked %s", self.group, numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = _numbers(partitions)
        with self.lock:
            self.tracker.revoke(numbers)
        log.warning("deliver %s: partitions lost %s (not committed)", self.group, numbers)


def _numbers(partitions: list[TopicPartition]) -> list[int]:
    return sorted(tp.partition for tp in partitions)


def run_deliver(settings: Settings, options: DeliverOptions) -> int:
    """`bulkstream deliver`: the worker, with /metrics, /healthz and /readyz served
    (ready once it joined its group); until SIGTERM or SIGINT."""
    # httpx logs every request at info: thousands a second here.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    health = Health()
    health.ready["deliver"] = False
    stop_metrics = metrics.serve(settings.metrics_host, settings.metrics_port, health)
    try:
        return asyncio.run(DeliverWorker(settings, options, health).run())
    finally:
        stop_metrics()
