"""An open-loop HTTP load generator: GETs on a fixed schedule, latency of each.

Requests leave every `1/rate` seconds whatever the answers do (open loop),
over a few keep-alive connections spoken in plain HTTP/1.1 on asyncio
streams, so the client costs little next to the server it measures. A
request waits for a free connection if all are busy; that wait counts in its
latency.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import orjson

_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)


@dataclass
class Sample:
    at: float  # seconds since the schedule started
    latency_ms: float
    code: int
    job_status: str


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)  # dispatch behind schedule


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = _LENGTH.search(head)
        if length is None:
            raise AssertionError(f"answer without content-length: {head[:200]!r}")
        body = await self.reader.readexactly(int(length.group(1)))
        return int(head[9:12]), body


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def open_loop(
    host: str, port: int, path: str, key: str, rate: float, seconds: float, connections: int = 8
) -> LoadResult:
    """GET `path` `rate` times a second for `seconds`; every answer's latency and job status."""
    raw = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    pool: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(_Connection(*await asyncio.open_connection(host, port)))
    loop = asyncio.get_running_loop()
    out = LoadResult()
    interval = 1.0 / rate
    start = loop.time() + 0.05
    pending: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        dispatched = loop.time()
        out.late_ms.append((dispatched - scheduled) * 1000)
        connection = await pool.get()
        try:
            code, body = await connection.request(raw)
        finally:
            pool.put_nowait(connection)
        done = loop.time()
        status = orjson.loads(body).get("job", {}).get("status", "?") if code == 200 else "?"
        out.samples.append(Sample(scheduled - start, (done - dispatched) * 1000, code, status))

    for i in range(int(rate * seconds)):
        scheduled = start + i * interval
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    while not pool.empty():
        pool.get_nowait().writer.close()
    return out
