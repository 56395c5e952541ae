"""Delivery outcomes, pure: a message's state folded from its reports, a job's counts.

A message's state keeps, for each delivery state it was reported in, the first
report of it (earliest `at`, then the smaller reason and provider): folding
a report is a join, so the state is the same whatever order the reports came
in and however often each came. Its status is the highest state reached
(`schemas.delivery` orders them): a late report never moves it back. A job's
counts are how many of its messages have each status.

Exact across a crash. Message states are kept in blocks of positions, and a
batch of reports writes the blocks it changed, then the job's summary (the
counts and `upto`, the offset of the last report folded), all through the
state table: the local store and the changelog each hold a prefix of that
sequence of writes, wherever a worker died. So each stored state carries
`by` (the `upto` of the batch that wrote it) and `before` (what it was before
that batch): a state whose `by` is beyond the summary's `upto` belongs to the
one batch after it, was never counted, and reads as its `before`. Reports up
to `upto` are skipped; those after are folded again, from the same states, to
the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, NamedTuple

import orjson

from schemas.delivery import RANK, DeliveryStatus

# state -> [at, reason, provider] of its first report
Reached = dict[DeliveryStatus, tuple[int, str | None, str | None]]
# A state's name -> the state: a dict lookup, where `DeliveryStatus(name)` runs Python.
STATUSES: dict[str, DeliveryStatus] = {status.value: status for status in DeliveryStatus}


class Report(NamedTuple):
    """A delivery report as the fold reads it (`streams.aggregate.reports` decodes it
    from the wire, where `schemas.delivery.DeliveryReport` defines it)."""

    message_id: str
    job_id: str
    status: DeliveryStatus
    at: int
    reason: str | None = None
    provider: str | None = None
    tenant: str | None = None


def status_of(reached: Reached) -> DeliveryStatus | None:
    """The highest state reached (None: no report yet)."""
    if len(reached) == 1:  # most messages: one report, or one state reported again
        return next(iter(reached))
    return max(reached, key=RANK.__getitem__) if reached else None


def _order(first: tuple[int, str | None, str | None]) -> tuple[int, str, str]:
    at, reason, provider = first
    return at, reason or "", provider or ""


def fold(reached: Reached, report: Report) -> Reached | None:
    """The state with this report folded in; None when it changes nothing."""
    first = (report.at, report.reason, report.provider)
    known = reached.get(report.status)
    if known is not None and _order(known) <= _order(first):
        return None
    return {**reached, report.status: first}


class Stored(NamedTuple):
    """A message's state as kept: `by` the batch that wrote it, `before` that batch.

    Its JSON is `[reached, by, before]`, `reached` an object of state name ->
    `[at, reason, provider]` without trailing nulls (`[at]` for most), `before`
    the count of `reached`'s first states it is (most messages: a batch adds states
    after those the message had), else an object like `reached`. Earlier releases
    wrote every null and `before` whole: read the same."""

    reached: Reached
    by: int
    before: Reached

    def as_of(self, upto: int) -> Reached:
        """The state as the summary folded up to `upto` counts it."""
        return self.reached if self.by <= upto else self.before

    @classmethod
    def from_json(cls, raw: Sequence[Any]) -> Stored:
        reached, before = _reached_from(raw[0]), raw[2]
        if isinstance(before, dict):
            return cls(reached, int(raw[1]), _reached_from(before))
        if not 0 <= before <= len(reached):
            raise ValueError(f"a state before of {before} states, of {len(reached)} now")
        return cls(reached, int(raw[1]), dict(islice(reached.items(), before)))

    def to_json(self) -> tuple[dict[DeliveryStatus, tuple[Any, ...]], int, Any]:
        """What `encode_block` writes of it: `before` as a count when it can be."""
        count = len(self.before)
        prefix = list(islice(self.reached.items(), count)) == list(self.before.items())
        return _reached_json(self.reached), self.by, count if prefix else _reached_json(self.before)


def _reached_from(raw: dict[str, list[Any]]) -> Reached:
    return {
        STATUSES[name]: (int(v[0]), v[1] if len(v) > 1 else None, v[2] if len(v) > 2 else None)
        for name, v in raw.items()
    }


def _reached_json(reached: Reached) -> dict[DeliveryStatus, tuple[Any, ...]]:
    """`[at, reason, provider]` of each state, without the trailing nulls."""
    return {status: _first_json(*first) for status, first in reached.items()}


def _first_json(at: int, reason: str | None, provider: str | None) -> tuple[Any, ...]:
    if provider is not None:
        return at, reason, provider
    return (at,) if reason is None else (at, reason)


@dataclass
class Summary:
    """A job's delivery counts (messages per status) and the last report offset folded."""

    counts: dict[DeliveryStatus, int] = field(default_factory=dict)
    upto: int = -1

    def to_bytes(self) -> bytes:
        counts = {status.value: n for status, n in self.counts.items() if n}
        return orjson.dumps({"counts": counts, "upto": self.upto})

    @classmethod
    def from_bytes(cls, raw: bytes) -> Summary:
        data = orjson.loads(raw)
        counts = {STATUSES[name]: int(n) for name, n in data["counts"].items()}
        return cls(counts, int(data["upto"]))

    def view(self) -> dict[str, int]:
        """The job view's `delivery`: every state, with its count (absolute)."""
        return {status.value: self.counts.get(status, 0) for status in DeliveryStatus}


