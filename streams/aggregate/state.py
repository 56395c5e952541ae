"""The job aggregate's state: one faust table on RocksDB, every key prefixed by job id.

    <job>\0job                 JobState (below)
    <job>\0i\0<identity>       offset of the ingest command that accepted it (dedupe index)
    <job>\0b\0<offset:020>     the users one ingest command accepted, in arrival order
    <job>\0c\0<command id>     the command's result and the offset it was applied at
    <job>\0f\0<position:012>   why a user failed in the fan-out
    <job>\0x\0<position:012>   offset of the batch whose first user has this position
    <job>\0d                  the job's last dry run (its outcome and sample sends)
    <job>\0mi\0<digest>        position and ingest offset of the user of that identity digest
                               (`streams.aggregate.dedupe`; local, like \0i)
    <job>\0m\0<block:012>      delivery states of the messages of 64 positions
    <job>\0ds                 delivery summary: messages per state, last report folded
    \0jobs\0<job>              index of the partition's jobs (rebuilding views)
    \0expire\0<due:015>\0<job> a completed job, due for purging at `due`
    \0active\0<job>            a job SCHEDULED, PROCESSING or PAUSED (a new owner re-sends
                               its pages in flight)
    \0due\0<ms:015>\0<job>     a job with something to do at that time: a scheduled run
                               to start, a rate-limited page to hand over
    \0cursor\0<partition>     offset of the last command applied on this partition
    \0rcursor\0<partition>    offset of the last delivery report read on this partition

All of a job's keys live on its partition and share a prefix, so a RocksDB
prefix scan finds them (rebuilding views, purging). The table's changelog
topic (compacted) is the source of truth; RocksDB is its local copy.

Each partition's RocksDB keeps the partition's own keys (`\0...`, with
faust's offset key) in a column family of their own (`key_family`), the
jobs' keys in the default one: a compaction of the keys a job writes then
never rewrites another job's (streams/runtime/patches/key_families.py). A
reader of the partition's keys asks for their family
(`streams.runtime.access.partition_db`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from schemas.views import JobStatus
from streams.ids import MessageIds

SEP = "\x00"

# The column families besides the default (`key_family`): the partition's own keys,
# faust's offset key with them.
PARTITION_KEYS = "partition"
FAMILIES = (PARTITION_KEYS,)


def job_key(job_id: str) -> bytes:
    return f"{job_id}{SEP}job".encode()


def identity_key(job_id: str, identity: str) -> bytes:
    return f"{job_id}{SEP}i{SEP}{identity}".encode()


def batch_key(job_id: str, offset: int) -> bytes:
    return f"{job_id}{SEP}b{SEP}{offset:020d}".encode()


def batch_prefix(job_id: str) -> bytes:
    """The prefix of a job's batch keys; they sort in offset (so arrival) order."""
    return f"{job_id}{SEP}b{SEP}".encode()


def parse_batch_key(key: bytes) -> tuple[str, int] | None:
    """(job id, offset) of a batch key; None for any other key."""
    job_id, marker, digits = key[:-23], key[-23:-20], key[-20:]
    # Other keys of a job hold a NUL before any user-given text (an identity, say).
    if marker != f"{SEP}b{SEP}".encode() or not job_id or b"\0" in job_id:
        return None
    return (job_id.decode(), int(digits)) if digits.isdigit() else None


def command_key(job_id: str, command_id: str) -> bytes:
    return f"{job_id}{SEP}c{SEP}{command_id}".encode()


def failure_key(job_id: str, position: int) -> bytes:
    return failure_prefix(job_id) + b"%012d" % position


def failure_prefix(job_id: str) -> bytes:
    """The start of the keys of the users the fan-out failed (`failure_key`)."""
    return f"{job_id}{SEP}f{SEP}".encode()


def position_key(job_id: str, position: int) -> bytes:
    return f"{job_id}{SEP}x{SEP}{position:012d}".encode()


