"""Handing a job's pages to the fan-out: the pages themselves, the releases that follow
the run, and the pacer that times them.

A run hands over its first window of pages (`streams.aggregate.control` has
the rules); after that, a release on `bulk.control` (key = job id, so it is
applied by the worker holding the job) hands over the next ones. Releases
are asked for by the progress agent when a report made room, and by the
pacer, a timer that reads the due index (`\\0due\\0<ms>\\0<job>`: a scheduled
start, a rate-limited page) of the partitions this worker holds. After every
rebalance, a worker asks for a release `again` of each active job
(`\\0active\\0<job>`) of the partitions it holds: the pages the record calls
out, handed over once more, since the last owner may have died between
writing the record and sending them (the fan-out's done-markers make a second
copy a no-op).

A release writes the record first and waits until its changelog record is in
Kafka before its pages go out, so that the record's pages out are never fewer
than those on their way.

Pages go out through a confluent-kafka producer of their own (`Releases.open`),
not faust's: librdkafka encodes and sends them on its own threads, where
aiokafka did both on the event loop that also cuts the pages and folds their
reports (a 100k-user job's pages are 11 MB). Its partitioner is murmur2, as
faust's, so a page handed over again lands on the partition of its first copy,
beside its done-marker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson

from schemas.control import ReleasePages
from schemas.fanout import PageFields, encode_page_spliced
from streams import metrics
from streams.aggregate import rules
from streams.aggregate.jobs import Jobs
from streams.aggregate.paging import MissingUsers, cut_pages, read_batch
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.state import (
    ACTIVE_PREFIX,
    DUE_PREFIX,
    PARTITION_KEYS,
    JobState,
    batch_key,
    batch_prefix,
    due_key_job,
    position_key,
    scan_prefix,
)
from streams.errors import JobFailed
from streams.kafka.config import producer_config
from streams.kafka.producer import AsyncProducer, close_producer
from streams.kafka.topics import MAX_MESSAGE_BYTES
from streams.runtime.access import held_partitions, partition_db, state_ready
from streams.runtime.app import deliveries_of

log = logging.getLogger(__name__)

PACER_SECONDS = 0.02  # how often the pacer reads the due index
ASK_AGAIN_SECONDS = 1.0  # a release asked for and not applied yet is asked again after this


def batches_from(db: Any, job_id: str, position: int) -> Iterator[bytes]:
    """The job's stored batches in position order, from the one holding `position`."""
    start = batch_prefix(job_id)
    for key, offset in db.items(from_key=position_key(job_id, position), backwards=True):
        if key.startswith(position_key(job_id, 0)[:-12]):
            start = batch_key(job_id, int(offset))
        break
    prefix = batch_prefix(job_id)
    for key, raw in db.items(from_key=start):
        if not key.startswith(prefix):
            break
        yield raw


async def emit_pages(
    pipeline: Pipeline,
    producer: AsyncProducer,
    job_id: str,
    job: JobState,
    partition: int,
    first: int,
    stop: int,
) -> int:
    """Send pages [first, stop) of the job but those counted already; their number."""
    topic = pipeline.settings.topic_fanout_pages
    size = job.page_size or pipeline.settings.fanout_page_size
    db = partition_db(pipeline.state, partition)
    batches = (read_batch(raw) for raw in batches_from(db, job_id, first * size))
    fields = PageFields(
        job_id=job_id,
        tenant=job.tenant,
        page=0,
        page_size=size,
        created_at=job.created_at,
        message=job.send,
        data=job.data,
        message_ids=job.message_ids,
        users=[],
    )
    in_flight: list[asyncio.Future[None]] = []
    sent = 0
    try:
        for number, users in cut_pages(batches, size, job.received, first, stop):
            if job.page_done(number):
                continue
            value = encode_page_spliced(fields._replace(page=number), users)
            if len(value) > MAX_MESSAGE_BYTES:
                raise JobFailed(
                    f"page {number} is {len(value)} bytes, over the {MAX_MESSAGE_BYTES} "
                    "byte limit; lower BULKSTREAM_FANOUT_PAGE_SIZE"
                )
            key = f"{job_id}:{number}".encode()
            # Acknowledged all together: a release is at most a window of pages, and the
            # producer's queue (bounded in bytes) holds what the broker has not taken.
            in_flight.append(await producer.send(topic, key, value))
            sent += 1
    except MissingUsers as exc:
        raise JobFailed(f"accepted users are missing from the state: {exc}") from exc
    await asyncio.gather(*in_flight)
    metrics.PAGES_RELEASED.inc(sent)
    return sent


