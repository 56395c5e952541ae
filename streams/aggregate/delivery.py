"""The delivery agent: folds delivery reports into message states and a job's counts.

Reports come on `bulk.delivery-status`, key = job id, co-partitioned with the
commands: a report meets its job's state on the worker that owns it. A feed
reads them through librdkafka (`streams.aggregate.command_feed`), from a
cursor in the state, up to `Settings.reports_batch` (10,000) at a time. For each:

1. it is checked: a report that cannot be decoded or validated, whose key is
   not its job id, whose job is unknown (or another tenant's, when it names
   one), whose message id is none of the job's, or whose user the fan-out
   failed (it has no send) goes to `bulk.delivery-status.dlq` with the
   reason, and counts nowhere. A message id that carries its position
   (`streams.ids`, every job created now) is checked by its digest, without a
   read; any other is looked up in the job's message index (RocksDB);
2. each job's reports are folded (the rules: `streams.aggregate.outcomes`),
   from and to the stored bytes by `streams.aggregate.fold_codec` (natively
   when `bulkstream_native` is installed);
3. the dead letters and a message event per state reached
   (`bulk.message-events`) are acknowledged by Kafka, while
4. the views are written (absolute values): every reported message's entry
   and the job's counts, whether the fold changed them or not; then
5. the state records the fold: the blocks of message states it changed, then
   the job's summary (counts and the last offset folded), with one RocksDB
   write batch and one changelog batch (`DurableTable.set_many`); nothing of
   a job a purge removed meanwhile. A report at or below that offset is
   skipped when read again.

Steps 3 to 5 (`finish`) run while the next batch is read, checked and folded:
that fold reads what this one wrote from memory until it is recorded, and
waits for this one's end before its own starts, so batches end in order and
the state never holds a fold whose events Kafka has not taken. A crash before
the state records a batch makes the worker that takes the partition over read
its reports again and fold them from the same state: the same events (again:
at least once) and the same views. The feed's cursor never passes a batch that
has not ended (the feed's `settle`: its periodic checkpoint stops at the batch
before the last, and the one at release awaits `settled`).

With `bulkstream_native` installed, steps 1 and 2 take no Python object per
report for the usual batch (`bulkstream_native.ReportBatch`): the batch is
read natively, grouped by job, and a job whose every report carries its
message's position, of a user the fan-out sent to (a job that failed up to
`NATIVE_FAILURES` users gives their positions), is located and folded
there, on a thread of its own, which queues the group's message events on
the native producer itself (`streams.kafka.native_producer`). Every record of
any other job (and any record the native reader leaves: not read the fast
way, keyed otherwise) is read and checked here, one at a time, as without
it; one job's reports are folded one way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from schemas.delivery import DELIVERY_ORDER
from schemas.views import JobStatus
from streams import metrics
from streams.aggregate.command_feed import CommandFeed, CommandMessage, Feeds, RecordBatch
from streams.aggregate.fold_codec import Encoded, batch_reader, fold_group, outcome, report_folder
from streams.aggregate.jobs import Jobs
from streams.aggregate.outcomes import Report, Reported, Stored, Summary, block_of, decode_block
from streams.aggregate.paging import decode_batch
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.reports import PoisonReport, parse_report
from streams.aggregate.state import (
    JobState,
    batch_prefix,
    delivery_key,
    failure_key,
    failure_prefix,
    job_key,
    message_index_key,
    outcomes_key,
    report_cursor_key,
    scan_prefix,
)
from streams.ids import POSITION_IDS, message_id_prefix, position_reader, shown_message_id
from streams.kafka.config import producer_config
from streams.kafka.native_producer import NativeBatchProducer, batch_producer
from streams.kafka.producer import AsyncProducer, BatchProducer, close_producer
from streams.runtime.access import partition_db
from streams.runtime.patches.current_event import in_event
from streams.views import Views

if TYPE_CHECKING:
    from bulkstream_native import ReportBatch

log = logging.getLogger(__name__)

MAX_ERROR_HEADER = 1000
# Statuses of jobs that have sent nothing yet: none of their messages exists.
UNSENT = frozenset({JobStatus.CREATED, JobStatus.SCHEDULED})
# A job whose fan-out failed at most this many users has its reports located natively,
# the positions of those users read once each time their number changes; one with more
# is checked in Python, a failure key read a report.
NATIVE_FAILURES = 10_000
# Jobs whose failed positions are kept at once (all dropped beyond).
KEPT_FAILURES = 256
STEPS = ("reading", "checking", "folding", "waiting")  # of a batch, in `handle`
ENDING = ("acknowledging", "viewing", "recording")  # of its end, in `finish`
SPENT = {step: metrics.DELIVERY_FOLD_SECONDS.labels(step) for step in STEPS + ENDING}


def lap(step: str, since: float) -> float:
    """Count the time since `since` to this step of the fold; answer now."""
    now = time.perf_counter()
    SPENT[step].inc(now - since)
    return now


@dataclass
class JobBatch:
    """One job's reports in a batch, and what folding them does."""

    job_id: str
    message: Any  # a message of the job's partition: the state writes go there
    job: JobState | None = None
    db: Any = None  # the partition's RocksDB (the indexes are local only)
    prefix: str = "-"  # the start of each of the job's message ids
    reported: list[Reported] = field(default_factory=list)
    encoded: Encoded | None = None  # what folding them writes
    # Every message id reported carries its position (a group `locate` found): the views
    # find the messages by their ids, with no index field a message.
    carried: bool = False