def dry_run_key(job_id: str) -> bytes:
    return f"{job_id}{SEP}d".encode()


def message_index_key(job_id: str, digest: str) -> bytes:
    """The position of the user whose message id ends in `digest` (24 hex)."""
    return f"{job_id}{SEP}mi{SEP}{digest}".encode()


def outcomes_key(job_id: str, block: int) -> bytes:
    return f"{job_id}{SEP}m{SEP}{block:012d}".encode()


def outcomes_prefix(job_id: str) -> bytes:
    return f"{job_id}{SEP}m{SEP}".encode()


def delivery_key(job_id: str) -> bytes:
    return f"{job_id}{SEP}ds".encode()


def job_prefix(job_id: str) -> bytes:
    return f"{job_id}{SEP}".encode()


def local_ranges(job_id: str) -> list[tuple[bytes, bytes]]:
    """[first, end) of each kind of the job's keys kept in the partition's RocksDB only,
    never in the changelog: its users' index, a key a user (`streams.aggregate.dedupe`)."""
    firsts = (identity_key(job_id, ""), message_index_key(job_id, ""))
    return [(first, first[:-1] + b"\x01") for first in firsts]


def changelog_keys(db: Any, job_id: str, after: bytes | None = None) -> Iterator[bytes]:
    """The job's keys in a partition's RocksDB that are in the changelog too (those
    past `after`, if given): all but its local ranges, each passed over by one seek
    (a 10M-user job has 10M keys there)."""
    prefix, ranges = job_prefix(job_id), local_ranges(job_id)
    start = prefix if after is None else after + b"\x00"  # the first key past `after`
    while True:
        for key in db.keys(from_key=start):
            if not key.startswith(prefix):
                return
            end = next((end for first, end in ranges if first <= key < end), None)
            if end is not None:
                start = end
                break
            yield key
        else:
            return


JOBS_PREFIX = f"{SEP}jobs{SEP}".encode()
EXPIRE_PREFIX = f"{SEP}expire{SEP}".encode()
CURSOR_PREFIX = f"{SEP}cursor{SEP}".encode()
REPORT_CURSOR_PREFIX = f"{SEP}rcursor{SEP}".encode()
PROGRESS_CURSOR_PREFIX = f"{SEP}pcursor{SEP}".encode()
ACTIVE_PREFIX = f"{SEP}active{SEP}".encode()
DUE_PREFIX = f"{SEP}due{SEP}".encode()


def active_key(job_id: str) -> bytes:
    return ACTIVE_PREFIX + job_id.encode()


def due_key(at: float, job_id: str) -> bytes:
    return DUE_PREFIX + f"{int(at * 1000):015d}{SEP}{job_id}".encode()


def due_key_job(key: bytes) -> tuple[float, str]:
    """(time in seconds, job id) of a due-index key."""
    millis, job_id = key[len(DUE_PREFIX) :].decode().split(SEP, 1)
    return int(millis) / 1000, job_id


def cursor_key(partition: int) -> bytes:
    return CURSOR_PREFIX + str(partition).encode()


def report_cursor_key(partition: int) -> bytes:
    """The offset of the last delivery report of partition p folded (the feed's)."""
    return REPORT_CURSOR_PREFIX + str(partition).encode()


def progress_cursor_key(partition: int) -> bytes:
    """The offset of the last page report of partition p counted (the progress feed's)."""
    return PROGRESS_CURSOR_PREFIX + str(partition).encode()


def jobs_index_key(job_id: str) -> bytes:
    return JOBS_PREFIX + job_id.encode()


def expire_key(due: int, job_id: str) -> bytes:
    return EXPIRE_PREFIX + f"{due:015d}{SEP}{job_id}".encode()


def expire_key_for(job_id: str, job: JobState, retention_seconds: int) -> bytes:
    """The purge-index key of a finished job: due `retention_seconds` after it finished."""
    assert job.completed_at is not None
    return expire_key(int(job.completed_at) + retention_seconds, job_id)


