"""The index of a job's users in a real RocksDB: one key a user, holding its position and
the accepting command's offset; entries of the earlier two-key layout still read. Every
answer is the same with the native Bloom filter of a job's digests and without it; the
filter is made again from the index after a restart, follows a restore, and keeps the
memory it may take (a job it cannot hold is read without one)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rocksdict import Options, Rdict

from streams.aggregate import dedupe as dedupe_module
from streams.aggregate.dedupe import DedupeIndex
from streams.aggregate.paging import StoredUser, encode_batch
from streams.aggregate.state import (
    FAMILIES,
    batch_key,
    identity_key,
    message_index_key,
)
from streams.ids import message_digest

# With the native filter (when built; `make test` builds it) and without.
NATIVE = [True, False] if dedupe_module._DIGEST_FILTER is not None else [False]

JOB = "1-6b0f2fd2-7864a974a505dfc9fa1e7de2"
PARTITION = 2


class Counted:
    """A real RocksDB, counting the keys read from it."""

    def __init__(self, db: Rdict) -> None:
        self.db, self.read = db, 0

    def __getitem__(self, keys: Any) -> Any:
        self.read += len(keys) if isinstance(keys, list) else 1
        return self.db[keys]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.db[key] = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


class Partitions:
    """The state table's data, as `streams.runtime.access.partition_db` reaches it: one
    real database per partition, with the state's column families."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, Counted] = {}
        self.families: dict[tuple[int, str], Rdict] = {}

    def family_db(self, partition: int, family: str | None) -> Any:
        db = self._db_for_partition(partition)
        if family is None:
            return db
        if (partition, family) not in self.families:  # kept, as the state's store does
            self.families[partition, family] = db.get_column_family(family)
        return self.families[partition, family]

    def _db_for_partition(self, partition: int) -> Counted:
        if partition not in self.dbs:
            path = str(self.root / str(partition))
            options = Options(raw_mode=True)
            options.create_missing_column_families(True)
            families = {name: Options(raw_mode=True) for name in FAMILIES}
            db = Rdict(path, options, column_families=families)
            self.dbs[partition] = Counted(db)
        return self.dbs[partition]

    def close(self) -> None:
        self.families.clear()
        for db in self.dbs.values():
            db.db.close()
        self.dbs.clear()


def index(tmp_path: Path, native: bool = True) -> tuple[DedupeIndex, Any]:
    data = Partitions(tmp_path)
    state: Any = SimpleNamespace(data=data)
    return DedupeIndex(state, native=native), data._db_for_partition(PARTITION)


def users(first: int, *identities: str) -> list[StoredUser]:
    return [[first + n, identity, {}] for n, identity in enumerate(identities)]


@pytest.mark.parametrize("native", NATIVE)
def test_a_user_is_held_by_the_command_that_accepted_it(tmp_path: Path, native: bool) -> None:
    dedupe, db = index(tmp_path, native)
    assert dedupe.holders(PARTITION, JOB, ["user:a", "user:b"]) == [None, None]
    dedupe.add(PARTITION, JOB, users(0, "user:a", "user:b", ""), offset=7)
    assert dedupe.holders(PARTITION, JOB, ["user:b", "user:c", "user:a"]) == [b"7", None, b"7"]
    # One key a user with an identity; it gives the position to delivery reports.
    prefix = message_index_key(JOB, "")
    keys = [key for key in db.keys(from_key=prefix) if isinstance(key, bytes)]
    assert len([key for key in keys if key.startswith(prefix)]) == 2
    assert db[message_index_key(JOB, message_digest(JOB, "user:b"))] == b"1 7"
    assert db.get(identity_key(JOB, "user:a")) is None


@pytest.mark.parametrize("native", NATIVE)
def test_another_job_holds_nobody_of_this_one(tmp_path: Path, native: bool) -> None:
    dedupe, _ = index(tmp_path, native)
    dedupe.add(PARTITION, JOB, users(0, "user:a"), offset=3)
    assert dedupe.holders(PARTITION, JOB + "x", ["user:a"]) == [None]


@pytest.mark.parametrize("native", NATIVE)
def test_entries_of_the_earlier_layout_are_still_read(tmp_path: Path, native: bool) -> None:
    dedupe, db = index(tmp_path, native)
    # Before one key a user: the message-index key held the position alone, and the
    # identity key the offset.
    db[message_index_key(JOB, message_digest(JOB, "user:old"))] = b"4"
    db[identity_key(JOB, "user:old")] = b"12"
    dedupe.add(PARTITION, JOB, users(5, "user:new"), offset=13)
    assert dedupe.holders(PARTITION, JOB, ["user:old", "user:new", "user:x"]) == [
        b"12",
        b"13",
        None,
    ]


