"""Work done outside faust's streams, inside a faust event.

The command feed reads `bulk.commands` through librdkafka, not a faust stream;
faust's table still has to find the partition each write belongs to, which it
takes from the current event. `in_event` sets a stand-in event for the
duration of one command: faust keeps the current event in a private context
variable (`faust.streams._current_event`), so this is a patch of faust
behaviour, and lives here.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from faust import streams as faust_streams


class CommandEvent:
    """The event a command is applied in: faust's table finds the partition a
    write belongs to through the current event (`faust.streams.current_event`)."""

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
