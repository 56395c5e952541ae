"""The webhooks stage: job and message events in, signed POSTs to the tenants' endpoints
out, at least once (Standard Webhooks).

One asyncio loop (its own thread in `bulkstream worker`, the main one with
`--stage webhooks`) runs:

* the endpoints, in memory (`Registry`), read from the compacted topic
  `bulk.webhooks` from its start (`SubscriptionFeed`), then followed; before
  it takes events written at some time, it reads the topic to its end as of
  that time, so an endpoint created before an event always meets it. It keeps
  the Redis view of the endpoints current (and rebuilds it when its marker
  is gone);
* one consumer of the group `<app id>-webhooks` (read_committed) on
  `bulk.job-events`, `bulk.message-events` and `bulk.webhooks.retry`. An
  event makes one message per endpoint of its tenant that is enabled, takes
  its type and existed when the event was written, each with a
  deterministic `webhook-id` (`streams.webhooks.events`), offered to the
  endpoint's bounded queue (`streams.webhooks.endpoints`);
* while no endpoint takes message events, `bulk.message-events` paused and
  moved to its end once a second, unread (`streams.webhooks.skip`);
* the outcome of each attempt: a 2xx is delivered; a 410 disables the
  endpoint (a new record on `bulk.webhooks`, `disabled: true`; nothing more
  is sent to it); anything else is written to the retry topic's tier of its
  next delay (`streams.webhooks.backoff`), or past the horizon to
  `bulk.webhooks.dlq` with its reason (`streams.webhooks.retries`).

Crashes. Offsets are committed (every second, and when partitions are
revoked) only below the oldest record with a message not yet settled
(`streams.webhooks.offsets`); a message settles once delivered, dropped,
or written to the retry or dead-letter topic and acknowledged. So whatever
waits for a later attempt is on Kafka, not in memory, and a dispatcher that
dies re-reads only what it had in hand, sending it again under the same
webhook ids: the records since the oldest message still queued for an
endpoint (at worst a slow endpoint's queue, `webhook_queue_size` /
`webhook_concurrency` x `webhook_timeout_seconds`: 250 s by default),
never the retry horizon's worth.

Memory. Each endpoint holds at most `webhook_queue_size` messages and
`webhook_concurrency` requests; a message its full queue refuses is parked
on the retry topic at once, so a slow endpoint never holds the consumer up.
Records are taken only while fewer than `webhook_max_in_flight` messages
are in memory (a record makes one per endpoint of its tenant, so it may go
over by one record's endpoints); above it the consumer's partitions are
paused until some settle. librdkafka's prefetch is capped (4 MB); an answer
is read up to 16 KB; the endpoints in memory are those of the topic.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import orjson
from confluent_kafka import Consumer, Message
from confluent_kafka.cimpl import KafkaError, KafkaException, TopicPartition
from pydantic import ValidationError

from schemas.webhooks import matches
from streams import metrics
from streams.errors import DeliveryFailed
from streams.kafka.config import group_consumer_config, producer_config
from streams.kafka.producer import AsyncProducer
from streams.settings import Settings
from streams.views import patient_redis
from streams.webhooks import backoff, retries
from streams.webhooks.endpoints import Attempt, Delivery, Endpoint, Outcome, tls_context
from streams.webhooks.events import (
    Message as WebhookMessage,
)
from streams.webhooks.events import (
    NotAnEvent,
    job_message,
    message_message,
    tenant_of,
    webhook_id,
)
from streams.webhooks.offsets import PartitionOffsets
from streams.webhooks.retries import DeadLetter, RetryRecord, RetryTopic
from streams.webhooks.skip import Skipper
from streams.webhooks.subscriptions import (
    Record,
    Registry,
    Subscription,
    SubscriptionFeed,
    SubscriptionLog,
    SubscriptionView,
    encode,
    record_key,
)
from streams.webhooks.targets import Resolver

log = logging.getLogger(__name__)

BATCH = 500  # records taken per round, at most
IDLE_SECONDS = 0.02  # the wait after a round that found nothing
COMMIT_SECONDS = 1.0
REGISTRY_SECONDS = 30.0  # reading bulk.webhooks to its end may take this long, at most
VIEW_CHECK_SECONDS = 10.0  # how often the view's marker is looked for
VIEW_CHANGES = 10_000  # view writes waiting, at most (more: the view is rebuilt whole)
WRITE_GRACE_SECONDS = 5.0  # at stop, for the retry records under way to be acknowledged

Key = tuple[str, int]  # (topic, partition)
# An endpoint's latest record for the view (None: deleted): tenant, webhook id, offset.
ViewChange = tuple[Subscription | None, str, str, int]


class Dispatcher:
    """One member of the webhooks group; `run` blocks until `stop` is called."""

    def __init__(self, settings: Settings, on_joined: Callable[[], None] | None = None) -> None:
        self.s = settings
        self.on_joined = on_joined
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Stop from any thread (a signal handler included)."""
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                asyncio.run(Session(self.s, self.stopping, self.on_joined).run())
            except Exception:
                # A new session reads its endpoints and positions again: nothing is lost.
                log.exception("webhooks dispatcher failed; starting again")
                self.stopping.wait(1.0)


