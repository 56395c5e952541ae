"""Result wake-ups: the API's request is woken by the result's notice on real Redis, and
finds the result by re-reading when no notice comes (subscriber down or never started).

The gateway produces its command to the test's real topic; no worker runs, so the
test writes the result itself through `ViewWrites.result`, the worker's own call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis
import redis.asyncio as aioredis

from schemas.commands import CommandKind, CommandResult, CreateJob, JobMessage
from streams.api.commands import CommandGateway
from streams.api.errors import ApiError
from streams.api.wakeups import ResultWakeups
from streams.ids import new_command_id, new_job_id
from streams.settings import Settings
from streams.views import Views, keys, notices

# Long enough that an answer well under it can only come from a wake-up.
SLOW_FALLBACK = 5.0
# How long after the request starts waiting the result is written.
WRITE_AFTER = 0.2


def _create() -> CreateJob:
    return CreateJob(
        command_id=new_command_id(),
        tenant="acme",
        job_id=new_job_id(),
        message=JobMessage.model_validate({"message": {"template": "T"}}),
        created_at=time.time(),
    )


def _result_of(command: CreateJob) -> CommandResult:
    return CommandResult(
        command_id=command.command_id,
        tenant=command.tenant,
        job_id=command.job_id,
        kind=CommandKind.CREATE,
        ok=True,
    )


@asynccontextmanager
async def _gateway(
    settings: Settings, wakeups: ResultWakeups, fallback: float
) -> AsyncIterator[tuple[CommandGateway, Views]]:
    client = aioredis.from_url(settings.redis_url)
    views = Views(client, settings.redis_prefix, settings.retention_seconds)
    gateway = CommandGateway(settings, views, wakeups, fallback=fallback)
    try:
        yield gateway, views
    finally:
        await asyncio.to_thread(gateway.close)
        await wakeups.close()
        await client.aclose()


async def _subscribed(wakeups: ResultWakeups) -> None:
    deadline = time.monotonic() + 10
    while not wakeups.subscribed:
        assert time.monotonic() < deadline, "the result wake-ups never subscribed"
        await asyncio.sleep(0.01)


async def _write_result(views: Views, result: CommandResult) -> None:
    """Write a result as the worker does (`streams.aggregate.jobs.Jobs.publish`)."""
    writes = views.writes()
    writes.result(result, 60)
    await writes.send()


async def _answer_once_waited(wakeups: ResultWakeups, views: Views, command: CreateJob) -> float:
    """Write the command's result as a worker would, once the request waits for it (past
    its first read); when it was written (time.monotonic)."""
    waiter = (command.tenant, command.job_id, command.command_id)
    deadline = time.monotonic() + 10
    while waiter not in wakeups.waiters:
        assert time.monotonic() < deadline, "the request never waited for its result"
        await asyncio.sleep(0.005)
    await asyncio.sleep(WRITE_AFTER)  # its first read is long over: only a wake-up or a re-read
    await _write_result(views, _result_of(command))
    return time.monotonic()


async def _timed_submit(
    gateway: CommandGateway, views: Views, wakeups: ResultWakeups
) -> tuple[float, CommandResult]:
    """Submit a create and answer it as a worker would; how long after the result was
    written the submit returned, and what it answered."""
    command = _create()
    worker = asyncio.create_task(_answer_once_waited(wakeups, views, command))
    answer = await gateway.submit(command)
    answered = time.monotonic()
    return answered - await worker, answer


def test_the_worker_announces_each_result_it_writes(
    topology: Settings, redis_client: redis.Redis
) -> None:
    async def scenario() -> None:
        client = aioredis.from_url(topology.redis_url)
        views = Views(client, topology.redis_prefix, topology.retention_seconds)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(keys.results_channel(topology.redis_prefix))
        command = _create()
        await _write_result(views, _result_of(command))
        message = None
        for _ in range(50):
            message = await pubsub.get_message(timeout=0.1)
            if message is not None:
                break
        assert message is not None
        assert notices.decode(message["data"]) == (
            command.tenant,
            command.job_id,
            command.command_id,
        )
        assert await views.read_result(command.tenant, command.job_id, command.command_id) == (
            _result_of(command)
        )
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # untyped in older redis-py
        await client.aclose()

    asyncio.run(scenario())


def test_a_waiting_request_is_woken_by_the_notice_not_its_fallback(
    topology: Settings, redis_client: redis.Redis
) -> None:
    async def scenario() -> None:
        wakeups = ResultWakeups(topology.redis_url, topology.redis_prefix)
        wakeups.start()
        await _subscribed(wakeups)
        async with _gateway(topology, wakeups, SLOW_FALLBACK) as (gateway, views):
            took, answer = await _timed_submit(gateway, views, wakeups)
        assert answer.ok
        # Re-reading alone would answer SLOW_FALLBACK - WRITE_AFTER seconds after the write.
        assert took < 1.0, took
        assert not wakeups.waiters, "the request's waiter is not left registered"

    asyncio.run(scenario())


def test_without_the_subscription_the_fallback_still_finds_the_result(
    topology: Settings, redis_client: redis.Redis
) -> None:
    async def scenario() -> None:
        # Never started: no notice reaches anyone.
        idle = ResultWakeups(topology.redis_url, topology.redis_prefix)
        async with _gateway(topology, idle, 0.1) as (gateway, views):
            took, answer = await _timed_submit(gateway, views, idle)
            assert answer.ok
            assert took < 2.0, took
        # Started, but its Redis is unreachable: it keeps reconnecting; answers still come.
        unreachable = ResultWakeups("redis://127.0.0.1:1/0", topology.redis_prefix)
        unreachable.start()
        async with _gateway(topology, unreachable, 0.1) as (gateway, views):
            took, answer = await _timed_submit(gateway, views, unreachable)
            assert answer.ok
            assert took < 2.0, took
            assert not unreachable.subscribed
            # And no answer at all is still the 503 it always was.
            with pytest.raises(ApiError) as raised:
                await gateway.submit(_create(), patience=0.5)
        assert raised.value.status == 503
        assert raised.value.headers == {"Retry-After": "5"}

    asyncio.run(scenario())


def test_the_subscription_comes_back_after_its_connection_is_dropped(
    topology: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """What a Redis restart does to the subscriber, done to its connection alone."""
    name = f"{topology.redis_prefix}-results"

    async def scenario() -> None:
        wakeups = ResultWakeups(topology.redis_url, topology.redis_prefix, name=name)
        wakeups.start()
        await _subscribed(wakeups)
        async with _gateway(topology, wakeups, SLOW_FALLBACK) as (gateway, views):
            for _ in range(2):  # two outages, a warning each
                (connection,) = [c for c in redis_client.client_list() if c["name"] == name]
                redis_client.client_kill_filter(_id=connection["id"])
                deadline = time.monotonic() + 5
                while wakeups.subscribed:
                    assert time.monotonic() < deadline, "the dropped connection went unnoticed"
                    await asyncio.sleep(0.01)
                await _subscribed(wakeups)
                took, answer = await _timed_submit(gateway, views, wakeups)
                assert answer.ok
                assert took < 1.0, took

    with caplog.at_level(logging.INFO, logger="streams.api.wakeups"):
        asyncio.run(scenario())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, [r.getMessage() for r in caplog.records]
