"""schemathesis against a live API: valid and invalid requests, each answer checked against
/openapi.json.

Shared by the API's fuzz test (`tests/streams/api/test_openapi_fuzz.py`) and the
reliability suite's HTTP abuse scenario (`chaos/http.py`). It needs the dev extra
(schemathesis, hypothesis): nothing the product runs imports it.

Every operation gets valid (positive) and invalid (negative) cases; one that names a job
gets them both on a real job of the caller's tenant and on generated ids, so the job
routes are exercised past their 404.

Each answer goes through schemathesis's checks: no 5xx, status code, content type, headers
and body as documented, valid input accepted and invalid input refused. One kind of answer
is not the API's own: an invalid case may carry a header that makes the message not HTTP
(a byte RFC 9110 forbids, or a generated Content-Length or Transfer-Encoding that breaks the
message's framing), and the HTTP server's parser refuses it with its plain-text 400 before
any route sees it; such a case must get exactly that refusal.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from streams.testing.processes import ApiProcess

# Stricter than schemathesis's defaults, which allow 5xx and, though the key is valid here,
# 401 and 403: valid input may only meet a missing job (404), a job past that step (400,
# as Courier answers it: checked below to be that and nothing else) or a request with the
# same Idempotency-Key in flight (409).
ACCEPTED = ["2xx", "400", "404", "409"]
# ... or for a job whose status does not allow the control command (pause of a job not
# run, anything but cancel of a finished one, run or ingest of a canceled one, a retry of
# one not finished or without failed users) ...
# ... or for what the schema cannot say: numbers beyond 64 bits, nesting beyond the limit,
# a date the calendar does not have (Feb 31 matches the pattern), a webhook URL whose host
# does not resolve to a public address, a tenant's webhooks past their number.
REFUSED_VALID = re.compile(
    r"^(BulkJobDuplicateInvocationError: |BulkJobAlreadySubmittedError: "
    r"|Job .+: the job (has not been run|has no failed users|is [A-Z]+|is being canceled)"
    r"|Job .+ was canceled"
    r"|.*: integers must fit in 64 bits|Request body is nested deeper than "
    r"|scheduledAt: Value error, no such date or time: "
    # ... or a webhook URL whose host does not resolve to a public address (a generated
    # name), or one past the tenant's number of webhooks.
    r"|url: .+ (does not resolve|resolves to|did not resolve)|A tenant may have \d+ webhooks)",
    re.DOTALL,  # a field path may hold any character, a newline included
)
# Invalid input is refused as invalid (400, 413 for too many users, 415, 422) or stops at
# the missing job or its state first.
REJECTIONS = ["400", "404", "409", "413", "415", "422"]
MAX_KEY = 255  # the longest Idempotency-Key the schema allows
# RFC 9110 section 5: a field name is a token; a field value holds HTAB, SP, VCHAR and
# obs-text, so 0x00-0x08, 0x0A-0x1F and 0x7F are not HTTP.
FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
NOT_IN_A_FIELD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# What uvicorn's parser answers to a message that is not HTTP (the same for httptools and h11).
PARSER_REFUSAL = (400, b"Invalid HTTP request received.")


@dataclass
class Fuzzed:
    """What a fuzz run sent and got back."""

    answers: Counter[int] = field(default_factory=Counter)  # status code -> answers
    cases: Counter[str] = field(default_factory=Counter)  # "operation mode target" -> cases
    job_id: str = ""  # the real job the cases went to (and ran)
    not_http: int = 0  # cases whose headers were not HTTP, refused by the server's parser
    # the real job's runs answered 202, as (the case's own generation mode, body)
    runs: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.cases.values())


def fuzz(
    api: ApiProcess, examples: int, tenant: str = "acme", into: Fuzzed | None = None
) -> Fuzzed:
    """Up to `examples` generated cases per operation, mode and target, counted in `into`;
    raise on the first answer that fails a check (hypothesis then shrinks it to a minimal
    request)."""
    config = schemathesis.Config.from_dict(
        {
            # The key goes through the schema's security scheme rather than as a header
            # schemathesis does not know of, so that it neither generates keys of its own
            # nor counts an invalid case as one that left the key out.
            "auth": {"openapi": {"bearer": {"bearer": api.keys[tenant]}}},
            "generation": {"with-security-parameters": False},
            "checks": {
                "positive_data_acceptance": {"expected-statuses": ACCEPTED},
                "negative_data_rejection": {"expected-statuses": REJECTIONS},
            },
            "operations": [
                {
                    # A cursor is opaque: one that fits the schema's pattern but that this
                    # server never handed out is a 400, not a page.
                    "include-operation-id": "listUsers",
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}
                    },
                }
            ],
        }
    )
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json", config=config)
    fuzzed = Fuzzed() if into is None else into
    fuzzed.job_id = _job_with_users(api, tenant)
    job = {"job_id": fuzzed.job_id}
    for loaded in schema.get_all_operations():
        assert isinstance(loaded, Ok), loaded
        operation = loaded.ok()
        names = {p.name for p in operation.iter_parameters()}
        # Invalid cases first, so that they meet the real job while it is still open; an
        # operation without input (GET /webhooks) has nothing to make invalid.
        modes = [GenerationMode.NEGATIVE, GenerationMode.POSITIVE]
        if not (operation.body or names - {"Authorization"}):
            modes = [GenerationMode.POSITIVE]
        for mode in modes:
            targets: dict[str, dict[str, str] | None] = {"": None}
            if "job_id" in names:
                targets = {"any id": None, "real job": job}
                if mode is GenerationMode.NEGATIVE and not (
                    operation.body or names - {"job_id", "Authorization"}
                ):
                    del targets["real job"]  # the job id is its only input: nothing to break
            for target, path in targets.items():
                label = " ".join(filter(None, [operation.label, mode.value, target]))
                strategy = operation.as_strategy(mode, path_parameters=path)
                strict_400 = (
                    mode is GenerationMode.POSITIVE
                    and operation.label != "GET /bulk/{job_id}/users"
                )
                _run(strategy, label, examples, fuzzed, strict_400)
    return fuzzed


def _run(strategy: Any, label: str, examples: int, fuzzed: Fuzzed, strict_400: bool) -> None:
    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: Any) -> None:
        key = (case.headers or {}).get("Idempotency-Key")
        if isinstance(key, str) and 0 < len(key) <= MAX_KEY:
            # Generated keys repeat across cases with other bodies, which is a 422 by
            # design (tested in test_bulk_api); keep each valid key its own, and leave an
            # invalid one as it is, to be refused.
            case.headers["Idempotency-Key"] = f"{key[: MAX_KEY - 33]}-{uuid.uuid4().hex}"
        fuzzed.cases[label] += 1
        response = case.call()
        fuzzed.answers[response.status_code] += 1
        if response.status_code == 202 and "/run " in label and label.endswith("real job"):
            # A negative strategy gives a valid case where it finds nothing to break (the
            # run's optional body left out): the case's own mode says which it is.
            body = case.body if isinstance(case.body, dict) else None
            fuzzed.runs.append((case.meta.generation.mode.value, body))
        if not_http(response.request.headers):
            # Never reaches the app: the server's parser must refuse it, and only it.
            refusal = (response.status_code, response.content)
            assert refusal == PARSER_REFUSAL, (case.headers, refusal)
            fuzzed.not_http += 1
            return
        case.validate_response(response)
        if strict_400 and response.status_code == 400:
            # Valid input is refused only for a job past that step (or a documented limit).
            assert REFUSED_VALID.match(response.json()["message"]), response.text

    check()


def not_http(headers: Any) -> bool:
    """Whether the headers a request went out with make it not HTTP at all: a field that breaks
    RFC 9110's syntax, a Content-Length that is not a number, or a Transfer-Encoding beside
    the Content-Length the client always frames a body with (RFC 9112 section 6)."""
    fields = {str(name): str(value) for name, value in (headers or {}).items()}
    framing = {name.lower(): value for name, value in fields.items()}
    return (
        any(
            not FIELD_NAME.fullmatch(name) or NOT_IN_A_FIELD_VALUE.search(value)
            for name, value in fields.items()
        )
        or not re.fullmatch(r"[0-9]+", framing.get("content-length", "0"))
        or "transfer-encoding" in framing
    )


def _job_with_users(api: ApiProcess, tenant: str) -> str:
    with api.client(tenant) as client:
        job_id: str = client.post("/bulk", json={"message": {"template": "T"}}).json()["jobId"]
        users = [{"to": {"email": f"u{i}@example.com"}} for i in range(20)]
        client.post(f"/bulk/{job_id}", json={"users": users}).raise_for_status()
    return job_id
