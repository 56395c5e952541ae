"""Blocking librdkafka calls with a deadline of our own.

Some transactional calls of librdkafka can block past the timeout they are
given: a request to a coordinator that went away is never timed out
(librdkafka issues #5456 and #5511). After a broker restart, one fan-out
worker sat in `send_offsets_to_transaction` for good, and the pages of its
partitions with it. Here such a call runs on a thread of its own; past its
deadline the caller gets `CallStuck` and starts over with new clients. The
stuck thread stays blocked out of the way, holding the old client, so that
client is never destroyed under it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from streams.errors import CallStuck

T = TypeVar("T")


class BoundedCalls:
    """Runs calls one at a time on a daemon thread, so a stuck one never holds
    up the caller, nor the process's exit."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, future = item
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller as it is
                future.set_exception(exc)

    def call(self, fn: Callable[[], T], seconds: float, what: str) -> T:
        """`fn()`'s result or exception; `CallStuck` if it has not returned in `seconds`."""
        future: Future[T] = Future()
        self._calls.put((fn, future))
        try:
            return future.result(timeout=seconds)
        except TimeoutError:
            raise CallStuck(f"{what} did not return in {seconds:.0f} s") from None

    def close(self) -> None:
        """Let the thread end once it is done (at once, unless a call is stuck)."""
        self._calls.put(None)
