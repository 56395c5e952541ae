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

    def holders(self, partition: int, job_id: str, identities: list[str]) -> list[bytes | None]:
        """For each identity, the offset (as bytes) of the command that accepted it, if any:
        one multi-get."""
        if not identities:
            return []
        held = identity_key(job_id, "")
        keys = [held + identity.encode() for identity in identities]
        found: list[bytes | None] = partition_db(self.state, partition)[keys]
        return found

    def add(self, partition: int, job_id: str, users: list[StoredUser], offset: int) -> None:
        """Index the users one ingest command accepted (`[position, identity, ...]`)."""
        own = str(offset).encode()
        # The keys' job parts once: `identity_key(job_id, x)` is `held + x.encode()`.
        held, indexed = identity_key(job_id, ""), message_index_key(job_id, "")
        batch = WriteBatch(raw_mode=True)
        put = batch.put
        for user in users:
            identity = user[1]
            if identity:
                put(held + identity.encode(), own)
                put(indexed + message_digest(job_id, identity).encode(), b"%d" % user[0])
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