class DeliveryFold:
    def __init__(self, pipeline: Pipeline) -> None:
        self.settings = pipeline.settings
        self.state = pipeline.state
        self.views = pipeline.views
        self.jobs = Jobs(pipeline)
        self._producer: AsyncProducer | None = None
        self._events: BatchProducer | None = None
        self.report_batch = batch_reader(self.settings.native)
        self.carried_positions = position_reader(self.settings.native)
        self.fold_reports = report_folder(self.settings.native)
        # The last batch's end (`finish`: acknowledged, recorded, viewed), and the state
        # writes it records (key -> value), which the next batch's fold reads meanwhile.
        self._finishing: asyncio.Future[None] | None = None
        self._unrecorded: dict[bytes, bytes] = {}
        # (partition, job id) -> (its failures when read, the positions of those users)
        self._failed: dict[tuple[int, str], tuple[int, list[int]]] = {}
        # The native fold runs here, mostly without the GIL: the event loop meanwhile
        # ends the batch before (its views, acknowledgements and state writes).
        self._folder = ThreadPoolExecutor(1, thread_name_prefix="delivery-fold")

    def open(self) -> AsyncProducer:
        """The producer of dead letters, made once (at start)."""
        if self._producer is None:
            self._producer = AsyncProducer(producer_config(self.settings), name="delivery")
        return self._producer

    def open_events(self) -> BatchProducer:
        """The producer of message events, a batch's acknowledged at once (made at start):
        the native module's, which the native fold queues events on itself, when
        `Settings.native` and it is installed."""
        if self._events is None:
            config = producer_config(self.settings)
            config["compression.type"] = self.settings.message_events_compression
            self._events = batch_producer(self.settings.native)(config)
        return self._events

    def close(self) -> None:
        close_producer(self._producer, "dead letters")
        close_producer(self._events, "message events")
        self._folder.shutdown(wait=False)

    async def handle(self, messages: RecordBatch) -> None:
        started = time.perf_counter()
        sending: list[asyncio.Future[None]] = []
        # A job's reports, by the partition they came on: one on another partition than
        # its job's (a producer without the murmur2 partitioner) finds no job there.
        batches: dict[tuple[int, str], JobBatch] = {}
        read = self.read_natively(messages)
        # What Python reads and checks: each record's report (natively read) or poison.
        python: dict[int, Report | PoisonReport | None] = {}
        for n in range(len(messages)) if read is None else read.unread:
            python[n] = self.parse(messages[n])
        located = [] if read is None else self.locate(read, messages, python, batches)
        decoded: list[tuple[CommandMessage, JobBatch, Report]] = []
        for n in sorted(python):
            message, report = messages[n], python[n]
            if isinstance(report, PoisonReport):
                sending.append(await self.dead_letter(message, report.reason, report.detail))
                continue
            assert report is not None  # every record Python reads has its report or poison
            batch = batches.get((message.partition, report.job_id))
            if batch is None:
                batch = batches[(message.partition, report.job_id)] = self.open_batch(
                    message, report.job_id
                )
            decoded.append((message, batch, report))
        started = lap("reading", started)
        found = self.check([(batch, report) for _, batch, report in decoded])
        for (message, batch, report), position in zip(decoded, found, strict=True):
            if isinstance(position, tuple):
                sending.append(await self.dead_letter(message, *position))
                continue
            batch.reported.append(Reported(message.offset, position, report))
        started = lap("checking", started)
        for batch in batches.values():
            if batch.reported:
                sending.extend(await self.fold(batch))
        if read is not None:
            for group, batch in located:
                sending.extend(await self.fold_located(read, group, batch))
        started = lap("folding", started)
        # The feed's contract: the batch before's work ends within this batch.
        await self.settled()
        lap("waiting", started)
        folded = [(batch, writes(batch)) for batch in batches.values() if batch.encoded is not None]
        self._unrecorded = {key: value for _, written in folded for key, value in written}
        self._finishing = asyncio.ensure_future(self.finish(folded, sending))

    def read_natively(self, messages: RecordBatch) -> ReportBatch | None:
        """The batch read natively (`bulkstream_native.ReportBatch`), unless it is not
        installed or turned off."""
        if self.report_batch is None:
            return None
        return self.report_batch(
            messages.values, messages.keys, messages.partitions, messages.offsets
        )

    def parse(self, message: CommandMessage) -> Report | PoisonReport:
        """The record's report, or why it is poison."""
        try:
            return parse_report(message.key, message.value)
        except PoisonReport as exc:
            return exc
        except Exception as exc:  # bad input never stops the worker
            log.exception(
                "delivery report %s/%d@%d", message.topic, message.partition, message.offset
            )
            return PoisonReport("invalid", f"{type(exc).__name__}: {exc}")

    def locate(
        self,
        read: ReportBatch,
        messages: RecordBatch,
        python: dict[int, Report | PoisonReport | None],
        batches: dict[tuple[int, str], JobBatch],
    ) -> list[tuple[int, JobBatch]]:
        """The groups of the natively read reports (one job's, on one partition) that
        `fold_located` folds: every message found by the position its id carries,
        nothing else to look up. Every record of the other groups goes to `python`.
        A job that Python reads a record of is Python's whole: one fold a job a batch."""
        jobs_read = {
            (messages.partitions[n], report.job_id)
            for n, report in python.items()
            if isinstance(report, Report)
        }
        groups = read.groups  # a new list each time it is asked for
        facts: list[tuple[str, int, str, list[int]] | None] = []
        for group, (partition, job_id) in enumerate(groups):
            first = messages[read.first(group)]
            batch = batches[(partition, job_id)] = self.open_batch(first, job_id)
            job = batch.job
            if job is None or job.status in UNSENT or (partition, job_id) in jobs_read:
                facts.append(None)
                continue
            failed = self.failed_positions(batch, job)
            facts.append(
                None if failed is None else (batch.prefix, job.received, job.tenant, failed)
            )
        located: list[tuple[int, JobBatch]] = []
        for group, (ok, key) in enumerate(zip(read.locate(facts), groups, strict=True)):
            if ok:
                located.append((group, batches[key]))
                continue
            members = read.members(group)
            python.update(zip(members, read.reports(members, Report, DELIVERY_ORDER), strict=True))
        return located

    def failed_positions(self, batch: JobBatch, job: JobState) -> list[int] | None:
        """The positions of the users the fan-out failed in the batch's job (kept while
        their number stays); None beyond `NATIVE_FAILURES`."""
        if not job.failures:
            return []
        if job.failures > NATIVE_FAILURES:
            return None
        key = (batch.message.partition, batch.job_id)
        kept = self._failed.get(key)
        if kept is None or kept[0] != job.failures:
            if len(self._failed) >= KEPT_FAILURES:
                self._failed.clear()
            prefix = failure_prefix(batch.job_id)
            positions = [int(k[len(prefix) :]) for k, _ in scan_prefix(batch.db, prefix)]
            kept = self._failed[key] = (job.failures, positions)
        return kept[1]

    def open_batch(self, message: CommandMessage, job_id: str) -> JobBatch:
        batch = JobBatch(job_id, message)
        batch.db = partition_db(self.state, message.partition)
        with in_event(message):
            batch.job = self.jobs.load(job_id)
        if batch.job is not None:
            batch.prefix = message_id_prefix(batch.job.created_at)
        return batch

    def check(self, reports: list[tuple[JobBatch, Report]]) -> list[int | tuple[str, str]]:
        """For each report, the position of its message, or why it cannot be folded
        (reason, detail). A message id that carries its position (`streams.ids`) is
        checked by its digest; any other is looked up in the message index. The index,
        then the failure keys of the positions found (in a job the fan-out failed users
        of), are read with one multi-get each."""
        checked: list[int | tuple[str, str]] = []
        asked: list[tuple[int, JobBatch, bytes]] = []  # (report, batch, index key)
        located: list[int] = []  # the reports whose position is in `checked`
        carried = self.carried_positions(
            [report.job_id for _, report in reports], [report.message_id for _, report in reports]
        )
        for n, (batch, report) in enumerate(reports):
            job = batch.job
            if job is None:
                checked.append(unknown_job(report))
            elif report.tenant is not None and report.tenant != job.tenant:
                checked.append(
                    ("wrong-tenant", f"job {report.job_id} is not of tenant {report.tenant}")
                )
            elif len(report.message_id) != len(batch.prefix) + 24 or not (
                report.message_id.startswith(batch.prefix)
            ):
                checked.append(unknown_message(report))
            elif 0 <= (position := carried[n]) < job.received:
                checked.append(position)
                located.append(n)
            else:
                # An `identity` id, or one an earlier release's fan-out made for this job.
                checked.append(-1)
                asked.append((n, batch, message_index_key(report.job_id, report.message_id[-24:])))
        for (n, _, _), raw in zip(asked, multi_get(asked), strict=True):
            if raw is None:
                checked[n] = unknown_message(reports[n][1])
            else:
                # `<position> <offset>` (`streams.aggregate.dedupe`), or the position alone.
                checked[n] = int(bytes(raw).split(b" ", 1)[0])
                located.append(n)
        failures: list[tuple[int, JobBatch, bytes]] = []
        for n in located:
            batch, report = reports[n]
            job = batch.job
            assert job is not None
            found = checked[n]
            assert isinstance(found, int)
            if job.status in UNSENT:
                checked[n] = (
                    "not-sent",
                    f"job {report.job_id} has sent nothing yet ({job.status.value})",
                )
            elif job.failures:
                failures.append((n, batch, failure_key(report.job_id, found)))
        for (n, _, _), failed in zip(failures, multi_get(failures), strict=True):
            if failed is not None:
                checked[n] = ("not-sent", f"the fan-out failed this user: {bytes(failed).decode()}")
        return checked

    async def fold(self, batch: JobBatch) -> list[asyncio.Future[None]]:
        """Fold the job's reports; send a message event per state reached."""
        job = batch.job
        assert job is not None
        numbers = sorted({block_of(item.position) for item in batch.reported})
        summary, blocks = self.stored(batch, numbers)
        encoded = self.fold_reports(summary, batch.reported, blocks, batch.job_id, job.tenant)
        return await self.emit(batch, encoded, len(batch.reported))

    async def fold_located(
        self, read: ReportBatch, group: int, batch: JobBatch
    ) -> list[asyncio.Future[None]]:
        """`fold`, of a group `locate` found every message of."""
        job = batch.job
        assert job is not None
        summary, blocks = self.stored(batch, read.block_numbers(group))
        events = self.open_events()
        # The fold queues the events itself on a native producer: a failure of one is
        # any reported after this count.
        failed = events.failed()
        events_to = None
        if isinstance(events, NativeBatchProducer):
            events_to = events.events_to(self.settings.topic_message_events)
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(
            self._folder, fold_group, read, group, summary, blocks, job.tenant, events_to
        )
        batch.carried = True
        sending = await self.emit(batch, encoded, read.count(group))
        if encoded.queued:
            sending.append(events.acknowledgement(failed))
        return sending

    def stored(
        self, batch: JobBatch, numbers: list[int]
    ) -> tuple[bytes | None, dict[int, bytes | None]]:
        """The job's delivery summary and these blocks of its message states, as kept
        (one multi-get of the partition's store), or as the batch before wrote them
        if its `finish` has not recorded them yet."""
        keys = [delivery_key(batch.job_id), *(outcomes_key(batch.job_id, n) for n in numbers)]
        summary, *blocks = batch.db[keys]
        if self._unrecorded:
            unrecorded = self._unrecorded
            summary = unrecorded.get(keys[0], summary)
            blocks = [
                unrecorded.get(key, block) for key, block in zip(keys[1:], blocks, strict=True)
            ]
        return summary, dict(zip(numbers, blocks, strict=True))

    async def emit(
        self, batch: JobBatch, encoded: Encoded, reports: int
    ) -> list[asyncio.Future[None]]:
        """Keep what folding `reports` of the job gave; send its message events (unless
        the native fold queued them itself)."""
        batch.encoded = encoded
        raised = len(encoded.events) + encoded.queued
        metrics.DELIVERY_REPORTS.labels("folded").inc(raised)
        metrics.DELIVERY_REPORTS.labels("unchanged").inc(reports - raised)
        for status, count in encoded.reached.items():
            metrics.MESSAGE_STATES.labels(status).inc(count)
        events = self.open_events()
        return [
            await events.send_all(
                self.settings.topic_message_events, batch.job_id.encode(), encoded.events
            )
        ]

    async def finish(
        self,
        folded: list[tuple[JobBatch, list[tuple[bytes, bytes]]]],
        sending: list[asyncio.Future[None]],
    ) -> None:
        """A batch's end, while the next is read, checked and folded: the views of every
        message reported and the jobs' counts are written while Kafka takes the events
        and dead letters; once it took them, the state records what each job's fold
        changed (`writes`, made once: the next fold reads them meanwhile)."""
        await asyncio.gather(self.acknowledge(sending), self.view([b for b, _ in folded]))
        started = time.perf_counter()
        for batch, written in folded:
            with in_event(batch.message):
                # A purge of the job ran meanwhile (its retention ended): its keys are
                # gone, and none is written back, where nothing would ever purge it.
                if written and self.state.get(job_key(batch.job_id)) is None:
                    continue
            # One RocksDB write batch and one changelog batch, after faust's records.
            self.state.set_many(batch.message.partition, written)
        lap("recording", started)

    async def acknowledge(self, sending: list[asyncio.Future[None]]) -> None:
        started = time.perf_counter()
        if sending:
            await asyncio.gather(*sending)
        lap("acknowledging", started)

    async def view(self, folded: list[JobBatch]) -> None:
        """Write the views of the jobs' folded batches (absolute values)."""
        started = time.perf_counter()
        for batch in folded:
            encoded, job = batch.encoded, batch.job
            assert encoded is not None
            assert job is not None
            summary = Summary.from_bytes(encoded.summary)
            await self.views.delivery.write_entries(
                job.tenant,
                batch.job_id,
                encoded.entries,
                summary.view(),
                summary.upto,
                carried=batch.carried,
            )
        lap("viewing", started)

    async def settled(self) -> None:
        """The last batch's end (`finish`) is over (raises what it met)."""
        finishing, self._finishing = self._finishing, None
        try:
            if finishing is not None:
                await finishing
        finally:
            self._unrecorded = {}

    async def dead_letter(self, message: Any, reason: str, detail: str) -> asyncio.Future[None]:
        metrics.DELIVERY_REPORTS.labels(reason).inc()
        log.warning(
            "delivery report to DLQ: %s (%s/%d@%d): %s",
            reason,
            message.topic,
            message.partition,
            message.offset,
            detail,
        )
        headers: dict[str, str | bytes | None] = {
            "x-bulkstream-reason": reason.encode(),
            "x-bulkstream-error": detail[:MAX_ERROR_HEADER].encode(),
            "x-bulkstream-source": f"{message.topic}/{message.partition}/{message.offset}".encode(),
        }
        return await self.open().send(
            self.settings.topic_delivery_status_dlq, message.key, message.value or b"", headers
        )


