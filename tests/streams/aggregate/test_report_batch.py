"""A feed's batch of reports read, located and folded natively (bulkstream_native.
ReportBatch, native/src/report_batch.rs) gives what Python's way gives: the same
groups, a group located exactly when every one of its reports passes the delivery
fold's checks by the position its id carries, and then the same summary, blocks,
message events, views entries and counts as `fold_encoded` of the same reports,
batch after batch."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.delivery import DELIVERY_ORDER
from streams.aggregate.fold_codec import batch_reader, fold_encoded, fold_group
from streams.aggregate.outcomes import Report, Reported, block_of
from streams.aggregate.reports import fast_report
from streams.ids import carried_positions, message_id_prefix, positional_message_id
from streams.views.delivery import bucket_fields
from tests.streams.native import require_native

ReportBatch = batch_reader()
require_native(ReportBatch is not None)

JOB, OTHER_JOB, TENANT, CREATED = "1-69248100-735a1efde685854f21970d8e", "1-x", "acme", 1.76e9
PREFIX = message_id_prefix(CREATED)
RECEIVED = 150  # users of the job: positions 0 to 149
FAILED = [17, 99]  # users the fan-out failed: they have no message


@st.composite
def report_value(draw: Any) -> bytes:
    """A report of JOB; now and then one the fold must not take by its position alone."""
    position = draw(st.integers(0, RECEIVED + 1))  # beyond RECEIVED now and then
    message_id = draw(
        st.sampled_from(
            [
                positional_message_id(CREATED, JOB, position),
                positional_message_id(CREATED, OTHER_JOB, position),  # another job's
                positional_message_id(CREATED + 7, JOB, position),  # another prefix
                PREFIX + "f" * 24,  # no position in it
            ]
        )
        if draw(st.integers(0, 39)) == 0
        else st.just(positional_message_id(CREATED, JOB, position))
    )
    report: dict[str, Any] = {
        "messageId": message_id,
        "jobId": JOB,
        "status": draw(st.sampled_from(DELIVERY_ORDER)).value,
        "at": draw(st.integers(0, 5)),
    }
    for name, texts in (("reason", ["bounce", 'say "no"', "é"]), ("provider", ["smtp", ""])):
        if draw(st.booleans()):
            report[name] = draw(st.sampled_from(texts))
    if draw(st.integers(0, 19)) == 0:
        report["tenant"] = draw(st.sampled_from([TENANT, "other"]))
    return orjson.dumps(report)


def python_positions(values: list[bytes], offset: int) -> list[Reported] | None:
    """What the delivery fold's Python way makes of the batch (`DeliveryFold.check`):
    each report with the position its id carries; None if one needs more than that."""
    reports = [fast_report(value) for value in values]
    assert all(report is not None for report in reports)
    carried = carried_positions([JOB] * len(values), [r.message_id for r in reports])  # type: ignore[union-attr]
    reported = []
    for n, (report, position) in enumerate(zip(reports, carried, strict=True)):
        assert report is not None
        if (
            (report.tenant is not None and report.tenant != TENANT)
            or len(report.message_id) != len(PREFIX) + 24
            or not report.message_id.startswith(PREFIX)
            or not 0 <= position < RECEIVED
            or position in FAILED
        ):
            return None
        reported.append(Reported(offset + n, position, report))
    return reported


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_native_batch_folds_as_python_does_batch_after_batch(data: st.DataObject) -> None:
    assert ReportBatch is not None
    summary: bytes | None = None
    kept: dict[int, bytes] = {}
    offset = 0
    for _ in range(data.draw(st.integers(1, 5))):
        values = data.draw(st.lists(report_value(), min_size=1, max_size=40))
        read = ReportBatch(
            values,
            [JOB.encode()] * len(values),
            [3] * len(values),
            list(range(offset, offset + len(values))),
        )
        assert read.unread == []
        assert read.groups == [(3, JOB)]
        assert read.members(0) == list(range(len(values)))
        expected = python_positions(values, offset)
        assert read.locate([(PREFIX, RECEIVED, TENANT, FAILED)]) == [expected is not None]
        offset += len(values)
        event(f"located: {expected is not None}")
        if expected is None:
            continue
        assert read.located(0) == [(item.offset, item.position) for item in expected]
        numbers = sorted({block_of(item.position) for item in expected})
        assert read.block_numbers(0) == numbers
        blocks = {n: kept.get(n) for n in numbers}
        pure = fold_encoded(summary, expected, blocks, JOB, TENANT)
        assert isinstance(pure.entries, list)
        grouped = pure._replace(entries=bucket_fields(pure.entries))
        assert fold_group(read, 0, summary, blocks, TENANT) == grouped
        for number, block in pure.blocks:
            kept[number] = block
        if pure.blocks:
            summary = pure.summary


def test_groups_are_by_partition_and_job_and_python_may_keep_any() -> None:
    """Records group by (partition, job id), in the order of their first record; a group
    given no facts is not located, and gives its reports for Python's way."""
    assert ReportBatch is not None
    ids = [positional_message_id(CREATED, JOB, n) for n in range(3)]
    values = [orjson.dumps({"messageId": i, "jobId": JOB, "status": "SENT", "at": 1}) for i in ids]
    other = orjson.dumps({"messageId": ids[0], "jobId": OTHER_JOB, "status": "SENT", "at": 1})
    read = ReportBatch(
        [values[0], other, values[1], values[2]],
        [JOB.encode(), OTHER_JOB.encode(), JOB.encode(), JOB.encode()],
        [3, 3, 4, 3],
        [10, 11, 12, 13],
    )
    assert read.groups == [(3, JOB), (3, OTHER_JOB), (4, JOB)]
    assert [read.members(g) for g in range(3)] == [[0, 3], [1], [2]]
    assert [(read.first(g), read.count(g)) for g in range(3)] == [(0, 2), (1, 1), (2, 1)]
    # The third group's report is of position 1, in a job said to hold 1 user.
    assert read.locate([(PREFIX, RECEIVED, TENANT, []), None, (PREFIX, 1, TENANT, [])]) == [
        True,
        False,  # no facts: Python's
        False,  # beyond the users received: Python looks it up (and finds none)
    ]
    assert read.located(0) == [(10, 0), (13, 2)]
    with pytest.raises(ValueError, match="not located"):
        read.fold(2, None, {0: None}, TENANT, 100)  # a group left to Python is folded there
    assert read.reports([1], Report, DELIVERY_ORDER) == [fast_report(other)]
    folded = read.fold(0, None, {0: None}, TENANT, 100)
    assert folded is not None
    assert folded[4] == {"SENT": 2}
    # Positions 0 and 2 share bucket 0: its 2 fields end where the body does.
    buckets, fields, ends, body, first_id = folded[3]
    assert (buckets, fields, ends, first_id) == ([0], [2], [len(body)], ids[0])


