"""HTTP abuse against a live API: schemathesis cases and hand-made bad requests.

Returns how many answers came back with each status code; a 5xx anywhere is
a failure of the scenario.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from tests.streams.api.conftest import KEYS, ApiServer

EXAMPLES_PER_OPERATION = 400  # 5 operations: 2,000 cases


def abuse(api: ApiServer) -> tuple[Counter[int], int, dict[str, bool]]:
    """(answers by status code, schemathesis cases run, named checks)."""
    answers: Counter[int] = Counter()
    cases = _schemathesis(api, answers)
    checks = _by_hand(api, answers)
    return answers, cases, checks


def _schemathesis(api: ApiServer, answers: Counter[int]) -> int:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    auth = {"Authorization": f"Bearer {KEYS['acme']}"}
    cases = 0
    for loaded in schema.get_all_operations():
        assert isinstance(loaded, Ok), loaded
        operation = loaded.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            nonlocal cases
            if case.headers and "Idempotency-Key" in case.headers:
                key = case.headers["Idempotency-Key"][:200]
                case.headers["Idempotency-Key"] = f"{key}-{uuid.uuid4().hex}"
            response = case.call(headers=auth)
            answers[response.status_code] += 1
            cases += 1

        check()
    return cases


def _by_hand(api: ApiServer, answers: Counter[int]) -> dict[str, bool]:
    with api.client("acme") as acme, api.client("globex") as globex, api.client(None) as nobody:
        job_id = acme.post("/bulk", json={"message": {"template": "T"}}).json()["jobId"]
        big = b'{"users": [' + b",".join([b'{"to": {"email": "a@b.co"}}'] * 300_000) + b"]}"
        requests = [
            acme.post(f"/bulk/{job_id}", content=big, headers={"Content-Type": "application/json"}),
            acme.post("/bulk", content=b"message=x", headers={"Content-Type": "text/plain"}),
            acme.post("/bulk", content=b"<xml/>", headers={"Content-Type": "application/xml"}),
            acme.post(
                f"/bulk/{job_id}",
                content=b"\xff\xfe\x00",
                headers={"Content-Type": "application/json"},
            ),
            acme.get(f"/bulk/{job_id}/users", params={"cursor": "A" * 60_000}),
            acme.get(f"/bulk/{job_id}/users", params={"cursor": "%%%not-base64%%%"}),
            acme.get("/bulk/" + "x" * 5000),
            globex.get(f"/bulk/{job_id}"),
            globex.get(f"/bulk/{job_id}/users"),
            globex.post(f"/bulk/{job_id}", json={"users": [{"to": {"user_id": "u"}}]}),
            globex.post(f"/bulk/{job_id}/run"),
            nobody.get(f"/bulk/{job_id}"),
            acme.request("DELETE", f"/bulk/{job_id}"),
        ]
        for response in requests:
            answers[response.status_code] += 1
    codes = [r.status_code for r in requests]
    return {
        "body over the limit: 413": codes[0] == 413,
        "wrong content types: 415": codes[1:3] == [415, 415],
        "huge or bad cursors: 400": codes[4:6] == [400, 400],
        "another tenant's job: 404 on every route": codes[7:11] == [404] * 4,
        "no key: 401": codes[11] == 401,
    }
