"""Patch: a table writes many keys at once, in one RocksDB write batch and one
changelog record batch, in the order of the records faust was given before.

Upstream: none (a missing feature, not a fault): faust writes a table a key
at a time (`Table.__setitem__`, 0.15.3 and master). Each key's changelog
record is a `FutureMessage` put in the producer's buffer, taken by a task,
handed to aiokafka's `send` alone (its sensors, its debug log line, a future
a record), acknowledged by a callback that writes faust's persisted offset
to RocksDB again; its local write finds the event's partition and the key's
family anew.

Failure it prevents: the delivery fold's event loop spending about a quarter
of its time in that path. A batch of reports rewrites its blocks of message
states (64 messages a record): py-spy over the OPENED round of `python -m
bench --only outcomes --profile` found the table's writes (12 %), faust's
buffer handing records to aiokafka (11 %) and their callbacks (1 %) among
the loop's samples.

`set_many` writes the keys locally at once, then puts one item in faust's
producer buffer: when the buffer's task reaches it (after every record put
before, before every record put after), it appends the records to aiokafka
as record batches of the changelog partition, so the changelog holds faust's
writes and these in the order they were made locally, which is what a
restored store relies on (`streams.aggregate.outcomes`: a prefix of the
sequence of writes). Once Kafka has them all, faust's persisted offset is set
to the last one's. The batch's future is tracked in the app's `Deliveries`
(`durable_commit`), so no commit and no cursor passes it. faust's sensors do
not see these writes. Not for a table in a transaction (exactly_once), which
bulkstream never runs.

Regression test: tests/streams/runtime/test_changelog_batch.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streams.runtime.patches.durable_commit import deliveries_of

log = logging.getLogger(__name__)


class BatchedChangelog(faust.Table):  # type: ignore[type-arg]
    """A faust table (bytes keys and values, the raw codec) that writes many keys at once."""

    def set_many(
        self, partition: int, items: Sequence[tuple[bytes, bytes]]
    ) -> asyncio.Future[None]:
        """Write these keys in the partition: in its store now (`FamilyStore.put_many`),
        in its changelog after every record faust was given before. The future is done
        once Kafka has every record (also awaited by the next commit)."""
        if self.app.in_transaction or self.app.conf.producer_threaded:
            raise NotImplementedError("set_many: for a table out of transactions, in the loop")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not items:
            done.set_result(None)
            return done
        self.data.put_many(partition, items)  # type: ignore[attr-defined]
        deliveries_of(self.app).track(done)
        self.app.producer.buffer.put(_ChangelogBatch(self, partition, items, done))  # type: ignore[arg-type]
        return done


class _ChangelogBatch:
    """One item of faust's producer buffer: the buffer's task awaits
    `item.message.channel.publish_message(item)` (`ProducerBuffer._send_pending`)."""

    def __init__(
        self,
        table: BatchedChangelog,
        partition: int,
        items: Sequence[tuple[bytes, bytes]],
        done: asyncio.Future[None],
    ) -> None:
        self.table, self.partition, self.items, self.done = table, partition, items, done
        self.message = SimpleNamespace(channel=self)

    async def publish_message(self, item: Any, wait: bool = False) -> None:
        # Never raises: the buffer's task would end, and faust's writes with it.
        try:
            sent, last_count = await self.append()
        except Exception as exc:  # the commit awaiting `done` fails with it
            log.warning("changelog batch of %d records not sent: %r", len(self.items), exc)
            self.done.set_exception(exc)
            return
        asyncio.gather(*sent).add_done_callback(partial(self.acknowledged, last_count))

    async def append(self) -> tuple[list[asyncio.Future[Any]], int]:
        """Append the records to aiokafka as record batches (each as large as the
        producer's batches); answer each batch's future and the last one's records."""
        # aiokafka's producer, which faust's driver keeps private.
        producer = cast(aiokafka_driver.Producer, self.table.app.producer)._producer
        assert producer is not None  # faust's producer runs while its buffer does
        topic = self.table.changelog_topic.get_topic_name()
        sent: list[asyncio.Future[Any]] = []
        batch = producer.create_batch()
        for key, value in self.items:
            if batch.append(key=key, value=value, timestamp=None) is None:
                sent.append(await producer.send_batch(batch, topic, partition=self.partition))
                # An empty batch takes any record (one larger than a batch goes alone).
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        sent.append(await producer.send_batch(batch, topic, partition=self.partition))
        # Counted before faust's next records can join the batch (acknowledged with it).
        return sent, batch.record_count()

    def acknowledged(self, last_count: int, sent: asyncio.Future[list[Any]]) -> None:
        if sent.cancelled():
            self.done.cancel()
            return
        error = sent.exception()
        if error is not None:
            self.done.set_exception(error)
            return
        self.done.set_result(None)
        last = sent.result()[-1]
        # As faust's `_on_changelog_sent` does a record. Below an offset set already
        # (faust's records after the batch, acknowledged first), a restore only reads
        # those records again.
        self.table.data.set_persisted_offset(
            TP(last.topic, last.partition), last.offset + last_count - 1
        )
