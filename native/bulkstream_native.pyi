"""The fan-out's page expansion in Rust (native/src/lib.rs; streams/fanout/expand.py uses
it), the ingest's filter of message digests (native/src/digest_filter.rs;
streams/aggregate/dedupe.py uses it), the delivery fold of one job's batch of
reports (native/src/delivery_fold.rs; streams/aggregate/fold_codec.py uses it),
a feed's batch of reports read, located and folded (native/src/report_batch.rs;
streams/aggregate/delivery.py uses it) and a feed's Kafka reader
(native/src/feed_reader.rs; streams/kafka/native_reader.py uses it)."""

from collections.abc import Sequence
from typing import Any

def expand_page(
    page: bytes,
) -> (
    tuple[
        str,
        str,
        int,
        list[tuple[bytes, bytes]],
        list[tuple[int, str]],
        list[tuple[int, int, int]],
    ]
    | None
):
    """(job id, tenant, page number, sends, failures, fallback) of a fan-out page.

    `sends`: (messageId, send event JSON) of its routable users; `failures`:
    (position, reason) of the others, both in page order, byte for byte what
    `streams.sends` gives. `fallback`: (index in the page's users, sends before
    it, failures before it) of each user left to the Python path. None: the
    whole page is left to it.
    """

class DigestFilter:
    """A Bloom filter of a job's message digests (24 hex): a digest added is always
    answered by `maybe`; one never added, about once in a hundred per chunk."""

    def __init__(self) -> None: ...
    def add(self, digests: list[str]) -> None:
        """Add these digests."""
    def maybe(self, digests: list[str]) -> list[int]:
        """The indexes, in `digests`, of those that may have been added."""
    def __len__(self) -> int:
        """How many digests were added."""
    @property
    def nbytes(self) -> int:
        """The bytes its bits take."""

def identities(users: list[dict[str, Any]]) -> list[str | None]:
    """For each user, its identity or None (`schemas.commands.identity_of`)."""

def read_ingest(value: bytes) -> tuple[bytes, list[bytes], list[str | None]] | None:
    """An ingest command's envelope (its JSON without `users`), each user's JSON as
    orjson writes it and each user's identity; None: read it the Python way
    (`streams.aggregate.decode`)."""

def message_digests(job_id: str, identities: list[str]) -> list[str]:
    """For each identity, its digest in the job (`streams.ids.message_digest`)."""

def encode_batch(users: Sequence[Sequence[Any]], sent: Sequence[bytes]) -> bytes | None:
    """`streams.aggregate.paging.encode_batch(users, sent)`; None for a batch left to it
    (a user not [position, identity, user], or with more members)."""

def fold_reports(
    summary: bytes | None,
    reported: Sequence[Any],
    blocks: dict[int, bytes | None],
    job_id: str,
    tenant: str,
) -> (
    tuple[bytes, list[tuple[int, bytes]], list[bytes], list[tuple[int, str, str]], dict[str, int]]
    | None
):
    """One job's batch of reports (`Reported` tuples, in offset order) folded from the
    stored summary and blocks (block number -> stored block or None, for every
    reported position): (summary, blocks changed, message events, views entries,
    messages per state reached), as `streams.aggregate.fold_codec.fold_encoded`
    gives them. None: a stored record is not what `fold_encoded` writes."""

class FeedReader:
    """A consumer of one topic's assigned partitions through the module's own
    librdkafka, handing each take over by column (native/src/feed_reader.rs)."""

    def __init__(self, config: Sequence[tuple[str, str]], topic: str) -> None:
        """librdkafka's properties as text; it reads nothing until `assign`."""
    def assign(self, starts: Sequence[tuple[int, int]]) -> None:
        """Read these (partition, offset) of the topic and no other partition; a
        negative offset is librdkafka's logical one (-2 the beginning, -1 the end)."""
    def unassign(self) -> None:
        """Read no partition."""
    def seek(self, partition: int, offset: int) -> None:
        """Read a partition again from this offset."""
    def take(
        self, limit: int, timeout: float
    ) -> tuple[
        list[int], list[int], list[bytes | None], list[bytes | None], list[tuple[str, bool]]
    ]:
        """Up to `limit` records (and errors) fetched; when none is, those that come
        within `timeout` seconds: (partitions, offsets, keys, values, errors as
        (text, fatal))."""
    def stats(self) -> str | None:
        """librdkafka's last statistics JSON since last asked for, if any."""
    def log_lines(self) -> tuple[list[tuple[int, str]], int]:
        """librdkafka's log lines of level warning or worse since last asked for, as
        (syslog level, line), and how many more were dropped."""
    def close(self) -> None:
        """Leave the partitions and free the consumer; harmless twice."""

