"""Cutting a job's accepted users into fan-out pages: pure logic, no Kafka.

Page n holds positions [n*P, (n+1)*P). Users are stored per ingest batch, in
arrival order, each batch a contiguous run of positions that starts where the
previous one ended, so a page is a few list slices: no per-user work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

# (position in the job, identity, the user as ingested), as stored per batch
StoredUser = list[Any]


class MissingUsers(Exception):
    """The stored batches do not hold every position of the job."""


def cut_pages(
    batches: Iterable[list[StoredUser]], size: int, received: int
) -> Iterator[tuple[int, list[StoredUser]]]:
    """(page number, its users) for every page of a job of `received` users.

    Raises MissingUsers at the first gap, or at the end when users are missing."""
    expected = 0
    page: list[StoredUser] = []
    number = 0
    for users in batches:
        if not users:
            continue
        first, last = users[0][0], users[-1][0]
        if first != expected or last != first + len(users) - 1:
            raise MissingUsers(
                f"positions {expected} onwards are missing (a batch holds {first}..{last})"
            )
        expected = last + 1
        i = 0
        while i < len(users):
            position = users[i][0]
            if position // size != number:
                if page:
                    yield number, page
                page, number = [], position // size
            j = i + (number + 1) * size - position
            page.extend(users[i:j])
            i = j
    if page:
        yield number, page
    if expected != received:
        raise MissingUsers(f"{received - expected} of {received} users are missing")