def expire_key_job(key: bytes) -> tuple[int, str]:
    due, job_id = key[len(EXPIRE_PREFIX) :].decode().split(SEP, 1)
    return int(due), job_id


class JobState(BaseModel):
    """The job aggregate. Written whole, so each change is one atomic table write.

    It stays small whatever the job's size (the users sit under their batch
    keys): every ingest command and every page report reads and writes it."""

    tenant: str
    definition: dict[str, Any] = Field(description="The message as the creator sent it.")
    send: dict[str, Any] = Field(description="The definition every send carries.")
    data: dict[str, Any] = Field(default_factory=dict, description="Global data.")
    created_at: float
    create_command: str
    version: int = Field(default=0, description="Bumped on every write; views keep the newest.")
    status: JobStatus = JobStatus.CREATED
    received: int = 0
    enqueued: int = 0
    failures: int = 0
    applied_offset: int = Field(description="Offset of the last command applied to this record.")
    run_offset: int | None = None
    run_at: float | None = Field(default=None, description="When the run command was applied.")
    page_size: int | None = None
    pages_done: str = Field(default="", description="Bitmap of fanned-out pages, base64.")
    completed_at: float | None = None
    reason: str | None = None
    # Job control (streams/aggregate/control.py has the rules).
    released: int | None = Field(
        default=None,
        description="Pages handed to the fan-out: pages [0, released). None before the run.",
    )
    hold: Literal["pause", "cancel"] | None = Field(
        default=None, description="A pause or cancel asked for and not settled yet."
    )
    hold_since: float | None = None
    waiting: list[tuple[str, str]] = Field(
        default_factory=list,
        description="(command id, kind) of the control commands answered when the hold settles.",
    )
    scheduled_at: float | None = None
    scheduled_text: str | None = Field(default=None, description="`scheduledAt` as sent.")
    sends_per_second: int | None = None
    pace_at: float | None = Field(
        default=None, description="Rate-limited: when the next page may be handed over."
    )
    canceled: int = 0
    due: float | None = Field(default=None, description="The due-index entry written.")
    parent_job_id: str | None = Field(default=None, description="The job this one retries.")
    message_ids: MessageIds = Field(
        default="identity",
        description="How its message ids are made (`streams.ids`): `position` for every "
        "job created now; a record without the field is of an earlier release.",
    )

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, raw: bytes) -> JobState:
        return cls.model_validate(orjson.loads(raw))

    # The bitmap of pages: bit n set once page n's progress was counted.
    def page_done(self, page: int) -> bool:
        bits = base64.b64decode(self.pages_done)
        return page // 8 < len(bits) and bool(bits[page // 8] & (1 << (page % 8)))

    def mark_page_done(self, page: int) -> None:
        bits = bytearray(base64.b64decode(self.pages_done))
        if len(bits) <= page // 8:
            bits.extend(b"\x00" * (page // 8 + 1 - len(bits)))
        bits[page // 8] |= 1 << (page % 8)
        self.pages_done = base64.b64encode(bytes(bits)).decode()

    def pages_counted(self) -> int:
        return int.from_bytes(base64.b64decode(self.pages_done), "little").bit_count()

    def lowest_pending(self) -> int:
        """The lowest page not counted yet."""
        bits = base64.b64decode(self.pages_done)
        for index, byte in enumerate(bits):
            if byte != 0xFF:
                return index * 8 + (~byte & (byte + 1)).bit_length() - 1
        return len(bits) * 8

    def pages_total(self) -> int:
        if not self.page_size:
            return 0
        return -(-self.received // self.page_size)


def key_family(key: bytes) -> str | None:
    """The column family of a key, and of every key with this prefix (None: the
    default family)."""
    return PARTITION_KEYS if key[:1] == b"\0" else None


def scan_prefix(db: Any, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of a RocksDB partition store whose key starts with prefix."""
    for key, value in db.items(from_key=prefix):
        if not key.startswith(prefix):
            break
        yield key, value
