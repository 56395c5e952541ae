"""Housekeeping of the job state: rebuilding the Redis views, purging expired jobs, and
applying releases of pages (`streams.aggregate.release`).

All act on the state of one partition, so they run as a faust agent on
`bulk.control`, co-partitioned with the commands: a message on partition p
is handled by the worker that owns the state of partition p.

Two timers feed it: one notices that Redis lost the views (its `views:alive`
marker is gone) and asks every partition to rebuild; one sweeps the purge
index and asks for each finished job past its retention to be purged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from itertools import islice
from typing import Any

import orjson

from schemas.control import ControlMessage, PurgeJob, RebuildViews, ReleasePages
from schemas.views import DryRun
from streams import metrics
from streams.aggregate import delivery
from streams.aggregate.jobs import Jobs
from streams.aggregate.paging import decode_batch
from streams.aggregate.pipeline import Pipeline
from streams.aggregate.release import Releases
from streams.aggregate.state import (
    EXPIRE_PREFIX,
    JOBS_PREFIX,
    PARTITION_KEYS,
    SEP,
    JobState,
    batch_prefix,
    changelog_keys,
    dry_run_key,
    expire_key,
    expire_key_for,
    expire_key_job,
    job_key,
    jobs_index_key,
    local_ranges,
    scan_prefix,
)
from streams.runtime.access import held_partitions, partition_db
from streams.runtime.app import delivered

log = logging.getLogger(__name__)

VIEWS_CHECK_SECONDS = 5.0  # how often a worker looks for the views marker in Redis
# A purge's state keys deleted between two turns of the event loop: a 10M-user job has
# about 200k of them, which in one go held every agent of the worker for seconds.
PURGE_CHUNK = 1000


class Control:
    def __init__(self, pipeline: Pipeline, releases: Releases) -> None:
        self.p = pipeline
        self.releases = releases
        self.state = pipeline.state
        self.views = pipeline.views
        self.jobs = Jobs(pipeline)

    async def handle(self, event: Any) -> None:
        message = ControlMessage.model_validate_json(event.message.value).root
        partition = event.message.partition
        if isinstance(message, RebuildViews):
            await self.rebuild(partition)
        elif isinstance(message, PurgeJob):
            await self.purge(message, partition)
        elif isinstance(message, ReleasePages):
            await self.releases.apply(message, partition)

    async def rebuild(self, partition: int) -> None:
        started = time.monotonic()
        db = partition_db(self.state, partition)
        keys = partition_db(self.state, partition, PARTITION_KEYS)
        count = 0
        for key, _ in scan_prefix(keys, JOBS_PREFIX):
            job_id = key[len(JOBS_PREFIX) :].decode()
            raw = db.get(job_key(job_id))
            if raw is None:
                continue
            await self.rebuild_job(db, job_id, JobState.from_bytes(raw))
            count += 1
            metrics.VIEWS_REBUILT_JOBS.inc()
        metrics.VIEWS_REBUILD_SECONDS.observe(time.monotonic() - started)
        log.info("views rebuilt for %d job(s) of partition %d", count, partition)

    async def rebuild_job(self, db: Any, job_id: str, job: JobState) -> None:
        for _, raw in scan_prefix(db, batch_prefix(job_id)):
            await self.views.write_users(job.tenant, job_id, decode_batch(raw))
        if job.page_size:
            failure_prefix = f"{job_id}{SEP}f{SEP}".encode()
            failures = {
                int(key[len(failure_prefix) :]): value.decode()
                for key, value in scan_prefix(db, failure_prefix)
            }
            by_page: dict[int, dict[int, str]] = {}
            for position, reason in failures.items():
                by_page.setdefault(position // job.page_size, {})[position] = reason
            for page in range(job.pages_total()):
                if job.page_done(page):
                    await self.views.write_page(job.tenant, job_id, page, by_page.get(page, {}))
        await self.views.write_job(job_id, job)
        await delivery.rebuild_views(db, self.views, job_id, job)
        dry_run = db.get(dry_run_key(job_id))
        if dry_run is not None:
            await self.views.write_dry_run(job.tenant, job_id, DryRun.model_validate_json(dry_run))

    async def purge(self, message: PurgeJob, partition: int) -> None:
        """Delete a finished job past its retention, in this order: its record (from then
        on it is unknown to every agent: a command or a report for it is refused as for
        any unknown job), its views, its users' index, its other keys a chunk at a time
        (the event loop serves the other agents between two), and its purge-index entry
        last. A purge cut short (the worker killed) is asked for again by the sweep, which
        finds the entry, and resumes from the record's absence; the views are then left
        to their own expiry, which came with the retention's end."""
        started = time.monotonic()
        job_id = message.job_id
        job = self.jobs.load(job_id)
        if job is None:  # purged, or cut short: resumed while its index entry is there
            if message.due is None or self.state.get(expire_key(message.due, job_id)) is None:
                return
            expire = expire_key(message.due, job_id)
            log.info("job %s: resuming its purge", job_id)
        else:
            if job.completed_at is None:
                return
            expire = expire_key_for(job_id, job, self.p.settings.retention_seconds)
            if expire_key_job(expire)[0] > time.time():
                return
            for key in (job_key(job_id), jobs_index_key(job_id)):
                if self.state.get(key) is not None:
                    del self.state[key]
            await self.views.delete_job(job_id, job)
        db = partition_db(self.state, partition)
        # The users' index, in RocksDB only: a range deletion a kind, no tombstones.
        for first, end in local_ranges(job_id):
            db.delete_range(first, end)
        deleted = await self.delete_changelog_keys(db, job_id)
        if self.state.get(expire) is not None:
            del self.state[expire]
        metrics.JOBS_PURGED.inc()
        metrics.PURGED_KEYS.inc(deleted)
        metrics.PURGE_SECONDS.observe(time.monotonic() - started)
        log.info("job %s purged (%d state keys in the changelog)", job_id, deleted)

    async def delete_changelog_keys(self, db: Any, job_id: str) -> int:
        """Delete the job's keys kept in the changelog (a tombstone each there), a chunk
        at a time with a turn of the event loop between two; how many."""
        deleted, after = 0, None
        while chunk := list(islice(changelog_keys(db, job_id, after), PURGE_CHUNK)):
            for key in chunk:
                del self.state[key]
            deleted += len(chunk)
            after = chunk[-1]
            await asyncio.sleep(0)
        return deleted