class EventProducer:
    """A producer through the module's own librdkafka that reports failed records only
    (native/src/event_producer.rs)."""

    def __init__(self, config: Sequence[tuple[str, str]]) -> None:
        """librdkafka's properties as text."""
    def send(self, topic: str, key: bytes | None, values: Sequence[bytes], start: int) -> int:
        """Queue a record of each of `values[start:]` under `key` while the queue has
        room; the index reached (`len(values)`: all queued). Never waits."""
    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the queue to empty, serving the failures'
        reports; the records still queued (once closed, those `close` left)."""
    def __len__(self) -> int:
        """Records queued and not yet taken or failed; once closed, those it left."""
    def failed(self) -> int:
        """How many records have failed so far (closed or not)."""
    def failures(self, start: int) -> list[str]:
        """The failures reported after the first `start`, as `<topic>/<partition>: <error>`
        (closed or not)."""
    def log_lines(self) -> tuple[list[tuple[int, str]], int]:
        """librdkafka's log lines of level warning or worse since last asked for, as
        (syslog level, line), and how many more were dropped."""
    def close(self, timeout: float) -> int:
        """Flush for up to `timeout` seconds, then free the producer; the records it
        still held. Harmless twice."""

class ReportBatch:
    """A feed's batch of delivery reports read (as `fast_report` reads each), grouped by
    (partition, job id), located and folded without a Python object per report
    (native/src/report_batch.rs)."""

    def __init__(
        self,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None],
        partitions: Sequence[int],
        offsets: Sequence[int],
    ) -> None: ...
    @property
    def groups(self) -> list[tuple[int, str]]:
        """(partition, job id) of each group of records read here."""
    @property
    def unread(self) -> list[int]:
        """The records not read here (Python reads them), in order."""
    def members(self, group: int) -> list[int]:
        """A group's records (indexes in the batch), in offset order."""
    def first(self, group: int) -> int:
        """A group's first record (its index in the batch)."""
    def count(self, group: int) -> int:
        """How many records a group holds."""
    def locate(self, jobs: Sequence[tuple[str, int, str, list[int]] | None]) -> list[bool]:
        """For each group, its job's (message id prefix, users received, tenant, positions
        of the users the fan-out failed), or None: leave it to Python. Whether each
        group's every report was located (its message found by the position its id
        carries, a user the fan-out sent to)."""
    def reports(self, indexes: Sequence[int], make: Any, states: Sequence[Any]) -> list[Any | None]:
        """`make(messageId, jobId, states[rank], at, reason, provider, tenant)` of each
        record asked for, or None for one not read here."""
    def located(self, group: int) -> list[tuple[int, int]]:
        """A located group's (offset, position) of each record (ValueError for a group
        `locate` did not locate, as `block_numbers` and `fold`)."""
    def block_numbers(self, group: int) -> list[int]:
        """The blocks of message states a located group's reports fall in, sorted."""
    def fold(
        self,
        group: int,
        summary: bytes | None,
        blocks: dict[int, bytes | None],
        tenant: str,
        bucket: int,
        events_to: tuple[EventProducer, str] | None = None,
    ) -> (
        tuple[
            bytes,
            list[tuple[int, bytes]],
            list[bytes],
            tuple[list[int], list[int], list[int], bytes, str],
            dict[str, int],
        ]
        | None
    ):
        """A located group folded as `fold_reports` folds the same `Reported` tuples,
        its entries grouped by bucket of `bucket` positions, as
        `streams.views.delivery.bucket_fields` groups them (the fields of
        `BucketFields`: bucket numbers, each one's count of fields and end in the body,
        the body, one message's id). With `events_to` (a producer, a topic), the
        message events are queued there under the job's id, waiting for room if need
        be, and the list of events answered is empty."""

def carried_positions(job_ids: Sequence[str], message_ids: Sequence[str]) -> list[int]:
    """For each (job id, message id), the position the id carries as one of that job's
    (`streams.ids.position_of` of its last 24 characters), or -1."""
