"""Patch: no offset is committed before the records its events sent are in Kafka.

Upstream: faust-streaming#273 made the consumer flush the producer before it
commits, but the flush of faust's producer buffer (`ProducerBuffer.flush_atmost`,
0.15.3 and master) gives up as soon as one record takes more than 0.1 s to be
handed over, and the commit goes on.

Failure it prevents: state lost on a crash. Under load, table changelog
records (and the results, events and dead letters sent beside them) were
still unsent when the offset of the event that made them was committed: we
measured 32 % of 100k changelog records. Every such record is tracked in the
app's `Deliveries` here, and the consumer awaits all of them before it
commits any offset; the command feed does the same before it writes a cursor.

Regression test: tests/streams/runtime/test_durable_commit.py: the consumer
commits only once a tracked delivery is acknowledged, and every changelog
record of a committed event is in Kafka. Showing faust's own flush give up
needs a broker that takes over 0.1 s to take one record; the test broker is
shared and fast, and nothing here may throttle it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from functools import cached_property
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver


class Deliveries:
    """Records sent but not yet acknowledged by the broker: changelog records,
    command results, job events, dead letters.

    An agent never waits for its own sends: the next event goes on while they
    travel, and the consumer waits for all of them before its next commit.
    """

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[Any]] = set()

    def track(self, future: asyncio.Future[Any]) -> None:
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def send(self, sending: Awaitable[asyncio.Future[Any]]) -> None:
        """Queue a faust send (`topic.send(...)`) to be acknowledged before the next commit."""
        self.track(await sending)

    def settled(self) -> Awaitable[Any]:
        """Every record tracked until now (the call, not the await) is in Kafka (raises
        if one failed)."""
        return asyncio.gather(*self._pending)


class HasDeliveries(faust.App):
    """A faust app with `Deliveries`."""

    @cached_property
    def deliveries(self) -> Deliveries:
        return Deliveries()


def deliveries_of(app: Any) -> Deliveries:
    """The `Deliveries` of an app (faust types its components' app as AppT)."""
    return cast(HasDeliveries, app).deliveries


async def delivered(sending: Awaitable[Any]) -> Any:
    """Send with faust and wait until the broker acknowledged the record.

    For a send outside any event (a timer's), or one that must land before
    the event goes on; an event's own records go through `Deliveries.send`."""
    return await (await sending)


class CommitAfterDeliveries(aiokafka_driver.Consumer):
    """faust's consumer, committing offsets only once every tracked record is in Kafka."""

    # The offsets about to be committed are of events already acked, whose
    # records were tracked before their ack: awaiting what is tracked now covers them.
    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        await deliveries_of(self.app).settled()
        return bool(await super()._commit_offsets(offsets, start_new_transaction))


class TrackedChangelog(faust.Table):  # type: ignore[type-arg]
    """A faust table whose changelog records are tracked in the app's `Deliveries`."""

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        deliveries_of(self.app).track(future)
        return future
