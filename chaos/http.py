"""HTTP abuse against a live API: schemathesis cases and hand-made bad requests.

Returns how many answers came back with each status code (a 5xx anywhere is a failure of
the scenario) and named checks, one of them that every generated case passed schemathesis's
checks against /openapi.json.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from streams.testing.fuzz import Fuzzed, fuzz
from streams.testing.processes import ApiProcess

# Per operation, mode and target (see streams/testing/fuzz.py): 16 kinds of case x 125,
# and 1 for a real job's GET: 2,001 cases.
EXAMPLES = 125


@dataclass
class Abused:
    answers: Counter[int]  # status code -> answers, generated and hand-made
    cases: int  # schemathesis cases run
    checks: dict[str, bool]
    notes: list[str]
    job_id: str  # the job the generated cases ran, whose sends are counted too


def abuse(api: ApiProcess) -> Abused:
    fuzzed, notes = Fuzzed(), []
    try:
        fuzz(api, EXAMPLES, into=fuzzed)
        conforms = True
    except Exception as failure:  # shrunk by hypothesis to a minimal request
        conforms = False
        notes.append(f"schemathesis: {type(failure).__name__}: {str(failure)[:2000]}")
    notes.append(f"schemathesis: {fuzzed.not_http} cases not HTTP, refused by the server's parser")
    answers = Counter(fuzzed.answers)
    checks = {"schemathesis: every answer as documented": conforms}
    checks |= _by_hand(api, answers)
    return Abused(answers, fuzzed.total, checks, notes, fuzzed.job_id)


def _by_hand(api: ApiProcess, answers: Counter[int]) -> dict[str, bool]:
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
