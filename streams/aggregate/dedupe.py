"""The index of a job's users: for each identity, the position of its user and the
ingest command that accepted it.

Keys `<job>\\0mi\\0<digest>`, the digest being the last 24 hex of the user's
message id (a hash of job id and identity, `streams.ids.message_digest`), hold
`<position> <offset>`: the dedupe check reads the offset (a user is a
duplicate if another command holds its identity), delivery reports the
position (they name messages by id). One key a user serves both; until
2026-12 each had its own, `<job>\\0i\\0<identity>` holding the offset and
the message-index key the position alone, and a key written that way is
still read (a worker upgraded in the middle of a job's ingest).

They live in the partition's RocksDB only, without a changelog record each:
the batch record (`<job>\\0b\\0<offset>`, in the changelog) lists the same
users, so whoever restores the partition rebuilds the index from it
(`index_restored`, a restore hook of the state table).

Why it stays exact: a batch record reaches the changelog before the command's
offset is committed, and an ingest is deterministic given the state before
it, so an index entry written for a command that is later redone (by this
worker or another) names the same offset the redo writes. Two identities of
a job with the same 96-bit digest would share a message id; the index takes
the second for a duplicate of the first rather than give two users one id.
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
        # The digests of the identities `holders` was last asked about (job id, then
        # identity -> digest): `add` writes the same users' keys right after.
        self._digests: tuple[str, dict[str, str]] = ("", {})

    def digests(self, job_id: str, identities: list[str]) -> list[str]:
        known = self._digests[1] if self._digests[0] == job_id else {}
        return [known.get(identity) or message_digest(job_id, identity) for identity in identities]

    def holders(self, partition: int, job_id: str, identities: list[str]) -> list[bytes | None]:
        """For each identity, the offset (as bytes) of the command that accepted it, if any:
        one multi-get (and one more for identities indexed the earlier way)."""
        if not identities:
            return []
        digests = [message_digest(job_id, identity) for identity in identities]
        self._digests = (job_id, dict(zip(identities, digests, strict=True)))
        indexed = message_index_key(job_id, "")
        db = partition_db(self.state, partition)
        found: list[bytes | None] = db[[indexed + digest.encode() for digest in digests]]
        held: list[bytes | None] = []
        earlier: list[int] = []  # entries of the earlier layout: the offset is elsewhere
        for n, value in enumerate(found):
            if value is None:
                held.append(None)
                continue
            _, space, offset = value.partition(b" ")
            held.append(offset if space else None)
            if not space:
                earlier.append(n)
        if earlier:
            keys = [identity_key(job_id, identities[n]) for n in earlier]
            for n, offset in zip(earlier, db[keys], strict=True):
                held[n] = offset
        return held

    def add(self, partition: int, job_id: str, users: list[StoredUser], offset: int) -> None:
        """Index the users one ingest command accepted (`[position, identity, ...]`)."""
        named = [user for user in users if user[1]]
        digests = self.digests(job_id, [user[1] for user in named])
        indexed = message_index_key(job_id, "")
        batch = WriteBatch(raw_mode=True)
        put = batch.put
        for user, digest in zip(named, digests, strict=True):
            put(indexed + digest.encode(), b"%d %d" % (user[0], offset))
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
