"""The aggregate's input: `bulk.commands` read through librdkafka, one command at
a time, into the stage (`streams.aggregate.stage`); `bulk.delivery-status` the
same way, in batches, into the delivery fold (`streams.aggregate.delivery`).

Not through faust's own consumer (aiokafka), which reads records in Python:
a large command is copied several times and checksummed under the GIL, and
the event loop applying the good commands pays for it (docs/architecture.md).
librdkafka fetches on its own threads without the GIL; Python sees each value
once.

The feed keeps the guarantees of a faust agent on its own:

* *Partitions.* A worker reads partition p of `bulk.commands` only while it
  holds partition p of the state (faust assigns the state's changelog,
  `bulk.progress` and `bulk.control` co-partitioned), and only once that
  partition's state is restored. Before faust revokes partitions or stops,
  it `pause`s the feed (`streams.runtime`): the command being applied ends,
  and nothing more is read until the next assignment is restored.
* *Position.* The offset of the last command applied to a partition is kept
  in the state itself (`cursor_key`), not in a consumer group: written every
  second (`BULKSTREAM_COMMAND_CHECKPOINT_SECONDS`) and when the feed pauses,
  each time only after every record the commands up to it sent is in Kafka
  (`Deliveries.settled`; the feed reads on while those travel, and the
  pause's cursor waits for them), and never past work a batch left running (the
  delivery fold's Redis views: `settle`). The next reader of the partition, this worker or
  another, starts right after it; a crash replays the commands since, and
  each command is replay-safe.
* *Order.* Commands of a partition are applied one at a time, in offset
  order; none is skipped, and one seen already (a refetch) is not redone.

A feed of delivery reports is the same with its own cursor (`report_cursor_key`),
taking up to 10,000 records at a time and handing them over together: a
report costs a few microseconds of Python, where a faust event costs tens.
It takes its next batch while the handler applies one; a pause drops that
batch (its records are past the cursor, read again). Such a feed reads
through the native module's librdkafka when it is built
(`streams.kafka.native_reader`: a batch by column, with no `Message` object a
record). `Feeds` pauses and stops every feed of the app together.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from streams import metrics
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.state import PARTITION_KEYS, cursor_key
from streams.errors import BulkstreamError
from streams.kafka.native_reader import NativeReader, reader_maker
from streams.runtime.access import held_partitions, partition_db
from streams.runtime.app import deliveries_of
from streams.runtime.patches.current_event import CommandEvent, in_event
from streams.settings import Settings

log = logging.getLogger(__name__)

# Commands taken from librdkafka's queue at a time; at most this many values
# (16 MB each at worst) are held in Python besides the prefetch queue.
BATCH = 16
POLL_SECONDS = 0.1
# librdkafka's statistics, read for each partition's fetch state (`FetchWatch`).
STATS_MS = 2000
# A partition out of librdkafka's active fetch state this long is fetched again.
STALL_SECONDS = 10.0
IDLE_SECONDS = 0.05
# What a feed's wall time is counted as (`bulkstream_feed_seconds_total`).
PHASES = ("fetching", "applying", "checkpointing")


class CommandMessage(NamedTuple):
    """A record of a feed's topic, as the aggregate and the DLQ read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class RecordBatch:
    """The records of one fetch handed to `handle_batch`, by column: up to 10,000 of
    them, and no object made per record (a tuple each, which the collector then
    traversed while the batch lived, cost the delivery fold about a microsecond a
    report). `batch[n]` makes record n a `CommandMessage` when one is needed."""

    __slots__ = ("keys", "offsets", "partitions", "topic", "values")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.partitions: list[int] = []
        self.offsets: list[int] = []
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, n: int) -> CommandMessage:
        return CommandMessage(
            self.topic, self.partitions[n], self.offsets[n], self.keys[n], self.values[n]
        )

    def last_offsets(self) -> dict[int, int]:
        """Partition -> the offset of its last record here (records come in offset
        order within a partition)."""
        return dict(zip(self.partitions, self.offsets, strict=True))

    def fits(self, assigned: frozenset[int], applied: dict[int, int]) -> bool:
        """Every record is of partitions `assigned` and past its partition's offset
        `applied`."""
        # Offsets rise within a partition: its first here is its lowest.
        firsts = dict(zip(reversed(self.partitions), reversed(self.offsets), strict=True))
        return all(p in assigned and o > applied.get(p, -1) for p, o in firsts.items())

    def newer(self, assigned: frozenset[int], applied: dict[int, int]) -> RecordBatch:
        """The records that are of partitions `assigned` and past their partition's
        offset `applied`."""
        kept = RecordBatch(self.topic)
        for n, (partition, offset) in enumerate(zip(self.partitions, self.offsets, strict=True)):
            if partition in assigned and offset > applied.get(partition, -1):
                kept.partitions.append(partition)
                kept.offsets.append(offset)
                kept.keys.append(self.keys[n])
                kept.values.append(self.values[n])
        return kept


