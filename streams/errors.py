"""The one small exception tree of bulkstream."""

from __future__ import annotations


class BulkstreamError(Exception):
    """Base of every error bulkstream raises on purpose."""


class PoisonCommand(BulkstreamError):
    """A command that cannot be decoded or validated; it goes to the DLQ."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DeliveryFailed(BulkstreamError):
    """The broker did not take a record; librdkafka's delivery report says why."""


class CallStuck(BulkstreamError):
    """A client call did not return by its deadline (see `streams.kafka.bounded`)."""


class Stopped(BulkstreamError):
    """The worker stops while a call waits for the broker (a full producer queue): the
    call is given up, and the session with it."""


class ThreadEnded(BulkstreamError):
    """A worker's own thread (the fan-out loop, the webhook dispatcher) ended before the
    worker told it to stop; the worker crashes and exits with an error."""


class JobFailed(BulkstreamError):
    """A job cannot be fanned out at all; it ends in status ERROR with this reason."""
