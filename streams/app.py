"""Builds the one faust app of a worker from Settings: topics, the state table, agents.

The aggregate stage is faust (at-least-once, every state change idempotent),
reading `bulk.commands` through its own librdkafka feed (streams/command_feed.py);
the fan-out stage is a confluent-kafka transactional loop (streams/fanout.py)
that the worker runs beside it as a service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, cast

import faust
import redis.asyncio as aioredis
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types.tuples import ack_lock
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.settings import Settings
from streams.topics import MAX_MESSAGE_BYTES, Topics, declare
from streams.views import Views

# How long the broker may hold a fetch that found nothing new (faust fixes 1.5 s).
# aiokafka has one fetch in flight per broker and leaves out of it a partition
# whose fetched records are not all consumed yet; so while the agent works
# through a batch of commands, the fetch in flight may name only idle
# partitions (progress, control), and the commands partition cannot be fetched
# again until the broker gives that one up. Under a steady ingest, each such
# wait was a stall: up to 1.5 s of an idle agent with commands waiting.
FETCH_MAX_WAIT_MS = 100


class _ReadCommittedConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """faust reads read_committed only in its own exactly_once mode, which we do not use
    (its open bugs); progress comes from Kafka transactions, so aborted records must
    stay invisible to the aggregate. The fetch wait is ours too (FETCH_MAX_WAIT_MS)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # faust pauses a partition whose stream buffer is nearly full and resumes it
    # when the buffer drains, but it resets its record of paused partitions on
    # a rebalance, so a pause taken just before one can outlive it. Without the
    # pause, a full buffer simply blocks delivery until the agent takes the
    # next event: the same bound on memory, with nothing to forget.
    def on_buffer_full(self, tp: Any) -> None:
        pass

    def on_buffer_drop(self, tp: Any) -> None:
        pass

    # A stream skips (and then acks) a message fetched before a rebalance, or
    # delivered while flow is suspended for one; the ack lets the next commit
    # pass a message nobody processed. Such a message is refetched after the
    # rebalance (faust seeks every partition to its committed offset), so it
    # must stay unacked. A message an agent finished during the rebalance is
    # likewise left to be redone: every agent here is replay-safe.
    def ack(self, message: Any) -> bool:
        app = self.app
        if message.generation_id != app.consumer_generation_id or not app.flow_control.is_active():
            with ack_lock:
                message.acked = True
                self._unacked_messages.discard(message)
            return False
        return bool(super().ack(message))

    # The commands feed reads outside faust's streams: it finishes its command and
    # records its position before faust revokes (and closes) the partitions' state.
    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        feed = cast(BulkApp, self.app).feed
        if feed is not None:
            await feed.pause()
        await super().on_partitions_revoked(revoked)

    # Durability before commit: the offsets about to be committed are of events
    # already acked, whose records (changelog, results, DLQ) were sent before their ack.
    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        await deliveries_of(self.app).settled()
        return bool(await super()._commit_offsets(offsets, start_new_transaction))


class _FlowControl(FlowControlEvent):
    """faust's flow control, except that resuming does not empty the stream queues.

    faust resumes flow at the end of a recovery, after it has already resumed
    fetching the new partitions and moved its read offsets past what it
    fetched; emptying the queues then drops those messages for good (a lost
    command, or a stalled partition). Stale messages are already dropped when
    partitions are revoked (`flow_control.clear()`), so nothing is lost by
    keeping them here."""

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()


class _Transport(aiokafka_driver.Transport):
    Consumer = _Consumer

    # Every topic faust creates (the state changelog, the assignor's leader topic)
    # gets the configuration all of bulkstream's topics carry (min.insync.replicas);
    # its replication factor is the app's `topic_replication_factor`.
    async def _create_topic(
        self, owner: Any, client: Any, topic: str, partitions: int, replication: int, **kwargs: Any
    ) -> None:
        common = cast(BulkApp, self.app).topic_config
        kwargs["config"] = {**common, **(kwargs.get("config") or {})}
        await super()._create_topic(owner, client, topic, partitions, replication, **kwargs)


class Deliveries:
    """Records sent but not yet acknowledged by the broker: changelog records,
    command results, job events, dead letters.

    faust hands records to a buffer and, before committing offsets, "flushes"
    it with a 0.1 s patience that gives up under load; records can then be
    lost while the offset of the event that made them is committed. The
    consumer here awaits every record tracked so far before it commits any
    offset (`_Consumer._commit_offsets`), so a committed offset always means
    what its event sent is in Kafka. An agent therefore never waits for its
    own sends: the next event goes on while they travel.
    """

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[Any]] = set()

    def track(self, future: asyncio.Future[Any]) -> None:
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def send(self, sending: Awaitable[asyncio.Future[Any]]) -> None:
        """Queue a faust send (`topic.send(...)`) to be acknowledged before the next commit."""
        self.track(await sending)

    async def settled(self) -> None:
        """Every record tracked until now is in Kafka (raises if one failed)."""
        if self._pending:
            await asyncio.gather(*list(self._pending))


