"""patches/read_committed.py: faust's agents never see an aborted record."""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import Producer

from streams.settings import Settings
from tests.streams.runtime.conftest import probe, run, running, runtime_for, until


def _abort_then_commit(settings: Settings) -> None:
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "transactional.id": f"{settings.app_id}-test",
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(settings.topic_progress, value=b"aborted", partition=0)
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(settings.topic_progress, value=b"committed", partition=0)
    producer.commit_transaction(30)


def test_an_agent_sees_the_committed_record_and_not_the_aborted_one(topology: Settings) -> None:
    """A page report of an aborted fan-out transaction must not count."""

    async def scenario() -> list[bytes]:
        runtime = runtime_for(topology)
        seen: list[bytes] = []

        async def handle(event: Any) -> None:
            seen.append(event.message.value)

        probe(runtime, handle)
        async with running(runtime):
            await asyncio.to_thread(_abort_then_commit, topology)
            await until(lambda: b"committed" in seen, 30, "the committed record")
        return seen

    assert run(scenario()) == [b"committed"]