class Releases:
    """Asks for releases (at most one outstanding per job) and applies them."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.jobs = Jobs(pipeline)
        self.window = pipeline.settings.fanout_window_pages
        self.asked: dict[str, float] = {}
        self.held: frozenset[int] = frozenset()
        self._pages: AsyncProducer | None = None

    def open(self) -> AsyncProducer:
        """The producer of pages, made once (at start)."""
        if self._pages is None:
            self._pages = AsyncProducer(producer_config(self.p.settings), name="pages")
        return self._pages

    def close(self) -> None:
        close_producer(self._pages, "pages", "handed over again")

    async def ask(self, job_id: str, partition: int, again: bool = False) -> None:
        """Ask the job's owner (this worker, unless the partition moves) for a release."""
        now = time.monotonic()
        if not again and now - self.asked.get(job_id, -ASK_AGAIN_SECONDS) < ASK_AGAIN_SECONDS:
            return
        self.asked[job_id] = now
        value = orjson.dumps(ReleasePages(job_id=job_id, again=again).to_wire())
        await self.p.app.deliveries.send(
            self.p.topics.control.send(key=job_id.encode(), value=value, partition=partition)
        )

    async def apply(self, message: ReleasePages, partition: int) -> None:
        """A release, in the control agent's event for the job's partition."""
        self.asked.pop(message.job_id, None)
        job_id = message.job_id
        now = time.time()
        effects = rules.release(self.jobs.load(job_id), now, self.window, message.again)
        job = effects.job
        if job is None:
            return
        self.jobs.write(job_id, job, effects)
        # The record in Kafka before its pages: a settled hold is never followed by a send.
        await deliveries_of(self.p.app).settled()
        if effects.lifecycle:  # (a release alone changes nothing the view shows)
            await self.p.views.write_job(job_id, job)
            await self.jobs.lifecycle(job_id, job, effects.previous)
        if effects.emit is not None:
            await self.emit(job_id, job, partition, *effects.emit)

    async def emit(self, job_id: str, job: JobState, partition: int, first: int, stop: int) -> None:
        try:
            await emit_pages(self.p, self.open(), job_id, job, partition, first, stop)
        except JobFailed as exc:
            effects = rules.job_failed(self.jobs.load(job_id), job_id, str(exc), time.time())
            if effects.job is not None:
                self.jobs.write(job_id, effects.job, effects)
                await self.p.views.write_job(job_id, effects.job)
                await self.jobs.lifecycle(job_id, effects.job, effects.previous)
                await self.jobs.settled(effects.job, effects, self.p.views.writes())

    async def tick(self) -> None:
        """The pacer: releases for what is due; `again` for the partitions held after a
        rebalance (gained, or kept: a release cut short by the revocation is made good)."""
        if not state_ready(self.p.app):
            self.held = frozenset()
            return
        held = held_partitions(self.p.app, self.p.state)
        gained, self.held = held - self.held, held
        now = time.time()
        if self.asked:  # asks the partition's next owner applied, or that were lost with it
            since = time.monotonic() - ASK_AGAIN_SECONDS
            self.asked = {job: at for job, at in self.asked.items() if at > since}
        for partition in sorted(held):
            db = partition_db(self.p.state, partition, PARTITION_KEYS)
            if partition in gained:
                for key, _ in scan_prefix(db, ACTIVE_PREFIX):
                    await self.ask(key[len(ACTIVE_PREFIX) :].decode(), partition, again=True)
            for key, _ in scan_prefix(db, DUE_PREFIX):
                due, job_id = due_key_job(key)
                if due > now:
                    break
                await self.ask(job_id, partition)


def register(pipeline: Pipeline) -> Releases:
    releases = Releases(pipeline)

    async def pace() -> None:
        while True:
            try:
                await releases.tick()
            except Exception:  # the pacer goes on; what it missed is still due
                log.exception("pacer tick failed")
            await asyncio.sleep(PACER_SECONDS)

    async def open_producer() -> None:
        releases.open()

    # After the agents stopped (no page left to hand over), before faust's own flush.
    async def close_producer(app: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(releases.close)

    pipeline.app.task(open_producer)
    pipeline.app.on_before_shutdown.connect(close_producer)
    pipeline.app.task(pace)
    return releases


__all__ = ["Releases", "emit_pages", "register"]