class DurableTable(faust.Table):  # type: ignore[type-arg]
    """A faust table whose changelog records are acknowledged before any commit
    (see `Deliveries`), and that can rebuild local-only data on restore."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # Called with every batch of changelog events restored into RocksDB, after it
        # is applied: to rebuild what the state keeps locally without a changelog.
        self.restore_hooks: list[Callable[[list[Any]], None]] = []

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        for hook in self.restore_hooks:
            hook(events)

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        deliveries_of(self.app).track(future)
        return future


class Feed(Protocol):
    """Input the app reads outside faust's streams (`streams/command_feed.py`)."""

    async def pause(self) -> None:
        """Finish the work in hand and hold until the next assignment is restored."""

    async def stop(self) -> None:
        """Finish the work in hand and read no more."""

    def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records not yet applied) of each partition read."""


class BulkApp(faust.App):
    feed: Feed | None = None
    # Configuration of every topic faust creates for this app (Settings.topic_config).
    topic_config: Mapping[str, str] = MappingProxyType({})

    async def on_stop(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        await super().on_stop()

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return _FlowControl(loop=self.loop)

    @cached_property
    def deliveries(self) -> Deliveries:
        return Deliveries()


@dataclass(frozen=True)
class Pipeline:
    """Everything the agents share: settings, the app, its topics, state and views."""

    settings: Settings
    app: Any
    topics: Topics
    state: Any
    views: Views


def create_app(settings: Settings) -> Pipeline:
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",")]
    datadir = settings.data_dir / settings.worker_id / "faust"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = BulkApp(
        settings.app_id,
        broker=brokers,
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_max_poll_interval=900.0,
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=2 * 1024 * 1024,
        table_standby_replicas=0,
        web_enabled=False,
        stream_processing_timeout=900.0,
        # A killed worker's partitions move on after 10 s, not faust's default 60 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        # Bounded memory: prefetch a few commands, not the whole topic.
        stream_buffer_maxsize=32,
    )
    app.topic_config = settings.topic_config()
    topics = declare(app, settings)
    state = app.tables.add(
        DurableTable(
            app,
            name="state",
            beacon=app.tables.beacon,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            # Small memtables and caches per partition, so a worker's memory does not
            # follow the size of the jobs it holds (RocksDB keeps the rest on disk).
            options={
                "write_buffer_size": 4 * 1024 * 1024,
                "max_write_buffer_number": 2,
                "block_cache_size": 8 * 1024 * 1024,
                "block_cache_compressed_size": 1024 * 1024,
            },
        )
    )
    views = Views(
        patient_redis(settings.redis_url), settings.redis_prefix, settings.retention_seconds
    )
    pipeline = Pipeline(settings=settings, app=app, topics=topics, state=state, views=views)

    from streams import aggregate, control, progress

    aggregate.register(pipeline)
    progress.register(pipeline)
    control.register(pipeline)
    return pipeline


def patient_redis(url: str) -> aioredis.Redis:
    """The worker's Redis: an outage (down, restarting, paused) is waited out, never raised.

    Views are derived, so an agent may as well wait for Redis: its event stays
    unacked and nothing is lost. A client that raised instead would take the
    worker down. Time-outs turn a paused server into retries too."""
    return aioredis.from_url(
        url,
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
        retry=Retry(
            ExponentialBackoff(cap=2.0, base=0.1),
            retries=-1,  # for ever
            supported_errors=(RedisConnectionError, RedisTimeoutError, BusyLoadingError),
        ),
    )


def deliveries_of(app: Any) -> Deliveries:
    """The `Deliveries` of a bulkstream app (faust types its components' app as AppT)."""
    return cast(BulkApp, app).deliveries


async def delivered(sending: Awaitable[Any]) -> Any:
    """Send with faust and wait until the broker acknowledged the record.

    For a send outside any event (a timer's), or one that must land before
    the event goes on; an event's own records go through `Deliveries.send`."""
    return await (await sending)


def held_partitions(pipeline: Pipeline) -> frozenset[int]:
    """The partitions of the state this worker holds (faust assigns them, with
    the same partitions of `bulk.progress` and `bulk.control`)."""
    changelog = pipeline.state.changelog_topic.get_topic_name()
    return frozenset(
        tp.partition for tp in pipeline.app.assignor.assigned_actives() if tp.topic == changelog
    )


def partition_db(state: Any, partition: int) -> Any:
    """The RocksDB (rocksdict) store of one partition of a faust table."""
    return state.data._db_for_partition(partition)