def unknown_job(report: Report) -> tuple[str, str]:
    return "unknown-job", (
        f"no job {report.job_id} on this partition (a report is keyed by its job id, "
        "with the Java-compatible murmur2 partitioner)"
    )


def unknown_message(report: Report) -> tuple[str, str]:
    return "unknown-message", f"no message {report.message_id} in job {report.job_id}"


def writes(batch: JobBatch) -> list[tuple[bytes, bytes]]:
    """The state's writes of a job's folded batch: the blocks it changed, then the
    summary; none when it changed nothing."""
    encoded = batch.encoded
    assert encoded is not None
    if not encoded.blocks:
        return []
    blocks = [(outcomes_key(batch.job_id, number), block) for number, block in encoded.blocks]
    return [*blocks, (delivery_key(batch.job_id), encoded.summary)]


def multi_get(asked: list[tuple[int, JobBatch, bytes]]) -> list[Any]:
    """The values of the keys asked, in order: one multi-get per partition's store, its
    keys sorted (RocksDB's multi-get takes sorted keys faster: neighbours share blocks)."""
    found: list[Any] = [None] * len(asked)
    by_db: dict[int, list[int]] = defaultdict(list)
    for i, (_, batch, _) in enumerate(asked):
        by_db[id(batch.db)].append(i)
    for indexes in by_db.values():
        indexes.sort(key=lambda i: asked[i][2])
        db = asked[indexes[0]][1].db
        for i, value in zip(indexes, db[[asked[i][2] for i in indexes]], strict=True):
            found[i] = value
    return found


