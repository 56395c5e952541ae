"""A feed's reader of its topic's partitions through the native module's own
librdkafka (`bulkstream_native.FeedReader`, native/src/feed_reader.rs): each take
by column (partitions, offsets, keys, values), with no Python object made per
record but its key and value.

confluent-kafka's `Consumer.consume` makes a `Message` a record, and reading it by
column calls four of its methods: 1.3 to 2 µs of CPU a delivery report under the
GIL, more than the native fold of the report itself (native/bench_consume.py).
The reader takes the same librdkafka properties as the consumer it replaces and
offers the calls a feed makes of it (`assign`, `unassign`, `seek`, `close`);
`take` answers by column, and hands librdkafka's log lines of level warning or
worse to this module's logger (confluent-kafka prints them on stderr)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from confluent_kafka import TopicPartition

from streams.native import member

log = logging.getLogger(__name__)

_FEED_READER = member("FeedReader")
AVAILABLE = _FEED_READER is not None

# syslog's levels, as librdkafka gives its log lines' (warning or worse only)
_LEVELS = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR}


def forward_lines(source: str, lines: list[tuple[int, str]], dropped: int) -> None:
    """Hand a native client's librdkafka log lines (syslog level, line) to this module's
    logger, and how many more it dropped."""
    for level, line in lines:
        log.log(_LEVELS.get(level, logging.WARNING), "librdkafka (%s): %s", source, line)
    if dropped:
        log.warning("librdkafka (%s): %d more log lines", source, dropped)


class Fetched(NamedTuple):
    """One take: its records by column, and the errors met instead of records as
    (text, fatal)."""

    partitions: list[int]
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    errors: list[tuple[str, bool]]


def properties(config: dict[str, Any]) -> list[tuple[str, str]]:
    """librdkafka's properties as text, as confluent-kafka passes them (True as "true");
    callbacks (confluent-kafka's `stats_cb`, ...) have no place here."""
    text = []
    for name, value in config.items():
        if callable(value):
            raise ValueError(f"{name}: the native reader takes no callback")
        text.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    return text


class NativeReader:
    """One topic's assigned partitions, read by librdkafka in the native module."""

    def __init__(self, config: dict[str, Any], topic: str) -> None:
        if _FEED_READER is None:
            raise RuntimeError("bulkstream_native is not installed (`make native`)")
        self.topic = topic
        self.reader = _FEED_READER(properties(config), topic)

    def assign(self, starts: Sequence[TopicPartition]) -> None:
        """Read these partitions of the topic, each from its offset (librdkafka's
        logical ones too: `OFFSET_BEGINNING`, ...), and no other."""
        if any(start.topic != self.topic for start in starts):
            raise ValueError(f"this reader reads {self.topic} only")
        self.reader.assign([(start.partition, start.offset) for start in starts])

    def unassign(self) -> None:
        self.reader.unassign()

    def seek(self, start: TopicPartition) -> None:
        """Read a partition again from this offset."""
        self.reader.seek(start.partition, start.offset)

    def take(self, limit: int, timeout: float) -> Fetched:
        """Up to `limit` records librdkafka has fetched; when it has none, those that
        come within `timeout` seconds."""
        fetched = Fetched(*self.reader.take(limit, timeout))
        forward_lines(self.topic, *self.reader.log_lines())
        return fetched

    def stats(self) -> str | None:
        """librdkafka's statistics JSON (`statistics.interval.ms`) since last asked."""
        stats: str | None = self.reader.stats()
        return stats

    def close(self) -> None:
        self.reader.close()


def reader_maker(native: bool) -> Callable[[dict[str, Any], str], NativeReader] | None:
    """What makes a native reader, if asked for (`Settings.native`) and installed."""
    return NativeReader if native and AVAILABLE else None
