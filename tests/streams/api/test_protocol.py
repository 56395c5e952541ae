"""The API's HTTP protocol (`streams.api.protocol.KeptViewProtocol`) and uvicorn's own
protocol, each serving the API's app class on a real socket: a kept view answered with
the same bytes without reaching the app, everything else left to the app and answered
as uvicorn answers it, pipelined answers in order, the keep-alive timeout kept."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from streams.api.app import BulkApi
from streams.api.protocol import protocol_for
from streams.api.shortcut import JobViewShortcut

KEPT = b'{"job":{"status":"PROCESSING"}}'
TEMPLATE = "/test-protocol/{job_id}"
_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)


class CountingApi(BulkApi):
    """The API's app class, noting each request that reaches it."""

    def __init__(self, shortcut: JobViewShortcut, **options: Any) -> None:
        super().__init__(shortcut, **options)
        self.reached: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.reached.append(f"{scope['method']} {scope['path']}")
        await super().__call__(scope, receive, send)


def _app() -> CountingApi:
    async def get_job(request: Request) -> Response:
        return Response(b'{"job":"read"}', media_type="application/json")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.3)
        return Response(b"slow", media_type="text/plain")

    def read_copy(authorization: str | None, job_id: str) -> bytes | None:
        return KEPT if (authorization, job_id) == ("Bearer k", "j1") else None

    routes = [Route("/bulk/{job_id}", get_job, methods=["GET"]), Route("/slow", slow)]
    return CountingApi(JobViewShortcut(read_copy, TEMPLATE), routes=routes)


@contextmanager
def _served(ours: bool, keep_alive: int = 5) -> Iterator[tuple[int, CountingApi]]:
    """A uvicorn server in a thread: with `KeptViewProtocol` if `ours`, else uvicorn's."""
    app = _app()
    http = protocol_for(app.shortcut) if ours else HttpToolsProtocol
    config = uvicorn.Config(
        app,
        http=http,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=keep_alive,
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1], app
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _exchange(port: int, raw: bytes, answers: int = 1) -> list[bytes]:
    """Send `raw` on one connection and read `answers` whole answers, the date header left
    out (it moves with the clock)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(raw)
        data, out = b"", list[bytes]()
        while len(out) < answers:
            head_end = data.find(b"\r\n\r\n")
            length = _LENGTH.search(data[: head_end + 2]) if head_end >= 0 else None
            if length and len(data) >= head_end + 4 + int(length.group(1)):
                end = head_end + 4 + int(length.group(1))
                out.append(re.sub(rb"date: [^\r]*\r\n", b"", data[:end]))
                data = data[end:]
                continue
            chunk = conn.recv(65536)
            assert chunk, f"connection closed after {len(out)} answers: {data!r}"
            data += chunk
        return out


def _get(path: str, *lines: str, version: str = "1.1") -> bytes:
    head = [f"GET {path} HTTP/{version}", "Host: test", *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def _gets_counted() -> float:
    labels = {"route": TEMPLATE, "method": "GET", "code": "200"}
    return REGISTRY.get_sample_value("bulkstream_http_requests_total", labels) or 0.0


KEY = "Authorization: Bearer k"


def test_a_kept_view_is_answered_with_uvicorns_bytes_without_the_app() -> None:
    two = _get("/bulk/j1", KEY) + _get("/bulk/j1?fields=all", "Accept: */*", KEY)
    answers, reached = {}, {}
    for ours in (False, True):
        counted = _gets_counted()
        with _served(ours) as (port, app):
            answers[ours] = _exchange(port, two, answers=2)
            assert _gets_counted() == counted + 2  # under the route, either way
            reached[ours] = list(app.reached)
    assert answers[True] == answers[False]
    assert answers[True][0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert answers[True][0].endswith(b"\r\n\r\n" + KEPT)
    assert reached == {False: ["GET /bulk/j1", "GET /bulk/j1"], True: []}


@pytest.mark.parametrize(
    ("raw", "reaches"),
    [
        (_get("/bulk/j2", KEY), "GET /bulk/j2"),  # no copy kept
        (_get("/bulk/j1"), "GET /bulk/j1"),  # no key
        (_get("/bulk/j1", "Authorization: Bearer x", KEY), "GET /bulk/j1"),  # the first key
        (_get("/bulk/j%31", KEY), "GET /bulk/j1"),  # escaped: the app unquotes it
        (_get("/bulk/j1/users", KEY), "GET /bulk/j1/users"),
        (_get("/bulk/j1", KEY, version="1.0"), "GET /bulk/j1"),
        (_get("/bulk/j1", KEY, "Connection: close"), "GET /bulk/j1"),
        (_get("/bulk/j1", KEY, "Content-Length: 2")[:-4] + b"\r\n\r\n{}", "GET /bulk/j1"),
        (b"HEAD /bulk/j1 HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer k\r\n\r\n", None),
    ],
)
def test_anything_else_is_left_to_the_app(raw: bytes, reaches: str | None) -> None:
    answers: dict[bool, list[bytes]] = {}
    for ours in (False, True):
        with _served(ours) as (port, app):
            if raw.startswith(b"HEAD"):  # an answer without its body: read the head only
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    conn.sendall(raw)
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        chunk = conn.recv(65536)
                        assert chunk, f"connection closed in the head: {head!r}"
                        head += chunk
                    answers[ours] = [re.sub(rb"date: [^\r]*\r\n", b"", head)]
                assert app.reached == ["HEAD /bulk/j1"]
                continue
            answers[ours] = _exchange(port, raw)
            assert app.reached == [reaches]
    assert answers[True] == answers[False]


def test_pipelined_requests_are_answered_in_order() -> None:
    with _served(ours=True) as (port, app):
        slow_first = _exchange(port, _get("/slow") + _get("/bulk/j1", KEY), answers=2)
        assert slow_first[0].endswith(b"\r\n\r\nslow")
        assert slow_first[1].endswith(b"\r\n\r\n" + KEPT)
        # The kept view waited behind the slow answer, so it went the app's way.
        assert app.reached == ["GET /slow", "GET /bulk/j1"]


def test_a_connection_idle_after_a_kept_answer_is_closed_at_the_keep_alive_timeout() -> None:
    with _served(ours=True, keep_alive=1) as (port, app):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(_get("/bulk/j1", KEY))
            answer = b""
            while not answer.endswith(KEPT):
                chunk = conn.recv(65536)
                assert chunk, f"connection closed before the answer ended: {answer!r}"
                answer += chunk
            started = time.monotonic()
            assert conn.recv(65536) == b""  # closed by the server
            assert 0.5 < time.monotonic() - started < 4
        assert app.reached == []
