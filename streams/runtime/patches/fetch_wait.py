"""Patch: the broker holds a fetch of faust's consumer at most `FETCH_MAX_WAIT_MS`.

Upstream: faust-streaming passes `fetch_max_wait_ms=1500` to aiokafka and
offers no setting for it (`AIOKafkaConsumerThread._create_worker_consumer`,
unchanged in 0.15.3 and on master; robinhood/faust#281 asked for one and was
never merged). aiokafka (0.14) keeps one fetch in flight per broker and leaves
out of it every partition whose fetched records are not all consumed yet.

Failure it prevents: a stalled agent. While an agent works through a batch
of page reports, the fetch in flight names only idle partitions; the busy
partition cannot be fetched again until the broker gives that fetch up, so
each new report waited up to 1.5 s with the agent idle.

Regression test: tests/streams/runtime/test_fetch_wait.py.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver

FETCH_MAX_WAIT_MS = 100


def short_fetch_wait(consumer: Any) -> None:
    """Make an aiokafka consumer, not yet started, ask the broker to wait at most
    `FETCH_MAX_WAIT_MS` for records."""
    # aiokafka (0.12 to 0.14) hands this to its fetcher when the consumer starts.
    if not hasattr(consumer, "_fetch_max_wait_ms"):
        raise RuntimeError("aiokafka changed: its consumer has no _fetch_max_wait_ms to set")
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS


class ShortFetchWait(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's consumer thread, building an aiokafka consumer with a short fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        short_fetch_wait(consumer)
        return consumer
