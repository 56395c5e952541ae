"""The naive baseline: the fan-out one would write first, as one faust agent.

`python -m bench.naive` runs it as its own process, configured from the
environment like any bulkstream process (topics, Redis prefix, data folder).
Its agent reads the same commands: it keeps a job's definition and its
ingested users in memory and, on the run command, does
`await sends_topic.send(...)` once per recipient (the same send events,
built with `streams.sends.build_send`). No transactions, no pages, no
state: just the obvious loop. For the benchmark it writes to Redis how many
users it holds (`<prefix>:naive:<job>:ingested`) and, once the broker
acknowledged the last send, `<prefix>:naive:<job>:done`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import faust
import orjson
import redis.asyncio as aioredis

from schemas.commands import BulkUser, JobMessage
from streams.sends import build_send
from streams.settings import Settings


def ingested_key(settings: Settings, job_id: str) -> str:
    return f"{settings.redis_prefix}:naive:{job_id}:ingested"


def done_key(settings: Settings, job_id: str) -> str:
    return f"{settings.redis_prefix}:naive:{job_id}:done"


def build_app(settings: Settings) -> Any:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.app_id}-naive",
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store="memory://",
        datadir=str(settings.data_dir / "naive"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.partitions,
    )
    commands = app.topic(
        settings.topic_commands,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    sends = app.topic(
        settings.topic_sends,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    views = aioredis.from_url(settings.redis_url)
    jobs: dict[str, dict[str, Any]] = {}
    users: dict[str, list[dict[str, Any]]] = {}

    async def fan_out(job_id: str) -> None:
        job = jobs[job_id]
        message = JobMessage.model_validate(job["message"])
        definition, data = message.send_definition(), message.data or {}
        everyone = users.pop(job_id, [])
        acked = 0
        all_acked = asyncio.Event()

        def on_acked(_: Any) -> None:
            nonlocal acked
            acked += 1
            if acked == len(everyone):
                all_acked.set()

        for position, user in enumerate(everyone):
            send = build_send(
                job_id=job_id,
                tenant=job["tenant"],
                created_at=job["createdAt"],
                definition=definition,
                global_data=data,
                position=position,
                identity=BulkUser.model_validate(user).identity() or "",
                user=user,
            )
            await sends.send(
                key=send["messageId"].encode(), value=orjson.dumps(send), callback=on_acked
            )
        if everyone:
            await all_acked.wait()  # the broker acknowledged the last send
        await views.set(done_key(settings, job_id), orjson.dumps({"sent": acked}))

    @app.agent(commands)
    async def naive(stream: Any) -> None:
        async for value in stream:
            command = orjson.loads(value)
            job_id = command["jobId"]
            if command["kind"] == "create":
                jobs[job_id] = command
                users[job_id] = []
            elif command["kind"] == "ingest":
                users[job_id].extend(command["users"])
                await views.set(ingested_key(settings, job_id), len(users[job_id]))
            elif command["kind"] == "run":
                await fan_out(job_id)

    return app


def main() -> None:
    app = build_app(Settings())
    sys.argv = [sys.argv[0], "worker", "--loglevel", "info"]
    app.main()


if __name__ == "__main__":
    main()
