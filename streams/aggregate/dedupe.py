"""The indexes of a job's users: which ingest command accepted each identity, and
which position each message id belongs to.

Keys `<job>\\0i\\0<identity>` hold the offset of the accepting command (the
dedupe index); keys `<job>\\0mi\\0<digest>` the position of the user whose
message id ends in that digest (delivery reports name messages by id). They
live in the partition's RocksDB only, without a changelog record each: the
batch record (`<job>\\0b\\0<offset>`, in the changelog) lists the same
users, so whoever restores the partition rebuilds both from it
(`index_restored`, a restore hook of the state table). Ingest paid one
changelog record per user for this index before; now one per command.

Why it stays exact: a batch record reaches the changelog before the command's
offset is committed, and an ingest is deterministic given the state before
it, so an index entry written for a command that is later redone (by this
worker or another) names the same offset the redo writes.
"""

from __future__ import annotations

from typing import Any

from rocksdict import WriteBatch

from streams.aggregate.paging import StoredUser, decode_batch
from streams.aggregate.state import identity_key, message_index_key, parse_batch_key
from streams.ids import message_digest
from streams.runtime.access import partition_db


class DedupeIndex:
    def __init__(self, state: Any) -> None:
        self.state = state

    def holder(self, partition: int, job_id: str, identity: str) -> bytes | None:
        """The offset (as bytes) of the command that accepted this identity, if any."""
        value: bytes | None = partition_db(self.state, partition).get(
            identity_key(job_id, identity)
        )
        return value

    def add(self, partition: int, job_id: str, users: list[StoredUser], offset: int) -> None:
        """Index the users one ingest command accepted (`[position, identity, ...]`)."""
        own = str(offset).encode()
        batch = WriteBatch(raw_mode=True)
        for user in users:
            position, identity = user[0], user[1]
            if identity:
                batch.put(identity_key(job_id, identity), own)
                digest = message_digest(job_id, identity)
                batch.put(message_index_key(job_id, digest), str(position).encode())
        partition_db(self.state, partition).write(batch)

    def index_restored(self, events: list[Any]) -> None:
        """Index the identities of every batch record among restored changelog events."""
        for event in events:
            message = event.message
            parsed = parse_batch_key(message.key) if isinstance(message.key, bytes) else None
            if parsed is None or message.value is None:
                continue
            db = partition_db(self.state, message.partition)
            if db.get(message.key) is None:  # deleted again later in this batch (a purge)
                continue
            job_id, offset = parsed
            self.add(message.partition, job_id, decode_batch(message.value), offset)
