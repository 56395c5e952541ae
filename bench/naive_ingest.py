"""The naive ingest baseline: the ingest one would write first, as one faust agent.

`python -m bench.naive_ingest` runs it as its own process, configured from the
environment like any bulkstream process (topics, Redis prefix, data folder).
Its agent reads the command topic (keyed by job id, JSON, as bulkstream's),
decodes each command with the same schema (`CommandEnvelope`) and, for every
user of an ingest command, does the obvious: a dedupe check and a faust table
write (`if key in users: ...` then `users[key] = user`, key `<job>:<identity>`:
one changelog record per user). After each command it writes the job's
accepted count to a second table and to Redis (`<prefix>:naive-ingest:<job>:received`,
set to 0 by the create command, which tells the benchmark the agent is ready).
Tables in memory (faust's default store), no transactions, no results.
"""

from __future__ import annotations

import sys
from typing import Any

import faust
import orjson
import redis.asyncio as aioredis

from schemas.commands import CommandEnvelope, CreateJob, IngestUsers
from streams.settings import Settings


def received_key(settings: Settings, job_id: str) -> str:
    """Redis key: how many users the naive agent accepted for the job so far."""
    return f"{settings.redis_prefix}:naive-ingest:{job_id}:received"


def users_changelog(settings: Settings) -> str:
    """The users table's changelog topic (faust names it `<app id>-<table>-changelog`)."""
    return f"{settings.app_id}-users-changelog"


def build_app(settings: Settings) -> Any:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store="memory://",
        datadir=str(settings.data_dir / "naive-ingest"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
    )
    commands = app.topic(settings.topic_commands, key_type=bytes, value_type=bytes)
    users = app.Table("users", key_type=bytes, value_type=bytes, partitions=settings.partitions)
    received = app.Table(
        "received", key_type=bytes, value_type=bytes, partitions=settings.partitions
    )
    views = aioredis.from_url(settings.redis_url)

    @app.agent(commands)
    async def naive_ingest(stream: Any) -> None:
        async for value in stream:
            command = CommandEnvelope.model_validate_json(value).root
            job = command.job_id.encode()
            if isinstance(command, CreateJob):
                received[job] = b"0"
            elif isinstance(command, IngestUsers):
                count = int(received.get(job) or b"0")
                for user in command.users:
                    key = job + b":" + (user.identity() or str(count)).encode()
                    if key in users:  # a duplicate
                        continue
                    users[key] = orjson.dumps(user.as_sent())
                    count += 1
                received[job] = str(count).encode()
            else:
                continue
            await views.set(received_key(settings, command.job_id), received[job])

    return app


def main() -> None:
    app = build_app(Settings())
    sys.argv = [sys.argv[0], "worker", "--loglevel", "info"]
    app.main()


if __name__ == "__main__":
    main()
