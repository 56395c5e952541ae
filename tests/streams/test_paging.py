"""Stored batches and the pages cut from them: every position once, in order, P per page."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.aggregate.paging import (
    MissingUsers,
    StoredBatch,
    cut_pages,
    decode_batch,
    encode_batch,
    read_batch,
)


def _users(first: int, count: int) -> list[tuple[int, str, dict[str, Any]]]:
    return [
        (p, f"user:{p}", {"to": {"user_id": f"ü,{p}]"}, "data": {"n": [p, "a,b"]}})
        for p in range(first, first + count)
    ]


def _batches(sizes: list[int]) -> list[StoredBatch]:
    out, position = [], 0
    for size in sizes:
        out.append(read_batch(encode_batch(_users(position, size))))
        position += size
    return out


def test_a_stored_batch_decodes_to_its_users() -> None:
    users = _users(40, 7)
    raw = encode_batch(users)
    assert decode_batch(raw) == [list(u) for u in users]
    batch = read_batch(raw)
    assert batch.first == 40
    assert orjson.loads(b"[" + batch.slice(2, 5) + b"]") == [list(u) for u in users[2:5]]
    assert decode_batch(encode_batch([])) == []


@pytest.mark.parametrize("metadata", [None, {"campaign": "c,]", "n": [1, 2.5]}])
def test_a_batch_encoded_from_its_users_json_is_the_same_bytes(metadata: Any) -> None:
    """The users' JSON made when the command was read is spliced, not dumped again."""
    users: list[list[Any]] = [list(u) for u in _users(7, 5)]
    users.append([12, "", {"data": None}])
    if metadata is not None:
        users = [[*u, metadata] for u in users]
    sent = [orjson.dumps(u[2]) for u in users]
    assert encode_batch(users, sent) == encode_batch(users)


def test_a_value_that_is_not_a_stored_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="not a stored batch"):
        read_batch(orjson.dumps(_users(3, 5)))


def test_a_batch_with_a_hole_in_its_positions_is_refused() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        encode_batch([(0, "user:a", {}), (2, "user:b", {})])


@pytest.mark.parametrize(
    ("sizes", "page_size"),
    [([1000, 1000], 500), ([3, 0, 997, 1], 500), ([7, 7, 7], 5), ([1], 500), ([1200], 500)],
)
def test_pages_hold_every_position_once_p_per_page(sizes: list[int], page_size: int) -> None:
    received = sum(sizes)
    pages = list(cut_pages(_batches(sizes), page_size, received))
    assert [n for n, _ in pages] == list(range(-(-received // page_size)))
    for number, raw in pages:
        start = number * page_size
        users = orjson.loads(raw)
        assert [u[0] for u in users] == list(range(start, min(start + page_size, received)))
        assert users == [list(u) for u in _users(start, len(users))]


def test_no_users_no_pages() -> None:
    assert list(cut_pages(_batches([0, 0]), 500, 0)) == []


def test_a_gap_between_batches_is_missing_users() -> None:
    batches = [read_batch(encode_batch(_users(0, 10))), read_batch(encode_batch(_users(11, 9)))]
    with pytest.raises(MissingUsers):
        list(cut_pages(batches, 4, 20))


def test_users_missing_at_the_end_are_found() -> None:
    with pytest.raises(MissingUsers, match="5 of 25"):
        list(cut_pages(_batches([10, 10]), 4, 25))


def test_a_range_of_pages_is_cut_from_the_batch_holding_its_first_user() -> None:
    """Pages [2, 4) of 10 users in pages of 2, the batches given from an earlier one:
    exactly positions 4..7, in two pages."""
    users = [[p, f"user:{p}", {"to": {"user_id": str(p)}}] for p in range(10)]
    batches = [read_batch(encode_batch(users[a:b])) for a, b in ((0, 3), (3, 7), (7, 10))]
    pages = list(cut_pages(batches[1:], 2, 10, first_page=2, stop_page=4))
    assert [(n, [u[0] for u in orjson.loads(raw)]) for n, raw in pages] == [
        (2, [4, 5]),
        (3, [6, 7]),
    ]
    # The last page alone, and a range whose users are not all there.
    assert [n for n, _ in cut_pages(batches[2:], 2, 10, first_page=4)] == [4]
    with pytest.raises(MissingUsers):
        list(cut_pages(batches[2:], 2, 10, first_page=2, stop_page=4))
