"""Message events no endpoint takes are not fetched, and are passed over unread.

A delivery report folded makes a message event, so `bulk.message-events`
carries about one record a message; most deployments subscribe to job events
only, or to nothing. Reading each record to find that no endpoint takes it
cost the dispatcher's worker a few microseconds a message, and the broker a
fetch. So while no enabled endpoint takes a message event type (`message.*`,
one of its types, or `*`), the dispatcher keeps its message-events partitions
paused, and once a second moves them to their end:

1. it asks the end of each such partition it holds (one it has read from:
   a partition just assigned is read until a record is taken, so that its
   position is known);
2. then reads `bulk.webhooks` to its end, so that every endpoint
   acknowledged before the ends were asked is in hand;
3. if none of them takes message events either, each partition is paused
   (if it was not) and, if behind, sought to its end; the records passed
   over are settled (none had a message to send) and counted in
   `bulkstream_webhook_events_skipped_total`.

As soon as an endpoint takes message events, the partitions are resumed from
where they were last moved to, and read as always. An event passed over was
written before the end was asked, so before any endpoint that could take it
was acknowledged: the dispatcher's contract (an endpoint acknowledged before
an event was written meets it) is kept.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer
from confluent_kafka.cimpl import KafkaException, TopicPartition

from streams.webhooks.offsets import PartitionOffsets

SKIP_SECONDS = 1.0  # how often the partitions are moved to their end
ENDS_SECONDS = 5.0  # asking a partition's end may take this long, at most

Key = tuple[str, int]  # (topic, partition)


class Skipper:
    """The message-events partitions kept paused, and when they are next moved on."""

    def __init__(self, topic: str, bootstrap_servers: str) -> None:
        self.topic = topic
        self.skipping: set[Key] = set()  # paused while no endpoint takes message events
        self.due = 0.0
        # Ends are asked on a connection of their own: a broker answers a connection's
        # requests in order, and the group consumer's fetch may wait there.
        self.probe = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "unused"})

    def due_keys(self, offsets: dict[Key, PartitionOffsets]) -> list[Key]:
        """The message-events partitions to move on, when it is time (once a second at
        most): those held that were read from."""
        now = time.monotonic()
        if now < self.due:
            return []
        self.due = now + SKIP_SECONDS
        return [
            key
            for key, tracker in offsets.items()
            if key[0] == self.topic and tracker.next is not None
        ]

    def ends(self, keys: list[Key]) -> dict[Key, int]:
        """Each partition's end (blocking: a request to the broker each)."""
        ends = {}
        for topic, partition in keys:
            _, high = self.probe.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=ENDS_SECONDS, cached=False
            )
            ends[(topic, partition)] = high
        return ends

    def skip(
        self, consumer: Consumer, offsets: dict[Key, PartitionOffsets], ends: dict[Key, int]
    ) -> int:
        """Keep each partition still held paused, and seek one behind to its end, the
        records passed over settled; how many were passed over. (The caller pauses
        the partitions `skipping` holds before the next fetch.)"""
        skipped = 0
        for key, end in ends.items():
            tracker = offsets.get(key)
            position = tracker.next if tracker is not None else None
            if tracker is None or position is None:
                continue  # revoked meanwhile
            if position < end:
                try:
                    consumer.seek(TopicPartition(key[0], key[1], end))
                except KafkaException:  # not fetching yet: read it instead, for now
                    continue
                tracker.take(end - 1, 0)
                skipped += end - position
            self.skipping.add(key)
        return skipped

    def close(self) -> None:
        self.probe.close()
