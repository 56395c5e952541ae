"""The one faust app of a worker, built from Settings: its topics and its state table.

The aggregate stage (streams/aggregate/) runs on it (at-least-once, every
state change idempotent), reading `bulk.commands` through its own librdkafka
feed; the fan-out stage (streams/fanout/) is a confluent-kafka transactional
loop that the worker runs beside it as a service.

Every change of faust, mode or aiokafka behaviour is a patch of its own in
streams/runtime/patches/ (each names the upstream issue or the failure it
prevents); here they are put together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from streams.kafka.topics import MAX_MESSAGE_BYTES
from streams.runtime.patches import stale_stores
from streams.runtime.patches.buffer_pause import NoBufferPause
from streams.runtime.patches.changelog_batch import BatchedChangelog
from streams.runtime.patches.durable_commit import (
    CommitAfterDeliveries,
    Deliveries,
    HasDeliveries,
    TrackedChangelog,
    delivered,
    deliveries_of,
)
from streams.runtime.patches.feed_handover import Feed, PauseFeedOnRevoke, StopFeedFirst
from streams.runtime.patches.fetch_wait import ShortFetchWait
from streams.runtime.patches.flow_control import KeepQueuesOnResume
from streams.runtime.patches.key_families import FamilyStore, KeyFamilies
from streams.runtime.patches.prefetch_backoff import ShortPrefetchBackoff
from streams.runtime.patches.read_committed import ReadCommitted
from streams.runtime.patches.read_offsets import ForgetReadOffsetsOnAssign
from streams.runtime.patches.restore_hooks import RestoreHooks
from streams.runtime.patches.stale_acks import RefuseStaleAcks
from streams.runtime.patches.table_readers import BoundedReaders, BoundedReadersStore
from streams.runtime.topics import Topics, declare
from streams.settings import Settings

__all__ = [
    "STATE_OPTIONS",
    "BulkApp",
    "Deliveries",
    "DurableTable",
    "Feed",
    "KeyFamilies",
    "Runtime",
    "create_runtime",
    "delivered",
    "deliveries_of",
]


# Small memtables and caches per partition, so a worker's memory does not
# follow the size of the jobs it holds (RocksDB keeps the rest on disk;
# the index and filter blocks share the block cache: BoundedReaders).
# Files of 8 MiB, not faust's 64: a compaction's transient memory follows
# the size of the files it writes (docs/benchmarks.md, memory). Level 0
# compacted once 8 files wait, not 4: a job's index keys are digests, spread
# over the job's whole key range, so each such compaction rewrites every
# level-1 file of that range (ingest: 24-32 % more users per CPU-second).
STATE_OPTIONS: dict[str, Any] = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 8 * 1024 * 1024,
    "block_cache_size": 8 * 1024 * 1024,
    "block_cache_compressed_size": 1024 * 1024,
    "bloom_filter_size": 10,
    "level_zero_file_num_compaction_trigger": 8,
}


class _ConsumerThread(
    ReadCommitted, ShortFetchWait, ShortPrefetchBackoff, aiokafka_driver.AIOKafkaConsumerThread
):
    pass


class _Consumer(
    PauseFeedOnRevoke,
    ForgetReadOffsetsOnAssign,
    RefuseStaleAcks,
    NoBufferPause,
    CommitAfterDeliveries,
    aiokafka_driver.Consumer,
):
    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(aiokafka_driver.Transport):
    Consumer = _Consumer


class StateStore(FamilyStore, BoundedReadersStore):
    """The state's RocksDB: its keys in column families by kind, its open files
    holding no memory that grows with the data."""


class DurableTable(BoundedReaders, RestoreHooks, BatchedChangelog, TrackedChangelog, faust.Table):  # type: ignore[type-arg]
    """The state table: changelog records acknowledged before any commit, restore
    hooks to rebuild what is kept locally only, many keys written at once
    (`set_many`), and a `StateStore`."""

    store_class = StateStore

    def __init__(self, *args: Any, key_families: KeyFamilies | None = None, **kwargs: Any):
        self.key_families = key_families  # read by its store, which faust makes lazily
        super().__init__(*args, **kwargs)


class BulkApp(StopFeedFirst, HasDeliveries, faust.App):
    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return KeepQueuesOnResume(loop=self.loop)


@dataclass(frozen=True)
class Runtime:
    """A worker's faust app, its topic objects and its state table."""

    app: BulkApp
    topics: Topics
    state: DurableTable


def create_runtime(settings: Settings, key_families: KeyFamilies | None = None) -> Runtime:
    """The worker's faust app and state table, whose keys live in `key_families` (the
    aggregate's; none, one family as in faust, for the runtime's own tests)."""
    # Before faust opens any store: one ahead of its changelog would stop it, and one
    # made without the families would hide its keys from them.
    stale_stores.discard_stale_stores(settings, key_families)
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
        # A batch of a partition's changelog records a request, up to 1 MiB: faust's
        # 16 KiB took a few of the delivery fold's blocks (3 to 6 KB each) a round trip
        # to the broker, and the fold's changelog fell behind it.
        producer_max_batch_size=1024 * 1024,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        producer_compression_type=(
            None if settings.state_compression == "none" else settings.state_compression
        ),
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
    topics = declare(app, settings)
    state = app.tables.add(
        DurableTable(
            app,
            name="state",
            beacon=app.tables.beacon,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            key_families=key_families,
            options=STATE_OPTIONS,
        )
    )
    return Runtime(app=app, topics=topics, state=cast(DurableTable, state))