def test_a_value_that_is_not_utf8_is_left_to_python_and_escapes_are_read() -> None:
    """The reader checks a value's UTF-8 once, whole: bytes that are not UTF-8, in a
    string or out of one, leave the record to Python (which calls it poison), and a
    string's escapes read as Python's reader reads them."""
    assert ReportBatch is not None
    message_id = positional_message_id(CREATED, JOB, 0)
    good = orjson.dumps({"messageId": message_id, "jobId": JOB, "status": "FAILED", "at": 1})
    escaped = (
        b'{"messageId":"%s","jobId":"%s","status":"FAILED","at":2,'
        b'"reason":"caf\\u00e9 \\"no\\" \\ud83d\\ude00","provider":"\xc3\xa9"}'
        % (message_id.encode(), JOB.encode())
    )
    in_string = good.replace(b'"FAILED"', b'"FAILED\xff"')
    out_of_string = good.replace(b'"at":1', b'"at":1\xff')
    truncated = good.replace(b'"FAILED"', b'"FAILED\xc3"')
    values = [good, in_string, escaped, out_of_string, truncated]
    read = ReportBatch(values, [JOB.encode()] * 5, [3] * 5, list(range(5)))
    assert read.unread == [1, 3, 4]
    assert [fast_report(values[n]) for n in (1, 3, 4)] == [None, None, None]
    assert read.members(0) == [0, 2]
    reports = read.reports([0, 2], Report, DELIVERY_ORDER)
    assert reports == [fast_report(good), fast_report(escaped)]
    assert reports[1] is not None
    assert reports[1].reason == 'café "no" 😀'
    assert reports[1].provider == "é"