def named(first: int, count: int) -> list[StoredUser]:
    return users(first, *(f"user:{first + n}" for n in range(count)))


@pytest.mark.parametrize("native", NATIVE)
def test_a_restarted_worker_finds_the_users_indexed_before(tmp_path: Path, native: bool) -> None:
    dedupe, _ = index(tmp_path, native)
    assert dedupe.holders(PARTITION, JOB, ["user:0"]) == [None]  # a filter made, empty
    dedupe.add(PARTITION, JOB, named(0, 3000), offset=1)
    dedupe.state.data.close()
    again, _ = index(tmp_path, native)  # its filter is made from the index
    asked = ["user:2999", "user:5000", "user:0"]
    assert again.holders(PARTITION, JOB, asked) == [b"1", None, b"1"]


@pytest.mark.skipif(NATIVE == [False], reason="bulkstream_native is not built")
def test_new_users_cost_no_read_and_known_ones_are_read(tmp_path: Path) -> None:
    dedupe, db = index(tmp_path)
    for command in range(20):
        identities = [f"user:{command * 1000 + n}" for n in range(1000)]
        assert dedupe.holders(PARTITION, JOB, identities) == [None] * 1000
        dedupe.add(PARTITION, JOB, named(command * 1000, 1000), offset=command)
    # The filter answers "maybe" for about 1 % of new users per chunk: few reads.
    assert db.read < 20 * 1000 * 0.1, db.read
    before = db.read
    again = [f"user:{n}" for n in range(0, 20_000, 100)]  # each held by its command
    assert dedupe.holders(PARTITION, JOB, again) == [
        b"%d" % (n // 1000) for n in range(0, 20_000, 100)
    ]
    assert db.read - before == len(again)


@pytest.mark.parametrize("native", NATIVE)
def test_users_restored_from_the_changelog_are_held(tmp_path: Path, native: bool) -> None:
    dedupe, _ = index(tmp_path, native)
    assert dedupe.holders(PARTITION, JOB, ["user:7"]) == [None]  # a filter made, empty
    # Another worker accepted users meanwhile; their batch record comes back in a restore.
    key, value = batch_key(JOB, 42), encode_batch(named(0, 10))
    dedupe.state.data.family_db(PARTITION, None)[key] = value
    message = SimpleNamespace(key=key, value=value, partition=PARTITION)
    dedupe.index_restored([SimpleNamespace(message=message)])
    assert dedupe.holders(PARTITION, JOB, ["user:7", "user:10"]) == [b"42", None]


@pytest.mark.skipif(NATIVE == [False], reason="bulkstream_native is not built")
def test_filters_keep_their_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dedupe, _ = index(tmp_path)
    # A job whose filter alone takes more than the bound is read without one.
    monkeypatch.setattr(dedupe_module, "FILTER_BYTES", 4096)
    for command in range(5):
        identities = [f"user:{command * 1000 + n}" for n in range(1000)]
        assert dedupe.holders(PARTITION, JOB, identities) == [None] * 1000
        dedupe.add(PARTITION, JOB, named(command * 1000, 1000), offset=command)
    assert dedupe._filters[(PARTITION, JOB)] is None
    assert dedupe.holders(PARTITION, JOB, ["user:4999", "user:5000"]) == [b"4", None]
    # The least recently used filters go first; each job is still answered exactly.
    monkeypatch.setattr(dedupe_module, "FILTER_JOBS", 3)
    for n in range(6):
        job = f"{JOB}-{n}"
        assert dedupe.holders(PARTITION, job, [f"user:{n}"]) == [None]
        dedupe.add(PARTITION, job, users(0, f"user:{n}"), offset=100 + n)
    assert len(dedupe._filters) == 3
    assert [dedupe.holders(PARTITION, f"{JOB}-{n}", [f"user:{n}"]) for n in range(6)] == [
        [b"%d" % (100 + n)] for n in range(6)
    ]


@pytest.mark.skipif(NATIVE == [False], reason="bulkstream_native is not built")
def test_a_job_found_too_large_is_read_without_a_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dedupe, _ = index(tmp_path)
    dedupe.add(PARTITION, JOB, named(0, 100), offset=9)
    monkeypatch.setattr(dedupe_module, "SCAN_MOST", 20)
    monkeypatch.setattr(dedupe_module, "SCAN_STEP", 10)
    assert dedupe.holders(PARTITION, JOB, ["user:99", "user:100"]) == [b"9", None]
    assert dedupe._filters[(PARTITION, JOB)] is None
