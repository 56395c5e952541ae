"""Which offsets of the sends topic a delivery worker may commit (pure): never past a
send still in hand, whatever order the sends finish in."""

from __future__ import annotations

import random

import pytest

from streams.deliver.progress import CommitTracker


def test_in_order_sends_commit_the_offset_after_the_last() -> None:
    tracker = CommitTracker()
    tracker.assign([0])
    tickets = [tracker.take(0, offset) for offset in range(3)]
    assert tracker.committable() == {}
    for ticket in tickets:
        assert tracker.finish(ticket)
    assert tracker.committable() == {0: 3}
    assert tracker.in_hand() == 0


def test_out_of_order_finishes_never_commit_past_an_unfinished_send() -> None:
    tracker = CommitTracker()
    tracker.assign([0])
    t = [tracker.take(0, offset) for offset in range(5)]
    tracker.finish(t[2])
    tracker.finish(t[3])
    assert tracker.committable() == {}, "offset 0 is still in hand"
    assert tracker.in_hand() == 3
    tracker.finish(t[0])
    assert tracker.committable() == {0: 1}
    tracker.finish(t[1])
    assert tracker.committable() == {0: 4}, "over 1, then the finished 2 and 3"
    tracker.finish(t[4])
    assert tracker.committable() == {0: 5}


def test_a_commit_made_is_not_offered_again_until_the_point_moves() -> None:
    tracker = CommitTracker()
    tracker.assign([0, 1])
    a, b = tracker.take(0, 10), tracker.take(1, 7)
    tracker.finish(a)
    tracker.finish(b)
    assert tracker.committable() == {0: 11, 1: 8}
    assert tracker.committable([1]) == {1: 8}
    tracker.committed({0: 11})
    assert tracker.committable() == {1: 8}
    tracker.committed({1: 8})
    assert tracker.committable() == {}
    tracker.finish(tracker.take(0, 11))
    assert tracker.committable() == {0: 12}


def test_gaps_in_offsets_are_passed_over() -> None:
    """A transactional topic's commit markers take offsets no consumer sees."""
    tracker = CommitTracker()
    tracker.assign([3])
    for offset in (0, 1, 3, 4, 9):
        tracker.finish(tracker.take(3, offset))
    assert tracker.committable() == {3: 10}


def test_partitions_are_independent() -> None:
    tracker = CommitTracker()
    tracker.assign([0, 1])
    slow, fast = tracker.take(0, 0), tracker.take(1, 0)
    tracker.finish(fast)
    assert tracker.committable() == {1: 1}
    assert tracker.in_hand(0) == 1
    assert tracker.in_hand(1) == 0
    tracker.finish(slow)
    assert tracker.committable() == {0: 1, 1: 1}


def test_a_revoked_partition_forgets_its_sends_and_a_new_assignment_starts_afresh() -> None:
    tracker = CommitTracker()
    tracker.assign([0, 1])
    old = tracker.take(0, 5)
    tracker.revoke([0])
    assert tracker.held() == [1]
    assert not tracker.finish(old), "revoked: its finish does not count"
    tracker.assign([0])
    assert not tracker.finish(old), "nor in the next generation of the partition"
    assert tracker.committable() == {}
    tracker.finish(tracker.take(0, 5))
    assert tracker.committable() == {0: 6}


def test_a_record_read_again_starts_a_new_generation() -> None:
    """The consumer went back (to the committed offset): the sends after it come again."""
    tracker = CommitTracker()
    tracker.assign([0])
    first = tracker.take(0, 4)
    second = tracker.take(0, 5)
    again = tracker.take(0, 4)
    assert not tracker.finish(second)
    assert not tracker.finish(first)
    assert tracker.committable() == {}
    tracker.finish(again)
    assert tracker.committable() == {0: 5}


@pytest.mark.parametrize("seed", range(20))
def test_random_finishing_orders_commit_exactly_the_finished_prefix(seed: int) -> None:
    rng = random.Random(seed)
    tracker = CommitTracker()
    tracker.assign([0])
    offsets = sorted(rng.sample(range(400), 120))
    tickets = [tracker.take(0, offset) for offset in offsets]
    order = list(range(len(tickets)))
    rng.shuffle(order)
    finished: set[int] = set()
    for i in order:
        tracker.finish(tickets[i])
        finished.add(i)
        prefix = 0
        while prefix in finished:
            prefix += 1
        expected = {0: offsets[prefix - 1] + 1} if prefix else {}
        assert tracker.committable() == expected
        assert tracker.in_hand() == len(tickets) - len(finished)
