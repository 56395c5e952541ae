"""Patch: the consumer refuses the ack of a message of an older generation, or one
handled while flow control is suspended.

Upstream: faust-streaming#221 (fixed by #223) made a stream skip a message
fetched before a rebalance; 0.15.3 (and master) also skips one delivered
while `app.flow_control` is suspended. Its pure-Python iterator
(`Stream._py_aiter`, what faust runs without its C extension: NO_CYTHON=1,
PyPy, a platform without a binary wheel) then *acks* the skipped message, and
`Consumer.ack` takes the ack, so the next commit can pass a message nobody
processed. No upstream issue names this. Its C iterator
(`faust/_cython/streams.pyx`, the default where the wheel's extension loads)
does not ack a skipped message, and acks processed ones inline, without
calling `Consumer.ack`: there, this patch changes nothing.

Failure it prevents: a control message (a release, a purge) lost: the offset
committed past it, so it is never fetched again. Refused, the message stays
unacked; it is fetched again after the rebalance (faust seeks every
partition to its committed offset). On the pure-Python path a message an
agent finished during the rebalance is likewise left to be redone: every
agent here is replay-safe.

Regression test: tests/streams/runtime/test_stale_acks.py.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types.tuples import ack_lock


class RefuseStaleAcks(aiokafka_driver.Consumer):
    """faust's consumer, taking no ack of a message of an older generation, or of
    one handled while flow control is suspended (a rebalance)."""

    def ack(self, message: Any) -> bool:
        app = self.app
        if message.generation_id != app.consumer_generation_id or not app.flow_control.is_active():
            with ack_lock:
                message.acked = True  # done with, for the stream: no second ack
                self.unacked.discard(message)  # nor anything to wait for on stop
            return False
        return bool(super().ack(message))