class Reported(NamedTuple):
    """One report to fold: its offset, its message's position in the job, the report."""

    offset: int
    position: int
    report: Report


class Raised(NamedTuple):
    """A message reached a higher state: what its message event says."""

    position: int
    report: Report
    previous: DeliveryStatus | None


@dataclass
class Folded:
    """What folding a batch of one job's reports does."""

    summary: Summary
    changes: dict[int, Stored]  # position -> its new state, to write
    raised: list[Raised]  # in report order

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def fold_batch(
    summary: Summary, stored: Callable[[int], Stored | None], batch: Sequence[Reported]
) -> Folded:
    """Fold one job's reports (in offset order) into its summary and message states.

    `stored(position)` reads a message's kept state. Reports at or below the
    summary's `upto` were folded already and are skipped."""
    upto = summary.upto
    fresh = [item for item in batch if item.offset > upto]
    if not fresh:
        return Folded(summary, {}, [])
    counts = dict(summary.counts)
    before: dict[int, Reached] = {}
    now: dict[int, Reached] = {}
    raised: list[Raised] = []
    for item in fresh:
        position = item.position
        if position not in now:
            kept = stored(position)
            start = kept.as_of(upto) if kept is not None else {}
            before[position], now[position] = start, start
        current = now[position]
        folded = fold(current, item.report)
        if folded is None:
            continue
        now[position] = folded
        # The fold only raised `status`'s entry: the new status is the higher of the two.
        old, status = status_of(current), item.report.status
        new = status if old is None or RANK[status] > RANK[old] else old
        if old != new:
            if old is not None:
                counts[old] = counts.get(old, 0) - 1
            assert new is not None
            counts[new] = counts.get(new, 0) + 1
            raised.append(Raised(position, item.report, old))
    last = fresh[-1].offset
    changes = {
        position: Stored(reached, last, before[position])
        for position, reached in now.items()
        if reached != before[position]
    }
    return Folded(Summary(counts, last), changes, raised)


# Positions per block of message states (one state-table record each): reports come
# roughly in position order, so a batch of them rewrites a few blocks.
BLOCK = 64


def block_of(position: int) -> int:
    return position // BLOCK


def encode_block(states: dict[int, Stored]) -> bytes:
    """`{"<position>": [reached, by, before], ...}` (`Stored.to_json`), written by orjson
    in one call (its non-str keys option writes positions and states by their text)."""
    compact = {position: state.to_json() for position, state in states.items()}
    return orjson.dumps(compact, option=orjson.OPT_NON_STR_KEYS)


def decode_block(raw: bytes) -> dict[int, Stored]:
    return {int(position): Stored.from_json(state) for position, state in orjson.loads(raw).items()}
