"""The native page expansion (bulkstream_native, native/) gives exactly the bytes of the
pure one (streams/fanout/expand.py): sends, messageIds, failures, in page order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.jobs import MESSAGE
from schemas.fanout import PageFields, PageProgress, encode_page_spliced
from streams.fanout.expand import (
    NATIVE_AVAILABLE,
    Expansion,
    expand_native,
    expand_pure,
    page_expander,
)
from streams.fanout.loop import FanoutLoop
from streams.ids import IDENTITY_IDS, POSITION_IDS, message_id, new_job_id, positional_message_id
from streams.settings import Settings
from streams.testing.users import generated_users
from tests.streams.native import INTS, json_values, require_native
from tests.streams.test_expand import USERS

require_native(NATIVE_AVAILABLE)

import bulkstream_native  # noqa: E402 (once require_native has let the module run)

CREATED_AT = 1_764_000_000.5

DEFINITIONS: list[dict[str, Any]] = [
    {"template": "T", "routing": {"method": "single", "channels": ["email"]}},
    {"template": "T", "routing": {"method": "single", "channels": ["sms"]}},
    {"template": "T", "routing": {"method": "all", "channels": ["sms", "email"]}},
    {"template": "T", "routing": {"channels": ["push"]}},
    {"template": "T"},  # no routing: any valid address
    {"template": "T", "routing": {"channels": []}},
    {"template": "T", "routing": "not an object"},
    {
        "template": "T",
        "routing": {"method": "all", "channels": [{"method": "single", "channels": ["sms"]}]},
    },
    MESSAGE,
]

# The users of tests/streams/test_expand.py's routing cases, and more of the same kind.
ROUTING_USERS: list[dict[str, Any]] = [
    {"to": {"user_id": "u"}},
    {"recipient": "r"},
    {"recipient": ""},
    {"recipient": 5, "to": {"user_id": ""}},
    {"to": {"user_id": "", "email": "a@b.io"}},
    {"profile": {"email": "a@b.io"}},
    {"profile": {"email": "not-an-email"}},
    {"profile": {"email": ""}, "to": {"email": "to@b.io"}},
    {"profile": {"email": 7}, "to": {"email": "to@b.io"}},
    {"profile": "a@b.io"},
    {"to": {"phone_number": "+1 (555) 010-9999"}},
    {"to": {"phone_number": "12"}},
    {"to": {"phone_number": "123-45-67"}},
    {"profile": {"phone_number": "555 0109"}, "to": {"phone_number": "+1 555 010 9999"}},
    {"to": {"email": "a@b.io\n"}},  # `$` matches before a final newline
    {"to": {"email": "a@b.io\n\n"}},
    {"to": {"email": "a b@c.io"}},
    {"to": {"email": "a@b@c.io"}},
    {"to": {"email": "@b.io"}},
    {"to": {"email": "a@.io"}},
    {"to": {"email": "a@b."}},
    {"to": {"email": "a@..."}},
    {"to": {"email": "a@b.c\x1c"}},
    {"to": {"email": "a@b.c\x7f"}},
    {"to": {"email": 'a\\b@c.d"e'}},
    {"to": "u@b.io"},
    {},
    {"to": None, "profile": None},
]

# Users the native code leaves to Python (non-ASCII in an address it must check).
FALLBACK_USERS: list[dict[str, Any]] = [
    {"to": {"email": "josé@exämple.com"}},
    {"to": {"email": "a@b.io\u00a0"}},
    {"to": {"email": "a@b\u2028.io"}},
    {"profile": {"phone_number": "\u0661\u0662\u0663\u0664\u0665\u0666\u0667"}},
    {"to": {"phone_number": "555 \u0665\u0665\u0665\u0665"}},
]


def page_of(
    entries: list[list[Any]],
    *,
    definition: dict[str, Any] | None = None,
    global_data: dict[str, Any] | None = None,
    job_id: str | None = None,
    tenant: str = "acme",
    created_at: float = CREATED_AT,
    message_ids: str | None = POSITION_IDS,
) -> bytes:
    """A page as the aggregate writes it (users spliced as stored, orjson); with
    `message_ids=None`, as an earlier release wrote it (no `messageIds`)."""
    fields = PageFields(
        job_id=job_id or new_job_id(1_764_000_000),
        tenant=tenant,
        page=7,
        page_size=len(entries),
        created_at=created_at,
        message=DEFINITIONS[0] if definition is None else definition,
        data={} if global_data is None else global_data,
        message_ids=message_ids or IDENTITY_IDS,
        users=[],
    )
    users = b"[" + b",".join(orjson.dumps(entry) for entry in entries) + b"]"
    raw = encode_page_spliced(fields, users)
    if message_ids is None:
        raw = raw.replace(b',"messageIds":"identity"', b"")
        assert b"messageIds" not in raw
    return raw


def entries_of(users: list[Any], metadata: dict[str, Any] | None = None) -> list[list[Any]]:
    return [
        [1000 + i, f"user:u{i}", user] + ([metadata] if metadata is not None else [])
        for i, user in enumerate(users)
    ]


def assert_same(raw: bytes) -> Expansion:
    pure, native = expand_pure(raw), expand_native(raw)
    assert native.sends == pure.sends
    assert native.failures == pure.failures
    assert native == pure
    # Types too: what the loop and PageProgress take.
    for key, value in native.sends:
        assert type(key) is bytes
        assert type(value) is bytes
    for position, reason in native.failures:
        assert type(position) is int
        assert type(reason) is str
    return native


def assert_same_outcome(raw: bytes) -> None:
    """Equal expansions, or the same error raised both ways (a user Python cannot expand:
    the native code leaves it to Python)."""
    try:
        pure: Expansion | Exception = expand_pure(raw)
    except Exception as exc:
        pure = exc
    if isinstance(pure, Exception):
        with pytest.raises(type(pure), match=str(pure)):
            expand_native(raw)
    else:
        assert_same(raw)


def fallback_of(raw: bytes) -> list[tuple[int, int, int]]:
    answer = bulkstream_native.expand_page(raw)
    assert answer is not None, "the native code left the whole page to Python"
    return answer[5]


@pytest.mark.parametrize("message_ids", [POSITION_IDS, IDENTITY_IDS, None])
@pytest.mark.parametrize("global_data", [None, {}, {"campaign": "x", "n": -1}])
def test_generated_users_and_the_bench_message_take_the_native_path(
    global_data: dict[str, Any] | None, message_ids: str | None
) -> None:
    job_id = new_job_id(1_764_000_000)
    users = generated_users(0, 500)
    entries = [[i, f"user:user-{i}", user] for i, user in enumerate(users)]
    raw = page_of(
        entries,
        definition=MESSAGE,
        global_data=global_data,
        job_id=job_id,
        message_ids=message_ids,
    )
    expansion = assert_same(raw)
    assert fallback_of(raw) == []
    assert len(expansion.sends) == 500
    assert expansion.failures == []
    assert (expansion.job_id, expansion.tenant, expansion.page) == (job_id, "acme", 7)
    key, value = expansion.sends[3]
    if message_ids == POSITION_IDS:
        assert key == positional_message_id(CREATED_AT, job_id, 3).encode()
    else:  # a job of an earlier release, or a page it wrote
        assert key == message_id(CREATED_AT, job_id, "user:user-3").encode()
    assert orjson.loads(value)["to"] == users[3]["to"]
    assert orjson.loads(value)["messageId"] == key.decode()


@pytest.mark.parametrize("metadata", [None, {"trace": "t", "tags": ["a"]}])
@pytest.mark.parametrize("global_data", [None, {}, {"a": 1, "b": 2, "nested": {"x": 1}}])
@pytest.mark.parametrize("definition", DEFINITIONS)
def test_every_edge_case_of_test_expand_is_byte_identical(
    definition: dict[str, Any],
    global_data: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
) -> None:
    users = USERS + ROUTING_USERS
    raw = page_of(entries_of(users, metadata), definition=definition, global_data=global_data)
    assert_same(raw)
    assert fallback_of(raw) == []


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_users_left_to_python_are_put_back_in_page_order(definition: dict[str, Any]) -> None:
    users: list[Any] = []
    for fallback_user, plain_user in zip(FALLBACK_USERS, USERS + ROUTING_USERS, strict=False):
        users += [plain_user, fallback_user, {"to": {"email": "nope"}}]
    raw = page_of(entries_of(users), definition=definition)
    assert_same(raw)
    left = {index for index, _, _ in fallback_of(raw)}
    assert left <= {i for i, user in enumerate(users) if user in FALLBACK_USERS}
    if definition is DEFINITIONS[0]:  # email: the non-ASCII emails are Python's to check
        assert left


def test_pages_the_native_code_leaves_to_python_whole() -> None:
    entries = entries_of(USERS[:3])
    good = page_of(entries)
    # a page number that is not an int, a message that is not an object: decode_page reads
    # them; the native code does not guess
    for raw in (
        good.replace(b'"page":7', b'"page":7.0'),
        good.replace(b'"page":7', b'"page":"7"'),
        good.replace(b'"createdAt":1764000000.5', b'"createdAt":"1764000000"'),
        good.replace(b'"data":{}', b'"data":[]'),
        # a way of making message ids it does not know: Python takes it for `identity`
        good.replace(b'"messageIds":"position"', b'"messageIds":"other"'),
        good.replace(b'"messageIds":"position"', b'"messageIds":2'),
    ):
        assert raw != good
        assert bulkstream_native.expand_page(raw) is None
        assert_same(raw)
    assert bulkstream_native.expand_page(b"{not json") is None
    assert bulkstream_native.expand_page(good.replace(b'"pageSize":3,', b"")) is None


def test_hand_written_pages_python_reads_its_own_way() -> None:
    """Not orjson's output, but JSON all the same: keys repeated in the objects the native
    code reads (user, to, profile, data it merges), entries of odd shapes. (Values it
    splices unread are taken to be orjson's, as encode_page_spliced writes them.)"""
    head = page_of([])[: -len(b"[]}")]
    users = [
        b'[1,"user:a",{"to":{"user_id":"a"},"to":{"email":"x"}}]',  # a repeated key
        b'[2,"user:b",{"to":{"email":"b@b.io","email":"nope"}}]',
        b'[3,"user:c",{"data":{"k":1,"k":2},"to":{"user_id":"c","data":{"j":0}}}]',
        b'[3,"user:c",{"profile":{"email":"a@b.io","email":"x"}}]',
        b'[4,5,{"to":{"user_id":"d"}}]',  # an identity that is not a string
        b'[5.0,"user:e",{"to":{"user_id":"e"}}]',  # a position that is not an int
        b'[-0,"user:f",{"to":{"user_id":"f"}}]',
        b'[7,"user:g",{"to":{"user_id":"g"}},null]',  # metadata null: none
        b'[8,"user:h",{"to":{"user_id":"h"}},{"m":1},"more"]',
        b'[10,"user:\\u00e9\\"\\n",{"to":{"user_id":"j"}}]',
    ]
    for user in users:
        assert_same_outcome(head + b"[" + user + b"]}")
    assert_same_outcome(head + b"[" + b",".join(users[:3] + users[4:]) + b"]}")


@pytest.mark.parametrize("depth", [10, 127, 129, 200])
def test_deeply_nested_values(depth: int) -> None:
    nested: Any = "leaf"
    for level in range(depth):
        nested = [nested] if level % 2 else {"k": nested}
    users = [
        {"to": {"user_id": "u"}, "data": {"deep": nested}},
        {"to": {"user_id": "u", "deep": nested}, "custom": nested},
        {"to": {"email": "a@b.io"}},
    ]
    channels: Any = "email"
    for _ in range(depth):
        channels = [channels]
    for definition in (
        {"template": "T", "routing": {"channels": ["sms"], "deep": nested}},
        {"template": "T", "routing": {"channels": channels}},
    ):
        raw = page_of(entries_of(users), definition=definition, global_data={"g": nested})
        assert_same(raw)


def test_the_setting_chooses_the_expansion() -> None:
    assert Settings(native=False).native is False
    assert page_expander(False) is expand_pure
    assert page_expander(True) is expand_native


class _Producer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> None:
        self.records.append((topic, key, value))


class _Message:
    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value


@pytest.mark.parametrize("native", [True, False])
def test_the_fan_out_loop_produces_the_expansion_then_the_report(
    native: bool, tmp_path: Path
) -> None:
    settings = Settings(native=native, data_dir=tmp_path)
    users = [*USERS, *ROUTING_USERS, *FALLBACK_USERS]
    raw = page_of(entries_of(users), definition=MESSAGE, global_data={"g": 1})
    producer = _Producer()
    loop = FanoutLoop(settings)
    try:
        enqueued, failed = loop._fan_out(cast(Any, producer), cast(Any, _Message(raw)))
    finally:
        loop.done.close()
    expected = expand_pure(raw)
    assert (enqueued, failed) == (len(expected.sends), len(expected.failures))
    assert failed > 0
    report = PageProgress(
        job_id=expected.job_id,
        tenant=expected.tenant,
        page=7,
        enqueued=enqueued,
        failures=expected.failures,
    )
    assert producer.records == [
        *((settings.topic_sends, key, value) for key, value in expected.sends),
        (settings.topic_progress, expected.job_id.encode(), orjson.dumps(report.to_wire())),
    ]


# -- a random corpus -----------------------------------------------------------------

# orjson writes any str but lone surrogates (it refuses to); a few characters Python's
# `\s` and `\d` take beyond ASCII, escapes, quotes
_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from('"\\/\n\t\x00\x1f\x7f\u2028\u00a0\u0665 é@.'),
    ),
    max_size=12,
)
# emails and phone numbers: ASCII ones, which the native code checks, and now and then
# one it leaves to Python
_ADDRESS = st.one_of(
    st.text(alphabet=st.sampled_from("ab@.@. -+1239\n\t\x1c\x0b\x7f"), max_size=12),
    st.text(alphabet=st.sampled_from("ab@.@. 12\u00a0\u0665é\u2028"), max_size=10),
)

