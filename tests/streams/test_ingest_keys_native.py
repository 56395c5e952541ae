"""An ingest's user keys made natively (`bulkstream_native.identities` and
`message_digests`, native/src/ingest_keys.rs): the same identity as
`schemas.commands.identity_of` for every user, well formed or not, and the same
digest as `streams.ids.message_digest` for every identity, or the same error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.ids import (
    digest_maker,
    identities_of,
    identity_reader,
    message_digest,
    message_digests,
)
from tests.streams.native import require_native

native_identities = identity_reader(native=True)
native_digests = digest_maker(native=True)
require_native(native_identities is not identities_of and native_digests is not message_digests)

JOB = "1-6b0f2fd2-7864a974a505dfc9fa1e7de2"

# What a user's identity fields may hold: strings (empty, non-ASCII, astral, with a
# NUL), and whatever else JSON has, which identity_of passes over.
VALUES = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "u1", "é@x.org", "+15550100", "😀", "a\x00b"]),
    st.none(),
    st.integers(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
MEMBERS = st.dictionaries(
    st.sampled_from(["user_id", "email", "phone_number", "data"]), VALUES, max_size=4
)
USERS = st.fixed_dictionaries(
    {},
    optional={
        "to": st.one_of(MEMBERS, VALUES),
        "profile": st.one_of(MEMBERS, VALUES),
        "recipient": VALUES,
        "data": VALUES,
    },
)


@settings(max_examples=500, deadline=None)
@given(users=st.lists(USERS, max_size=8))
def test_identities_are_identity_of_each_user(users: list[dict[str, Any]]) -> None:
    assert native_identities(users) == identities_of(users)


def test_the_first_identity_present_wins_in_identity_of_order() -> None:
    users: list[dict[str, Any]] = [
        {"to": {"user_id": "u", "email": "e"}, "recipient": "r"},
        {"to": {"user_id": "", "email": "e"}, "recipient": "r"},
        {"to": {"email": "e"}, "profile": {"email": "p"}},
        {"to": {"phone_number": "+1"}, "profile": {"phone_number": "+2"}},
        {"to": None, "profile": "x", "recipient": 5},
        {"recipient": "\ud800"},  # a lone surrogate: a str Python can hold, not UTF-8
        {},
    ]
    expected = ["user:u", "user:r", "email:p", "phone:+2", None, "user:\ud800", None]
    assert native_identities(users) == identities_of(users) == expected


@settings(max_examples=300, deadline=None)
@given(
    job=st.sampled_from([JOB, "", "j\u00e9b\x00"]),
    identities=st.lists(st.text(max_size=12), max_size=8),
)
def test_digests_are_message_digest_of_each_identity(job: str, identities: list[str]) -> None:
    assert native_digests(job, identities) == [message_digest(job, i) for i in identities]


def test_an_identity_that_is_not_utf8_fails_as_in_python() -> None:
    with pytest.raises(UnicodeEncodeError):
        message_digests(JOB, ["user:\ud800"])
    with pytest.raises(UnicodeEncodeError):
        native_digests(JOB, ["user:ok", "user:\ud800"])
