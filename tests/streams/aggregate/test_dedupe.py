"""The index of a job's users in a real RocksDB: one key a user, holding its position and
the accepting command's offset; entries of the earlier two-key layout still read."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rocksdict import AccessType, Options, Rdict

from streams.aggregate.dedupe import DedupeIndex
from streams.aggregate.paging import StoredUser
from streams.aggregate.state import identity_key, message_index_key
from streams.ids import message_digest

JOB = "1-6b0f2fd2-7864a974a505dfc9fa1e7de2"
PARTITION = 2


class Partitions:
    """faust's RocksDB table data, as `streams.runtime.access.partition_db` reaches it:
    one real database per partition."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, Rdict] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            path = str(self.root / str(partition))
            options = Options(raw_mode=True)
            self.dbs[partition] = Rdict(path, options, access_type=AccessType.read_write())
        return self.dbs[partition]


def index(tmp_path: Path) -> tuple[DedupeIndex, Rdict]:
    data = Partitions(tmp_path)
    state: Any = SimpleNamespace(data=data)
    return DedupeIndex(state), data._db_for_partition(PARTITION)


def users(first: int, *identities: str) -> list[StoredUser]:
    return [[first + n, identity, {}] for n, identity in enumerate(identities)]


def test_a_user_is_held_by_the_command_that_accepted_it(tmp_path: Path) -> None:
    dedupe, db = index(tmp_path)
    assert dedupe.holders(PARTITION, JOB, ["user:a", "user:b"]) == [None, None]
    dedupe.add(PARTITION, JOB, users(0, "user:a", "user:b", ""), offset=7)
    assert dedupe.holders(PARTITION, JOB, ["user:b", "user:c", "user:a"]) == [b"7", None, b"7"]
    # One key a user with an identity; it gives the position to delivery reports.
    prefix = message_index_key(JOB, "")
    keys = [key for key in db.keys(from_key=prefix) if isinstance(key, bytes)]
    assert len([key for key in keys if key.startswith(prefix)]) == 2
    assert db[message_index_key(JOB, message_digest(JOB, "user:b"))] == b"1 7"
    assert db.get(identity_key(JOB, "user:a")) is None


def test_another_job_holds_nobody_of_this_one(tmp_path: Path) -> None:
    dedupe, _ = index(tmp_path)
    dedupe.add(PARTITION, JOB, users(0, "user:a"), offset=3)
    assert dedupe.holders(PARTITION, JOB + "x", ["user:a"]) == [None]


def test_entries_of_the_earlier_layout_are_still_read(tmp_path: Path) -> None:
    dedupe, db = index(tmp_path)
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
