"""Probe: the event loop's CPU to record what a million-report round of the delivery
fold writes to the state, a key at a time (faust's `Table.__setitem__`) and with
`DurableTable.set_many` (streams/runtime/patches/changelog_batch.py).

`python -m bench.changelog_batch [ROUNDS]`: the worker's faust app and state table
(`streams.runtime.app.create_runtime`, on topics of its own on the local broker);
15,625 blocks of 64 messages' DELIVERED states, written as the fold's batches of
10,000 reports write them (156 blocks and the job's summary each), until Kafka has
them all; each way ROUNDS times (default 3), alternating. Prints the wall time and
the loop's thread CPU of each. The topics are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

from confluent_kafka.admin import AdminClient

from schemas.delivery import DeliveryStatus
from streams.aggregate.command_feed import CommandMessage
from streams.aggregate.outcomes import BLOCK, Stored, encode_block
from streams.aggregate.pipeline import STATE_FAMILIES
from streams.aggregate.state import delivery_key, outcomes_key
from streams.kafka.topics import ensure_topics
from streams.runtime.app import DurableTable, create_runtime, deliveries_of
from streams.runtime.patches.current_event import in_event
from streams.settings import Settings

BLOCKS = 1_000_000 // BLOCK
PER_BATCH = 10_000 // BLOCK
PARTITION = 0
AT = 1_796_000_000_000
SENT, DELIVERED = DeliveryStatus.SENT, DeliveryStatus.DELIVERED


def block(number: int) -> bytes:
    """A block of messages SENT then DELIVERED, as a DELIVERED round writes it."""
    first = number * BLOCK
    return encode_block(
        {
            p: Stored(
                {SENT: (AT + p, None, None), DELIVERED: (AT + p + 500, None, None)},
                number,
                {SENT: (AT + p, None, None)},
            )
            for p in range(first, first + BLOCK)
        }
    )


async def record(state: DurableTable, event: CommandMessage, job: str, batched: bool) -> None:
    """Write a round's blocks and summaries as the fold's batches do, one batch a turn
    of the loop."""
    values = [block(n) for n in range(PER_BATCH)]
    for start in range(0, BLOCKS, PER_BATCH):
        numbers = range(start, min(start + PER_BATCH, BLOCKS))
        items = [(outcomes_key(job, n), values[n - start]) for n in numbers]
        items.append((delivery_key(job), b'{"counts":{"DELIVERED":%d},"upto":%d}' % (start, start)))
        with in_event(event):
            if batched:
                state.set_many(PARTITION, items)
            else:
                for key, value in items:
                    state[key] = value
        await asyncio.sleep(0)


async def probe(settings: Settings, rounds: int) -> None:
    runtime = create_runtime(settings, STATE_FAMILIES)
    app = runtime.app
    await app.start()
    try:
        await cast(Any, app.tables).recovery.completed.wait()  # faust types it loosely
        event = CommandMessage(settings.topic_commands, PARTITION, 0, None, None)
        for n in range(rounds):
            for batched in (False, True):
                wall, cpu = time.perf_counter(), time.thread_time()
                await record(runtime.state, event, f"1-probe{n}{int(batched)}", batched)
                await deliveries_of(app).settled()
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                how = "set_many      " if batched else "a key at a time"
                print(f"round {n + 1}, {how}: {wall:.2f} s, loop CPU {cpu:.2f} s", flush=True)
    finally:
        await app.stop()


def main(rounds: int) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = {
        name: f"probe-{tag}.{name}" for name in Settings.model_fields if name.startswith("topic_")
    }
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings().model_copy(
            update={**topics, "app_id": f"probe-{tag}", "data_dir": Path(folder)}
        )
        ensure_topics(settings)
        print(f"{BLOCKS:,} blocks of {BLOCK} messages, {PER_BATCH} and a summary a batch")
        try:
            asyncio.run(probe(settings, rounds))
        finally:
            admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
            faust = [f"{settings.app_id}-state-changelog", f"{settings.app_id}-__assignor-__leader"]
            names = [*topics.values(), *faust]
            admin.delete_topics(names)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
