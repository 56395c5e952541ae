"""Patch: the command feed, read outside faust's streams, hands its partitions over
before faust does.

Upstream: none; faust knows nothing of input it does not fetch itself. It
waits for its own streams before it revokes partitions or stops
(`App.on_partitions_revoked`, `stream_wait_empty`), then closes the state of
the partitions revoked. The command feed (streams/aggregate/command_feed.py)
reads `bulk.commands` through librdkafka and writes that state.

Failure it prevents: a command applied into a partition's state after faust
revoked (and closed) it, or its cursor never written, so the next owner
applies again every command since the last checkpoint. Hooked here, the feed
finishes the command in hand, writes and awaits its cursors, and reads nothing
more until the next assignment is restored.

Regression test: tests/streams/runtime/test_feed_handover.py (the whole
stack: tests/streams/test_command_feed.py).
"""

from __future__ import annotations

from typing import Any, Protocol

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver


class Feed(Protocol):
    """Input the app reads outside faust's streams (the command feed)."""

    async def pause(self) -> None:
        """Finish the work in hand and hold until the next assignment is restored."""

    async def stop(self) -> None:
        """Finish the work in hand and read no more."""

    def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records not yet applied) of each partition read."""


class StopFeedFirst(faust.App):
    """A faust app that stops its feed before it stops itself."""

    feed: Feed | None = None

    async def on_stop(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        await super().on_stop()


class PauseFeedOnRevoke(aiokafka_driver.Consumer):
    """faust's consumer, pausing the app's feed before it revokes partitions."""

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        feed: Feed | None = getattr(self.app, "feed", None)
        if feed is not None:
            await feed.pause()
        await super().on_partitions_revoked(revoked)
