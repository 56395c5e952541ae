"""The fast way of reading a delivery report against pydantic's: on every input it
vouches for, the same report; on the rest it steps aside, never refusing on its own."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas.delivery import DELIVERY_ORDER, MAX_AT, MAX_PROVIDER, MAX_REASON, DeliveryReport
from streams.aggregate.fold_codec import batch_reader
from streams.aggregate.outcomes import Report
from streams.aggregate.reports import PoisonReport, fast_report, parse_report, report_of

JOB = "1-6b0f2fd2-7864a974a505dfc9fa1e7de2"
BASE: dict[str, Any] = {
    "messageId": "1-6b0f2fd2-" + "a" * 24,
    "jobId": JOB,
    "status": "SENT",
    "at": 1,
}
# Values each field is tried with: valid ones, bounds, and what pydantic may take or refuse.
VARIANTS: dict[str, list[Any]] = {
    "messageId": ["", "m", "é" * 200, "x" * 201, 5, None],
    "jobId": [JOB, "", "x" * 201, 7],
    "status": ["SENT", "CLICKED", "UNDELIVERABLE", "sent", "BOUNCED", 1, None],
    "at": [0, MAX_AT, MAX_AT + 1, -1, 1.0, 1.5, "12", True, None],
    "reason": [None, "", "r" * MAX_REASON, "r" * (MAX_REASON + 1), 3],
    "provider": [None, "p" * MAX_PROVIDER, "p" * (MAX_PROVIDER + 1), ["p"]],
    "tenant": [None, "acme", "t" * 201, 4],
}


def inputs() -> list[bytes]:
    values: list[bytes] = []
    for name, variants in VARIANTS.items():
        for variant in variants:
            values.append(orjson.dumps(BASE | {name: variant}))
    # Beyond 64 bits (orjson writes no such number, and reads none).
    values.append(orjson.dumps(BASE).replace(b'"at":1', b'"at":%d' % 2**70))
    # Names pydantic also takes (snake_case), extra fields, missing ones, other JSON.
    values += [
        orjson.dumps({"message_id": BASE["messageId"], "job_id": JOB, "status": "SENT", "at": 1}),
        orjson.dumps(BASE | {"extra": 1}),
        *(orjson.dumps({k: v for k, v in BASE.items() if k != gone}) for gone in BASE),
        b"[]",
        orjson.dumps(list(BASE.values())),  # the fields in order, as an array
        b"null",
        b'"SENT"',
        b"{not json",
        orjson.dumps(BASE)[:-1] + b',"at":2}',  # a repeated name: the last one counts
        orjson.dumps(BASE) + b"  \n",
        b"\xef\xbb\xbf" + orjson.dumps(BASE),
    ]
    # Pairs of optional fields at once.
    for reason, provider in itertools.product(VARIANTS["reason"][:3], VARIANTS["provider"][:2]):
        values.append(orjson.dumps(BASE | {"reason": reason, "provider": provider}))
    return values


def pydantic_way(value: bytes) -> Report | None:
    try:
        model = DeliveryReport.model_validate_json(value)
    except ValidationError:
        return None
    return report_of(model)


@pytest.mark.parametrize("value", inputs())
def test_the_fast_way_gives_what_pydantic_gives_or_steps_aside(value: bytes) -> None:
    expected = pydantic_way(value)
    fast = fast_report(value)
    if fast is not None:
        assert fast == expected
        assert expected is not None
        assert type(fast.status) is type(expected.status)
    if expected is not None and expected.job_id == JOB:
        assert parse_report(JOB.encode(), value) == expected
    else:
        with pytest.raises(PoisonReport) as raised:
            parse_report(JOB.encode(), value)
        assert raised.value.reason in ("invalid", "undecodable", "wrong-key")


def test_the_fast_way_takes_the_reports_delivery_workers_send() -> None:
    value = orjson.dumps(BASE | {"reason": "bounced", "provider": "smtp", "tenant": "acme"})
    assert fast_report(value) == pydantic_way(value)
    assert fast_report(value) is not None


@pytest.mark.skipif(batch_reader() is None, reason="bulkstream_native is not built (make native)")
def test_the_native_batch_reader_vouches_for_no_more_than_the_fast_way() -> None:
    """bulkstream_native.ReportBatch, on every input at once (and on a missing value),
    each keyed as `parse_report` wants: each report it reads is the one the fast way
    and pydantic read, with the same status member; what it leaves (`unread`) is for
    the Python way."""
    values: list[bytes | None] = [*inputs(), None]
    keys = [key_of(value) for value in values]
    batch = batch_reader()
    assert batch is not None
    read = batch(values, keys, [0] * len(values), list(range(len(values))))
    native = read.reports(list(range(len(values))), Report, DELIVERY_ORDER)
    assert len(native) == len(values)
    assert native[-1] is None
    assert read.unread == [n for n, report in enumerate(native) if report is None]
    left = []  # what the fast way takes and the native reader leaves to it
    for value, got in zip(values[:-1], native[:-1], strict=True):
        assert value is not None
        if got is None:
            if fast_report(value) is not None:
                left.append(value)
            continue
        assert got == fast_report(value) == pydantic_way(value)
        assert type(got) is Report
        assert type(got.status) is type(fast_report(value).status)  # type: ignore[union-attr]
    # A repeated name only (orjson keeps the last; serde refuses it): Python reads it.
    assert left == [orjson.dumps(BASE)[:-1] + b',"at":2}']


@pytest.mark.skipif(batch_reader() is None, reason="bulkstream_native is not built (make native)")
def test_the_native_batch_reader_leaves_a_report_under_another_key_to_python() -> None:
    """A report keyed otherwise than by its job id is poison (`wrong-key`): the native
    reader leaves it, and no group holds it."""
    batch = batch_reader()
    assert batch is not None
    value = orjson.dumps(BASE)
    read = batch([value, value, value], [b"other", None, JOB.encode()], [0, 0, 0], [0, 1, 2])
    assert read.unread == [0, 1]
    assert read.groups == [(0, JOB)]
    assert read.members(0) == [2]


def key_of(value: bytes | None) -> bytes:
    """The key `parse_report` wants for a report: its job id (JOB if it has none)."""
    try:
        job_id = orjson.loads(value or b"")["jobId"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return JOB.encode()
    return job_id.encode() if isinstance(job_id, str) else JOB.encode()
