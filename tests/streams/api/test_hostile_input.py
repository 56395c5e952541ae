"""Hostile input at the API's edges, beside schemathesis: nesting, huge numbers, NUL and
control characters, NFC/NFD Unicode, odd job ids, slow bodies. Never a 5xx, and the job
they were thrown at still runs with every user sent exactly once."""

from __future__ import annotations

import socket
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.settings import Settings
from streams.testing.processes import KEYS, ApiProcess, WorkerProcess, wait_for
from streams.testing.topics import read_topic

BODY_SECONDS = 2.0


@pytest.fixture
def slow_api(
    topology: Settings, tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> Iterator[ApiProcess]:
    """The API with a short body deadline, beside one worker."""
    start_worker()
    server = ApiProcess(topology, tmp_path, api_body_timeout_seconds=BODY_SECONDS).start()
    yield server
    server.stop()


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def _raw_post(api: ApiProcess, path: str, body: bytes) -> tuple[int, bytes]:
    with httpx.Client(base_url=api.url, timeout=30) as http:
        answer = http.post(
            path,
            content=body,
            headers={"Authorization": f"Bearer {KEYS['acme']}", "Content-Type": "application/json"},
        )
    return answer.status_code, answer.content


def _slow_body(api: ApiProcess, path: str) -> tuple[float, bytes]:
    """A body that trickles in a byte a second: (seconds until the answer, the answer)."""
    host, port = api.url.removeprefix("http://").split(":")
    body = b'{"users": [{"recipient": "slow"}]}'
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEYS['acme']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        sock.settimeout(1.0)
        answer = b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(65536)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                pass
            if answer:
                break
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return time.monotonic() - started, answer


def _raw_head(api: ApiProcess, head: bytes) -> bytes:
    """Send a request head as given, byte for byte, and read the whole answer."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_hostile_input_gets_4xx_and_the_job_still_runs_exactly(
    slow_api: ApiProcess, topology: Settings
) -> None:
    api = slow_api
    answers: list[int] = []
    limit = topology.api_max_json_depth
    nfc, nfd = unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José")
    assert nfc != nfd
    accepted: list[dict[str, Any]] = [
        # As deep as a body may be: {"users": [{"data": ...}]} holds 3 levels itself.
        {"to": {"user_id": "deep"}, "data": _nested(limit - 3)},
        {"to": {"user_id": "nul\u0000and\u0001control\u001f"}, "data": {"k\u0000": "v\u0007"}},
        {"to": {"user_id": nfc}},
        {"to": {"user_id": nfd}},  # another string, so another user: no normalisation
        {"to": {"user_id": "big"}, "data": {"max": 2**64 - 1, "min": -(2**63), "f": 1.5e308}},
        {"to": {"user_id": "emoji \U0001f600 \u202e rtl"}, "profile": {"name": "\ufeff"}},
    ]
    with api.client() as http:
        job_id = http.post("/bulk", json={"message": {"event": "E"}}).json()["jobId"]
        answer = http.post(f"/bulk/{job_id}", json={"users": accepted})
        assert answer.json() == {"errors": [], "total": len(accepted)}, answer.text

        refused: list[tuple[bytes, str]] = [
            (
                b'{"users": [{"data": '
                + b'{"n": ' * (limit - 2)
                + b"1"
                + b"}" * (limit - 2)
                + b"}]}",
                "nested deeper",
            ),
            (b'{"users": [{"data": ' + b"[" * 250 + b"]" * 250 + b"}]}", "nested deeper"),
            (b'{"users": [{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}]}", "not valid JSON"),
            (b'{"users": [{"data": {"n": 18446744073709551616}}]}', "users.0.data.n: integers"),
            (b'{"users": [{"data": -99999999999999999999}]}', "users.0.data: integers"),
            (b'{"users": [{"data": 1e999}]}', "not valid JSON"),
            (b'{"users": [{"recipient": "\\ud800"}]}', "not valid JSON"),
            (b'{"users": [{"recipient": "a"}]}\x00', "not valid JSON"),
            (b"\xff\xfe{}", "not valid JSON"),
            (b'{"users": [{"to": {"user_id": 1}}], "users": 2}', "users"),
            (b'{"users": [], "extra": 1}', "extra"),
        ]
        for body, why in refused:
            status, raw = _raw_post(api, f"/bulk/{job_id}", body)
            answers.append(status)
            assert status == 400, (body[:80], raw)
            assert why in raw.decode(), raw

        odd_ids = [
            "%00",
            "..",
            "%2e%2e",
            "a%2Fb",
            "x" * 201,
            "\u00e9t\u00e9",
            "%F0%9F%98%80",
            "%FF%FE",
            f"{job_id}%0A",
            f"{job_id}%00",
            f"{job_id}:users:0",
            f"{job_id}:pages",
            " ",
            "%20" + job_id,
        ]
        for odd in odd_ids:
            for method, path, body_json in (
                ("GET", f"/bulk/{odd}", None),
                ("GET", f"/bulk/{odd}/users", None),
                ("POST", f"/bulk/{odd}", {"users": [{"recipient": "x"}]}),
                ("POST", f"/bulk/{odd}/run", None),
            ):
                response = http.request(method, path, json=body_json)
                answers.append(response.status_code)
                assert response.status_code == 404, (method, path, response.text)

        for cursor in ("\x00", "é" * 300, "%", "A" * 511, "eyJqIjoiYSIsInAiOi0xfQ"):
            response = http.get(f"/bulk/{job_id}/users", params={"cursor": cursor})
            answers.append(response.status_code)
            assert response.status_code == 400, response.text

    # A header byte that RFC 9110 forbids, or framing that breaks the message (the fuzz's
    # invalid cases draw both): the server's parser refuses the message with its plain-text
    # 400 and no route sees it, so the run asked for here never happens (the run below is
    # the job's first).
    not_http = [f"X-Odd: a{chr(c)}b".encode() for c in (*range(9), *range(10, 32), 0x7F)]
    not_http += [b"X Odd: v", b"X(Odd): v", b": v", b"Transfer-Encoding: x"]
    not_http += [b"Content-Length: " + length for length in (b"", b"x", b"-1", b"0, 1")]
    for field in not_http:
        head = (
            f"POST /bulk/{job_id}/run HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {KEYS['acme']}\r\n"
        ).encode()
        length = b"" if field.startswith(b"Content-Length") else b"Content-Length: 0\r\n"
        refusal = _raw_head(api, head + length + field + b"\r\n\r\n")
        assert refusal.startswith(b"HTTP/1.1 400"), (field, refusal)
        assert refusal.endswith(b"\r\n\r\nInvalid HTTP request received."), (field, refusal)
        answers.append(400)

    seconds, slow = _slow_body(api, f"/bulk/{job_id}")
    assert slow.startswith(b"HTTP/1.1 408"), slow
    assert seconds < BODY_SECONDS + 3
    answers.append(408)

    with api.client() as http:
        assert http.post(f"/bulk/{job_id}/run").status_code == 202
        job = wait_for(
            lambda: (j := http.get(f"/bulk/{job_id}").json()["job"])["status"] == "COMPLETED" and j,
            120,
            "the job to complete",
        )
        items = http.get(f"/bulk/{job_id}/users").json()["items"]
    assert (job["received"], job["enqueued"], job["failures"]) == (6, 6, 0)
    view_fields = ("status", "messageId", "recipient")
    assert [{k: v for k, v in item.items() if k not in view_fields} for item in items] == accepted
    sends = [
        value
        for _, value, _ in read_topic(topology, topology.topic_sends, expected=6, idle=2)
        if value["jobId"] == job_id
    ]
    assert sorted(s["position"] for s in sends) == list(range(6))
    by_user = {s["to"]["user_id"]: s for s in sends}
    assert set(by_user) == {user["to"]["user_id"] for user in accepted}
    assert by_user["big"]["data"] == {"max": 2**64 - 1, "min": -(2**63), "f": 1.5e308}
    assert by_user["deep"]["data"] == _nested(limit - 3)
    assert not [status for status in answers if status >= 500]
