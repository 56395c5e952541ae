"""What a delivery report must be to be folded, and how a retry cuts its users into
ingest commands: pure, in memory."""

from __future__ import annotations

import orjson
import pytest

from schemas.delivery import MAX_AT
from streams.aggregate.reports import PoisonReport, parse_report
from streams.aggregate.retry import chunks
from streams.ids import derived_job_id

JOB = "1-6b0f2fd2-7864a974a505dfc9fa1e7de2"


def report(**fields: object) -> bytes:
    base = {"messageId": "1-00000000-" + "a" * 24, "jobId": JOB, "status": "SENT", "at": 1}
    return orjson.dumps(base | fields)


def test_a_valid_report_is_parsed() -> None:
    parsed = parse_report(JOB.encode(), report(reason="r", provider="p"))
    assert (parsed.status.value, parsed.reason, parsed.provider) == ("SENT", "r", "p")


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (JOB.encode(), None, "empty"),
        (JOB.encode(), b"{not json", "undecodable"),
        (JOB.encode(), report(status="BOUNCED"), "invalid"),
        (JOB.encode(), report(at=-1), "invalid"),
        # Beyond the year 9999 (and 64 bits): it could not be written back.
        (JOB.encode(), report(at=MAX_AT + 1), "invalid"),
        (JOB.encode(), report(extra=1), "invalid"),
        (JOB.encode(), report(reason="x" * 1001), "invalid"),
        (b"other", report(), "wrong-key"),
        (None, report(), "wrong-key"),
    ],
)
def test_a_report_that_cannot_be_folded_says_why(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(PoisonReport) as raised:
        parse_report(key, value)
    assert raised.value.reason == reason


def user(position: int, size: int = 10, metadata: object = None) -> list[object]:
    stored: list[object] = [position, f"user:{position}", {"to": {"user_id": "x" * size}}]
    if metadata is not None:
        stored.append(metadata)
    return stored


def test_retry_chunks_hold_at_most_so_many_users_and_bytes_of_one_metadata() -> None:
    users = [user(i) for i in range(25)]
    assert [len(run) for run, _ in chunks(iter(users), limit=10)] == [10, 10, 5]
    big = [user(i, size=400) for i in range(6)]  # about 430 bytes each
    assert [len(run) for run, _ in chunks(iter(big), limit_bytes=1000)] == [2, 2, 2]
    huge = [user(0, size=5000), user(1)]  # a user larger than the limit goes alone
    assert [len(run) for run, _ in chunks(iter(huge), limit_bytes=1000)] == [1, 1]
    mixed = [user(0, metadata={"a": 1}), user(1, metadata={"a": 1}), user(2), user(3)]
    assert [(len(run), meta) for run, meta in chunks(iter(mixed))] == [(2, {"a": 1}), (2, None)]


def test_a_retry_under_an_idempotency_key_has_a_job_id_of_its_own() -> None:
    claimed = "1-0badf00d-0123456789abcdef01234567"
    one = derived_job_id(claimed, "retry", JOB)
    assert one == derived_job_id(claimed, "retry", JOB)
    assert one != claimed
    assert one != derived_job_id(claimed, "retry", "1-other")
    assert one.startswith("1-")
    assert len(one) == len(claimed)