def record_columns(
    topic: str, records: list[Any], assigned: frozenset[int], applied: dict[int, int]
) -> RecordBatch | None:
    """A fetch's records by column, when every one is to be applied: no error, all of
    partitions `assigned`, none at or below its partition's offset `applied` (else None:
    the feed sorts them out one by one). A comprehension a column calls each record's
    methods with less interpreter work than one loop over the records."""
    taken = RecordBatch(topic)
    if not records:
        return taken
    if any([record.error() is not None for record in records]):
        return None
    taken.partitions = [record.partition() for record in records]
    taken.offsets = [record.offset() for record in records]
    if not taken.fits(assigned, applied):
        return None
    taken.keys = [record.key() for record in records]
    taken.values = [record.value() for record in records]
    return taken


def consumer_config(
    settings: Settings, name: str = "commands", batch: int = BATCH
) -> dict[str, Any]:
    """A feed's librdkafka consumer, taking up to `batch` records at a time."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        # Never joined nor committed to (partitions are assigned, positions kept
        # in the state); librdkafka wants a group id all the same.
        "group.id": f"{settings.app_id}-{name}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        # A bounded prefetch: memory stays flat however many commands wait. It
        # holds the largest command (16 MB) and a few more (a larger command is
        # still fetched whole, alone).
        "fetch.max.bytes": 4 * 1024 * 1024,
        "max.partition.fetch.bytes": 2 * 1024 * 1024,
        "queued.max.messages.kbytes": 32 * 1024,
        "queued.min.messages": batch,
        # With the prefetch full, fetch again as soon as there is room, not 1 s
        # later (librdkafka's default): the aggregate idled on every full queue.
        "fetch.queue.backoff.ms": 5,
        "statistics.interval.ms": STATS_MS,
    }


def _wanted(stats: dict[str, Any], topic: str) -> dict[int, dict[str, Any]]:
    """Partition -> its entry in librdkafka's statistics JSON, for the partitions of
    `topic` the consumer wants."""
    partitions = stats.get("topics", {}).get(topic, {}).get("partitions", {})
    return {
        int(number): partition
        for number, partition in partitions.items()
        if int(number) >= 0 and partition.get("desired")
    }


def fetch_states(stats: dict[str, Any], topic: str) -> dict[int, str]:
    """Partition -> librdkafka's fetch state, for the partitions of `topic` the
    consumer wants."""
    return {n: str(partition.get("fetch_state")) for n, partition in _wanted(stats, topic).items()}


def fetch_ends(stats: dict[str, Any], topic: str) -> dict[int, int]:
    """Partition -> the offset a read_committed reader reads up to (the broker's last
    stable offset, as of the last fetch), for the partitions of `topic` the consumer
    wants and whose end it has learnt."""
    ends = {
        n: int(partition.get("ls_offset", -1)) for n, partition in _wanted(stats, topic).items()
    }
    return {n: end for n, end in ends.items() if end >= 0}


class FetchWatch:
    """Which partitions librdkafka has kept out of its active fetch state too long.

    A defence, not a path of normal operation: librdkafka keeps a fetch state
    per partition (offset query, epoch validation, active, ...), and a
    partition stuck outside "active" would hold its commands back until the
    worker restarts. The history is in the CHANGELOG."""

    def __init__(self, patience: float = STALL_SECONDS) -> None:
        self.patience = patience
        self.since: dict[int, tuple[str, float]] = {}
        # librdkafka's statistics come on the fetch thread (`take`), which may be
        # taking a batch ahead while the loop asks what stalled.
        self.lock = threading.Lock()

    def observe(self, states: dict[int, str], now: float) -> None:
        with self.lock:
            for partition, state in states.items():
                if state == "active":
                    self.since.pop(partition, None)
                elif partition not in self.since:
                    self.since[partition] = (state, now)
            for partition in set(self.since) - set(states):
                del self.since[partition]

    def stalled(self, now: float) -> list[tuple[int, str]]:
        """Partitions out of the active state for `patience`; each given once,
        then watched anew (a seek takes it through the states again)."""
        with self.lock:
            due = [
                (p, state)
                for p, (state, since) in self.since.items()
                if now - since >= self.patience
            ]
            for partition, state in due:
                self.since[partition] = (state, now)
            return due

    def clear(self) -> None:
        with self.lock:
            self.since.clear()


class CommandFeed:
    """Reads a topic co-partitioned with the state, from a cursor kept in the state.

    Given `handle`, each record is applied alone, inside its own faust event;
    given `handle_batch` instead, what was fetched (up to `batch` records) is
    handed over at once. Given `settle` too, the handler may leave work of its
    batch running when it returns, provided that the work of the batch before
    has ended by then; `settle` awaits the last batch's. The periodic
    checkpoint then writes the cursors as of the batch before (never waiting)
    while batches come, and all of them (awaiting `settle`) once none came or
    at release."""

    def __init__(
        self,
        pipeline: Pipeline,
        handle: Callable[[CommandEvent], Awaitable[None]] | None = None,
        *,
        handle_batch: Callable[[RecordBatch], Awaitable[None]] | None = None,
        settle: Callable[[], Awaitable[None]] | None = None,
        topic: str | None = None,
        cursor: Callable[[int], bytes] = cursor_key,
        origin: Callable[[frozenset[int]], dict[int, int]] | None = None,
        name: str = "commands",
        batch: int = BATCH,
    ) -> None:
        if (handle is None) == (handle_batch is None):
            raise BulkstreamError("a feed takes `handle` or `handle_batch`, one of them")
        self.pipeline = pipeline
        self.app = pipeline.app
        self.state = pipeline.state
        self.topic = topic or pipeline.settings.topic_commands
        self.cursor = cursor
        # Where a partition with no cursor in the state starts (else at its beginning).
        self.origin = origin
        self.batch = batch
        self.checkpoint_seconds = pipeline.settings.command_checkpoint_seconds
        self.config = consumer_config(pipeline.settings, name, batch)
        self.handle = handle
        self.handle_batch = handle_batch
        self.settle = settle
        # A feed of batches reads natively when it can (`streams.kafka.native_reader`).
        self.native = reader_maker(pipeline.settings.native) if handle is None else None
        self.consumer: Consumer | NativeReader | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-fetch")
        # Held by the loop while it reads and applies a batch, and by `pause`.
        self.lock = asyncio.Lock()
        self.pausing = False
        self.stopped = False
        self.assigned: frozenset[int] = frozenset()
        # partition -> offset of the last command applied / of the cursor in the state
        self.applied: dict[int, int] = {}
        self.checkpointed: dict[int, int] = {}
        # The periodic checkpoint's cursors, written once their records are in Kafka.
        self.writing: asyncio.Future[None] | None = None
        # With `settle`: the offsets applied before the last batch, whose work has ended.
        self.settled: dict[int, int] = {}
        self.quiet = True  # the last fetch handed no batch over
        # A feed of batches takes the next batch while one is applied (`apply_batch`);
        # `release` drops it, so it is always of the current assignment.
        self.ahead: asyncio.Future[list[Any] | RecordBatch] | None = None
        self.watch = FetchWatch()
        # partition -> where it ends, from librdkafka's last statistics (`on_stats`)
        self.ends: dict[int, int] = {}
        self.spent = {phase: metrics.FEED_SECONDS.labels(name, phase) for phase in PHASES}
        self.take_cpu = metrics.FEED_TAKE_CPU_SECONDS.labels(name)

    # -- what faust calls ------------------------------------------------------
    async def run(self) -> None:
        """Read and apply commands until the worker stops (a faust task)."""
        if self.native is not None:
            self.consumer = self.native(self.config, self.topic)
        else:
            self.consumer = Consumer(self.config | {"stats_cb": self.on_stats})
        last_checkpoint = time.monotonic()
        while not self.stopped:
            if not self.ready():
                await asyncio.sleep(IDLE_SECONDS)
                continue
            async with self.lock:
                if self.stopped or not self.ready():
                    continue
                wanted = held_partitions(self.pipeline.app, self.pipeline.state)
                if wanted != self.assigned:
                    await self.reassign(wanted)
                if not self.assigned:
                    await asyncio.sleep(IDLE_SECONDS)
                    continue
                await self.apply_batch()
                now = time.monotonic()
                if now - last_checkpoint >= self.checkpoint_seconds:
                    await self.checkpoint(everything=self.quiet, wait=False)
                    last_checkpoint = now
                    self.spent["checkpointing"].inc(time.monotonic() - now)
                self.unstall(now)

    async def pause(self) -> None:
        """Finish the command being applied, record the position, read nothing
        more until the next assignment is restored (faust revokes partitions)."""
        self.pausing = True
        try:
            async with self.lock:
                await self.release()
        finally:
            self.pausing = False

    async def stop(self) -> None:
        """`pause`, for good (the worker stops)."""
        self.stopped = True
        await self.pause()
        if self.consumer is not None:
            await asyncio.get_running_loop().run_in_executor(self.executor, self.consumer.close)
            self.consumer = None
        self.executor.shutdown(wait=False)

    def lags(self) -> list[tuple[str, int, int]]:
        """Commands not yet applied, per partition read, as of librdkafka's last
        statistics (every `STATS_MS`). Not asked of the consumer: called on the loop,
        that waited for the fetch thread's poll to end (up to `POLL_SECONDS` a
        partition), and every command with it."""
        ends = self.ends
        return [
            (self.topic, partition, ends[partition] - self.applied.get(partition, -1) - 1)
            for partition in sorted(self.assigned)
            if partition in ends
        ]

    # -- the loop's steps ----------------------------------------------------
    def ready(self) -> bool:
        """The assignment is settled and its state restored."""
        app = self.app
        return bool(
            not self.stopped
            and not self.pausing
            and app.tables.actives_ready
            and not app.rebalancing
            and app.flow_control.is_active()
        )

    async def reassign(self, wanted: frozenset[int]) -> None:
        await self.release()
        assert self.consumer is not None
        starts = []
        cursors = {}
        for partition in sorted(wanted):
            raw = partition_db(self.state, partition, PARTITION_KEYS).get(self.cursor(partition))
            if raw is not None:
                cursors[partition] = int(raw)
        origins: dict[int, int] = {}
        if self.origin is not None and wanted - set(cursors):
            loop = asyncio.get_running_loop()
            origins = await loop.run_in_executor(self.executor, self.origin, wanted - set(cursors))
        for partition in sorted(wanted):
            if partition in cursors:
                cursor = cursors[partition]
                self.applied[partition] = self.checkpointed[partition] = cursor
                starts.append(TopicPartition(self.topic, partition, cursor + 1))
            elif partition in origins:
                self.applied[partition] = origins[partition] - 1
                starts.append(TopicPartition(self.topic, partition, origins[partition]))
            else:
                starts.append(TopicPartition(self.topic, partition, OFFSET_BEGINNING))
        self.consumer.assign(starts)
        self.watch.clear()
        self.assigned = wanted
        log.info(
            "reading %s from %s",
            self.topic,
            ", ".join(f"{tp.partition}@{tp.offset}" for tp in starts) or "no partition",
        )

    def unstall(self, now: float) -> None:
        """Fetch again a partition that librdkafka has kept out of its active
        fetch state for `STALL_SECONDS` (see `FetchWatch`)."""
        assert self.consumer is not None
        for partition, state in self.watch.stalled(now):
            if partition not in self.assigned:
                continue
            applied = self.applied.get(partition)
            offset = OFFSET_BEGINNING if applied is None else applied + 1
            log.warning(
                "%s [%d]: not fetched for %.0f s (librdkafka fetch state %r); seeking to %s",
                self.topic,
                partition,
                STALL_SECONDS,
                state,
                offset,
            )
            self.consumer.seek(TopicPartition(self.topic, partition, offset))

    async def drop(self, ahead: asyncio.Future[list[Any] | RecordBatch]) -> None:
        """Let a take made ahead end, and leave its records: they are read again from
        the cursors (an error it met is met again, or not, by the next take)."""
        try:
            await ahead
        except Exception as exc:
            log.warning("reading %s ahead: %s", self.topic, exc)

    async def release(self) -> None:
        """Record the position of every partition read, then read none."""
        if self.ahead is not None:
            ahead, self.ahead = self.ahead, None
            await self.drop(ahead)
        if not self.assigned:
            return
        await self.checkpoint(everything=True, wait=True)
        # The cursors themselves in Kafka before another worker may restore them.
        await deliveries_of(self.app).settled()
        assert self.consumer is not None
        self.consumer.unassign()
        self.assigned = frozenset()
        self.applied.clear()
        self.checkpointed.clear()
        self.settled.clear()
        self.watch.clear()
        # A partition given back later has moved on: its end comes with the next statistics.
        self.ends = {}

    async def apply_batch(self) -> None:
        """Apply what librdkafka has fetched. A feed of batches takes the next batch
        meanwhile: the take (a poll a record, the values made Python bytes) then
        overlaps the handler's work instead of following it."""
        assert self.consumer is not None
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        ahead, self.ahead = self.ahead, None
        records = await (ahead or loop.run_in_executor(self.executor, self.take))
        if self.handle_batch is not None:
            self.ahead = loop.run_in_executor(self.executor, self.take)
        fetched = time.monotonic()
        self.spent["fetching"].inc(fetched - started)
        try:
            await self.apply(records)
        finally:
            self.spent["applying"].inc(time.monotonic() - fetched)

    async def apply(self, records: list[Any] | RecordBatch) -> None:
        """Apply these records (confluent-kafka's, or the native reader's batch): each
        alone (`handle`), or all at once (`handle_batch`)."""
        taken = None
        if self.handle_batch is not None:
            if self.pausing or self.stopped:
                taken = RecordBatch(self.topic)  # read again from the cursor
            elif isinstance(records, RecordBatch):
                fits = records.fits(self.assigned, self.applied)
                taken = records if fits else records.newer(self.assigned, self.applied)
            else:
                taken = record_columns(self.topic, records, self.assigned, self.applied)
        if taken is None:
            assert not isinstance(records, RecordBatch)  # a native reader's feed has batches
            taken = await self.apply_each(records)
        self.quiet = not taken
        if taken and self.handle_batch is not None:
            before = dict(self.applied)
            await self.handle_batch(taken)
            self.applied.update(taken.last_offsets())
            self.settled = before

    async def apply_each(self, records: list[Any]) -> RecordBatch:
        """Apply each record with `handle`, or gather those to apply into a batch;
        errors, partitions not held and records applied already are left out."""
        taken = RecordBatch(self.topic)
        partitions, offsets = taken.partitions.append, taken.offsets.append
        keys, values = taken.keys.append, taken.values.append
        for record in records:
            if self.pausing or self.stopped:
                break  # the rest is read again from the cursor
            error = record.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("reading %s: %s", self.topic, error)
                continue
            partition, offset = record.partition(), record.offset()
            if partition not in self.assigned or offset is None:
                continue
            if offset <= self.applied.get(partition, -1):
                continue
            if self.handle is None:
                partitions(partition)
                offsets(offset)
                keys(record.key())
                values(record.value())
                continue
            message = CommandMessage(self.topic, partition, offset, record.key(), record.value())
            with in_event(message) as event:
                await self.handle(event)
            self.applied[partition] = offset
        return taken

    def on_stats(self, raw: str) -> None:
        """librdkafka's statistics (on the fetch thread, from `take`)."""
        stats = orjson.loads(raw)
        self.watch.observe(fetch_states(stats, self.topic), time.monotonic())
        self.ends = fetch_ends(stats, self.topic)

    def take(self) -> list[Any] | RecordBatch:
        """What librdkafka has fetched, up to `BATCH`; else the next record to come.

        `consume(n, timeout)` waits for n records or the timeout, whichever
        comes first: with fewer queued, every batch would wait the timeout out."""
        assert self.consumer is not None
        started = time.thread_time()
        try:
            if isinstance(self.consumer, NativeReader):
                return self.take_natively(self.consumer)
            records: list[Any] = self.consumer.consume(self.batch, 0)
            if not records:
                record = self.consumer.poll(POLL_SECONDS)
                records = [record] if record is not None else []
            return records
        finally:
            self.take_cpu.inc(time.thread_time() - started)

    def take_natively(self, reader: NativeReader) -> RecordBatch:
        """`take`, by the native reader: what it has fetched, up to `BATCH`, else what
        comes within `POLL_SECONDS`; an error met instead of a record is logged, or
        raised if librdkafka says it is fatal (as `apply_each` does)."""
        fetched = reader.take(self.batch, POLL_SECONDS)
        stats = reader.stats()
        if stats is not None:
            self.on_stats(stats)
        for text, fatal in fetched.errors:
            if fatal:
                raise KafkaException(KafkaError(KafkaError._FATAL, text, fatal=True))
            log.warning("reading %s: %s", self.topic, text)
        taken = RecordBatch(self.topic)
        taken.partitions, taken.offsets = fetched.partitions, fetched.offsets
        taken.keys, taken.values = fetched.keys, fetched.values
        return taken

    async def checkpoint(self, everything: bool, *, wait: bool) -> None:
        """Write the cursor of each partition that moved, once everything the
        commands up to it sent is in Kafka: a cursor in the state means its
        command and every one before it are applied for good. With `settle`,
        up to the batch before the last (whose work has ended), unless
        `everything` (then once `settle` ended). `wait`: the cursors are written
        before this returns; else by a task beside the feed (`writing`), so that
        records arriving meanwhile are not held while Kafka takes the ones
        before (the first batch after a quiet spell waited up to seconds)."""
        if self.writing is not None:
            if not (wait or self.writing.done()):
                return  # the last one is still waiting for its records
            writing, self.writing = self.writing, None
            await writing  # raises what it met
        upto = self.applied
        if self.settle is not None:
            if everything:
                await self.settle()
            else:
                upto = self.settled
        moved = {p: o for p, o in upto.items() if self.checkpointed.get(p) != o}
        if not moved:
            return
        in_kafka = deliveries_of(self.app).settled()
        if wait:
            await self.write_cursors(moved, in_kafka)
        else:
            # The feed goes on meanwhile: a cursor needs the records sent before it in
            # Kafka, not the ones sent after (the fold waited ~0.2 s a second for them).
            self.writing = asyncio.ensure_future(self.write_cursors(moved, in_kafka))

    async def write_cursors(self, moved: dict[int, int], in_kafka: Awaitable[Any]) -> None:
        """Write these cursors once `in_kafka` (every record sent before them) is."""
        await in_kafka
        for partition, offset in moved.items():
            with in_event(CommandMessage(self.topic, partition, offset, None, None)):
                self.state[self.cursor(partition)] = str(offset).encode()
        self.checkpointed.update(moved)


class Feeds:
    """Every feed of the app, paused and stopped together (the runtime's `Feed`)."""

    def __init__(self) -> None:
        self.feeds: list[CommandFeed] = []

    def add(self, feed: CommandFeed) -> None:
        self.feeds.append(feed)

    async def pause(self) -> None:
        await asyncio.gather(*(feed.pause() for feed in self.feeds))

    async def stop(self) -> None:
        await asyncio.gather(*(feed.stop() for feed in self.feeds))

    def lags(self) -> list[tuple[str, int, int]]:
        return [lag for feed in self.feeds for lag in feed.lags()]
