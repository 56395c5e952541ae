"""Patch: resuming flow control does not empty the stream queues.

Upstream: mode's `FlowControlEvent.resume` empties every queue it manages
(mode-streaming 0.7.1), and faust-streaming resumes flow at the end of a
recovery (`Recovery._resume_streams`, 0.15.3 and master) after it has resumed
fetching the new partitions and seeked them: what the fetcher delivered in
between is dropped, while faust's read offsets have moved past it, so it is
never delivered again. faust-streaming#236 (events out of order when the
queues are cleared) and #253 (resume the consumer only after flow control)
addressed the same emptying; the order in `_resume_streams` still leaves the
window (robinhood/faust#583 describes the same loss for tables).

Failure it prevents: a page report or control message lost, or a partition
stalled, after a rebalance (a job came out with 99,000 of 100,000 users when
commands still went through faust). Stale messages are already dropped when
partitions are revoked (`flow_control.clear()` in `App.on_partitions_revoked`),
so nothing is lost by keeping the queues here.

Regression test: tests/streams/runtime/test_flow_control.py.
"""

from __future__ import annotations

from mode.utils.queues import FlowControlEvent


class KeepQueuesOnResume(FlowControlEvent):
    """faust's flow control, except that resuming keeps what the queues hold."""

    _resuming = False

    def resume(self) -> None:
        self._resuming = True
        try:
            super().resume()
        finally:
            self._resuming = False

    def clear(self) -> None:
        if not self._resuming:  # a clear of its own (on revoke) still empties them
            super().clear()
