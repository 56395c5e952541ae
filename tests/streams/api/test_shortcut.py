"""`GET /bulk/{id}` answered from the kept copy by the shortcut: the routed endpoint's answer
byte for byte, counted under the same route, another tenant still a 404; and, in memory,
what it leaves to the app (everything it does not answer)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY
from starlette.types import Message

from streams.api.shortcut import JobViewShortcut
from streams.testing.processes import ApiProcess
from tests.streams.test_operate import samples_of

COPY = ("bulkstream_api_job_view_answers_total", (("source", "copy"),))
REDIS = ("bulkstream_api_job_view_answers_total", (("source", "redis"),))
GETS = (
    "bulkstream_http_requests_total",
    (("code", "200"), ("method", "GET"), ("route", "/bulk/{job_id}")),
)


def _answer(response: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"date"]
    return response.status_code, headers, response.content


def test_a_kept_copy_is_answered_as_the_app_answers_it(api: ApiProcess) -> None:
    with api.client() as http, api.client("globex") as globex, api.client(None) as nobody:
        job_id = http.post("/bulk", json={"message": {"template": "T"}}).json()["jobId"]
        answers, gets = [], 0
        # The first GET reads the view from Redis and keeps its copy (once the API's
        # subscription is confirmed); the next, within the copy's second, is the copy.
        for _ in range(50):
            before = samples_of(api.url)
            answers = [_answer(http.get(f"/bulk/{job_id}")) for _ in range(2)]
            gets += 2
            after = samples_of(api.url)
            if after[COPY] - before.get(COPY, 0) == 1 and after[REDIS] - before[REDIS] == 1:
                break
        else:
            raise AssertionError("no GET was answered from a kept copy")
        assert answers[0] == answers[1]
        assert answers[1][0] == 200
        assert b'"status":"CREATED"' in answers[1][2]
        assert after[GETS] == gets
        # Another tenant's key, or none, never meets the copy.
        assert globex.get(f"/bulk/{job_id}").status_code == 404
        assert nobody.get(f"/bulk/{job_id}").status_code == 401
        assert http.get(f"/bulk/{job_id}").status_code == 200
        assert http.head(f"/bulk/{job_id}").status_code == 200


def _call(shortcut: JobViewShortcut, **scope: Any) -> tuple[bool, list[Message]]:
    """Whether the shortcut answered a request of this scope, and what it sent."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    base = {"type": "http", "method": "GET", "path": "/bulk/j1", "headers": [], "root_path": ""}
    answered = asyncio.run(shortcut.answered(base | scope, send))
    return answered, sent


def _gets_counted(template: str) -> float:
    labels = {"route": template, "method": "GET", "code": "200"}
    return REGISTRY.get_sample_value("bulkstream_http_requests_total", labels) or 0.0


def test_the_shortcut_answers_only_a_get_of_a_job_whose_copy_is_kept() -> None:
    asked = []

    def read_copy(authorization: str | None, job_id: str) -> bytes | None:
        asked.append((authorization, job_id))
        return b'{"job":{}}' if (authorization, job_id) == ("Bearer k", "j1") else None

    template = "/test-shortcut/{job_id}"
    shortcut = JobViewShortcut(read_copy, template)
    counted = _gets_counted(template)
    key = [(b"accept", b"*/*"), (b"authorization", b"Bearer k"), (b"authorization", b"x")]
    scope: dict[str, Any] = {"headers": key}
    answered, sent = _call(shortcut, **scope)
    assert answered
    assert sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"10"), (b"content-type", b"application/json")],
        },
        {"type": "http.response.body", "body": b'{"job":{}}'},
    ]
    assert _gets_counted(template) == counted + 1  # under the route it stands for
    assert asked == [("Bearer k", "j1")]
    others: list[dict[str, Any]] = [
        {"path": "/bulk/j2"},  # no copy
        {"headers": []},  # no key
        {"method": "HEAD"},
        {"method": "POST"},
        {"path": "/bulk/j1/users"},
        {"path": "/bulk/j1/"},
        {"path": "/bulkj1"},
        {"root_path": "/api"},
    ]
    for other in others:
        answered, sent = _call(shortcut, **(scope | other))
        assert (answered, sent) == (False, []), other
    assert _gets_counted(template) == counted + 1
    # Asked of the first Authorization header only, and only for a GET of /bulk/<id>.
    assert asked == [("Bearer k", "j1"), ("Bearer k", "j2"), (None, "j1")]