_JSON = json_values(_TEXT)
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "user_id": st.one_of(_TEXT, st.just(""), _JSON),
    "email": st.one_of(_ADDRESS, st.just("a@b.io"), _JSON),
    "phone_number": st.one_of(_ADDRESS, st.just("+1 555 010 9999"), _JSON),
    "data": _JSON,
    "tenant_id": _JSON,
}


@st.composite
def _fields(draw: st.DrawFn) -> dict[str, Any]:
    """A `to` or a `profile`: its known fields or not, in any order, and others."""
    fields: dict[str, Any] = {}
    for name in draw(st.permutations(list(_FIELD_VALUES))):
        if draw(st.booleans()):
            fields[name] = draw(_FIELD_VALUES[name])
    fields.update(draw(st.dictionaries(_TEXT, _JSON, max_size=2)))
    return fields


@st.composite
def _users(draw: st.DrawFn) -> Any:
    """Mostly objects with Courier's fields (or not quite), now and then anything."""
    user: dict[str, Any] = {}
    for name in draw(st.permutations(["to", "data", "profile", "preferences", "recipient"])):
        if not draw(st.booleans()):
            continue
        if name in ("to", "profile"):
            user[name] = draw(st.one_of(_fields(), _fields(), _fields(), _JSON))
        elif name == "recipient":
            user[name] = draw(st.one_of(_TEXT, st.just(""), _JSON))
        else:
            user[name] = draw(_JSON)
    user.update(draw(st.dictionaries(_TEXT, _JSON, max_size=2)))
    return user if draw(st.sampled_from([True] * 9 + [False])) else draw(_JSON)


