"""Reading a request's JSON body: bounded in size, time and depth, numbers kept exact.

- Size: `BULKSTREAM_API_MAX_BODY_BYTES`, told by Content-Length or counted (413).
- Time: the whole body within `BULKSTREAM_API_BODY_TIMEOUT_SECONDS` (408), so a
  slow client cannot hold a connection for ever.
- Depth: at most `BULKSTREAM_API_MAX_JSON_DEPTH` levels of objects and arrays
  (400). Every later stage (the command, the stored batch, the page, the
  send, a duplicate's echo in the result) adds at most two levels, and the
  worker's parser takes 200, orjson's encoder 254.
- Numbers: an integer outside the 64-bit range (which the JSON parser would
  turn into an approximate float) or a number that overflows a double is
  refused (400), naming the field.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from schemas.base import first_inexact_number
from streams.api.errors import ApiError, invalid, too_large

# orjson refuses to encode deeper than this many levels of containers.
_ORJSON_MAX_DEPTH = 254
# A run of digits long enough to leave the 64-bit range (2**64 has 20 digits; 19 can
# already be over 2**63), or an exponent large enough to overflow a double.
_SUSPECT_NUMBER = re.compile(rb"\d{19}")


async def read_body(
    stream: AsyncIterator[bytes], declared: str | None, max_bytes: int, within_seconds: float
) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(f"Request body is over {max_bytes} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(within_seconds):
            async for chunk in stream:
                size += len(chunk)
                if size > max_bytes:
                    raise too_large(f"Request body is over {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408,
            f"The request body did not arrive within {within_seconds:g} s",
            {"Connection": "close"},
        ) from None
    return b"".join(chunks)


def parse_object(raw: bytes, max_depth: int) -> dict[str, Any]:
    """The body's JSON object, or a 400 saying what is wrong with it."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise invalid("Request body must be a JSON object")
    check_depth(parsed, max_depth)
    if _SUSPECT_NUMBER.search(raw):
        where = inexact_number(raw)
        if where is not None:
            raise invalid(
                f"{where}: integers must fit in 64 bits (-2^63 to 2^64-1); send larger "
                "numbers as strings"
            )
    return parsed


def check_depth(value: Any, max_depth: int) -> None:
    """400 when `value` nests objects and arrays deeper than `max_depth` levels."""
    # orjson's encoder stops past a fixed depth: wrapped in (limit - max_depth) arrays,
    # the value encodes only if it is at most max_depth deep. C speed, no Python walk.
    wrapped = value
    for _ in range(_ORJSON_MAX_DEPTH - max_depth):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError as exc:
        if "Recursion" not in str(exc):
            raise
        raise invalid(f"Request body is nested deeper than {max_depth} levels") from None


def inexact_number(raw: bytes) -> str | None:
    """The path of the first integer outside 64 bits, or None. (Only called when the
    body holds a long run of digits, so the exact, slower parser rarely runs.)"""
    return first_inexact_number(json.loads(raw))