def register(pipeline: Pipeline, releases: Releases) -> None:
    control = Control(pipeline, releases)
    app, topics, settings = pipeline.app, pipeline.topics, pipeline.settings

    async def housekeeping(stream: Any) -> None:
        async for event in stream.events():
            await control.handle(event)

    app.agent(topics.control, name="bulkstream.control")(housekeeping)

    async def check_views() -> None:
        if await pipeline.views.alive():
            return
        await pipeline.views.mark_alive()
        log.info("views marker missing (Redis new or flushed): rebuilding every partition")
        value = orjson.dumps(RebuildViews().to_wire())
        for partition in range(settings.partitions):
            await delivered(topics.control.send(key=b"rebuild", value=value, partition=partition))

    # Checked as soon as the worker is ready, then every few seconds. A faust
    # timer's first tick comes one interval late: a worker that starts on an
    # empty Redis would then rebuild the views of everything ingested in its
    # first seconds, on the event loop the commands agent needs.
    async def watch_views() -> None:
        await check_views()
        async for _ in app.itertimer(VIEWS_CHECK_SECONDS, name="bulkstream.watch_views"):
            await check_views()

    app.task(watch_views)

    async def sweep_expired() -> None:
        now = time.time()
        for partition in held_partitions(pipeline.app, pipeline.state):
            keys = partition_db(pipeline.state, partition, PARTITION_KEYS)
            for key, _ in scan_prefix(keys, EXPIRE_PREFIX):
                due, job_id = expire_key_job(key)
                if due > now:
                    break
                value = orjson.dumps(PurgeJob(job_id=job_id, due=due).to_wire())
                await delivered(
                    topics.control.send(key=job_id.encode(), value=value, partition=partition)
                )

    app.timer(interval=settings.retention_sweep_seconds, name="bulkstream.sweep")(sweep_expired)
