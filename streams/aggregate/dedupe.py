"""The index of a job's users: for each identity, the position of its user and the
ingest command that accepted it.

Keys `<job>\\0mi\\0<digest>`, the digest being a hash of job id and identity
(`streams.ids.message_digest`: the last 24 hex of the user's message id in a
job of `identity` message ids), hold
`<position> <offset>`: the dedupe check reads the offset (a user is a
duplicate if another command holds its identity), the delivery fold the
position, for a report whose message id does not carry it (a job of
`identity` message ids, `streams.ids`). One key a user serves both; until
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
a job with the same 96-bit digest would share a message id in a job of
`identity` message ids; the index takes the second for a duplicate of the
first (in any job) rather than give two users one id.

Most users of an ingest are new to their job, and a RocksDB read that finds
nothing cost about 5 microseconds of the 25 a user took. So the digests of a
job's indexed users are also kept in a Bloom filter in memory
(`bulkstream_native.DigestFilter`), and only the users it may hold are read.
It may answer "maybe" for a user it does not hold, never "no" for one the
index holds: it is made from the index itself (a scan of the job's keys, the
first time this worker checks the job) and every key written after goes
through `add`, which adds to it (a restore too). The filters of every job
take at most `FILTER_BYTES`: the least recently used goes first (made again
by a scan when needed), and a job whose filter alone would take more (about
6M users), or found with more than `SCAN_MOST` users, is read without one.
The digests themselves are made a command at a time, natively
(`streams.ids.digest_maker`). Without the native module, or with
`BULKSTREAM_NATIVE=false`, digests are made in Python and every check reads
RocksDB; the answers are the same.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from rocksdict import WriteBatch

from streams.aggregate.paging import StoredUser, decode_batch
from streams.aggregate.state import identity_key, message_index_key, parse_batch_key
from streams.ids import digest_maker
from streams.native import member
from streams.runtime.access import partition_db

if TYPE_CHECKING:
    from bulkstream_native import DigestFilter

# What the filters of all jobs take at most, and how many jobs have one (or are
# known to be read without one) at once.
FILTER_BYTES = 8 * 1024 * 1024
FILTER_JOBS = 256
# A job found with more indexed users than this is read without a filter: making
# one would hold the worker up (about a second a million users).
SCAN_MOST = 1_000_000
SCAN_STEP = 10_000


_DIGEST_FILTER: type[DigestFilter] | None = member("DigestFilter")


class DedupeIndex:
    def __init__(self, state: Any, native: bool = True) -> None:
        self.state = state
        # The identities `holders` was last asked about, with their job and digests:
        # `add` writes the same users' keys right after.
        self._digests: tuple[str, list[str], list[str]] = ("", [], [])
        self.filtered = native and _DIGEST_FILTER is not None
        self.make_digests = digest_maker(native)
        # (partition, job id) -> its filter, or None: read without one. Least recent first.
        self._filters: OrderedDict[tuple[int, str], DigestFilter | None] = OrderedDict()

    def digests(self, job_id: str, identities: list[str]) -> list[str]:
        """The digests of these identities of the job: those `holders` made, if the same
        (an ingest that accepted every user it checked), else made or looked up."""
        asked_job, asked, made = self._digests
        if asked_job == job_id and asked == identities:
            return made
        known = dict(zip(asked, made, strict=True)) if asked_job == job_id else {}
        missing = [identity for identity in identities if identity not in known]
        if missing:
            known |= zip(missing, self.make_digests(job_id, missing), strict=True)
        return [known[identity] for identity in identities]

    def holders(self, partition: int, job_id: str, identities: list[str]) -> list[bytes | None]:
        """For each identity, the offset (as bytes) of the command that accepted it, if any:
        one multi-get (and one more for identities indexed the earlier way)."""
        if not identities:
            return []
        digests = self.make_digests(job_id, identities)
        self._digests = (job_id, identities, digests)
        indexed = message_index_key(job_id, "")
        db = partition_db(self.state, partition)
        digest_filter = self._filter(partition, job_id, db)
        held: list[bytes | None] = [None] * len(identities)
        asked: list[int] = (
            list(range(len(digests))) if digest_filter is None else digest_filter.maybe(digests)
        )
        if not asked:
            return held
        found: list[bytes | None] = db[[indexed + digests[n].encode() for n in asked]]
        earlier: list[int] = []  # entries of the earlier layout: the offset is elsewhere
        for n, value in zip(asked, found, strict=True):
            if value is None:
                continue
            _, space, offset = value.partition(b" ")
            if space:
                held[n] = offset
            else:
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
        held_by = b" %d" % offset
        batch = WriteBatch(raw_mode=True)
        put = batch.put
        for user, digest in zip(named, digests, strict=True):
            put(indexed + digest.encode(), b"%d%b" % (user[0], held_by))
        partition_db(self.state, partition).write(batch)
        digest_filter = self._filters.get((partition, job_id))
        if digest_filter is not None:
            digest_filter.add(digests)
            self._bound((partition, job_id))

    def _filter(self, partition: int, job_id: str, db: Any) -> DigestFilter | None:
        """The job's filter (made from its index the first time), or None: read it all."""
        if not self.filtered:
            return None
        key = (partition, job_id)
        if key in self._filters:
            self._filters.move_to_end(key)
            return self._filters[key]
        self._filters[key] = self._scan(db, job_id)
        self._bound(key)
        return self._filters[key]

    def _scan(self, db: Any, job_id: str) -> DigestFilter | None:
        """A filter of every digest the job's index holds, or None beyond `SCAN_MOST`."""
        assert _DIGEST_FILTER is not None
        made = _DIGEST_FILTER()
        prefix = message_index_key(job_id, "")
        cut = len(prefix)
        step: list[str] = []
        for key in db.keys(from_key=prefix):
            if not key.startswith(prefix):
                break
            step.append(key[cut:].decode())
            if len(step) == SCAN_STEP:
                made.add(step)
                step = []
                if len(made) >= SCAN_MOST:
                    return None
        made.add(step)
        return made

    def _bound(self, keep: tuple[int, str]) -> None:
        """Drop the least recently used filters while they take more than allowed; the
        job `keep` (in use) is read without one if it alone takes too much."""
        sizes = {key: 0 if f is None else f.nbytes for key, f in self._filters.items()}
        total = sum(sizes.values())
        for key in list(self._filters):  # least recently used first
            if total <= FILTER_BYTES and len(self._filters) <= FILTER_JOBS:
                return
            if key != keep:
                del self._filters[key]
                total -= sizes[key]
        if total > FILTER_BYTES:
            self._filters[keep] = None

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
