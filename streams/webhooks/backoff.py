"""When a failed webhook message is tried again (pure).

After the n-th failed attempt the next one is due `first * 2**(n-1)` seconds
later, stretched by up to `JITTER` at random (so that the messages of an
endpoint that came back do not all arrive at once); the doubling stops at
the last delay tier. A message is retried while its next attempt falls
within `horizon` seconds of its first; after that it is dead-lettered.

Each delay tier is a partition of the retry topic (`streams.webhooks.retries`):
every record of a tier waits about the same time, so a tier's records fall
due in the order they were written.
"""

from __future__ import annotations

from streams.kafka.topics import WEBHOOK_RETRY_TIERS

TIERS = WEBHOOK_RETRY_TIERS  # partitions of the retry topic; the last one's delay: first * 2**15
JITTER = 0.25  # a delay is stretched by up to this fraction of itself


def tier(failures: int, tiers: int = TIERS) -> int:
    """The delay tier of the retry after `failures` failed attempts (at least 1), of
    `tiers` (the retry topic's partitions)."""
    return min(max(failures, 1) - 1, tiers - 1)


def tier_delay(index: int, first: float) -> float:
    """The delay (before jitter) of a tier."""
    return first * 2.0 ** max(index, 0)


def jittered(delay: float, draw: float) -> float:
    """`delay` stretched by `draw` (0 <= draw < 1) of the jitter."""
    return delay * (1.0 + JITTER * draw)


def due(tier_index: int, now: float, first: float, draw: float) -> float:
    """When a record written now to this tier falls due."""
    return now + jittered(tier_delay(tier_index, first), draw)


def within(due_at: float, first_at: float, horizon: float) -> bool:
    """Whether an attempt at `due_at` is still within the horizon of a message first
    read at `first_at` (else it goes to the DLQ)."""
    return due_at <= first_at + horizon


def schedule(first: float, horizon: float) -> list[float]:
    """The nominal delays (no jitter) of every retry within the horizon, in order."""
    delays: list[float] = []
    elapsed = 0.0
    failures = 1
    while True:
        delay = tier_delay(tier(failures), first)
        if elapsed + delay > horizon:
            return delays
        delays.append(delay)
        elapsed += delay
        failures += 1
