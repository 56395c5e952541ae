"""`bulkstream dlq`: the dead-letter topics listed, and their letters sent back once the
cause is mended.

Three topics hold what the engine could not take, each letter with its reason:

- `commands` (`bulk.commands.dlq`): poison commands, copied whole, with the
  headers `x-bulkstream-reason`, `x-bulkstream-error` and
  `x-bulkstream-source` (the record it was, `topic/partition/offset`);
- `reports` (`bulk.delivery-status.dlq`): delivery reports that could not be
  folded, the same way;
- `webhooks` (`bulk.webhooks.dlq`): webhook messages given up on past the
  retry horizon (`streams.webhooks.retries.DeadLetter`).

`list` prints one JSON line per letter. `replay` sends the letters chosen
(by reason, by time) back to where they were taken from: a command or a
report to its topic, as it was (same key and value, the key's partition,
a header `x-bulkstream-replayed-from` naming the letter); a webhook message
to the first tier of the retry topic, due at once and with a fresh horizon,
so the dispatcher sends it again under its own `webhook-id`, signed anew
(an endpoint deleted or disabled since takes nothing). With `--rekey`, a
command or a report goes back keyed by the `jobId` its value names (the
mend of a `wrong-key` letter: a producer that keyed it otherwise); a letter
whose value names none stays where it is, counted `unreadable`. Replaying twice is
safe: a command whose id the aggregate applied already gets its first
answer again, a report folds once, and receivers deduplicate on the
webhook id. What a replay cannot
mend comes back to its DLQ with its reason (a command still invalid, a
report of a job still unknown).

Both read each partition from the first letter at or after `--since` (else
from the start) to its end as the command began; nothing is committed.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from streams.kafka.config import producer_config
from streams.kafka.producer import produce_waiting
from streams.kafka.topics import MAX_DEAD_LETTER_BYTES
from streams.settings import Settings
from streams.webhooks.retries import DeadLetter, RetryRecord

WHICH = ("commands", "reports", "webhooks")
REPLAYED_FROM = "x-bulkstream-replayed-from"
# The retry topic's partition of the shortest delay (`streams.webhooks.backoff`).
FIRST_TIER = 0
# A partition that yields nothing this long before its end is given up on.
IDLE_SECONDS = 60.0


@dataclass(frozen=True)
class Letter:
    """One record of a dead-letter topic."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name)
        return None if raw is None else raw.decode(errors="replace")


@dataclass(frozen=True)
class Chosen:
    """Which letters: of what reason (None: any), dead-lettered at or after `since_ms`."""

    reason: str | None = None
    since_ms: int | None = None