async def rebuild_views(db: Any, views: Views, job_id: str, job: JobState) -> None:
    """Write the delivery views of a job again from its state (Redis lost them)."""
    raw = db.get(delivery_key(job_id))
    if raw is None:
        return
    summary = Summary.from_bytes(raw)
    for _, batch in scan_prefix(db, batch_prefix(job_id)):
        users = decode_batch(batch)
        if not users:
            continue
        first, last = users[0][0], users[-1][0]
        states: dict[int, Stored] = {}
        for block in range(block_of(first), block_of(last) + 1):
            kept = db.get(outcomes_key(job_id, block))
            if kept is not None:
                states.update(decode_block(kept))
        outcomes = []
        for position, identity, *_ in users:
            state = states.get(position)
            reached = state.as_of(summary.upto) if state is not None else None
            if not reached:
                continue
            message = shown_message_id(job.message_ids, job.created_at, job_id, position, identity)
            if message is not None:
                outcomes.append(outcome(position, message, reached))
        if outcomes:
            # A job of `position` ids shows every message by an id that carries it.
            carried = job.message_ids == POSITION_IDS
            await views.delivery.write(job.tenant, job_id, outcomes, carried=carried)
    await views.delivery.write(job.tenant, job_id, [], summary.view(), summary.upto)


def register(pipeline: Pipeline, feeds: Feeds) -> DeliveryFold:
    fold = DeliveryFold(pipeline)
    feed = CommandFeed(
        pipeline,
        handle_batch=fold.handle,
        settle=fold.settled,
        topic=pipeline.settings.topic_delivery_status,
        cursor=report_cursor_key,
        name="reports",
        batch=pipeline.settings.reports_batch,
    )
    feeds.add(feed)
    pipeline.app.task(feed.run)

    async def open_producer() -> None:
        fold.open()
        fold.open_events()

    async def close_producer(app: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(fold.close)

    pipeline.app.task(open_producer)
    pipeline.app.on_before_shutdown.connect(close_producer)
    return fold
