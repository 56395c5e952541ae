"""Patch: faust's consumer reads `read_committed`.

Upstream: faust-streaming builds its aiokafka consumer with
`isolation_level="read_committed"` only when `processing_guarantee` is
`exactly_once` (`AIOKafkaConsumerThread._create_worker_consumer`; unchanged in
0.15.3 and on master), and offers no setting for it. We run at least once
(faust's exactly-once mode has open faults, e.g. faust-streaming#517).

Failure it prevents: a record of an aborted transaction seen by an agent.
The page reports on `bulk.progress`, written in the fan-out's transactions,
were read by a faust agent until they moved to the progress feed
(librdkafka, read_committed itself); the one agent left reads `bulk.control`,
which no transaction writes. The patch stays so that whatever faust reads is
read as every other reader here reads: a report of an aborted fan-out
transaction counted would count sends that never happened.

Regression test: tests/streams/runtime/test_read_committed.py.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver

ISOLATION_LEVEL = "read_committed"


def read_committed(consumer: Any) -> None:
    """Make an aiokafka consumer, not yet started, read only committed records."""
    # aiokafka (0.12 to 0.14) keeps the level given to its constructor here and
    # hands it to its fetcher when the consumer starts.
    if not hasattr(consumer, "_isolation_level"):
        raise RuntimeError("aiokafka changed: its consumer has no _isolation_level to set")
    consumer._isolation_level = ISOLATION_LEVEL


class ReadCommitted(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's consumer thread, building an aiokafka consumer that reads committed records."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        read_committed(consumer)
        return consumer
