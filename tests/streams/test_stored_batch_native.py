"""A stored batch of users written natively (`bulkstream_native.encode_batch`,
native/src/stored_batch.rs) is byte for byte `streams.aggregate.paging.encode_batch`'s,
and a batch the native code leaves to Python (an ingest's metadata) is Python's."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.aggregate.paging import StoredUser, batch_encoder, encode_batch, read_batch
from tests.streams.native import require_native

native = batch_encoder(native=True)
require_native(native is not encode_batch)

import bulkstream_native  # noqa: E402 (once require_native has let the module run)

# Identities whose JSON escapes differ between writers if any do: quotes, backslashes,
# control characters, non-ASCII, U+2028, astral characters, the empty string.
IDENTITIES = st.one_of(
    st.sampled_from(["", "user:u1", 'user:say "no"', "email:a\\b", "phone:\n\t\x01\x1f\x7f"]),
    st.sampled_from(["user:\u2028é", "user:😀", "user:a,b]"]),
    st.text(max_size=10),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
USERS = st.dictionaries(st.sampled_from(["to", "data", "profile", "x"]), JSON, max_size=3)


def stored(first: int, identities: list[str], users: list[dict[str, Any]]) -> list[StoredUser]:
    return [[first + n, i, u] for n, (i, u) in enumerate(zip(identities, users, strict=False))]


@settings(max_examples=300, deadline=None)
@given(
    first=st.integers(0, 2**40),
    identities=st.lists(IDENTITIES, max_size=8),
    users=st.lists(USERS, min_size=8, max_size=8),
)
def test_the_native_batch_is_the_python_batch(
    first: int, identities: list[str], users: list[dict[str, Any]]
) -> None:
    batch = stored(first, identities, users)
    sent = [orjson.dumps(user[2]) for user in batch]
    assert native(batch, sent) == encode_batch(batch, sent) == encode_batch(batch)
    assert read_batch(native(batch, sent)).first == (first if batch else 0)


def test_a_batch_with_metadata_is_left_to_python() -> None:
    batch = [[*user, {"campaign": "c,]"}] for user in stored(3, ["user:a", ""], [{}, {"n": 1}])]
    sent = [orjson.dumps(user[2]) for user in batch]
    assert bulkstream_native.encode_batch(batch, sent) is None
    assert native(batch, sent) == encode_batch(batch, sent)


def test_positions_out_of_order_are_refused_as_in_python() -> None:
    batch = stored(5, ["user:a", "user:b"], [{}, {}])
    batch[1][0] = 7
    sent = [b"{}", b"{}"]
    for encode in (native, encode_batch):
        with pytest.raises(ValueError, match="contiguous"):
            encode(batch, sent)
