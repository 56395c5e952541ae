"""Which offsets of `bulk.sends` a delivery worker may commit. Pure.

Sends of one partition finish out of order (one is retried while the next
goes through); committing past one not finished would lose it to a crash.
So each partition keeps the offsets taken, in the order taken (a consumer
hands a partition's records out in offset order), and the set of those
finished (delivered or given up, and the report acknowledged): the commit
point moves over the finished head of the line, never past an unfinished
offset, and is the offset after the last finished one (Kafka's committed
offset is the next record to read).

A partition revoked and assigned again starts a new generation: a send taken
in the old one that finishes later is not counted (the partition's new
owner reads it again). A record at or below one already taken (the consumer
went back) starts a new generation too: the records after it come again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ticket:
    """A send taken: where it was read, and in which generation of its partition."""

    partition: int
    offset: int
    generation: int


class _Line:
    """One partition's sends in hand, in offset order, and its commit points."""

    __slots__ = ("committed", "finished", "generation", "last_taken", "ready", "taken")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.taken: deque[int] = deque()
        self.finished: set[int] = set()
        # The offset to commit (next to read) once every send before it finished; None
        # until one did. `committed`: the last committed by this generation.
        self.ready: int | None = None
        self.committed: int | None = None
        self.last_taken = -1

    def finish(self, offset: int) -> None:
        self.finished.add(offset)
        taken, finished = self.taken, self.finished
        while taken and taken[0] in finished:
            head = taken.popleft()
            finished.discard(head)
            self.ready = head + 1


class CommitTracker:
    """The sends in hand of every partition held, and the offsets safe to commit."""

    def __init__(self) -> None:
        self._lines: dict[int, _Line] = {}
        self._generations = 0

    def _new_line(self, partition: int) -> _Line:
        self._generations += 1
        line = self._lines[partition] = _Line(self._generations)
        return line

    def assign(self, partitions: Iterable[int]) -> None:
        """Partitions now held: each starts a new generation with nothing in hand."""
        for partition in partitions:
            self._new_line(partition)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Partitions no longer held: forget them (their sends in hand no longer count)."""
        for partition in partitions:
            self._lines.pop(partition, None)

    def held(self) -> list[int]:
        return sorted(self._lines)

    def take(self, partition: int, offset: int) -> Ticket:
        """A send read from `partition` at `offset`, now in hand."""
        line = self._lines.get(partition)
        if line is None or offset <= line.last_taken:
            line = self._new_line(partition)
        line.taken.append(offset)
        line.last_taken = offset
        return Ticket(partition, offset, line.generation)

    def finish(self, ticket: Ticket) -> bool:
        """The send is done with (reported, the report acknowledged); False when its
        partition's generation is over (revoked, or read again) and it does not count."""
        line = self._lines.get(ticket.partition)
        if line is None or line.generation != ticket.generation:
            return False
        line.finish(ticket.offset)
        return True

    def committable(self, partitions: Iterable[int] | None = None) -> dict[int, int]:
        """Partition -> offset to commit, for those (of `partitions`, or all held) whose
        commit point moved past the last commit."""
        wanted = self._lines if partitions is None else partitions
        out: dict[int, int] = {}
        for partition in wanted:
            line = self._lines.get(partition)
            if line is None or line.ready is None:
                continue
            if line.committed is None or line.ready > line.committed:
                out[partition] = line.ready
        return out

    def committed(self, offsets: dict[int, int]) -> None:
        """These commits (from `committable`) were made."""
        for partition, offset in offsets.items():
            line = self._lines.get(partition)
            if line is not None and (line.committed is None or offset > line.committed):
                line.committed = offset

    def in_hand(self, partition: int | None = None) -> int:
        """Sends taken and not finished (of one partition, or of all held)."""
        lines = self._lines.values() if partition is None else [self._lines.get(partition)]
        return sum(len(line.taken) - len(line.finished) for line in lines if line is not None)
