"""A stand-in for a delivery provider: a tiny HTTP server that answers the delivery
worker's POSTs, counts them per message, and fails the ones its rules name, so
a demo or a test gets FAILED outcomes it can predict.

The rules (`Rules`); for each POST of a send, the first that applies:
1. the send's `data.fail`: `true` answers `fail_status`, a number that status, always;
2. the send's `data.failTimes`: n, its first n attempts answer 503 (then 200);
3. `fail_ids`: these message ids answer `fail_status`, always;
4. `fail_every`: n, the message ids `hashed_out(id, n)` picks (about 1 in n)
   answer `fail_status`, always;
5. `flaky`: n, every message's first n attempts answer 503;
otherwise 200. A body that is not a JSON object with a string `messageId`
answers 400 (and is counted under `bad`), as does a POST whose
`idempotency-key` is not its message id.

`Receiver(rules).start()` serves on a free port of 127.0.0.1 (`url`) from a
daemon thread; use it as a context manager, or `stop` it. GET answers the
counts as JSON. Alone: `python -m streams.testing.receiver --port 8099
--fail-every 10` serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import orjson

RETRY_LATER = 503
MAX_BAD = 100  # bad requests kept (their descriptions), at most


def hashed_out(message_id: str, every: int) -> bool:
    """Whether `Rules(fail_every=every)` fails this message (CRC-32 of its id mod `every`)."""
    return every > 0 and zlib.crc32(message_id.encode()) % every == 0


@dataclass(frozen=True)
class Rules:
    """Which POSTs fail, and how (the order above)."""

    fail_status: int = 500
    fail_ids: frozenset[str] = frozenset()
    fail_every: int = 0
    flaky: int = 0
    delay: float = 0.0  # seconds before each answer

    def status(self, send: dict[str, Any], attempt: int) -> int:
        """The answer to the `attempt`th POST (from 1) of this send."""
        message_id = send["messageId"]
        data = send.get("data")
        data = data if isinstance(data, dict) else {}
        fail = data.get("fail")
        if fail is True:
            return self.fail_status
        if isinstance(fail, int) and not isinstance(fail, bool):
            return fail
        fail_times = data.get("failTimes")
        if isinstance(fail_times, int) and attempt <= fail_times:
            return RETRY_LATER
        if message_id in self.fail_ids or hashed_out(message_id, self.fail_every):
            return self.fail_status
        if attempt <= self.flaky:
            return RETRY_LATER
        return 200


@dataclass
class Tally:
    """What the receiver was sent: POSTs per message id, 2xx answers per message id."""

    posts: int = 0
    attempts: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    bad: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "messages": len(self.attempts),
            "accepted": len(self.accepted),
            "refused": self.refused,
            "bad": len(self.bad),
        }


class LocalServer(ThreadingHTTPServer):
    """A threaded HTTP server for local endpoints (this provider, the webhook receiver)."""

    daemon_threads = True
    # A delivery worker opens all its connections at once (64 by default): with the
    # listen backlog of 5 that socketserver keeps, the kernel resets some of them, and
    # the worker reports a send it could not post as FAILED.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer (a worker killed, a test's stop): not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Receiver:
    """The server; `tally()` is a copy of its counts so far."""

    def __init__(self, rules: Rules | None = None, host: str = "127.0.0.1", port: int = 0):
        self.rules = rules or Rules()
        self._tally = Tally()
        self._lock = threading.Lock()
        self._server = LocalServer((host, port), self._handler())
        self.port: int = self._server.server_port
        self.url = f"http://{host}:{self.port}/"
        self._thread: threading.Thread | None = None

    def tally(self) -> Tally:
        with self._lock:
            t = self._tally
            return Tally(t.posts, Counter(t.attempts), Counter(t.accepted), t.refused, list(t.bad))

    def _answer(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            send = orjson.loads(body)
        except orjson.JSONDecodeError:
            send = None
        with self._lock:
            tally = self._tally
            tally.posts += 1
            if not isinstance(send, dict) or not isinstance(send.get("messageId"), str):
                problem = "not a JSON object with a messageId"
            elif headers.get("idempotency-key") != send["messageId"]:
                problem = (
                    f"idempotency-key {headers.get('idempotency-key')!r} on {send['messageId']}"
                )
            elif headers.get("content-type") != "application/json":
                problem = f"content-type {headers.get('content-type')!r}"
            else:
                problem = None
            if problem is not None:
                if len(tally.bad) < MAX_BAD:
                    tally.bad.append(problem)
                tally.refused += 1
                return 400
            assert isinstance(send, dict)
            message_id = send["messageId"]
            tally.attempts[message_id] += 1
            status = self.rules.status(send, tally.attempts[message_id])
            if 200 <= status < 300:
                tally.accepted[message_id] += 1
            else:
                tally.refused += 1
            return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the worker reuses its connections
            # Headers and body go out in two writes: without this, the client's delayed
            # ACK holds the body back 40 ms (Nagle's algorithm).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-body: no request to answer
                    self.close_connection = True
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._answer(body, headers)
                if receiver.rules.delay:
                    time.sleep(receiver.rules.delay)
                self._reply(status, b'{"ok":true}' if status < 300 else b'{"error":"refused"}')

            def do_GET(self) -> None:
                self._reply(200, orjson.dumps(receiver.tally().summary()))

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # a line per POST would drown a demo's output

        return Handler

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="a stand-in delivery provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument("--fail-every", type=int, default=0, help="fail ~1 in N messages")
    parser.add_argument("--flaky", type=int, default=0, help="503 to each message's first N")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    rules = Rules(args.fail_status, frozenset(), args.fail_every, args.flaky, args.delay)
    receiver = Receiver(rules, args.host, args.port).start()
    print(f"receiving on {receiver.url}", flush=True)
    try:
        while True:
            time.sleep(5)
            print(orjson.dumps(receiver.tally().summary()).decode(), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
