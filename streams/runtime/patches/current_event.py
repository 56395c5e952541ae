"""Patch: table writes outside faust's streams, inside a stand-in faust event.

Upstream: a faust table finds the partition a write belongs to through the
current event, which only a stream iteration sets (faust keeps it in a
private context variable, `faust.streams._current_event`, 0.15.3 and
master); anywhere else a write raises "Cannot modify table key from outside
of stream iteration" (faust-streaming#497, open).

Failure it prevents: the command feed reads `bulk.commands` through
librdkafka, not a faust stream, so none of its writes (the job state, the
cursors) could be made. `in_event` sets a stand-in event for the duration of
one command, so its writes land in the command's partition.

Regression test: tests/streams/runtime/test_current_event.py.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from faust import streams as faust_streams


class CommandEvent:
    """The event a command is applied in: faust's table reads its `message`'s
    partition (`faust.streams.current_event`)."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Any) -> None:
        self.message = message


@contextlib.contextmanager
def in_event(message: Any) -> Iterator[CommandEvent]:
    """Table reads and writes inside go to the message's partition."""
    event = CommandEvent(message)
    current: Any = faust_streams._current_event
    token = current.set(weakref.ref(event))
    try:
        yield event
    finally:
        current.reset(token)
