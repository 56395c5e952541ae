"""A webhook endpoint for the demo and the reliability suite: a tiny HTTP server that
takes every POST, checks its Standard Webhooks signature against the endpoint's
secret, and keeps what came (type, webhook-id, data, whether the signature held).

`WebhookReceiver().start()` serves on a free port of 127.0.0.1 (`url`) from a
daemon thread; set `secret` once the endpoint is registered (POST /webhooks
answers it). Every POST answers 200. A request whose body ends before its
`content-length` (the sender died while writing it) is not a webhook received:
it is only counted (`truncated`), as any HTTP server would drop it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

import orjson

from streams.testing.receiver import LocalServer
from streams.webhooks.signing import verify


@dataclass(frozen=True)
class Hook:
    """One webhook request as it came."""

    webhook_id: str
    type: str
    data: dict[str, Any]
    signed: bool  # the signature held for the endpoint's secret


class WebhookReceiver:
    def __init__(self) -> None:
        self.secret = ""
        self.hooks: list[Hook] = []
        self.truncated = 0
        self.lock = threading.Lock()
        self.server = LocalServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[Hook]:
        with self.lock:
            return list(self.hooks)

    def _take(self, headers: Any, body: bytes) -> None:
        webhook_id = headers.get("webhook-id", "")
        try:
            stamp = int(headers.get("webhook-timestamp", ""))
            signed = verify(
                self.secret, webhook_id, stamp, body, headers.get("webhook-signature", "")
            )
            message = orjson.loads(body)
        except (ValueError, orjson.JSONDecodeError):
            signed, message = False, {}
        hook = Hook(webhook_id, str(message.get("type")), message.get("data") or {}, signed)
        with self.lock:
            self.hooks.append(hook)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the connection closed mid-body
                    with receiver.lock:
                        receiver.truncated += 1
                    self.close_connection = True
                    return
                receiver._take(self.headers, body)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
