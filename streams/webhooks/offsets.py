"""Which offsets of a partition may be committed: those below its oldest record whose
webhook messages are not all settled (pure).

A record makes one message per endpoint it goes to (none: settled when
taken). A message is settled once it is delivered, dropped (its endpoint
gone or disabled), or written to the retry or dead-letter topic. Messages
settle in any order; the committed offset only moves past a record once all
of its messages have, so a crash re-reads (and re-sends, under the same
webhook ids) only what was not settled. A message is settled within its
endpoint's queue's time (a full queue parks it on the retry topic at once):
the committed offsets stay within minutes of the newest records at worst,
never the retry horizon.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    def __init__(self) -> None:
        self._order: deque[int] = deque()  # offsets of records with messages, as taken
        self._open: dict[int, int] = {}  # offset -> messages not yet settled
        self._next: int | None = None  # the offset after the last record taken

    def take(self, offset: int, messages: int) -> None:
        """A record taken, making `messages` messages (taken in offset order)."""
        self._next = offset + 1
        if messages > 0:
            self._order.append(offset)
            self._open[offset] = messages

    def settle(self, offset: int) -> None:
        """One message of the record at `offset` settled."""
        left = self._open.get(offset)
        if left is None:
            return
        if left > 1:
            self._open[offset] = left - 1
        else:
            del self._open[offset]

    def committable(self) -> int | None:
        """The offset to commit (the next to read after a restart); None if nothing was
        taken."""
        while self._order and self._order[0] not in self._open:
            self._order.popleft()
        return self._order[0] if self._order else self._next

    @property
    def next(self) -> int | None:
        """The offset after the last record taken (None: none taken)."""
        return self._next

    @property
    def unsettled(self) -> int:
        """Records taken whose messages are not all settled."""
        return len(self._open)
