"""The Redis views: rebuilt whole from the job state, expired with the job."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import orjson
import redis
import redis.asyncio as aioredis
from confluent_kafka import Producer

from schemas.delivery import DeliveryReport
from schemas.views import JobStatus
from streams.aggregate.housekeeping import VIEWS_CHECK_SECONDS
from streams.aggregate.state import (
    EXPIRE_PREFIX,
    JobState,
    expire_key_job,
    job_key,
    job_prefix,
    jobs_index_key,
    local_ranges,
)
from streams.deliver.reports import ReportProducer
from streams.ids import IDENTITY_IDS, POSITION_IDS, message_id, positional_message_id
from streams.kafka.topics import state_changelog
from streams.settings import Settings
from streams.testing.client import Client
from streams.testing.processes import WorkerProcess, settings_env, wait_for
from streams.testing.stack import metric
from streams.testing.topics import read_raw
from streams.views import Views, keys
from streams.views.connection import redis_from_url
from streams.views.delivery import DeliveryViews
from streams.views.store import encode_cursor

FOLD_SECONDS = "bulkstream_delivery_fold_seconds_total"
RETENTION = 8  # seconds
RESUMED_RETENTION = 15  # seconds: a worker's start and stop well within it


def _job_with_failures(client: Client) -> str:
    job_id = client.create({"template": "T", "routing": {"channels": ["email"]}, "data": {"g": 1}})
    users = [{"to": {"user_id": f"u{i}"}, "data": {"i": i}} for i in range(240)]
    users += [{"to": {"phone_number": "+15550100"}}, {"profile": {"email": "e@x.io"}}]
    client.result(client.ingest(job_id, users).command_id)
    return job_id


def _same_users(client: Client, job_id: str, users: list[dict[str, object]]) -> bool:
    return client.users(job_id) == users


def _delete_prefix(redis_client: redis.Redis, prefix: str) -> int:
    keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    return redis_client.delete(*keys) if keys else 0


def _counted(client: Client, job_id: str, status: str, count: int) -> bool:
    view = client.job(job_id)
    return view is not None and (view.delivery or {}).get(status) == count


def _logged(settings: Settings, job_id: str) -> dict[bytes, tuple[int, bytes | None]]:
    """The last record the state's changelog holds of each of the job's keys and of its
    purge-index entry: key -> (partition, value)."""
    last: dict[bytes, tuple[int, bytes | None]] = {}
    for partition, key, value in read_raw(settings, state_changelog(settings)):
        if key is None:
            continue
        indexed = key.startswith(EXPIRE_PREFIX) and expire_key_job(key)[1] == job_id
        if indexed or key.startswith(job_prefix(job_id)):
            last[key] = (partition, value)
    return last


def _purged(settings: Settings, job_id: str) -> bool:
    """Whether the changelog ends each of the job's keys, and its purge-index entry,
    with a tombstone."""
    logged = _logged(settings, job_id)
    return bool(logged) and all(value is None for _, value in logged.values())


def _found(settings: Settings, message_ids: list[str]) -> list[tuple[str, int] | None]:
    """Where the delivery views find each message (of tenant acme): (job, position)."""

    async def find() -> list[tuple[str, int] | None]:
        redis_client = redis_from_url(settings.redis_url)
        views = DeliveryViews(redis_client, settings.redis_prefix, 60)
        try:
            return [await views.find("acme", message) for message in message_ids]
        finally:
            await redis_client.aclose()

    return asyncio.run(find())


def test_views_come_back_whole_after_redis_lost_them(
    topology: Settings,
    client: Client,
    redis_client: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker(fanout_page_size=100)
    done = _job_with_failures(client)
    client.result(client.run(done).command_id)
    client.wait_status(done, "COMPLETED", 60)
    # Five messages reported on: their ids carry their positions.
    reported = [positional_message_id(client.created_at(done), done, p) for p in range(5)]
    reports = ReportProducer(topology, create_topics=False)
    for n, message in enumerate(reported):
        reports.send(DeliveryReport(message_id=message, job_id=done, status="SENT", at=n))
    reports.flush()
    wait_for(partial(_counted, client, done, "SENT", 5), 60, "the reports folded")
    # Found by their ids, through the set of the job's second (the job failed a user:
    # its position was read for the native fold): no index field a message.
    assert _found(topology, reported) == [(done, p) for p in range(5)]
    assert not list(redis_client.scan_iter(match=f"{topology.redis_prefix}:*:messages:*"))
    pending = _job_with_failures(client)  # never run: every user PENDING
    before = {job: (client.job(job), client.users(job)) for job in (done, pending)}
    summary = before[done][0]
    assert summary is not None
    assert summary.failures == 1
    assert [u["status"] for u in before[done][1]].count("ENQUEUED") == 241

    # Redis loses everything of ours, the marker included: the worker notices and rebuilds.
    assert _delete_prefix(redis_client, topology.redis_prefix) > 0
    for job, (view, users) in before.items():
        wait_for(partial(client.job, job), 60, f"the view of {job}")
        wait_for(partial(_same_users, client, job, users), 60, f"the users of {job}")
        assert client.job(job) == view
    assert metric([worker], "bulkstream_views_rebuilt_jobs_total") == 2

    # And on demand: views lost, marker kept, `bulkstream rebuild-views` restores them.
    _delete_prefix(redis_client, f"{topology.redis_prefix}:4:acme")
    assert client.job(done) is None
    subprocess.run(
        [sys.executable, "-m", "streams.ops.cli", "rebuild-views"],
        env=settings_env(topology),
        check=True,
        capture_output=True,
    )
    wait_for(lambda: client.job(done) == before[done][0], 60, "the rebuilt job view")
    assert client.users(done) == before[done][1]
    # Rebuilt for a job of `position` ids: found through the set of the job's second,
    # with no index field a message.
    assert _found(topology, reported) == [(done, p) for p in range(5)]
    assert not list(redis_client.scan_iter(match=f"{topology.redis_prefix}:*:messages:*"))


def test_a_worker_looks_for_the_views_marker_as_soon_as_it_is_ready(
    topology: Settings,
    redis_client: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Not one check interval later: by then commands are flowing, and the
    rebuild of an empty Redis would run beside them on the same event loop."""
    marker = keys.views_alive(topology.redis_prefix)
    assert not redis_client.exists(marker)
    worker = start_worker()
    url = worker.metrics_url() + "/readyz"

    def ready() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url, timeout=5).status_code == 200
        return False

    wait_for(ready, 120, "the worker to be ready", every=0.05)
    seen = time.monotonic()
    wait_for(lambda: redis_client.exists(marker), 60, "the views marker", every=0.05)
    assert time.monotonic() - seen < VIEWS_CHECK_SECONDS / 2


