"""The notice published on `keys.results_channel` each time a command's result is written.

It only names the result (tenant, job id, command id), a few dozen bytes: the
waiter reads the result itself from its key. The worker publishes it in the
same round trip as the result (`Views.write_result`); the API's subscriber
(`streams.api.wakeups`) parses it to wake the request waiting for that result.
"""

from __future__ import annotations

import orjson

# Whose result it is: (tenant, job id, command id).
ResultName = tuple[str, str, str]


def encode(tenant: str, job_id: str, command_id: str) -> bytes:
    return orjson.dumps([tenant, job_id, command_id])


def decode(raw: bytes | str) -> ResultName | None:
    """The result a notice names, or None for anything that is not a notice of ours."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, list) and len(value) == 3 and all(isinstance(part, str) for part in value):
        return value[0], value[1], value[2]
    return None
