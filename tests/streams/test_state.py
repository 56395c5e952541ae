"""The job record: page bitmap, fixed size, key layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from rocksdict import Rdict

from streams.aggregate.state import (
    ACTIVE_PREFIX,
    DUE_PREFIX,
    EXPIRE_PREFIX,
    JOBS_PREFIX,
    PARTITION_KEYS,
    JobState,
    active_key,
    batch_key,
    batch_prefix,
    changelog_keys,
    command_key,
    cursor_key,
    delivery_key,
    dry_run_key,
    due_key,
    expire_key,
    expire_key_job,
    failure_key,
    failure_prefix,
    identity_key,
    job_key,
    job_prefix,
    key_family,
    local_ranges,
    message_index_key,
    outcomes_key,
    outcomes_prefix,
    parse_batch_key,
    position_key,
    report_cursor_key,
)
from streams.views import InvalidCursor
from streams.views.store import decode_cursor, encode_cursor


def _job() -> JobState:
    return JobState(
        tenant="t", definition={}, send={}, created_at=1.0, create_command="c", applied_offset=0
    )


def test_page_bitmap_marks_exactly_the_pages_done() -> None:
    job = _job()
    for page in (0, 9, 1000):
        job.mark_page_done(page)
    restored = JobState.from_bytes(job.to_bytes())
    assert [p for p in range(1100) if restored.page_done(p)] == [0, 9, 1000]


def test_batch_keys_sort_in_offset_order_under_their_prefix() -> None:
    offsets = [9, 10, 100, 2**40]
    keys = [batch_key("j1", offset) for offset in offsets]
    assert sorted(keys) == keys
    assert all(key.startswith(batch_prefix("j1")) for key in keys)
    assert not batch_key("j10", 1).startswith(batch_prefix("j1"))


def test_the_job_record_does_not_grow_with_ingests() -> None:
    job = _job()
    before = len(job.to_bytes())
    job.received, job.applied_offset = 100_000_000, 123_456_789
    assert len(job.to_bytes()) < before + 20


def test_every_key_of_a_job_shares_its_prefix_and_no_other_job_s() -> None:
    assert job_key("j1").startswith(job_prefix("j1"))
    assert identity_key("j1", "user:x").startswith(job_prefix("j1"))
    assert not job_key("j10").startswith(job_prefix("j1"))
    assert expire_key_job(expire_key(123, "j1")) == (123, "j1")


def test_cursor_round_trip_and_rejections() -> None:
    cursor = encode_cursor("job", 200)
    assert decode_cursor("job", cursor) == 200
    for bad in ("", "!!!", encode_cursor("other", 200), encode_cursor("job", 150), "A" * 600):
        with pytest.raises(InvalidCursor):
            decode_cursor("job", bad)


def test_batch_keys_parse_back_and_no_other_key_does() -> None:
    assert parse_batch_key(batch_key("1-abc", 42)) == ("1-abc", 42)
    for other in (
        job_key("1-abc"),
        identity_key("1-abc", "user:x\x00b\x0000000000000000000042"),
        command_key("1-abc", "00000000000000000042"),
        b"\x00b\x0000000000000000000042",
    ):
        assert parse_batch_key(other) is None


def test_each_kind_of_key_has_one_column_family_which_its_prefix_names() -> None:
    """The store writes a key to the family `key_family(key)` names, and a reader scans
    a prefix in its prefix's family: every key under a prefix must map where the prefix
    does. The partition's keys have their own family; a job's keys share the default."""
    job = "1-abc"
    families = {
        PARTITION_KEYS: [
            (JOBS_PREFIX, JOBS_PREFIX + job.encode()),
            (EXPIRE_PREFIX, expire_key(123, job)),
            (ACTIVE_PREFIX, active_key(job)),
            (DUE_PREFIX, due_key(12.5, job)),
            (cursor_key(3), cursor_key(3)),
            (report_cursor_key(3), report_cursor_key(3)),
        ],
        None: [
            (batch_prefix(job), batch_key(job, 42)),
            (job_prefix(job), job_key(job)),
            (failure_prefix(job), failure_key(job, 7)),
            (outcomes_prefix(job), outcomes_key(job, 7)),
            (job_prefix(job), identity_key(job, "user:x\x00b\x00")),
            (job_prefix(job), command_key(job, "b")),
            (job_prefix(job), position_key(job, 7)),
            (job_prefix(job), dry_run_key(job)),
            (job_prefix(job), delivery_key(job)),
            (job_prefix(job), message_index_key(job, "0" * 24)),
        ],
    }
    for family, pairs in families.items():
        for prefix, key in pairs:
            assert key.startswith(prefix)
            assert (key_family(prefix), key_family(key)) == (family, family), key


def test_a_job_s_changelog_keys_pass_over_its_users_index(tmp_path: Path) -> None:
    """On a real RocksDB: the purge's two lists of a job's keys. The users' index
    (RocksDB only) is its local ranges, every other key of the job is in the changelog,
    and no key of another job is in either."""
    job, other = "j1", "j10"
    logged = [
        job_key(job),
        batch_key(job, 7),
        command_key(job, "c1"),
        failure_key(job, 3),
        position_key(job, 0),
        dry_run_key(job),
        outcomes_key(job, 0),
        delivery_key(job),
    ]
    local = [identity_key(job, "user:a"), identity_key(job, "user:b")]
    local += [message_index_key(job, f"{n:024x}") for n in range(5)]
    foreign = [job_key(other), identity_key(other, "user:a"), message_index_key(other, "0" * 24)]
    db = Rdict(str(tmp_path / "db"))
    try:
        for key in logged + local + foreign:
            db[key] = b"v"
        assert list(changelog_keys(db, job)) == sorted(logged)
        # A purge's chunks: each from the key past the last one of the chunk before,
        # passing over the users' index between two of them as from the start.
        keys = sorted(logged)
        for n, after in enumerate(keys):
            assert list(changelog_keys(db, job, after)) == keys[n + 1 :], after
        for first, end in local_ranges(job):
            db.delete_range(first, end)
        assert sorted(db.keys()) == sorted(logged + foreign)
    finally:
        db.close()
