"""The native delivery fold (bulkstream_native.fold_reports, native/src/delivery_fold.rs)
gives exactly what the pure one (streams.aggregate.fold_codec.fold_encoded) gives:
the same summary, blocks, message events, views entries and counts, batch after
batch, across replays after a crash cut the writes of a batch short."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.delivery import DELIVERY_ORDER, DeliveryStatus
from streams.aggregate.fold_codec import (
    NATIVE_AVAILABLE,
    Encoded,
    fold_encoded,
    fold_reports_native,
    report_folder,
)
from streams.aggregate.outcomes import Report, Reported, block_of, decode_block
from tests.streams.native import require_native

require_native(NATIVE_AVAILABLE)

import bulkstream_native  # noqa: E402 (once require_native has let the module run)

JOB, TENANT = 'job-\u00e9"1', "tenant\\a"
# Texts whose JSON escapes differ between writers if any do: quotes, backslashes,
# control characters, non-ASCII, U+2028, astral characters, the empty string.
TEXTS = st.one_of(
    st.none(),
    st.sampled_from(["", "bounce", "b", 'say "no"', "a\\b", "\n\t\x01\x1f\x7f", "\u2028é", "😀"]),
    st.text(max_size=8),
)


def message_id(position: int) -> str:
    return f"1-0000abcd-{position:024x}"


@st.composite
def reports(draw: Any, offset: int) -> list[Reported]:
    batch = []
    for _ in range(draw(st.integers(1, 40))):
        position = draw(st.integers(0, 200))
        report = Report(
            message_id(position),
            JOB,
            draw(st.sampled_from(DELIVERY_ORDER)),
            # Few times (ties decided by reason and provider), and now and then one of
            # every width the numbers are written in.
            draw(st.integers(0, 5) | st.sampled_from([1_764_000_000_123, 2**63 - 1, -7, -(2**63)])),
            draw(TEXTS),
            draw(TEXTS),
        )
        batch.append(Reported(offset, position, report))
        offset += 1
    return batch


class Kept:
    """The state table's delivery records, as bytes."""

    def __init__(self, earlier: bool = False) -> None:
        self.summary: bytes | None = None
        self.blocks: dict[int, bytes] = {}
        self.earlier = earlier  # blocks kept as releases before 2026-12-06 wrote them

    def inputs(self, batch: list[Reported]) -> tuple[bytes | None, dict[int, bytes | None]]:
        numbers = sorted({block_of(item.position) for item in batch})
        return self.summary, {n: self.blocks.get(n) for n in numbers}

    def write(self, encoded: Encoded, blocks: int | None = None) -> None:
        """What the agent writes; `blocks`: only that many blocks (a crash), no summary."""
        if not encoded.blocks:
            return
        for number, block in encoded.blocks[:blocks]:
            self.blocks[number] = earlier_form(block) if self.earlier else block
        if blocks is None:
            self.summary = encoded.summary


def earlier_form(block: bytes) -> bytes:
    """A block as releases before 2026-12-06 wrote it: every null, `before` whole."""
    states = decode_block(block)
    return orjson.dumps(states, default=tuple, option=orjson.OPT_NON_STR_KEYS)


def both(kept: Kept, batch: list[Reported]) -> Encoded:
    summary, blocks = kept.inputs(batch)
    pure = fold_encoded(summary, batch, blocks, JOB, TENANT)
    native = bulkstream_native.fold_reports(summary, batch, blocks, JOB, TENANT)
    assert native is not None
    assert Encoded(*native) == pure
    return pure


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_native_fold_equals_pure_fold_batch_after_batch(data: st.DataObject) -> None:
    kept = Kept(earlier=data.draw(st.booleans()))
    offset = 0
    for _ in range(data.draw(st.integers(1, 6))):
        batch = data.draw(reports(offset))
        offset = batch[-1].offset + 1
        encoded = both(kept, batch)
        if data.draw(st.booleans()) and encoded.blocks:
            # The worker died after some of the batch's blocks: read again, it folds
            # from the states as they were before the batch, to the same result.
            kept.write(encoded, blocks=data.draw(st.integers(0, len(encoded.blocks))))
            assert both(kept, batch) == encoded
        kept.write(encoded)
        if data.draw(st.booleans()):
            both(kept, batch)  # read again once recorded: every report skipped


def test_events_entries_and_counts_are_what_the_fold_says() -> None:
    """A fixed case, read back: the native bytes are the documented JSON."""
    kept = Kept()
    sent = Report(message_id(3), JOB, DeliveryStatus.SENT, 10, None, "smtp")
    failed = Report(message_id(3), JOB, DeliveryStatus.FAILED, 12, "bounce", None)
    first = Encoded(
        *bulkstream_native.fold_reports(None, [Reported(0, 3, sent)], {0: None}, JOB, TENANT)
    )  # type: ignore[misc]
    kept.write(first)
    batch = [Reported(1, 3, failed), Reported(2, 3, sent)]
    summary, blocks = kept.inputs(batch)
    native = bulkstream_native.fold_reports(summary, batch, blocks, JOB, TENANT)
    assert native is not None
    encoded = Encoded(*native)
    assert orjson.loads(encoded.summary) == {"counts": {"FAILED": 1}, "upto": 2}
    assert [orjson.loads(e) for e in encoded.events] == [
        {
            "messageId": message_id(3),
            "jobId": JOB,
            "tenant": TENANT,
            "status": "FAILED",
            "at": 12,
            "previous": "SENT",
            "reason": "bounce",
        }
    ]
    assert isinstance(encoded.entries, list)
    [(position, message, entry)] = encoded.entries
    assert (position, message) == (3, message_id(3))
    assert orjson.loads(entry) == {
        "status": "FAILED",
        "at": 12,
        "reason": "bounce",
        "times": {"SENT": 10, "FAILED": 12},
    }
    assert encoded.reached == {"FAILED": 1}


@pytest.mark.parametrize(
    ("summary", "block"),
    [
        (b'{"counts":{},"upto":-1,"more":1}', None),  # a member the native code does not know
        (b'[{"SENT":1},4]', None),  # a summary that is not an object
        (None, b'{"03":[{},0,{}]}'),  # a position written otherwise than str(int) does
        (None, b'{"3":[{"SENT":[1.0,null,null]},0,{}]}'),  # a time that is not an integer
        (None, b'{"3":[{"SENT":[1,null,null]},0,{}],"3":[{},0,{}]}'),  # a repeated key
        (None, b'{"3":[{"SENT":[1]},0,2]}'),  # a state before of more states than now
        (None, b'{"3":[{"SENT":[1]},0,-1]}'),  # a count of states below zero
    ],
)
def test_a_record_the_native_code_cannot_read_exactly_is_folded_in_python(
    summary: bytes | None, block: bytes | None
) -> None:
    batch = [Reported(0, 3, Report(message_id(3), JOB, DeliveryStatus.DELIVERED, 7))]
    assert bulkstream_native.fold_reports(summary, batch, {0: block}, JOB, TENANT) is None
    try:
        expected = fold_encoded(summary, batch, {0: block}, JOB, TENANT)
    except (TypeError, KeyError, ValueError) as refused:  # Python cannot read it either
        with pytest.raises(type(refused)):
            fold_reports_native(summary, batch, {0: block}, JOB, TENANT)
        return
    assert fold_reports_native(summary, batch, {0: block}, JOB, TENANT) == expected


def test_the_native_fold_is_used_unless_turned_off() -> None:
    assert report_folder(native=True) is fold_reports_native
    assert report_folder(native=False) is fold_encoded
