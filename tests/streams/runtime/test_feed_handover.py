"""patches/feed_handover.py: the feed pauses before faust revokes partitions (while
events still flow and the state is open), and stops before faust stops."""

from __future__ import annotations

from typing import Any

from streams.runtime.access import held_partitions
from streams.runtime.app import Runtime
from streams.settings import Settings
from tests.streams.runtime.conftest import run, running, runtime_for, settled, until


class ProbeFeed:
    """A feed that writes down what faust asked of it, and when."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.log: list[str] = []

    async def pause(self) -> None:
        flowing = self.runtime.app.flow_control.is_active()
        self.log.append("pause (flowing)" if flowing else "pause (suspended)")

    async def stop(self) -> None:
        self.log.append("stop")

    def lags(self) -> list[tuple[str, int, int]]:
        return []


def test_the_feed_is_paused_first_when_a_worker_joins_and_stopped_first(
    topology: Settings,
) -> None:
    async def scenario() -> list[str]:
        first = runtime_for(topology, "w1")
        feed = ProbeFeed(first)
        first.app.feed = feed

        @first.app.on_partitions_revoked.connect
        async def revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            feed.log.append("faust revoked")

        second = runtime_for(topology, "w2")
        async with running(first):
            feed.log.clear()  # what the first assignment did
            everything = held_partitions(first.app, first.state)
            async with running(second):
                await until(
                    lambda: settled(first) and held_partitions(first.app, first.state) < everything,
                    60,
                    "the second worker to take partitions",
                )
        return feed.log

    log = run(scenario())
    assert log[:2] == ["pause (flowing)", "faust revoked"], log
    assert "stop" in log, log
