"""One job's batch of delivery reports folded from and to the bytes kept: the stored
summary and blocks of message states in, what to write back out (the summary,
the blocks changed, the message events, the views' entries).

`fold_encoded` is the reference, in Python: it decodes the stored JSON, folds
with the rules of `streams.aggregate.outcomes`, and encodes what changed.
`bulkstream_native.fold_reports` (native/src/delivery_fold.rs, Rust) gives the
same bytes without a Python object per report; it is used when it is installed,
unless `BULKSTREAM_NATIVE=false`. tests/streams/aggregate/test_fold_native.py
keeps the two equal.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from schemas.delivery import DELIVERY_ORDER
from streams.aggregate.outcomes import (
    Reached,
    Report,
    Reported,
    Stored,
    Summary,
    block_of,
    decode_block,
    encode_block,
    fold_batch,
    status_of,
)
from streams.native import member
from streams.views.delivery import BucketFields, MessageOutcome, bucket_fields
from streams.views.keys import USERS_PER_BUCKET

if TYPE_CHECKING:
    from bulkstream_native import EventProducer, ReportBatch

log = logging.getLogger(__name__)


class Encoded(NamedTuple):
    """What folding one job's batch of reports writes."""

    # The job's summary after the batch (counts and the last offset folded); stored
    # only when some block changed (`blocks` not empty), shown in the views always.
    summary: bytes
    blocks: list[tuple[int, bytes]]  # (block number, the whole block) of each block changed
    events: list[bytes]  # a message event per state reached, in report order
    # (position, message id, its views entry) of each message reported that has a state:
    # those the batch changed, then the others (read again after a crash, or unchanged);
    # from `fold_group`, grouped by bucket of the views already.
    entries: list[tuple[int, str, str]] | BucketFields
    reached: dict[str, int]  # state -> messages that reached it in this batch
    # Message events the native fold queued on a producer itself (`fold_group`'s
    # `events_to`): `events` is then empty.
    queued: int = 0


# (stored summary, the batch in offset order, block number -> stored block of every
# reported position, job id, tenant) -> Encoded
FoldReports = Callable[
    [bytes | None, Sequence[Reported], dict[int, bytes | None], str, str], Encoded
]


def fold_encoded(
    summary_raw: bytes | None,
    reported: Sequence[Reported],
    blocks_raw: dict[int, bytes | None],
    job_id: str,
    tenant: str,
) -> Encoded:
    """Fold one job's reports (`streams.aggregate.outcomes.fold_batch`) from and to
    the stored bytes."""
    summary = Summary() if summary_raw is None else Summary.from_bytes(summary_raw)
    blocks = {n: {} if raw is None else decode_block(raw) for n, raw in blocks_raw.items()}

    def stored(position: int) -> Stored | None:
        return blocks[block_of(position)].get(position)

    folded = fold_batch(summary, stored, reported)
    ids = {item.position: item.report.message_id for item in reported}
    # A report folded already (read again after a crash, which may have come between
    # the state and the views) or changing nothing: its message's entry is written
    # again from the state, as the job's counts are.
    kept: dict[int, Reached] = {}
    for item in reported:
        if item.position not in folded.changes:
            state = stored(item.position)
            if state is not None:
                kept[item.position] = state.as_of(summary.upto)
    touched: dict[int, dict[int, Stored]] = defaultdict(dict)
    for position, state in folded.changes.items():
        touched[block_of(position)][position] = state
    changed = []
    for number, changes in touched.items():
        blocks[number].update(changes)
        changed.append((number, encode_block(blocks[number])))
    entries = [
        entry(position, ids[position], state.reached) for position, state in folded.changes.items()
    ]
    entries += [
        entry(position, ids[position], reached) for position, reached in kept.items() if reached
    ]
    events = []
    reached: Counter[str] = Counter()
    for _, report, previous in folded.raised:
        reached[report.status.value] += 1
        # A MessageEvent's wire form (`schemas.delivery`), built without validation
        # cost (orjson writes a state by its name).
        event: dict[str, Any] = {
            "messageId": report.message_id,
            "jobId": job_id,
            "tenant": tenant,
            "status": report.status,
            "at": report.at,
        }
        if previous is not None:
            event["previous"] = previous
        if report.reason is not None:
            event["reason"] = report.reason
        if report.provider is not None:
            event["provider"] = report.provider
        events.append(orjson.dumps(event))
    return Encoded(folded.summary.to_bytes(), changed, events, entries, dict(reached))


