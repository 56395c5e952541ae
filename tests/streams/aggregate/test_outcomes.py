"""The delivery fold's rules, in memory: order-free, duplicate-free, exact after a crash."""

from __future__ import annotations

import itertools
import random

import pytest

from schemas.delivery import DELIVERY_ORDER, DeliveryStatus
from streams.aggregate.outcomes import (
    BLOCK,
    Report,
    Reported,
    Stored,
    Summary,
    block_of,
    decode_block,
    encode_block,
    fold,
    fold_batch,
    status_of,
)

S = DeliveryStatus


def report(status: DeliveryStatus, at: int = 1, reason: str | None = None) -> Report:
    return Report("1-00000000-" + "0" * 24, "j", status, at, reason)


class Store:
    """The state table, as the agent uses it: blocks of message states and a summary.
    Every write is logged, so a test can cut the log where a worker died."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[int, Stored]] = {}
        self.summary = Summary()
        self.log: list[tuple[str, tuple[int, bytes] | bytes]] = []

    def stored(self, position: int) -> Stored | None:
        return self.blocks.get(block_of(position), {}).get(position)

    def apply(self, batch: list[Reported]) -> list[tuple[int, DeliveryStatus | None, S]]:
        folded = fold_batch(self.summary, self.stored, batch)
        if folded.changed:
            touched: dict[int, dict[int, Stored]] = {}
            for position, state in folded.changes.items():
                touched.setdefault(block_of(position), {})[position] = state
            for block, changes in touched.items():
                merged = {**self.blocks.get(block, {}), **changes}
                raw = encode_block(merged)
                self.blocks[block] = decode_block(raw)
                self.log.append(("block", (block, raw)))
            self.summary = folded.summary
            self.log.append(("summary", folded.summary.to_bytes()))
        return [(r.position, r.previous, r.report.status) for r in folded.raised]

    @classmethod
    def replayed(cls, log: list[tuple[str, tuple[int, bytes] | bytes]]) -> Store:
        """The state a worker finds after these writes (a prefix of another's)."""
        store = cls()
        for kind, value in log:
            if isinstance(value, tuple):
                block, raw = value
                store.blocks[block] = decode_block(raw)
            else:
                store.summary = Summary.from_bytes(value)
            store.log.append((kind, value))
        return store

    def counts(self) -> dict[str, int]:
        return self.summary.view()

    def statuses(self) -> dict[int, DeliveryStatus | None]:
        return {
            position: status_of(state.as_of(self.summary.upto))
            for block in self.blocks.values()
            for position, state in block.items()
        }


def stream(seed: int, messages: int = 150, per_message: int = 4) -> list[Reported]:
    """Reports of `messages` messages in a shuffled order, some of them twice."""
    rng = random.Random(seed)
    reports = []
    for position in range(messages):
        for _ in range(rng.randint(1, per_message)):
            status = rng.choice(list(S))
            reports.append((position, report(status, rng.randint(1, 50), rng.choice([None, "x"]))))
    reports += rng.sample(reports, len(reports) // 5)  # duplicates
    rng.shuffle(reports)
    return [Reported(offset, position, r) for offset, (position, r) in enumerate(reports)]


def expected(reports: list[Reported]) -> tuple[dict[str, int], dict[int, DeliveryStatus]]:
    """The truth: each message in the highest state reported, counted once."""
    highest: dict[int, DeliveryStatus] = {}
    rank = {s: i for i, s in enumerate(DELIVERY_ORDER)}
    for item in reports:
        now = highest.get(item.position)
        if now is None or rank[item.report.status] > rank[now]:
            highest[item.position] = item.report.status
    counts = {s.value: 0 for s in S}
    for status in highest.values():
        counts[status.value] += 1
    return counts, highest


def in_batches(reports: list[Reported], seed: int) -> list[list[Reported]]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(reports):
        n = rng.randint(1, 40)
        out.append(reports[i : i + n])
        i += n
    return out


def test_the_order_of_states() -> None:
    assert DELIVERY_ORDER == (S.SENT, S.FAILED, S.UNDELIVERABLE, S.DELIVERED, S.OPENED, S.CLICKED)


def test_a_late_report_never_moves_a_message_back() -> None:
    reached = fold({}, report(S.DELIVERED, at=5))
    assert reached is not None
    later = fold(reached, report(S.SENT, at=3))
    assert later is not None  # the time it was sent is kept ...
    assert status_of(later) is S.DELIVERED  # ... but it stays DELIVERED
    assert fold(later, report(S.FAILED, at=9)) is not None
    assert status_of(fold(later, report(S.FAILED, at=9)) or {}) is S.DELIVERED


def test_a_report_seen_twice_changes_nothing() -> None:
    reached = fold({}, report(S.SENT, at=5, reason="a"))
    assert reached is not None
    assert fold(reached, report(S.SENT, at=5, reason="a")) is None
    assert fold(reached, report(S.SENT, at=7)) is None  # later: the first is kept
    assert fold(reached, report(S.SENT, at=2)) == {S.SENT: (2, None, None)}


@pytest.mark.parametrize("seed", range(5))
def test_counts_are_exact_in_any_order_and_batching(seed: int) -> None:
    reports = stream(seed)
    counts, highest = expected(reports)
    for batching in (seed, seed + 100):
        store = Store()
        for batch in in_batches(reports, batching):
            store.apply(batch)
        assert store.counts() == counts
        assert store.statuses() == highest
        assert sum(store.counts().values()) == len(highest)
    reordered = sorted(reports, key=lambda r: -r.offset)
    store = Store()
    for offset, item in enumerate(reordered):
        store.apply([Reported(offset, item.position, item.report)])
    assert store.counts() == counts


def test_one_event_per_state_reached_upwards() -> None:
    store = Store()
    raised = store.apply(
        [
            Reported(0, 7, report(S.SENT)),
            Reported(1, 7, report(S.SENT)),
            Reported(2, 7, report(S.DELIVERED)),
            Reported(3, 7, report(S.FAILED)),
            Reported(4, 7, report(S.CLICKED)),
        ]
    )
    assert raised == [(7, None, S.SENT), (7, S.SENT, S.DELIVERED), (7, S.DELIVERED, S.CLICKED)]
    assert store.apply([Reported(5, 7, report(S.OPENED))]) == []


def test_reports_at_or_below_the_last_folded_are_skipped() -> None:
    store = Store()
    store.apply([Reported(10, 1, report(S.SENT))])
    assert store.summary.upto == 10
    assert store.apply([Reported(9, 2, report(S.SENT)), Reported(10, 1, report(S.SENT))]) == []
    assert store.counts()["SENT"] == 1


@pytest.mark.parametrize("seed", range(4))
def test_exact_after_a_crash_at_any_write(seed: int) -> None:
    """A worker dies after any prefix of its writes (its own store, or the changelog
    another restores); whoever goes on reads every report after the last summary
    again, batched differently, and ends exactly where no crash would have."""
    reports = stream(seed, messages=3 * BLOCK, per_message=3)
    counts, highest = expected(reports)
    whole = Store()
    for batch in in_batches(reports, seed):
        whole.apply(batch)
    assert whole.counts() == counts
    cuts = range(len(whole.log) + 1)
    for cut in itertools.islice(cuts, 0, None, max(1, len(whole.log) // 40)):
        survivor = Store.replayed(whole.log[:cut])
        again = [item for item in reports if item.offset > survivor.summary.upto]
        for batch in in_batches(again, seed + cut):
            survivor.apply(batch)
        assert survivor.counts() == counts, f"cut at write {cut}"
        assert survivor.statuses() == highest, f"cut at write {cut}"


def test_stored_states_round_trip() -> None:
    state = Stored({S.SENT: (1, None, "p"), S.FAILED: (2, "r", None)}, 7, {S.SENT: (1, None, "p")})
    assert decode_block(encode_block({3: state})) == {3: state}
    assert Summary.from_bytes(Summary({S.SENT: 2}, 4).to_bytes()) == Summary({S.SENT: 2}, 4)


def test_a_block_is_stored_without_trailing_nulls_and_before_as_a_count() -> None:
    states = {
        3: Stored({S.SENT: (1, None, "p")}, 4, {}),
        70: Stored(
            {S.SENT: (1, None, None), S.FAILED: (2, "bounced", None)}, 4, {S.SENT: (1, None, None)}
        ),
        # A state before that is not the first states now (a SENT reported earlier): whole.
        71: Stored({S.SENT: (0, None, None)}, 4, {S.SENT: (1, None, None)}),
        72: Stored(
            {S.DELIVERED: (5, None, None), S.SENT: (1, "x", "p")}, 4, {S.SENT: (1, "x", "p")}
        ),
    }
    raw = (
        b'{"3":[{"SENT":[1,null,"p"]},4,0],'
        b'"70":[{"SENT":[1],"FAILED":[2,"bounced"]},4,1],'
        b'"71":[{"SENT":[0]},4,{"SENT":[1]}],'
        b'"72":[{"DELIVERED":[5],"SENT":[1,"x","p"]},4,{"SENT":[1,"x","p"]}]}'
    )
    assert encode_block(states) == raw
    assert decode_block(raw) == states


def test_a_block_written_by_an_earlier_release_reads_the_same() -> None:
    """Every null written and `before` whole, as releases before 2026-12-06 kept them."""
    raw = (
        b'{"3":[{"SENT":[1,null,"p"]},4,{}],'
        b'"70":[{"SENT":[1,null,null],"FAILED":[2,"bounced",null]},4,{"SENT":[1,null,null]}]}'
    )
    assert decode_block(raw) == {
        3: Stored({S.SENT: (1, None, "p")}, 4, {}),
        70: Stored(
            {S.SENT: (1, None, None), S.FAILED: (2, "bounced", None)}, 4, {S.SENT: (1, None, None)}
        ),
    }


def test_a_state_before_of_more_states_than_now_is_refused() -> None:
    with pytest.raises(ValueError, match="before"):
        decode_block(b'{"3":[{"SENT":[1]},4,2]}')
