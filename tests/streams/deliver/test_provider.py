"""One send's POST with its retries, against the local receiver (a real HTTP server),
a closed port and a server that answers too late; the back-off, the
receiver's rules."""

from __future__ import annotations

import asyncio
import socket
import threading

import orjson
import pytest

from streams.deliver.provider import Backoff, HttpProvider, Lanes, Outcome, retryable
from streams.testing.receiver import Receiver, Rules, hashed_out

QUICK = Backoff(first=0.001, most=0.005)


@pytest.mark.parametrize(
    ("code", "again"),
    [
        *((code, True) for code in (500, 502, 503, 504, 429, 408)),
        *((code, False) for code in (400, 401, 404, 409, 422, 301)),
    ],
)
def test_what_is_tried_again(code: int, again: bool) -> None:
    assert retryable(code) is again


def test_the_back_off_doubles_with_jitter_up_to_its_most() -> None:
    backoff = Backoff(first=1.0, most=5.0)
    for retry, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (40, 5.0), (5000, 5.0)):
        waits = {backoff.delay(retry) for _ in range(50)}
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), (retry, waits)
        assert len(waits) > 1, "jittered"
    assert backoff.delay(1, retry_after=3.0) == 3.0
    assert backoff.delay(1, retry_after=60.0) == 5.0, "a Retry-After up to the most"


def test_the_receivers_rules_in_their_order() -> None:
    rules = Rules(fail_ids=frozenset({"x"}), fail_every=7, flaky=1)
    picked = next(f"m{i}" for i in range(100) if hashed_out(f"m{i}", 7))
    spared = next(f"m{i}" for i in range(100) if not hashed_out(f"m{i}", 7))
    assert rules.status({"messageId": "x"}, 5) == 500
    assert rules.status({"messageId": picked}, 5) == 500
    assert rules.status({"messageId": spared}, 1) == 503
    assert rules.status({"messageId": spared}, 2) == 200
    assert rules.status({"messageId": spared, "data": {"fail": True}}, 9) == 500
    assert rules.status({"messageId": spared, "data": {"fail": 410}}, 9) == 410
    assert rules.status({"messageId": spared, "data": {"failTimes": 3}}, 3) == 503
    assert rules.status({"messageId": spared, "data": {"failTimes": 3}}, 4) == 200
    assert sum(hashed_out(f"id-{i}", 10) for i in range(10_000)) in range(900, 1100)


def _deliver(url: str, sends: list[dict[str, object]], attempts: int = 3) -> list[Outcome]:
    async def go() -> list[Outcome]:
        lanes = Lanes(4, timeout=0.5)
        provider = HttpProvider(lanes, url, attempts, QUICK)
        try:
            return await asyncio.gather(
                *(provider.deliver(orjson.dumps(s), str(s["messageId"])) for s in sends)
            )
        finally:
            await lanes.aclose()

    return asyncio.run(go())


def test_outcomes_against_the_receiver() -> None:
    sends: list[dict[str, object]] = [
        {"messageId": "ok", "data": {}},
        {"messageId": "flaky", "data": {"failTimes": 2}},
        {"messageId": "down", "data": {"fail": True}},
        {"messageId": "gone", "data": {"fail": 404}},
        {"messageId": "busy", "data": {"fail": 429}},
    ]
    with Receiver() as receiver:
        ok, flaky, down, gone, busy = _deliver(receiver.url, sends)
        tally = receiver.tally()
    assert ok == Outcome(delivered=True, attempts=1)
    assert flaky == Outcome(delivered=True, attempts=3)
    assert down == Outcome(False, 3, 'HTTP 500: {"error":"refused"}, after 3 attempt(s)')
    assert gone == Outcome(False, 1, 'HTTP 404: {"error":"refused"}', final=True)
    assert busy == Outcome(False, 3, 'HTTP 429: {"error":"refused"}, after 3 attempt(s)')
    assert dict(tally.attempts) == {"ok": 1, "flaky": 3, "down": 3, "gone": 1, "busy": 3}
    assert not tally.bad, "every POST had its content type and idempotency key"


def test_a_connection_refused_and_a_timeout_are_tried_again_then_reported() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    [refused] = _deliver(f"http://127.0.0.1:{port}/", [{"messageId": "m"}])
    assert not refused.delivered
    assert refused.attempts == 3
    assert refused.reason is not None
    assert refused.reason.startswith("connection error (ConnectError")
    assert refused.reason.endswith("after 3 attempt(s)")

    # A server that takes the connection and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            silent.settimeout(0.1)
            while not stop.is_set():
                try:
                    held.append(silent.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
            [late] = _deliver(url, [{"messageId": "m"}], attempts=2)
        finally:
            stop.set()
            thread.join(5)
            for conn in held:
                conn.close()
    assert (late.delivered, late.attempts) == (False, 2)
    assert late.reason == "timeout (ReadTimeout), after 2 attempt(s)"
