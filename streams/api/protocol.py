"""The API's HTTP protocol: uvicorn's, answering kept job views itself.

A `GET /bulk/{id}` answered from the kept copy (`streams.api.shortcut`) spent
most of its CPU in uvicorn's request cycle (the ASGI scope, a task, an event,
the two `send` calls), not in finding the answer (docs/benchmarks.md, API).
`KeptViewProtocol` is uvicorn's httptools protocol answering such a request
as soon as its headers are parsed, with the bytes uvicorn would write for the
app's answer (its default headers, the shortcut's), counted the same way, and
its keep-alive handled by uvicorn's own end of a response.

It answers only a request that nothing else could be waiting on: a GET on
HTTP/1.1 that keeps the connection open, with no body, no upgrade, no
percent-escapes, while no earlier request of the connection is unanswered
(pipelined requests stay in order) and its transport takes writes, with no
root path and no access log (whose line the app's cycle writes). Everything
else, and any view not kept, goes through uvicorn's cycle to the app, whose
ASGI shortcut answers there.

Written against uvicorn 0.55's `HttpToolsProtocol` (pyproject.toml allows
that minor version only): the parser callbacks and the attributes it keeps
per connection. tests/streams/api/test_protocol.py serves with it and with
uvicorn's own protocol and compares.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from streams.api.shortcut import JobViewShortcut, authorization, headers

PREFIX = b"/bulk/"
STATUS_LINE = b"HTTP/1.1 200 OK\r\n"
BODY_HEADERS = (b"content-length", b"transfer-encoding")


def protocol_for(shortcut: JobViewShortcut) -> type[asyncio.Protocol]:
    """The HTTP protocol for uvicorn: `KeptViewProtocol` answering with `shortcut`."""
    return type("KeptViews", (KeptViewProtocol,), {"shortcut": shortcut})


class KeptViewProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering a kept job view itself (`shortcut`,
    given by `protocol_for`)."""

    shortcut: JobViewShortcut
    answered = False  # the request being parsed was answered here

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.answered = False

    def on_headers_complete(self) -> None:
        started = time.perf_counter()
        answer = self._kept_answer()
        if answer is None:
            super().on_headers_complete()
            return
        self.answered = True
        head = [STATUS_LINE]
        for name, value in [*self.server_state.default_headers, *headers(answer)]:
            head += (name, b": ", value, b"\r\n")
        head += (b"\r\n", answer)
        self.transport.write(b"".join(head))
        self.shortcut.counted(started)

    def on_body(self, body: bytes) -> None:
        if not self.answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.answered:
            self.on_response_complete()  # uvicorn's: the count, keep-alive, reading on
            return
        super().on_message_complete()

    def _kept_answer(self) -> bytes | None:
        """The kept answer to the request whose headers were just parsed, if this
        protocol may give it here."""
        parser: Any = self.parser
        if (
            parser.get_method() != b"GET"
            or not self.url.startswith(PREFIX)
            or self.root_path
            or self.access_log
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
            or parser.should_upgrade()
            or not (self.cycle is None or self.cycle.response_complete)
            or self.pipeline
            or self.flow.write_paused
        ):
            return None
        path = self.url.partition(b"?")[0]
        if b"%" in path or not path.isascii():
            return None
        if any(name in BODY_HEADERS for name, _ in self.headers):
            return None
        return self.shortcut.answer(path.decode("ascii"), authorization(self.headers))
