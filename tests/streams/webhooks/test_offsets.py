"""What a webhooks consumer may commit: only below its oldest unsettled record (pure)."""

from __future__ import annotations

from streams.webhooks.offsets import PartitionOffsets


def test_nothing_taken_nothing_to_commit() -> None:
    assert PartitionOffsets().committable() is None


def test_records_without_messages_are_committed_at_once() -> None:
    offsets = PartitionOffsets()
    offsets.take(10, 0)
    offsets.take(11, 0)
    assert offsets.committable() == 12


def test_the_commit_waits_for_every_message_of_the_oldest_open_record() -> None:
    offsets = PartitionOffsets()
    offsets.take(0, 2)  # two endpoints
    offsets.take(1, 1)
    offsets.take(2, 0)
    assert offsets.committable() == 0
    offsets.settle(1)  # a later record settles first: nothing moves
    offsets.settle(0)
    assert offsets.committable() == 0
    assert offsets.unsettled == 1
    offsets.settle(0)
    assert offsets.committable() == 3
    assert offsets.unsettled == 0


def test_a_settle_of_an_unknown_offset_changes_nothing() -> None:
    offsets = PartitionOffsets()
    offsets.take(5, 1)
    offsets.settle(4)
    assert offsets.committable() == 5
