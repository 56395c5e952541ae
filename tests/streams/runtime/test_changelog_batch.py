"""patches/changelog_batch.py: a table writes many keys at once: each in its family of
the partition's store, and to the changelog after every record faust was given before
(and before every record after), in record batches as large as the producer's; the
next commit waits for them, faust's persisted offset ends at the last, and a new owner
of the partition restores them."""

from __future__ import annotations

import asyncio
import os

from confluent_kafka import Consumer, TopicPartition
from faust.types import TP

from streams.aggregate.command_feed import CommandMessage
from streams.aggregate.pipeline import STATE_FAMILIES
from streams.aggregate.state import PARTITION_KEYS, cursor_key, delivery_key, outcomes_key
from streams.runtime.access import partition_db
from streams.runtime.app import Runtime, deliveries_of
from streams.runtime.patches.current_event import in_event
from streams.settings import Settings
from tests.streams.runtime.conftest import end_offset, run, running, runtime_for

PARTITION = 3
JOB = "1-changelogbatch"
BEFORE = 2000  # faust's own records, still in its buffer when the batch is given
BLOCKS = 300
BLOCK_BYTES = 8 * 1024  # random: 300 of them fill more than two 1 MiB record batches


def changelog(settings: Settings, runtime: Runtime) -> list[tuple[bytes, bytes]]:
    """The (key, value) of each record of the state's changelog partition, in order."""
    topic = runtime.state.changelog_topic.get_topic_name()
    end = end_offset(settings, topic, PARTITION)
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "batch-probe"}
    )
    records: list[tuple[bytes, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, PARTITION, 0)])
        while len(records) < end:
            message = consumer.poll(10)
            assert message is not None, f"the changelog ended at {len(records)} of {end}"
            assert message.error() is None, message.error()
            records.append((message.key() or b"", message.value() or b""))
    finally:
        consumer.close()
    return records


def blocks() -> list[tuple[bytes, bytes]]:
    written = [(outcomes_key(JOB, n), os.urandom(BLOCK_BYTES)) for n in range(BLOCKS)]
    return [*written, (delivery_key(JOB), b'{"counts":{},"upto":7}')]


def test_a_batch_goes_in_order_with_fausts_records_and_is_restored(topology: Settings) -> None:
    written = blocks()
    event = CommandMessage(topology.topic_commands, PARTITION, 0, None, None)

    async def scenario() -> tuple[list[tuple[bytes, bytes]], list[bytes | None], bool, int | None]:
        runtime = runtime_for(topology, key_families=STATE_FAMILIES)
        async with running(runtime):
            state = runtime.state
            with in_event(event):
                for n in range(BEFORE):
                    state[b"%s\0before-%d" % (JOB.encode(), n)] = b"x"
                done = state.set_many(PARTITION, written)
                state[cursor_key(PARTITION)] = b"after"
            local = [partition_db(state, PARTITION).get(key) for key, _ in written]
            # The next commit (and cursor) waits for the batch.
            await deliveries_of(runtime.app).settled()
            acknowledged = done.done() and done.exception() is None
            records = await asyncio.to_thread(changelog, topology, runtime)
            persisted = state.data.persisted_offset(
                TP(state.changelog_topic.get_topic_name(), PARTITION)
            )
        return records, local, acknowledged, persisted

    records, local, acknowledged, persisted = run(scenario())
    assert acknowledged
    assert local == [value for _, value in written]
    before = [(b"%s\0before-%d" % (JOB.encode(), n), b"x") for n in range(BEFORE)]
    assert records == [*before, *written, (cursor_key(PARTITION), b"after")]
    # faust's own record after the batch (the cursor) may be acknowledged first.
    assert persisted in (BEFORE + len(written) - 1, BEFORE + len(written))

    async def restored() -> tuple[list[bytes | None], bytes | None]:
        runtime = runtime_for(topology, worker_id="w2", key_families=STATE_FAMILIES)
        async with running(runtime):
            db = partition_db(runtime.state, PARTITION)
            keys = partition_db(runtime.state, PARTITION, PARTITION_KEYS)
            return [db.get(key) for key, _ in written], keys.get(cursor_key(PARTITION))

    values, cursor = run(restored())
    assert values == [value for _, value in written]
    assert cursor == b"after"