class DeadLetters:
    """One of the three dead-letter topics, read and replayed."""

    def __init__(self, settings: Settings, which: str) -> None:
        if which not in WHICH:
            raise ValueError(f"no dead-letter topic {which!r}: one of {', '.join(WHICH)}")
        self.s = settings
        self.which = which
        self.topic = {
            "commands": settings.topic_commands_dlq,
            "reports": settings.topic_delivery_status_dlq,
            "webhooks": settings.topic_webhooks_dlq,
        }[which]

    # -- reading -------------------------------------------------------------------
    def letters(self, chosen: Chosen = Chosen()) -> Iterator[tuple[Letter, dict[str, Any]]]:
        """The letters chosen, each with what `list` prints of it, in partition and
        offset order."""
        for letter in self._read(chosen.since_ms):
            shown = self.describe(letter)
            if chosen.reason is None or shown.get("reason") == chosen.reason:
                yield letter, shown

    def describe(self, letter: Letter) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "partition": letter.partition,
            "offset": letter.offset,
            "at": _rfc3339(letter.timestamp_ms),
        }
        if self.which == "webhooks":
            try:
                dead = DeadLetter.model_validate_json(letter.value or b"")
            except ValueError as exc:
                return shown | {"reason": None, "error": f"not a dead letter: {exc}"}
            return shown | {
                "reason": dead.reason,
                "webhookId": dead.webhook_id,
                "subscriptionId": dead.subscription_id,
                "tenant": dead.tenant,
                "url": dead.url,
                "type": dead.type,
                "failures": dead.failures,
                "firstAt": _rfc3339(int(dead.first_at * 1000)),
                "deadAt": _rfc3339(int(dead.dead_at * 1000)),
            }
        return shown | {
            "reason": letter.header("x-bulkstream-reason"),
            "error": letter.header("x-bulkstream-error"),
            "source": letter.header("x-bulkstream-source"),
            "key": None if letter.key is None else letter.key.decode(errors="replace"),
            "bytes": len(letter.value or b""),
        }

    def _read(self, since_ms: int | None) -> Iterator[Letter]:
        consumer = Consumer(
            {
                "bootstrap.servers": self.s.kafka_bootstrap_servers,
                "group.id": f"{self.s.app_id}-dlq-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.max.bytes": MAX_DEAD_LETTER_BYTES,
                "max.partition.fetch.bytes": MAX_DEAD_LETTER_BYTES,
                "receive.message.max.bytes": MAX_DEAD_LETTER_BYTES + 1024 * 1024,
            }
        )
        try:
            metadata = consumer.list_topics(self.topic, timeout=30).topics[self.topic]
            if metadata.error is not None:
                raise RuntimeError(f"{self.topic}: {metadata.error}")
            partitions = sorted(metadata.partitions)
            marks = {
                p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)
                for p in partitions
            }
            starts = {p: low for p, (low, _) in marks.items()}
            if since_ms is not None:
                asked = [TopicPartition(self.topic, p, since_ms) for p in partitions]
                for found in consumer.offsets_for_times(asked, timeout=30):
                    # -1: no letter as late as `since` in that partition.
                    starts[found.partition] = (
                        found.offset if found.offset >= 0 else marks[found.partition][1]
                    )
            for p in partitions:
                start, end = starts[p], marks[p][1]
                if start < end:
                    yield from self._partition(consumer, TopicPartition(self.topic, p, start), end)
        finally:
            consumer.close()

    def _partition(self, consumer: Consumer, start: TopicPartition, end: int) -> Iterator[Letter]:
        consumer.assign([start])
        deadline = time.monotonic() + IDLE_SECONDS
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            deadline = time.monotonic() + IDLE_SECONDS
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return
                raise RuntimeError(f"{self.topic}: {error}")
            offset = message.offset() or 0
            if offset >= end:
                return
            yield Letter(
                partition=message.partition() or 0,
                offset=offset,
                timestamp_ms=message.timestamp()[1],
                key=message.key(),
                value=message.value(),
                headers=_headers(message.headers()),
            )
            if offset + 1 >= end:
                return
        raise RuntimeError(
            f"{self.topic}/{start.partition}: nothing read for {IDLE_SECONDS:g} s before its end"
        )

    # -- replaying ---------------------------------------------------------------
    def replay(self, chosen: Chosen, dry_run: bool = False, rekey: bool = False) -> dict[str, Any]:
        """Send the chosen letters back (`rekey`: keyed by the jobId each names); what
        was done, by reason."""
        if rekey and self.which == "webhooks":
            raise ValueError("--rekey is for commands and reports: a webhook letter has its id")
        reasons: Counter[str] = Counter()
        unreadable = rekeyed = 0
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        config = producer_config(self.s) | {"message.max.bytes": MAX_DEAD_LETTER_BYTES}
        producer = Producer({**config, "on_delivery": delivered})
        to = self.s.topic_webhooks_retry if self.which == "webhooks" else self._source_topic()
        for letter, shown in self.letters(chosen):
            record = self._record(letter)
            if record is not None and rekey:
                job_id = _job_id(letter.value)
                if job_id is None:
                    record = None
                else:
                    rekeyed += record[0] != job_id
                    record = (job_id, *record[1:])
            if record is None:
                unreadable += 1
                continue
            reasons[str(shown.get("reason"))] += 1
            if dry_run:
                continue
            key, value, partition, headers = record
            placed = {} if partition is None else {"partition": partition}
            produce_waiting(producer, to, key, value, headers=headers, **placed)
            producer.poll(0)
        left = producer.flush(60)
        if left or failures:
            raise RuntimeError(
                f"{left} letter(s) not acknowledged by the broker; failures: {failures[:3]}"
            )
        return {
            "topic": self.topic,
            "to": to,
            "replayed": 0 if dry_run else sum(reasons.values()),
            "matched": sum(reasons.values()),
            "byReason": dict(sorted(reasons.items())),
            "unreadable": unreadable,
            "dryRun": dry_run,
        } | ({"rekeyed": rekeyed} if rekey else {})

    def _source_topic(self) -> str:
        return self.s.topic_commands if self.which == "commands" else self.s.topic_delivery_status

    def _record(
        self, letter: Letter
    ) -> tuple[bytes | None, bytes, int | None, dict[str, str | bytes | None]] | None:
        """(key, value, partition or None for the key's, headers) of the letter's replay;
        None for a webhook letter that is not one."""
        origin = f"{self.topic}/{letter.partition}/{letter.offset}".encode()
        if self.which != "webhooks":
            return letter.key, letter.value or b"", None, {REPLAYED_FROM: origin}
        try:
            dead = DeadLetter.model_validate_json(letter.value or b"")
        except ValueError:
            return None
        now = time.time()
        again = RetryRecord(
            webhook_id=dead.webhook_id,
            subscription_id=dead.subscription_id,
            tenant=dead.tenant,
            type=dead.type,
            body=dead.body,
            failures=0,
            first_at=now,
            due=now,
            last_error=dead.reason,
        )
        value = orjson.dumps(again.to_wire())
        return dead.webhook_id.encode(), value, FIRST_TIER, {REPLAYED_FROM: origin}


def _job_id(value: bytes | None) -> bytes | None:
    """The `jobId` a command's or a report's value names, as a key; None without one."""
    try:
        decoded = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    job_id = decoded.get("jobId") if isinstance(decoded, dict) else None
    return job_id.encode() if isinstance(job_id, str) and job_id else None


def parse_since(text: str | None) -> int | None:
    """An RFC 3339 time (`2026-12-03T10:00:00Z`) as Unix milliseconds."""
    if text is None:
        return None
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (end it with Z for UTC)")
    return int(stamp.timestamp() * 1000)


def _headers(
    raw: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None,
) -> dict[str, bytes]:
    pairs = raw.items() if isinstance(raw, dict) else raw or []
    return {k: v.encode() if isinstance(v, str) else v or b"" for k, v in pairs}


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
