"""Patch: a partition assigned starts with no read offset.

Upstream: faust's consumer drops a fetched record whose offset is below the
partition's read offset (`Consumer._drain_messages`, "DROPPED MESSAGE ROFF";
faust-streaming 0.15.3 and master). On a revoke, `Consumer.on_partitions_revoked`
forgets the revoked partitions' read offsets and only then does the app stop
the flow and clear the stream queues. A drain loop that was handing a record
to a full stream queue at that moment wakes on the stop and writes that
record's offset back: the read offset of a partition the worker no longer
reads, above the records just cleared from the queue. When the partition is
assigned again, faust resumes fetching it, then seeks it to its committed
offset (`Recovery.on_recovery_completed`, `perform_seek`, one partition at a
time) and only after every seek replaces the read offsets. Records fetched
before that are dropped below the stale offset, and fetching has moved past
them; a partition with nothing committed (or 0) is not sought back at all.
robinhood/faust#115 and faust-streaming#216 report records skipped after a
rebalance in the same code.

Failure it prevents: page reports and control messages of a partition lost
across a rebalance: a job left PROCESSING with every send made (the likely
cause of a CI run of tests/chaos/test_short.py[redis-restart] in which 34 of
40 page reports were never folded). With the buffer_pause patch a full
stream buffer blocks the drain loop, so the window is open whenever an agent
lags when a worker joins.

Forgotten on assignment, a record is read from where fetching starts until
`perform_seek` sets the committed offset; records read twice are folded once
(every agent here is replay-safe).

Regression test: tests/streams/runtime/test_read_offsets.py.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver


class ForgetReadOffsetsOnAssign(aiokafka_driver.Consumer):
    """faust's consumer, forgetting any read offset of a partition it is assigned."""

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        for tp in assigned:
            self._read_offset.pop(tp, None)
        await super().on_partitions_assigned(assigned, generation_id)
