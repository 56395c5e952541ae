"""The notices the worker publishes as it writes views: on `keys.results_channel` each
time a command's result is written, on `keys.jobs_channel` each time a job's view is.

A notice only names what was written (tenant, job id, and for a result the command
id), a few dozen bytes: a reader reads the value itself from its key. The worker
publishes it in the same round trip as the write (`ViewWrites.result`,
`ViewWrites.job`); the API's subscriber (`streams.api.wakeups`) parses it to
wake the request waiting for that result, or to drop its copy of the job's view.
"""

from __future__ import annotations

import orjson

# Whose result it is: (tenant, job id, command id).
ResultName = tuple[str, str, str]


def encode(tenant: str, job_id: str, command_id: str) -> bytes:
    return orjson.dumps([tenant, job_id, command_id])


def decode(raw: bytes | str) -> ResultName | None:
    """The result a notice names, or None for anything that is not a notice of ours."""
    names = _names(raw, 3)
    return None if names is None else (names[0], names[1], names[2])


def _names(raw: bytes | str, count: int) -> list[str] | None:
    """The `count` strings a notice holds, or None for anything else."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, list) and len(value) == count and all(isinstance(v, str) for v in value):
        return value
    return None


# Whose job view was written: (tenant, job id).
JobName = tuple[str, str]


def encode_job(tenant: str, job_id: str) -> bytes:
    return orjson.dumps([tenant, job_id])


def decode_job(raw: bytes | str) -> JobName | None:
    """The job a notice of `keys.jobs_channel` names, or None for anything else."""
    names = _names(raw, 2)
    return None if names is None else (names[0], names[1])