_DEFINITIONS = st.one_of(
    st.sampled_from(DEFINITIONS),
    st.builds(
        lambda channels, extra: {"routing": {"channels": channels}, **extra},
        _JSON,
        st.dictionaries(_TEXT, _JSON, max_size=2),
    ),
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    users=st.lists(
        st.tuples(
            st.integers(0, 10**6) | INTS,
            _TEXT | st.just("user:x"),
            _users(),
            st.none() | _JSON,
        ),
        max_size=8,
    ),
    definition=_DEFINITIONS,
    global_data=st.none() | st.dictionaries(_TEXT, _JSON, max_size=3),
    job_id=_TEXT,
    tenant=_TEXT,
    created_at=st.floats(min_value=-1e12, max_value=1e12) | st.integers(0, 2**40),
    message_ids=st.sampled_from([POSITION_IDS, IDENTITY_IDS, None]),
)
def test_random_pages_are_byte_identical(
    users: list[tuple[int, str, Any, Any]],
    definition: dict[str, Any],
    global_data: dict[str, Any] | None,
    job_id: str,
    tenant: str,
    created_at: float,
    message_ids: str | None,
) -> None:
    entries = [
        [position, identity, user] + ([] if metadata is None else [metadata])
        for position, identity, user, metadata in users
    ]
    raw = page_of(
        entries,
        definition=definition,
        global_data=global_data,
        job_id=job_id,
        tenant=tenant,
        created_at=created_at,
        message_ids=message_ids,
    )
    assert_same_outcome(raw)