def test_finished_jobs_expire_and_unrun_jobs_do_not(
    topology: Settings,
    client: Client,
    redis_client: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker(retention_days=4 / 86_400, retention_sweep_seconds=1.0)
    finished = client.create({"template": "T"})
    client.result(client.ingest(finished, [{"to": {"user_id": "a"}}]).command_id)
    waiting = client.create({"template": "T"})
    client.result(client.ingest(waiting, [{"to": {"user_id": "a"}}]).command_id)
    client.result(client.run(finished).command_id)
    client.wait_status(finished, "COMPLETED", 60)
    ttl = redis_client.ttl(keys.job(topology.redis_prefix, "acme", finished))
    assert 0 < ttl <= 4
    assert redis_client.ttl(keys.job(topology.redis_prefix, "acme", waiting)) == -1

    # The purge removes the state too: the job is then unknown to the aggregate.
    def purged() -> bool:
        result = client.result(client.ingest(finished, [{"to": {"user_id": "b"}}]).command_id)
        return result.error_type == "not_found"

    wait_for(purged, 60, "the finished job to be purged", every=1.0)
    assert client.job(finished) is None

    # In the changelog: each of the job's keys ends with a tombstone, its purge-index
    # entry too, and its users' index (in RocksDB only, deleted by range) has none: the
    # purge wrote no record a user.
    wait_for(partial(_purged, topology, finished), 30, "every key's tombstone")
    logged = _logged(topology, finished)
    local = [first for first, _ in local_ranges(finished)]
    assert job_key(finished) in logged
    assert [key for key in logged if key.startswith(EXPIRE_PREFIX)]
    assert not [key for key in logged if key.startswith(tuple(local))]
    assert metric([worker], "bulkstream_jobs_purged_total") == 1
    # Counted: each of the job's keys, but its record (deleted on its own, first).
    tombstoned = metric([worker], "bulkstream_purged_state_keys_total")
    assert tombstoned == len([key for key in logged if key.startswith(job_prefix(finished))]) - 1
    kept = client.result(client.ingest(waiting, [{"to": {"user_id": "b"}}]).command_id)
    assert (kept.ok, kept.total) == (True, 1)
    job = client.job(waiting)
    assert job is not None
    assert job.received == 2


def test_the_fold_waits_out_redis_paused_beyond_the_worker_s_time_out(
    topology: Settings,
    client: Client,
    redis_client: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Its views are written again once Redis answers, as every other command of the
    worker's is: the worker does not go down with a read time-out."""
    worker = start_worker()
    job_id = client.create({"template": "T"})
    client.result(client.ingest(job_id, [{"to": {"user_id": "a"}}]).command_id)
    client.result(client.run(job_id).command_id)
    client.wait_status(job_id, "COMPLETED", 60)
    message = positional_message_id(client.created_at(job_id), job_id, 0)
    redis_client.client_pause(8000, all=False)  # the worker's socket time-out is 5 s
    reports = ReportProducer(topology, create_topics=False)
    reports.send(DeliveryReport(message_id=message, job_id=job_id, status="SENT", at=1))
    reports.flush()
    wait_for(partial(_counted, client, job_id, "SENT", 1), 60, "the report folded")
    assert worker.alive()


def test_a_worker_waits_out_a_full_redis(
    topology: Settings,
    client: Client,
    redis_client: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Redis over its `maxmemory` under `noeviction` refuses every write: the worker
    waits (each wait counted by error) and goes on once there is room, where it
    crashed on its first refused write, and again on each restart."""
    worker = start_worker()
    job_id = client.create({"template": "T"})
    client.result(client.ingest(job_id, [{"to": {"user_id": "a"}}]).command_id)
    before: dict[str, str] = {
        name: str(redis_client.config_get(name)[name]) for name in ("maxmemory", "maxmemory-policy")
    }
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", 1)  # bytes: every write refused (0 is no limit)
    try:
        client.run(job_id)
        waits = partial(metric, [worker], "bulkstream_redis_waits_total", error="OutOfMemoryError")
        wait_for(lambda: waits() > 0, 30, "the worker to wait for room in Redis")
        time.sleep(2)
        assert worker.alive()
    finally:
        for name, value in before.items():
            redis_client.config_set(name, value)
    client.wait_status(job_id, "COMPLETED", 60)
    assert worker.alive()


def test_a_purge_while_a_fold_ends_leaves_nothing_of_the_job_behind(
    topology: Settings,
    client: Client,
    redis_client: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """The job's retention ends while the delivery fold's end for its reports waits on
    Redis (writes paused, within the worker's Redis timeout): the purge deletes the
    job's state meanwhile, and the fold records none of it back, where no purge would
    ever come for it again."""
    worker = start_worker(retention_days=RETENTION / 86_400, retention_sweep_seconds=0.25)
    job_id = client.create({"template": "T"})
    client.result(client.ingest(job_id, [{"to": {"user_id": "a"}}]).command_id)
    client.result(client.run(job_id).command_id)
    client.wait_status(job_id, "COMPLETED", 60)
    completed = time.monotonic()  # at most this; the purge comes RETENTION s after
    message = positional_message_id(client.created_at(job_id), job_id, 0)
    time.sleep(max(0.0, completed + RETENTION - 2 - time.monotonic()))
    redis_client.client_pause(4000, all=False)  # until 2 s past the purge's time
    reports = ReportProducer(topology, create_topics=False)
    reports.send(DeliveryReport(message_id=message, job_id=job_id, status="SENT", at=1))
    reports.flush()
    recording = partial(metric, [worker], FOLD_SECONDS, phase="recording")
    wait_for(lambda: recording() > 0, 30, "the fold's end, once Redis took its views")
    assert worker.alive()
    written = _logged(topology, job_id)
    assert written  # the job's state was written, then purged
    assert {key: value for key, (_, value) in written.items() if value is not None} == {}
    assert client.job(job_id) is None


def test_a_purge_cut_short_after_the_job_s_record_is_resumed(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A purge deletes the job's record first, its other keys after it. A worker stopped
    between the two leaves the job unknown, and its other keys and its purge-index
    entry in place: the next sweep finds the entry, and the purge ends from there."""
    retention = {"retention_days": RESUMED_RETENTION / 86_400, "retention_sweep_seconds": 0.25}
    worker = start_worker(**retention)
    job_id = client.create({"template": "T"})
    client.result(client.ingest(job_id, [{"to": {"user_id": "a"}}]).command_id)
    client.result(client.run(job_id).command_id)
    client.wait_status(job_id, "COMPLETED", 60)
    worker.stop()  # well before the job's retention ends
    partition, record = _logged(topology, job_id)[job_key(job_id)]
    assert record is not None  # no purge began
    # The state a purge stopped after its first step leaves: the job's record gone.
    changelog = state_changelog(topology)
    producer = Producer({"bootstrap.servers": topology.kafka_bootstrap_servers})
    for key in (job_key(job_id), jobs_index_key(job_id)):
        producer.produce(changelog, key=key, value=None, partition=partition)
    assert producer.flush(10) == 0
    worker = start_worker(**retention)
    wait_for(partial(_purged, topology, job_id), 60, "every key's tombstone", every=0.5)
    assert [key for key in _logged(topology, job_id) if key.startswith(EXPIRE_PREFIX)]
    assert b"resuming its purge" in worker.log()


def test_a_users_status_is_read_from_its_page_bit_and_its_failure(
    redis_url: str, unique: str, redis_client: redis.Redis
) -> None:
    """Pages of 7 against buckets of 100: a bucket spans parts of several pages and
    a page spans two buckets; the bitmap's bytes are read for the bucket only."""
    job = JobState(
        tenant="acme",
        definition={},
        send={},
        created_at=1.0,
        create_command="c",
        applied_offset=0,
        received=250,
        page_size=7,
        status=JobStatus.PROCESSING,
    )
    done = {0, 3, 14, 15, 28, 35}
    failed = {22: "No routable address", 105: "No routable address"}

    async def scenario() -> list[list[dict[str, Any]]]:
        client = aioredis.from_url(redis_url)
        views = Views(client, f"t{unique}", 3600)
        try:
            await views.write_job("j1", job)
            await views.write_users(
                "acme", "j1", [(p, f"user:{p}", {"to": {"user_id": f"u{p}"}}) for p in range(250)]
            )
            for page in done:
                of_page = {p: r for p, r in failed.items() if p // 7 == page}
                await views.write_page("acme", "j1", page, of_page)
            pages = []
            for start in (0, 100, 200):
                read = await views.read_users("acme", "j1", encode_cursor("j1", start))
                assert read is not None
                pages.append(read.items)
            return pages
        finally:
            await client.aclose()

    items = [item for page in asyncio.run(scenario()) for item in page]
    assert len(items) == 250
    for position, item in enumerate(items):
        if position in failed:
            expected = "ERROR"
        elif position // 7 in done:
            expected = "ENQUEUED"
        else:
            expected = "PENDING"
        assert (position, item["status"]) == (position, expected)
        assert ("messageId" in item) == (expected == "ENQUEUED")


def test_the_view_owns_status_message_id_and_error_over_a_users_own_fields(
    redis_url: str, unique: str
) -> None:
    """Unknown fields of a user are echoed back, but not over the three the view writes:
    a pending user with its own `messageId`, or a sent one with its own `error`, would
    read as what it is not."""
    job = JobState(
        tenant="acme",
        definition={},
        send={},
        created_at=1.0,
        create_command="c",
        applied_offset=0,
        received=3,
        page_size=1,
        status=JobStatus.PROCESSING,
    )
    own = {"status": "SENT", "messageId": {}, "error": "mine", "tier": "gold"}

    async def scenario() -> list[dict[str, Any]]:
        client = aioredis.from_url(redis_url)
        views = Views(client, f"t{unique}", 3600)
        try:
            await views.write_job("j1", job)
            users = [(p, f"user:u{p}", {"to": {"user_id": f"u{p}"}, **own}) for p in range(3)]
            await views.write_users("acme", "j1", users)
            await views.write_page("acme", "j1", 1, {})  # position 1 sent
            await views.write_page("acme", "j1", 2, {2: "No routable address"})
            read = await views.read_users("acme", "j1", None)
            assert read is not None
            return read.items
        finally:
            await client.aclose()

    pending, sent, failed = asyncio.run(scenario())
    assert pending == {
        "recipient": "u0",
        "to": {"user_id": "u0"},
        "tier": "gold",
        "status": "PENDING",
    }
    assert set(sent) == {"recipient", "to", "tier", "status", "messageId"}
    assert (sent["status"], type(sent["messageId"])) == ("ENQUEUED", str)
    assert failed == {
        "recipient": "u2",
        "to": {"user_id": "u2"},
        "tier": "gold",
        "status": "ERROR",
        "error": "No routable address",
    }


def test_a_users_page_names_each_message_as_its_job_made_the_id(
    redis_url: str, unique: str, redis_client: redis.Redis
) -> None:
    """By position for a job of now; by identity for a job of an earlier release, whose
    record has no `message_ids`, or whose view (written before) has no `messageIds`."""
    fields: dict[str, Any] = {
        "tenant": "acme",
        "definition": {},
        "send": {},
        "created_at": 1_764_000_000.0,
        "create_command": "c",
        "applied_offset": 0,
        "received": 2,
        "page_size": 2,
        "status": JobStatus.PROCESSING,
    }
    now = JobState(**fields, message_ids=POSITION_IDS)
    before = JobState.from_bytes(orjson.dumps({**fields, "status": "PROCESSING"}))
    assert before.message_ids == IDENTITY_IDS
    prefix = f"t{unique}"

    async def ids_shown(job_id: str, job: JobState, forget: bool = False) -> list[str]:
        client = aioredis.from_url(redis_url)
        views = Views(client, prefix, 3600)
        try:
            await views.write_job(job_id, job)
            if forget:
                await client.hdel(keys.job(prefix, "acme", job_id), "messageIds")
            users = [(p, f"user:u{p}", {"to": {"user_id": f"u{p}"}}) for p in range(2)]
            await views.write_users("acme", job_id, users)
            await views.write_page("acme", job_id, 0, {})
            read = await views.read_users("acme", job_id, None)
            assert read is not None
            return [item["messageId"] for item in read.items]
        finally:
            await client.aclose()

    created = now.created_at
    assert asyncio.run(ids_shown("j1", now)) == [
        positional_message_id(created, "j1", p) for p in range(2)
    ]
    by_identity = [message_id(created, "j2", f"user:u{p}") for p in range(2)]
    assert asyncio.run(ids_shown("j2", before)) == by_identity
    assert asyncio.run(ids_shown("j2", now, forget=True)) == by_identity