class Session:
    """One run of the dispatcher: its clients, its endpoints, its partitions."""

    def __init__(
        self,
        settings: Settings,
        stopping: threading.Event,
        on_joined: Callable[[], None] | None,
    ) -> None:
        self.s = settings
        self.stopping = stopping
        self.on_joined = on_joined
        self.random = random.Random()
        self.registry = Registry()
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        self.disabling: set[tuple[str, str]] = set()
        self.offsets: dict[Key, PartitionOffsets] = {}
        self.committed: dict[Key, int] = {}
        self.held: dict[Key, float] = {}  # retry tiers paused until their head is due
        self.paused: set[Key] = set()  # paused, or may be (just assigned): resumed unless wanted
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.tiers = backoff.TIERS
        self.view_stale = True

    # -- the loop ------------------------------------------------------------
    async def run(self) -> None:
        s = self.s
        self.producer = AsyncProducer(producer_config(s), name="webhooks")
        self.retry_topic = RetryTopic(s, self.producer, self.stopping.is_set)
        self.log = SubscriptionLog(s, self.producer)
        self.redis = patient_redis(s.redis_url)
        self.view = SubscriptionView(self.redis, s.redis_prefix)
        self.view_changes: asyncio.Queue[ViewChange] = asyncio.Queue(VIEW_CHANGES)
        self.resolver = Resolver(s.webhooks_allow_private)
        self.tls = tls_context()
        feed = SubscriptionFeed(s)
        self.skipper = Skipper(s.topic_message_events, s.kafka_bootstrap_servers)
        consumer: Consumer | None = None
        keeper: asyncio.Task[None] | None = None
        try:
            self._apply(await asyncio.to_thread(feed.read_to_end, REGISTRY_SECONDS))
            log.info("webhooks: %d endpoint(s) read from %s", len(self.registry), feed.topic)
            self.tiers = await asyncio.to_thread(self._retry_tiers)
            keeper = asyncio.create_task(self._keep_view(), name="webhooks-view")
            consumer = self._consumer()
            if self.on_joined is not None:
                self.on_joined()
            committed_at = time.monotonic()
            while not self.stopping.is_set():
                await self._round(consumer, feed)
                if time.monotonic() - committed_at >= COMMIT_SECONDS:
                    self._commit(consumer, asynchronous=True)
                    committed_at = time.monotonic()
        finally:
            if keeper is not None:
                keeper.cancel()
            await self._close(consumer, feed)

    def _consumer(self) -> Consumer:
        s = self.s
        consumer = Consumer(group_consumer_config(s, f"{s.app_id}-webhooks", 10_000))
        consumer.subscribe(
            [s.topic_job_events, s.topic_message_events, s.topic_webhooks_retry],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )
        log.info("webhooks %s joined group %s-webhooks", s.worker_id, s.app_id)
        return consumer

    def _retry_tiers(self) -> int:
        """The retry topic's partitions: its delay tiers (fewer, on a topic made with fewer,
        the last tier then taking the longer delays)."""
        topic = self.s.topic_webhooks_retry
        partitions = len(self.producer.list_topics(30.0).topics[topic].partitions)
        if partitions < backoff.TIERS:
            log.warning(
                "%s has %d partitions, not %d: retries wait at most %g s apart",
                topic,
                partitions,
                backoff.TIERS,
                backoff.tier_delay(partitions - 1, self.s.webhook_retry_first_seconds),
            )
        return max(min(partitions, backoff.TIERS), 1)

    async def _round(self, consumer: Consumer, feed: SubscriptionFeed) -> None:
        self._apply(feed.poll())
        await self._skip_unwanted(consumer, feed)
        self._pauses(consumer)
        # No more records than there is room for (each makes a message per endpoint).
        room = self.s.webhook_max_in_flight - self.in_flight
        messages: list[Message] = consumer.consume(min(max(room, 1), BATCH), 0)
        if not messages:
            await asyncio.sleep(IDLE_SECONDS)
            return
        await self._registry_as_of(feed, messages)
        for message in messages:
            self._take(consumer, message)
        await asyncio.sleep(0)  # the endpoints' turn

    async def _registry_as_of(self, feed: SubscriptionFeed, messages: list[Message]) -> None:
        """Read `bulk.webhooks` to its end if an event came after the last such read: an
        endpoint created (acknowledged) before the event was written is then in hand."""
        retry_topic = self.s.topic_webhooks_retry
        written = max(
            (m.timestamp()[1] for m in messages if m.topic() != retry_topic),
            default=0,
        )
        if written / 1000 <= feed.fresh_at:
            return
        try:
            self._apply(await asyncio.to_thread(feed.read_to_end, REGISTRY_SECONDS))
        except KafkaException as exc:
            # Events go on with the endpoints in hand, rather than wait for the broker.
            log.warning("webhooks: could not read %s to its end: %s", feed.topic, exc)
            feed.fresh_at = time.time()

    async def _skip_unwanted(self, consumer: Consumer, feed: SubscriptionFeed) -> None:
        """Move the message-events partitions to their end while no endpoint takes
        message events (`streams.webhooks.skip`)."""
        keys = self.skipper.due_keys(self.offsets)
        if not keys or self.registry.takes_messages():
            return
        try:
            ends = await asyncio.to_thread(self.skipper.ends, keys)
            # Every endpoint acknowledged before the ends were asked is in hand after this.
            self._apply(await asyncio.to_thread(feed.read_to_end, REGISTRY_SECONDS))
        except KafkaException as exc:
            log.warning("webhooks: message events not passed over this time: %s", exc)
            return
        if not self.registry.takes_messages():
            metrics.WEBHOOK_EVENTS_SKIPPED.inc(self.skipper.skip(consumer, self.offsets, ends))

    # -- endpoints -------------------------------------------------------------
    def _apply(self, records: list[Record]) -> None:
        """Take records of `bulk.webhooks` into the registry, the view and the endpoints."""
        for key, value, offset in records:
            try:
                changed = self.registry.apply(key, value, offset)
            except (ValueError, ValidationError) as exc:
                log.warning("webhooks: record at offset %d skipped: %s", offset, exc)
                continue
            if changed is None:
                continue
            tenant, webhook = changed
            entry = self.registry.get(tenant, webhook)
            subscription = entry.subscription if entry is not None else None
            self._view_change(subscription, tenant, webhook, offset)
            endpoint = self.endpoints.get(changed)
            if endpoint is not None:
                endpoint.subscription = subscription
                if not endpoint.active:
                    # Its queue drains as dropped messages; then it goes.
                    self._spawn(self._retire(changed, endpoint))
        if records and self.skipper.skipping and self.registry.takes_messages():
            self.skipper.skipping.clear()  # read again from the next round

    def _endpoint(self, subscription: Subscription) -> Endpoint:
        key = (subscription.tenant, subscription.id)
        endpoint = self.endpoints.get(key)
        if endpoint is None:
            endpoint = Endpoint(subscription, self.s, self.resolver, self.tls, self._handle)
            self.endpoints[key] = endpoint
        return endpoint

    async def _retire(self, key: tuple[str, str], endpoint: Endpoint) -> None:
        await endpoint.queue.join()
        if self.endpoints.get(key) is endpoint and not endpoint.active:
            del self.endpoints[key]
            await endpoint.close(0)

    async def _disable(self, tenant: str, webhook: str) -> None:
        """The endpoint answered 410 Gone: a record saying it is disabled, then nothing
        more is sent to it."""
        key = (tenant, webhook)
        entry = self.registry.get(tenant, webhook)
        if entry is None or entry.subscription.disabled or key in self.disabling:
            return
        self.disabling.add(key)
        try:
            disabled = entry.subscription.model_copy(update={"disabled": True})
            while True:
                try:
                    offset = await self.log.put(disabled)
                    break
                except DeliveryFailed as exc:
                    if self.stopping.is_set():
                        raise
                    log.warning("webhooks: could not write the disabling of %s: %s", webhook, exc)
                    await asyncio.sleep(1.0)
            self._apply([(record_key(tenant, webhook), encode(disabled), offset)])
        finally:
            self.disabling.discard(key)
        metrics.WEBHOOK_DISABLED.inc()
        log.warning("webhook %s of tenant %s answered 410 Gone: disabled", webhook, tenant)

    # -- taking records --------------------------------------------------------
    def _take(self, consumer: Consumer, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("webhooks consumer: %s", error)
            return
        topic, partition, _ = _where(message)
        key = (topic, partition)
        if key in self.held:
            return  # read again from its held record once that is due
        tracker = self.offsets.get(key)
        if tracker is None:
            return  # revoked meanwhile
        if topic == self.s.topic_webhooks_retry:
            self._take_retry(consumer, message, tracker)
        else:
            self._take_event(message, tracker)

    def _take_event(self, message: Message, tracker: PartitionOffsets) -> None:
        topic, partition, offset = _where(message)
        if not self.registry:  # no endpoint anywhere (as of the event): nothing to read
            tracker.take(offset, 0)
            return
        chosen: list[Subscription] = []
        webhook: WebhookMessage | None = None
        try:
            raw: Any = orjson.loads(message.value() or b"null")
            tenant = tenant_of(raw)
            enabled = [s for s in self.registry.of(tenant) if not s.disabled] if tenant else []
            if enabled:
                is_job = topic == self.s.topic_job_events
                webhook = job_message(raw) if is_job else message_message(raw)
                written = message.timestamp()[1]
                if written <= 0:
                    written = int(time.time() * 1000)
                if webhook is not None:
                    chosen = [
                        s
                        for s in enabled
                        if matches(s.events, webhook.type) and written >= s.created_at
                    ]
        except (orjson.JSONDecodeError, NotAnEvent) as exc:
            log.warning("webhooks: %s/%d@%d skipped: %s", topic, partition, offset, exc)
            chosen = []
        tracker.take(offset, len(chosen))
        now = time.time()
        for subscription in chosen:
            assert webhook is not None
            delivery = Delivery(
                webhook_id=webhook_id(subscription.id, webhook, topic, partition, offset),
                subscription_id=subscription.id,
                tenant=subscription.tenant,
                type=webhook.type,
                body=webhook.body,
                failures=0,
                first_at=now,
                tier=-1,
                last_error=None,
                on_settled=partial(self._settled, tracker, offset),
            )
            self._dispatch(subscription, delivery)

    def _take_retry(self, consumer: Consumer, message: Message, tracker: PartitionOffsets) -> None:
        _, partition, offset = _where(message)
        try:
            record = retries.decode(message.value())
        except ValueError as exc:
            log.warning("webhooks: retry record %d@%d skipped: %s", partition, offset, exc)
            tracker.take(offset, 0)
            return
        if record.due > time.time():
            self._hold(consumer, message, record.due)
            return
        entry = self.registry.get(record.tenant, record.subscription_id)
        if entry is None or entry.subscription.disabled:
            tracker.take(offset, 0)  # deleted or disabled since: nothing more is sent to it
            return
        tracker.take(offset, 1)
        delivery = Delivery(
            webhook_id=record.webhook_id,
            subscription_id=record.subscription_id,
            tenant=record.tenant,
            type=record.type,
            body=record.body.encode(),
            failures=record.failures,
            first_at=record.first_at,
            tier=partition,
            last_error=record.last_error,
            on_settled=partial(self._settled, tracker, offset),
        )
        self._dispatch(entry.subscription, delivery)

    def _hold(self, consumer: Consumer, message: Message, due: float) -> None:
        """A tier's head is not due yet: pause the tier there until it is."""
        topic, partition, offset = _where(message)
        key = (topic, partition)
        head = TopicPartition(topic, partition, offset)
        consumer.pause([head])
        self.paused.add(key)
        consumer.seek(head)
        self.held[key] = due
        asyncio.get_running_loop().call_later(max(due - time.time(), 0.0), self._release, key, due)

    def _release(self, key: Key, due: float) -> None:
        if self.held.get(key) == due:
            del self.held[key]  # the next round resumes it

    def _pauses(self, consumer: Consumer) -> None:
        """Paused: the held tiers, the message events no endpoint takes, and every
        partition while too much is in memory."""
        metrics.WEBHOOK_IN_FLIGHT.set(self.in_flight)
        wanted = set(self.held) | self.skipper.skipping
        if self.in_flight >= self.s.webhook_max_in_flight:
            wanted |= set(self.offsets)
        if wanted - self.paused:
            consumer.pause([TopicPartition(t, p) for t, p in wanted - self.paused])
        if self.paused - wanted:
            consumer.resume([TopicPartition(t, p) for t, p in self.paused - wanted])
        self.paused = wanted

    # -- messages ------------------------------------------------------------------
    def _dispatch(self, subscription: Subscription, delivery: Delivery) -> None:
        self.in_flight += 1
        if not self._endpoint(subscription).offer(delivery):
            # Its queue is full: the message waits on the retry topic instead of here.
            self._spawn(self._overflow(delivery))

    def _settled(self, tracker: PartitionOffsets, offset: int) -> None:
        tracker.settle(offset)
        self.in_flight -= 1

    async def _handle(self, delivery: Delivery, attempt: Attempt) -> None:
        """What an attempt came to (called by the endpoint's worker)."""
        outcome = attempt.outcome
        if outcome is not Outcome.DROPPED:
            metrics.WEBHOOK_ATTEMPTS.labels(outcome.value).inc()
        if outcome is Outcome.DELIVERED:
            metrics.WEBHOOK_DELIVERIES.inc()
            metrics.WEBHOOK_DELIVERY_SECONDS.observe(max(time.time() - delivery.first_at, 0.0))
        elif outcome is Outcome.GONE:
            await self._disable(delivery.tenant, delivery.subscription_id)
        elif outcome is not Outcome.DROPPED:
            await self._retry(delivery, delivery.failures + 1, attempt.error or outcome.value)
        delivery.settle()

    async def _retry(self, delivery: Delivery, failures: int, error: str) -> None:
        s = self.s
        tier = backoff.tier(failures, self.tiers)
        due = backoff.due(tier, time.time(), s.webhook_retry_first_seconds, self.random.random())
        if not backoff.within(due, delivery.first_at, s.webhook_retry_horizon_seconds):
            reason = (
                f"gave up after {failures} attempt(s) in "
                f"{s.webhook_retry_horizon_seconds:g} s; the last: {error}"
            )
            await self._dead_letter(delivery, failures, reason)
            return
        await self._park(delivery, failures, tier, due, error)
        metrics.WEBHOOK_PARKED.labels("retry").inc()

    async def _overflow(self, delivery: Delivery) -> None:
        """Park a message its endpoint's full queue refused, in the tier after the one it
        came from (a fresh event: the first), so that the messages of an endpoint that
        stays busy come back less and less often; past the horizon, dead-letter it."""
        s = self.s
        tier = min(delivery.tier + 1, self.tiers - 1)
        due = backoff.due(tier, time.time(), s.webhook_retry_first_seconds, self.random.random())
        if backoff.within(due, delivery.first_at, s.webhook_retry_horizon_seconds):
            error = delivery.last_error or "the endpoint's queue was full"
            await self._park(delivery, delivery.failures, tier, due, error)
            metrics.WEBHOOK_PARKED.labels("overflow").inc()
        else:
            reason = (
                f"its endpoint's queue stayed full past {s.webhook_retry_horizon_seconds:g} s "
                f"after {delivery.failures} attempt(s); the last error: {delivery.last_error}"
            )
            await self._dead_letter(delivery, delivery.failures, reason)
        delivery.settle()

    async def _park(
        self, delivery: Delivery, failures: int, tier: int, due: float, error: str
    ) -> None:
        record = RetryRecord(
            webhook_id=delivery.webhook_id,
            subscription_id=delivery.subscription_id,
            tenant=delivery.tenant,
            type=delivery.type,
            body=delivery.body.decode(),
            failures=failures,
            first_at=delivery.first_at,
            due=due,
            last_error=error[: retries.MAX_ERROR],
        )
        await self.retry_topic.park(record, tier)

    async def _dead_letter(self, delivery: Delivery, failures: int, reason: str) -> None:
        entry = self.registry.get(delivery.tenant, delivery.subscription_id)
        letter = DeadLetter(
            webhook_id=delivery.webhook_id,
            subscription_id=delivery.subscription_id,
            tenant=delivery.tenant,
            url=entry.subscription.url if entry is not None else "",
            type=delivery.type,
            body=delivery.body.decode(),
            failures=failures,
            first_at=delivery.first_at,
            dead_at=time.time(),
            reason=reason[: retries.MAX_ERROR],
        )
        await self.retry_topic.dead_letter(letter)
        metrics.WEBHOOK_DEAD_LETTERS.inc()
        log.warning(
            "webhook %s to %s of tenant %s dead-lettered: %s",
            delivery.webhook_id,
            delivery.subscription_id,
            delivery.tenant,
            reason,
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Left unsettled: a restart re-reads its source and tries again.
            log.error("webhooks: %s failed", task.get_name(), exc_info=task.exception())

    # -- offsets and partitions ------------------------------------------------
    def _commit(
        self, consumer: Consumer, asynchronous: bool, only: list[TopicPartition] | None = None
    ) -> None:
        keys = self.offsets if only is None else [(tp.topic, tp.partition) for tp in only]
        offsets = []
        for key in keys:
            tracker = self.offsets.get(key)
            position = tracker.committable() if tracker is not None else None
            if position is not None and position > self.committed.get(key, -1):
                offsets.append(TopicPartition(key[0], key[1], position))
                self.committed[key] = position
        if not offsets:
            return
        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("webhooks: commit failed (%s); the next one makes up for it", exc)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.offsets[key] = PartitionOffsets()
            self.committed.pop(key, None)
            self.held.pop(key, None)
            # librdkafka keeps a partition paused through a rebalance that gives it back
            # to this member (a held retry tier would then never be read again): counted
            # as paused, so the next round resumes it unless it is still wanted paused.
            self.paused.add(key)
            self.skipper.skipping.discard(key)
        log.info("webhooks %s: partitions assigned %s", self.s.worker_id, _names(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit(consumer, asynchronous=False, only=partitions)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.offsets.pop(key, None)
            self.committed.pop(key, None)
            self.held.pop(key, None)
            self.paused.discard(key)
            self.skipper.skipping.discard(key)
        log.info("webhooks %s: partitions revoked %s", self.s.worker_id, _names(partitions))

    # -- the view ----------------------------------------------------------------
    def _view_change(
        self, subscription: Subscription | None, tenant: str, webhook: str, offset: int
    ) -> None:
        try:
            self.view_changes.put_nowait((subscription, tenant, webhook, offset))
        except asyncio.QueueFull:
            self.view_stale = True  # Redis is behind: rewrite it whole once it is back

    async def _keep_view(self) -> None:
        """Write the endpoints' changes to the Redis view; rewrite it whole at start, and
        whenever its marker is gone (Redis lost it) or changes were dropped."""
        while True:
            try:
                if self.view_stale:
                    self.view_stale = False
                    for entry in self.registry.entries():
                        await self.view.put(entry.subscription, entry.offset)
                    await self.view.mark_whole()
                try:
                    async with asyncio.timeout(VIEW_CHECK_SECONDS):
                        subscription, tenant, webhook, offset = await self.view_changes.get()
                except TimeoutError:
                    self.view_stale = not await self.view.whole()
                    continue
                if subscription is None:
                    await self.view.delete(tenant, webhook, offset)
                else:
                    await self.view.put(subscription, offset)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhooks: writing the view failed (%s); rewriting it", exc)
                self.view_stale = True
                await asyncio.sleep(1.0)

    # -- stopping ------------------------------------------------------------------
    async def _close(self, consumer: Consumer | None, feed: SubscriptionFeed) -> None:
        """Let the attempts under way end and their outcomes be written, commit what
        settled, and close; what did not settle is read again by the next owner."""
        grace = self.s.webhook_timeout_seconds + 2.0
        await asyncio.gather(*(e.close(grace) for e in self.endpoints.values()))
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=WRITE_GRACE_SECONDS)
            for task in late:
                task.cancel()
        if consumer is not None:
            self._commit(consumer, asynchronous=False)
            consumer.close()
        feed.close()
        self.skipper.close()
        await asyncio.to_thread(self.producer.close, 10.0)
        await self.redis.aclose()


def _where(message: Message) -> tuple[str, int, int]:
    """A consumed record's topic, partition and offset."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None
    assert partition is not None
    assert offset is not None
    return topic, partition, offset


def _names(partitions: list[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)
