"""Cutting stored batches into pages: every position once, in order, P per page."""

from __future__ import annotations

import pytest

from streams.paging import MissingUsers, StoredUser, cut_pages


def _batches(sizes: list[int]) -> list[list[StoredUser]]:
    out, position = [], 0
    for size in sizes:
        out.append([[p, f"user:{p}", {"n": p}] for p in range(position, position + size)])
        position += size
    return out


@pytest.mark.parametrize(
    ("sizes", "page_size"),
    [([1000, 1000], 500), ([3, 0, 997, 1], 500), ([7, 7, 7], 5), ([1], 500), ([1200], 500)],
)
def test_pages_hold_every_position_once_p_per_page(sizes: list[int], page_size: int) -> None:
    received = sum(sizes)
    pages = list(cut_pages(_batches(sizes), page_size, received))
    assert [n for n, _ in pages] == list(range(-(-received // page_size)))
    for number, users in pages:
        start = number * page_size
        assert [u[0] for u in users] == list(range(start, min(start + page_size, received)))
        assert all(u[1] == f"user:{u[0]}" for u in users)


def test_no_users_no_pages() -> None:
    assert list(cut_pages([[], []], 500, 0)) == []


def test_a_gap_between_batches_is_missing_users() -> None:
    batches = _batches([10, 10])
    del batches[0][-1]
    with pytest.raises(MissingUsers):
        list(cut_pages(batches, 4, 20))


def test_users_missing_at_the_end_are_found() -> None:
    with pytest.raises(MissingUsers, match="5 of 25"):
        list(cut_pages(_batches([10, 10]), 4, 25))
