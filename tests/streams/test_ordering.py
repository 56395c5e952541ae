"""CommandOrder: which command events the aggregate admits, and when it rewinds.

Pure logic: the state is a dict (the faust table's get/set), and the
consumer records the seeks it is asked for, as faust's consumer would do them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from streams.ordering import CommandOrder
from streams.state import cursor_key


@dataclass
class Message:
    offset: int
    partition: int = 3
    topic: str = "bulk.commands"


@dataclass
class Consumer:
    seeks: list[tuple[int, int]] = field(default_factory=list)

    async def seek(self, tp: object, offset: int) -> None:
        self.seeks.append((tp.partition, offset))  # type: ignore[attr-defined]


@dataclass
class App:
    consumer: Consumer = field(default_factory=Consumer)
    consumer_generation_id: int = 1


def _run(order: CommandOrder, offsets: list[int], partition: int = 3) -> list[int]:
    """Feed events in this order; apply those admitted; return what was applied."""

    async def go() -> list[int]:
        applied = []
        for offset in offsets:
            message = Message(offset, partition)
            if await order.admit(message):
                order.applied(message)
                applied.append(offset)
        return applied

    return asyncio.run(go())


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def order(app: App) -> CommandOrder:
    return CommandOrder(app, {})


def test_in_order_and_replays_are_admitted(order: CommandOrder, app: App) -> None:
    assert _run(order, [0, 1, 2, 1, 2, 3]) == [0, 1, 2, 1, 2, 3]
    assert app.consumer.seeks == []
    assert order.state[cursor_key(3)] == b"3"


def test_a_replay_does_not_move_the_cursor_back(order: CommandOrder) -> None:
    _run(order, [0, 1, 2, 3, 1])
    assert order.state[cursor_key(3)] == b"3"


def test_a_skipped_offset_rewinds_and_nothing_is_applied_out_of_order(
    order: CommandOrder, app: App
) -> None:
    # 21 was dropped by the consumer; 22..24 were already fetched when it rewound.
    applied = _run(order, [19, 20, 22, 23, 24, 21, 22, 23, 24, 25])
    assert applied == [19, 20, 21, 22, 23, 24, 25]
    assert app.consumer.seeks == [(3, 21)]


def test_offsets_that_hold_no_command_are_passed_after_one_rewind(
    order: CommandOrder, app: App
) -> None:
    # 11 is a transaction marker: the rewound fetch starts at 12 again.
    applied = _run(order, [10, 12, 13, 12, 13, 14])
    assert applied == [10, 12, 13, 14]
    assert app.consumer.seeks == [(3, 11)]


def test_a_rebalance_forgets_a_pending_rewind(order: CommandOrder, app: App) -> None:
    _run(order, [5, 7])
    app.consumer_generation_id = 2
    # faust seeks to the committed offset after the rebalance; a new gap rewinds again.
    assert _run(order, [8]) == []
    assert app.consumer.seeks == [(3, 6), (3, 6)]
    assert _run(order, [6, 7, 8]) == [6, 7, 8]


def test_partitions_are_independent(app: App) -> None:
    order = CommandOrder(app, {})
    for partition, offset in [(0, 0), (1, 40), (0, 1), (1, 41)]:
        assert _run(order, [offset], partition) == [offset]
    assert app.consumer.seeks == []