def entry(position: int, message_id: str, reached: Reached) -> tuple[int, str, str]:
    """(position, message id, views entry) of a message's state."""
    return position, message_id, outcome(position, message_id, reached).to_json().decode()


def outcome(position: int, message_id: str, reached: Reached) -> MessageOutcome:
    """What the views show of a message's state."""
    status = status_of(reached)
    assert status is not None
    at, reason, provider = reached[status]
    times = {state: first[0] for state, first in reached.items()}
    return MessageOutcome(position, message_id, status, at, reason, provider, times)


# bulkstream_native.fold_reports's answer (native/bulkstream_native.pyi)
NativeFolded = tuple[
    bytes, list[tuple[int, bytes]], list[bytes], list[tuple[int, str, str]], dict[str, int]
]
NativeFold = Callable[
    [bytes | None, Sequence[Reported], dict[int, bytes | None], str, str], NativeFolded | None
]


_NATIVE: NativeFold | None = member("fold_reports")
NATIVE_AVAILABLE = _NATIVE is not None


def fold_reports_native(
    summary_raw: bytes | None,
    reported: Sequence[Reported],
    blocks_raw: dict[int, bytes | None],
    job_id: str,
    tenant: str,
) -> Encoded:
    """`fold_encoded`, natively; what the native code cannot read exactly (a stored
    record it does not recognise) is folded by `fold_encoded`."""
    assert _NATIVE is not None, "bulkstream_native is not installed (make native)"
    folded = _NATIVE(summary_raw, reported, blocks_raw, job_id, tenant)
    if folded is None:
        return fold_encoded(summary_raw, reported, blocks_raw, job_id, tenant)
    return Encoded(*folded)


def report_folder(native: bool = True) -> FoldReports:
    """The fold to use (`Settings.native`): the native one if asked for and installed."""
    if native and _NATIVE is not None:
        log.info("delivery reports are folded natively (bulkstream_native)")
        return fold_reports_native
    if native:
        log.warning("bulkstream_native is not installed: delivery reports are folded in Python")
    return fold_encoded


_REPORT_BATCH: type[ReportBatch] | None = member("ReportBatch")


def batch_reader(native: bool = True) -> type[ReportBatch] | None:
    """`bulkstream_native.ReportBatch`, which reads, locates and folds a feed's batch of
    reports without a Python object per report, if asked for (`Settings.native`) and
    installed; None: every report is read and folded in Python."""
    return _REPORT_BATCH if native else None


def fold_group(
    read: ReportBatch,
    group: int,
    summary_raw: bytes | None,
    blocks_raw: dict[int, bytes | None],
    tenant: str,
    events_to: tuple[EventProducer, str] | None = None,
) -> Encoded:
    """A located group of `read` folded natively, its entries grouped by bucket of the
    views (`bucket_fields`: every message id of a located group carries its
    position), its message events queued on `events_to` (a native producer, a topic)
    if given; what the native code cannot read exactly (a stored record it does not
    recognise) is folded by `fold_encoded`, its events answered."""
    folded = read.fold(group, summary_raw, blocks_raw, tenant, USERS_PER_BUCKET, events_to)
    if folded is not None:
        summary, blocks, events, fields, reached = folded
        queued = sum(reached.values()) if events_to is not None else 0
        return Encoded(summary, blocks, events, BucketFields(*fields), reached, queued)
    reports = read.reports(read.members(group), Report, DELIVERY_ORDER)
    reported = []
    for (offset, position), report in zip(read.located(group), reports, strict=True):
        assert report is not None  # a group's records are those read natively
        reported.append(Reported(offset, position, report))
    encoded = fold_encoded(summary_raw, reported, blocks_raw, read.groups[group][1], tenant)
    assert isinstance(encoded.entries, list)
    return encoded._replace(entries=bucket_fields(encoded.entries))
