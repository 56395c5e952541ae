"""The Redis views: rebuilt whole from the job state, expired with the job."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from functools import partial

import redis

from streams.settings import Settings
from tests.streams.harness import Client, WorkerProcess, settings_env, wait_for


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


def test_views_come_back_whole_after_redis_lost_them(
    topology: Settings,
    client: Client,
    redis_client: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker(fanout_page_size=100)
    done = _job_with_failures(client)
    client.result(client.run(done).command_id)
    client.wait_status(done, "COMPLETED", 60)
    pending = _job_with_failures(client)  # never run: every user PENDING
    before = {job: (client.job(job), client.users(job)) for job in (done, pending)}
    assert before[done][0].failures == 1
    assert [u["status"] for u in before[done][1]].count("ENQUEUED") == 241

    # Redis loses everything of ours, the marker included: the worker notices and rebuilds.
    assert _delete_prefix(redis_client, topology.redis_prefix) > 0
    for job, (view, users) in before.items():
        wait_for(partial(client.job, job), 60, f"the view of {job}")
        wait_for(partial(_same_users, client, job, users), 60, f"the users of {job}")
        assert client.job(job) == view

    # And on demand: views lost, marker kept, `bulkstream rebuild-views` restores them.
    _delete_prefix(redis_client, f"{topology.redis_prefix}:acme")
    assert client.job(done) is None
    subprocess.run(
        [sys.executable, "-m", "streams.cli", "rebuild-views"],
        env=settings_env(topology),
        check=True,
        capture_output=True,
    )
    wait_for(lambda: client.job(done) == before[done][0], 60, "the rebuilt job view")
    assert client.users(done) == before[done][1]


def test_finished_jobs_expire_and_unrun_jobs_do_not(
    topology: Settings,
    client: Client,
    redis_client: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker(retention_days=4 / 86_400, retention_sweep_seconds=1.0)
    finished = client.create({"template": "T"})
    client.result(client.ingest(finished, [{"to": {"user_id": "a"}}]).command_id)
    waiting = client.create({"template": "T"})
    client.result(client.ingest(waiting, [{"to": {"user_id": "a"}}]).command_id)
    client.result(client.run(finished).command_id)
    client.wait_status(finished, "COMPLETED", 60)
    ttl = redis_client.ttl(f"{topology.redis_prefix}:acme:job:{finished}")
    assert 0 < ttl <= 4
    assert redis_client.ttl(f"{topology.redis_prefix}:acme:job:{waiting}") == -1

    # The purge removes the state too: the job is then unknown to the aggregate.
    def purged() -> bool:
        result = client.result(client.ingest(finished, [{"to": {"user_id": "b"}}]).command_id)
        return result.error_type == "not_found"

    wait_for(purged, 60, "the finished job to be purged", every=1.0)
    assert client.job(finished) is None
    kept = client.result(client.ingest(waiting, [{"to": {"user_id": "b"}}]).command_id)
    assert (kept.ok, kept.total) == (True, 1)
    assert client.job(waiting).received == 2
