"""The API's body rules, in memory: depth, exact numbers, size and time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from streams.api.bodies import check_depth, parse_object, read_body
from streams.api.errors import ApiError
from streams.api.idempotency import job_id_for


def nested(depth: int) -> object:
    """An object `depth` levels deep: {"a": {"a": ... {"a": 1}}}."""
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("limit", [8, 100, 190])
def test_depth_up_to_the_limit_passes_and_one_more_is_a_400(limit: int) -> None:
    check_depth(nested(limit), limit)
    with pytest.raises(ApiError) as refused:
        check_depth(nested(limit + 1), limit)
    assert (refused.value.status, refused.value.message) == (
        400,
        f"Request body is nested deeper than {limit} levels",
    )


def test_integers_beyond_64_bits_are_refused_naming_the_field() -> None:
    ok = b'{"users": [{"data": {"n": 18446744073709551615, "m": -9223372036854775808}}]}'
    assert parse_object(ok, 100)["users"][0]["data"]["n"] == 2**64 - 1
    for raw, where in (
        (b'{"users": [{"data": {"n": 18446744073709551616}}]}', "users.0.data.n"),
        (b'{"users": [{}, {"data": [1, -9223372036854775809]}]}', "users.1.data.1"),
    ):
        with pytest.raises(ApiError) as refused:
            parse_object(raw, 100)
        assert refused.value.status == 400
        assert refused.value.message.startswith(f"{where}: integers must fit in 64 bits")
    # Long digit runs inside strings or fractions are not integers.
    fine = b'{"a": "123456789012345678901234", "b": 0.12345678901234567890123}'
    assert parse_object(fine, 100) == orjson.loads(fine)


def test_bad_json_overflowing_floats_and_non_objects_are_400() -> None:
    for raw in (b"{", b'{"a": 1e400}', b"[1]", b'"x"', b'{"a": "\\ud800"}'):
        with pytest.raises(ApiError) as refused:
            parse_object(raw, 100)
        assert refused.value.status == 400


async def _chunks(parts: list[bytes], pause: float) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(pause)
        yield part


def test_a_body_too_large_or_too_slow_is_refused() -> None:
    async def read(parts: list[bytes], pause: float, declared: str | None = None) -> bytes:
        return await read_body(_chunks(parts, pause), declared, 10, 0.2)

    assert asyncio.run(read([b"12345", b"678"], 0)) == b"12345678"
    for parts, pause, declared, status in (
        ([b"123456", b"789012"], 0, None, 413),
        ([b"1"], 0, "11", 413),
        ([b"1", b"2", b"3"], 0.1, None, 408),
    ):
        with pytest.raises(ApiError) as refused:
            asyncio.run(read(parts, pause, declared))
        assert refused.value.status == status


def test_a_create_key_always_names_the_same_job_of_its_tenant() -> None:
    job = job_id_for("acme", "key-1")
    assert job == job_id_for("acme", "key-1")
    assert job != job_id_for("globex", "key-1")
    assert job != job_id_for("acme", "key-2")
    prefix, stamp, digest = job.split("-")
    assert (prefix, len(stamp), len(digest)) == ("1", 8, 24)
