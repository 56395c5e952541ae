"""Fixtures of the webhooks tests: real HTTP receivers, the API and a webhooks worker as
real processes over this test's own topics, and events produced straight onto the
event topics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from standardwebhooks.webhooks import Webhook as Verifier

from schemas.delivery import DeliveryStatus, MessageEvent
from schemas.events import JobEvent
from schemas.views import JobStatus
from streams.kafka.config import producer_config
from streams.settings import Settings
from streams.testing.processes import ApiProcess, WorkerProcess, wait_for, wait_ready

# Short enough that every test's retries, timeouts and horizon play out in seconds.
FAST = {
    "webhook_timeout_seconds": 1.0,
    "webhook_retry_first_seconds": 0.2,
    "webhook_retry_horizon_seconds": 60.0,
}

# What a path answers to its n-th request (from 1): (status, seconds to wait first).
Script = Callable[[int], tuple[int, float]]


def _answer_200(attempt: int) -> tuple[int, float]:
    return 200, 0.0


@dataclass
class Hit:
    """One request a receiver was sent."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def verified(self, secret: str) -> Any:
        """The body, once the official Standard Webhooks verifier took its signature
        (it raises otherwise)."""
        return Verifier(secret).verify(self.body, self.headers)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers as the
    path's script says (200 at once by default)."""

    scripts: dict[str, Script] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def to(self, path: str) -> list[Hit]:
        with self.lock:
            return [hit for hit in self.hits if hit.path == path]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.hits.append(
                        Hit(self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    attempt = len([h for h in receiver.hits if h.path == self.path])
                script = receiver.scripts.get(self.path, _answer_200)
                status, wait = script(attempt)
                if wait:
                    receiver.release.wait(wait)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()  # the hanging handlers answer, and end
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@dataclass
class Stack:
    settings: Settings
    tmp_path: Path
    started: list[ApiProcess | WorkerProcess] = field(default_factory=list)

    def api(self, **overrides: Any) -> ApiProcess:
        api = ApiProcess(self.settings, self.tmp_path, **overrides).start()
        self.started.append(api)
        return api

    def worker(self, worker_id: str = "w1", **overrides: Any) -> WorkerProcess:
        settings = self.settings.model_copy(update=overrides)
        worker = WorkerProcess(settings, worker_id, self.tmp_path, "webhooks").start()
        self.started.append(worker)
        wait_ready([worker], timeout=60)
        # Its partitions assigned: events from now on are taken at once.
        assigned = f"webhooks {worker_id}: partitions assigned".encode()
        wait_for(lambda: assigned in worker.log(), 60, "the webhooks group's assignment")
        return worker


@pytest.fixture
def stack(topology: Settings, tmp_path: Path) -> Iterator[Stack]:
    """Start the API and webhooks workers over this test's topics (with `FAST` timings);
    all are stopped afterwards."""
    built = Stack(topology.model_copy(update=FAST), tmp_path)
    yield built
    for process in reversed(built.started):
        process.stop()


class Events:
    """Job and message events produced straight onto the test's event topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer(producer_config(settings))

    def job(
        self,
        tenant: str,
        job_id: str,
        status: JobStatus = JobStatus.PROCESSING,
        previous: JobStatus | None = JobStatus.CREATED,
        version: int | None = None,
    ) -> JobEvent:
        event = JobEvent(
            job_id=job_id,
            tenant=tenant,
            status=status,
            previous=previous,
            received=3,
            enqueued=0,
            failures=0,
            at=time.time(),
            version=version,
        )
        self._send(self.settings.topic_job_events, job_id, event.to_wire())
        return event

    def message(self, tenant: str, job_id: str, status: DeliveryStatus) -> MessageEvent:
        event = _message_event(tenant, job_id, f"{job_id[-8:]:0>24}", status)
        self._send(self.settings.topic_message_events, job_id, event.to_wire())
        return event

    def messages(self, tenant: str, job_id: str, status: DeliveryStatus, n: int) -> None:
        """`n` message events of one job, produced at once."""
        for i in range(n):
            event = _message_event(tenant, job_id, f"{i:024x}", status)
            self.producer.produce(
                self.settings.topic_message_events,
                key=job_id.encode(),
                value=orjson.dumps(event.to_wire()),
            )
        assert self.producer.flush(10) == 0

    def again(self, event: JobEvent | MessageEvent) -> None:
        """The same event once more, at a new offset (as a fold or command applied again
        after a crash publishes it)."""
        topic = self.settings.topic_job_events
        if isinstance(event, MessageEvent):
            topic = self.settings.topic_message_events
        self._send(topic, event.job_id, event.to_wire())

    def _send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.producer.produce(topic, key=key.encode(), value=orjson.dumps(value))
        assert self.producer.flush(10) == 0


def _message_event(tenant: str, job_id: str, digest: str, status: DeliveryStatus) -> MessageEvent:
    return MessageEvent(
        message_id=f"1-00000000-{digest}",
        job_id=job_id,
        tenant=tenant,
        status=status,
        at=int(time.time() * 1000),
        provider="test",
    )


@pytest.fixture
def events(topology: Settings) -> Events:
    return Events(topology)
